"""Batch orchestration: inputs in, predictions out, every row accounted for.

``score_file`` and ``score_files`` are the API the CLI (and a Dask worker) call. They read in
bounded batches (parsing the next batch while the current one is scored and written), write
atomically, skip inputs whose outputs are up to date, and hold a lock on the output directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from .arrow import from_numpy
from .contract import FEATURE_MAX, FEATURE_MIN, N_CLASSES
from .errors import (
    EXIT_OK,
    EXIT_SOME_FAILED,
    BusyError,
    DigitsError,
    InputDataError,
    MissingInputError,
    OutputError,
    ReadError,
    UsageError,
    read_error,
    write_error,
)
from .formats import split_format
from .model import Model
from .readers import STDIN, Batch, ReadOptions, Reject, Source, detect_format, open_source
from .readers.base import check_values, first_out_of_range_column, out_of_range_rows
from .writing import (
    STDOUT,
    AtomicFile,
    detect_output_format,
    open_writer,
    output_schema,
    stdout_sink,
    write_atomic_bytes,
    write_rejects,
)

LOCK_NAME = ".digits-score.lock"
STATE_SCHEMA = 1
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class ScoreOptions:
    """Everything that decides what an output contains (and so whether it is up to date)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    output_format: str | None = None
    proba: bool = False
    on_error: str = "fail"
    strict: bool = False

    def fingerprint(self) -> dict:
        read = asdict(self.read)
        read.pop("chunk_bytes")
        read.pop("chunk_rows")
        return {"read": read, "output_format": self.output_format, "proba": self.proba,
                "on_error": self.on_error, "strict": self.strict}


@dataclass
class FileSummary:
    """What happened to one input."""

    input: str
    output: str | None
    status: str = "scored"
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    out_of_range: int = 0
    seconds: float = 0.0
    correct: int | None = None
    labelled: int | None = None
    confusion: list[list[int]] | None = None
    rejects_file: str | None = None
    error: str | None = None
    exit_code: int = EXIT_OK

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["accuracy"] = self.accuracy
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["seconds"] = round(self.seconds, 4)
        return out


@dataclass
class BatchSummary:
    """What happened to every input of a run, and the exit code it earns."""

    files: list[FileSummary]
    seconds: float = 0.0
    model_sha256: str = ""

    def total(self, name: str) -> int:
        return sum(getattr(f, name) or 0 for f in self.files)

    @property
    def failed(self) -> list[FileSummary]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when all inputs scored; a failure's own code when every input failed alike; else 1."""
        failed = self.failed
        if not failed:
            return EXIT_OK
        codes = {f.exit_code for f in failed}
        if len(failed) == len(self.files) and len(codes) == 1:
            return codes.pop()
        return EXIT_SOME_FAILED

    def to_dict(self) -> dict:
        labelled = self.total("labelled")
        totals = {name: self.total(name) for name in
                  ("rows", "scored", "rejected", "out_of_range", "correct", "labelled")}
        totals["accuracy"] = totals["correct"] / labelled if labelled else None
        totals["files"] = len(self.files)
        totals["failed"] = len(self.failed)
        totals["skipped"] = sum(f.status == "skipped" for f in self.files)
        totals["seconds"] = round(self.seconds, 4)
        return {"schema_version": 1, "model_sha256": self.model_sha256,
                "exit_code": self.exit_code, "totals": totals,
                "files": [f.to_dict() for f in self.files]}


# -- inputs and outputs ------------------------------------------------------------------------

def expand_inputs(inputs: list[str], input_format: str | None = None) -> list[str]:
    """Files named directly, found in directories (by known extensions) or matched by globs."""
    found: list[str] = []
    for spec in inputs:
        if spec == STDIN:
            found.append(spec)
        elif os.path.isdir(spec):
            entries = sorted(str(p) for p in Path(spec).iterdir() if p.is_file())
            found.extend(p for p in entries if _known_input(p, input_format))
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec))
            if not matches:
                raise MissingInputError(f"{spec}: the pattern matches no file")
            found.extend(matches)
        else:
            found.append(spec)
    return found


def _known_input(path: str, input_format: str | None) -> bool:
    if Path(path).name.endswith((".pred.csv", ".rejects.csv")) or Path(path).name.startswith("."):
        return False
    try:
        detect_format(path, input_format)
    except UsageError:
        return False
    return True


def input_stem(path: str) -> str:
    """The input's name without its format extension (``a.csv.gz`` -> ``a``)."""
    stem, fmt = split_format(Path(path).name)
    return stem if fmt is not None else Path(path).stem


