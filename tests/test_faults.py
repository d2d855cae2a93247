"""Fault injection: kills, full disks, I/O errors, overlapping runs, inputs that change.

Every test checks the same promises: no partial output ever appears under a final name, a
rerun finishes the job with the same bytes, and every failure is a clear one-line message
with a documented exit code.
"""

from __future__ import annotations

import errno
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from digits_onnx.inference import Model, ReadOptions, ScoreOptions, score_file
from digits_onnx.inference.cli import main
from digits_onnx.inference.errors import InputDataError
from digits_onnx.inference.state import read_state

from tests.kill_support import (
    REPO,
    RUNNER,
    assert_only_complete_then_rerun,
    hidden,
    run_scorer,
    visible,
)

pytestmark = pytest.mark.slow


def _csv(path: Path, X: np.ndarray) -> None:
    header = ",".join(f"pixel_{k // 8}_{k % 8}" for k in range(64))
    body = "\n".join(",".join(map(str, row)) for row in X.tolist())
    path.write_text(header + "\n" + body + "\n")


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five inputs of different kinds, one with bad rows (so reject reports are written)."""
    folder = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(2024)
    for i in range(3):
        _csv(folder / f"part{i}.csv", rng.integers(0, 17, size=(40000, 64)))
    np.save(folder / "images.npy", rng.integers(0, 17, size=(60000, 8, 8)).astype(np.uint8))
    dirty = rng.integers(0, 17, size=(20000, 64)).astype(str)
    dirty[7, 3], dirty[9000, 60], dirty[15000, 0] = "x", "nan", ""
    _csv(folder / "dirty.csv", dirty)
    return folder


def _args(inputs: Path, out: Path) -> list[str]:
    return [str(inputs), "--out-dir", str(out), "--proba", "--on-error", "skip", "-q"]


@pytest.fixture(scope="module")
def reference(batch_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference")
    proc = run_scorer(_args(batch_inputs, out))
    assert proc.returncode == 0, proc.stderr
    files = visible(out)
    assert sorted(files) == ["dirty.pred.csv", "dirty.rejects.csv", "images.pred.csv",
                             "part0.pred.csv", "part1.pred.csv", "part2.pred.csv"]
    return files


def _kill_points(seed: int = 20261129) -> list[str]:
    """At least 20 kill points: timers plus kills before/after renames, fsyncs and the
    records' appends."""
    rng = random.Random(seed)
    points = [f"timer:{rng.uniform(0.3, 1.6):.3f}" for _ in range(8)]
    # 6 renames (5 outputs, 1 reject report) and 5 records appended to the journal.
    points += [f"replace:{rng.randint(1, 6)}:{rng.choice(['before', 'after'])}"
               for _ in range(6)]
    points += [f"write:{rng.randint(1, 5)}:{rng.choice(['before', 'after', 'half'])}"
               for _ in range(4)]
    # Outputs and reject reports are fsynced one by one, the directory once at the end of the
    # run (group commit): 7 fsyncs in this batch.
    points += [f"fsync:{rng.randint(1, 7)}:{rng.choice(['before', 'after'])}"
               for _ in range(6)]
    return points


@pytest.mark.parametrize("point", _kill_points())
def test_kill_9_never_leaves_a_partial_output(batch_inputs, reference, tmp_path, point):
    out = tmp_path / "out"
    out.mkdir()
    args = _args(batch_inputs, out)
    if point.startswith("timer:"):
        proc = subprocess.Popen([sys.executable, str(RUNNER), "none", "--", *args], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(point.split(":")[1]))
        proc.send_signal(signal.SIGKILL)
        code = proc.wait()
    else:
        code = run_scorer(args, point).returncode
    assert code in (-signal.SIGKILL, 0)
    # Whatever the moment of the kill, every output under its final name is complete.
    assert_only_complete_then_rerun(out, args, reference, point)


