"""A large file scored in parts on a cluster: the tasks that score, encode, hash and join it.

Plain functions: Dask only schedules them (:mod:`.distributed`); the tests run them in-process.

- **Parts**: byte ranges cut at line starts (CSV) or row ranges (NPY), each scored by the
  pipeline's loop (:func:`.pipeline.score_stream`) into a hidden part file beside the output.
  For a text output (CSV, TSV, JSON Lines) a part whose row keys are final (an id column, an
  NPY's rows, a CSV's first part) writes the output's bytes, encoded by the format's own
  writer; other parts write prediction tables.
- **Slices**: a later part of a CSV keyed by row number is encoded by a task of its own once
  the earlier parts' row counts are known, so all of a text output is encoded in parallel.
- **The input's sha256** for the up-to-date record: a task of its own, run while the parts
  are (the record keeps the whole file's sha256, which :mod:`.state` checks as it is).
- **The join** writes the output through the pipeline's end (:func:`.pipeline.write_output`,
  :func:`.pipeline.finish_file`): encoded slices are concatenated in order; tables go through
  the format's writer (Parquet, NPY, compressed text: bytes that span rows). Rejects' and
  errors' rows and lines are shifted to the whole file's numbering.

Tasks return the library's errors as data that survives the trip between processes, so the
join reports the first problem in file order, in the local engine's words.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np
import pyarrow as pa

from .errors import (
    ClusterError,
    DigitsError,
    InputDataError,
    InternalError,
    ModelError,
    ReadError,
    read_error,
    write_error,
)
from .fsio import AtomicFile
from .model import Model
from .options import ScoreOptions
from .pipeline import (
    abandon,
    finish_file,
    recorded_summary,
    remove_unit,
    score_stream,
    write_output,
)
from .plan import rejects_path_for
from .readers import detect_format, open_source
from .readers.csv import LineError
from .state import StatKey, file_sha256
from .summary import FileSummary, Tally, failed_summary
from .writers import (
    RejectReport,
    TableWriter,
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
#: The encoded bytes of a part file, one record batch per batch of rows.
SLICE_SCHEMA = pa.schema([pa.field("rows", pa.int64()), pa.field("data", pa.binary())])


def internal_failure(src: str, exc: BaseException) -> InternalError:
    """An unexpected exception in a task, in the words of the local engine
    (:func:`digits_onnx.inference.api.internal_error`)."""
    text = str(exc).strip().splitlines()
    return InternalError(f"{src}: internal error: {type(exc).__name__}"
                         f"{': ' + text[0] if text else ''} (--debug shows the traceback)")


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

def part_path(dst: str, run_id: str, index: int, kind: str = "") -> Path:
    """A part file: named by run, so a late task of an earlier run cannot replace it, and
    ending in ``.arrow`` (Arrow IPC), which the cleanup of leftovers knows."""
    suffix = f"-{kind}" if kind else ""
    return Path(dst).with_name(f".{Path(dst).name}.part-{run_id[:12]}-{index:05d}{suffix}.arrow")


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
    """Writes a part's rows as the output format encodes them, without its header (a
    :class:`.writers.Writer`): each table goes through the format's own writer."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema) -> None:
        self.fmt, self.schema = fmt, schema
        self.header = encode(fmt, schema, None)
        self._part = ArrowPartWriter(path, SLICE_SCHEMA)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        data = encode(self.fmt, self.schema, table)
        if not data.slice(0, self.header.size).equals(self.header):
            raise AssertionError(f"{self.fmt} output does not start with its header")
        body = data.slice(self.header.size)  # no copy
        offsets = pa.py_buffer(np.array([0, body.size], np.int32))
        column = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, body])
        self._part.write(pa.table([pa.array([table.num_rows], pa.int64()), column],
                                  schema=SLICE_SCHEMA))
        self.rows += table.num_rows

    def close(self) -> None:
        self._part.close()


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
    #: Whether the part file holds the output's bytes (else prediction tables).
    encoded: bool = False

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
    (CSV) into a part file; rerunning it replaces the part with an identical one.

    ``encoded``: write the output's bytes (the part's row keys are final), else tables.
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
        return _failed(fail, internal_failure(src, exc))
    out: AtomicFile | None = None
    writer: Writer | None = None
    first_line = None
    try:
        out = AtomicFile(path)
        source.restrict(begin, stop)
        first_line = getattr(source, "next_line", None)
        schema = output_schema(source.id_name, options.proba)
        fmt = detect_output_format(dst, options.output_format)
        writer = SliceWriter(out.tmp, fmt, schema) if encoded else ArrowPartWriter(out.tmp,
                                                                                  schema)
        tally = score_stream(source, model, options, writer, dst, fail_fast=False)
        closing, writer = writer, None
        closing.close()
        out.commit()
    except (DigitsError, OSError) as exc:
        abandon(writer, out)
        fail.first_line, fail.next_line = first_line, getattr(source, "next_line", None)
        return _failed(fail, exc if isinstance(exc, DigitsError) else ReadError(
            f"{src}: cannot read or write a part ({exc.strerror or exc})"))
    except Exception as exc:
        abandon(writer, out)
        return _failed(fail, internal_failure(src, exc))
    except BaseException:
        abandon(writer, out)
        raise
    finally:
        source.close()
    row_base = begin if detect_format(src, options.read.input_format) == "npy" else 0
    return PartResult(index, str(path), tally, source.id_name, row_base, first_line,
                      getattr(source, "next_line", None), encoded=encoded)


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
    path = part_path(dst, run_id, part.index, "text")
    if part.error is not None or part.line_error is not None or part.tally.stopped:
        return Slice(str(path), 0)  # the file fails; the join reports why
    shift = sum(rows_before) - part.row_base
    out: AtomicFile | None = None
    writer: SliceWriter | None = None
    try:
        out = AtomicFile(path)
        schema = output_schema(part.id_name, options.proba)
        writer = SliceWriter(out.tmp, detect_output_format(dst, options.output_format), schema)
        with read_tables(part.path) as reader:
            for i in range(reader.num_record_batches):
                writer.write(_renumbered(pa.Table.from_batches([reader.get_batch(i)]),
                                         part.id_name, shift))
        closing, writer = writer, None
        closing.close()
        out.commit()
        return Slice(str(path), closing.rows)
    except (DigitsError, OSError) as exc:
        abandon(writer, out)
        return Slice(str(path), 0, exc if isinstance(exc, DigitsError)
                     else write_error(dst, exc))
    except Exception as exc:
        abandon(writer, out)
        return Slice(str(path), 0, internal_failure(src, exc))


