"""A file cut into parts and joined again gives the local engine's output, byte for byte.

The part and join steps are plain functions (Dask only schedules them), so they are tested
here in-process on many layouts; tests/test_distributed.py runs them on a real cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import ReadOptions, ScoreOptions, score_files
from digits_onnx.inference.distributed import cuts_of, encodes_itself, slice_mode
from digits_onnx.inference.errors import DigitsError, ReadError
from digits_onnx.inference.join import join_parts
from digits_onnx.inference.parts import (
    encode_part,
    hash_file,
    needs_hash_task,
    part_path,
    part_rows,
    score_part,
)
from digits_onnx.inference.state import read_state, stat_key, up_to_date
from digits_onnx.inference.summary import failed_summary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.records_support import record_bytes


def _moved(value):
    """What another worker process gets: the task's result, pickled and unpickled."""
    return pickle.loads(pickle.dumps(value))


def _split_and_join(src: Path, dst: Path, model, options: ScoreOptions, part_bytes: int,
                    before=None):
    """The tasks of a split file, in the order the client's graph runs them."""
    cuts = cuts_of(str(src), options, part_bytes)
    assert cuts is not None and len(cuts) >= 2, "the file should have been split"
    mode = slice_mode(str(src), str(dst), options)
    parts = [_moved(score_part(model.data, model.sha256, str(src), str(dst), options, "run", i,
                               a, b, encodes_itself(mode, i)))
             for i, (a, b) in enumerate(cuts)]
    slices = []
    if mode == "renumber":
        counts = [part_rows(part) for part in parts]
        slices = [None] + [_moved(encode_part(str(src), str(dst), options, "run", parts[i],
                                              counts[:i])) for i in range(1, len(parts))]
    # As the client submits them: the whole file's sha256 only when the parts cannot hash
    # their ranges.
    digest = hash_file(str(src)) if needs_hash_task(str(src), options, len(cuts)) else None
    summary = join_parts(model.sha256, str(src), str(dst), options, before, parts, 0.0, "run",
                         digest, slices)
    assert not [p for p in dst.parent.iterdir() if ".part-" in p.name], "parts left behind"
    return summary


def _assert_ranges_verify(src: Path, dst: Path, model, options: ScoreOptions) -> None:
    """The record of a split CSV: its parts' range hashes, which make the whole file and
    verify when the input's identity changes but not its bytes."""
    recorded = read_state(dst)["input"]
    assert recorded["sha256"] is None
    ranges = recorded["sha256_ranges"]
    data = src.read_bytes()
    assert [r["begin"] for r in ranges] == [0] + [r["end"] for r in ranges[:-1]]
    assert ranges[-1]["end"] == len(data) == recorded["size"]
    for r in ranges:
        assert r["end"] > r["begin"]
        assert r["sha256"] == hashlib.sha256(data[r["begin"]:r["end"]]).hexdigest()
    os.utime(src, ns=(1, 1))  # another identity, the same bytes: the ranges decide
    assert up_to_date(str(src), dst, model.sha256, options.fingerprint()) is not None


def _local(src: Path, dst: Path, model, options: ScoreOptions):
    summary = score_files([str(src)], output=str(dst), model=model, options=options)
    (result,) = summary.files
    return result


def _same(a, b) -> None:
    keys = ("status", "rows", "scored", "rejected", "out_of_range", "correct", "labelled",
            "confusion", "error", "exit_code")
    assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}


