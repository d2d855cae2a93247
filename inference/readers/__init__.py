"""Reading inputs: one module per format, all yielding the same validated batches.

``ReadOptions``, ``DELIMITER_NAMES``, ``STDIN`` and ``detect_format`` load without numpy and
pyarrow, so the command line can use them before it loads the scoring stack; the readers
themselves load when an input is opened.
"""

from __future__ import annotations

import importlib
import io
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import MissingInputError, UsageError, read_error
from ..formats import INPUT_FORMATS, input_format_of
from .read_options import DELIMITER_NAMES, ReadOptions

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


def detect_format(path: str, given: str | None = None) -> str:
    """The input format, from ``--input-format`` (checked by ReadOptions) or else the file's
    extension."""
    if given is not None:
        return given
    if path == STDIN:
        return "csv"
    fmt = input_format_of(Path(path).name)
    if fmt is not None:
        return fmt
    raise UsageError(
        f"{path}: cannot tell the format from the extension; use --input-format "
        f"({', '.join(FORMATS)})"
    )


def open_source(path: str, options: ReadOptions | None = None) -> Source:
    """Open one input (a path, or ``-`` for stdin) for reading in batches."""
    from .csv import CsvSource
    from .npy import NpySource
    from .parquet import ParquetSource

    options = options or ReadOptions()
    fmt = detect_format(path, options.input_format)
    if fmt.startswith("tsv") and options.delimiter is None:
        options = replace(options, delimiter="\t")
    display = "<stdin>" if path == STDIN else path
    stream: io.BufferedIOBase
    if path == STDIN:
        stdin = sys.stdin.buffer
        if fmt in ("npy", "parquet") or not isinstance(stdin, io.BufferedIOBase):
            # Random access, or a replaced sys.stdin that cannot read into buffers.
            stream = _spool(stdin)
        else:
            stream = stdin
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - owned by the Source, closed by it
        except FileNotFoundError:
            raise MissingInputError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise MissingInputError(f"{path}: is a directory") from None
        except PermissionError:
            raise MissingInputError(f"{path}: permission denied") from None
    try:
        if fmt == "npy":
            return NpySource(os.dup(stream.fileno()), display, options)
        if fmt == "parquet":
            return ParquetSource(stream, display, options)
        return CsvSource(stream, display, options, gz=fmt.endswith(".gz"))
    except OSError as exc:
        stream.close()
        raise read_error(display, exc) from None
    except BaseException:
        stream.close()
        raise
    finally:
        if fmt == "npy":
            stream.close()


def _spool(stream: BinaryIO) -> io.BufferedIOBase:
    """Copy stdin to an anonymous temporary file, for formats that need random access."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the Source, closed by it
    shutil.copyfileobj(stream, spool, 1 << 20)
    spool.seek(0)
    return spool


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