def hash_file(src: str) -> str | DigitsError:
    """The input's sha256 for the up-to-date record (what :func:`.state.file_sha256` gives),
    computed while the parts run; read into one reused buffer, so that the pages are not
    allocated afresh for every chunk."""
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


def _renumbered(table: pa.Table, id_name: str | None, shift: int) -> pa.Table:
    import pyarrow.compute as pc

    if id_name is not None or not shift:
        return table
    return table.set_column(0, "row", pc.add(table.column(0), shift))


# -- the join ------------------------------------------------------------------------------------

def join_parts(sha256: str, src: str, dst: str, options: ScoreOptions,
               before: StatKey | None, parts: list[PartResult], started: float, run_id: str,
               digest: str | DigitsError | None = None,
               slices: Sequence[Slice | None] = ()) -> FileSummary:
    """Write the file's output from its parts, in order, as the local engine would have.

    ``digest`` is the input's sha256 (:func:`hash_file`; None: hashed here), ``slices`` the
    encode tasks' results, one per part (None where the part encoded itself).
    """
    try:
        return _join(sha256, src, dst, options, before, parts, started, run_id, digest,
                     slices)
    except DigitsError as exc:
        if not isinstance(exc, ClusterError):
            exc.removed = remove_unit(dst, rejects_path_for(src, dst))
        return failed_summary(src, exc)
    except Exception as exc:
        return failed_summary(src, internal_failure(src, exc))
    finally:
        for path in {p.path for p in parts} | {s.path for s in slices if s is not None}:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _join(sha256: str, src: str, dst: str, options: ScoreOptions, before: StatKey | None,
          parts: list[PartResult], started: float, run_id: str,
          digest: str | DigitsError | None, slices: Sequence[Slice | None]) -> FileSummary:
    order = sorted(range(len(parts)), key=lambda i: parts[i].index)
    parts = [parts[i] for i in order]
    by_part = [slices[i] if slices else None for i in order]
    needed = []
    for part, piece in zip(parts, by_part, strict=True):
        if not part.tally.stopped:  # a part that failed is reported whatever its files
            needed.append(part.path)
            if piece is not None and piece.error is None:
                needed.append(piece.path)
    if not all(os.path.exists(path) for path in needed):
        # A rerun after the output was committed and the part files (some or all) removed:
        # report that run; never fail, which would remove the committed output.
        recorded = recorded_summary(src, dst, run_id)
        if recorded is not None:
            return recorded
        raise ClusterError(f"{src}: parts of the file were lost; run again")
    shifts = _shifts(parts)
    total = Tally()
    for part, (row_shift, line_shift) in zip(parts, shifts, strict=True):
        first_new = len(total.rejects)
        total.merge(part.tally, row_shift, line_shift)
        if part.tally.stopped:
            if part.tally.rejects:  # --on-error fail: the first bad row of the file
                first = total.rejects[first_new]
                raise InputDataError(f"{src}: {first.where()}: {first.reason}")
            raise part.failure(line_shift) or ClusterError(f"{src}: a part failed")
    encoded: list[Slice] = []
    for part, piece in zip(parts, by_part, strict=True):
        if piece is None and part.encoded:
            piece = Slice(part.path, part.tally.scored)
        if piece is not None and piece.error is not None:
            raise piece.error
        if piece is not None:
            encoded.append(piece)
    if encoded and len(encoded) != len(parts):
        raise AssertionError("some parts of a text output were not encoded")
    id_name = parts[0].id_name if parts else None
    fmt = detect_output_format(dst, options.output_format)
    schema = output_schema(id_name, options.proba)
    report = RejectReport(rejects_path_for(src, dst))

    def fill(writer: Writer) -> Tally:
        try:
            if encoded:
                _append_slices(writer, encode(fmt, schema, None).size, encoded)
            else:
                _write_tables(writer, parts, shifts, id_name, src)
        except OSError as exc:
            raise write_error(dst, exc) from None
        report.add(total.rejects)
        return total

    def sha() -> str | None:
        if isinstance(digest, DigitsError):
            raise digest
        return file_sha256(src) if digest is None else digest

    unit = write_output(src, dst, fmt, schema, fill, report, before=before, display=src,
                        digest=sha)
    return finish_file(FileSummary(input=src, output=dst), unit, src, dst, before, sha256,
                       options, started, run_id)


