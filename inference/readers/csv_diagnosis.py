"""Why lines of a CSV file cannot be scored: their column count, then their first bad cell.

Only blocks that pyarrow refused reach this module. They are diagnosed in bulk, a column at
a time (:func:`diagnose_table`, on cells pyarrow parsed as text), so that two million bad
lines cost seconds, not minutes; lines that must be read alone (bytes that are not UTF-8, a
byte-order mark) go through :func:`diagnose_line`. Each check mirrors the parser: a cell is a
number exactly when pyarrow reads it as one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..arrow import from_numpy, string_array, to_numpy
from .base import Reject, label_outside, labels_outside, value_problem
from .csv_layout import Layout, split_fields

#: Rejected lines are quoted in the reject report up to this many characters.
SHOWN_CHARS = 200
BOM = b"\xef\xbb\xbf"
#: Blanks pyarrow trims around a number before it parses it.
TRIMMED = " \t"
#: Exactly the tokens pyarrow's float parser accepts once trimmed (tests/test_read_csv.py
#: checks the two agree): decimal and exponent forms, inf, infinity, nan and nan(...), any case.
FLOAT_PATTERN = (r"^[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?"
                 r"|inf(?:inity)?|nan(?:\([0-9a-z_]*\))?)$")
#: The tokens pyarrow's int64 parser accepts, range aside: decimal, or 0x-hexadecimal.
INT_PATTERN = r"^(?:-?[0-9]+|0x[0-9a-f]+)$"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def shown_text(text: bytes) -> str:
    """A rejected line as the reject report quotes it (its first 200 characters)."""
    shown = text[:SHOWN_CHARS * 4].rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
    return shown[:SHOWN_CHARS] + "..." if len(shown) > SHOWN_CHARS else shown


def count_reason(expected: int, found: int) -> str:
    return f"expected {expected} columns, found {found}"


def diagnose_line(layout: Layout, row: int, line: int, text: bytes) -> Reject:
    """Name the first problem of one bad line (``text``, ending in its newline)."""
    shown = shown_text(text)
    fields = split_fields(text, layout.delimiter, layout.whitespace)
    names = layout.names if layout.header else None

    def reject(column: int | None, reason: str) -> Reject:
        name = names[column] if names is not None and column is not None else None
        return Reject(row, line, None if column is None else column + 1, name, reason, shown)

    if len(fields) != len(layout.names):
        return reject(None, count_reason(len(layout.names), len(fields)))
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
        try:  # trimmed, as the parser trims it
            label = string_array([token.strip(TRIMMED)]).cast(pa.int64())[0].as_py()
        except (pa.ArrowInvalid, ValueError):
            return reject(layout.label_idx, f"label {_short(token)} is not an integer")
        if labels_outside(np.array([label])).any():
            return reject(layout.label_idx, label_outside(label))
    return reject(None, "malformed CSV line")


class Problems:
    """The first problem of each row of a table: its column and a reason, or none yet."""

    def __init__(self, n: int) -> None:
        #: Rows with no problem found so far.
        self.open = np.ones(n, dtype=bool)
        #: (row, column, reason) of each row with a problem.
        self.found: list[tuple[int, int, str]] = []

    def add(self, rows: np.ndarray, column: int, reasons: list[str]) -> None:
        """``rows`` (row numbers) fail at ``column``, each for its reason."""
        self.found.extend(zip(rows.tolist(), [column] * len(rows), reasons, strict=True))
        self.open[rows] = False


def diagnose_table(layout: Layout, table: pa.Table) -> Problems:
    """The first problem of every row of ``table`` (every column parsed as text), in the
    order :func:`diagnose_line` looks: feature cells in column order (empty, not a number,
    NaN, infinite, beyond float32), then the label (not an integer, or outside 0..9). Rows
    with no problem stay open.

    Each column is checked only on the rows still open, so a block of bad rows is settled
    by its first column.
    """
    import pyarrow.compute as pc  # only bad blocks come here: 50 ms off every start

    problems = Problems(table.num_rows)
    for i in layout.feature_idx:
        rows = np.flatnonzero(problems.open)
        if not len(rows):
            return problems
        raw = _cells(table, i, problems.open)
        ok, values = castable(pc.utf8_trim(raw, characters=TRIMMED), pa.float64(),
                              FLOAT_PATTERN)
        v = to_numpy(values)
        with np.errstate(over="ignore", invalid="ignore"):
            narrowed = v.astype(np.float32)
        nan, inf = np.isnan(v), np.isinf(v)
        code = np.zeros(len(rows), dtype=np.int8)
        code[ok & ~nan & ~inf & ~np.isfinite(narrowed)] = 4
        code[ok & inf] = 3
        code[ok & nan] = 2
        code[~ok] = 1
        code[to_numpy(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(raw)), 0))] = 5
        if not code.any():
            continue
        for value, word in ((1, "is not a number"), (2, "is not a number (NaN)"),
                            (3, "is infinite"), (4, "is outside the float32 range")):
            bad = rows[code == value]
            problems.add(bad, i, [f"{_short(t)} {word}" for t in _tokens(table, i, bad)])
        empty = rows[code == 5]
        problems.add(empty, i, ["empty cell"] * len(empty))
    if layout.label_idx is not None and problems.open.any():
        i = layout.label_idx
        rows = np.flatnonzero(problems.open)
        ok, labels = castable(pc.utf8_trim(_cells(table, i, problems.open),
                                           characters=TRIMMED), pa.int64(), INT_PATTERN)
        bad = rows[~ok]
        problems.add(bad, i, [f"label {_short(t)} is not an integer"
                              for t in _tokens(table, i, bad)])
        values = to_numpy(labels)
        outside = ok & labels_outside(values)
        problems.add(rows[outside], i, [label_outside(int(v)) for v in values[outside]])
    return problems


def _cells(table: pa.Table, column: int, open_rows: np.ndarray) -> pa.Array:
    cells = table.column(column).combine_chunks()
    if open_rows.all():
        return cells
    return cells.filter(from_numpy(open_rows))


def _tokens(table: pa.Table, column: int, rows: np.ndarray) -> list[str]:
    if not len(rows):
        return []
    return [str(t) for t in table.column(column).take(from_numpy(rows)).to_pylist()]


def castable(cells: pa.Array, to: pa.DataType, pattern: str) -> tuple[np.ndarray, pa.Array]:
    """Which text cells parse as ``to`` (a mask), and their values (0 where they do not).

    One cast when every cell parses; otherwise the cells that match ``pattern`` are cast,
    and any that the parser still refuses (an integer out of range) are found by halving.
    """
    import pyarrow.compute as pc

    try:
        return np.ones(len(cells), dtype=bool), cells.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = to_numpy(pc.fill_null(pc.match_substring_regex(cells, pattern, ignore_case=True),
                               False)).copy()
    for position in _refused(pc.if_else(from_numpy(ok), cells, "0"), to, 0):
        ok[position] = False
    return ok, pc.if_else(from_numpy(ok), cells, "0").cast(to)


def _refused(cells: pa.Array, to: pa.DataType, offset: int) -> list[int]:
    try:
        cells.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(cells) == 1:
            return [offset]
        half = len(cells) // 2
        return (_refused(cells.slice(0, half), to, offset)
                + _refused(cells.slice(half), to, offset + half))
    return []


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
