"""Reading inputs: one module per format, all yielding the same validated batches.

``ReadOptions``, ``DELIMITER_NAMES``, ``STDIN`` and ``detect_format`` load without numpy and
pyarrow, so the command line can use them before it loads the scoring stack; the readers
themselves load when an input is opened.
"""

from __future__ import annotations

import importlib
import io
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingInputError, UsageError, read_error
from ..formats import INPUT_FORMATS, input_format_of
from .read_options import DELIMITER_NAMES, ReadOptions
from .sniff import HEAD_BYTES, MAGIC, sniff_format
from .streams import Prefixed, ReadAdapter, StoppableReader, read_up_to, waits

if TYPE_CHECKING:
    from .base import Batch, Reject, Source

__all__ = [
    "DELIMITER_NAMES", "FORMATS", "STDIN", "Batch", "ReadOptions", "Reject", "Source",
    "detect_format", "open_source",
]

#: Names that load their module (and numpy, pyarrow) on first use.
_LAZY = {"Batch": "base", "Reject": "base", "Source": "base"}

STDIN = "-"
FORMATS = INPUT_FORMATS


def detect_format(path: str, given: str | None = None, *, head: bytes | None = None) -> str:
    """The input format: ``--input-format`` (checked by ReadOptions), else the file name's
    extension, else the content.

    The content is the file's first bytes: ``head`` when the caller has read them, else this
    reads them from a regular file. NPY, Parquet and gzip are recognised by their magic
    bytes, anything else must be delimited text (rows cut by one delimiter); a UsageError
    says a file is none of these (directory scans take that as "not an input"). A stream
    (``-``, a pipe, a terminal) is never read here: that would consume it. It is CSV unless
    :func:`open_source`, which reads it, finds magic bytes at its start.
    """
    if given is not None:
        return given
    if path != STDIN:
        fmt = input_format_of(Path(path).name)
        if fmt is not None:
            return fmt
    stream = path == STDIN or _is_stream(path)
    if head is None:
        if stream:
            return "csv"
        head, complete = _read_head(path)
    else:
        complete = len(head) < HEAD_BYTES
    fmt = sniff_format(head, complete=complete, stream=stream)
    if fmt is not None:
        return fmt
    what = "it is empty" if not head else "it is not NPY, Parquet, gzip or delimited text"
    raise UsageError(
        f"{path}: cannot tell the format from the extension or the content ({what}); use "
        f"--input-format ({', '.join(FORMATS)})"
    )


def _is_stream(path: str) -> bool:
    """True for what can be read only once: a pipe, a terminal, a socket (not a file)."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


def _read_head(path: str) -> tuple[bytes, bool]:
    """The first HEAD_BYTES of a regular file, and whether they are the whole file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it to tell its format "
                         f"({exc.strerror or exc})") from None
    return head[:HEAD_BYTES], len(head) <= HEAD_BYTES


def open_source(path: str, options: ReadOptions | None = None) -> Source:
    """Open one input (a path, or ``-`` for stdin) for reading in batches.

    A regular file is read where it lies. A stream (stdin, a named pipe, ``/dev/stdin``, a
    device) is read once, as it comes: its first bytes decide its format when neither the
    option nor the extension does, and CSV is parsed as it arrives. NPY and Parquet need
    random access: their readers check a stream's first bytes as a file's (an NPY header,
    Parquet's magic), then copy it to an anonymous temporary file (an NPY stream no further
    than its header declares).
    """
    from .csv import CsvSource
    from .npy import NpySource
    from .parquet import ParquetSource

    options = options or ReadOptions()
    display = "<stdin>" if path == STDIN else path
    stream = _open(path)
    owned = False  # whether the source holds the stream (else it holds a copy, or a dup)
    try:
        fmt, stream = _format_of(path, stream, options.input_format)
        if fmt.startswith("tsv") and options.delimiter is None:
            options = replace(options, delimiter="\t")
        regular = _is_regular(stream)
        source: Source
        if fmt == "npy" and regular:
            source = NpySource(os.dup(stream.fileno()), display, options)
        elif fmt == "npy":
            source = NpySource.from_stream(stream, display, options)
        elif fmt == "parquet" and regular:
            source, owned = ParquetSource(stream, display, options), True
        elif fmt == "parquet":
            source = ParquetSource.from_stream(stream, display, options)
        else:
            source, owned = CsvSource(stream, display, options, gz=fmt.endswith(".gz")), True
    except OSError as exc:
        stream.close()
        raise read_error(display, exc) from None
    except BaseException:
        stream.close()
        raise
    if not owned:
        stream.close()
    return source


def _open(path: str) -> io.BufferedIOBase:
    if path == STDIN:
        stdin = sys.stdin.buffer
        if isinstance(stdin, io.BufferedReader) and waits(stdin.raw):
            # Its descriptor, read afresh: nothing has been read through sys.stdin yet.
            return io.BufferedReader(StoppableReader(stdin.raw))
        if isinstance(stdin, io.BufferedIOBase):
            return stdin
        # A replaced sys.stdin that cannot read into buffers: read as it comes all the same.
        return io.BufferedReader(ReadAdapter(stdin))
    try:
        raw = open(path, "rb", buffering=0)  # noqa: SIM115 - the source closes it
        return io.BufferedReader(StoppableReader(raw) if waits(raw) else raw)
    except FileNotFoundError:
        raise MissingInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise MissingInputError(f"{path}: is a directory") from None
    except PermissionError:
        raise MissingInputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise read_error(path, exc) from None


def _is_regular(stream: io.BufferedIOBase) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError):  # no descriptor: an in-memory stream
        return False


def _format_of(path: str, stream: io.BufferedIOBase,
               given: str | None) -> tuple[str, io.BufferedIOBase]:
    """The format of an opened input, and the stream to read it from.

    The first bytes come from the descriptor already open (no second open of the path); a
    stream's are read from it and handed back in front of the rest.
    """
    if given is not None:
        return given, stream
    if path != STDIN and input_format_of(Path(path).name) is not None:
        return detect_format(path), stream
    if _is_regular(stream):
        head = os.pread(stream.fileno(), HEAD_BYTES, 0)
        return detect_format(path, head=head), stream
    head = read_up_to(stream, max(len(m) for m in MAGIC))
    return detect_format(path, head=head), io.BufferedReader(Prefixed(head, stream))


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
