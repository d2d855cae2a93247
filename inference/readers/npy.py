"""NPY reader: positioned reads of row ranges, never a memory map and never a pickle.

The header is checked against the file size before anything is allocated, and rows are read
with ``os.pread``, so a file truncated while it is scored gives an error, not a SIGBUS. A
pipe or a device is checked by the same header reader before anything is copied, then no
more than the bytes its header declares are copied to a temporary file.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.lib import format as npy_format

from ..contract import IMAGE_SHAPE, N_FEATURES
from ..errors import InputDataError, UsageError, read_error
from .base import Batch, Reject, Source, value_problem
from .read_options import NPY_HAS_NO_COLUMNS, ReadOptions
from .streams import read_up_to, spool

MAGIC = npy_format.MAGIC_PREFIX
MAX_HEADER_BYTES = 10_000
#: Magic, version and the shortest header length: any NPY file is at least this long.
SHORTEST_PREFIX = npy_format.MAGIC_LEN + 2
ACCEPTED_KINDS = "iuf"
#: Header readers by format version, and the width of the header length that follows the
#: version. 3.0 differs from 2.0 only in allowing UTF-8 text (see ``_numpy_header``).
HEADER_READERS: dict[tuple[int, int], Callable[..., tuple[tuple[int, ...], bool, np.dtype]]] = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
    (3, 0): npy_format.read_array_header_2_0,
}
LENGTH_BYTES = {(1, 0): 2, (2, 0): 4, (3, 0): 4}


class Hasher(Protocol):
    """The part of a hashlib object the reader uses (hashlib's own class is private)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _kind_problem(dtype: np.dtype) -> str | None:
    if dtype.hasobject:
        return "holds Python objects, which would need pickle; save a numeric array"
    if dtype.fields is not None:
        return f"has a structured dtype {dtype.descr}; save a plain numeric (N, 64) array"
    if dtype.kind not in ACCEPTED_KINDS:
        names = {"b": "boolean", "c": "complex", "U": "string", "S": "bytes", "M": "datetime",
                 "m": "timedelta", "V": "void"}
        return (f"has dtype {dtype.str} ({names.get(dtype.kind, dtype.kind)}); "
                "expected integers or floats")
    return None


@dataclass(frozen=True)
class Header:
    """What an NPY header declares, checked: a numeric (N, 64) or (N, 8, 8) array."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    #: Where the array's bytes start (the header's length).
    data_start: int

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        """Bytes of the whole file: the header, then the array it declares."""
        return self.data_start + self.n_rows * N_FEATURES * self.dtype.itemsize


def read_header(prefix: Callable[[int], bytes], fail: Callable[[str], Exception]) -> Header:
    """The header of an NPY file or stream, every check that needs no more than it made.

    ``prefix(n)`` gives the input's first ``n`` bytes, fewer only when it is shorter: a
    ``pread`` of a file, or what a stream gave so far. At most ``MAX_HEADER_BYTES`` and a few
    are asked for, so a stream that is not NPY fails on its first bytes; whether the input
    holds the bytes the header declares is the caller's to check (``Header.size``).
    """
    prefix12 = prefix(12)
    if not prefix12:
        raise fail("the file is empty")
    if not prefix12.startswith(MAGIC):
        raise fail("not an NPY file (bad magic bytes); was it written by numpy.save?")
    if len(prefix12) < SHORTEST_PREFIX:
        raise fail("the NPY header is truncated")
    version = npy_format.read_magic(io.BytesIO(prefix12))
    if version not in HEADER_READERS:
        raise fail(f"unsupported NPY format version {version[0]}.{version[1]}")
    start = npy_format.MAGIC_LEN + LENGTH_BYTES[version]
    if len(prefix12) < start:
        raise fail("the NPY header is truncated")
    hlen = int.from_bytes(prefix12[npy_format.MAGIC_LEN:start], "little")
    if hlen > MAX_HEADER_BYTES:
        raise fail(f"the NPY header claims {hlen} bytes; refusing a header that large")
    raw = prefix(start + hlen)
    if len(raw) < start + hlen:
        raise fail("the NPY header is truncated")
    shape, fortran, dtype = _numpy_header(version, raw, start, fail)
    if not all(d >= 0 for d in shape):
        raise fail("the NPY header is not valid")
    problem = _kind_problem(dtype)
    if problem:
        raise fail(f"the array {problem}")
    if not ((len(shape) == 2 and shape[1] == N_FEATURES)
            or (len(shape) == 3 and shape[1:] == IMAGE_SHAPE)):
        raise fail(
            f"the array has shape {shape}; expected (N, {N_FEATURES}) or "
            f"(N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})"
        )
    return Header(shape, fortran, dtype, start + hlen)


def _numpy_header(version: tuple[int, int], raw: bytes, start: int,
                  fail: Callable[[str], Exception]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """numpy's own header reader, behind two guards.

    The header must first be a Python expression: numpy would retry one that is not as a
    Python 2 header (with a warning), and a header of thousands of nested operators
    overflows the parser.
    """
    try:
        source = raw[start:].decode("utf-8" if version == (3, 0) else "latin1")
    except UnicodeDecodeError:
        raise fail("the NPY header is not valid") from None
    if version == (3, 0):
        # 3.0 is 2.0 with UTF-8 text, which numpy writes only for field names beyond
        # Latin-1. Escaped, the same literal is ASCII and reads as 2.0, so a structured
        # dtype is still named when it is refused.
        source = source.encode("ascii", "backslashreplace").decode("ascii")
        raw = raw[:npy_format.MAGIC_LEN] + len(source).to_bytes(4, "little") + source.encode()
    head = io.BytesIO(raw)
    head.seek(npy_format.MAGIC_LEN)
    try:
        ast.parse(source, mode="eval")
        # The size bound was checked on the bytes; escaping may have lengthened them.
        return HEADER_READERS[version](head, max_header_size=max(len(source),
                                                                 MAX_HEADER_BYTES))
    except (SyntaxError, ValueError, TypeError, KeyError):
        raise fail("the NPY header is not valid") from None
    except (RecursionError, MemoryError):  # the parser's stack, on a header of 10 kB
        raise fail("the NPY header is not valid: it nests too deeply") from None


class NpySource(Source):
    """Reads (N, 64) or (N, 8, 8) arrays of any integer or float dtype, byte order and layout."""

    def __init__(self, fd: int, display: str, options: ReadOptions) -> None:
        if options.names_columns():
            os.close(fd)
            raise UsageError(f"{display}: {NPY_HAS_NO_COLUMNS}")
        self.display = display
        self.options = options
        self._fd = fd
        self.feature_columns = list(range(N_FEATURES))
        self.size = os.fstat(fd).st_size
        self._consumed = 0
        self._sha: Hasher | None = None
        self._hasher: ThreadPoolExecutor | None = None
        self._hashing: Future[None] | None = None
        try:
            self._parse_header()
        except BaseException:
            os.close(fd)  # the caller only gets a source that opened
            raise

    @classmethod
    def from_stream(cls, stream: io.BufferedIOBase, display: str,
                    options: ReadOptions) -> NpySource:
        """Read a pipe or a device: its header first, checked as a file's is, then no more
        than the bytes it declares copied to a temporary file (positioned reads need one).

        A stream that is not NPY fails on its first bytes; one that ends early fails as a
        truncated file does, and one that goes on after the array as soon as it does.
        """
        if options.names_columns():
            raise UsageError(f"{display}: {NPY_HAS_NO_COLUMNS}")
        head = bytearray()

        def prefix(n: int) -> bytes:
            if len(head) < n:
                try:
                    head.extend(read_up_to(stream, n - len(head)))
                except OSError as exc:
                    raise read_error(display, exc) from None
            return bytes(head[:n])

        def fail(message: str) -> InputDataError:
            return InputDataError(f"{display}: {message}")

        header = read_header(prefix, fail)
        spooled, more = spool(stream, display, head=bytes(head), limit=header.size)
        with spooled:
            if more:
                raise fail(f"the stream goes on after the array it declares ({header.size} "
                           "bytes in all); it may hold several arrays, which is not supported")
            return cls(os.dup(spooled.fileno()), display, options)

    def _fail(self, message: str) -> InputDataError:
        return InputDataError(f"{self.display}: {message}")

    def _pread(self, n: int, offset: int) -> bytes:
        data = os.pread(self._fd, n, offset)
        if len(data) != n:
            raise self._fail(
                f"the file ended early: wanted {n} bytes at offset {offset}, got {len(data)} "
                "(was it truncated while being read?)"
            )
        return data

    def _parse_header(self) -> None:
        header = read_header(lambda n: os.pread(self._fd, n, 0), self._fail)
        self.n_rows = header.n_rows
        self.dtype = header.dtype
        #: Bytes one row takes in the file (for cutting it into parts).
        self.row_bytes = N_FEATURES * header.dtype.itemsize
        self.fortran = header.fortran
        self.shape = header.shape
        self.data_start = header.data_start
        expected = header.size
        if self.size < expected:
            raise self._fail(
                f"the file is truncated: its header declares {self.n_rows} rows "
                f"({expected} bytes in all) but it holds {self.size} bytes"
            )
        if self.size > expected:
            raise self._fail(
                f"the file has {self.size - expected} bytes after the array it declares; "
                "it may hold several arrays, which is not supported"
            )

    def _column_offsets(self) -> np.ndarray:
        """Byte offset of each feature's first value in a Fortran-ordered file."""
        n, item = self.n_rows, self.dtype.itemsize
        if len(self.shape) == 2:
            order = np.arange(N_FEATURES)
        else:
            i, j = np.divmod(np.arange(N_FEATURES), IMAGE_SHAPE[1])
            order = i + IMAGE_SHAPE[0] * j
        return self.data_start + order * n * item

    def _read_rows(self, a: int, b: int) -> np.ndarray:
        item = self.dtype.itemsize
        if not self.fortran:
            raw = self._pread((b - a) * N_FEATURES * item, self.data_start + a * N_FEATURES * item)
            if self._sha is not None:
                self._hash_later(self._sha, raw)
            return np.frombuffer(raw, dtype=self.dtype).reshape(b - a, N_FEATURES)
        out = np.empty((b - a, N_FEATURES), dtype=self.dtype)
        for k, offset in enumerate(self._column_offsets()):
            raw = self._pread((b - a) * item, int(offset) + a * item)
            out[:, k] = np.frombuffer(raw, dtype=self.dtype)
        return out

    def restrict(self, begin: int, stop: int) -> None:
        """Read only rows ``[begin, stop)``: one part of a large file scored on a cluster.

        Row numbers stay the file's own, so parts need no renumbering.
        """
        self._rows = (max(0, begin), min(self.n_rows, max(begin, stop)))

    def batches(self) -> Iterator[Batch]:
        first, last = getattr(self, "_rows", (0, self.n_rows))
        # C-ordered files are read front to back, so the hash comes for free on the way.
        whole = (first, last) == (0, self.n_rows)
        self._sha = None if self.fortran or not whole else hashlib.sha256(
            self._pread(self.data_start, 0))
        step = max(1, self.options.chunk_rows)
        for a in range(first, last, step):
            b = min(last, a + step)
            raw = self._read_rows(a, b)
            with np.errstate(over="ignore"):
                X = np.ascontiguousarray(raw, dtype=np.float32)
            batch = Batch(X=X, rows=np.arange(a, b), n_rows=b - a)
            self._consumed = self.data_start + b * N_FEATURES * self.dtype.itemsize
            if self.dtype.kind == "f" or self.dtype.itemsize > 4:
                self._reject_nonfinite(batch, raw)
            yield batch

    def _hash_later(self, sha: Hasher, raw: bytes) -> None:
        """Hash on a thread of its own (hashlib releases the GIL), overlapping the next read;
        at most one chunk waits, so memory stays bounded."""
        if self._hasher is None:
            self._hasher = ThreadPoolExecutor(1, thread_name_prefix="digits-hash")
        if self._hashing is not None:
            self._hashing.result()
        self._hashing = self._hasher.submit(sha.update, raw)

    def _hash_done(self) -> None:
        if self._hashing is not None:
            self._hashing.result()
            self._hashing = None
        if self._hasher is not None:
            self._hasher.shutdown()
            self._hasher = None

    def _reject_nonfinite(self, batch: Batch, raw: np.ndarray) -> None:
        X = batch.X
        if not X.size or np.isfinite(sum(batch.extrema())):
            return
        bad_rows = ~np.isfinite(X).all(axis=1)
        for i in np.flatnonzero(bad_rows):
            k = int(np.argmax(~np.isfinite(X[i])))
            value = raw[i, k].item()
            problem = value_problem(float(value)) or "is not finite"
            batch.rejects.append(
                Reject(int(batch.rows[i]), None, k + 1, None, f"value {value!r} {problem}")
            )
        batch.keep(~bad_rows)

    def consumed(self) -> int:
        return self._consumed

    def digest(self) -> str:
        self._hash_done()
        if self._sha is not None and self._consumed == self.size:
            return self._sha.hexdigest()
        sha = hashlib.sha256()
        offset = 0
        while chunk := os.pread(self._fd, 8 << 20, offset):
            sha.update(chunk)
            offset += len(chunk)
        return sha.hexdigest()

    def close(self) -> None:
        self._hash_done()
        os.close(self._fd)
