"""Scoring on a Dask cluster, with the local engine's outputs, summaries and guarantees.

Dask does the scheduling, retries and worker management; this module only decides the units
of work and puts their results together:

- one task per input file, running the per-file pipeline (:func:`.pipeline.score_one`) on a
  worker, so its output is the local output by construction;
- a large plain CSV or NPY file is cut into parts (byte ranges that start at line starts, or
  row ranges), scored and encoded by the tasks of :mod:`.parts` and joined in order by
  :mod:`.join`, through the pipeline's own loop and end, so the output's bytes are again the
  local ones. The parts of a CSV hash the byte ranges they read for the up-to-date record;
  an NPY file's sha256 is computed by one more task while the parts run.

Every output is still written to a temporary file and renamed, so a task that Dask runs twice
(after a worker died, say) leaves one complete output. The model travels as bytes with its
sha256, and every task checks the hash before it scores anything. A task's failure that is
not a worker's death (bad data, a bug) is reported in the local engine's words. Inputs and
outputs must be at the same paths for the client and the workers (a shared filesystem); the
client holds the output directories' locks for the whole run. Dask is imported only here,
only when used.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import (
    ClusterError,
    DigitsError,
    OutputError,
    UsageError,
    internal_error,
)
from .fsio import remove_leftovers
from .join import join_parts
from .model import Model
from .options import DEFAULT_PART_BYTES, ScoreOptions, local_workers
from .parts import (
    encode_part,
    hash_file,
    needs_hash_task,
    part_rows,
    score_part,
    worker_model,
    worker_options,
)
from .pipeline import check_exists, check_source_options, score_one, skipped_summary
from .plan import Report, hold_outputs, leftover_names, plan_run
from .readers import STDIN, detect_format, open_source
from .readers.npy import NpySource
from .state import same_file, stat_key
from .summary import BatchSummary, FileSummary, failed_summary
from .writers import STDOUT, detect_output_format

#: Dask runs ready tasks of higher priority first: the input's sha256 before the parts (it
#: overlaps them), a part's encoding and the join as soon as their inputs are there.
PRIORITY_HASH, PRIORITY_JOIN, PRIORITY_ENCODE = 3, 2, 1
#: Input formats that can be cut into parts.
SPLITTABLE = ("csv", "tsv", "npy")
#: Output formats whose bytes are the concatenation of their rows' bytes (after a header).
CONCATENABLE = ("csv", "tsv", "jsonl")


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

def score_whole_file(model_data: bytes, sha256: str, src: str, dst: str,
                     options: ScoreOptions, force: bool, run_id: str) -> FileSummary:
    """One input, one task: exactly the local engine (the client holds the lock)."""
    try:
        model = worker_model(model_data, sha256)
        return score_one(src, dst, model, worker_options(options), force=force, run_id=run_id)
    except DigitsError as exc:
        return failed_summary(src, exc)
    except Exception as exc:  # a bug: the file fails as the local engine reports it
        return failed_summary(src, internal_error(src, exc))


# -- the client ----------------------------------------------------------------------------------

@dataclass
class _Planned:
    src: str
    dst: str
    #: The task that gives the file's summary (a ``distributed.Future``).
    future: Any = None
    result: FileSummary | None = None
    #: The file's other tasks (parts, encoding, hashing), which the join waits for.
    helpers: list[Any] = field(default_factory=list)


def score_files_on_cluster(
    inputs: list[str], *, scheduler: object, output: str | None = None,
    out_dir: str | Path | None = None, model: Model | None = None,
    options: ScoreOptions | None = None, force: bool = False, progress: bool | None = None,
    on_file: Callable[[FileSummary], None] | None = None,
    part_bytes: int | None = None, reports: Sequence[str | Report] = (),
    recursive: bool = False,
) -> BatchSummary:
    """:func:`inference.score_files` on a Dask cluster: same outputs, summary and exit code.

    ``scheduler`` is a ``distributed.Client``, a scheduler address (``tcp://host:8786``) or
    ``local:N``. Results are reported in input order.
    """
    _distributed()
    started = time.perf_counter()
    model = model or Model.load()
    part_bytes = part_bytes or DEFAULT_PART_BYTES
    plan = plan_run(inputs, output, out_dir, options, model_path=model.path, reports=reports,
                    recursive=recursive)
    options, files, pairs = plan.options, plan.files, plan.pairs
    if STDIN in files:
        raise UsageError("stdin cannot be scored on a cluster; write it to a file first")
    if any(dst == STDOUT for _, dst in pairs):
        raise UsageError("--scheduler writes files: give -o FILE or --out-dir DIR")
    summary = BatchSummary(files=[], model_sha256=model.sha256, left_out=plan.left_out)
    with contextlib.ExitStack() as stack:
        hold_outputs(stack, pairs, out_dir, skip=options.on_error == "skip")
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
        check_exists(src)
        if same_file(src, Path(dst)):
            raise OutputError(f"{dst}: the output would overwrite its own input")
        check_source_options(src, options)
        cuts = cuts_of(src, options, part_bytes)
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
    token, mode = _token(abs_dst), slice_mode(src, dst, options)
    # The input's sha256 first, when the parts cannot hash their ranges (it takes one worker
    # while the others start on the parts), each part's encoding as soon as it can run, the
    # join as soon as it can.
    digest = None
    if needs_hash_task(src, options, len(cuts)):
        digest = client.submit(hash_file, abs_src, pure=False, key=f"sha256-{token}",
                               priority=PRIORITY_HASH)
        plan.helpers.append(digest)
    # Parts in file order, so that the counts an encoding waits for come in early.
    parts = [
        client.submit(score_part, model.data, model.sha256, abs_src, abs_dst, options, run_id,
                      i, a, b, encodes_itself(mode, i), pure=False, key=f"part-{i:05d}-{token}",
                      priority=-i)
        for i, (a, b) in enumerate(cuts)
    ]
    slices: list[Any] = []
    if mode == "renumber":
        counts = [client.submit(part_rows, part, pure=False, key=f"rows-{i:05d}-{token}",
                                priority=PRIORITY_ENCODE) for i, part in enumerate(parts[:-1])]
        slices = [None] + [
            client.submit(encode_part, abs_src, abs_dst, options, run_id, parts[i], counts[:i],
                          pure=False, key=f"encode-{i:05d}-{token}", priority=PRIORITY_ENCODE)
            for i in range(1, len(parts))
        ]
        plan.helpers += counts
    plan.helpers += [*parts, *(f for f in slices if f is not None)]
    plan.future = client.submit(join_parts, model.sha256, abs_src, abs_dst, options, before,
                                parts, time.perf_counter(), run_id, digest, slices, pure=False,
                                key=f"join-{token}", priority=PRIORITY_JOIN)
    plan.future.add_done_callback(lambda join: _release_helpers(plan, join))
    return plan


def _release_helpers(plan: _Planned, join: Any) -> None:
    """Once a file is joined, drop its other tasks: Dask would otherwise redo the ones a dying
    worker held (the client still wants them), and write part files nobody removes."""
    if join.status == "finished":
        plan.helpers = []


def cuts_of(src: str, options: ScoreOptions, part_bytes: int) -> list[tuple[int, int]] | None:
    """The part ranges of a file worth splitting (bytes of a CSV, rows of an NPY), else None."""
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


def slice_mode(src: str, dst: str, options: ScoreOptions) -> str:
    """How the parts of ``src`` become ``dst``'s bytes:

    ``tables``: the parts hold tables and the join writes them (outputs that are not text);
    ``final``: every part encodes its rows itself (an id column, or an NPY's own row numbers);
    ``renumber``: a CSV keyed by row number; the first part encodes itself, each later part is
    encoded once the rows before it are counted.
    """
    if detect_output_format(dst, options.output_format) not in CONCATENABLE:
        return "tables"
    if detect_format(src, options.read.input_format) == "npy" or (
            options.read.id_column is not None):
        return "final"
    return "renumber"


def encodes_itself(mode: str, index: int) -> bool:
    """Whether part ``index`` writes the output's bytes (else tables)."""
    return mode == "final" or (mode == "renumber" and index == 0)


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
        if plan.helpers:
            # The file's other tasks may still be running: let them end (their part files
            # are removed with the leftovers) before the lock is released.
            distributed.wait(plan.helpers)
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

    futures = [f for p in planned if p.future is not None for f in [*p.helpers, p.future]]
    with tqdm(total=len(futures), unit="task", leave=False, file=sys.stderr,
              desc="scoring") as bar:
        for _ in distributed.as_completed(futures, raise_errors=False):
            bar.update(1)