lines = st.one_of(
    st.just("good"), st.just("good"), st.just("good"), st.just("blank"), st.just("word"),
    st.just("short"), st.just("nan"), st.just("big"),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(lines, min_size=20, max_size=120),
    header=st.booleans(), crlf=st.booleans(), bom=st.booleans(),
    delimiter=st.sampled_from([",", ";", "\t", " "]), part_bytes=st.integers(64, 2000),
    on_error=st.sampled_from(["skip", "fail"]), proba=st.booleans(),
)
def test_csv_parts_join_to_the_local_output(tmp_path_factory, model, kinds, header, crlf, bom,
                                            delimiter, part_bytes, on_error, proba):
    folder = tmp_path_factory.mktemp("parts")
    rng = np.random.default_rng(len(kinds))
    rows = []
    if header:
        rows.append(delimiter.join(f"p{k}" for k in range(64)))
    for kind in kinds:
        values = [str(v) for v in rng.integers(0, 17, 64)]
        if kind == "blank":
            rows.append("")
            continue
        if kind == "word":
            values[5] = "seven"
        elif kind == "short":
            values = values[:60]
        elif kind == "nan":
            values[63] = "nan"
        elif kind == "big":
            values[0] = "40"
        rows.append(delimiter.join(values))
    newline = "\r\n" if crlf else "\n"
    text = newline.join(rows) + newline
    src = folder / "in.csv"
    src.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    options = ScoreOptions(read=ReadOptions(delimiter="whitespace" if delimiter == " "
                                            else delimiter, header=header),
                           on_error=on_error, proba=proba)
    local = _local(src, folder / "local.csv", model, options)
    rejects, local_report = folder / "joined.rejects.csv", folder / "local.rejects.csv"
    local_rejects = local_report.read_bytes() if local_report.exists() else None
    try:
        joined = _split_and_join(src, folder / "joined.csv", model, options, part_bytes,
                                 before=stat_key(str(src)))
    except DigitsError as exc:  # the engine raises; a cluster task reports it the same way
        joined = failed_summary(str(src), exc)
    _same(joined, local)
    if local.status == "scored":
        assert (folder / "joined.csv").read_bytes() == (folder / "local.csv").read_bytes()
        _assert_ranges_verify(src, folder / "joined.csv", model, options)
        if local.rejected:
            assert (joined.rejects_file, local.rejects_file) == (str(rejects), str(local_report))
            assert rejects.read_bytes() == local_rejects
        else:
            assert not rejects.exists() and local_rejects is None
    else:
        assert not (folder / "joined.csv").exists()


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("dtype", ["<f4", ">f8", "u1", "<i2"])
@pytest.mark.parametrize("fmt", ["csv", "npy", "parquet", "jsonl"])
def test_npy_row_ranges_join_to_the_local_output(tmp_path, model, layout, dtype, fmt):
    rng = np.random.default_rng(3)
    X = rng.integers(0, 17, size=(1000, 8, 8)).astype(dtype)
    X = np.asfortranarray(X) if layout == "F" else X
    src = tmp_path / "in.npy"
    np.save(src, X)
    options = ScoreOptions(output_format=fmt, proba=True)
    local = _local(src, tmp_path / f"local.{fmt}", model, options)
    joined = _split_and_join(src, tmp_path / f"joined.{fmt}", model, options,
                             part_bytes=64 * X.dtype.itemsize * 137)
    _same(joined, local)
    assert (tmp_path / f"joined.{fmt}").read_bytes() == (tmp_path / f"local.{fmt}").read_bytes()


def test_a_rerun_part_replaces_its_file(tmp_path, model):
    src = tmp_path / "in.npy"
    np.save(src, np.ones((300, 64), np.float32))
    dst = tmp_path / "out.csv"
    options = ScoreOptions()
    first = score_part(model.data, model.sha256, str(src), str(dst), options, "r1", 0, 0, 150)
    data = Path(first.path).read_bytes()
    again = score_part(model.data, model.sha256, str(src), str(dst), options, "r1", 0, 0, 150)
    assert again.path == first.path == str(part_path(str(dst), "r1", 0))
    assert Path(again.path).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.csv.part-r1-00000.arrow",
                                                          "in.npy"]


