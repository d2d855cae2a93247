"""The plan of a run: which files it reads, which paths it writes, and the rules between them.

Everything a run will touch is decided here, before anything is written: the input files
(found by :mod:`.inputs`), each one's output, reject report and record (a line of its
folder's journal), and the output directories to lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from .contract import MANIFEST_FILENAME
from .errors import DigitsError, OutputError, UsageError
from .formats import REJECTS_SUFFIX, split_format
from .fsio import BOOKKEEPING, is_special, output_lock, remove_leftovers
from .inputs import OWN_SUFFIXES, expand_inputs, file_key
from .journal import check_journal, journal_path, release_journals
from .options import ScoreOptions, check_run, resolve_output_format
from .readers import STDIN
from .state import report_owners
from .writers import STDOUT, detect_output_format


class Report(NamedTuple):
    """A file the caller writes after the run (the summary, the metrics), checked with the
    run's own outputs; ``name`` is how messages call it (``--summary-json``)."""

    path: str
    name: str = "report"


@dataclass(frozen=True)
class RunPlan:
    """The checked options, the input files, and each input paired with its output."""

    options: ScoreOptions
    files: list[str]
    pairs: list[tuple[str, str]]
    #: What directory scans passed over, and why (shown with -v, kept in the summary).
    left_out: list[tuple[str, str]] = field(default_factory=list)


def input_stem(path: str) -> str:
    """The input's name without its format extension (``a.csv.gz`` -> ``a``)."""
    stem, fmt = split_format(Path(path).name)
    return stem if fmt is not None else Path(path).stem


def output_path_for(src: str, out_dir: Path, fmt: str) -> Path:
    return out_dir / f"{'stdin' if src == STDIN else input_stem(src)}.pred.{fmt}"


def rejects_path_for(src: str, dst: str) -> Path:
    """Where the reject report of the output ``dst`` goes: beside it, named after it
    (``out.csv`` -> ``out.rejects.csv``, ``a.pred.csv`` -> ``a.rejects.csv``), so two
    outputs of one input never share a report. A stream has no name: its report goes to the
    working directory, named after the input."""
    if is_stream(dst):
        return Path.cwd() / f"{'stdin' if src == STDIN else input_stem(src)}{REJECTS_SUFFIX}"
    path = Path(dst)
    stem = split_format(path.name)[0]
    return path.with_name(f"{stem.removesuffix('.pred') or stem}{REJECTS_SUFFIX}")


def goes_to_stdout(path: str) -> bool:
    """Whether writing ``path`` writes this process's stdout: ``-``, or another name of the
    same file (``/dev/stdout``, the terminal or pipe stdout is). /dev/null takes anything."""
    if path == STDOUT:
        return True
    try:
        st, out = os.stat(path), os.fstat(1)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino) and (
        os.path.realpath(path) != os.devnull)


def is_stream(dst: str) -> bool:
    """Whether ``dst`` is written as a stream (stdout, a device, a FIFO): no temporary file,
    no rename, no record, no lock."""
    return dst == STDOUT or is_special(dst)


