"""The up-to-date record: what an output was made from, so that a rerun can skip it.

Each output has a JSON record in its directory's bookkeeping folder
(``.digits-score/<hash of the output's name>.json``): the input's identity (size, mtime,
inode, ctime) and sha256, the model's sha256, the options that shape the output, the run that
wrote it and that run's summary of the file. The record is written last, after the output and
its reject report: an output without a matching record is not up to date.

An input is up to date when its identity is unchanged, or else when its sha256 is: a content
change that keeps size and mtime (``touch -r``) still changes the inode or the ctime, and then
the hash decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from .fsio import BOOKKEEPING, read_small_file, write_bookkeeping
from .readers import STDIN

STATE_SCHEMA = 2

#: (size, mtime_ns, inode, ctime_ns) of an input: what a content change cannot all keep.
StatKey = tuple[int, int, int, int]


def state_path_for(dst: Path) -> Path:
    """Where the record of ``dst`` lives: named by a hash, so any output name fits."""
    digest = hashlib.sha256(os.fsencode(dst.name)).hexdigest()[:32]
    return dst.parent / BOOKKEEPING / f"{digest}.json"


def stat_key(path: str) -> StatKey | None:
    """The identity of an input file; None for stdin, pipes and devices, which have no
    stable content to compare."""
    if path == STDIN:
        return None
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def changed(src: str, before: StatKey) -> bool:
    """Whether ``src`` is no longer the file it was when ``before`` was taken."""
    try:
        return stat_key(src) != before
    except OSError:
        return True


def file_sha256(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def same_file(a: str, b: Path) -> bool:
    """Whether two paths name one file (False when either does not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_state(dst: Path) -> dict[str, Any] | None:
    """The record of ``dst``, or None when there is none, or it is unreadable, planted (not a
    regular file, too large) or about another output."""
    data = read_small_file(state_path_for(dst))
    if data is None:
        return None
    try:
        state = json.loads(data)
    except ValueError:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("output"), dict):
        return None
    if state["output"].get("name") != os.fsencode(dst.name).hex():
        return None
    return state


def remove_state(dst: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path_for(dst))


def up_to_date(src: str, dst: Path, model_sha256: str,
               fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded state when ``dst`` already holds ``src`` scored by this model with these
    options, else None. The input's sha256 is computed only when its identity differs."""
    key = stat_key(src)
    if key is None:
        return None
    state = read_state(dst)
    if not state or state.get("schema") != STATE_SCHEMA or not dst.exists():
        return None
    if state.get("model_sha256") != model_sha256 or state.get("options") != fingerprint:
        return None
    recorded = state.get("input")
    if not isinstance(recorded, dict) or recorded.get("size") != key[0]:
        return None
    if state["output"].get("size") != dst.stat().st_size:
        return None
    if recorded.get("identity") == list(key):
        return state
    return state if file_sha256(src) == recorded.get("sha256") else None


def write_state(src: str, dst: Path, before: StatKey | None, digest: str | None,
                model_sha256: str, fingerprint: dict[str, Any], summary: dict[str, Any],
                run_id: str | None = None) -> None:
    """Record what ``dst`` was made from (after ``dst`` itself was committed)."""
    state = {
        "schema": STATE_SCHEMA,
        "input": {"path": os.fsencode(src).decode("utf-8", "backslashreplace"),
                  "size": before[0] if before else None,
                  "identity": list(before) if before else None, "sha256": digest},
        "output": {"name": os.fsencode(dst.name).hex(), "size": dst.stat().st_size},
        "model_sha256": model_sha256,
        "options": fingerprint,
        "run_id": run_id,
        "summary": {k: v for k, v in summary.items() if k not in ("input", "output")},
    }
    write_bookkeeping(state_path_for(dst), json.dumps(state, indent=1).encode())