def test_small_and_compressed_files_are_not_split(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text(",".join(["1"] * 64) + "\n")
    gz = tmp_path / "big.csv.gz"
    gz.write_bytes(b"\x1f\x8b" + bytes(5000))
    assert cuts_of(str(small), ScoreOptions(), 1 << 20) is None
    assert cuts_of(str(gz), ScoreOptions(), 100) is None


def _rows_csv(path: Path, n: int, *, header: str | None = None) -> list[str]:
    lines = [header] if header else []
    lines += [",".join(str((i + k) % 17) for k in range(64)) for i in range(n)]
    return lines


def test_an_id_column_named_row_is_not_renumbered(tmp_path, model):
    header = "row," + ",".join(f"p{k}" for k in range(64))
    lines = [header] + [f"id{i}," + ",".join(str((i + k) % 17) for k in range(64))
                        for i in range(400)]
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    options = ScoreOptions(read=ReadOptions(id_column="row"))
    local = _local(src, tmp_path / "local.csv", model, options)
    joined = _split_and_join(src, tmp_path / "joined.csv", model, options, part_bytes=8000)
    _same(joined, local)
    assert (tmp_path / "joined.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()


def test_a_long_line_is_reported_in_the_files_numbering(tmp_path, model, monkeypatch):
    """An error raised inside a late part names the whole file's line, and the first
    problem in file order wins, whichever part finished first."""
    import digits_onnx.inference.readers.csv as csv_reader

    monkeypatch.setattr(csv_reader, "MAX_LINE_BYTES", 4000)
    lines = _rows_csv(tmp_path, 600)
    lines[450] = "1," * 3000 + "1"
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    options = ScoreOptions(read=ReadOptions(chunk_bytes=2000))
    local = _local(src, tmp_path / "local.csv", model, options)
    joined = _split_and_join(src, tmp_path / "joined.csv", model, options, part_bytes=9000)
    assert local.status == joined.status == "failed"
    assert joined.error == local.error
    assert "line 451 is longer than" in joined.error

    lines[100] = lines[100].replace("1", "x", 1)  # an earlier bad row in an earlier part
    src.write_text("\n".join(lines) + "\n")
    local = _local(src, tmp_path / "local.csv", model, options)
    joined = _split_and_join(src, tmp_path / "joined.csv", model, options, part_bytes=9000)
    assert joined.error == local.error and "line 101, column" in joined.error


@pytest.mark.parametrize(("bad", "problem"), [
    ("9223372036854775808", "id '9223372036854775808' is beyond int64"),
    ("", "empty id"),
    ("s450", "id 's450' is not a whole number"),
])
@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_an_id_npy_cannot_hold_is_named_by_the_files_line_in_a_late_part(
        tmp_path, model, bad, problem, on_error):
    """Parts keep tables and the join writes the NPY output, after the lines are gone: the
    part that reads the id reports it, renumbered into the whole file's lines."""
    lines = _rows_csv(tmp_path, 600, header="id," + ",".join(f"p{k}" for k in range(64)))
    lines[1:] = [f"{i}," + line for i, line in enumerate(lines[1:])]
    lines[451] = bad + lines[451][lines[451].index(","):]
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    options = ScoreOptions(read=ReadOptions(id_column="id"), output_format="npy",
                           on_error=on_error)
    local = _local(src, tmp_path / "local.npy", model, options)
    joined = _split_and_join(src, tmp_path / "joined.npy", model, options, part_bytes=9000)
    _same(joined, local)
    assert (joined.status, joined.exit_code) == ("failed", 65)
    assert joined.error.startswith(f"{src}: line 452, column 1 (id): {problem}")


def test_an_io_error_in_a_part_fails_the_file_cleanly(tmp_path, model, monkeypatch):
    src = tmp_path / "in.npy"
    np.save(src, np.ones((3000, 64), np.float32))
    dst = tmp_path / "out.csv"
    options = ScoreOptions()

    def broken_pread(fd, n, offset):
        raise OSError(5, "Input/output error")

    cuts = cuts_of(str(src), options, 64 * 4 * 1000)
    good = score_part(model.data, model.sha256, str(src), str(dst), options, "r", 0, *cuts[0])
    monkeypatch.setattr(os, "pread", broken_pread)
    bad = score_part(model.data, model.sha256, str(src), str(dst), options, "r", 1, *cuts[1])
    monkeypatch.undo()
    assert isinstance(bad.error, ReadError) and "Input/output error" in str(bad.error)
    summary = join_parts(model.sha256, str(src), str(dst), options, None, [good, bad], 0.0,
                         "r")
    assert summary.status == "failed" and summary.exit_code == 74
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_a_part_that_cannot_be_written_leaks_no_descriptor(tmp_path, model):
    src = tmp_path / "in.npy"
    np.save(src, np.ones((100, 64), np.float32))
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        part = score_part(model.data, model.sha256, str(src), str(tmp_path / "no" / "o.csv"),
                          ScoreOptions(), "r", 0, 0, 50)
        assert isinstance(part.error, DigitsError)
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("name, target", [
    (".a.csv.k2j4h1.tmp", "a.csv"),
    ("..a.csv.state.json.k2j4h1.tmp", ".a.csv.state.json"),
    (".a.csv.part-0123456789ab-00003.arrow", "a.csv"),
    ("..a.csv.part-0123456789ab-00003.arrow.k2j4h1.tmp", "a.csv"),
    (".a.part-2.pred.csv.part-0123456789ab-00001.arrow", "a.part-2.pred.csv"),
    ("..a.csv.part-0123456789ab-00003.text.k2j4h1.tmp", "a.csv"),
    (".a.rejects.csv.x9.tmp", "a.rejects.csv"),
    (".digits-score.lock", None),
    (".a.csv.state.json", None),
])
def test_leftovers_map_to_the_file_they_were_for(name, target):
    from digits_onnx.inference.fsio import leftover_of

    assert leftover_of(name) == target


def _labelled_csv(path: Path, n: int, *, ids: bool) -> None:
    """A CSV with a header, an optional id column, and a few rows to reject."""
    rng = np.random.default_rng(n)
    header = (["id"] if ids else []) + [f"p{k}" for k in range(64)]
    lines = [",".join(header)]
    for i in range(n):
        values = [str(v) for v in rng.integers(0, 17, 64)]
        if i % 97 == 5:
            values[3] = "bad"
        lines.append(",".join(([str(1000 + i)] if ids else []) + values))
        if i % 211 == 7:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "npy", "csv.gz"])
