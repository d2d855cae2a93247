"""Scoring on a Dask cluster, with the local engine's outputs, summaries and guarantees.

Dask does the scheduling, retries and worker management; this module only decides the units
of work and puts their results together:

- one task per input file, running the local engine's own code (:func:`batch._score_one`)
  on a worker, so its output is the local output by construction;
- a large plain CSV or NPY file is also cut into parts, byte ranges that start at line starts
  or row ranges, each scored by its own task into a hidden Arrow part file beside the output;
  one more task per file joins the parts in order through the same writer (row numbers and
  line numbers shifted to the whole file's), so the output's bytes are again the local ones.

Every output is still written to a temporary file and renamed, so a task that Dask runs twice
(after a worker died, say) leaves one complete output. The model travels as bytes with its
sha256, and every task checks the hash before it scores anything. Inputs and outputs must be
at the same paths for the client and the workers (a shared filesystem); the client holds the
output directories' locks for the whole run. Dask is imported only here, only when used.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from . import batch as engine
from .batch import BatchSummary, FileSummary, ScoreOptions
from .errors import (
    ClusterError,
    DigitsError,
    InputDataError,
    ModelError,
    OutputError,
    ReadError,
    UsageError,
    read_error,
    write_error,
)
from .local_cluster import fork_server_started, forked_workers, local_workers
from .model import Model
from .readers import STDIN, detect_format, open_source
from .readers.csv import LineError
from .writing import STDOUT, AtomicFile, detect_output_format, open_writer, output_schema

#: Files larger than this are cut into parts of about this size.
DEFAULT_PART_BYTES = 64 << 20
_SPLITTABLE = ("csv", "tsv", "npy")


# -- connecting ----------------------------------------------------------------------------------

def _distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "--scheduler needs Dask: pip install 'digits-onnx[dask]' (dask[distributed])"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler) -> Iterator[object]:
    """A Dask client for ``scheduler``: a Client (used as is), ``local:N`` (a LocalCluster of N
    single-threaded worker processes, forked from the fork server when the command line has
    started one, closed afterwards) or a scheduler address."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    address = str(scheduler)
    n = local_workers(address)
    if n is not None:
        forking = forked_workers(distributed) if fork_server_started() else contextlib.nullcontext()
        with forking:
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                silence_logs=logging.ERROR,
            )
            with cluster, distributed.Client(cluster) as client:
                yield client
        return
    try:
        client = distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    with client:
        yield client


# -- what runs on the workers --------------------------------------------------------------------

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


def score_whole_file(model_data: bytes, sha256: str, src: str, dst: str,
                     options: ScoreOptions, force: bool, run_id: str) -> FileSummary:
    """One input, one task: exactly the local engine (the client holds the lock)."""
    model = worker_model(model_data, sha256)
    try:
        return engine._score_one(src, dst, model, options, force, None, None, run_id)
    except DigitsError as exc:
        return engine.failed_summary(src, exc)


@dataclass
class PartResult:
    """What one part of a split file produced; its rows and lines are still part-local."""

    index: int
    path: str
    tally: engine._Tally
    #: The id column's name, or None when the output is keyed by row number.
    id_name: str | None
    #: The row number the part gave its first row (0 for CSV parts, the file's for NPY).
    row_base: int
    #: The line number the part gave its first line, and the one after its last.
    first_line: int | None
    next_line: int | None
    #: The error that stopped the part (reported by the join, in the file's numbering).
    error: DigitsError | None = None


def part_path(dst: str, run_id: str, index: int) -> Path:
    """A part's file: named by run, so a late task of an earlier run cannot replace it."""
    return Path(dst).with_name(f".{Path(dst).name}.part-{run_id[:12]}-{index:05d}.arrow")


