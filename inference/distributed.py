"""Scoring on a Dask cluster, with the local engine's outputs, summaries and guarantees.

Dask does the scheduling, retries and worker management; this module only decides the units
of work and puts their results together:

- one task per input file, running the per-file pipeline (:func:`.pipeline.score_one`) on a
  worker, so its output is the local output by construction;
- a large plain CSV or NPY file is also cut into parts, byte ranges that start at line starts
  or row ranges, each scored by its own task into a hidden Arrow part file beside the output;
  one more task per file joins the parts in order through the pipeline's own end
  (:func:`.pipeline.write_output` and :func:`.pipeline.finish_file`, row numbers and line
  numbers shifted to the whole file's), so the output's bytes are again the local ones.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from .errors import (
    ClusterError,
    DigitsError,
    InputDataError,
    MissingInputError,
    ModelError,
    OutputError,
    ReadError,
    UsageError,
    write_error,
)
from .fsio import AtomicFile, remove_leftovers
from .model import Model
from .options import DEFAULT_PART_BYTES, ScoreOptions, local_workers
from .pipeline import (
    abandon,
    check_source_options,
    finish_file,
    recorded_summary,
    remove_unit,
    score_one,
    score_stream,
    skipped_summary,
    write_output,
)
from .plan import hold_outputs, leftover_names, plan_run, rejects_path_for
from .readers import STDIN, detect_format, open_source
from .readers.csv import LineError
from .readers.npy import NpySource
from .state import StatKey, file_sha256, same_file, stat_key
from .summary import BatchSummary, FileSummary, Tally, failed_summary
from .writers import STDOUT, RejectReport, Writer, detect_output_format, output_schema

#: Input formats that can be cut into parts.
SPLITTABLE = ("csv", "tsv", "npy")


# -- connecting ----------------------------------------------------------------------------------

def _distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "--scheduler needs Dask: pip install 'digits-onnx[dask]' (from a checkout: "
            "pip install -e '.[dask]')"
        ) from None
    return distributed


@contextlib.contextmanager
def connect(scheduler: object) -> Iterator[Any]:
    """A Dask client for ``scheduler``: a Client (used as is), ``local:N`` (a LocalCluster of N
    single-threaded worker processes, started the way Dask starts them and closed afterwards)
    or a scheduler address."""
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    address = str(scheduler)
    n = local_workers(address)
    if n is not None:
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
    except (ValueError, TypeError) as exc:  # Dask's words for an address it cannot parse
        raise UsageError(f"--scheduler {address}: not a scheduler address ({exc}); give "
                         "tcp://host:port or local:N") from None
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
        return score_one(src, dst, model, options, force=force, run_id=run_id)
    except DigitsError as exc:
        return failed_summary(src, exc)


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


def part_path(dst: str, run_id: str, index: int) -> Path:
    """A part's file: named by run, so a late task of an earlier run cannot replace it."""
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
        return PartResult(index, str(path), Tally(stopped=True), None, 0, None, None,
                          error=exc)
    out: AtomicFile | None = None
    writer: ArrowPartWriter | None = None
    first_line = None
    try:
        out = AtomicFile(path)
        source.restrict(begin, stop)
        first_line = getattr(source, "next_line", None)
        writer = ArrowPartWriter(out.tmp, output_schema(source.id_name, options.proba))
        tally = score_stream(source, model, options, writer, dst, fail_fast=False)
        closing, writer = writer, None
        closing.close()
        out.commit()
        error = None
    except (DigitsError, OSError) as exc:
        abandon(writer, out)
        error = exc if isinstance(exc, DigitsError) else ReadError(
            f"{src}: cannot read or write a part ({exc.strerror or exc})")
        tally = Tally(stopped=True)
    except BaseException:
        abandon(writer, out)
        raise
    finally:
        source.close()
    row_base = begin if detect_format(src, options.read.input_format) == "npy" else 0
    return PartResult(index, str(path), tally, source.id_name, row_base, first_line,
                      getattr(source, "next_line", None), error=error)


def join_parts(sha256: str, src: str, dst: str, options: ScoreOptions,
               before: StatKey | None, parts: list[PartResult],
               started: float, run_id: str) -> FileSummary:
    """Write the file's output from its parts, in order, as the local engine would have."""
    try:
        return _join(sha256, src, dst, options, before, parts, started, run_id)
    except DigitsError as exc:
        if not isinstance(exc, ClusterError):
            exc.removed = remove_unit(dst, rejects_path_for(src, dst))
        return failed_summary(src, exc)
    finally:
        for part in parts:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part.path)


def _join(sha256: str, src: str, dst: str, options: ScoreOptions, before: StatKey | None,
          parts: list[PartResult], started: float, run_id: str) -> FileSummary:
    import pyarrow.compute as pc

    parts = sorted(parts, key=lambda p: p.index)
    if not all(p.error is not None or os.path.exists(p.path) for p in parts):
        # A rerun after the output was committed and the parts removed: report that run.
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
            error = part.error
            if isinstance(error, LineError):
                error = error.shifted(line_shift)
            raise error if error is not None else ClusterError(f"{src}: a part failed")
    id_name = parts[0].id_name if parts else None

    def copy_parts(writer: Writer) -> Tally:
        try:
            for part, (row_shift, _) in zip(parts, shifts, strict=True):
                with pa.memory_map(part.path) as mapped:
                    reader = pa.ipc.open_file(mapped)
                    for i in range(reader.num_record_batches):
                        table = pa.Table.from_batches([reader.get_batch(i)])
                        if id_name is None and row_shift:
                            table = table.set_column(0, "row",
                                                     pc.add(table.column(0), row_shift))
                        writer.write(table)
        except OSError as exc:
            raise write_error(dst, exc) from None
        report.add(total.rejects)
        return total

    fmt = detect_output_format(dst, options.output_format)
    report = RejectReport(rejects_path_for(src, dst))
    unit = write_output(src, dst, fmt, output_schema(id_name, options.proba), copy_parts,
                        report, before=before, display=src, digest=lambda: file_sha256(src))
    return finish_file(FileSummary(input=src, output=dst), unit, src, dst, before, sha256,
                       options, started, run_id)


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


