"""Why one line of a CSV file cannot be scored: its column count, then its first bad cell.

Only lines that pyarrow refused reach this module, so it may be slow; each check mirrors the
parser's (a cell is a number exactly when pyarrow reads it as one).
"""

from __future__ import annotations

import pyarrow as pa

from ..arrow import string_array
from .base import Reject, value_problem
from .csv_layout import Layout, split_fields

#: Rejected lines are quoted in the reject report up to this many characters.
SHOWN_CHARS = 200


def diagnose_line(layout: Layout, row: int, line: int, text: bytes) -> Reject:
    """Name the first problem of one bad line (``text``, ending in its newline)."""
    shown = text[:SHOWN_CHARS * 4].rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
    if len(shown) > SHOWN_CHARS:
        shown = shown[:SHOWN_CHARS] + "..."
    fields = split_fields(text, layout.delimiter, layout.whitespace)
    names = layout.names if layout.header else None

    def reject(column: int | None, reason: str) -> Reject:
        name = names[column] if names is not None and column is not None else None
        return Reject(row, line, None if column is None else column + 1, name, reason, shown)

    if len(fields) != len(layout.names):
        return reject(None, f"expected {len(layout.names)} columns, found {len(fields)}")
    for i, token in enumerate(fields):
        if "\ufffd" in token and not _is_utf8(text):
            return reject(i, "bytes that are not UTF-8 text; save the file as UTF-8")
        if "\ufeff" in token:
            return reject(i, "a byte-order mark (U+FEFF) inside the file; it may only "
                          "start the file")
    for i in layout.feature_idx:
        token = fields[i]
        if not token.strip():
            return reject(i, "empty cell")
        value = _parse_float(token)
        if value is None:
            return reject(i, f"{_short(token)} is not a number")
        problem = value_problem(value)
        if problem:
            return reject(i, f"{_short(token)} {problem}")
    if layout.label_idx is not None:
        token = fields[layout.label_idx]
        try:
            string_array([token]).cast(pa.int64())
        except (pa.ArrowInvalid, ValueError):
            return reject(layout.label_idx, f"label {_short(token)} is not an integer")
    return reject(None, "malformed CSV line")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _parse_float(token: str) -> float | None:
    """The value pyarrow's parser gives a token, or None when it refuses it."""
    try:
        return string_array([token]).cast(pa.float64())[0].as_py()
    except (pa.ArrowInvalid, ValueError):
        return None


def _short(token: str, limit: int = 40) -> str:
    token = token.strip()
    return repr(token if len(token) <= limit else token[:limit] + "...")