class _ArrowPartWriter:
    """Writes a part's prediction tables to an Arrow IPC file (the writer interface)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._sink = pa.OSFile(str(path), "wb")
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


def score_part(model_data: bytes, sha256: str, src: str, dst: str, options: ScoreOptions,
               run_id: str, index: int, begin: int, stop: int) -> PartResult:
    """Score rows ``[begin, stop)`` (NPY) or the lines starting in bytes ``[begin, stop)``
    (CSV) into a part file; rerunning it replaces the part with an identical one.

    The library's errors are returned, not raised: the join reports the first problem in
    file order, with line numbers in the file's numbering, whichever part finished first.
    """
    model = worker_model(model_data, sha256)
    path = part_path(dst, run_id, index)
    try:
        source = open_source(src, options.read)
    except DigitsError as exc:
        return PartResult(index, str(path), engine._Tally(stopped=True), None, 0, None, None,
                          error=exc)
    out = writer = None
    first_line = None
    try:
        out = AtomicFile(path)
        source.restrict(begin, stop)
        first_line = getattr(source, "next_line", None)
        schema = output_schema(source.id_name, options.proba)
        writer = _ArrowPartWriter(out.tmp, schema)
        tally = engine.score_stream(source, model, options, writer, schema, dst,
                                    fail_fast=False)
        writer, closing = None, writer
        closing.close()
        out.commit()
        error = None
    except (DigitsError, OSError) as exc:
        engine._abandon(writer, out)
        error = exc if isinstance(exc, DigitsError) else ReadError(
            f"{src}: cannot read or write a part ({exc.strerror or exc})")
        tally = engine._Tally(stopped=True)
    except BaseException:
        engine._abandon(writer, out)
        raise
    finally:
        source.close()
    row_base = begin if detect_format(src, options.read.input_format) == "npy" else 0
    return PartResult(index, str(path), tally, source.id_name, row_base, first_line,
                      getattr(source, "next_line", None), error=error)


def join_parts(sha256: str, src: str, dst: str, options: ScoreOptions,
               before: tuple[int, int] | None, parts: list[PartResult],
               started: float, run_id: str) -> FileSummary:
    """Write the file's output from its parts, in order, as the local engine would have."""
    try:
        return _join(sha256, src, dst, options, before, parts, started, run_id)
    except DigitsError as exc:
        return engine.failed_summary(src, exc)
    finally:
        for part in parts:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part.path)


def _join(sha256: str, src: str, dst: str, options: ScoreOptions,
          before: tuple[int, int] | None, parts: list[PartResult],
          started: float, run_id: str) -> FileSummary:
    import pyarrow.compute as pc

    parts = sorted(parts, key=lambda p: p.index)
    if not all(p.error is not None or os.path.exists(p.path) for p in parts):
        # A rerun after the output was committed and the parts removed: report that run.
        state = engine._read_state(Path(dst))
        if state and state.get("run_id") == run_id:
            return FileSummary(**{**state["summary"], "input": src, "output": dst})
        raise ClusterError(f"{src}: parts of the file were lost; run again")
    shifts = _shifts(parts)
    total = engine._Tally()
    for part, (row_shift, line_shift) in zip(parts, shifts, strict=True):
        tally = part.tally
        total.rows += tally.rows
        total.scored += tally.scored
        total.out_of_range += tally.out_of_range
        total.correct += tally.correct
        total.labelled += tally.labelled
        total.confusion += tally.confusion
        total.rejects.extend(
            replace(r, row=r.row + row_shift,
                    line=None if r.line is None else r.line + line_shift)
            for r in tally.rejects
        )
        if tally.stopped:
            if tally.rejects:  # --on-error fail: the first bad row of the file
                first = total.rejects[len(total.rejects) - len(tally.rejects)]
                raise InputDataError(f"{src}: {first.where()}: {first.reason}")
            error = part.error
            if isinstance(error, LineError):
                error = error.shifted(line_shift)
            raise error if error is not None else ClusterError(f"{src}: a part failed")
    summary = FileSummary(input=src, output=dst)
    out = AtomicFile(Path(dst))
    writer = None
    keyed_by_row = parts[0].id_name is None if parts else True
    try:
        fmt = detect_output_format(dst, options.output_format)
        for part, (row_shift, _) in zip(parts, shifts, strict=True):
            with pa.memory_map(part.path) as mapped:
                reader = pa.ipc.open_file(mapped)
                if writer is None:
                    writer = open_writer(fmt, out.tmp, reader.schema)
                for i in range(reader.num_record_batches):
                    table = pa.Table.from_batches([reader.get_batch(i)])
                    if keyed_by_row and row_shift:
                        table = table.set_column(0, "row", pc.add(table.column(0), row_shift))
                    writer.write(table)
        written = writer.rows if writer is not None else 0
        if writer is not None:
            writer, closing = None, writer
            closing.close()
        if total.rows != total.scored + len(total.rejects) or written != total.scored:
            raise RuntimeError(
                f"{src}: row accounting failed: {total.rows} read, {total.scored} scored, "
                f"{len(total.rejects)} rejected, {written} written"
            )
    except OSError as exc:
        engine._abandon(writer, out)
        raise write_error(dst, exc) from None
    except BaseException:
        engine._abandon(writer, out)
        raise
    try:
        if before is not None and engine._changed(src, before):
            raise InputDataError(f"{src}: the file changed while it was being scored; run again")
        if total.rows == 0:
            raise InputDataError(f"{src}: the file has no data rows")
        digest = engine._file_sha256(src)
    except OSError as exc:
        out.discard()
        raise read_error(src, exc) from None
    except BaseException:
        out.discard()
        raise
    out.commit()
    return engine.finish_file(summary, total, src, dst, before, digest, sha256, options,
                              engine.rejects_path_for(src, dst), started, run_id)


