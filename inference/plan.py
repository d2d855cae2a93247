"""The plan of a run: which files it reads, which paths it writes, and the rules between them.

Everything a run will touch is decided here, before anything is written: the input files
(expanded from directories and globs), each one's output, reject report and state record,
and the output directories to lock.
"""

from __future__ import annotations

import contextlib
import glob
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import MissingInputError, UsageError
from .formats import split_format
from .fsio import output_lock, remove_leftovers
from .options import ScoreOptions, check_run
from .readers import STDIN, detect_format
from .state import state_path_for
from .writers import STDOUT, detect_output_format

#: Names a directory scan never takes as inputs: the scorer's own outputs and reports.
OWN_SUFFIXES = (".pred.csv", ".rejects.csv")


@dataclass(frozen=True)
class RunPlan:
    """The checked options, the input files, and each input paired with its output."""

    options: ScoreOptions
    files: list[str]
    pairs: list[tuple[str, str]]


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
    name = Path(path).name
    if name.endswith(OWN_SUFFIXES) or name.startswith("."):
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
    """Where the reject report of ``src`` goes: beside its output (the working directory for
    stdout)."""
    stem = "stdin" if src == STDIN else input_stem(src)
    folder = Path.cwd() if dst == STDOUT else Path(dst).parent
    return folder / f"{stem}.rejects.csv"


def plan_outputs(inputs: list[str], *, output: str | None, out_dir: str | Path | None,
                 output_format: str | None) -> list[tuple[str, str]]:
    """Pair each input with its output (``output`` or ``out_dir``, never both: see
    :func:`.options.check_run`), refusing plans where two inputs would write one output."""
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
             options: ScoreOptions | None) -> RunPlan:
    """Check the run's options, find the input files and pair each with its output: the start
    that the local and the cluster engine share."""
    check_run(output=output, out_dir=out_dir)
    options = options or ScoreOptions()
    if options.output_format is None and output not in (None, STDOUT):
        options = replace(options, output_format=detect_output_format(output, None))
    files = expand_inputs(inputs, options.read.input_format)
    pairs = plan_outputs(files, output=output, out_dir=out_dir,
                         output_format=options.output_format)
    return RunPlan(options, files, pairs)


def leftover_names(pairs: list[tuple[str, str]]) -> dict[Path, set[str]]:
    """Per output directory, the files of this run that a killed run may have left
    temporaries of: outputs, reject reports and state records."""
    names: dict[Path, set[str]] = {}
    for src, dst in pairs:
        if dst == STDOUT:
            continue
        path = Path(dst)
        names.setdefault(path.parent, set()).update(
            {path.name, state_path_for(path).name, rejects_path_for(src, dst).name})
    return names


def hold_outputs(stack: contextlib.ExitStack, pairs: list[tuple[str, str]]) -> None:
    """Lock every output directory for the run (on ``stack``), then clear what killed runs
    left beside these outputs."""
    directories = sorted({str(Path(dst).parent) for _, dst in pairs if dst != STDOUT})
    for directory in directories:
        stack.enter_context(output_lock(Path(directory)))
    remove_leftovers(leftover_names(pairs))
