"""Many files in one run: small files are scored side by side (``inference/many.py``).

Whatever thread scores a file and whenever it finishes, summaries come back in input order,
each output is byte for byte what scoring that file alone writes, a failing file leaves
nothing and touches no other, and a kill -9 at any step leaves only complete outputs.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from digits_onnx.inference import DigitsError, ReadOptions, ScoreOptions, score_file, score_files
from digits_onnx.inference import api as api_module
from digits_onnx.inference.many import is_small, score_in_order
from digits_onnx.inference.readers import csv as csv_reader
from digits_onnx.inference.readers.csv import block_bytes
from digits_onnx.inference.state import read_state
from digits_onnx.inference.summary import FileSummary

from tests.kill_support import (
    REPO,
    assert_only_complete_then_rerun,
    hidden,
    run_scorer,
    visible,
)

#: Small enough that the big input below is read in several blocks, and so scored alone.
BLOCK = 64 << 10


def _csv(path: Path, X: np.ndarray) -> None:
    header = ",".join(f"pixel_{k // 8}_{k % 8}" for k in range(64))
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in X.tolist()) + "\n")


def _inputs(folder: Path, n: int = 24, seed: int = 12) -> list[Path]:
    """``n`` inputs of mixed sizes and formats; every fourth CSV has a bad cell."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        rows = int(rng.integers(1, 120))
        X = rng.integers(0, 17, size=(rows, 64))
        if i % 7 == 3:
            path = folder / f"f{i:02d}.npy"
            np.save(path, X.astype(np.uint8))
        elif i % 7 == 5:
            path = folder / f"f{i:02d}.parquet"
            pq.write_table(pa.table({f"p{k}": X[:, k] for k in range(64)}), path)
        else:
            path = folder / f"f{i:02d}.csv"
            cells = X.astype(str)
            if i % 4 == 0:
                cells[rows // 2, 5] = "x"
            _csv(path, cells)
        paths.append(path)
    return paths


def _alone(model, inputs: list[Path], out: Path, options: ScoreOptions) -> dict[str, bytes]:
    """Every input scored by itself, one call each: the reference bytes."""
    out.mkdir()
    for src in inputs:
        stem = src.name.rsplit(".", 1)[0]
        with contextlib.suppress(DigitsError):  # a failing input has no reference output
            score_file(str(src), out / f"{stem}.pred.{options.output_format or 'csv'}",
                       model=model, options=options)
    return visible(out)


@pytest.fixture
def scrambled(monkeypatch):
    """Make files finish out of order (later files first) and note which thread scored
    each."""
    threads: dict[str, str] = {}
    real = api_module.score_one
    order: dict[str, int] = {}

    def score_one(src: str, dst: str, *args, **kwargs):
        threads[Path(src).name] = threading.current_thread().name
        time.sleep(0.002 * max(0, 12 - order.setdefault(src, len(order)) % 12))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(api_module, "score_one", score_one)
    return threads


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_outputs_are_those_of_each_file_scored_alone(tmp_path, model, scrambled, fmt):
    inputs = _inputs(tmp_path / "in")
    options = ScoreOptions(output_format=fmt, proba=True, on_error="skip")
    reference = _alone(model, inputs, tmp_path / "alone", options)
    reported: list[FileSummary] = []
    summary = score_files([str(tmp_path / "in")], out_dir=tmp_path / "out", model=model,
                          options=options, workers=4, on_file=reported.append)
    assert summary.exit_code == 0
    assert visible(tmp_path / "out") == reference
    assert sum(name.endswith(".rejects.csv") for name in reference) == 5
    assert len({t for t in scrambled.values() if t.startswith("digits-file")}) >= 2
    # In input order, in the summary and in the calls, though later files finished first.
    assert [f.input for f in summary.files] == [str(p) for p in inputs]
    assert [f.input for f in reported] == [str(p) for p in inputs]
    assert [f.rows for f in summary.files] == [read_state(Path(f.output))["summary"]["rows"]
                                               for f in summary.files]
    assert hidden(tmp_path / "out") == []


def test_a_file_of_many_blocks_is_scored_alone_in_its_place(tmp_path, model, scrambled):
    inputs = _inputs(tmp_path / "in", n=9)
    big = tmp_path / "in" / "f04b.csv"  # sorts between f04 and f05
    _csv(big, np.random.default_rng(3).integers(0, 17, size=(2000, 64)))
    assert big.stat().st_size > 3 * BLOCK
    inputs.insert(5, big)
    options = ScoreOptions(read=ReadOptions(chunk_bytes=BLOCK), on_error="skip")
    reference = _alone(model, inputs, tmp_path / "alone", options)
    summary = score_files([str(tmp_path / "in")], out_dir=tmp_path / "out", model=model,
                          options=options, workers=2)
    assert [f.input for f in summary.files] == [str(p) for p in inputs]
    assert summary.files[5].rows == 2000
    assert scrambled["f04b.csv"] == threading.main_thread().name
    assert visible(tmp_path / "out") == reference


def test_a_file_read_in_small_blocks_is_scored_side_by_side(tmp_path, model, scrambled,
                                                            monkeypatch):
    """More than one block, but blocks of at most a quarter of one: no more memory in flight
    than a one-block file, so it goes to the pool; a file of full blocks stays alone."""
    monkeypatch.setattr(csv_reader, "MIN_BLOCK_BYTES", 4 << 10)
    inputs = _inputs(tmp_path / "in", n=6)
    rng = np.random.default_rng(4)
    mid = [tmp_path / "in" / f"f0{i}m.csv" for i in (1, 3)]
    for path in mid:
        _csv(path, rng.integers(0, 17, size=(600, 64)))
        assert path.stat().st_size > BLOCK and 4 * block_bytes(BLOCK, path.stat().st_size) <= BLOCK
    big = tmp_path / "in" / "f04b.csv"
    _csv(big, rng.integers(0, 17, size=(5000, 64)))
    assert block_bytes(BLOCK, big.stat().st_size) == BLOCK
    inputs = sorted([*inputs, *mid, big])
    options = ScoreOptions(read=ReadOptions(chunk_bytes=BLOCK), on_error="skip")
    reference = _alone(model, inputs, tmp_path / "alone", options)
    summary = score_files([str(tmp_path / "in")], out_dir=tmp_path / "out", model=model,
                          options=options, workers=2)
    assert [f.input for f in summary.files] == [str(p) for p in inputs]
    assert all(scrambled[p.name].startswith("digits-file") for p in mid)
    assert scrambled[big.name] == threading.main_thread().name
    assert visible(tmp_path / "out") == reference


@pytest.mark.parametrize(("name", "mib", "chunk_mib", "small"), [
    ("a.csv", 8, 8, True),        # one block
    ("a.csv", 12, 8, True),       # 2 MiB blocks: a quarter of one
    ("a.csv", 20, 8, False),      # 2.5 MiB blocks: scored alone
    ("a.csv.gz", 12, 8, False),   # gzip is read in full blocks
    ("a.npy", 12, 8, False),      # NPY in batches of rows
    ("a.csv", 1024, 64, False),   # a larger chunk asked for: blocks are 8 MiB at most
    ("a.csv", 20, 64, False),
])
def test_which_files_are_scored_side_by_side(tmp_path, name, mib, chunk_mib, small):
    path = tmp_path / name
    with open(path, "wb") as fh:  # sparse: only the size and the name matter here
        fh.truncate(mib << 20)
    assert is_small(str(path), ReadOptions(chunk_bytes=chunk_mib << 20)) is small


def test_one_worker_scores_file_after_file_on_the_callers_thread(tmp_path, model, scrambled):
    inputs = _inputs(tmp_path / "in", n=6)
    summary = score_files([str(tmp_path / "in")], out_dir=tmp_path / "out", model=model,
                          options=ScoreOptions(on_error="skip"), workers=1)
    assert [f.input for f in summary.files] == [str(p) for p in inputs]
    assert set(scrambled.values()) == {threading.main_thread().name}


def test_a_failing_file_among_many_fails_alone_and_leaves_nothing(tmp_path, model, scrambled):
    inputs = _inputs(tmp_path / "in")
    options = ScoreOptions(proba=True)  # --on-error fail: the bad cells fail their files
    reference = _alone(model, inputs, tmp_path / "alone", options)
    bad = [p for i, p in enumerate(inputs) if i % 4 == 0 and p.suffix == ".csv"]
    assert len(bad) == 5 and not any(f"{p.stem}.pred.csv" in reference for p in bad)
    out = tmp_path / "out"
    out.mkdir()
    # A stale output and report of a failing file are removed, as for one file alone.
    (out / f"{bad[1].stem}.pred.csv").write_text("stale\n")
    (out / f"{bad[1].stem}.rejects.csv").write_text("stale\n")
    summary = score_files([str(tmp_path / "in")], out_dir=out, model=model, options=options,
                          workers=4)
    assert [f.input for f in summary.files] == [str(p) for p in inputs]
    failed = {f.input for f in summary.files if f.status == "failed"}
    assert failed == {str(p) for p in bad}
    assert summary.exit_code != 0
    assert visible(out) == reference
    for p in bad:
        assert read_state(out / f"{p.stem}.pred.csv") is None
    assert hidden(out) == []


def test_a_bug_in_one_file_fails_that_file_only(tmp_path, model, monkeypatch):
    inputs = _inputs(tmp_path / "in", n=10)
    real = api_module.score_one

    def score_one(src: str, dst: str, *args, **kwargs):
        if src.endswith("f06.csv"):
            raise RuntimeError("boom")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(api_module, "score_one", score_one)
    summary = score_files([str(tmp_path / "in")], out_dir=tmp_path / "out", model=model,
                          options=ScoreOptions(on_error="skip"), workers=2)
    statuses = [f.status for f in summary.files]
    assert statuses == ["failed" if p.name == "f06.csv" else "scored" for p in inputs]
    assert not (tmp_path / "out" / "f06.pred.csv").exists()


def test_results_come_in_order_and_a_closed_run_cancels_the_rest():
    started: list[int] = []

    def score(src: str, dst: str) -> FileSummary:
        started.append(int(src))
        return FileSummary(input=src, output=dst)

    pairs = [(str(i), f"{i}.out") for i in range(50)]
    results = score_in_order(pairs, score, workers=2, small=lambda src: True)
    assert [int(next(results).input) for _ in range(3)] == [0, 1, 2]
    results.close()
    # At most 2 * workers files were ever submitted ahead of the one reported.
    assert len(started) <= 3 + 4
    assert [int(r.input) for r in score_in_order(pairs, score, workers=3,
                                                 small=lambda src: src != "7")] == list(range(50))


def test_pyarrow_compute_is_loaded_before_a_worker_starts():
    """Its first import registers Arrow's compute functions again; a writer on another thread
    that looks up ``cast`` meanwhile fails. So the pool loads it before any file starts."""
    code = textwrap.dedent("""
        import sys
        from digits_onnx.inference.many import score_in_order
        from digits_onnx.inference.summary import FileSummary
        assert "pyarrow.compute" not in sys.modules
        seen = []
        def score(src, dst):
            seen.append("pyarrow.compute" in sys.modules)
            return FileSummary(input=src, output=dst)
        pairs = [("a", "a.out"), ("b", "b.out"), ("c", "c.out")]
        list(score_in_order(pairs, score, workers=2, small=lambda src: True))
        print(seen)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert proc.stdout.strip() == "[True, True, True]"


# -- kill -9 in the middle of a many-file run ----------------------------------------------

@pytest.fixture(scope="module")
def many_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many") / "in"
    _inputs(folder, n=16, seed=99)
    return folder


def _args(inputs: Path, out: Path) -> list[str]:
    # --threads 2: two files at once even where the machine has one core.
    return [str(inputs), "--out-dir", str(out), "--proba", "--on-error", "skip", "-q",
            "--threads", "2"]


@pytest.fixture(scope="module")
def many_reference(many_inputs: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference")
    proc = run_scorer(_args(many_inputs, out))
    assert proc.returncode == 0, proc.stderr
    files = visible(out)
    assert len(files) == 16 + 3  # 3 reject reports
    return files


# 16 outputs and 3 reject reports: 19 fsyncs and 19 renames, 1 directory fsync, 16 records
# appended to the journal (one write each), 16 unlinks of reject reports of earlier runs.
KILL_POINTS = [f"{call}:{n}:{when}" for call, ns in (("fsync", (1, 6, 12, 19, 20)),
                                                     ("replace", (1, 7, 13, 19)),
                                                     ("write", (1, 8, 16)),
                                                     ("unlink", (2, 15)))
               for n in ns for when in ("before", "after")]


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_mid_run_leaves_only_complete_outputs(many_inputs, many_reference, tmp_path,
                                                     point):
    out = tmp_path / "out"
    out.mkdir()
    args = _args(many_inputs, out)
    proc = run_scorer(args, point)
    assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr
    assert_only_complete_then_rerun(out, args, many_reference, point)


@pytest.mark.slow
def test_the_kill_points_fire_inside_the_run(many_inputs, tmp_path):
    for point in ("fsync:20:before", "replace:19:before", "write:16:before",
                  "unlink:15:before"):
        out = tmp_path / point.replace(":", "-")
        out.mkdir()
        assert run_scorer(_args(many_inputs, out), point).returncode == -signal.SIGKILL, point
