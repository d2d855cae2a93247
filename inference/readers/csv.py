"""Streaming CSV reader.

The file is cut into blocks of whole lines; pyarrow parses each block on all cores. A block
that fails to parse is bisected with the same parser until the bad lines stand alone, so good
rows get exactly the values a clean file would give and every bad line is named.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterator
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..arrow import string_array, to_numpy
from ..contract import N_FEATURES
from ..errors import InputDataError, UsageError
from .base import Batch, Reject, Source
from .csv_diagnosis import (
    SHOWN_CHARS,
    count_reason,
    diagnose_line,
    diagnose_table,
)
from .csv_layout import SNIFF_BYTES, sniff_layout
from .csv_lines import Lines, drop_blank_lines, has_blank_lines
from .read_options import ReadOptions
from .streams import HashingReader, RangeReader, line_start

#: A longer line fails its file: a row of 64 numbers is a few hundred bytes at most.
MAX_LINE_BYTES = 16 << 20
BOM = b"\xef\xbb\xbf"
#: A block with bad lines is diagnosed in windows of this many bytes (whole lines).
SLOW_WINDOW = 1 << 20
_WS_EDGES = re.compile(rb"(?m)^[ \t]+|[ \t]+(?=\r?$)")
_WS_RUNS = re.compile(rb"[ \t]+")
_CONTENT = re.compile(rb"[^ \t\r\n\x0b\x0c]")


class CsvSource(Source):
    """Reads a CSV, TSV, whitespace-separated or gzipped CSV file in blocks of whole lines."""

    def __init__(self, stream: io.BufferedIOBase, display: str, options: ReadOptions, *,
                 gz: bool = False) -> None:
        self.display = display
        self.options = options
        self._hashing = HashingReader(stream)
        raw: io.BufferedIOBase = io.BufferedReader(self._hashing, buffer_size=1 << 20)
        if gz:
            raw = gzip.GzipFile(fileobj=raw, mode="rb")
        self._stream = raw
        self._pending = self._read(SNIFF_BYTES)
        self._data_start = 0
        if self._pending.startswith(BOM):
            self._pending = self._pending[len(BOM):]
            self._data_start = len(BOM)
        self._line_no = 1
        self._skip_blank_lines()
        if not self._pending.strip():
            raise InputDataError(f"{display}: the file is empty")
        self.layout = sniff_layout(self._pending, options, display, self._line_no)
        if self.layout.header:
            self._drop_header()
        if self.layout.id_idx is not None:
            self.id_name = self.layout.names[self.layout.id_idx] if self.layout.header else "id"
        self.feature_columns = self.layout.feature_idx
        self.column_names = self.layout.names if self.layout.header else None
        self._extra_columns = len(self.layout.names) != N_FEATURES
        self._options = self._arrow_options()

    # -- reading raw bytes --------------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise self._read_error(exc) from None

    def _readinto(self, view: memoryview) -> int:
        try:
            return self._stream.readinto(view) or 0
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise self._read_error(exc) from None

    def _read_error(self, exc: BaseException) -> BaseException:
        if isinstance(self._stream, gzip.GzipFile):
            return InputDataError(f"{self.display}: not a valid gzip file ({exc})")
        return exc

    def _skip_blank_lines(self) -> None:
        """Drop the blank lines before the first line with content, however many, counting
        them; then read ahead enough for the sniffer. Memory stays at one read-ahead."""
        while True:
            content = _CONTENT.search(self._pending)
            end = content.start() if content else len(self._pending)
            cut = self._pending.rfind(b"\n", 0, end) + 1
            if cut:
                self._line_no += self._pending.count(b"\n", 0, cut)
                self._data_start += cut
                self._pending = self._pending[cut:]
            if content:
                break
            if len(self._pending) >= SNIFF_BYTES:  # one line of blanks, longer than a row
                raise LineError(self.display, self._line_no,
                                f"is longer than {SNIFF_BYTES} bytes; this is not a file of "
                                "64-feature rows")
            more = self._read(SNIFF_BYTES)
            if not more:
                return
            self._pending += more
        while len(self._pending) < SNIFF_BYTES and (
                more := self._read(SNIFF_BYTES - len(self._pending))):
            self._pending += more

    def _drop_header(self) -> None:
        """Drop the header line the sniffer read (the first line left)."""
        cut = self._pending.find(b"\n")
        self._data_start += len(self._pending) if cut < 0 else cut + 1
        self._pending = b"" if cut < 0 else self._pending[cut + 1:]
        self._line_no += 1

    # -- reading one part of a file ------------------------------------------------------------

    def restrict(self, begin: int, stop: int) -> None:
        """Read only the lines that start in bytes ``[begin, stop)`` of the file.

        Splits one large file into parts that score independently (on a cluster): the layout
        (delimiter, header, columns) is the whole file's, each line belongs to exactly one
        part, and adjacent ranges cover the data exactly once. Line numbers restart at 1 in a
        part that does not start the data (the caller shifts them by the lines before it).
        Only for plain files opened from a path, before :meth:`batches`.
        """
        raw = self._hashing.raw
        if isinstance(self._stream, gzip.GzipFile) or not hasattr(raw, "fileno"):
            raise UsageError(f"{self.display}: only uncompressed files can be read in parts")
        fd = raw.fileno()
        first = max(self._data_start, line_start(fd, begin))
        last = max(first, line_start(fd, stop))
        if first != self._data_start:
            self._line_no = 1
        # The whole-file stream stays open (owned by the range) until the source closes.
        self._hashing = HashingReader(RangeReader(fd, first, last, owner=self._stream))
        self._stream = io.BufferedReader(self._hashing, buffer_size=1 << 20)
        self._pending = b""

    @property
    def next_line(self) -> int:
        """The number the next line read would get (after :meth:`batches`: lines + 1)."""
        return self._line_no

    def _line_blocks(self) -> Iterator[tuple[memoryview, int, int]]:
        """Blocks of about ``chunk_bytes`` of whole lines: (bytes, first line number, lines).

        Each block is read into a fresh buffer that pyarrow parses in place (no copies).
        """
        size = self.options.chunk_bytes
        carry, self._pending = self._pending, b""
        line_no = self._line_no
        eof = False
        while True:
            buf = bytearray(len(carry) + size)
            buf[:len(carry)] = carry
            end = len(carry)
            while not eof and end < len(buf):
                n = self._readinto(memoryview(buf)[end:])
                eof = n == 0
                end += n
            if end == 0:
                return
            cut = end if eof else buf.rfind(b"\n", 0, end) + 1
            while cut == 0:
                if end > MAX_LINE_BYTES:
                    raise LineError(
                        self.display, line_no,
                        f"is longer than {MAX_LINE_BYTES >> 20} MiB; this is not a file of "
                        "64-feature rows",
                    )
                buf.extend(bytes(size))
                n = self._readinto(memoryview(buf)[end:])
                eof = n == 0
                end += n
                cut = end if eof else buf.rfind(b"\n", 0, end) + 1
            carry = bytes(buf[cut:end])
            if self.layout.whitespace:
                buf = bytearray(_WS_RUNS.sub(b" ", _WS_EDGES.sub(b"", buf[:cut])))
                cut = len(buf)
            newlines = buf.count(b"\n", 0, cut)
            yield memoryview(buf)[:cut], line_no, newlines
            line_no += newlines
            self._line_no = line_no
            if eof and not carry:
                return

    # -- parsing -------------------------------------------------------------------------------

    def _arrow_options(self) -> dict[str, Any]:
        """pyarrow's options for this layout: blank lines kept (as null rows) so rows = lines."""
        layout = self.layout
        names = [f"c{i}" for i in range(len(layout.names))]
        types: dict[str, pa.DataType] = {names[i]: pa.float64() for i in layout.feature_idx}
        if layout.id_idx is not None:
            types[names[layout.id_idx]] = pa.string()
        if layout.label_idx is not None:
            types[names[layout.label_idx]] = pa.int64()
        return {
            "read_options": pacsv.ReadOptions(column_names=names, block_size=1 << 20),
            "parse_options": pacsv.ParseOptions(delimiter=layout.delimiter.decode(),
                                                ignore_empty_lines=False),
            "convert_options": pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        }

    def _parse(self, data: bytes | memoryview) -> pa.Table:
        return pacsv.read_csv(pa.py_buffer(data), **self._options)

    def batches(self) -> Iterator[Batch]:
        first_row = 0
        for block, line_no, newlines in self._line_blocks():
            for batch in self._block_batches(block, line_no, newlines, first_row):
                first_row += batch.n_rows
                yield batch

    def _block_batches(self, block: memoryview, line_no: int, newlines: int,
                       first_row: int) -> Iterator[Batch]:
        """Parse a block in one go; blank or bad lines send it to the slow path.

        Blank lines are not rows (as pandas and numpy skip them): a block that holds some is
        parsed without them, so they cost a byte scan, not a row of 64 nulls each. A block
        that fails is cut into windows of at most ``SLOW_WINDOW`` bytes, so that the rows
        rejected at once, and the work on them, stay bounded.
        """
        numbers: np.ndarray | None = None
        data: bytes | memoryview = block
        if has_blank_lines(block.obj, len(block)):  # type: ignore[arg-type]
            data, numbers = drop_blank_lines(block, line_no)
            lines = len(numbers)
            if not lines:
                return
        else:
            lines = newlines + (0 if block[-1:] == b"\n" else 1)
        batch = self._fast_batch(data, line_no, lines, numbers, first_row)
        if batch is not None:
            yield batch
            return
        data = bytes(data)
        start = k = 0
        while start < len(data):
            stop = len(data)
            if stop - start > SLOW_WINDOW:
                stop = data.rfind(b"\n", start, start + SLOW_WINDOW) + 1 or (
                    data.find(b"\n", start + SLOW_WINDOW) + 1 or len(data))
            n = data.count(b"\n", start, stop) + (0 if data[stop - 1:stop] == b"\n" else 1)
            window = data[start:stop]
            window_numbers = (np.arange(line_no + k, line_no + k + n) if numbers is None
                              else numbers[k:k + n])
            batch = self._fast_batch(window, 0, n, window_numbers, first_row)
            if batch is None:
                batch = self._slow_batch(window, window_numbers, first_row)
            yield batch
            first_row += batch.n_rows
            start, k = stop, k + n

    def _fast_batch(self, data: bytes | memoryview, line_no: int, lines: int,
                    numbers: np.ndarray | None, first_row: int) -> Batch | None:
        """The batch of a block that parses clean in one go (None when it does not)."""
        try:
            # pyarrow drops a byte-order mark that starts a buffer: such a block is checked
            # line by line, where the mark is rejected wherever the block happened to begin.
            table = None if data[:3] == BOM else self._parse(data)
        except pa.ArrowInvalid:
            return None
        if table is None or table.num_rows != lines or self._has_nulls(table):
            return None
        batch = self._table_batch(table, first_row)
        if batch.X.size and not np.isfinite(sum(batch.extrema())):
            return None
        if numbers is None:
            batch.line_fn = lambda idx: line_no + idx
        else:
            batch.lines = numbers
        return batch

    def _empty_batch(self, first_row: int) -> Batch:
        batch = Batch(X=np.empty((0, N_FEATURES), np.float32),
                      rows=np.empty(0, np.int64), n_rows=0)
        if self.layout.label_idx is not None:
            batch.truth = np.empty(0, np.int64)
        if self.layout.id_idx is not None:
            batch.ids = string_array([])
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
        return Batch(X=X, rows=np.arange(first_row, first_row + n), n_rows=n, ids=ids,
                     truth=truth)

    def _has_nulls(self, table: pa.Table) -> bool:
        """True when some parsed row has an empty cell (or is a blank line)."""
        layout = self.layout
        if any(table.column(i).null_count for i in layout.feature_idx):
            return True
        return layout.label_idx is not None and bool(table.column(layout.label_idx).null_count)

    # -- the slow path: a block with bad lines -------------------------------------------------

    def _slow_batch(self, block: bytes, numbers: np.ndarray, first_row: int) -> Batch:
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
            batch = self._empty_batch(0)
            idx = np.empty(0, np.int64)
        batch.rows = first_row + idx
        batch.lines = numbers[idx]
        batch.n_rows = len(lines)
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
            return self._parse(data)
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
        return not (layout.label_idx is not None and table.column(layout.label_idx).null_count)

    def consumed(self) -> int:
        return self._hashing.count

    def digest(self) -> str:
        return self._hashing.sha256.hexdigest()

    def close(self) -> None:
        self._stream.close()


class LineError(InputDataError):
    """A problem with one whole line, found while cutting the file into blocks.

    Keeps the line number apart from the message, so a part of a split file can report it
    in the whole file's numbering.
    """

    def __init__(self, display: str, line: int, problem: str) -> None:
        self.display, self.line, self.problem = display, line, problem
        super().__init__(f"{display}: line {line} {problem}")

    def shifted(self, lines: int) -> LineError:
        return LineError(self.display, self.line + lines, self.problem)
