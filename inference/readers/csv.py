"""Streaming CSV reader: bytes to blocks of whole lines.

The file is read in blocks of whole lines (blank lines before the first line skipped and
counted, a header dropped) that :class:`.csv_parse.BlockParser` turns into batches: a clean
block in one parse on all cores, a block with bad lines in bounded windows, diagnosed in
bulk.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import zlib
from collections.abc import Iterator

import numpy as np

from ..errors import InputDataError, UsageError
from .base import Batch, Source, output_names
from .csv_layout import SNIFF_BYTES
from .csv_lines import drop_blank_lines, has_blank_lines
from .csv_parse import parser_for
from .read_options import ReadOptions
from .streams import HashingReader, RangeReader, line_start

#: A longer line fails its file: a row of 64 numbers is a few hundred bytes at most.
MAX_LINE_BYTES = 16 << 20
BOM = b"\xef\xbb\xbf"
#: A block with bad lines is diagnosed in windows of this many bytes (whole lines).
SLOW_WINDOW = 1 << 20
#: A file of more than one block is read in blocks of this fraction of it, of at least this
#: size (see :func:`block_bytes`).
MIN_BLOCKS = 8
MIN_BLOCK_BYTES = 2 << 20
_WS_EDGES = re.compile(rb"(?m)^[ \t]+|[ \t]+(?=\r?$)")
_WS_RUNS = re.compile(rb"[ \t]+")
_CONTENT = re.compile(rb"[^ \t\r\n\x0b\x0c]")


class CsvSource(Source):
    """Reads a CSV, TSV, whitespace-separated or gzipped CSV file in blocks of whole lines."""

    #: The bytes ``[first, last)`` a restricted source reads (see :meth:`restrict`).
    _range: tuple[int, int] | None = None

    def __init__(self, stream: io.BufferedIOBase, display: str, options: ReadOptions, *,
                 gz: bool = False) -> None:
        self.display = display
        self.options = options
        self._hashing = HashingReader(stream)
        raw: io.BufferedIOBase = io.BufferedReader(self._hashing, buffer_size=1 << 20)
        if gz:
            raw = gzip.GzipFile(fileobj=raw, mode="rb")
        self._stream = raw
        #: The file's size, when it bounds what is left to read (a plain regular file).
        self._size = None if gz else _regular_size(stream)
        self._pending = self._read(SNIFF_BYTES)
        self._data_start = 0
        if self._pending.startswith(BOM):
            self._pending = self._pending[len(BOM):]
            self._data_start = len(BOM)
        self._line_no = 1
        self._skip_blank_lines()
        if not self._pending.strip():
            raise InputDataError(f"{display}: the file is empty")
        self._parser = parser_for(self._pending, options, display, self._line_no)
        self.layout = self._parser.layout
        if self.layout.header:
            self._drop_header()
        self.id_idx = self.layout.id_idx
        if self.layout.id_idx is not None:  # "id" without a header, column_N without a name
            self.id_name = (output_names([self.layout.id_idx], self.layout.names, True)[0]
                            if self.layout.header else "id")
        self.feature_columns = self.layout.feature_idx
        self.column_names = self.layout.names if self.layout.header else None
        self.kept_fields = self._parser.kept_fields

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
        self._range = (first, last)
        self._stream = io.BufferedReader(self._hashing, buffer_size=1 << 20)
        self._pending = b""

    @property
    def next_line(self) -> int:
        """The number the next line read would get (after :meth:`batches`: lines + 1)."""
        return self._line_no

    def _line_blocks(self) -> Iterator[tuple[memoryview, int, int]]:
        """Blocks of about ``chunk_bytes`` of whole lines: (bytes, first line number, lines).

        Each block is read into a fresh buffer that pyarrow parses in place (no copies), of
        :func:`block_bytes`.
        """
        size = block_bytes(self.options.chunk_bytes, self._size)
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
            if cut == 0:  # the block holds part of one line: read on to its end
                while cut == 0 and end <= MAX_LINE_BYTES:
                    buf.extend(bytes(size))
                    n = self._readinto(memoryview(buf)[end:])
                    eof = n == 0
                    end += n
                    cut = end if eof else buf.rfind(b"\n", 0, end) + 1
                if (buf.find(b"\n", 0, cut) + 1 or cut or end) > MAX_LINE_BYTES:
                    raise LineError(
                        self.display, line_no,
                        f"is longer than {MAX_LINE_BYTES >> 20} MiB; this is not a file of "
                        "64-feature rows",
                    )
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
        batch = self._parser.fast_batch(data, line_no, lines, numbers, first_row)
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
            batch = self._parser.fast_batch(window, 0, n, window_numbers, first_row)
            if batch is None:
                batch = self._parser.slow_batch(window, window_numbers, first_row)
            yield batch
            first_row += batch.n_rows
            start, k = stop, k + n

    def consumed(self) -> int:
        return self._hashing.count

    def digest(self) -> str:
        return self._hashing.sha256.hexdigest()

    def read_range(self) -> tuple[int, int, str] | None:
        """After :meth:`restrict` and a read to the end: the bytes ``[first, last)`` read and
        their sha256 (None when the part was not read to its end)."""
        if self._range is None or self._hashing.count != self._range[1] - self._range[0]:
            return None
        return *self._range, self.digest()

    def close(self) -> None:
        self._stream.close()


def largest_block(chunk_bytes: int) -> int:
    """The largest block read for ``chunk_bytes``: half the longest line allowed at most."""
    return min(chunk_bytes, MAX_LINE_BYTES // 2)


def block_bytes(chunk_bytes: int, file_size: int | None) -> int:
    """The size of a file's read blocks: no larger than the file (a 20 kB file does not pay
    for zeroing 8 MiB); for a file of more than one block, an eighth of it
    (:data:`MIN_BLOCKS`) but no less than :data:`MIN_BLOCK_BYTES`, so that parsing the next
    block overlaps scoring this one (a 15 MB file read as two 8 MiB blocks waited for the
    first and scored the last alone, half its time); never more than half the longest line
    allowed, so that such a line always spans blocks and is caught. Streams of unknown size
    (stdin, gzip) use ``chunk_bytes``."""
    chunk_bytes = largest_block(chunk_bytes)
    if file_size is None:
        return chunk_bytes
    if file_size < chunk_bytes:
        return file_size + 1  # the whole file, and its end, in one read
    return min(chunk_bytes, max(MIN_BLOCK_BYTES, file_size // MIN_BLOCKS))


def _regular_size(stream: io.BufferedIOBase) -> int | None:
    """The size of the regular file behind ``stream`` (None for pipes and the like)."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class LineError(InputDataError):
    """A problem with one whole line, found while cutting the file into blocks.

    Keeps the line number apart from the message, so a part of a split file can report it
    in the whole file's numbering. ``problem`` follows the line number: ``is longer than
    ...``, or a column and its problem (``, column 1 (id): ...``).
    """

    def __init__(self, display: str, line: int, problem: str) -> None:
        self.display, self.line, self.problem = display, line, problem
        gap = "" if problem.startswith(",") else " "
        super().__init__(f"{display}: line {line}{gap}{problem}")

    def shifted(self, lines: int) -> LineError:
        return LineError(self.display, self.line + lines, self.problem)
