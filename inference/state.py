"""The up-to-date record: what an output was made from, so that a rerun can skip it.

Each output has a JSON record in its directory's journal (``.digits-score/records.jsonl``,
see :mod:`.journal`): the input's identity (size, mtime, inode, ctime) and sha256, the
model's sha256, the options that shape the output, the run that wrote it and that run's
summary of the file. The record is written last, after the output and its reject report:
an output without a matching record is not up to date.

An input is up to date when its identity is unchanged, or else when its content is: a content
change that keeps size and mtime (``touch -r``) still changes the inode or the ctime, and then
the hash decides. The record keeps the content in one of two kinds, and either engine checks
both:

- ``"sha256"``: the whole file's sha256 (the local engine, which hashes as it reads);
- ``"sha256_ranges"``: ``[{"begin": B, "end": E, "sha256": H}, ...]``, byte ranges that
  together make the file ``[0, size)`` in order, each with its own sha256 (a file split into
  parts on a cluster: each part hashes the range it read, so nothing reads the file twice).
  A changed file is checked range by range over the same ranges.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import WriteError
from .journal import journal_of
from .readers import STDIN

#: 3: records in one journal per directory (2: one file per output, no longer read).
STATE_SCHEMA = 3

#: (size, mtime_ns, inode, ctime_ns) of an input: what a content change cannot all keep.
StatKey = tuple[int, int, int, int]
#: Bytes ``[begin, end)`` of an input and their sha256 (hex).
RangeHash = tuple[int, int, str]
#: What a record keeps of an input's content: the whole file's sha256, or the sha256 of each
#: of the byte ranges that make the file, in order.
InputDigest = str | tuple[RangeHash, ...]
#: At most this many ranges in a record (about 130 bytes each): a file cut into more parts
#: is recorded by its whole sha256, so that the record stays small.
MAX_RANGES = 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


def record_key(dst: Path) -> bytes:
    """The key of ``dst``'s record in its directory's journal: its name's bytes in hex, so
    any name fits."""
    return os.fsencode(dst.name).hex().encode()


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


def range_sha256(path: str, begin: int, end: int) -> str:
    """The sha256 of bytes ``[begin, end)`` of ``path`` (fewer if the file is shorter)."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(begin)
        left = end - begin
        while left > 0 and (chunk := fh.read(min(left, 8 << 20))):
            sha.update(chunk)
            left -= len(chunk)
    return sha.hexdigest()


def covering_ranges(src: str, size: int,
                    ranges: Sequence[RangeHash]) -> tuple[RangeHash, ...] | None:
    """The ranges that parts of ``src`` read and hashed, as a record's input hash: the bytes
    before the first range (a header, a BOM) hashed here, empty ranges dropped. None unless
    the ranges follow each other exactly and end at ``size``, or when they are more than
    :data:`MAX_RANGES` (the caller then records the whole file's sha256)."""
    if not ranges or size <= 0:
        return None
    kept: list[RangeHash] = []
    if ranges[0][0] > 0:
        kept.append((0, ranges[0][0], range_sha256(src, 0, ranges[0][0])))
    at = ranges[0][0]
    for begin, end, digest in ranges:
        if begin != at or end < begin:
            return None
        if end > begin:
            kept.append((begin, end, digest))
        at = end
    if at != size or len(kept) > MAX_RANGES:
        return None
    return tuple(kept)


def _recorded_ranges(recorded: Any, size: int) -> list[RangeHash] | None:
    """A record's ``sha256_ranges``, when they are well formed and make ``[0, size)``."""
    if not isinstance(recorded, list) or not recorded or len(recorded) > MAX_RANGES:
        return None
    ranges: list[RangeHash] = []
    at = 0
    for item in recorded:
        if not isinstance(item, dict):
            return None
        begin, end, digest = item.get("begin"), item.get("end"), item.get("sha256")
        if (type(begin) is not int or type(end) is not int or not isinstance(digest, str)
                or begin != at or end <= begin or not _HEX64.fullmatch(digest)):
            return None
        ranges.append((begin, end, digest))
        at = end
    return ranges if at == size else None


