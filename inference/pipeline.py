"""The per-file pipeline: read -> check -> score -> write -> commit -> record.

Both engines run it: the local one file after file, the Dask one inside its tasks (a split
file's join runs the same end: :func:`write_output` then :func:`finish_file`). A fix here
fixes every engine.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from .arrow import from_numpy
from .contract import FEATURE_MAX, FEATURE_MIN, N_CLASSES
from .errors import (
    InputChangedError,
    InputDataError,
    MissingInputError,
    ModelError,
    NonFiniteOutputError,
    OutputError,
    ReadError,
    UsageError,
    WriteError,
    read_error,
    write_error,
)
from .fsio import AtomicFile, is_special
from .model import Model
from .options import ScoreOptions
from .plan import is_stream, rejects_path_for
from .readers import STDIN, Batch, Reject, Source, detect_format, open_source
from .readers.base import check_values, first_out_of_range_column, out_of_range_rows
from .readers.csv import largest_block
from .readers.read_options import NPY_HAS_NO_COLUMNS
from .state import (
    InputDigest,
    StatKey,
    changed,
    read_state,
    remove_state,
    same_file,
    stat_key,
    up_to_date,
    write_state,
)
from .stopping import Unsplit
from .summary import FileSummary, Tally
from .writers import (
    STDOUT,
    RejectReport,
    Writer,
    check_npy_ids,
    detect_output_format,
    open_writer,
    output_schema,
    stream_sink,
)

#: Called with the bytes of the input consumed so far (a progress bar).
Progress = Callable[[int], None]


def score_one(src: str, dst: str, model: Model, options: ScoreOptions, *, force: bool = False,
              rejects_path: str | Path | None = None, progress: Progress | None = None,
              run_id: str | None = None, synced_dirs: set[Path] | None = None) -> FileSummary:
    """Score one input into ``dst`` (``-`` for stdout), or skip it when ``dst`` is up to date.

    Raises the library's errors when the file fails; then nothing of this input stays under
    its final names (an earlier output, reject report and record are removed, and the error's
    ``removed`` lists them). The caller holds the output directory's lock. ``run_id`` names
    the run (a cluster task that Dask runs twice must report the same file the same way);
    ``synced_dirs``: see :func:`commit_unit`.
    """
    started = time.perf_counter()
    streamed = is_stream(dst)
    check_input(src, dst)
    if not streamed and not force:
        skipped = skipped_summary(src, Path(dst), model, options, started, run_id)
        if skipped is not None:
            return skipped
    check_source_options(src, options)
    rejects_at = Path(rejects_path) if rejects_path else rejects_path_for(src, dst)
    try:
        before = stat_key(src)
        source = open_source(src, options.read)
        try:
            report = RejectReport(rejects_at)
            fmt = detect_output_format(None if streamed else dst, options.output_format)
            unit = write_output(
                src, dst, fmt, output_schema(source.id_name, options.proba, source.kept_fields,
                             display=source.display),
                lambda writer: score_stream(source, model, options, writer, dst, progress,
                                            on_rejects=report.add,
                                            read_ahead=_larger_than_a_block(src, options)),
                report, before=before, display=source.display, digest=source.digest,
                expected_rows=getattr(source, "n_rows", None))
        finally:
            source.close()
        return finish_file(FileSummary(input=src, output=dst), unit, src, dst, before,
                           model.sha256, options, started, run_id, synced_dirs)
    except (InputDataError, ReadError, WriteError, ModelError) as exc:
        exc.removed = remove_unit(dst, rejects_at)
        raise


@dataclass
class Unit:
    """An output written and checked but not yet committed: the output's temporary file (None
    for a stream), its reject report, and what was read."""

    tally: Tally
    digest: InputDigest | None
    out: AtomicFile | None
    report: RejectReport


def check_input(src: str, dst: str) -> None:
    """The checks before anything of ``src`` is read: it exists, and it is not ``dst``."""
    if not is_stream(dst) and same_file(src, Path(dst)):
        raise OutputError(f"{dst}: the output would overwrite its own input")
    check_exists(src)
    if src == STDIN and sys.stdin is None:
        raise MissingInputError("<stdin>: stdin is closed; give an input file")


def check_exists(src: str) -> None:
    """MissingInputError when ``src`` cannot be found, saying why (a name too long, a loop
    of links, a folder that cannot be searched are not "no such file")."""
    if src == STDIN:
        return
    try:
        os.stat(src)
    except FileNotFoundError:
        raise MissingInputError(f"{src}: no such file") from None
    except OSError as exc:
        raise MissingInputError(f"{src}: cannot open it ({exc.strerror})") from None


def check_source_options(src: str, options: ScoreOptions) -> None:
    """Refuse options that cannot apply to this input (rather than ignore them)."""
    if options.read.names_columns() and (
            detect_format(src, options.read.input_format) == "npy"):
        raise UsageError(f"{src}: {NPY_HAS_NO_COLUMNS}")


def write_output(src: str, dst: str, fmt: str, schema: pa.Schema,
                 fill: Callable[[Writer], Tally], report: RejectReport, *,
                 before: StatKey | None, display: str,
                 digest: Callable[[], InputDigest | None],
                 expected_rows: int | None = None) -> Unit:
    """Write an output through ``fill`` and check it: the middle of every engine's pipeline.

    The output goes to a temporary file (a stream is written directly); it is kept only when
    every row is accounted for and the input did not change meanwhile. On any failure the
    temporary files are removed, and nothing was put under a final name.
    """
    streamed = is_stream(dst)
    out = None if streamed else AtomicFile(Path(dst))
    writer: Writer | None = None
    sink: BinaryIO | None = None
    try:
        try:
            if out is None:
                sink = stream_sink(dst)
                writer = open_writer(fmt, sink, schema)
            else:
                writer = open_writer(fmt, out.tmp, schema)
        except OSError as exc:  # the header is written at once: a full disk shows here
            raise write_error(dst, exc) from None
        tally = fill(writer)
        written = writer.rows
        closing, writer = writer, None
        try:
            closing.close()
        except OSError as exc:
            raise write_error(dst, exc) from None
        check_accounting(display, tally, written, expected_rows)
        if before is not None and changed(src, before):
            raise InputChangedError(f"{src}: the file changed while it was being scored; "
                                    "run again")
        sha256 = digest()
    except (InputDataError, ReadError) as exc:
        abandon(writer, out, report)
        if before is not None and not isinstance(exc, InputChangedError) and changed(src, before):
            # A ragged last line or a short read is what a file cut mid-read looks like;
            # name the cause, not the symptom.
            raise InputChangedError(
                f"{src}: the file changed while it was being scored ({exc}); run again"
            ) from None
        raise
    except OSError as exc:
        abandon(writer, out, report)
        raise read_error(src, exc) from None
    except BaseException:
        abandon(writer, out, report)
        raise
    finally:
        if sink is not None and dst != STDOUT:
            with contextlib.suppress(OSError):
                sink.close()
    return Unit(tally, sha256, out, report)


def abandon(writer: Writer | None, out: AtomicFile | None,
            report: RejectReport | None = None) -> None:
    """Close a half-written output and delete it: a failed file leaves nothing behind."""
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()
    if out is not None:
        out.discard()
    if report is not None:
        report.discard()


def commit_unit(dst: str, unit: Unit, record: Callable[[], None],
                synced_dirs: set[Path] | None = None) -> None:
    """Put an output, its reject report and its record under their final names, in an order
    that never shows a new output beside an old report, nor a record for a file it does not
    describe: old record and old report go first, then the output, the new report, and the
    record last. A kill in between leaves an output without a record, which a rerun redoes.

    With ``synced_dirs``, the directories' fsyncs are left to the caller (once per directory
    for a whole run: group commit); the directories are added to the set. A stop (Ctrl-C,
    SIGTERM) waits until the commit ends (see :mod:`.stopping`).
    """
    sync_dir = synced_dirs is None
    with Unsplit():
        try:
            if unit.out is not None:
                remove_state(Path(dst))
            if unit.out is not None and not is_special(unit.report.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(unit.report.path)
            if unit.out is not None:
                unit.out.commit(sync_dir=sync_dir)
            unit.report.commit(sync_dir=sync_dir)
            if unit.out is not None:
                record()
            if synced_dirs is not None:
                synced_dirs.update({Path(dst).parent, unit.report.path.parent})
        except BaseException:
            unit.report.discard()
            if unit.out is not None:
                unit.out.discard()
            raise


def remove_unit(dst: str, rejects_at: Path) -> tuple[str, ...]:
    """Remove what an earlier run left under ``dst``'s names (output, reject report, record),
    as make's .DELETE_ON_ERROR does: after a failure, nothing stale passes for current."""
    if is_stream(dst):
        return ()
    removed = []
    for path in (Path(dst), rejects_at):
        if is_special(path):
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        removed.append(str(path))
    remove_state(Path(dst))
    return tuple(removed)


