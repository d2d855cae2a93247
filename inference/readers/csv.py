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
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..arrow import string_array, to_numpy
from ..contract import N_FEATURES
from ..errors import InputDataError, UsageError
from .base import Batch, Reject, Source
from .csv_diagnosis import diagnose_line
from .csv_layout import SNIFF_BYTES, sniff_layout
from .read_options import ReadOptions
from .streams import HashingReader, RangeReader, line_start

#: A longer line fails its file: a row of 64 numbers is a few hundred bytes at most.
MAX_LINE_BYTES = 16 << 20
#: Below this many lines a failing block is diagnosed line by line instead of bisected.
SMALL_BLOCK_LINES = 16
BOM = b"\xef\xbb\xbf"
_WS_EDGES = re.compile(rb"(?m)^[ \t]+|[ \t]+(?=\r?$)")
_WS_RUNS = re.compile(rb"[ \t]+")


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
        if not self._pending.strip():
            raise InputDataError(f"{display}: the file is empty")
        self.layout = sniff_layout(self._pending, options, display)
        self._line_no = 1
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

    def _drop_header(self) -> None:
        """Drop the header line the sniffer read (the first non-blank one) and any blank
        lines before it."""
        start, line_no = 0, 1
        while True:
            cut = self._pending.find(b"\n", start)
            line = self._pending[start:] if cut < 0 else self._pending[start:cut]
            if line.strip() or cut < 0:
                break
            start, line_no = cut + 1, line_no + 1
        self._data_start += len(self._pending) if cut < 0 else cut + 1
        self._pending = b"" if cut < 0 else self._pending[cut + 1:]
        self._line_no = line_no + 1

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
            batch = self._block_batch(block, line_no, newlines, first_row)
            first_row += batch.n_rows
            yield batch

    def _block_batch(self, block: memoryview, line_no: int, newlines: int,
                     first_row: int) -> Batch:
        """Parse a block in one go; blank or bad lines send it to the slow path."""
        lines = newlines + (0 if block[-1:] == b"\n" else 1)
        try:
            # pyarrow drops a byte-order mark that starts a buffer: such a block is checked
            # line by line, where the mark is rejected wherever the block happened to begin.
            table = None if block[:3] == BOM else self._parse(block)
        except pa.ArrowInvalid:
            table = None
        if table is not None and table.num_rows == lines and not self._has_nulls(table):
            batch = self._table_batch(table, first_row)
            X = batch.X
            if not X.size or np.isfinite(sum(batch.extrema())):
                batch.line_fn = lambda idx: line_no + idx
                return batch
        return self._slow_batch(bytes(block), line_no, first_row)

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

    def _slow_batch(self, block: bytes, line_no: int, first_row: int) -> Batch:
        """Find the bad lines of a block by bisection, keeping the good rows' values exact.

        Blank lines are not rows: they are skipped here, as pandas and numpy skip them.
        """
        lines = block.split(b"\n")
        numbered = [(line_no + i, ln + b"\n") for i, ln in enumerate(lines) if ln.strip(b"\r")]
        expected = len(numbered)
        good: list[tuple[int, pa.Table]] = []
        rejects: list[Reject] = []
        self._bisect(numbered, 0, len(numbered), first_row, good, rejects)
        parts = [t for _, t in good]
        rows = np.concatenate([np.arange(r, r + t.num_rows) for r, t in good]) if good else (
            np.empty(0, np.int64))
        line_nums = np.array([n for n, _ in numbered], dtype=np.int64)
        if parts:
            table = pa.concat_tables(parts)
            batch = self._table_batch(table, 0)
            batch.rows = rows
        else:
            batch = Batch(X=np.empty((0, N_FEATURES), np.float32), rows=rows, n_rows=0)
            if self.layout.label_idx is not None:
                batch.truth = np.empty(0, np.int64)
            if self.layout.id_idx is not None:
                batch.ids = string_array([])
        batch.lines = line_nums[rows - first_row]
        batch.n_rows = expected
        batch.rejects = sorted(rejects, key=lambda r: r.row)
        return batch

    def _bisect(self, numbered: list[tuple[int, bytes]], lo: int, hi: int, first_row: int,
                good: list[tuple[int, pa.Table]], rejects: list[Reject]) -> None:
        if lo >= hi:
            return
        if hi - lo > SMALL_BLOCK_LINES:
            data = b"".join(ln for _, ln in numbered[lo:hi])
            table = self._try_parse(data)
            if table is not None and table.num_rows == hi - lo and self._clean(table):
                good.append((first_row + lo, table))
                return
            mid = (lo + hi) // 2
            self._bisect(numbered, lo, mid, first_row, good, rejects)
            self._bisect(numbered, mid, hi, first_row, good, rejects)
            return
        for k in range(lo, hi):
            line, text = numbered[k]
            table = self._try_parse(text)
            if table is not None and table.num_rows == 1 and self._clean(table):
                good.append((first_row + k, table))
            else:
                rejects.append(diagnose_line(self.layout, first_row + k, line, text))

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
