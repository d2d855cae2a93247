"""Byte streams under the CSV reader: a pass-through that hashes what it reads, and one
range of a file read with ``os.pread`` (for scoring a large file in parts)."""

from __future__ import annotations

import hashlib
import io
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer


class HashingReader(io.RawIOBase):
    """Passes reads through and hashes every byte, so the input is read once, not twice."""

    def __init__(self, raw: io.BufferedIOBase | io.RawIOBase) -> None:
        #: The stream read from.
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()

    def readinto(self, buffer: Buffer, /) -> int:
        n = self.raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
            self.count += n
        return n or 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size) or b""
        self.sha256.update(data)
        self.count += len(data)
        return data


class RangeReader(io.RawIOBase):
    """Reads bytes ``[start, stop)`` of a file descriptor with pread (no shared position).

    ``owner`` holds the descriptor open; it is closed with the range.
    """

    def __init__(self, fd: int, start: int, stop: int, *, owner: io.IOBase) -> None:
        self._fd, self._pos, self._stop, self._owner = fd, start, stop, owner

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self._owner.close()
        super().close()

    def readinto(self, buffer: Buffer, /) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._stop - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [view[:n]], self._pos)  # into the caller's block: no copy
        self._pos += got
        return got


def line_start(fd: int, pos: int) -> int:
    """The first offset at or after ``pos`` where a line starts (the file's size if none)."""
    if pos <= 0:
        return 0
    offset = pos - 1
    while chunk := os.pread(fd, 1 << 16, offset):
        found = chunk.find(b"\n")
        if found >= 0:
            return offset + found + 1
        offset += len(chunk)
    return offset
