"""Byte streams under the readers: a pass-through that hashes what it reads, one range of a
file read with ``os.pread`` (for scoring a large file in parts), and what reading a pipe or a
device takes: its first bytes, read and handed back in front of the rest, and a bounded copy
to a temporary file for the formats that need random access (NPY, Parquet).

Light on purpose (no numpy, no pyarrow): the command line loads it before the scoring stack.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import select
import stat
import tempfile
from typing import TYPE_CHECKING, Any

from .. import stopping
from ..errors import ReadError, read_error

if TYPE_CHECKING:
    from typing_extensions import Buffer

#: Bytes copied at a time from a stream to its temporary file.
SPOOL_CHUNK = 1 << 20


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


def read_up_to(stream: io.BufferedIOBase, n: int) -> bytes:
    """The next ``n`` bytes of a stream, fewer only where it ends (a pipe may give less a
    read)."""
    head = b""
    while len(head) < n and (more := stream.read(n - len(head))):
        head += more
    return head


class Prefixed(io.RawIOBase):
    """Bytes already read from a stream, then the rest of the stream."""

    def __init__(self, head: bytes, rest: io.BufferedIOBase) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._rest.readinto(view) or 0

    def close(self) -> None:
        if not self.closed:
            self._rest.close()
        super().close()


#: How long a read of a pipe waits for data before it looks whether the run is stopping.
POLL_SECONDS = 0.2


class StoppableReader(io.RawIOBase):
    """A pipe, FIFO, terminal or device (``raw``, owned) read in waits of at most
    :data:`POLL_SECONDS`. A stop raises on the main thread, but the read-ahead thread may be
    blocked in a read of a producer that stalls, and the stop waits for it: asked to stop
    (:func:`..stopping.asked`), a waiting read gives up instead (OSError ECANCELED)."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self._raw = raw
        self._fd = raw.fileno()
        self._poll = select.poll()  # not select(): it refuses descriptors from 1024 on
        self._poll.register(self._fd, select.POLLIN)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: Buffer, /) -> int:
        while not self._poll.poll(POLL_SECONDS * 1000):
            if stopping.asked():  # not EINTR: io's buffered readers retry that
                raise OSError(errno.ECANCELED, "the run is stopping")
        return self._raw.readinto(buffer) or 0

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


def waits(raw: io.RawIOBase) -> bool:
    """Whether a read of ``raw`` can wait on a producer: anything but a regular file."""
    try:
        return not stat.S_ISREG(os.fstat(raw.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False  # no descriptor (an in-memory stream): nothing to wait on


class ReadAdapter(io.RawIOBase):
    """Any object with ``read(n)`` (a replaced ``sys.stdin.buffer``) as a raw stream, to be
    buffered and read as it comes."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Buffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view)) or b""
        view[:len(data)] = data
        return len(data)


def spool(stream: io.BufferedIOBase, display: str, *, head: bytes = b"",
          limit: int | None = None) -> tuple[io.BufferedRandom, bool]:
    """Copy ``head`` (bytes already read from the stream), then the rest of the stream, to an
    anonymous temporary file; return it at its start, and whether the stream goes on.

    With a ``limit``, at most that many bytes in all are copied, and one more is read to tell
    whether the stream goes on (a stream longer than its format declares); without one the
    stream is copied to its end. The caller checks what it can of the format before: a stream
    that is not what it claims fails on its first bytes, not once it has filled the disk.

    A read that fails is the stream's I/O error; a write that fails (the disk is full) is one
    line naming the directory, and the temporary file is gone (it never had a name).
    """
    try:
        out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, closed by it
    except OSError as exc:
        raise _spool_error(display, exc) from None
    try:
        _write(out, head, display)
        left = None if limit is None else limit - len(head)
        while left is None or left > 0:
            try:
                chunk = stream.read(SPOOL_CHUNK if left is None else min(SPOOL_CHUNK, left))
            except OSError as exc:
                raise read_error(display, exc) from None
            if not chunk:
                break
            _write(out, chunk, display)
            if left is not None:
                left -= len(chunk)
        more = False
        if left is not None and left <= 0:
            try:
                more = left < 0 or bool(stream.read(1))
            except OSError as exc:
                raise read_error(display, exc) from None
        try:
            out.flush()
            out.seek(0)
        except OSError as exc:
            raise _spool_error(display, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):  # the flush of a full disk fails again
            out.close()
        raise
    return out, more


def _write(out: io.BufferedRandom, data: bytes, display: str) -> None:
    try:
        out.write(data)
    except OSError as exc:
        raise _spool_error(display, exc) from None


def _spool_error(display: str, exc: OSError) -> ReadError:
    try:
        where = f" in {tempfile.gettempdir()}"
    except OSError:  # no usable temporary directory: the error says so
        where = ""
    return ReadError(f"{display}: cannot copy the stream to a temporary file{where} "
                     f"({exc.strerror or exc}); set TMPDIR to use another directory")
