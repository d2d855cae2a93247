"""A large file scored in parts on a cluster: the tasks that score, encode and hash it.

Plain functions: Dask only schedules them (:mod:`.distributed`); the tests run them in-process.

- **Parts**: byte ranges cut at line starts (CSV) or row ranges (NPY), each scored by the
  pipeline's loop (:func:`.pipeline.score_stream`) into a hidden part file beside the output.
  For a text output (CSV, TSV, JSON Lines) a part whose row keys are final (an id column, an
  NPY's rows, a CSV's first part) writes the output's bytes, encoded by the format's own
  writer; other parts write prediction tables.
- **Slices**: a later part of a CSV keyed by row number is encoded by a task of its own once
  the earlier parts' row counts are known, so all of a text output is encoded in parallel.
- **The input's hash** for the up-to-date record: each part of a CSV hashes the byte range
  it reads as it reads it, and the record keeps those ranges' hashes (:mod:`.state`), so the
  file is read once. The parts of an NPY file read rows, not the file's bytes in order (and a
  Fortran-ordered one reads each column apart): their file is hashed whole by a task of its
  own, run while the parts are (:func:`hash_file`, :func:`needs_hash_task`).

:mod:`.join` writes the output from them. Tasks return the library's errors as data that
survives the trip between processes, so the join reports the first problem in file order, in
the local engine's words.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, cast

import pyarrow as pa

from .errors import (
    DigitsError,
    ModelError,
    ReadError,
    internal_error,
    read_error,
    write_error,
)
from .fsio import AtomicFile
from .model import Model
from .options import ScoreOptions
from .pipeline import (
    abandon,
    score_stream,
)
from .readers import detect_format, open_source
from .readers.csv import CsvSource, LineError
from .state import MAX_RANGES, RangeHash
from .summary import Tally
from .writers import (
    Writer,
    detect_output_format,
    open_writer,
    output_schema,
)

#: Workers read text in blocks of at most this. Dask's nanny starts them with
#: ``OMP_NUM_THREADS=1``, which pyarrow honours, so one thread parses each block, and blocks
#: larger than one thread needs only cost memory: a 64 MB part of a CSV peaks about 100 MB
#: lower at 4 MiB than at the local engine's 8 MiB, for the same CPU time.
WORKER_BLOCK_BYTES = 4 << 20


# -- the model and the options on a worker ------------------------------------------------------

def worker_options(options: ScoreOptions) -> ScoreOptions:
    """The options a task reads with: blocks of at most :data:`WORKER_BLOCK_BYTES` (the
    output does not depend on the block size, nor does the up-to-date record)."""
    if options.read.chunk_bytes <= WORKER_BLOCK_BYTES:
        return options
    return replace(options, read=replace(options.read, chunk_bytes=WORKER_BLOCK_BYTES))


_MODELS: dict[str, Model] = {}


def worker_model(data: bytes, sha256: str) -> Model:
    """The model for a task: its bytes checked against the client's sha256, loaded once per
    worker process."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelError(f"the model received does not match sha256 {sha256[:12]}...; refused")
    model = _MODELS.get(sha256)
    if model is None:
        model = _MODELS[sha256] = Model(data, display=f"model {sha256[:12]}", sha256=sha256)
    return model


# -- part files ----------------------------------------------------------------------------------

def part_path(dst: str, run_id: str, index: int) -> Path:
    """A part's tables: named by run, so a late task of an earlier run cannot replace it, and
    ending in ``.arrow`` (Arrow IPC), which the cleanup of leftovers knows."""
    return Path(dst).with_name(f".{Path(dst).name}.part-{run_id[:12]}-{index:05d}.arrow")


