"""The scoring API: :func:`score_file` and :func:`score_files`, which the command line calls.

``score_files`` plans the run (:mod:`.plan`), locks the output directories, and runs the
per-file pipeline (:mod:`.pipeline`) on each input, here or on a Dask cluster
(:mod:`.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import DigitsError, Interrupted, internal_error, interrupted
from .fsio import (
    fsync_directory,
    output_lock,
    remove_leftovers,
)
from .journal import release_journals
from .many import default_workers, is_small, score_in_order
from .model import Model
from .options import ScoreOptions, check_run
from .pipeline import recorded_summary, score_one
from .plan import Report, hold_outputs, is_stream, leftover_names, plan_run
from .readers import STDIN
from .stopping import Unsplit
from .summary import BatchSummary, FileSummary, failed_summary
from .writers import STDOUT, write_report

log = logging.getLogger("digits_onnx")


def score_file(src: str, dst: str | Path, *, model: Model | None = None,
               options: ScoreOptions | None = None, force: bool = False,
               rejects_path: str | Path | None = None,
               progress: Callable[[int], None] | None = None) -> FileSummary:
    """Score one input file into ``dst`` (``-`` for stdout) and return what happened.

    Raises the library's errors (InputDataError, OutputError, ...) when the file fails; the
    output then does not appear. Takes the output directory's lock for the duration.
    """
    model = model or Model.load()
    options = options or ScoreOptions()
    dst_s = str(dst)
    if dst_s == STDOUT:
        return score_one(src, dst_s, model, options, force=force, rejects_path=rejects_path,
                         progress=progress)
    folder = Path(dst_s).parent
    with output_lock(folder):
        remove_leftovers(leftover_names([(src, dst_s)]))
        try:
            return score_one(src, dst_s, model, options, force=force,
                             rejects_path=rejects_path, progress=progress)
        finally:
            release_journals([folder])


def score_files(inputs: list[str], *, output: str | None = None,
                out_dir: str | Path | None = None, model: Model | None = None,
                options: ScoreOptions | None = None, force: bool = False,
                progress: bool | None = None,
                on_file: Callable[[FileSummary], None] | None = None,
                scheduler: object | None = None, part_bytes: int | None = None,
                reports: Sequence[str | Report] = (), workers: int | None = None,
                recursive: bool = False) -> BatchSummary:
    """Score many inputs (files, directories, globs); one bad file does not stop the others.

    Each file's failure is recorded in its summary; the returned summary's ``exit_code`` says
    whether all, some or none were scored. With ``scheduler`` (a ``distributed.Client``, an
    address or ``local:N``) the work runs on a Dask cluster with the same results; see
    :mod:`digits_onnx.inference.distributed`. ``reports`` are other paths the caller will
    write after the run (a summary file): they are checked with the run's own outputs.
    ``recursive`` descends into the subdirectories of directories given as inputs; under
    ``out_dir`` the outputs mirror that tree.

    Small files (one read block, or read in small blocks: up to 16 MiB by default) are
    scored ``workers`` at a time (default: pyarrow's CPU pool size, at most 4; see
    :mod:`.many`); summaries and ``on_file`` calls still come in input order, on the
    caller's thread, and each output is what scoring it alone writes.

    A KeyboardInterrupt (Ctrl-C) stops the run: files not started are cancelled, files
    being scored end committed whole or discarded, and it is raised again as
    :class:`.errors.Interrupted` (a KeyboardInterrupt) whose ``summary`` is the run's
    BatchSummary so far: every file that ended, including those that ended as the run
    stopped (``on_file`` was called once for each), with the stop's ``error`` and exit code.
    An exception rather than a return: the caller asked to stop, and code that does not
    look for the summary still stops. A stop while the run loads the model or plans its
    outputs has no summary (nothing was written); on a cluster a stop is raised as it comes.
    """
    check_run(output=output, out_dir=out_dir, scheduler=scheduler, part_bytes=part_bytes,
              output_format=options.output_format if options is not None else None)
    if scheduler is not None:
        from .distributed import score_files_on_cluster

        return score_files_on_cluster(
            inputs, scheduler=scheduler, output=output, out_dir=out_dir, model=model,
            options=options, force=force, progress=progress, on_file=on_file,
            part_bytes=part_bytes, reports=reports, recursive=recursive)
    started = time.perf_counter()
    loaded = model or Model.load()
    plan = plan_run(inputs, output, out_dir, options, model_path=loaded.path, reports=reports,
                    recursive=recursive)
    summary = BatchSummary(files=[], model_sha256=loaded.sha256, left_out=plan.left_out)
    bar = _progress_bar(plan.files, progress)
    bar_lock = threading.Lock()
    # Output directories with renames to make durable. Worker threads add to it: set.update
    # with a set argument merges entry by entry under CPython's set mutation checks.
    synced: set[Path] = set()
    # What a stop needs to know, whatever thread scored each file: which files began and
    # which ended (by output; set.add and a dict item are atomic), and the run's id in the
    # records it wrote.
    began: set[str] = set()
    ended: dict[str, FileSummary] = {}
    run_id = secrets.token_hex(16)

    def score(src: str, dst: str) -> FileSummary:
        began.add(dst)
        done = [0]

        def advance(consumed: int) -> None:
            if bar is not None:
                with bar_lock:
                    bar.update(max(0, consumed - done[0]))
                    done[0] = consumed

        try:
            result = score_one(src, dst, loaded, plan.options, force=force, progress=advance,
                               run_id=run_id, synced_dirs=synced)
        except DigitsError as exc:
            result = failed_summary(src, exc)
        except Exception as exc:  # a bug: this file fails, the others are still scored
            log.debug("%s failed", src, exc_info=True)
            result = failed_summary(src, internal_error(src, exc))
        ended[dst] = result
        return result

    stopped: Interrupted | None = None
    try:
        with contextlib.ExitStack() as stack:
            hold_outputs(stack, plan.pairs, out_dir, skip=plan.options.on_error == "skip")
            # The directories' fsyncs, once each before the locks are released: group commit.
            stack.callback(_fsync_directories, synced)
            # Closed first (on an error too): files not started are cancelled, running ones
            # end.
            results = stack.enter_context(contextlib.closing(score_in_order(
                plan.pairs, score, workers=default_workers() if workers is None else workers,
                small=lambda src: is_small(src, plan.options.read))))
            told = 0  # files passed to on_file
            try:
                for result in results:
                    with Unsplit():
                        summary.files.append(result)
                        told += 1
                        if on_file is not None:
                            on_file(result)
            except KeyboardInterrupt as exc:
                stopped = interrupted(exc)
                results.close()
                summary.files += _ended_after_stop(plan.pairs[len(summary.files):], began,
                                                   ended, run_id)
                if on_file is not None:
                    for result in summary.files[told:]:
                        on_file(result)
        if bar is not None:
            bar.close()
    except KeyboardInterrupt as exc:  # while locking, or as the locks were released
        stopped = interrupted(exc)
    summary.seconds = time.perf_counter() - started
    if stopped is not None:
        summary.error, summary.error_code = stopped.message, stopped.exit_code
        stopped.summary = summary
        raise stopped
    return summary


def _ended_after_stop(pairs: Sequence[tuple[str, str]], began: set[str],
                      ended: dict[str, FileSummary], run_id: str) -> list[FileSummary]:
    """The files of ``pairs`` (those not reported when the run stopped, in input order)
    that ended all the same: on a worker thread as the run stopped, or committed on the
    main thread just before the stop reached it (its record, of this run, says so)."""
    out = []
    for src, dst in pairs:
        result = ended.get(dst)
        if result is None and dst in began and not is_stream(dst):
            result = recorded_summary(src, dst, run_id)
        if result is not None:
            out.append(result)
    return out


def _fsync_directories(folders: set[Path]) -> None:
    for folder in sorted(folders):
        fsync_directory(folder)


def write_summary(path: str, summary: BatchSummary) -> None:
    """Write a run's summary as JSON (see :func:`write_report`)."""
    write_report(path, (json.dumps(summary.to_dict(), indent=2) + "\n").encode())


def _progress_bar(files: list[str], enabled: bool | None) -> Any:
    """A byte-counting tqdm bar on a terminal; nothing in cron logs or pipes."""
    stderr = sys.stderr
    if enabled is False or stderr is None or (enabled is None and not stderr.isatty()):
        return None
    from tqdm import tqdm

    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += 0 if f == STDIN else os.path.getsize(f)
    return tqdm(total=total or None, unit="B", unit_scale=True, leave=False, file=sys.stderr,
                desc="scoring")