def _write_tables(writer: Writer, parts: list[PartResult], shifts: list[tuple[int, int]],
                  id_name: str | None, src: str) -> None:
    """Write the parts' tables through the output format's writer, renumbered."""
    for part, (row_shift, _) in zip(parts, shifts, strict=True):
        with read_tables(part.path) as reader:
            for i in range(reader.num_record_batches):
                table = _renumbered(pa.Table.from_batches([reader.get_batch(i)]), id_name,
                                    row_shift)
                try:
                    writer.write(table)
                except InputDataError as exc:  # what the output format cannot hold
                    raise InputDataError(f"{src}: {exc}") from None


def _append_slices(writer: Writer, header_size: int, slices: list[Slice]) -> None:
    """Append the parts' encoded rows, in order, after the header the output's writer wrote.

    The writer of a text format writes its header when it opens the file and nothing when it
    closes it, so the rows' bytes go straight into its file and are counted as written.
    """
    if not isinstance(writer, TableWriter) or not isinstance(writer.sink, Path):
        raise AssertionError("encoded rows need the output's file")
    with open(writer.sink, "ab") as out:
        if out.tell() != header_size:
            raise AssertionError("the output's writer has not written just its header")
        for piece in slices:
            rows = 0
            with read_tables(piece.path) as reader:
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    out.write(batch.column(1)[0].as_buffer())
                    rows += batch.column(0)[0].as_py()
            if rows != piece.rows:
                raise AssertionError(f"{piece.path}: {rows} rows encoded, {piece.rows} counted")
            writer.rows += rows


def _shifts(parts: list[PartResult]) -> list[tuple[int, int]]:
    """(row shift, line shift) that turn each part's numbers into the whole file's."""
    shifts = []
    rows_before = 0
    line = parts[0].first_line if parts else None
    for part in parts:
        line_shift = 0
        if part.first_line is not None and line is not None:
            line_shift = line - part.first_line
            line = None if part.next_line is None else part.next_line + line_shift
        shifts.append((rows_before - part.row_base, line_shift))
        rows_before += part.tally.rows
    return shifts