class ArrowPartWriter:
    """Writes a part's prediction tables to an Arrow IPC file (a :class:`.writers.Writer`)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._sink = pa.OSFile(os.fsencode(path), "wb")
        try:
            self._writer = pa.ipc.new_file(self._sink, schema)
        except BaseException:
            self._sink.close()
            raise
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._sink.close()


class SliceWriter:
    """Writes a part's rows as the output format encodes them, without its header, into a
    file of their own (a :class:`.writers.Writer`): each table goes through the format's
    writer, and the join only copies the bytes.

    The file is a temporary of this attempt, never renamed: two attempts of one task (Dask
    reruns a task whose worker it thinks dead) never share a file, the join reads the one
    whose result it got, and the client's cleanup of leftovers removes the other
    (``..OUT.part-RUN-NNNNN.text.XXXXXX.tmp``, the name that cleanup looks for).
    """

    def __init__(self, dst: str, run_id: str, index: int, fmt: str, schema: pa.Schema) -> None:
        self.fmt, self.schema = fmt, schema
        self.header = encode(fmt, schema, None)
        name = f".{Path(dst).name}.part-{run_id[:12]}-{index:05d}.text"
        fd, path = tempfile.mkstemp(dir=Path(dst).parent, prefix=f".{name}.", suffix=".tmp")
        self.path = Path(path)
        self._file = os.fdopen(fd, "wb")
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        data = encode(self.fmt, self.schema, table)
        if not data.slice(0, self.header.size).equals(self.header):
            raise AssertionError(f"{self.fmt} output does not start with its header")
        self._file.write(data.slice(self.header.size))
        self.rows += table.num_rows

    def close(self) -> None:
        self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def encode(fmt: str, schema: pa.Schema, table: pa.Table | None) -> pa.Buffer:
    """The bytes the ``fmt`` writer gives for ``table`` (None: for no rows, its header).

    Written into Arrow's own memory, not the C heap: a Dask worker's environment makes every
    large C allocation cost fresh pages (``MALLOC_TRIM_THRESHOLD_``).
    """
    sink = pa.BufferOutputStream()
    writer = open_writer(fmt, cast(BinaryIO, sink), schema)  # a binary file, as pyarrow's
    if table is not None:
        writer.write(table)
    writer.close()
    return sink.getvalue()


@contextlib.contextmanager
def read_tables(path: str) -> Iterator[pa.ipc.RecordBatchFileReader]:
    """A part file, read one record batch at a time (memory stays at one batch)."""
    with pa.OSFile(os.fsencode(path)) as file:
        yield pa.ipc.open_file(file)


# -- the tasks -----------------------------------------------------------------------------------

@dataclass
class PartResult:
    """What one part of a split file produced; its rows and lines are still part-local."""

    index: int
    path: str
    tally: Tally
    #: The id column's name, or None when the output is keyed by row number.
    id_name: str | None
    #: The row number the part gave its first row (0 for CSV parts, the file's for NPY).
    row_base: int
    #: The line number the part gave its first line, and the one after its last.
    first_line: int | None
    next_line: int | None
    #: The error that stopped the part (reported by the join, in the file's numbering).
    error: DigitsError | None = None
    #: A line's error as (file, line, problem): a LineError does not survive pickling.
    line_error: tuple[str, int, str] | None = None
    #: Whether the part file holds the output's bytes (else prediction tables), and how many
    #: rows it encoded.
    encoded: bool = False
    written: int = 0
    #: The output's columns, as the part's source gave them (None when it failed to open).
    schema: pa.Schema | None = None
    #: The bytes ``[begin, end)`` of the file the part read, all of them, and their sha256
    #: (None: not a CSV's part, or it did not read its range to the end).
    read_range: RangeHash | None = None

    def failure(self, line_shift: int) -> DigitsError | None:
        """The part's error in the whole file's line numbering."""
        if self.line_error is not None:
            display, line, problem = self.line_error
            return LineError(display, line + line_shift, problem)
        return self.error


@dataclass
class Slice:
    """A part's rows as the output's bytes (an encode task's result)."""

    path: str
    rows: int
    error: DigitsError | None = None


def score_part(model_data: bytes, sha256: str, src: str, dst: str, options: ScoreOptions,
               run_id: str, index: int, begin: int, stop: int,
               encoded: bool = False) -> PartResult:
    """Score rows ``[begin, stop)`` (NPY) or the lines starting in bytes ``[begin, stop)``
    (CSV) into a part file.

    ``encoded``: write the output's bytes (the part's row keys are final, see
    :class:`SliceWriter`); else tables, into a file that a rerun replaces with an identical
    one.
    """
    path = part_path(dst, run_id, index)
    fail = PartResult(index, str(path), Tally(stopped=True), None, 0, None, None)
    options = worker_options(options)
    try:
        model = worker_model(model_data, sha256)
        source = open_source(src, options.read)
    except DigitsError as exc:
        return _failed(fail, exc)
    except Exception as exc:  # a bug: the file fails as the local engine reports it
        return _failed(fail, internal_error(src, exc))
    out: AtomicFile | None = None
    writer: Writer | None = None
    made: SliceWriter | None = None
    first_line = None
    try:
        source.restrict(begin, stop)
        first_line = getattr(source, "next_line", None)
        schema = output_schema(source.id_name, options.proba, source.kept_fields,
                               display=source.display)
        if encoded:
            fmt = detect_output_format(dst, options.output_format)
            writer = made = SliceWriter(dst, run_id, index, fmt, schema)
            path = made.path
        else:
            out = AtomicFile(path)
            writer = ArrowPartWriter(out.tmp, schema)
        tally = score_stream(source, model, options, writer, dst, fail_fast=False)
        closing, writer = writer, None
        closing.close()
        if out is not None:
            out.commit()
    except (DigitsError, OSError) as exc:
        _abandon(writer, out, made)
        fail.first_line, fail.next_line = first_line, getattr(source, "next_line", None)
        return _failed(fail, exc if isinstance(exc, DigitsError) else ReadError(
            f"{src}: cannot read or write a part ({exc.strerror or exc})"))
    except Exception as exc:
        _abandon(writer, out, made)
        return _failed(fail, internal_error(src, exc))
    except BaseException:
        _abandon(writer, out, made)
        raise
    finally:
        source.close()
    row_base = begin if detect_format(src, options.read.input_format) == "npy" else 0
    read_range = source.read_range() if isinstance(source, CsvSource) else None
    return PartResult(index, str(path), tally, source.id_name, row_base, first_line,
                      getattr(source, "next_line", None), encoded=encoded,
                      written=closing.rows, schema=schema,
                      read_range=None if tally.stopped else read_range)


def _abandon(writer: Writer | None, out: AtomicFile | None, made: SliceWriter | None) -> None:
    abandon(writer, out)
    if made is not None:
        made.discard()


def _failed(result: PartResult, exc: DigitsError) -> PartResult:
    if isinstance(exc, LineError):
        result.line_error = (exc.display, exc.line, exc.problem)
    else:
        result.error = exc
    return result


def part_rows(part: PartResult) -> int:
    """The rows a part read (scored and rejected): what the parts after it count from."""
    return part.tally.rows


def encode_part(src: str, dst: str, options: ScoreOptions, run_id: str, part: PartResult,
                rows_before: Sequence[int]) -> Slice:
    """Encode a part's tables as the output's bytes, its row numbers shifted by the rows of
    the parts before it (``rows_before``, one count per earlier part)."""
    if part.error is not None or part.line_error is not None or part.tally.stopped:
        return Slice("", 0)  # the file fails; the join reports why
    shift = sum(rows_before) - part.row_base
    writer: SliceWriter | None = None
    try:
        schema = part.schema  # set on every part that succeeded (the only ones encoded)
        if schema is None:
            raise AssertionError(f"{src}: a part that succeeded carries no schema")
        writer = SliceWriter(dst, run_id, part.index,
                             detect_output_format(dst, options.output_format), schema)
        with read_tables(part.path) as reader:
            for i in range(reader.num_record_batches):
                writer.write(renumbered(pa.Table.from_batches([reader.get_batch(i)]),
                                         part.id_name, shift))
        writer.close()
        return Slice(str(writer.path), writer.rows)
    except (DigitsError, OSError) as exc:
        if writer is not None:
            writer.discard()
        return Slice("", 0, exc if isinstance(exc, DigitsError) else write_error(dst, exc))
    except Exception as exc:
        if writer is not None:
            writer.discard()
        return Slice("", 0, internal_error(src, exc))


def needs_hash_task(src: str, options: ScoreOptions, n_parts: int) -> bool:
    """Whether a file cut into ``n_parts`` parts needs :func:`hash_file` for its record: an
    NPY file (its parts read rows), or one of more parts than a record keeps ranges of. The
    parts of a CSV hash their byte ranges themselves."""
    return detect_format(src, options.read.input_format) == "npy" or n_parts >= MAX_RANGES


def hash_file(src: str) -> str | DigitsError:
    """The input's sha256 for the up-to-date record (what :func:`.state.file_sha256` gives),
    computed while the parts run, when they cannot hash their ranges (:func:`needs_hash_task`);
    read into one reused buffer, so that the pages are not allocated afresh for every
    chunk."""
    sha = hashlib.sha256()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    try:
        with open(src, "rb", buffering=0) as fh:
            while n := fh.readinto(buffer):
                sha.update(view[:n])
    except OSError as exc:
        return read_error(src, exc)
    return sha.hexdigest()


def renumbered(table: pa.Table, id_name: str | None, shift: int) -> pa.Table:
    """A table of a part keyed by row number, its rows shifted to the whole file's."""
    import pyarrow.compute as pc

    if id_name is not None or not shift:
        return table
    return table.set_column(0, "row", pc.add(table.column(0), shift))