# -- the client ----------------------------------------------------------------------------------

@dataclass
class _Planned:
    src: str
    dst: str
    #: The task that gives the file's summary (a ``distributed.Future``).
    future: Any = None
    result: FileSummary | None = None
    parts: list[Any] | None = None


def _cuts(src: str, options: ScoreOptions, part_bytes: int) -> list[tuple[int, int]] | None:
    """The part ranges of a file worth splitting, else None."""
    fmt = detect_format(src, options.read.input_format)
    size = os.path.getsize(src)
    if fmt not in SPLITTABLE or size <= part_bytes:
        return None
    if fmt == "npy":
        source = open_source(src, options.read)
        try:
            assert isinstance(source, NpySource)
            n_rows, row_bytes = source.n_rows, source.row_bytes
        finally:
            source.close()
        step = max(1, part_bytes // row_bytes)
        return [(a, min(n_rows, a + step)) for a in range(0, n_rows, step)]
    return [(a, min(size, a + part_bytes)) for a in range(0, size, part_bytes)]


def score_files_on_cluster(
    inputs: list[str], *, scheduler: object, output: str | None = None,
    out_dir: str | Path | None = None, model: Model | None = None,
    options: ScoreOptions | None = None, force: bool = False, progress: bool | None = None,
    on_file: Callable[[FileSummary], None] | None = None,
    part_bytes: int | None = None, reports: Sequence[str] = (),
) -> BatchSummary:
    """:func:`inference.score_files` on a Dask cluster: same outputs, summary and exit code.

    ``scheduler`` is a ``distributed.Client``, a scheduler address (``tcp://host:8786``) or
    ``local:N``. Results are reported in input order.
    """
    _distributed()
    started = time.perf_counter()
    model = model or Model.load()
    part_bytes = part_bytes or DEFAULT_PART_BYTES
    plan = plan_run(inputs, output, out_dir, options, model_path=model.path, reports=reports)
    options, files, pairs = plan.options, plan.files, plan.pairs
    if STDIN in files:
        raise UsageError("stdin cannot be scored on a cluster; write it to a file first")
    if any(dst == STDOUT for _, dst in pairs):
        raise UsageError("--scheduler writes files: give -o FILE or --out-dir DIR")
    summary = BatchSummary(files=[], model_sha256=model.sha256)
    with contextlib.ExitStack() as stack:
        hold_outputs(stack, pairs, out_dir)
        client = stack.enter_context(connect(scheduler))
        run_id = uuid.uuid4().hex
        planned = [_submit(client, src, dst, model, options, force, part_bytes, run_id)
                   for src, dst in pairs]
        _watch_progress(planned, progress)
        for planned_file in planned:
            result = planned_file.result
            if result is None:
                result = _collect(planned_file)
            summary.files.append(result)
            if on_file is not None:
                on_file(result)
        # Temporary files of attempts that died with their workers (Dask reran them).
        remove_leftovers(leftover_names(pairs))
    summary.seconds = time.perf_counter() - started
    return summary


def _submit(client: Any, src: str, dst: str, model: Model, options: ScoreOptions, force: bool,
            part_bytes: int, run_id: str) -> _Planned:
    plan = _Planned(src, dst)
    abs_src, abs_dst = os.path.abspath(src), os.path.abspath(dst)
    try:
        if src != STDIN and not os.path.exists(src):
            raise MissingInputError(f"{src}: no such file")
        if same_file(src, Path(dst)):
            raise OutputError(f"{dst}: the output would overwrite its own input")
        check_source_options(src, options)
        cuts = _cuts(src, options, part_bytes)
        if cuts is not None and not force:
            plan.result = skipped_summary(src, Path(dst), model, options,
                                          time.perf_counter())
            if plan.result is not None:
                return plan
    except DigitsError as exc:
        plan.result = failed_summary(src, exc)
        return plan
    if cuts is None:
        plan.future = client.submit(score_whole_file, model.data, model.sha256, abs_src,
                                    abs_dst, options, force, run_id, pure=False,
                                    key=f"score-{_token(abs_dst)}")
        return plan
    before = stat_key(src)
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
        error: DigitsError
        if isinstance(exc, distributed.scheduler.KilledWorker):
            error = ClusterError(
                f"{plan.src}: the task scoring it killed every worker that ran it "
                f"({exc.args[0] if exc.args else 'KilledWorker'}); no output written")
        elif isinstance(exc, DigitsError):
            error = exc
        else:  # the cluster's own failures (lost connection, cancelled task, ...)
            error = ClusterError(f"{plan.src}: the cluster could not score it "
                                 f"({type(exc).__name__}: {exc}); no output written")
        result = failed_summary(abs_src, error)
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