def plan_outputs(inputs: list[str], *, output: str | None, out_dir: str | Path | None,
                 output_format: str | None,
                 folders: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """Pair each input with its output (``output`` or ``out_dir``, never both: see
    :func:`.options.check_run`), refusing plans where two inputs would write one output.

    An input found below a subdirectory of a scanned directory (``folders``) is written to
    the same subdirectory of ``out_dir``: the tree is mirrored, so equal names do not clash.
    """
    if not inputs:
        return []
    if out_dir is None:
        if len(inputs) > 1:
            raise UsageError(f"{len(inputs)} inputs need --out-dir DIR (-o takes one input)")
        return [(inputs[0], output if output is not None else STDOUT)]
    fmt = detect_output_format(None, output_format)
    folders = folders or {}
    pairs = [(src, str(output_path_for(src, Path(out_dir) / folders.get(src, ""), fmt)))
             for src in inputs]
    seen: dict[str, str] = {}
    for src, dst in pairs:
        if dst in seen and file_key(seen[dst]) == file_key(src):
            raise UsageError(f"{src} is named twice ({seen[dst]} and {src}); name it once")
        if dst in seen:
            raise UsageError(f"{seen[dst]} and {src} would both write {dst}; rename one")
        seen[dst] = src
    return pairs


def plan_run(inputs: list[str], output: str | None, out_dir: str | Path | None,
             options: ScoreOptions | None, *, model_path: Path | None = None,
             reports: Sequence[str | Report] = (), recursive: bool = False) -> RunPlan:
    """Check the run's options, find the input files, pair each with its output, and check
    every path the run will write (outputs, reject reports, ``reports`` such as the summary)
    against every file it reads and against each other: the start that the local and the
    cluster engine share. Nothing is written before this passes."""
    options = options or ScoreOptions()
    check_run(output=output, out_dir=out_dir, output_format=options.output_format)
    if not inputs:
        raise UsageError("no inputs given")
    fmt = resolve_output_format(output, options.output_format)
    if fmt != options.output_format:
        options = replace(options, output_format=fmt)
    left_out: list[tuple[str, str]] = []
    folders: dict[str, str] = {}
    files = expand_inputs(inputs, options.read.input_format, left_out, recursive=recursive,
                          folders=folders)
    pairs = plan_outputs(files, output=output, out_dir=out_dir,
                         output_format=options.output_format, folders=folders)
    plan = RunPlan(options, files, pairs, left_out)
    check_paths(plan, model_path=model_path, reports=reports, explicit=out_dir is None)
    return plan


# -- which paths a run may write ---------------------------------------------------------------

#: A file's identity: (device, inode) when it exists, else its resolved path; None for
#: character devices (/dev/null, a terminal), which writing cannot destroy.
Identity = tuple[int, int] | str | None


def identity(path: str) -> Identity:
    """The identity of ``path`` (``-`` stands for stdin here)."""
    try:
        st = os.fstat(0) if path == STDIN else os.stat(path)
    except OSError:
        return None if path == STDIN else os.path.realpath(path)
    if stat.S_ISCHR(st.st_mode):
        return None
    return st.st_dev, st.st_ino


def _stdout_identity() -> Identity:
    """stdout's identity when it is a file (``>> in.csv``): writing it would change that file."""
    try:
        st = os.fstat(1)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def check_target(path: str, *, what: str, may_stream: bool) -> None:
    """Refuse an output path that is not a regular file or a new name: only regular files
    are ever replaced. A device or a FIFO named explicitly (``-o /dev/null``) is written as a
    stream; a link is never followed to replace its target."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.stat(path)
        except OSError:
            raise OutputError(f"{path}: {_the(what)} is a broken symbolic link; remove it or give "
                              "another path") from None
        if may_stream and (not stat.S_ISREG(target.st_mode)
                           or path.startswith(("/dev/", "/proc/"))):
            return _streamable(path, target.st_mode, what)
        raise OutputError(f"{path}: {_the(what)} is a symbolic link; give the path it points to "
                          f"({os.path.realpath(path)})")
    if may_stream:
        return _streamable(path, st.st_mode, what)
    raise OutputError(f"{path}: {_the(what)} would replace a {_kind(st.st_mode)}; "
                      "only regular files are replaced")


def _streamable(path: str, mode: int, what: str) -> None:
    if stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return
    raise OutputError(f"{path}: {_the(what)} is a {_kind(mode)}; give a file, a FIFO or a device")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symbolic link")):
        if test(mode):
            return name
    return "special file"


def report_is_safe(report: str, inputs: Sequence[str], model_path: Path | None,
                   output: str | None = None, out_dir: str | None = None) -> bool:
    """Whether a report (the summary) may be written after a run failed before its plan was
    checked: a regular file, a new name or a stream, and neither an input (as named, or
    found in a named directory or by a pattern), the model, nor one of the run's outputs."""
    if report == STDOUT:
        return output not in (None, STDOUT) or out_dir is not None
    if out_dir is not None and Path(report).name.endswith(OWN_SUFFIXES) and (
            identity(str(Path(report).parent)) == identity(out_dir)):
        return False
    try:
        check_target(report, what="report", may_stream=True)
        try:
            files = expand_inputs(list(inputs))
        except DigitsError:
            files = list(inputs)
    except DigitsError:
        return False
    if not is_stream(report) and (in_bookkeeping(report) or not _folder_exists(report)):
        return False
    key = identity(report)
    if key is None:
        return True
    if out_dir is None:  # the reject reports the run would have written
        files += [str(rejects_path_for(src, output or STDOUT)) for src in files]
    paths = [*files, *model_files(model_path),
             *([output] if output not in (None, STDOUT) else [])]
    return all(identity(path) != key for path in paths)


def model_files(model_path: Path | None) -> list[str]:
    """The files a run reads for its model: the model and the manifest beside it."""
    if model_path is None:
        return []
    return [str(model_path), str(model_path.with_name(MANIFEST_FILENAME))]


def in_bookkeeping(path: str) -> bool:
    """Whether ``path`` lies in an output directory's bookkeeping folder (its lock and
    records), however it is spelt: nothing but the scorer's own files go there."""
    return BOOKKEEPING in Path(os.path.realpath(path)).parent.parts


def _folder_exists(path: str) -> bool:
    return os.path.isdir(os.path.dirname(path) or ".")


def check_paths(plan: RunPlan, *, model_path: Path | None,
                reports: Sequence[str | Report] = (), explicit: bool = True) -> None:
    """Every path the run writes against every file it reads and against each other, by
    identity; a collision is an OutputError (exit 73) before anything is written."""
    read: dict[Identity, str] = {}
    for src in plan.files:
        read.setdefault(identity(src), src)
    for path in model_files(model_path):
        read.setdefault(identity(path), path)
    read.pop(None, None)
    targets: list[tuple[str, str, Identity]] = []
    for src, dst in plan.pairs:
        if dst == STDOUT:
            key = _stdout_identity()
            if key is not None and key == identity(src):
                raise OutputError(f"<stdout>: the output would overwrite its own input {src}")
            targets.append(("<stdout>", "output", key))
        else:
            check_target(dst, what="output", may_stream=explicit)
            if not is_stream(dst) and Path(dst).name.endswith(REJECTS_SUFFIX):
                raise OutputError(f"{dst}: names ending in {REJECTS_SUFFIX} are kept for reject "
                                  "reports; give the output another name")
            key = identity(dst)
            if key is not None and key == identity(src):
                own = "stdin (the same file)" if src == STDIN else "its own input"
                raise OutputError(f"{dst}: the output would overwrite {own}")
            targets.append((dst, "output", key))
        # Beside a file output, an earlier report under this name is removed whatever
        # --on-error says; beside a stream, a report is only written (--on-error skip).
        if not is_stream(dst) or plan.options.on_error == "skip":
            rejects = str(rejects_path_for(src, dst))
            check_target(rejects, what="reject report", may_stream=False)
            targets.append((rejects, "reject report", identity(rejects)))
    for path, name in (Report(r) if isinstance(r, str) else r for r in reports):
        if goes_to_stdout(path) and any(goes_to_stdout(dst) for _, dst in plan.pairs):
            raise UsageError(f"the predictions and {_the(name)} would both go to stdout; give "
                             "-o FILE, or a file for the report")
        if path == STDOUT:
            continue
        check_target(path, what=name, may_stream=True)
        if not is_stream(path) and not _folder_exists(path):
            raise OutputError(f"{path}: the folder {os.path.dirname(path)} does not exist")
        targets.append((path, name, identity(path)))
    written: dict[Identity, str] = {}
    for path, what, key in targets:
        if key is None:
            continue
        if path != "<stdout>" and not is_stream(path) and in_bookkeeping(path):
            raise OutputError(f"{path}: {_the(what)} would be written in a bookkeeping folder "
                              f"({BOOKKEEPING}), which holds the scorer's lock and records; "
                              "give a path outside it")
        if key in read:
            source = read[key]
            if source == STDIN:
                source = "stdin (the same file)"
            elif model_path is not None and source == str(model_path):
                source = f"the model {source}"
            elif source in model_files(model_path):
                source = f"the model's manifest {source}"
            else:
                source = f"the input {source}"
            raise OutputError(f"{path}: {_the(what)} would overwrite {source}")
        if key in written:
            raise OutputError(f"{path}: the run would write this file twice (as {written[key]} "
                              f"and as {what})")
        written[key] = what


def _the(what: str) -> str:
    """``the output``, but ``--summary-json`` as it stands."""
    return what if what.startswith("-") else f"the {what}"


def leftover_names(pairs: list[tuple[str, str]]) -> dict[Path, set[str]]:
    """Per output directory, the files of this run that a killed run may have left
    temporaries of: outputs, reject reports and the journal of records (compacted)."""
    names: dict[Path, set[str]] = {}
    for src, dst in pairs:
        if is_stream(dst):
            continue
        path = Path(dst)
        names.setdefault(path.parent, set()).update({path.name, rejects_path_for(src, dst).name})
    for directory in list(names):
        journal = journal_path(directory)
        names.setdefault(journal.parent, set()).add(journal.name)
    return names


def hold_outputs(stack: contextlib.ExitStack, pairs: list[tuple[str, str]],
                 out_dir: str | Path | None = None, *, skip: bool = False) -> None:
    """Create ``out_dir`` when it is missing (its parent must exist) and the folders under it
    that a recursive scan's outputs go to, lock every output directory for the run (on
    ``stack``), then clear what killed runs left beside these outputs. What cannot be done
    is found before anything is created. ``skip``: bad rows are skipped into reports (then
    a stream's report is written too: see :func:`check_report_owners`)."""
    directories = output_directories(pairs)
    check_open_files(len(directories))
    to_create = folders_to_create(directories, out_dir)
    if out_dir is not None and pairs:
        try:
            os.mkdir(out_dir)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise OutputError(f"{out_dir}: cannot create the output directory: its parent "
                              "does not exist") from None
        except OSError as exc:
            raise OutputError(f"{out_dir}: cannot create the output directory "
                              f"({exc.strerror})") from None
        for folder in to_create:
            try:
                folder.mkdir(exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{folder}: cannot create the output directory "
                                  f"({exc.strerror})") from None
    for directory in directories:
        stack.enter_context(output_lock(directory))
        check_journal(directory)
    check_report_owners(pairs, streams=skip)
    # Run last, before the locks go: nothing else appends to a journal while it is rewritten.
    stack.callback(release_journals, directories)
    remove_leftovers(leftover_names(pairs))


def check_report_owners(pairs: list[tuple[str, str]], *, streams: bool) -> None:
    """A reject report that another output's record names is that output's: the rows it
    rejected are accounted for there and nowhere else. A run whose output would write or
    remove it (``out.csv`` after ``out.parquet``, stdout's report beside ``-o in.csv``)
    stops before anything is written (exit 73). A stream's report, written only when bad rows
    are skipped, is looked at when ``streams``."""
    owners: dict[Path, dict[str, str]] = {}
    for src, dst in pairs:
        if is_stream(dst) and not streams:
            continue
        report = rejects_path_for(src, dst)
        if report.parent not in owners:
            owners[report.parent] = report_owners(report.parent)
        owner = owners[report.parent].get(report.name)
        if owner is not None and (is_stream(dst) or owner != Path(dst).name):
            raise OutputError(f"{report}: the reject report of {report.with_name(owner)}, "
                              f"which {'stdout' if is_stream(dst) else dst} would replace; "
                              "give the output another name")


def output_directories(pairs: list[tuple[str, str]]) -> list[Path]:
    """The directories a run writes outputs into (each one locked for the run)."""
    return sorted({Path(dst).parent for _, dst in pairs if not is_stream(dst)})


def folders_to_create(directories: list[Path], out_dir: str | Path | None) -> list[Path]:
    """The folders under ``out_dir`` that the run's output ``directories`` (a recursive scan's
    mirror) need and that do not exist yet, parents first. OutputError when something other
    than a folder is in the way (found before anything is created)."""
    if out_dir is None:
        return []
    root, missing, seen = Path(out_dir), [], set()
    for folder in directories:
        path = root
        for part in folder.relative_to(root).parts:
            path = path / part
            if path in seen:
                continue
            seen.add(path)
            if not os.path.lexists(path):
                missing.append(path)
            elif not path.is_dir():
                raise OutputError(f"{path}: cannot create the output directory: a file of "
                                  "that name is in the way")
    return missing


#: Descriptors a run needs besides its locks: inputs, outputs, temporaries, libraries.
SPARE_DESCRIPTORS = 64


def check_open_files(locks: int) -> None:
    """A run holds one lock (an open file) per output directory until it ends: make sure the
    process may hold that many, raising its soft limit toward the hard one when needed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = locks + SPARE_DESCRIPTORS
    if soft == resource.RLIM_INFINITY or needed <= soft:
        return
    if hard == resource.RLIM_INFINITY or needed <= hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            return
    raise OutputError(f"the run writes into {locks} output directories and locks each of them "
                      f"at once, more than the {soft} open files this process may hold "
                      "(ulimit -n); raise the limit, or score fewer directories per run")
