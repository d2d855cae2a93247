"""What the command line prints on stderr: one line a terminal and a log can trust.

File names and data reach messages as they are: a newline, an escape sequence, a bidi control
or a byte that is not UTF-8 (a surrogate after Python's decoding) is shown escaped, so every
message stays one line and cannot rewrite the terminal. With stderr closed, nothing is printed
and the run goes on.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .contract import FEATURE_MAX, FEATURE_MIN

if TYPE_CHECKING:
    from .summary import BatchSummary, FileSummary

#: Characters shown as escapes: C0 and C1 controls, DEL, and the bidi overrides/isolates.
_BIDI = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on shown as an escape."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(repr(ch)[1:-1])
        elif code in _BIDI or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def say(text: str) -> None:
    """Print one line on stderr, escaped; nothing when stderr is closed."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(printable(text) + "\n")
        stream.flush()
    except (OSError, ValueError):  # closed or full: the exit code still tells
        pass


def file_line(f: FileSummary) -> str:
    if f.status == "skipped":
        return f"up to date: {f.input} -> {f.output} (--force rescores)"
    text = (f"scored {f.input} -> {f.output}: {f.rows} rows, {f.rejected} rejected, "
            f"{f.out_of_range} out of range, {f.seconds:.2f} s ({f.rows_per_second:,.0f} rows/s)")
    if f.accuracy is not None:
        text += f", accuracy {f.accuracy:.4f} ({f.correct}/{f.labelled})"
    return text


def report_file(prog: str, f: FileSummary, quiet: bool, verbose: bool) -> None:
    """The lines of one file: an error, a range warning, what was done, rejects, confusion."""
    if f.status == "failed":
        removed = f" (removed the earlier {', '.join(f.removed)})" if f.removed else ""
        say(f"{prog}: error: {f.error or 'failed'}{removed}")
        return
    if f.out_of_range and f.status == "scored":
        say(f"{prog}: warning: {f.input}: {f.out_of_range} rows have values outside the "
            f"training range {FEATURE_MIN:g}..{FEATURE_MAX:g}")
    if quiet:
        return
    say(file_line(f))
    if f.rejects_file:
        say(f"  {f.rejected} rejected rows written to {f.rejects_file}")
    if verbose and f.confusion:
        say("  confusion (rows: true label, columns: predicted):")
        for k, row in enumerate(f.confusion):
            say(f"  {k}: " + " ".join(f"{v:4d}" for v in row))


def report_total(s: BatchSummary) -> None:
    d = s.to_dict()["totals"]
    text = (f"total: {d['files']} files ({d['failed']} failed, {d['skipped']} up to date), "
            f"{d['rows']} rows, {d['rejected']} rejected, {d['out_of_range']} out of range, "
            f"{s.seconds:.2f} s")
    if d["accuracy"] is not None:
        text += f", accuracy {d['accuracy']:.4f}"
    say(text)