@pytest.mark.parametrize("ids", [False, True])
def test_csv_parts_give_every_output_format_the_local_bytes(tmp_path, model, fmt, ids):
    """Text outputs are joined from encoded slices (renumbered when keyed by row number),
    the others from tables; all of them byte for byte the local engine's."""
    src = tmp_path / "in.csv"
    _labelled_csv(src, 3000, ids=ids)
    options = ScoreOptions(read=ReadOptions(id_column="id" if ids else None),
                           on_error="skip", proba=True, output_format=fmt)
    expected = {"csv": "renumber", "tsv": "renumber", "jsonl": "renumber"}.get(fmt, "tables")
    if ids and expected == "renumber":
        expected = "final"
    assert slice_mode(str(src), str(tmp_path / "x"), options) == expected
    local = _local(src, tmp_path / "local.out", model, options)
    joined = _split_and_join(src, tmp_path / "joined.out", model, options, part_bytes=50_000)
    _same(joined, local)
    assert local.rejected == 31
    assert (tmp_path / "joined.out").read_bytes() == (tmp_path / "local.out").read_bytes()
    assert (tmp_path / "joined.out.rejects.csv").read_bytes() == (
        tmp_path / "local.out.rejects.csv").read_bytes()


def _split_csv(tmp_path: Path, model, options: ScoreOptions, rows: int = 2000,
               part_bytes: int = 40_000) -> tuple[Path, Path]:
    """A CSV scored in parts (as on a cluster) into ``out.csv``; its record written."""
    from digits_onnx.inference.fsio import bookkeeping_dir

    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _labelled_csv(src, rows, ids=False)
    bookkeeping_dir(tmp_path)  # the run's lock creates it
    summary = _split_and_join(src, dst, model, options, part_bytes, before=stat_key(str(src)))
    assert summary.status == "scored", summary.error
    return src, dst


def _rewrite_keeping_identity_but_inode(src: Path, data: bytes) -> None:
    """New bytes of the same size, the mtime put back (``touch -r``): only the ctime (and
    here the inode) tell, so the record's hash decides."""
    st = src.stat()
    src.write_bytes(data)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert src.stat().st_size == st.st_size


def test_the_record_of_a_split_csv_holds_its_parts_range_hashes(tmp_path, model):
    """No task reads the file twice: each part hashed the bytes it read, the join hashed the
    header before the first part, and together they make the file."""
    options = ScoreOptions(on_error="skip")
    src, dst = _split_csv(tmp_path, model, options)
    ranges = read_state(dst)["input"]["sha256_ranges"]
    header = src.read_bytes().index(b"\n") + 1
    assert ranges[0]["begin"] == 0 and ranges[0]["end"] == header
    assert len(ranges) == len(cuts_of(str(src), options, 40_000)) + 1
    _assert_ranges_verify(src, dst, model, options)
    text = record_bytes(dst)
    assert json.loads(text)["schema"] == 3 and len(text) < 300 * len(ranges) + 2000


