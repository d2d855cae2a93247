"""``--dry-run``: what a run would do to each input, found without writing anything.

A dry run makes the checks the run makes before it scores, in the same order: the options,
the model, the plan (:func:`.plan.plan_run`: inputs, output paths, reports, collisions), the
output directories and their locks, then each input (missing, unreadable, a format that
cannot hold the options, up to date). It creates no directory, lock, record or temporary
file, and never reads stdin. The exit code is the one the run would start with: the run's
own error when it would stop before scoring, else what the refused inputs alone would earn.

A lock is probed, not taken: a shared lock held for the time of one system call on an
existing lock file (a run holding it exits 75 here too). Data errors inside a file are not
found: that takes reading it, which is scoring it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import (
    BusyError,
    DigitsError,
    MissingInputError,
    OutputError,
)
from .fsio import BOOKKEEPING, LOCK_NAME, lock_error
from .journal import check_journal
from .model import Model
from .options import ScoreOptions
from .pipeline import check_input, check_source_options, skipped_summary
from .plan import (
    Report,
    check_open_files,
    check_report_owners,
    folders_to_create,
    is_stream,
    output_directories,
    plan_run,
)
from .readers import STDIN, detect_format
from .summary import BatchSummary, FileSummary
from .writers import STDOUT


@dataclass(frozen=True)
class Step:
    """What the run would do to one input: ``score``, ``skip`` (up to date) or ``refuse``."""

    action: str
    src: str
    dst: str
    reason: str | None = None
    exit_code: int = 0


@dataclass
class DryRun:
    """The steps of a run, and the output directories it would create."""

    steps: list[Step] = field(default_factory=list)
    creates: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """The code of the run's files, as :class:`.summary.BatchSummary` gives it, with
        every refused input failed."""
        files = [FileSummary(input=s.src, output=None, status="failed", exit_code=s.exit_code)
                 if s.action == "refuse" else FileSummary(input=s.src, output=s.dst)
                 for s in self.steps]
        return BatchSummary(files=files).exit_code

    def lines(self) -> list[str]:
        """What to print: one line per directory created and per input, then a total."""
        out = [f"create {d} (the output directory)" for d in self.creates]
        for s in self.steps:
            src = "<stdin>" if s.src == STDIN else s.src
            if s.action == "score":
                dst = "<stdout>" if s.dst == STDOUT else s.dst
                out.append(f"score  {src} -> {dst}{' (a stream)' if is_stream(s.dst) else ''}")
            elif s.action == "skip":
                out.append(f"skip   {src}: {s.dst} is up to date (--force rescores)")
            else:
                out.append(f"refuse {s.reason} (exit {s.exit_code})")
        count = {a: sum(s.action == a for s in self.steps) for a in ("score", "skip", "refuse")}
        out.append(f"dry run: {len(self.steps)} inputs: {count['score']} to score, "
                   f"{count['skip']} up to date, {count['refuse']} refused; a run would start "
                   f"with exit {self.exit_code}")
        return out


def dry_run(inputs: list[str], *, output: str | None = None,
            out_dir: str | Path | None = None, model: Model, options: ScoreOptions | None = None,
            force: bool = False, reports: Sequence[str | Report] = (),
            recursive: bool = False) -> DryRun:
    """What :func:`.api.score_files` would do with these arguments, without doing it.

    Raises the error the run would stop with before scoring (UsageError, OutputError,
    BusyError, ...); refused inputs are steps, as failed files are in a run.
    """
    plan = plan_run(inputs, output, out_dir, options, model_path=model.path, reports=reports,
                    recursive=recursive)
    directories = output_directories(plan.pairs)
    check_open_files(len(directories))
    result = DryRun(creates=check_output_dir(out_dir) if plan.pairs else [])
    result.creates += [str(p) for p in folders_to_create(directories, out_dir)]  # --recursive
    created = {Path(d) for d in result.creates}
    for directory in directories:
        if directory not in created:
            check_lock(directory)
    check_report_owners(plan.pairs, streams=plan.options.on_error == "skip")
    for src, dst in plan.pairs:
        result.steps.append(step(src, dst, model, plan.options, force=force))
    return result


def check_output_dir(out_dir: str | Path | None) -> list[str]:
    """``--out-dir`` as the run would find it: there, or to create (its parent must exist)."""
    if out_dir is None or os.path.lexists(out_dir):
        return []
    parent = Path(out_dir).parent
    if not parent.is_dir():
        raise OutputError(f"{out_dir}: cannot create the output directory: its parent does "
                          "not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out_dir}: cannot create the output directory (Permission denied)")
    return [str(out_dir)]


def check_lock(directory: Path) -> None:
    """Whether the run could lock ``directory``: its bookkeeping folder and lock file can be
    made or are what they must be, and no run holds the lock (probed, not taken)."""
    book = directory / BOOKKEEPING
    try:
        st = os.lstat(book)
    except FileNotFoundError:
        if not directory.exists():
            raise OutputError(f"{directory}: the output directory does not exist") from None
        if not directory.is_dir():
            raise OutputError(f"{book}: cannot create the bookkeeping folder (Not a directory)"
                              ) from None
        _writable(directory, f"{book}: cannot create the bookkeeping folder (Permission denied)")
        return
    except NotADirectoryError:
        raise OutputError(f"{book}: cannot create the bookkeeping folder (Not a directory)"
                          ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{book}: not a folder (a link or a file is in its place); remove it")
    check_journal(directory)
    lock = book / LOCK_NAME
    cannot = f"{directory}: cannot lock the output directory ({lock}: Permission denied)"
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        _writable(book, cannot)
        return
    except OSError as exc:
        raise lock_error(directory, lock, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OutputError(f"{lock}: the lock is not a regular file; remove it")
        _writable(lock, cannot)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{directory}: another digits-score run is writing here; try "
                            "again when it ends") from None
    finally:
        os.close(fd)  # releases the probe


def _writable(path: Path, message: str) -> None:
    if not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
        raise OutputError(message)


def step(src: str, dst: str, model: Model, options: ScoreOptions, *,
         force: bool = False) -> Step:
    """What the run would do to one input, by the checks the pipeline makes before it reads
    (:func:`.pipeline.score_one`), in its order."""
    streamed = is_stream(dst)
    try:
        check_input(src, dst)
        if not streamed and not force:
            with contextlib.suppress(OSError):  # unreadable: the run fails it below
                if skipped_summary(src, Path(dst), model, options, time.perf_counter()):
                    return Step("skip", src, dst)
        check_source_options(src, options)
        # Then the run opens the input, and only then tells its format.
        if src != STDIN and not os.access(src, os.R_OK):
            raise MissingInputError(f"{src}: permission denied")
        detect_format(src, options.read.input_format)
    except DigitsError as exc:
        return Step("refuse", src, dst, str(exc), exc.exit_code)
    return Step("score", src, dst)
