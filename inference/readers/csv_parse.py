"""Blocks of CSV lines to batches: one pyarrow parse when the block is clean, a diagnosis
in bulk when it is not.

A failing block's good rows are parsed exactly as a clean block's are, so they get the same
values; every bad line is named with its first problem (see :mod:`.csv_diagnosis`).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..arrow import string_array, to_numpy
from ..contract import N_FEATURES
from .base import Batch, Reject, check_values, labels_outside
from .csv_diagnosis import SHOWN_CHARS, count_reason, diagnose_line, diagnose_table
from .csv_layout import Layout, first_line, layout_of
from .csv_lines import Lines
from .read_options import ReadOptions

BOM = b"\xef\xbb\xbf"
#: Parsers kept for the layouts met last (a directory's files mostly share one header).
KNOWN_LAYOUTS = 32


_known: dict[tuple[bytes, bytes, bool, ReadOptions], BlockParser] = {}


def parser_for(ahead: bytes, options: ReadOptions, display: str, line: int = 1) -> BlockParser:
    """The parser of a file whose first non-blank line, numbered ``line``, starts ``ahead``.

    Each file's first line and delimiter are checked and detected from its own bytes; the
    layout they make with the options (header verdict, columns) is worked out once, and
    the parser built once, for all the files that share them: a directory of small files
    of one header pays one sniff. A file that differs in any byte of its first line, or in
    its delimiter, gets its own.
    """
    first, delim, ws = first_line(ahead, options, display, line)
    key = (first, delim, ws, options)
    parser = _known.get(key)
    if parser is None:
        parser = BlockParser(layout_of(first, delim, ws, options, display, line))
        if len(_known) >= KNOWN_LAYOUTS:
            _known.clear()
        _known[key] = parser
    return parser


class BlockParser:
    """Parses blocks of whole lines of one layout into batches."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._extra_columns = len(layout.names) != N_FEATURES
        self._types = self._column_types()
        #: The ``--keep-columns`` columns as the output carries them.
        self.kept_fields = tuple(pa.field(name, self._types[i]) for i, name in
                                 zip(layout.kept_idx, layout.kept_names, strict=True))
        self._options = self._arrow_options()

    def _arrow_options(self) -> dict[str, Any]:
        """pyarrow's options for this layout. Blank lines are dropped before a block is parsed;
        one left would be a row of nulls, never lost, so rows = lines stays checkable."""
        names = [f"c{i}" for i in range(len(self.layout.names))]
        types = dict(zip(names, self._types, strict=True))
        return {
            "read_options": pacsv.ReadOptions(column_names=names, block_size=1 << 20),
            "parse_options": pacsv.ParseOptions(delimiter=self.layout.delimiter.decode(),
                                                ignore_empty_lines=False),
            "convert_options": pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        }

    def _column_types(self) -> list[pa.DataType]:
        """What each column parses to: features float64, labels int64, the rest (ids, kept
        columns) text as written."""
        layout = self.layout
        types = [pa.string()] * len(layout.names)
        for i in layout.feature_idx:
            types[i] = pa.float64()
        if layout.label_idx is not None:
            types[layout.label_idx] = pa.int64()
        return types

    def parse(self, data: bytes | memoryview) -> pa.Table:
        return pacsv.read_csv(pa.py_buffer(data), **self._options)

    def fast_batch(self, data: bytes | memoryview, line_no: int, lines: int,
                   numbers: np.ndarray | None, first_row: int) -> Batch | None:
        """The batch of a block that parses clean in one go (None when it does not)."""
        try:
            # pyarrow drops a byte-order mark that starts a buffer: such a block is checked
            # line by line, where the mark is rejected wherever the block happened to begin.
            table = None if data[:3] == BOM else self.parse(data)
        except pa.ArrowInvalid:
            return None
        if table is None or table.num_rows != lines or self._has_nulls(table):
            return None
        batch = self._table_batch(table, first_row)
        if batch.X.size and not np.isfinite(sum(batch.extrema())):
            return None
        if batch.truth is not None and batch.truth.size and labels_outside(
                np.array([batch.truth.min(), batch.truth.max()])).any():
            return None
        if numbers is None:
            batch.line_fn = lambda idx: line_no + idx
        else:
            batch.lines = numbers
        if not check_values(batch.X, batch.extrema())[1]:
            batch.text_fn = _line_texts(data, np.arange(lines))
        return batch

    def _empty_batch(self) -> Batch:
        batch = Batch(X=np.empty((0, N_FEATURES), np.float32),
                      rows=np.empty(0, np.int64), n_rows=0)
        if self.layout.label_idx is not None:
            batch.truth = np.empty(0, np.int64)
        if self.layout.id_idx is not None:
            batch.ids = string_array([])
        batch.kept = [pa.array([], f.type) for f in self.kept_fields]
        batch.lines = np.empty(0, np.int64)
        return batch

    def _table_batch(self, table: pa.Table, first_row: int) -> Batch:
        layout = self.layout
        n = table.num_rows
        X = np.empty((n, N_FEATURES), dtype=np.float32)
        features = table.select(layout.feature_idx) if self._extra_columns else table
        start = 0
        for rb in features.to_batches():
            # Arrow lays the columns out as one Fortran-ordered block; numpy then casts and
            # transposes it into C order in a single pass.
            with np.errstate(over="ignore"):
                X[start:start + rb.num_rows] = np.asarray(rb.to_tensor(row_major=False))
            start += rb.num_rows
        ids = truth = None
        if layout.id_idx is not None:
            ids = table.column(layout.id_idx).combine_chunks()
        if layout.label_idx is not None:
            truth = to_numpy(table.column(layout.label_idx))
        kept = [table.column(i).combine_chunks() for i in layout.kept_idx]
        return Batch(X=X, rows=np.arange(first_row, first_row + n), n_rows=n, ids=ids,
                     truth=truth, kept=kept)

    def _has_nulls(self, table: pa.Table) -> bool:
        """True when some parsed row has an empty cell (or is a blank line)."""
        layout = self.layout
        if any(table.column(i).null_count for i in layout.feature_idx):
            return True
        return layout.label_idx is not None and bool(table.column(layout.label_idx).null_count)

    # -- the slow path: a block with bad lines -------------------------------------------------

    def slow_batch(self, block: bytes, numbers: np.ndarray, first_row: int) -> Batch:
        """Find the bad lines of a block (no blank lines left in it) in bulk, keeping the
        good rows' values exactly what a clean block would give.

        Lines whose column count is plain from their delimiters are settled by counting;
        the others are parsed as text and checked a column at a time
        (:func:`diagnose_table`). The good lines are then parsed as a clean block is; a set of
        lines that does not parse as one record per line (a quote spanning lines) is halved
        until the culprits stand alone and are read alone.
        """
        lines = Lines(block, numbers)
        bad = np.zeros(len(lines), dtype=bool)
        rejects: list[Reject] = []
        for k in np.flatnonzero(lines.lone_lines()):
            rejects.append(self._diagnose_alone(lines, int(k), first_row))
            bad[k] = True
        width = len(self.layout.names)
        counts, plain = lines.field_counts(self.layout.delimiter[0])
        wrong = np.flatnonzero(plain & (counts != width) & ~bad)
        reasons = {int(c): count_reason(width, int(c)) for c in np.unique(counts[wrong])}
        self._reject(lines, [(k, None, reasons[c]) for k, c in zip(
            wrong.tolist(), counts[wrong].tolist(), strict=True)], first_row, bad, rejects)
        self._settle(lines, np.flatnonzero(~bad), first_row, bad, rejects)
        good: list[tuple[np.ndarray, pa.Table]] = []
        self._parse_good(lines, np.flatnonzero(~bad), first_row, good, rejects)
        if good:
            table = pa.concat_tables([t for _, t in good])
            batch = self._table_batch(table, 0)
            idx = np.concatenate([i for i, _ in good])
        else:
            batch = self._empty_batch()
            idx = np.empty(0, np.int64)
        batch.rows = first_row + idx
        batch.lines = numbers[idx]
        batch.n_rows = len(lines)
        if not check_values(batch.X, batch.extrema())[1]:
            batch.text_fn = _line_texts(lines, idx)
        batch.rejects = sorted(rejects, key=attrgetter("row"))
        return batch

    def _text_options(self) -> dict[str, Any]:
        names = [f"c{i}" for i in range(len(self.layout.names))]
        return {
            "read_options": pacsv.ReadOptions(column_names=names, block_size=1 << 20,
                                              use_threads=False),
            "convert_options": pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False,
                quoted_strings_can_be_null=False),
        }

    def _settle(self, lines: Lines, idx: np.ndarray, first_row: int, bad: np.ndarray,
                rejects: list[Reject]) -> None:
        """Diagnose the lines at ``idx`` in bulk: every column as text, checked at once."""
        if not len(idx):
            return
        if len(idx) == 1:
            k = int(idx[0])
            if self._try_line(lines, k) is None:
                rejects.append(self._diagnose_alone(lines, k, first_row))
                bad[k] = True
            return
        width = len(self.layout.names)
        miscounted: list[tuple[int, int]] = []

        def invalid(row: pacsv.InvalidRow) -> str:
            miscounted.append((row.number, row.actual_columns))
            return "skip"

        try:
            table = pacsv.read_csv(
                pa.py_buffer(lines.take(idx)),
                parse_options=pacsv.ParseOptions(delimiter=self.layout.delimiter.decode(),
                                                 ignore_empty_lines=False,
                                                 invalid_row_handler=invalid),
                **self._text_options())
        except pa.ArrowInvalid:
            table = None
        if table is None or table.num_rows + len(miscounted) != len(idx) or any(
                n is None for n, _ in miscounted):
            half = len(idx) // 2  # some record spans lines: find it by halving
            self._settle(lines, idx[:half], first_row, bad, rejects)
            self._settle(lines, idx[half:], first_row, bad, rejects)
            return
        parsed = np.ones(len(idx), dtype=bool)
        found: list[tuple[int, int | None, str]] = []
        reasons: dict[int, str] = {}
        for number, count in miscounted:
            parsed[number - 1] = False
            reason = reasons.get(count) or reasons.setdefault(count, count_reason(width, count))
            found.append((int(idx[number - 1]), None, reason))
        rows = idx[parsed]
        found.extend((int(rows[r]), column, reason)
                     for r, column, reason in diagnose_table(self.layout, table).found)
        self._reject(lines, found, first_row, bad, rejects)

    def _reject(self, lines: Lines, found: list[tuple[int, int | None, str]], first_row: int,
                bad: np.ndarray, rejects: list[Reject]) -> None:
        """Reject lines ``(position, column or None, reason)``, quoting each line."""
        if not found:
            return
        found.sort(key=itemgetter(0))
        ks = np.array([k for k, _, _ in found], dtype=np.int64)
        names = self.layout.names if self.layout.header else None
        for (k, column, reason), line, text in zip(
                found, lines.numbers[ks].tolist(), lines.texts(ks, SHOWN_CHARS), strict=True):
            name = names[column] if names is not None and column is not None else None
            rejects.append(Reject(first_row + k, line, None if column is None else column + 1,
                                  name, reason, text))
        bad[ks] = True

    def _parse_good(self, lines: Lines, idx: np.ndarray, first_row: int,
                    good: list[tuple[np.ndarray, pa.Table]], rejects: list[Reject]) -> None:
        """Parse the lines at ``idx`` as a clean block is parsed; should the parser still
        refuse some, halve until they stand alone."""
        if not len(idx):
            return
        table = self._try_parse(lines.take(idx))
        if table is not None and table.num_rows == len(idx) and self._clean(table):
            good.append((idx, table))
            return
        if len(idx) == 1:
            rejects.append(self._diagnose_alone(lines, int(idx[0]), first_row))
            return
        half = len(idx) // 2
        self._parse_good(lines, idx[:half], first_row, good, rejects)
        self._parse_good(lines, idx[half:], first_row, good, rejects)

    def _try_line(self, lines: Lines, k: int) -> pa.Table | None:
        table = self._try_parse(lines.line(k))
        if table is not None and table.num_rows == 1 and self._clean(table):
            return table
        return None

    def _diagnose_alone(self, lines: Lines, k: int, first_row: int) -> Reject:
        return diagnose_line(self.layout, first_row + k, int(lines.numbers[k]), lines.line(k))

    def _try_parse(self, data: bytes) -> pa.Table | None:
        if BOM in data:  # pyarrow skips a BOM that starts a buffer: a lone line would pass
            return None
        try:
            return self.parse(data)
        except pa.ArrowInvalid:
            return None

    def _clean(self, table: pa.Table) -> bool:
        layout = self.layout
        for i in layout.feature_idx:
            col = table.column(i)
            if col.null_count:
                return False
            with np.errstate(over="ignore"):
                values = to_numpy(col).astype(np.float32)
            if values.size and not np.isfinite(values).all():
                return False
        if layout.label_idx is None:
            return True
        labels = table.column(layout.label_idx)
        return not labels.null_count and not labels_outside(to_numpy(labels)).any()


def _line_texts(block: Lines | bytes | memoryview,
                positions: np.ndarray) -> Callable[[np.ndarray], list[str]]:
    """The text of a batch's rows as reject reports quote it: row ``k`` is line
    ``positions[k]`` of ``block``. For the rows a later check rejects (--strict, a value that
    overflows the model), which then show their line as every other reject does; a clean
    block is cut into lines only if one is asked for."""
    held: dict[str, Lines] = {}

    def texts(idx: np.ndarray) -> list[str]:
        lines = held.get("lines")
        if lines is None:
            lines = held["lines"] = (block if isinstance(block, Lines)
                                     else Lines(bytes(block), np.empty(0, np.int64)))
        wanted, order = np.unique(positions[idx], return_inverse=True)
        shown = lines.texts(wanted, SHOWN_CHARS)
        return [shown[k] for k in order.tolist()]

    return texts
