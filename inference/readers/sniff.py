"""What a file holds, from its first bytes: the format, and a delimited text's delimiter.

Light on purpose (the csv module only, no numpy or pyarrow): directory scans ask it about
every file they find, and the command line asks it before it loads the scoring stack.
"""

from __future__ import annotations

import csv
from collections import Counter

#: Bytes looked at to recognise a format by content (and to sniff a text's layout).
HEAD_BYTES = 64 << 10
#: The first bytes of each binary format read: NPY, Parquet, gzip (of CSV or TSV text).
MAGIC = {b"\x93NUMPY": "npy", b"PAR1": "parquet", b"\x1f\x8b": "csv.gz"}
#: The bytes of each delimiter ReadOptions holds (whitespace: runs of blanks, joined to one).
DELIMITERS = {",": b",", "\t": b"\t", ";": b";", "whitespace": b" "}
#: Lines looked at to detect the delimiter.
SAMPLE_LINES = 20
BOM = b"\xef\xbb\xbf"


def split_fields(line: bytes, delimiter: bytes, whitespace: bool) -> list[str]:
    """The fields of one line, as Python's csv module (or ``str.split``) cuts them."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    if whitespace:
        return text.split()
    try:
        return next(csv.reader([text], delimiter=delimiter.decode()), [])
    except csv.Error:  # a stray carriage return or NUL: count the fields plainly
        return text.split(delimiter.decode())


def field_count(line: bytes, delimiter: bytes) -> int:
    """``len(split_fields(line, delimiter, False))``, counted without the csv module when
    the line holds no quote (then the delimiters alone cut it)."""
    if b'"' not in line:
        return line.count(delimiter) + 1
    return len(split_fields(line, delimiter, False))


def _sample(lines: list[bytes]) -> list[bytes]:
    return [ln for ln in lines if ln.strip()][:SAMPLE_LINES]


def detect_delimiter(lines: list[bytes]) -> tuple[bytes, bool]:
    """Pick the delimiter that splits the first lines into the same number (> 1) of fields."""
    sample = _sample(lines)
    if not sample:
        return b",", False
    for name in (",", "\t", ";"):
        counts = {field_count(ln, DELIMITERS[name]) for ln in sample}
        if len(counts) == 1 and counts.pop() > 1:
            return DELIMITERS[name], False
    counts = {len(ln.split()) for ln in sample}
    if len(counts) == 1 and counts.pop() > 1:
        return b" ", True
    return b",", False


def magic_format(head: bytes) -> str | None:
    """The binary format whose magic bytes start ``head``, or None."""
    return next((fmt for magic, fmt in MAGIC.items() if head.startswith(magic)), None)


def looks_delimited(head: bytes, *, complete: bool) -> bool:
    """True when ``head`` (the first bytes of a file; ``complete`` when it is the whole
    file) is UTF-8 text whose first lines are mostly cut into the same number of fields
    (more than one) by a comma, a tab, a semicolon or blanks, and one of them is mostly
    numbers: a table of numbers, not prose or JSON."""
    head = head.removeprefix(BOM)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if complete or exc.start < len(head) - 3:  # not just a character cut at the end
            return False
    lines = head.split(b"\n")
    sample = _sample(lines if complete else lines[:-1])
    if not sample:
        return False
    for name, delimiter in DELIMITERS.items():
        rows = [split_fields(ln, delimiter, name == "whitespace") for ln in sample]
        width, lines_of_width = Counter(len(r) for r in rows).most_common(1)[0]
        if width > 1 and lines_of_width >= 0.8 * len(rows) and any(
                2 * sum(_is_number(f) for f in r) > len(r) for r in rows):
            return True
    return False


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def sniff_format(head: bytes, *, complete: bool, stream: bool = False) -> str | None:
    """The input format of a file from its first bytes: NPY, Parquet or gzip by their magic,
    else delimited text ("csv", whose delimiter the CSV reader detects), else None.

    A ``stream`` (stdin, a pipe) is read as CSV unless its magic says otherwise: whatever it
    is, the reader then says what is wrong with it line by line.
    """
    fmt = magic_format(head)
    if fmt is not None:
        return fmt
    if stream or looks_delimited(head, complete=complete):
        return "csv"
    return None
