"""The up-to-date record: both kinds of input hash, and records that cannot be trusted.

A record holds the input's content as the whole file's sha256 (the local engine) or as the
sha256 of byte ranges that make the file (a split file's parts, on a cluster). Either is
checked when the input's identity changed; a record that is old, corrupt or planted is
simply not up to date.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import pytest
from digits_onnx.inference.fsio import bookkeeping_dir
from digits_onnx.inference.state import (
    MAX_RANGES,
    covering_ranges,
    file_sha256,
    range_sha256,
    stat_key,
    up_to_date,
    write_state,
)

from tests.records_support import put_record_bytes, record_bytes

MODEL = "ab" * 32
OPTIONS = {"proba": False}
DATA = b"header\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(2000))


def _ranges(data: bytes, cuts: list[int]) -> tuple[tuple[int, int, str], ...]:
    bounds = [0, *cuts, len(data)]
    return tuple((a, b, hashlib.sha256(data[a:b]).hexdigest())
                 for a, b in itertools.pairwise(bounds))


@pytest.fixture
def scored(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_bytes(DATA)
    dst.write_bytes(b"row,label\n")
    bookkeeping_dir(tmp_path)
    return src, dst


def _record(src: Path, dst: Path, digest) -> None:
    write_state(str(src), dst, stat_key(str(src)), digest, MODEL, OPTIONS, {"rows": 2000})


def _touch_identity(src: Path) -> None:
    """Another identity, the same bytes."""
    os.utime(src, ns=(123, 456))


def _check(src: Path, dst: Path) -> bool:
    return up_to_date(str(src), dst, MODEL, OPTIONS) is not None


def _same_size_change(src: Path, at: int) -> None:
    data = bytearray(src.read_bytes())
    data[at:at + 1] = b"7" if data[at:at + 1] != b"7" else b"8"
    st = src.stat()
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r: only the ctime tells


@pytest.mark.parametrize("kind", ["whole", "ranges"])
def test_either_kind_of_record_verifies_an_unchanged_input(scored, kind):
    src, dst = scored
    digest = file_sha256(str(src)) if kind == "whole" else _ranges(DATA, [7, 5000, 9000])
    _record(src, dst, digest)
    assert _check(src, dst)
    _touch_identity(src)
    assert _check(src, dst)


@pytest.mark.parametrize("kind", ["whole", "ranges"])
@pytest.mark.parametrize("at", [0, 3, 6000, len(DATA) - 2])
def test_either_kind_of_record_sees_a_change_that_keeps_the_size(scored, kind, at):
    src, dst = scored
    digest = file_sha256(str(src)) if kind == "whole" else _ranges(DATA, [7, 5000, 9000])
    _record(src, dst, digest)
    _same_size_change(src, at)
    assert not _check(src, dst)


def test_a_range_record_is_readable_json_of_the_ranges(scored):
    src, dst = scored
    digest = _ranges(DATA, [7, 5000])
    _record(src, dst, digest)
    recorded = json.loads(record_bytes(dst))["input"]
    assert recorded["sha256"] is None
    assert recorded["sha256_ranges"] == [{"begin": a, "end": b, "sha256": h}
                                         for a, b, h in digest]
    assert range_sha256(str(src), 7, 5000) == digest[1][2]


def test_covering_ranges_hash_the_header_and_refuse_what_does_not_make_the_file(scored):
    src, _ = scored
    size = len(DATA)
    parts = list(_ranges(DATA, [7, 5000, 9000])[1:])
    covered = covering_ranges(str(src), size, parts)
    assert covered == _ranges(DATA, [7, 5000, 9000])  # the header's range added
    empty = (5000, 5000, hashlib.sha256().hexdigest())
    assert covering_ranges(str(src), size, [parts[0], empty, *parts[1:]]) == covered
    assert covering_ranges(str(src), size, [parts[0], parts[2]]) is None  # a gap
    assert covering_ranges(str(src), size, parts[:-1]) is None  # short of the end
    assert covering_ranges(str(src), size + 1, parts) is None
    assert covering_ranges(str(src), size, [parts[1], parts[0], parts[2]]) is None
    assert covering_ranges(str(src), size, []) is None
    many = [(i, i + 1, "0" * 64) for i in range(7, 7 + MAX_RANGES)]
    assert covering_ranges(str(src), 7 + MAX_RANGES, many) is None


@pytest.mark.parametrize("ranges", [
    "not a list",
    [],
    [[0, 100, "0" * 64]],
    [{"begin": 0, "end": 10}],
    [{"begin": 0, "end": len(DATA), "sha256": "not hex"}],
    [{"begin": 0, "end": len(DATA), "sha256": "A" * 64}],
    [{"begin": 1, "end": len(DATA), "sha256": "0" * 64}],
    [{"begin": 0, "end": len(DATA) - 1, "sha256": "0" * 64}],
    [{"begin": 0, "end": 5, "sha256": "0" * 64}, {"begin": 6, "end": len(DATA),
                                                   "sha256": "0" * 64}],
    [{"begin": False, "end": len(DATA), "sha256": "0" * 64}],
    [{"begin": 0.0, "end": float(len(DATA)), "sha256": "0" * 64}],
    [{"begin": 0, "end": 0, "sha256": "0" * 64},
     {"begin": 0, "end": len(DATA), "sha256": "0" * 64}],
    [{"begin": 0, "end": len(DATA), "sha256": None}],
])
def test_a_corrupt_range_record_is_not_up_to_date(scored, ranges):
    src, dst = scored
    _record(src, dst, _ranges(DATA, [7]))
    state = json.loads(record_bytes(dst))
    state["input"]["sha256_ranges"] = ranges
    put_record_bytes(dst, json.dumps(state).encode())
    _touch_identity(src)
    assert not _check(src, dst)


@pytest.mark.parametrize("damage", ["schema 2", "schema 4", "no input", "input a list",
                                    "no hash", "truncated", "not json", "a list"])
def test_an_old_or_corrupt_record_is_not_up_to_date(scored, damage):
    src, dst = scored
    _record(src, dst, file_sha256(str(src)))
    text = record_bytes(dst).decode()
    state = json.loads(text)
    if damage == "schema 2":
        state["schema"] = 2
    elif damage == "schema 4":
        state["schema"] = 4
    elif damage == "no input":
        del state["input"]
    elif damage == "input a list":
        state["input"] = [1, 2]
    elif damage == "no hash":
        state["input"]["sha256"] = None
    text = json.dumps(state)
    if damage == "truncated":
        text = record_bytes(dst).decode()[:200]
    elif damage == "not json":
        text = "\x00\xff garbage"
    elif damage == "a list":
        text = "[1, 2, 3]"
    put_record_bytes(dst, text.encode())
    if damage != "no hash":  # whatever the identity, never up to date
        assert not _check(src, dst)
    _touch_identity(src)
    assert not _check(src, dst)
