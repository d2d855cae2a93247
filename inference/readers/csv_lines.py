"""The lines of a block of CSV text as arrays of offsets: no Python object per line.

Blank lines are found and dropped here, and the lines of a failing block are classified in
bulk (column counts by counting delimiters), so that the work per line stays a few numpy
operations whatever the file holds.
"""

from __future__ import annotations

import numpy as np

NEWLINE, CR, QUOTE = 10, 13, 34
BOM = b"\xef\xbb\xbf"


def has_blank_lines(buf: bytes | bytearray, end: int) -> bool:
    """True when the whole lines in ``buf[:end]`` include an empty one (or a lone CR)."""
    head = bytes(buf[:2])
    return (head[:1] == b"\n" or head == b"\r\n" or (end == 1 and head[:1] == b"\r")
            or buf.find(b"\n\n", 0, end) >= 0 or buf.find(b"\n\r\n", 0, end) >= 0
            or (end >= 2 and bytes(buf[end - 2:end]) == b"\n\r"))


class Lines:
    """The lines of ``data`` (each ending in a newline), their file line numbers, and
    ``take`` to join any subset of them back into bytes."""

    def __init__(self, data: bytes, numbers: np.ndarray) -> None:
        if not data.endswith(b"\n"):
            data += b"\n"
        self.data = data
        self.array = np.frombuffer(data, dtype=np.uint8)
        #: Offset of each line's newline; each line is ``[starts[k], ends[k]]``, newline included.
        self.ends = np.flatnonzero(self.array == NEWLINE)
        self.starts = np.empty_like(self.ends)
        self.starts[:1] = 0
        self.starts[1:] = self.ends[:-1] + 1
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.ends)

    def line(self, k: int) -> bytes:
        return self.data[int(self.starts[k]):int(self.ends[k]) + 1]

    def take(self, idx: np.ndarray) -> bytes:
        """The bytes of the lines at positions ``idx`` (ascending), joined."""
        if len(idx) == len(self):
            return self.data
        keep = np.zeros(len(self), dtype=bool)
        keep[idx] = True
        return self.array[np.repeat(keep, self.ends - self.starts + 1)].tobytes()

    def texts(self, idx: np.ndarray, limit: int) -> list[str]:
        """The lines at ``idx`` as text for a report: decoded (bad bytes escaped), line end
        removed, cut to ``limit`` characters (marked ``...``). One decode for them all."""
        text = self.take(idx).decode("utf-8", errors="backslashreplace")
        out = text.split("\n")[:-1]
        for i, line in enumerate(out):
            if line.endswith("\r") or len(line) > limit:
                line = line.rstrip("\r")
                out[i] = line[:limit] + "..." if len(line) > limit else line
        return out

    def count(self, byte: int) -> np.ndarray:
        """How many times ``byte`` occurs in each line."""
        if not len(self):
            return np.empty(0, dtype=np.int64)
        hits = (self.array == byte).view(np.uint8)
        return np.add.reduceat(hits, self.starts, dtype=np.int64)

    def lone_lines(self) -> np.ndarray:
        """Mask of the lines that must be diagnosed alone, all of them bad: bytes that are
        not UTF-8 (pyarrow refuses a whole buffer for them), a byte-order mark (pyarrow
        drops one that starts a buffer, so a lone line would pass), or a carriage return
        inside the line (pyarrow ends a record there: the line would be two)."""
        alone = self.count(CR) > self.ends_crlf()
        where = 0
        while (where := self.data.find(BOM, where)) >= 0:
            alone[np.searchsorted(self.ends, where)] = True
            where += len(BOM)
        try:
            self.data.decode("utf-8")
        except UnicodeDecodeError:
            high = np.flatnonzero(self.count_where(self.array >= 0x80))
            for k in high:
                try:
                    self.line(int(k)).decode("utf-8")
                except UnicodeDecodeError:
                    alone[k] = True
        return alone

    def count_where(self, hits: np.ndarray) -> np.ndarray:
        return np.add.reduceat(hits.view(np.uint8), self.starts, dtype=np.int64)

    def field_counts(self, delimiter: int) -> tuple[np.ndarray, np.ndarray]:
        """(fields per line, mask of the lines where that count is certain): lines without a
        quote or a carriage return inside them split at every delimiter."""
        counts = self.count(delimiter) + 1
        plain = (self.count(QUOTE) == 0) & (self.count(CR) == self.ends_crlf())
        return counts, plain

    def ends_crlf(self) -> np.ndarray:
        """1 for each line that ends in CRLF, else 0."""
        return (self.array[np.maximum(self.ends - 1, 0)] == CR).astype(np.int64)


def drop_blank_lines(block: bytes | memoryview, first_line: int) -> tuple[bytes, np.ndarray]:
    """``block`` without its blank lines, and the file line number of each line kept.

    Byte masks only (a few bytes of memory per byte of input): a block of newlines costs no
    more than a block of rows.
    """
    data = bytes(block)
    if not data.endswith(b"\n"):
        data += b"\n"
    a = np.frombuffer(data, dtype=np.uint8)
    newline = a == NEWLINE
    starts = np.empty_like(newline)  # the first byte of each line
    starts[0] = True
    starts[1:] = newline[:-1]
    cr_blank = np.zeros_like(newline)  # a line that is a lone CR: its CR
    cr_blank[:-1] = starts[:-1] & (a[:-1] == CR) & newline[1:]
    drop = starts & newline
    drop |= cr_blank
    drop[1:] |= cr_blank[:-1]
    kept = ~(drop[starts])  # per line: not blank
    numbers = first_line + np.flatnonzero(kept)
    if kept.all():
        return data, numbers
    return a[~drop].tobytes(), numbers