def same_content(src: str, recorded: dict[str, Any], size: int) -> bool:
    """Whether ``src`` (``size`` bytes) holds what a record's input hash says, of either
    kind; a range hash is checked range by range, stopping at the first that differs."""
    whole = recorded.get("sha256")
    if isinstance(whole, str):
        return file_sha256(src) == whole
    ranges = _recorded_ranges(recorded.get("sha256_ranges"), size)
    if ranges is None:
        return False
    return all(range_sha256(src, begin, end) == digest for begin, end, digest in ranges)


def same_file(a: str, b: Path) -> bool:
    """Whether two paths name one file (False when either does not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def read_state(dst: Path) -> dict[str, Any] | None:
    """The record of ``dst``, or None when there is none, or it is unreadable, planted (the
    journal is not a regular file, or too large) or about another output."""
    data = journal_of(dst.parent).get(record_key(dst))
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


def report_owners(directory: Path) -> dict[str, str]:
    """The reject reports that records in ``directory`` name (by their path from it), each
    with the name of the output whose report it is."""
    owners: dict[str, str] = {}
    for _, data in journal_of(directory).items():
        try:
            state = json.loads(data)
            report, output = state["rejects"]["name"], state["output"]["name"]
            owners[os.path.normpath(os.fsdecode(bytes.fromhex(report)))] = os.fsdecode(
                bytes.fromhex(output))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue  # no report, or not a record of ours
    return owners


def remove_state(dst: Path) -> None:
    try:
        journal_of(dst.parent).withdraw(record_key(dst))
    except WriteError as exc:
        raise WriteError(f"{dst}: cannot withdraw its up-to-date record ({exc})") from None


def up_to_date(src: str, dst: Path, model_sha256: str,
               fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The recorded state when ``dst`` already holds ``src`` scored by this model with these
    options, else None. The input is hashed only when its identity differs (a record of an
    older schema, or one that cannot be read, is not up to date)."""
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
    if state["output"].get("size") != dst.stat().st_size or not _report_intact(dst, state):
        return None
    if recorded.get("identity") == list(key):
        return state
    return state if same_content(src, recorded, key[0]) else None


def _report_facts(dst: Path, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The path (from ``dst``'s folder: a report may be given elsewhere) and size of the
    reject report a committed output has (None: it has none)."""
    if not summary.get("rejects_file"):
        return None
    report = Path(summary["rejects_file"])
    return {"name": os.fsencode(os.path.relpath(report, dst.parent)).hex(),
            "size": report.stat().st_size}


def _report_intact(dst: Path, state: dict[str, Any]) -> bool:
    """Whether the reject report the record names is still beside ``dst``, as written: an
    output whose rejected rows are nowhere is not up to date."""
    summary = state.get("summary")
    if not isinstance(summary, dict):
        return False
    if not summary.get("rejects_file"):
        return True
    facts = state.get("rejects")
    if not isinstance(facts, dict) or not isinstance(facts.get("name"), str):
        return False  # recorded before reports were
    try:
        report = dst.parent / os.fsdecode(bytes.fromhex(facts["name"]))
        st = os.lstat(report)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == facts.get("size")


def write_state(src: str, dst: Path, before: StatKey | None, digest: InputDigest | None,
                model_sha256: str, fingerprint: dict[str, Any], summary: dict[str, Any],
                run_id: str | None = None) -> None:
    """Record what ``dst`` was made from (after ``dst`` itself was committed).

    ``digest``: the input's sha256, or the sha256 of each of its ranges (see the module).
    """
    recorded: dict[str, Any] = {
        "path": os.fsencode(src).decode("utf-8", "backslashreplace"),
        "size": before[0] if before else None,
        "identity": list(before) if before else None,
        "sha256": digest if isinstance(digest, str) else None,
    }
    if isinstance(digest, tuple):
        recorded["sha256_ranges"] = [{"begin": begin, "end": end, "sha256": sha}
                                     for begin, end, sha in digest]
    state = {
        "schema": STATE_SCHEMA,
        "input": recorded,
        "output": {"name": os.fsencode(dst.name).hex(), "size": dst.stat().st_size},
        "rejects": _report_facts(dst, summary),
        "model_sha256": model_sha256,
        "options": fingerprint,
        "run_id": run_id,
        "summary": {k: v for k, v in summary.items() if k not in ("input", "output")},
    }
    try:
        journal_of(dst.parent).put(record_key(dst),
                                   json.dumps(state, separators=(",", ":")).encode())
    except WriteError as exc:
        raise WriteError(f"{dst}: cannot write its up-to-date record ({exc})") from None
