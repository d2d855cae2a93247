"""Which files a run reads: inputs named, found in directories (descending with
``--recursive``) or matched by globs, and what the scans passed over and why."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import MissingInputError, ReadError, UsageError
from .formats import OUTPUT_FORMATS, REJECTS_SUFFIX
from .readers import STDIN, detect_format

#: Names a directory scan never takes as inputs: the scorer's own outputs (in every output
#: format) and reject reports. Hidden files (the bookkeeping folder) are never taken either.
OWN_SUFFIXES = (*(f".pred.{fmt}" for fmt in OUTPUT_FORMATS), REJECTS_SUFFIX)


def expand_inputs(inputs: list[str], input_format: str | None = None,
                  left_out: list[tuple[str, str]] | None = None, *, recursive: bool = False,
                  folders: dict[str, str] | None = None) -> list[str]:
    """Files named directly, found in directories (by known extensions) or matched by globs
    (a directory a glob matches is scanned as one named).

    A directory's subdirectories are passed over unless ``recursive``; then the scan descends
    into them (not into hidden ones, nor through links to directories, which could loop) and
    ``folders`` receives, for each file found below a subdirectory, its folder relative to
    the directory scanned (where its output goes under ``--out-dir``). A file a scan finds
    again (overlapping inputs: ``in in/a``) is taken once, where it was first found. What a
    scan passes over goes to ``left_out`` with the reason; a directory that cannot be listed
    fails the run (ReadError) rather than leave its files out unseen.
    """
    found: list[str] = []
    seen: dict[tuple[int, int] | str, str] = {}
    scan = _Scan(input_format, recursive, found, seen, left_out, folders)
    for spec in inputs:
        if spec == STDIN:
            found.append(spec)
        elif os.path.isdir(spec):
            scan.directory(spec)
        elif glob.has_magic(spec) and not os.path.lexists(spec):
            # An existing name is a name (brackets[1].csv), never a pattern.
            matches = sorted(glob.glob(spec))
            if not matches:
                raise MissingInputError(f"{spec}: the pattern matches no file")
            for match in matches:
                if os.path.isdir(match):
                    scan.directory(match)
                else:
                    scan.file(match)
        else:
            found.append(spec)  # named: taken as given, even twice (plan_outputs says so)
            seen.setdefault(file_key(spec), spec)
    return found


def file_key(path: str) -> tuple[int, int] | str:
    """What makes two names one file: (device, inode), else the resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return st.st_dev, st.st_ino


@dataclass
class _Scan:
    """The state of one expansion's directory scans (see :func:`expand_inputs`)."""

    input_format: str | None
    recursive: bool
    found: list[str]
    seen: dict[tuple[int, int] | str, str]
    left_out: list[tuple[str, str]] | None
    folders: dict[str, str] | None

    def directory(self, top: str) -> None:
        """Scan ``top`` in name order, descending in place when recursive: a stack of
        listings, not a call per level, so that no depth of tree can exhaust the stack."""
        stack = [(Path(), iter(_listing(Path(top))))]
        while stack:
            below, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                continue
            reason = _why_not_an_input(entry, self.input_format)
            if reason == "a directory" and os.path.islink(entry):
                reason = "a link to a directory; not followed"
            elif reason == "a directory" and self.recursive:
                sub = below / Path(entry).name
                stack.append((sub, iter(_listing(Path(top) / sub))))
                continue
            elif reason == "a directory":
                reason = "a directory; --recursive descends into it"
            if reason is None:
                self.file(entry, below)
            elif self.left_out is not None:
                self.left_out.append((entry, reason))

    def file(self, path: str, below: Path = Path()) -> None:
        key = file_key(path)
        first = self.seen.get(key)
        if first is not None:
            if self.left_out is not None:
                self.left_out.append((path, f"found already, as {first}"))
            return
        self.seen[key] = path
        self.found.append(path)
        if below.parts and self.folders is not None:
            self.folders[path] = str(below)


def _listing(folder: Path) -> list[str]:
    try:
        return sorted(str(p) for p in folder.iterdir())
    except OSError as exc:
        raise ReadError(f"{folder}: cannot list the directory ({exc.strerror or exc}); "
                        "its files would go unscored") from None


def _why_not_an_input(path: str, input_format: str | None) -> str | None:
    """Why a directory scan passes over ``path``, or None when it is an input."""
    name = Path(path).name
    if name.startswith("."):
        return "hidden"
    if not os.path.isfile(path):
        return "a directory" if os.path.isdir(path) else "not a regular file"
    if name.endswith(OWN_SUFFIXES):
        return "an output or reject report of digits-score"
    try:
        detect_format(path, input_format)
    except UsageError:
        return "not a format digits-score reads; see --input-format"
    return None