def test_kill_points_really_kill(batch_inputs, tmp_path):
    """The hook-based points fire inside this batch (the counts above are not too high)."""
    for n, point in enumerate(["replace:6:before", "fsync:7:before", "write:5:before"]):
        out = tmp_path / f"out{n}"
        out.mkdir()
        assert run_scorer(_args(batch_inputs, out), point).returncode == -signal.SIGKILL, point


# -- full disks and I/O errors -----------------------------------------------------------------

def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_full_disk_at_write_exits_74_and_keeps_earlier_outputs(batch_inputs, reference,
                                                                   tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    first = run_scorer([str(batch_inputs / "part0.csv"), "-o", str(out / "part0.pred.csv"),
                  "--proba", "-q"])
    assert first.returncode == 0
    before = visible(out)
    proc = subprocess.run(
        [sys.executable, "-m", "digits_onnx.inference", str(batch_inputs / "part1.csv"), "-o",
         str(out / "part1.pred.csv"), "--proba"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        preexec_fn=_limit_file_size(1 << 20),
    )
    assert proc.returncode == 74, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"digits-score: error: {out / 'part1.pred.csv'}: cannot")
    assert "File too large" in proc.stderr
    assert visible(out) == before and hidden(out) == []


@pytest.mark.parametrize("fmt", ["csv", "npy", "parquet", "jsonl"])
@pytest.mark.parametrize("where", ["first write", "middle", "final flush"])
def test_the_disk_filling_up_at_any_point_exits_74(batch_inputs, tmp_path, fmt, where):
    """A file-size limit placed at the first write, half-way, or within the last bytes that
    only the final flush and close write."""
    src = batch_inputs / "part2.csv"
    args = [sys.executable, "-m", "digits_onnx.inference", str(src), "--proba", "-q"]
    full = tmp_path / f"full.{fmt}"
    assert subprocess.run([*args, "-o", str(full)], cwd=REPO, check=False).returncode == 0
    size = full.stat().st_size
    limit = {"first write": 0, "middle": size // 2, "final flush": size - 8}[where]
    out = tmp_path / "out"
    out.mkdir()
    dst = out / f"p.{fmt}"
    dst.write_text("an earlier output\n")
    proc = subprocess.run([*args, "-o", str(dst), "--force"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False,
                          preexec_fn=_limit_file_size(limit))
    assert proc.returncode == 74, proc.stderr
    assert proc.stderr.startswith(f"digits-score: error: {dst}: cannot")
    assert proc.stderr.count("\n") == 1 and "File too large" in proc.stderr
    # A failed file leaves nothing under its name: the earlier output is removed, and said so.
    assert not dst.exists()
    assert proc.stderr.endswith(f"(removed the earlier {dst})\n")
    assert hidden(out) == []


def test_writing_to_a_full_device_exits_74(batch_inputs):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference",
                               str(batch_inputs / "part0.csv")], cwd=REPO, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    assert proc.returncode == 74
    assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["fsync", "replace", "close", "write"])
def test_io_errors_exit_74_and_leave_nothing_behind(batch_inputs, tmp_path, monkeypatch,
                                                    capsys, where):
    out = tmp_path / "out"
    out.mkdir()
    old = out / "part0.pred.csv"
    old.write_text("an earlier output\n")
    from digits_onnx.inference import writers as writing

    if where in ("fsync", "replace"):
        monkeypatch.setattr(os, where, _enospc)
    elif where == "close":
        monkeypatch.setattr(writing.CsvWriter, "close", lambda self: _enospc())
    else:
        monkeypatch.setattr(writing.CsvWriter, "_write", lambda self, table: _enospc())
    code = main([str(batch_inputs / "part0.csv"), "-o", str(old), "--force"])
    monkeypatch.undo()
    assert code == 74
    err = capsys.readouterr().err
    assert err.startswith(f"digits-score: error: {old}: cannot") and err.count("\n") == 1
    assert "No space left on device" in err
    assert not old.exists() and err.endswith(f"(removed the earlier {old})\n")
    assert hidden(out) == []


# -- overlapping runs ----------------------------------------------------------------------------

@pytest.mark.parametrize("repetition", range(20))
def test_two_runs_at_once_one_scores_the_other_exits_75(tmp_path, repetition):
    """Both start together; the winner holds the lock while it waits for its input."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.pred.csv").write_text("kept\n")
    def snapshot() -> dict[str, int]:  # the bookkeeping is the winner's; all else must stay
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir()
                if p.name != ".digits-score"}

    before = snapshot()
    rows = "\n".join(",".join(str((i * 7 + k) % 17) for k in range(64)) for i in range(50))
    cmd = [sys.executable, "-m", "digits_onnx.inference", "-", "-o", str(out / "stdin.pred.csv")]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    # The loser exits on its own, at once, without any input.
    deadline = time.monotonic() + 60
    while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    loser = next(p for p in procs if p.poll() is not None)
    winner = next(p for p in procs if p is not loser)
    assert loser.returncode == 75
    assert "another digits-score run is writing here" in loser.stderr.read()
    assert snapshot() == before
    _, err = winner.communicate(rows + "\n", timeout=60)
    assert winner.returncode == 0, err
    assert len((out / "stdin.pred.csv").read_text().splitlines()) == 51
    for p in procs:
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream and not stream.closed:
                stream.close()


# -- inputs that change while they are read -------------------------------------------------------

def _changing(path: Path, change) -> callable:
    done = []

    def progress(consumed: int) -> None:
        if not done:
            done.append(True)
            change(path)

    return progress


@pytest.mark.parametrize("kind", ["csv", "npy"])
@pytest.mark.parametrize("change", ["truncate", "rewrite", "append"])
def test_an_input_changed_while_scored_fails_cleanly(tmp_path, model, kind, change):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 17, size=(30000, 64))
    src = tmp_path / f"in.{kind}"
    if kind == "csv":
        _csv(src, X)
    else:
        np.save(src, X.astype(np.float32))
    size = src.stat().st_size

    def mutate(path: Path) -> None:
        if change == "truncate":
            os.truncate(path, size // 3)
        elif change == "rewrite":
            data = bytearray(path.read_bytes())
            data[-10:] = data[-20:-10]
            path.write_bytes(bytes(data))
        else:
            with path.open("ab") as fh:
                fh.write(b"\n" if kind == "csv" else b"\0" * 256)

    dst = tmp_path / "out.csv"
    options = ScoreOptions(read=ReadOptions(chunk_bytes=64 << 10, chunk_rows=2000))
    with pytest.raises(InputDataError) as caught:
        score_file(str(src), dst, model=model, options=options,
                   progress=_changing(src, mutate))
    message = str(caught.value)
    assert message.startswith(f"{src}: ")
    assert ("changed while it was being scored" in message or "ended early" in message
            or "truncated" in message), message
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".digits-score"]


def test_a_truncated_npy_never_kills_the_process(tmp_path):
    """No memory map, so a file cut short mid-read is an error, not a SIGBUS."""
    src = tmp_path / "big.npy"
    np.save(src, np.ones((400000, 64), np.float32))
    code = ("import os, sys\n"
            "from digits_onnx.inference import score_file, ScoreOptions, ReadOptions\n"
            "from digits_onnx.inference import InputDataError\n"
            f"src = {str(src)!r}\n"
            "def cut(consumed, done=[]):\n"
            "    if not done: done.append(os.truncate(src, 4096))\n"
            "try:\n"
            f"    score_file(src, {str(tmp_path / 'o.npy')!r}, progress=cut,\n"
            "               options=ScoreOptions(read=ReadOptions(chunk_rows=1000)))\n"
            "except Exception as exc:\n"
            "    print(isinstance(exc, InputDataError), exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr  # a signal would make it negative
    assert proc.stdout.startswith("True ") and "ended early" in proc.stdout


# -- the model file replaced between runs ----------------------------------------------------------

def test_a_replaced_model_is_refused_unless_trusted(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("model.onnx", "model.json"):
        shutil.copy(REPO / "artifacts" / name, model_dir / name)
    src = REPO / "examples" / "digits_test.npy"
    out = tmp_path / "o.csv"
    assert main([str(src), "-o", str(out), "--model", str(model_dir / "model.onnx"), "-q"]) == 0

    model = onnx.load(model_dir / "model.onnx")
    coef = next(t for t in model.graph.initializer if t.name == "coef")
    weights = onnx.numpy_helper.to_array(coef).copy() * 1.5
    coef.CopyFrom(onnx.numpy_helper.from_array(weights, "coef"))
    onnx.save(model, model_dir / "model.onnx")
    capsys.readouterr()
    code = main([str(src), "-o", str(out), "--model", str(model_dir / "model.onnx")])
    assert code == 65
    err = capsys.readouterr().err
    assert "does not match the expected" in err and "replaced or corrupted" in err
    before = out.read_bytes()
    assert main([str(src), "-o", str(out), "--model", str(model_dir / "model.onnx"),
                 "--trust-model", "-q"]) == 0
    assert out.read_bytes() != before  # rescored: the new model's hash differs from the state
    new_sha = Model.load(model_dir / "model.onnx", verify_hash=False).sha256
    assert main([str(src), "-o", str(out), "--model", str(model_dir / "model.onnx"),
                 "--model-sha256", new_sha, "-q"]) == 0


# -- output, reject report and record are one unit -------------------------------------------------

def _unit_versions(folder: Path) -> tuple[int | None, int | None, bool]:
    """(data rows in the output, rows in the reject report, a record exists) as a reader
    finds them; a record found describes them."""
    out, rejects = folder / "unit.pred.csv", folder / "unit.rejects.csv"
    rows = len(out.read_text().splitlines()) - 1 if out.exists() else None
    bad = len(rejects.read_text().splitlines()) - 1 if rejects.exists() else None
    record = read_state(out)
    if record is not None:
        assert (record["summary"]["scored"], record["summary"]["rejected"]) == (rows, bad)
    return rows, bad, record is not None


def test_kill_9_at_every_step_of_a_commit_never_mixes_two_runs(tmp_path):
    """A rerun on changed data, killed before and after every rename, unlink, fsync and
    journal append (and half-way through an append): the output and the reject report a
    reader finds always come from one run, and a record exists only beside the unit it
    describes."""
    rng = np.random.default_rng(7)
    X = rng.integers(0, 17, size=(40, 64)).astype(str)
    old, new = X.copy(), X.copy()
    old[[3, 10, 20], 5] = "x"
    new[30, 7] = "x"
    src, seed = tmp_path / "unit.csv", tmp_path / "seed"
    args = [str(src), "--out-dir", str(tmp_path / "out"), "--on-error", "skip", "-q"]
    _csv(src, old)
    seed.mkdir()
    seeded = run_scorer([str(src), "--out-dir", str(seed), "--on-error", "skip", "-q"])
    assert seeded.returncode == 0
    assert _unit_versions(seed) == (37, 3, True)
    _csv(src, new)
    killed = 0
    for call in ("replace", "unlink", "fsync", "write"):
        for nth in range(1, 30):
            reached = False
            for when in ("before", "after", "half") if call == "write" else ("before", "after"):
                out = tmp_path / "out"
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(seed, out, symlinks=True)
                proc = run_scorer(args, f"{call}:{nth}:{when}")
                assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr
                if proc.returncode != -signal.SIGKILL:
                    continue
                reached, killed = True, killed + 1
                rows, bad, record = _unit_versions(out)
                point = f"{call}:{nth}:{when}"
                assert (rows, bad) in {(37, 3), (39, 1), (37, None), (39, None), (None, None),
                                       (None, 3)}, (point, rows, bad)
                if record:
                    assert (rows, bad) in {(37, 3), (39, 1)}, (point, rows, bad)
                assert (rows, bad) != (39, 3) and (rows, bad) != (37, 1), point
                assert run_scorer(args).returncode == 0
                assert _unit_versions(out) == (39, 1, True), point
            if not reached:
                break
    assert killed >= 6, "the kill points did not fire inside the commit"