def _shifts(parts: list[PartResult]) -> list[tuple[int, int]]:
    """(row shift, line shift) that turn each part's numbers into the whole file's."""
    shifts = []
    rows_before = 0
    line = parts[0].first_line if parts else None
    for part in parts:
        line_shift = 0
        if part.first_line is not None and line is not None:
            line_shift = line - part.first_line
            line = part.next_line + line_shift
        shifts.append((rows_before - part.row_base, line_shift))
        rows_before += part.tally.rows
    return shifts


# -- the client ----------------------------------------------------------------------------------

@dataclass
class _Planned:
    src: str
    dst: str
    future: object | None = None
    result: FileSummary | None = None
    parts: list[object] | None = None


def _cuts(src: str, options: ScoreOptions, part_bytes: int) -> list[tuple[int, int]] | None:
    """The part ranges of a file worth splitting, else None."""
    fmt = detect_format(src, options.read.input_format)
    size = os.path.getsize(src)
    if fmt not in _SPLITTABLE or size <= part_bytes:
        return None
    if fmt == "npy":
        source = open_source(src, options.read)
        try:
            n_rows, row_bytes = source.n_rows, source.row_bytes
        finally:
            source.close()
        step = max(1, part_bytes // row_bytes)
        return [(a, min(n_rows, a + step)) for a in range(0, n_rows, step)]
    return [(a, min(size, a + part_bytes)) for a in range(0, size, part_bytes)]


def score_files_on_cluster(
    inputs: list[str], *, scheduler, output: str | None = None,
    out_dir: str | Path | None = None, model: Model | None = None,
    options: ScoreOptions | None = None, force: bool = False, progress: bool | None = None,
    on_file: Callable[[FileSummary], None] | None = None,
    part_bytes: int = DEFAULT_PART_BYTES,
) -> BatchSummary:
    """:func:`inference.score_files` on a Dask cluster: same outputs, summary and exit code.

    ``scheduler`` is a ``distributed.Client``, a scheduler address (``tcp://host:8786``) or
    ``local:N``. Results are reported in input order.
    """
    _distributed()
    started = time.perf_counter()
    model = model or Model.load()
    if part_bytes < 1:
        raise UsageError("the part size must be positive")
    options, files, pairs = engine.plan_run(inputs, output, out_dir, options)
    if STDIN in files:
        raise UsageError("stdin cannot be scored on a cluster; write it to a file first")
    if any(dst == STDOUT for _, dst in pairs):
        raise UsageError("--scheduler writes files: give -o FILE or --out-dir DIR")
    summary = BatchSummary(files=[], model_sha256=model.sha256)
    with contextlib.ExitStack() as stack:
        engine.hold_outputs(stack, pairs)
        client = stack.enter_context(connect(scheduler))
        run_id = uuid.uuid4().hex
        planned = [_submit(client, src, dst, model, options, force, part_bytes, run_id)
                   for src, dst in pairs]
        _watch_progress(planned, progress)
        for plan in planned:
            result = plan.result if plan.result is not None else _collect(plan)
            summary.files.append(result)
            if on_file is not None:
                on_file(result)
        # Temporary files of attempts that died with their workers (Dask reran them).
        engine.remove_leftovers(pairs)
    summary.seconds = time.perf_counter() - started
    return summary


def _submit(client, src: str, dst: str, model: Model, options: ScoreOptions, force: bool,
            part_bytes: int, run_id: str) -> _Planned:
    plan = _Planned(src, dst)
    abs_src, abs_dst = os.path.abspath(src), os.path.abspath(dst)
    try:
        if src != STDIN and not os.path.exists(src):
            raise engine.MissingInputError(f"{src}: no such file")
        if engine._same_file(src, Path(dst)):
            raise OutputError(f"{dst}: the output would overwrite its own input")
        cuts = _cuts(src, options, part_bytes)
        if cuts is not None and not force:
            plan.result = engine.skipped_summary(src, Path(dst), model, options,
                                                 time.perf_counter())
            if plan.result is not None:
                return plan
    except DigitsError as exc:
        plan.result = engine.failed_summary(src, exc)
        return plan
    if cuts is None:
        plan.future = client.submit(score_whole_file, model.data, model.sha256, abs_src,
                                    abs_dst, options, force, run_id, pure=False,
                                    key=f"score-{_token(abs_dst)}")
        return plan
    before = engine._stat_key(src)
    plan.parts = [
        client.submit(score_part, model.data, model.sha256, abs_src, abs_dst, options, run_id,
                      i, a, b, pure=False, key=f"part-{i:05d}-{_token(abs_dst)}")
        for i, (a, b) in enumerate(cuts)
    ]
    plan.future = client.submit(join_parts, model.sha256, abs_src, abs_dst, options, before,
                                plan.parts, time.perf_counter(), run_id, pure=False,
                                key=f"join-{_token(abs_dst)}")
    return plan


def _token(path: str) -> str:
    return hashlib.sha256(f"{path}:{time.time_ns()}".encode()).hexdigest()[:16]


def _collect(plan: _Planned) -> FileSummary:
    """The file's summary, in the user's spelling of its paths; a lost cause becomes a failed
    file, never a half-written output."""
    distributed = _distributed()
    abs_src, abs_dst = os.path.abspath(plan.src), os.path.abspath(plan.dst)
    try:
        result = plan.future.result()
    except Exception as exc:
        if plan.parts:
            # The file's other parts may still be running: let them end (their part files
            # are removed with the leftovers) before the lock is released.
            distributed.wait(plan.parts)
        if isinstance(exc, distributed.scheduler.KilledWorker):
            error = ClusterError(
                f"{plan.src}: the task scoring it killed every worker that ran it "
                f"({exc.args[0] if exc.args else 'KilledWorker'}); no output written")
        elif isinstance(exc, DigitsError):
            error = exc
        else:  # the cluster's own failures (lost connection, cancelled task, ...)
            error = ClusterError(f"{plan.src}: the cluster could not score it "
                                 f"({type(exc).__name__}: {exc}); no output written")
        result = engine.failed_summary(abs_src, error)
    result.input = plan.src
    if result.output is not None:
        result.output = plan.dst
    for name in ("error", "rejects_file"):
        value = getattr(result, name)
        if value:
            value = value.replace(abs_src, plan.src).replace(abs_dst, plan.dst)
            setattr(result, name, value)
    return result


def _watch_progress(planned: list[_Planned], enabled: bool | None) -> None:
    """A tqdm bar over tasks on a terminal; silent in cron logs and pipes."""
    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return
    distributed = _distributed()
    from tqdm import tqdm

    futures = [f for p in planned if p.future is not None for f in [*(p.parts or []), p.future]]
    with tqdm(total=len(futures), unit="task", leave=False, file=sys.stderr,
              desc="scoring") as bar:
        for _ in distributed.as_completed(futures, raise_errors=False):
            bar.update(1)
