"""A file cut into parts and joined again gives the local engine's output, byte for byte.

The part and join steps are plain functions (Dask only schedules them), so they are tested
here in-process on many layouts; tests/test_distributed.py runs them on a real cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import ReadOptions, ScoreOptions, score_files
from digits_onnx.inference.distributed import _cuts, join_parts, part_path, score_part
from digits_onnx.inference.errors import DigitsError, ReadError
from digits_onnx.inference.summary import failed_summary
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _split_and_join(src: Path, dst: Path, model, options: ScoreOptions, part_bytes: int):
    cuts = _cuts(str(src), options, part_bytes)
    assert cuts is not None and len(cuts) >= 2, "the file should have been split"
    parts = [score_part(model.data, model.sha256, str(src), str(dst), options, "run", i, a, b)
             for i, (a, b) in enumerate(cuts)]
    summary = join_parts(model.sha256, str(src), str(dst), options, None, parts, 0.0, "run")
    assert not list(dst.parent.glob(f".{dst.name}.part-*")), "parts left behind"
    return summary


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
    rejects = folder / "in.rejects.csv"
    local_rejects = rejects.read_bytes() if rejects.exists() else None
    rejects.unlink(missing_ok=True)
    try:
        joined = _split_and_join(src, folder / "joined.csv", model, options, part_bytes)
    except DigitsError as exc:  # the engine raises; a cluster task reports it the same way
        joined = failed_summary(str(src), exc)
    _same(joined, local)
    if local.status == "scored":
        assert (folder / "joined.csv").read_bytes() == (folder / "local.csv").read_bytes()
        if local.rejected:
            assert joined.rejects_file == local.rejects_file == str(rejects)
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
    assert _cuts(str(small), ScoreOptions(), 1 << 20) is None
    assert _cuts(str(gz), ScoreOptions(), 100) is None


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


def test_an_io_error_in_a_part_fails_the_file_cleanly(tmp_path, model, monkeypatch):
    src = tmp_path / "in.npy"
    np.save(src, np.ones((3000, 64), np.float32))
    dst = tmp_path / "out.csv"
    options = ScoreOptions()

    def broken_pread(fd, n, offset):
        raise OSError(5, "Input/output error")

    cuts = _cuts(str(src), options, 64 * 4 * 1000)
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
    (".a.rejects.csv.x9.tmp", "a.rejects.csv"),
    (".digits-score.lock", None),
    (".a.csv.state.json", None),
])
def test_leftovers_map_to_the_file_they_were_for(name, target):
    from digits_onnx.inference.fsio import leftover_of

    assert leftover_of(name) == target
