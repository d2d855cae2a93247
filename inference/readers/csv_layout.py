"""How a delimited text file is laid out, read from its first lines.

The delimiter (given or detected), whether the first line is a header, and which columns
hold the features, the ids and the labels. The file itself is not read here: the CSV reader
hands over the bytes it has read ahead.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from ..contract import N_FEATURES
from ..errors import InputDataError, UsageError
from .base import resolve_column
from .read_options import ReadOptions

#: Bytes read ahead to decide the layout; the first line must end within them.
SNIFF_BYTES = 64 << 10
#: The bytes of each delimiter ReadOptions holds (whitespace: runs of blanks, joined to one).
DELIMITERS = {",": b",", "\t": b"\t", ";": b";", "whitespace": b" "}
#: Lines looked at to detect the delimiter.
SAMPLE_LINES = 20


@dataclass
class Layout:
    """The columns of a delimited file: how they are separated, named and used."""

    delimiter: bytes
    whitespace: bool
    header: bool
    names: list[str]
    feature_idx: list[int]
    id_idx: int | None
    label_idx: int | None


def split_fields(line: bytes, delimiter: bytes, whitespace: bool) -> list[str]:
    """The fields of one line, as Python's csv module (or ``str.split``) cuts them."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    if whitespace:
        return text.split()
    try:
        return next(csv.reader([text], delimiter=delimiter.decode()), [])
    except csv.Error:  # a stray carriage return or NUL: count the fields plainly
        return text.split(delimiter.decode())


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def detect_delimiter(lines: list[bytes]) -> tuple[bytes, bool]:
    """Pick the delimiter that splits the first lines into the same number (> 1) of fields."""
    sample = [ln for ln in lines if ln.strip()][:SAMPLE_LINES]
    if not sample:
        return b",", False
    for name in (",", "\t", ";"):
        counts = {len(split_fields(ln, DELIMITERS[name], False)) for ln in sample}
        if len(counts) == 1 and counts.pop() > 1:
            return DELIMITERS[name], False
    counts = {len(ln.split()) for ln in sample}
    if len(counts) == 1 and counts.pop() > 1:
        return b" ", True
    return b",", False


def _complete_lines(ahead: bytes, n: int = SAMPLE_LINES + 1) -> list[bytes]:
    lines = ahead.split(b"\n")
    complete = lines[:-1] if len(lines) > 1 else lines
    return complete[:n]


def sniff_layout(ahead: bytes, options: ReadOptions, display: str) -> Layout:
    """The layout of a file whose first bytes (byte-order mark removed) are ``ahead``.

    The first non-blank line is a header when one of its fields is not a number, unless
    ``options.header`` says otherwise.
    """
    lines = _complete_lines(ahead)
    first = next((ln for ln in lines if ln.strip()), b"")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise InputDataError(
            f"{display}: line 1 is not valid UTF-8 text; save the file as UTF-8"
        ) from None
    if b"\r" in first.rstrip(b"\r"):
        raise InputDataError(
            f"{display}: line 1 holds a carriage return inside it: the file seems to "
            "end its lines with CR alone; save it with LF or CRLF line endings"
        )
    if options.delimiter is None:
        delim, ws = detect_delimiter(lines)
    else:  # ReadOptions has checked the name and holds the delimiter it means
        delim, ws = DELIMITERS[options.delimiter], options.delimiter == "whitespace"
    if b"\n" not in ahead and len(ahead) >= SNIFF_BYTES:
        raise InputDataError(
            f"{display}: line 1 is longer than {SNIFF_BYTES} bytes; "
            "this is not a file of 64-feature rows"
        )
    fields = split_fields(first, delim, ws)
    header = options.header
    if header is None:
        header = any(not is_number(f) for f in fields if f.strip())
    n_cols = len(fields)
    names = [f.strip() for f in fields] if header else [f"column {i + 1}" for i in
                                                          range(n_cols)]
    id_idx = label_idx = None
    if options.id_column is not None:
        id_idx = resolve_column(options.id_column, names, header, "--id-column")
    if options.label_column is not None:
        label_idx = resolve_column(options.label_column, names, header, "--label-column")
        if label_idx == id_idx:
            raise UsageError("--id-column and --label-column name the same column")
    extra = {i for i in (id_idx, label_idx) if i is not None}
    feature_idx = [i for i in range(n_cols) if i not in extra]
    if len(feature_idx) != N_FEATURES:
        hint = ""
        if len(feature_idx) > N_FEATURES:
            hint = "; name the extra columns with --id-column and --label-column"
        raise InputDataError(
            f"{display}: line 1: expected {N_FEATURES} feature columns, found "
            f"{len(feature_idx)} ({n_cols} columns in all){hint}"
        )
    return Layout(delim, ws, header, names, feature_idx, id_idx, label_idx)