def output_path_for(src: str, out_dir: Path, fmt: str) -> Path:
    return out_dir / f"{'stdin' if src == STDIN else input_stem(src)}.pred.{fmt}"


def rejects_path_for(src: str, dst: str) -> Path:
    stem = "stdin" if src == STDIN else input_stem(src)
    folder = Path.cwd() if dst == STDOUT else Path(dst).parent
    return folder / f"{stem}.rejects.csv"


def state_path_for(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.state.json")


def remove_leftovers(pairs: list[tuple[str, str]]) -> None:
    """Delete what killed runs left beside these outputs: temporary files of an output, its
    reject report and its state record, and part files of a cluster run.

    Call it only while holding the directories' locks: then nothing else is writing them.
    One listing per directory, whatever the number of files.
    """
    targets: dict[Path, set[str]] = {}
    for src, dst in pairs:
        if dst == STDOUT:
            continue
        path = Path(dst)
        targets.setdefault(path.parent, set()).update(
            {path.name, state_path_for(path).name, rejects_path_for(src, dst).name})
    for folder, names in targets.items():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            if entry.startswith(".") and _leftover_of(entry) in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / entry)


def _leftover_of(name: str) -> str | None:
    """The file a temporary or part file was for (``.a.csv.x1y2.tmp`` -> ``a.csv``)."""
    if name.endswith(".tmp"):
        target = name[1:-4].rpartition(".")[0]
    elif name.endswith(".arrow") and ".part-" in name:
        target = name
    else:
        return None
    if target.startswith(".") and ".part-" in target:
        target = target[1:].rpartition(".part-")[0]
    return target


