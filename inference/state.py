"""The up-to-date record: what an output was made from, so that a rerun can skip it.

Each output has a hidden JSON record beside it (``.<output>.state.json``): the input's size,
mtime and sha256, the model's sha256, the options that shape the output, the run that wrote
it and that run's summary of the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .fsio import write_atomic_bytes
from .readers import STDIN

STATE_SCHEMA = 1

#: (size, mtime_ns) of an input, the cheap half of the up-to-date check.
StatKey = tuple[int, int]


def state_path_for(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.state.json")


def stat_key(path: str) -> StatKey | None:
    """(size, mtime_ns) of an input file; None for stdin."""
    if path == STDIN:
        return None
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


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
    """The record beside ``dst``, or None when there is none or it is unreadable."""
    try:
        state = json.loads(state_path_for(dst).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def up_to_date(src: str, dst: Path, model_sha256: str,
               fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded state when ``dst`` already holds ``src`` scored by this model with these
    options, else None. The input's sha256 is computed only when its mtime differs."""
    state = read_state(dst)
    if not state or state.get("schema") != STATE_SCHEMA or not dst.exists():
        return None
    if state.get("model_sha256") != model_sha256 or state.get("options") != fingerprint:
        return None
    size, mtime = stat_key(src) or (None, None)
    recorded = state.get("input", {})
    if recorded.get("size") != size:
        return None
    if state.get("output", {}).get("size") != dst.stat().st_size:
        return None
    if recorded.get("mtime_ns") == mtime:
        return state
    return state if file_sha256(src) == recorded.get("sha256") else None


def write_state(src: str, dst: Path, before: StatKey | None, digest: str | None,
                model_sha256: str, fingerprint: dict[str, Any], summary: dict[str, Any],
                run_id: str | None = None) -> None:
    """Record what ``dst`` was made from (after ``dst`` itself was committed)."""
    size, mtime = before or (None, None)
    state = {
        "schema": STATE_SCHEMA,
        "input": {"path": src, "size": size, "mtime_ns": mtime, "sha256": digest},
        "output": {"path": str(dst), "size": dst.stat().st_size},
        "model_sha256": model_sha256,
        "options": fingerprint,
        "run_id": run_id,
        "summary": {k: v for k, v in summary.items() if k not in ("input", "output")},
    }
    write_atomic_bytes(state_path_for(dst), json.dumps(state, indent=1).encode())