def _larger_than_a_block(src: str, options: ScoreOptions) -> bool:
    """Whether reading ahead can pay: stdin and pipes, or a file of more than one block."""
    try:
        return src == STDIN or not os.path.isfile(src) or (
            os.path.getsize(src) > largest_block(options.read.chunk_bytes))
    except OSError:
        return True


def prefetch(batches: Iterator[Batch]) -> Iterator[Batch]:
    """Parse the next batch on a thread while the caller scores and writes this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="digits-read") as reader:
        ahead = reader.submit(next, batches, None)
        while (batch := ahead.result()) is not None:
            ahead = reader.submit(next, batches, None)
            yield batch


def score_stream(source: Source, model: Model, options: ScoreOptions, writer: Writer,
                 dst: str, progress: Progress | None = None, *,
                 on_rejects: Callable[[list[Reject]], None] | None = None,
                 fail_fast: bool = True, read_ahead: bool = True) -> Tally:
    """Score every batch of ``source`` into ``writer``: the loop the local engine and each
    part of a split file on a cluster share.

    Rejects go to ``on_rejects`` as they are found (a reject report), else into the tally.
    With ``--on-error fail`` the first reject raises InputDataError; with ``fail_fast=False``
    (a part, whose line numbers are not final yet) it stops and leaves the rejects to report.
    ``read_ahead`` parses the next batch on a thread (worth it for inputs of many batches).
    """
    tally = Tally()
    has_truth = options.read.label_column is not None
    whole_ids = source.id_name is not None and detect_output_format(
        None if is_stream(dst) else dst, options.output_format) == "npy"
    schema = output_schema(source.id_name, options.proba, source.kept_fields,
                             display=source.display)
    batches = source.batches()
    for batch in prefetch(batches) if read_ahead else batches:
        batch.feature_columns = source.feature_columns
        batch.column_names = source.column_names
        range_check(batch, options.strict, tally)
        if batch.rejects and options.on_error == "fail":
            return _stop(source, batch, tally, fail_fast, whole_ids)
        labels, proba = run_model(model, batch)
        if batch.rejects and options.on_error == "fail":  # rows the model overflowed on
            return _stop(source, batch, tally, fail_fast, whole_ids)
        if whole_ids:
            check_npy_ids(source, batch)
        try:
            writer.write(prediction_table(batch, labels, proba, schema))
        except OSError as exc:
            raise write_error(dst, exc) from None
        except InputDataError as exc:  # what the output format cannot hold
            raise InputDataError(f"{source.display}: {exc}") from None
        tally.rows += batch.n_rows
        tally.scored += len(labels)
        tally.rejected += len(batch.rejects)
        if on_rejects is not None:
            on_rejects(batch.rejects)
        else:
            tally.rejects.extend(batch.rejects)
        if has_truth and batch.truth is not None:
            tally.add_truth(batch.truth, labels)
        if progress is not None:
            progress(source.consumed())
    return tally


def _stop(source: Source, batch: Batch, tally: Tally, fail_fast: bool,
          whole_ids: bool = False) -> Tally:
    """``--on-error fail`` met a bad row: fail the file, or (a part, whose line numbers are
    not final yet) stop and leave the rejects to report. An id the output cannot hold
    (``whole_ids``) on an earlier row is the file's first problem, and fails it instead."""
    if whole_ids:
        check_npy_ids(source, batch, before=batch.rejects[0].row)
    if fail_fast:
        first = batch.rejects[0]
        raise InputDataError(f"{source.display}: {first.where()}: {first.reason}")
    tally.rejects.extend(batch.rejects)
    tally.rejected += len(batch.rejects)
    tally.stopped = True
    return tally