@contextlib.contextmanager
def output_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on an output directory, or fail at once with BusyError."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        raise OutputError(f"{directory}: the output directory does not exist") from None
    except OSError as exc:
        raise OutputError(
            f"{directory}: cannot lock the output directory ({exc.strerror})"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(
                f"{directory}: another digits-score run is writing here; try again when it ends"
            ) from None
        yield
    finally:
        os.close(fd)


# -- the pipeline ------------------------------------------------------------------------------

def _prefetch(batches: Iterator[Batch], depth: int = 1) -> Iterator[Batch]:
    """Parse the next batches in a thread while the caller scores and writes this one."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(("batch", batch)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))

    worker = threading.Thread(target=produce, name="digits-read", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "batch":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        worker.join()


@dataclass
class _Tally:
    rows: int = 0
    scored: int = 0
    out_of_range: int = 0
    correct: int = 0
    labelled: int = 0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((N_CLASSES, N_CLASSES),
                                                                   np.int64))
    rejects: list[Reject] = field(default_factory=list)
    #: A part stopped at its first reject under --on-error fail (its file fails).
    stopped: bool = False


def _range_check(batch: Batch, strict: bool, tally: _Tally) -> None:
    """Count rows outside 0..16; under --strict they become rejects."""
    if check_values(batch.X, batch.extrema())[1]:
        return
    mask = out_of_range_rows(batch.X)
    tally.out_of_range += int(mask.sum())
    if not strict:
        return
    idx = np.flatnonzero(mask)
    lines = batch.line_numbers(idx)
    names = batch.column_names
    for i, line in zip(idx, lines, strict=True):
        k = first_out_of_range_column(batch.X[i])
        column = batch.feature_columns[k] if batch.feature_columns else k
        batch.rejects.append(Reject(
            int(batch.rows[i]), line, column + 1, names[column] if names else None,
            f"value {float(batch.X[i, k]):g} is outside the training range "
            f"{FEATURE_MIN:g}..{FEATURE_MAX:g} (--strict)",
        ))
    batch.rejects.sort(key=lambda r: r.row)
    batch.keep(~mask)


def _prediction_table(batch: Batch, labels: np.ndarray, proba: np.ndarray,
                      schema: pa.Schema) -> pa.Table:
    key = batch.ids if batch.ids is not None else from_numpy(batch.rows.astype(np.int64))
    columns = [key, from_numpy(labels.astype(np.int64)), from_numpy(proba.max(axis=1))]
    if len(schema) > 3:
        columns += [from_numpy(proba[:, k]) for k in range(N_CLASSES)]
    return pa.Table.from_arrays(columns, schema=schema)


def _stat_key(path: str) -> tuple[int, int] | None:
    if path == STDIN:
        return None
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _changed(src: str, before: tuple[int, int]) -> bool:
    try:
        return _stat_key(src) != before
    except OSError:
        return True


def _read_state(dst: Path) -> dict | None:
    try:
        return json.loads(state_path_for(dst).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _up_to_date(src: str, dst: Path, model: Model, options: ScoreOptions) -> dict | None:
    """The recorded state when ``dst`` already holds this input scored by this model."""
    state = _read_state(dst)
    if not state or state.get("schema") != STATE_SCHEMA or not dst.exists():
        return None
    if state.get("model_sha256") != model.sha256 or state.get("options") != options.fingerprint():
        return None
    size, mtime = _stat_key(src) or (None, None)
    recorded = state.get("input", {})
    if recorded.get("size") != size:
        return None
    out = dst.stat()
    if state.get("output", {}).get("size") != out.st_size:
        return None
    if recorded.get("mtime_ns") == mtime:
        return state
    return state if _file_sha256(src) == recorded.get("sha256") else None


def _file_sha256(path: str) -> str:
    import hashlib

    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


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
        return _score_one(src, dst_s, model, options, force, rejects_path, progress)
    with output_lock(Path(dst_s).parent):
        remove_leftovers([(src, dst_s)])
        return _score_one(src, dst_s, model, options, force, rejects_path, progress)


def _score_one(src: str, dst: str, model: Model, options: ScoreOptions, force: bool,
               rejects_path: str | Path | None,
               progress: Callable[[int], None] | None, run_id: str | None = None) -> FileSummary:
    started = time.perf_counter()
    summary = FileSummary(input=src, output=dst)
    fmt = detect_output_format(None if dst == STDOUT else dst, options.output_format)
    to_stdout = dst == STDOUT
    dst_path = Path(dst)
    if not to_stdout and _same_file(src, dst_path):
        raise OutputError(f"{dst}: the output would overwrite its own input")
    if src != STDIN and not os.path.exists(src):
        raise MissingInputError(f"{src}: no such file")
    if not to_stdout and not force:
        skipped = skipped_summary(src, dst_path, model, options, started, run_id)
        if skipped is not None:
            return skipped
    before = _stat_key(src)
    source = open_source(src, options.read)
    rejects_at = Path(rejects_path) if rejects_path else rejects_path_for(src, dst)
    out = writer = None
    try:
        out = None if to_stdout else AtomicFile(dst_path)
        schema = output_schema(source.id_name, options.proba)
        try:
            writer = open_writer(fmt, stdout_sink() if out is None else out.tmp, schema)
        except OSError as exc:  # the header is written at once: a full disk shows here
            raise write_error(dst, exc) from None
        tally = score_stream(source, model, options, writer, schema, dst, progress)
        written = writer.rows
        try:
            writer.close()
            writer = None
        except OSError as exc:
            raise write_error(dst, exc) from None
        _check_accounting(source, tally, written)
        if before is not None and _stat_key(src) != before:
            raise InputDataError(f"{src}: the file changed while it was being scored; run again")
        if tally.rows == 0:
            raise InputDataError(f"{source.display}: the file has no data rows")
        digest = source.digest()
        if out is not None:
            out.commit()
    except (InputDataError, ReadError) as exc:
        _abandon(writer, out)
        if before is not None and _changed(src, before):
            # A ragged last line or a short read is what a file cut mid-read looks like;
            # name the cause, not the symptom.
            raise InputDataError(
                f"{src}: the file changed while it was being scored ({exc}); run again"
            ) from None
        raise
    except OSError as exc:
        _abandon(writer, out)
        raise read_error(src, exc) from None
    except BaseException:
        _abandon(writer, out)
        raise
    finally:
        source.close()
    return finish_file(summary, tally, src, dst, before, digest, model.sha256, options,
                       rejects_at, started, run_id)


def score_stream(source: Source, model: Model, options: ScoreOptions, writer, schema: pa.Schema,
                 dst: str, progress: Callable[[int], None] | None = None, *,
                 fail_fast: bool = True) -> _Tally:
    """Score every batch of ``source`` into ``writer``: the loop the local engine and each
    part of a split file on a cluster share.

    With ``--on-error fail`` the first reject raises InputDataError; with ``fail_fast=False``
    (a part, whose line numbers are not final yet) it stops and leaves the rejects to report.
    """
    tally = _Tally()
    has_truth = options.read.label_column is not None
    for batch in _prefetch(source.batches()):
        batch.feature_columns = source.feature_columns
        batch.column_names = source.column_names
        _range_check(batch, options.strict, tally)
        if batch.rejects and options.on_error == "fail":
            if fail_fast:
                first = batch.rejects[0]
                raise InputDataError(f"{source.display}: {first.where()}: {first.reason}")
            tally.rejects.extend(batch.rejects)
            tally.stopped = True
            return tally
        labels, proba = model.run(batch.X)
        try:
            writer.write(_prediction_table(batch, labels, proba, schema))
        except OSError as exc:
            raise write_error(dst, exc) from None
        tally.rows += batch.n_rows
        tally.scored += len(labels)
        tally.rejects.extend(batch.rejects)
        if has_truth and batch.truth is not None:
            _tally_truth(tally, batch.truth, labels)
        if progress is not None:
            progress(source.consumed())
    return tally


def finish_file(summary: FileSummary, tally: _Tally, src: str, dst: str,
                before: tuple[int, int] | None, digest: str | None, model_sha256: str,
                options: ScoreOptions, rejects_at: Path, started: float,
                run_id: str | None = None) -> FileSummary:
    """After the output is committed: fill the summary, write the reject report and the
    up-to-date record beside the output."""
    to_stdout = dst == STDOUT
    has_truth = options.read.label_column is not None
    summary.rows, summary.scored = tally.rows, tally.scored
    summary.rejected, summary.out_of_range = len(tally.rejects), tally.out_of_range
    if has_truth:
        summary.correct, summary.labelled = tally.correct, tally.labelled
        summary.confusion = tally.confusion.tolist()
    if tally.rejects:
        write_rejects(rejects_at, tally.rejects)
        summary.rejects_file = str(rejects_at)
    elif not to_stdout and rejects_at.exists():
        rejects_at.unlink()
    summary.seconds = time.perf_counter() - started
    if not to_stdout:
        _write_state(src, Path(dst), before, digest, model_sha256, options, summary, run_id)
    return summary


def skipped_summary(src: str, dst: Path, model: Model, options: ScoreOptions,
                    started: float, run_id: str | None = None) -> FileSummary | None:
    """The summary of the run that wrote ``dst``, when it is up to date (else None).

    When that run is this one (``run_id``: a cluster task that ran twice), the file counts
    as scored, not skipped: the summary must not depend on retries.
    """
    state = _up_to_date(src, dst, model, options)
    if state is None:
        return None
    summary = FileSummary(**{**state["summary"], "input": src, "output": str(dst)})
    if run_id is None or state.get("run_id") != run_id:
        summary.status = "skipped"
        summary.seconds = time.perf_counter() - started
    return summary


def failed_summary(src: str, exc: DigitsError) -> FileSummary:
    """A file that failed: no output, the error's message and exit code."""
    return FileSummary(input=src, output=None, status="failed", error=str(exc),
                       exit_code=exc.exit_code)


def _abandon(writer, out: AtomicFile | None) -> None:
    """Close a half-written output and delete it: a failed file leaves nothing behind."""
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()
    if out is not None:
        out.discard()


def _tally_truth(tally: _Tally, truth: np.ndarray, labels: np.ndarray) -> None:
    tally.correct += int((truth == labels).sum())
    tally.labelled += len(truth)
    known = (truth >= 0) & (truth < N_CLASSES)
    pairs = truth[known] * N_CLASSES + labels[known]
    tally.confusion += np.bincount(pairs, minlength=N_CLASSES * N_CLASSES).reshape(
        N_CLASSES, N_CLASSES)


def _check_accounting(source: Source, tally: _Tally, written: int) -> None:
    """Input rows = scored + rejected, and every scored row was written: never lose a row."""
    expected = getattr(source, "n_rows", tally.rows)
    if tally.rows != expected or tally.rows != tally.scored + len(tally.rejects) or (
        written != tally.scored
    ):
        raise RuntimeError(
            f"{source.display}: row accounting failed: {expected} rows in the input, "
            f"{tally.rows} read, {tally.scored} scored, {len(tally.rejects)} rejected, "
            f"{written} written"
        )


def _write_state(src: str, dst: Path, before: tuple[int, int] | None, digest: str | None,
                 model_sha256: str, options: ScoreOptions, summary: FileSummary,
                 run_id: str | None = None) -> None:
    size, mtime = before or (None, None)
    state = {
        "schema": STATE_SCHEMA,
        "input": {"path": src, "size": size, "mtime_ns": mtime, "sha256": digest},
        "output": {"path": str(dst), "size": dst.stat().st_size},
        "model_sha256": model_sha256,
        "options": options.fingerprint(),
        "run_id": run_id,
        "summary": {k: v for k, v in asdict(summary).items() if k not in ("input", "output")},
    }
    write_atomic_bytes(state_path_for(dst), json.dumps(state, indent=1).encode())


def plan_outputs(inputs: list[str], *, output: str | None, out_dir: str | Path | None,
                 output_format: str | None) -> list[tuple[str, str]]:
    """Pair each input with its output, refusing plans that would collide or overwrite."""
    if output is not None and out_dir is not None:
        raise UsageError("give either -o/--output or --out-dir, not both")
    if not inputs:
        raise UsageError("no input files")
    if out_dir is None:
        if len(inputs) > 1:
            raise UsageError(f"{len(inputs)} inputs need --out-dir DIR (-o takes one input)")
        return [(inputs[0], output if output is not None else STDOUT)]
    fmt = detect_output_format(None, output_format)
    pairs = [(src, str(output_path_for(src, Path(out_dir), fmt))) for src in inputs]
    seen: dict[str, str] = {}
    for src, dst in pairs:
        if dst in seen:
            raise UsageError(f"{seen[dst]} and {src} would both write {dst}; rename one")
        seen[dst] = src
    return pairs


def plan_run(inputs: list[str], output: str | None, out_dir: str | Path | None,
             options: ScoreOptions | None) -> tuple[ScoreOptions, list[str], list[tuple[str, str]]]:
    """Check the options, find the input files and pair each with its output: the start
    that the local and the cluster engine share."""
    options = options or ScoreOptions()
    if options.on_error not in ON_ERROR:
        raise UsageError(f"--on-error must be one of {', '.join(ON_ERROR)}")
    if options.output_format is None and output not in (None, STDOUT):
        options = replace(options, output_format=detect_output_format(output, None))
    files = expand_inputs(inputs, options.read.input_format)
    pairs = plan_outputs(files, output=output, out_dir=out_dir,
                         output_format=options.output_format)
    return options, files, pairs


def hold_outputs(stack: contextlib.ExitStack, pairs: list[tuple[str, str]]) -> None:
    """Lock every output directory for the run (on ``stack``), then clear what killed runs
    left beside these outputs."""
    directories = sorted({str(Path(dst).parent) for _, dst in pairs if dst != STDOUT})
    for directory in directories:
        stack.enter_context(output_lock(Path(directory)))
    remove_leftovers(pairs)


def score_files(inputs: list[str], *, output: str | None = None,
                out_dir: str | Path | None = None, model: Model | None = None,
                options: ScoreOptions | None = None, force: bool = False,
                progress: bool | None = None,
                on_file: Callable[[FileSummary], None] | None = None,
                scheduler: object | None = None, part_bytes: int | None = None) -> BatchSummary:
    """Score many inputs (files, directories, globs); one bad file does not stop the others.

    Each file's failure is recorded in its summary; the returned summary's ``exit_code`` says
    whether all, some or none were scored. With ``scheduler`` (a ``distributed.Client``, an
    address or ``local:N``) the work runs on a Dask cluster with the same results; see
    :mod:`inference.distributed`.
    """
    if scheduler is not None:
        from .distributed import DEFAULT_PART_BYTES, score_files_on_cluster

        return score_files_on_cluster(
            inputs, scheduler=scheduler, output=output, out_dir=out_dir, model=model,
            options=options, force=force, progress=progress, on_file=on_file,
            part_bytes=part_bytes or DEFAULT_PART_BYTES)
    if part_bytes is not None:
        raise UsageError("--part-size applies to --scheduler runs only")
    started = time.perf_counter()
    model = model or Model.load()
    options, files, pairs = plan_run(inputs, output, out_dir, options)
    summary = BatchSummary(files=[], model_sha256=model.sha256)
    bar = _progress_bar(files, progress)
    with contextlib.ExitStack() as stack:
        hold_outputs(stack, pairs)
        for src, dst in pairs:
            done = [0]

            def advance(consumed: int, done: list[int] = done) -> None:
                if bar is not None:
                    bar.update(max(0, consumed - done[0]))
                    done[0] = consumed

            try:
                result = _score_one(src, dst, model, options, force, None, advance)
            except DigitsError as exc:
                result = failed_summary(src, exc)
            summary.files.append(result)
            if on_file is not None:
                on_file(result)
    if bar is not None:
        bar.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _progress_bar(files: list[str], enabled: bool | None):
    """A byte-counting tqdm bar on a terminal; nothing in cron logs or pipes."""
    import sys

    if enabled is False or (enabled is None and not sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += 0 if f == STDIN else os.path.getsize(f)
    return tqdm(total=total or None, unit="B", unit_scale=True, leave=False, file=sys.stderr,
                desc="scoring")


__all__ = [
    "BatchSummary",
    "FileSummary",
    "ScoreOptions",
    "expand_inputs",
    "output_lock",
    "plan_outputs",
    "score_file",
    "score_files",
]