@pytest.mark.parametrize("where", ["header", "middle of a part", "last byte"])
def test_a_change_that_keeps_the_size_makes_a_range_record_stale(tmp_path, model, where):
    from digits_onnx.inference.pipeline import skipped_summary

    options = ScoreOptions(on_error="skip", output_format="csv")
    src, dst = _split_csv(tmp_path, model, options)
    ranges = read_state(dst)["input"]["sha256_ranges"]
    assert skipped_summary(str(src), dst, model, options, 0.0) is not None
    data = bytearray(src.read_bytes())
    if where == "header":
        at = data.index(b"p1")  # p1 -> q1: only the header's range changes
        data[at] = ord("q")
    elif where == "middle of a part":
        middle = ranges[2]
        at = data.index(b",", (middle["begin"] + middle["end"]) // 2) + 1
        data[at:at + 1] = b"9" if data[at:at + 1] != b"9" else b"8"
    else:
        at = len(data) - 2
        data[at:at + 1] = b"9" if data[at:at + 1] != b"9" else b"8"
    changed = [r for r in ranges
               if hashlib.sha256(data[r["begin"]:r["end"]]).hexdigest() != r["sha256"]]
    assert len(changed) == 1
    _rewrite_keeping_identity_but_inode(src, bytes(data))
    assert up_to_date(str(src), dst, model.sha256, options.fingerprint()) is None
    assert skipped_summary(str(src), dst, model, options, 0.0) is None
    rerun = score_files([str(src)], output=str(dst), model=model, options=options)
    assert rerun.files[0].status == "scored"


def test_without_every_parts_range_the_record_holds_the_whole_files_sha256(tmp_path, model):
    """A part that did not report its range (or ranges that do not make the file): the join
    hashes the whole file, so the record is always right."""
    from dataclasses import replace

    from digits_onnx.inference.fsio import bookkeeping_dir
    from digits_onnx.inference.join import input_digest
    from digits_onnx.inference.state import file_sha256

    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _labelled_csv(src, 2000, ids=False)
    bookkeeping_dir(tmp_path)
    options = ScoreOptions(on_error="skip")
    before = stat_key(str(src))
    cuts = cuts_of(str(src), options, 40_000)
    parts = [_moved(score_part(model.data, model.sha256, str(src), str(dst), options, "run", i,
                               a, b, False)) for i, (a, b) in enumerate(cuts)]
    assert all(part.read_range is not None for part in parts)
    whole = file_sha256(str(src))
    assert isinstance(input_digest(str(src), before, parts), tuple)
    assert input_digest(str(src), None, parts) == whole
    gap = [parts[0], *parts[2:]]
    assert input_digest(str(src), before, gap) == whole
    short = parts[:-1]
    assert input_digest(str(src), before, short) == whole
    silent = [parts[0], replace(parts[1], read_range=None), *parts[2:]]
    assert input_digest(str(src), before, silent) == whole

    counts = [part_rows(part) for part in silent]
    slices = [_moved(encode_part(str(src), str(dst), options, "run", part, counts[:i]))
              for i, part in enumerate(silent)]
    summary = join_parts(model.sha256, str(src), str(dst), options, before, silent, 0.0,
                         "run", None, slices)
    assert summary.status == "scored", summary.error
    recorded = read_state(dst)["input"]
    assert recorded["sha256"] == whole and "sha256_ranges" not in recorded
    os.utime(src, ns=(1, 1))
    assert up_to_date(str(src), dst, model.sha256, options.fingerprint()) is not None


def test_a_part_stopped_early_reports_no_range(tmp_path, model):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _labelled_csv(src, 2000, ids=False)
    options = ScoreOptions(on_error="fail")  # the first bad row (i % 97 == 5) stops its part
    a, b = cuts_of(str(src), options, 40_000)[0]
    part = score_part(model.data, model.sha256, str(src), str(dst), options, "run", 0, a, b)
    assert part.tally.stopped and part.read_range is None


def test_either_engine_skips_what_the_other_scored(tmp_path, model):
    """A record of range hashes (the cluster's) and one of the whole file's sha256 (the local
    engine's) let either engine skip an unchanged input, touched or not, and rescore a
    changed one."""
    from digits_onnx.inference.pipeline import skipped_summary

    # As the run's plan resolves them for ``-o out.csv``: the record keeps the options.
    options = ScoreOptions(on_error="skip", output_format="csv")
    src, dst = _split_csv(tmp_path, model, options)
    assert read_state(dst)["input"]["sha256_ranges"]
    output = dst.read_bytes()
    for touch in (False, True):
        if touch:
            os.utime(src, ns=(5, 5))
        local = score_files([str(src)], output=str(dst), model=model, options=options)
        assert local.files[0].status == "skipped"
        assert skipped_summary(str(src), dst, model, options, 0.0) is not None
    assert dst.read_bytes() == output

    # The local engine's record (the whole file's sha256), checked by the cluster's client.
    other = tmp_path / "local.csv"
    assert score_files([str(src)], output=str(other), model=model,
                       options=options).files[0].status == "scored"
    assert isinstance(read_state(other)["input"]["sha256"], str)
    assert skipped_summary(str(src), other, model, options, 0.0) is not None
    os.utime(src, ns=(7, 7))
    assert skipped_summary(str(src), other, model, options, 0.0) is not None
    data = bytearray(src.read_bytes())
    data[-2:-1] = b"9" if data[-2:-1] != b"9" else b"8"
    _rewrite_keeping_identity_but_inode(src, bytes(data))
    assert skipped_summary(str(src), other, model, options, 0.0) is None
    assert skipped_summary(str(src), dst, model, options, 0.0) is None
    # Scored again in parts, the record is of ranges again, and holds.
    summary = _split_and_join(src, dst, model, options, 40_000, before=stat_key(str(src)))
    assert summary.status == "scored"
    assert skipped_summary(str(src), dst, model, options, 0.0) is not None


def test_the_client_submits_a_hash_task_for_npy_files_only(tmp_path, model):
    """What the client's graph holds: a split CSV's parts hash their ranges, so no task reads
    the whole file for the record; an NPY file's does."""
    from digits_onnx.inference import distributed

    class Future:
        status = "pending"

        def add_done_callback(self, callback) -> None:
            pass

    class Client:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def submit(self, fn, *args, key: str, **kwargs) -> Future:
            self.keys.append(key.rsplit("-", 1)[0])
            return Future()

    csv, npy = tmp_path / "in.csv", tmp_path / "in.npy"
    _labelled_csv(csv, 2000, ids=False)
    np.save(npy, np.ones((3000, 64), np.float32))
    graphs = {}
    for src in (csv, npy):
        client = Client()
        distributed._submit(client, str(src), str(tmp_path / f"{src.suffix[1:]}.out.csv"),
                            model, ScoreOptions(output_format="csv"), False, 200_000, "run")
        graphs[src.suffix] = client.keys
    assert graphs[".csv"][0] == "part-00000" and graphs[".csv"][-1] == "join"
    assert not [k for k in graphs[".csv"] if k.startswith("sha256")]
    assert graphs[".npy"][0] == "sha256" and graphs[".npy"][-1] == "join"


def test_only_npy_files_and_files_of_very_many_parts_need_the_hash_task(tmp_path):
    from digits_onnx.inference.state import MAX_RANGES

    csv, npy = tmp_path / "in.csv", tmp_path / "in.npy"
    _labelled_csv(csv, 10, ids=False)
    np.save(npy, np.ones((10, 64), np.float32))
    options = ScoreOptions()
    assert not needs_hash_task(str(csv), options, 16)
    assert not needs_hash_task(str(csv), options, MAX_RANGES - 1)
    assert needs_hash_task(str(csv), options, MAX_RANGES)
    assert needs_hash_task(str(npy), options, 2)


def _npy_parts(tmp_path: Path, model):
    """An NPY file of 1,000 rows cut into parts of 300 rows, each part scored: what the
    join gets when the input's hash was not computed beside them."""
    src, dst = tmp_path / "in.npy", tmp_path / "out.csv"
    np.save(src, np.ones((1000, 64), np.float32))
    options = ScoreOptions()
    cuts = cuts_of(str(src), options, 64 * 4 * 300)
    parts = [score_part(model.data, model.sha256, str(src), str(dst), options, "r", i, a, b,
                        True) for i, (a, b) in enumerate(cuts)]
    return src, dst, options, parts


def test_the_input_hash_is_computed_in_the_join_when_not_given(tmp_path, model):
    src, dst, options, parts = _npy_parts(tmp_path, model)
    from digits_onnx.inference.fsio import bookkeeping_dir
    from digits_onnx.inference.state import file_sha256, read_state, stat_key

    bookkeeping_dir(tmp_path)
    summary = join_parts(model.sha256, str(src), str(dst), options, stat_key(str(src)), parts,
                         0.0, "r")
    assert summary.status == "scored" and summary.rows == 1000
    assert read_state(dst)["input"]["sha256"] == file_sha256(str(src))


def test_an_input_that_cannot_be_hashed_fails_its_file(tmp_path, model, monkeypatch):
    from digits_onnx.inference import parts as parts_module

    src, dst, options, parts = _npy_parts(tmp_path, model)

    def unreadable(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(parts_module, "open", unreadable, raising=False)
    digest = _moved(hash_file(str(src)))
    monkeypatch.undo()
    summary = join_parts(model.sha256, str(src), str(dst), options, None, parts, 0.0, "r",
                         digest)
    assert summary.status == "failed" and summary.exit_code == 74
    assert summary.error == f"{src}: cannot read (Permission denied)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_every_error_of_a_part_survives_the_trip_to_the_join(tmp_path, model):
    """A part's result crosses processes (pickled) before the join reads it; a LineError
    cannot be unpickled, so it travels as its file, line and problem."""
    from digits_onnx.inference import errors
    from digits_onnx.inference.parts import PartResult
    from digits_onnx.inference.readers.csv import LineError
    from digits_onnx.inference.summary import Tally

    kinds = [c for c in vars(errors).values()
             if isinstance(c, type) and issubclass(c, errors.DigitsError)]
    assert len(kinds) >= 10
    for kind in kinds:
        part = PartResult(0, "p", Tally(stopped=True), None, 0, 1, 5, error=kind("f: boom"))
        error = _moved(part).failure(0)
        assert type(error) is kind and str(error) == "f: boom"
        assert error.exit_code == kind.exit_code
    part = PartResult(2, "p", Tally(stopped=True), None, 0, 1, 5,
                      line_error=("f.csv", 3, "is longer than 16 MiB"))
    error = _moved(part).failure(100)
    assert isinstance(error, LineError) and str(error) == "f.csv: line 103 is longer than 16 MiB"


def test_an_unexpected_exception_is_reported_as_the_local_engine_does(tmp_path, model,
                                                                       monkeypatch):
    """A bug in a task fails its file with the local engine's one line (exit code 70),
    whether it happens in a whole-file task, a part or the join."""
    from digits_onnx.inference import api, distributed
    from digits_onnx.inference import parts as parts_module
    from digits_onnx.inference.errors import internal_error

    def broken(*args, **kwargs):
        raise ValueError("boom\nsecond line")

    src = tmp_path / "in.npy"
    np.save(src, np.ones((1000, 64), np.float32))
    monkeypatch.setattr(api, "score_one", broken)
    (tmp_path / "local").mkdir()
    local = score_files([str(src)], out_dir=tmp_path / "local", model=model)
    (expected,) = local.files
    assert expected.exit_code == 70
    assert str(internal_error(str(src), ValueError("boom\nsecond line"))) == expected.error

    monkeypatch.setattr(distributed, "score_one", broken)
    whole = distributed.score_whole_file(model.data, model.sha256, str(src),
                                         str(tmp_path / "o.csv"), ScoreOptions(), False, "r")
    assert (whole.status, whole.error, whole.exit_code) == ("failed", expected.error, 70)

    monkeypatch.setattr(parts_module, "score_stream", broken)
    part = _moved(score_part(model.data, model.sha256, str(src), str(tmp_path / "o.csv"),
                             ScoreOptions(), "r", 0, 0, 500))
    summary = join_parts(model.sha256, str(src), str(tmp_path / "o.csv"), ScoreOptions(), None,
                         [part], 0.0, "r")
    assert (summary.error, summary.exit_code) == (expected.error, 70)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "local"]


def test_a_join_run_again_after_its_commit_reports_that_commit(tmp_path, model):
    """Dask may run the join again after it committed (its worker died before reporting):
    whatever part files are left, it reports the committed run and never removes it."""
    from digits_onnx.inference.fsio import bookkeeping_dir

    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    _labelled_csv(src, 2000, ids=False)
    bookkeeping_dir(tmp_path)
    options = ScoreOptions(on_error="skip")
    cuts = cuts_of(str(src), options, 40_000)
    parts = [score_part(model.data, model.sha256, str(src), str(dst), options, "run", i, a, b,
                        encodes_itself("renumber", i)) for i, (a, b) in enumerate(cuts)]
    counts = [part_rows(part) for part in parts]
    slices = [None] + [encode_part(str(src), str(dst), options, "run", parts[i], counts[:i])
                       for i in range(1, len(parts))]
    first = join_parts(model.sha256, str(src), str(dst), options, None, parts, 0.0, "run",
                       hash_file(str(src)), slices)
    output = dst.read_bytes()
    for part in parts:  # the part files came back, the encoded slices did not
        Path(part.path).write_bytes(b"")
    again = join_parts(model.sha256, str(src), str(dst), options, None, parts, 0.0, "run",
                       hash_file(str(src)), slices)
    assert (again.status, again.rows, again.rejected) == (first.status, first.rows,
                                                          first.rejected) == ("scored", 2000, 21)
    assert dst.read_bytes() == output
    assert not [p for p in tmp_path.iterdir() if ".part-" in p.name]


def test_two_attempts_of_an_encoding_part_never_share_a_file(tmp_path, model):
    """Dask may run a task twice at once (a worker it thought dead still runs it): each
    attempt of a part that encodes its rows writes a file of its own, the join reads one,
    and the run's cleanup of leftovers removes the other."""
    from digits_onnx.inference.fsio import bookkeeping_dir, remove_leftovers
    from digits_onnx.inference.plan import leftover_names

    src, dst = tmp_path / "in.npy", tmp_path / "out.csv"
    np.save(src, np.ones((1000, 64), np.float32))
    bookkeeping_dir(tmp_path)
    options = ScoreOptions()
    cuts = cuts_of(str(src), options, 64 * 4 * 300)
    first = [score_part(model.data, model.sha256, str(src), str(dst), options, "r", i, a, b,
                        True) for i, (a, b) in enumerate(cuts)]
    second = score_part(model.data, model.sha256, str(src), str(dst), options, "r", 0,
                        *cuts[0], True)
    assert second.path != first[0].path
    assert Path(second.path).read_bytes() == Path(first[0].path).read_bytes()
    summary = join_parts(model.sha256, str(src), str(dst), options, None, first, 0.0, "r",
                         hash_file(str(src)))
    assert summary.status == "scored" and summary.rows == 1000
    assert [p.name for p in tmp_path.iterdir() if ".part-" in p.name] == [
        Path(second.path).name]
    remove_leftovers(leftover_names([(str(src), str(dst))]))
    assert not [p for p in tmp_path.iterdir() if ".part-" in p.name]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("keep", ["all", "note"])
def test_kept_columns_survive_the_split_and_the_join(tmp_path, model, fmt, keep):
    """Each part carries its rows' kept cells; the joined output is the local engine's."""
    src = tmp_path / "in.csv"
    _labelled_csv(src, 3000, ids=True)
    if keep != "all":  # a named column is context, not a feature: the file gets one more
        lines = src.read_text().splitlines()
        lines = [lines[0] + ",note"] + [f"{line},note {i}" if line else line
                                        for i, line in enumerate(lines[1:])]
        src.write_text("\n".join(lines) + "\n")
    kept = "all" if keep == "all" else keep.split(",")
    options = ScoreOptions(read=ReadOptions(id_column="id", keep_columns=kept),
                           on_error="skip", output_format=fmt)
    local = _local(src, tmp_path / "local.out", model, options)
    joined = _split_and_join(src, tmp_path / "joined.out", model, options, part_bytes=50_000)
    _same(joined, local)
    assert local.scored > 2900
    assert (tmp_path / "joined.out").read_bytes() == (tmp_path / "local.out").read_bytes()
    assert (tmp_path / "joined.out.rejects.csv").read_bytes() == (
        tmp_path / "local.out.rejects.csv").read_bytes()