def run_model(model: Model, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """The model's answers for a batch. Rows whose values lie so far outside 0..16 that the
    model's probabilities overflow (not numbers) become rejects, as bad values do; such an
    answer for a row within range is the model's fault, and fails the file."""
    try:
        return model.run(batch.X)
    except NonFiniteOutputError as exc:
        rows = np.asarray(exc.rows)
        if not out_of_range_rows(batch.X[rows]).all():
            raise
        mask = np.ones(len(batch.X), dtype=bool)
        mask[rows] = False
        labels, proba = exc.labels[mask], exc.proba[mask]
    for i, line, text in zip(rows, batch.line_numbers(rows), batch.line_texts(rows),
                             strict=True):
        batch.rejects.append(_value_reject(
            batch, int(i), line, text, "is so far outside the training range "
            f"{FEATURE_MIN:g}..{FEATURE_MAX:g} that the model's probabilities overflow",
            farthest=True))
    batch.rejects.sort(key=lambda r: r.row)
    batch.keep(mask)
    return labels, proba


def _value_reject(batch: Batch, i: int, line: int | None, text: str, problem: str, *,
                  farthest: bool = False) -> Reject:
    """The reject of row ``i`` of a batch (its line and the line's text) for its first value
    outside 0..16, or for the one farthest outside (the value that overflowed the model)."""
    if farthest:
        row = batch.X[i].astype(np.float64)
        k = int(np.argmax(np.maximum(FEATURE_MIN - row, row - FEATURE_MAX)))
    else:
        k = first_out_of_range_column(batch.X[i])
    column = batch.feature_columns[k] if batch.feature_columns else k
    names = batch.column_names
    return Reject(int(batch.rows[i]), line, column + 1, names[column] if names else None,
                  f"value {float(batch.X[i, k]):g} {problem}", text)


def range_check(batch: Batch, strict: bool, tally: Tally) -> None:
    """Count rows outside 0..16; under --strict they become rejects."""
    if check_values(batch.X, batch.extrema())[1]:
        return
    mask = out_of_range_rows(batch.X)
    tally.out_of_range += int(mask.sum())
    if not strict:
        return
    idx = np.flatnonzero(mask)
    for i, line, text in zip(idx, batch.line_numbers(idx), batch.line_texts(idx),
                             strict=True):
        batch.rejects.append(_value_reject(
            batch, int(i), line, text,
            f"is outside the training range {FEATURE_MIN:g}..{FEATURE_MAX:g} (--strict)"))
    batch.rejects.sort(key=lambda r: r.row)
    batch.keep(~mask)


def prediction_table(batch: Batch, labels: np.ndarray, proba: np.ndarray,
                     schema: pa.Schema) -> pa.Table:
    """One output table: the key (id or row number), the kept input columns, label,
    confidence and p0..p9."""
    key = batch.ids if batch.ids is not None else from_numpy(batch.rows.astype(np.int64))
    columns = [key, *batch.kept, from_numpy(labels.astype(np.int64)),
               from_numpy(proba.max(axis=1))]
    if len(schema) > len(columns):
        columns += [from_numpy(proba[:, k]) for k in range(N_CLASSES)]
    return pa.Table.from_arrays(columns, schema=schema)


def check_accounting(display: str, tally: Tally, written: int,
                     expected: int | None = None) -> None:
    """Input rows = scored + rejected, and every scored row was written: never lose a row."""
    expected = tally.rows if expected is None else expected
    if tally.rows != expected or tally.rows != tally.scored + tally.rejected or (
        written != tally.scored
    ):
        raise RuntimeError(
            f"{display}: row accounting failed: {expected} rows in the input, "
            f"{tally.rows} read, {tally.scored} scored, {tally.rejected} rejected, "
            f"{written} written"
        )


def finish_file(summary: FileSummary, unit: Unit, src: str, dst: str,
                before: StatKey | None, model_sha256: str, options: ScoreOptions,
                started: float, run_id: str | None = None,
                synced_dirs: set[Path] | None = None) -> FileSummary:
    """Fill the file's summary and commit its unit: output, reject report, record."""
    tally = unit.tally
    summary.rows, summary.scored = tally.rows, tally.scored
    summary.rejected, summary.out_of_range = tally.rejected, tally.out_of_range
    if options.read.label_column is not None:
        summary.correct, summary.labelled = tally.correct, tally.labelled
        summary.confusion = tally.confusion.tolist()
    if unit.report.count:
        summary.rejects_file = str(unit.report.path)
    summary.seconds = time.perf_counter() - started
    # The summary's own fields (vars, not asdict): the record is serialised at once, and
    # asdict's deep copy of the confusion matrix cost more than the rest of the record.
    commit_unit(dst, unit, lambda: write_state(
        src, Path(dst), before, unit.digest, model_sha256, options.fingerprint(),
        vars(summary), run_id), synced_dirs)
    return summary


def skipped_summary(src: str, dst: Path, model: Model, options: ScoreOptions,
                    started: float, run_id: str | None = None) -> FileSummary | None:
    """The summary of the run that wrote ``dst``, when it is up to date (else None).

    When that run is this one (``run_id``: a cluster task that ran twice), the file counts
    as scored, not skipped: the summary must not depend on retries.
    """
    state = up_to_date(src, dst, model.sha256, options.fingerprint())
    if state is None:
        return None
    summary = FileSummary(**{**state["summary"], "input": src, "output": str(dst)})
    if run_id is None or state.get("run_id") != run_id:
        summary.status = "skipped"
        summary.seconds = time.perf_counter() - started
    return summary


def recorded_summary(src: str, dst: str, run_id: str) -> FileSummary | None:
    """The summary this run (``run_id``) recorded for ``dst``, if it already committed it."""
    state = read_state(Path(dst))
    if state and state.get("run_id") == run_id:
        return FileSummary(**{**state["summary"], "input": src, "output": dst})
    return None
