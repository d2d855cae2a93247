"""How a run ends when it is signalled: Ctrl-C (SIGINT), SIGTERM (kill, timeout, docker stop,
systemd), SIGHUP.

Whatever the step the signal finds the run at, it stops as Ctrl-C does: files being scored
end committed whole or discarded, no temporary file stays, one line on stderr, the exit code
128 + the signal, and the summary, the metrics and the per-file lines list exactly the files
committed (which a rerun skips as up to date).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import score_files
from digits_onnx.inference.errors import Interrupted
from digits_onnx.inference.metrics import read_previous
from digits_onnx.inference.model import Model
from digits_onnx.inference.options import ScoreOptions
from digits_onnx.inference.state import read_state

from tests.kill_support import REPO, hidden, run_scorer, visible
from tests.test_many_files import _csv, _inputs

pytestmark = pytest.mark.slow

MESSAGES = {"SIGINT": "interrupted", "SIGTERM": "terminated", "SIGHUP": "hung up"}
#: One call per batch, on whichever thread scores it: a stop in the middle of scoring.
BATCH = "digits_onnx.inference.pipeline.run_model"


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 small files (CSV, NPY, Parquet; some with bad cells, so reject reports too)."""
    folder = tmp_path_factory.mktemp("signals") / "in"
    _inputs(folder, n=24, seed=31)
    return folder


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One CSV of many blocks of 16 KiB (``FAULT_RUNNER_CHUNK_BYTES``), with bad cells."""
    folder = tmp_path_factory.mktemp("signals-big") / "in"
    folder.mkdir()
    cells = np.random.default_rng(8).integers(0, 17, size=(3000, 64)).astype(str)
    cells[[5, 1500, 2900], 9] = "x"
    _csv(folder / "big.csv", cells)
    return folder


def _args(inputs: Path, out: Path, reports: Path, *extra: str) -> list[str]:
    return [str(inputs), "--out-dir", str(out), "--on-error", "skip", "--summary-json",
            str(reports / "summary.json"), "--metrics-file", str(reports / "metrics.prom"),
            *extra]


def _run(inputs: Path, tmp_path: Path, point: str, *extra: str, chunk: int | None = None,
         **kw: object):
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir(exist_ok=True)
    env = {**os.environ, "FAULT_RUNNER_CHUNK_BYTES": str(chunk)} if chunk else None
    proc = run_scorer(_args(inputs, out, reports, *extra), point, env=env, **kw)
    return proc, out, reports


def _temporaries(out: Path) -> list[str]:
    """What a stop must not leave: hidden files beside the outputs, temporary files in the
    bookkeeping folder."""
    return hidden(out) + sorted(p.name for p in out.rglob("*.tmp"))


def _committed(out: Path) -> set[str]:
    """The outputs under their final names; each must have its record."""
    outputs = {p.name for p in out.glob("*.pred.*")}
    assert {name for name in outputs if read_state(out / name) is None} == set()
    return outputs


def _check_stopped(proc, out: Path, reports: Path, sig: str) -> dict:
    """The promises of a stopped run; returns its summary."""
    message, code = MESSAGES[sig], 128 + getattr(signal, sig)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"digits-score: error: {message}"
    assert _temporaries(out) == []
    summary = json.loads((reports / "summary.json").read_text())
    assert (summary["exit_code"], summary["error"]) == (code, message)
    listed = [f for f in summary["files"] if f["status"] == "scored"]
    assert {Path(f["output"]).name for f in listed} == _committed(out)
    assert summary["totals"]["rows"] == sum(f["rows"] for f in summary["files"])
    metrics = read_previous((reports / "metrics.prom").read_bytes()).counters
    assert metrics[("files_total", "scored")] == len(listed)
    assert metrics[("rows_total", "scored")] == sum(f["scored"] for f in listed)
    assert metrics[("rows_total", "rejected")] == sum(f["rejected"] for f in listed)
    assert f"digits_score_last_run_exit_code {code}\n" in (
        reports / "metrics.prom").read_text()
    return summary


def _check_rerun(inputs: Path, tmp_path: Path, stopped: dict, reference: dict[str, bytes],
                 *extra: str, chunk: int | None = None) -> None:
    """A rerun finishes the job, byte for byte, and skips exactly the files the stopped
    run's summary listed."""
    proc, out, reports = _run(inputs, tmp_path, "none", *extra, chunk=chunk)
    assert proc.returncode == 0, proc.stderr
    assert visible(out) == reference
    assert _temporaries(out) == []
    summary = json.loads((reports / "summary.json").read_text())
    skipped = {f["output"] for f in summary["files"] if f["status"] == "skipped"}
    assert skipped == {f["output"] for f in stopped["files"] if f["status"] == "scored"}


@pytest.fixture(scope="module")
def small_reference(small_inputs: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, bytes]:
    proc, out, _ = _run(small_inputs, tmp_path_factory.mktemp("small-reference"), "none")
    assert proc.returncode == 0, proc.stderr
    return visible(out)


def _assert_stopped_before_the_end(summary: dict, threads: str) -> None:
    """File after file, a stop comes before the last of the 24 files; four at a time, the
    files already running when it comes may be the last ones, and they end committed."""
    assert len(summary["files"]) < 24 or (threads != "1" and len(summary["files"]) == 24)


# Steps of a many-file run: inside the commit of a file (fsync and rename of its output,
# the append of its record), and mid-scoring (after a file's batch was scored). With one
# thread the main thread commits; with several, worker threads do.
MANY_POINTS = ["fsync:3:before", "replace:6:after", "write:9:after", f"{BATCH}:14:after",
               "fsync:20:after"]


@pytest.mark.parametrize("threads", ["1", "4"])
@pytest.mark.parametrize("point", MANY_POINTS)
def test_ctrl_c_reports_exactly_the_files_committed(small_inputs, small_reference, tmp_path,
                                                   point, threads):
    extra = ("-q", "--threads", threads)
    proc, out, reports = _run(small_inputs, tmp_path, f"{point}:SIGINT", *extra)
    summary = _check_stopped(proc, out, reports, "SIGINT")
    assert proc.stderr.count("\n") == 1
    assert len(summary["files"]) > 0
    _assert_stopped_before_the_end(summary, threads)
    _check_rerun(small_inputs, tmp_path, summary, small_reference, *extra)


@pytest.mark.parametrize("point", ["replace:4:after", f"{BATCH}:10:after", "write:15:before"])
def test_the_per_file_lines_of_a_stopped_run_name_every_file_committed(
        small_inputs, tmp_path, point):
    """With four files at a time, those that worker threads finish as the run stops are
    reported too, in input order."""
    proc, out, reports = _run(small_inputs, tmp_path, f"{point}:SIGINT", "--threads", "4")
    summary = _check_stopped(proc, out, reports, "SIGINT")
    printed = re.findall(r"^scored \S+ -> (\S+):", proc.stderr, re.MULTILINE)
    assert printed == [f["output"] for f in summary["files"] if f["status"] == "scored"]
    assert {Path(p).name for p in printed} == _committed(out)


@pytest.mark.parametrize("nth", [1, 2, 4])
def test_ctrl_c_as_a_worker_thread_starts_still_reports_its_file(small_inputs, tmp_path, nth):
    """The pool starts a thread as a file is submitted: a stop just after the start, before
    the pool has noted the thread, must not leave it scoring a file the run never reports."""
    point = f"threading.Thread.start:{nth}:after:SIGINT"
    proc, out, reports = _run(small_inputs, tmp_path, point, "-q", "--threads", "4")
    summary = _check_stopped(proc, out, reports, "SIGINT")
    assert len(summary["files"]) >= nth


@pytest.mark.parametrize(("workers", "stop_at"), [(1, 1), (1, 7), (4, 1), (4, 6), (4, 20)])
def test_score_files_raises_the_stop_with_the_files_it_committed(tmp_path, model, workers,
                                                                 stop_at):
    """The library's side: a KeyboardInterrupt comes back as Interrupted, whose summary
    lists every file that ended (on_file was called for each), with the stop's code."""
    inputs = _inputs(tmp_path / "in", n=24, seed=4)
    reported = []

    def on_file(result):
        reported.append(result)
        if len(reported) == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        score_files([str(tmp_path / "in")], out_dir=tmp_path / "out", model=model,
                    workers=workers, on_file=on_file)
    summary = caught.value.summary
    assert summary is not None and (summary.exit_code, summary.error) == (130, "interrupted")
    assert summary.files == reported
    assert [f.input for f in summary.files] == [str(p) for p in inputs[:len(reported)]]
    scored = {Path(f.output).name for f in summary.files if f.status == "scored"}
    assert scored == _committed(tmp_path / "out")
    assert len(summary.files) >= stop_at and (workers == 1) == (len(summary.files) == stop_at)


# -- SIGTERM and SIGHUP stop a run as Ctrl-C does ---------------------------------------------

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize(("point", "threads"), [
    ("fsync:1:before", "1"), ("replace:6:after", "1"), (f"{BATCH}:9:after", "1"),
    ("write:3:before", "4"), (f"{BATCH}:14:after", "4"), ("fsync:22:after", "4"),
])
def test_sigterm_stops_a_many_file_run_as_ctrl_c_does(small_inputs, small_reference, tmp_path,
                                                     sig, point, threads):
    extra = ("-q", "--threads", threads)
    proc, out, reports = _run(small_inputs, tmp_path, f"{point}:{sig}", *extra)
    summary = _check_stopped(proc, out, reports, sig)
    assert proc.stderr.count("\n") == 1
    _assert_stopped_before_the_end(summary, threads)
    _check_rerun(small_inputs, tmp_path, summary, small_reference, *extra)


@pytest.fixture(scope="module")
def big_reference(big_input: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> dict[str, bytes]:
    proc, out, _ = _run(big_input, tmp_path_factory.mktemp("big-reference"), "none",
                        chunk=BIG_CHUNK)
    assert proc.returncode == 0, proc.stderr
    assert len(visible(out)) == 2  # the output and its reject report
    return visible(out)


#: 16 KiB blocks: the 460 kB input is scored in 25 batches, the next parsed while one is
#: scored.
BIG_CHUNK = 16 << 10


# Steps of one file of many blocks, on the main thread: its first, tenth and last batch
# scored, the fsync and the rename of its output, the append of its record.
@pytest.mark.parametrize("point", [f"{BATCH}:1:after", f"{BATCH}:10:before",
                                   f"{BATCH}:25:after", "fsync:1:before", "replace:1:after",
                                   "write:1:before"])
def test_sigterm_stops_a_large_file_whole_or_not_at_all(big_input, big_reference, tmp_path,
                                                       point):
    proc, out, reports = _run(big_input, tmp_path, f"{point}:SIGTERM", "-q", chunk=BIG_CHUNK)
    summary = _check_stopped(proc, out, reports, "SIGTERM")
    assert proc.stderr.count("\n") == 1
    assert visible(out) in ({}, big_reference)
    assert len(summary["files"]) == (1 if visible(out) else 0)
    _check_rerun(big_input, tmp_path, summary, big_reference, "-q", chunk=BIG_CHUNK)


def _command_with_a_first_output(inputs: Path, tmp_path: Path
                                 ) -> tuple[subprocess.Popen[str], Path, Path]:
    """The installed command scoring ``inputs`` four at a time, once its first output is
    committed: (the process, its output folder, its reports' folder)."""
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "digits_onnx.inference",
                             *_args(inputs, out, reports, "-q", "--threads", "4")],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(out.glob("*.pred.*")) and time.monotonic() < deadline:
        time.sleep(0.002)
    return proc, out, reports


@pytest.mark.parametrize("after_ms", [0, 20, 60])
def test_a_sigterm_from_outside_stops_the_command(small_inputs, small_reference, tmp_path,
                                                 after_ms):
    """``kill PID`` on the installed command, once its first output is committed."""
    proc, out, reports = _command_with_a_first_output(small_inputs, tmp_path)
    time.sleep(after_ms / 1000)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    proc.stderr = err
    if proc.returncode == 0:  # it finished first: nothing to stop
        assert visible(out) == small_reference
        return
    summary = _check_stopped(proc, out, reports, "SIGTERM")
    assert err.count("\n") == 1
    _check_rerun(small_inputs, tmp_path, summary, small_reference, "-q", "--threads", "4")


# -- Ctrl-C pressed twice ------------------------------------------------------------------------

SECOND_MS = [0, 2, 5, 8, 12, 20]


@pytest.mark.parametrize("second_ms", SECOND_MS)
@pytest.mark.parametrize("point", [f"{BATCH}:3:after", f"{BATCH}:12:before"])
def test_ctrl_c_twice_on_a_large_file_stops_it_once(big_input, tmp_path, point, second_ms):
    """The second Ctrl-C comes while the first one's stop waits for the read-ahead thread."""
    proc, out, reports = _run(big_input, tmp_path, f"{point}:SIGINT+{second_ms}", "-q",
                              chunk=BIG_CHUNK)
    _check_stopped(proc, out, reports, "SIGINT")
    assert proc.stderr.count("\n") == 1
    assert visible(out) == {}


@pytest.mark.parametrize("second_ms", SECOND_MS)
@pytest.mark.parametrize("point", [f"{BATCH}:6:after", "replace:10:before"])
def test_ctrl_c_twice_on_many_files_stops_them_once(small_inputs, tmp_path, point, second_ms):
    """The second Ctrl-C comes while the first one's stop waits for the files running on
    worker threads."""
    proc, out, reports = _run(small_inputs, tmp_path, f"{point}:SIGINT+{second_ms}", "-q",
                              "--threads", "4")
    _check_stopped(proc, out, reports, "SIGINT")
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("second_ms", [5, 10, 15, 20])
def test_ctrl_c_twice_from_outside_stops_the_command_once(small_inputs, tmp_path, second_ms):
    """As a terminal sends them, to the installed command: the second signal may come as
    the stop ends and the process exits."""
    proc, out, reports = _command_with_a_first_output(small_inputs, tmp_path)
    proc.send_signal(signal.SIGINT)
    time.sleep(second_ms / 1000)
    proc.send_signal(signal.SIGINT)
    _, proc.stderr = proc.communicate(timeout=60)
    _check_stopped(proc, out, reports, "SIGINT")
    assert proc.stderr.count("\n") == 1


def test_a_signal_the_process_was_started_ignoring_stays_ignored(small_inputs, small_reference,
                                                                 tmp_path):
    """As under nohup: SIGHUP does not stop the run."""
    proc, out, _ = _run(small_inputs, tmp_path, "replace:3:after:SIGHUP", "-q",
                        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert visible(out) == small_reference


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
@pytest.mark.parametrize("source", ["stdin", "fifo"])
def test_a_stream_whose_producer_stalls_mid_file_still_stops(big_input, tmp_path, sig, source):
    """A pipe read past its first block is read ahead on a thread, which waits on the
    producer; the stop waits for that thread, so the wait must give up when asked."""
    data = (big_input / "big.csv").read_bytes()
    data += data.partition(b"\n")[2] * 11  # 4.5 MB: a stream's first blocks are 2 MiB
    out = tmp_path / "out"
    out.mkdir()
    name = "-" if source == "stdin" else str(tmp_path / "in.fifo")
    if source == "fifo":
        os.mkfifo(name)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "fault_runner.py"), "none", "--", name, "-o",
         str(out / "x.csv"), "--on-error", "skip"],
        cwd=REPO, stdin=subprocess.PIPE if source == "stdin" else None,
        stderr=subprocess.PIPE)
    producer = proc.stdin if source == "stdin" else open(name, "wb")  # noqa: SIM115
    try:
        producer.write(data)
        producer.flush()  # every byte in; the producer stays open: it stalls
        deadline = time.monotonic() + 60
        while not hidden(out) and time.monotonic() < deadline:  # its output is begun
            time.sleep(0.05)
        assert hidden(out), "the first block was never scored"
        time.sleep(0.5)  # every block read; the read-ahead waits for the next
        assert proc.poll() is None
        proc.send_signal(getattr(signal, sig))
        code = proc.wait(timeout=30)
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
        producer.close()
        proc.stderr.close()
    assert code == 128 + getattr(signal, sig)
    assert err == f"digits-score: error: {MESSAGES[sig]}\n"
    assert os.listdir(out) == [".digits-score"]


SKIP = ScoreOptions(on_error="skip")  # big.csv has bad cells


def _pausing_fifo(path: Path, data: bytes, pause: float) -> threading.Thread:
    """A FIFO at ``path`` whose producer writes half of ``data``, pauses, then the rest."""
    os.mkfifo(path)

    def produce() -> None:
        with open(path, "wb", buffering=0) as fh:
            fh.write(data[:len(data) // 2])
            time.sleep(pause)
            fh.write(data[len(data) // 2:])

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    return thread


def test_a_stop_does_not_outlive_its_run(big_input, tmp_path, model_path):
    """After a stopped command, the library in the same process reads a slow pipe whole:
    the stop asked of the first run is not one asked of the next."""
    from digits_onnx.inference import stopping
    from digits_onnx.inference.cli import main

    def stop_at_once(*_: object) -> int:
        stopping.stop(Interrupted(signal.SIGTERM))
        return 0

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("digits_onnx.inference.cli._score", lambda *a: stop_at_once())
        assert main([str(big_input / "big.csv"), "-o", str(tmp_path / "first.csv")]) == 143
    producer = _pausing_fifo(tmp_path / "in.fifo", (big_input / "big.csv").read_bytes(), 0.6)
    summary = score_files([str(tmp_path / "in.fifo")], output=str(tmp_path / "second.csv"),
                          model=Model.load(model_path), options=SKIP, progress=False)
    producer.join()
    assert summary.exit_code == 0, summary.files[0].error
    assert summary.files[0].rows == 3000


def test_a_pipe_read_on_a_descriptor_above_1023_is_read(big_input, tmp_path, model_path):
    """select() refuses descriptors from FD_SETSIZE (1024) on; a run holding many open
    files (one lock per output folder) may read its input on one of them."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may hold only {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        producer = _pausing_fifo(tmp_path / "in.fifo", (big_input / "big.csv").read_bytes(),
                                 0.3)
        summary = score_files([str(tmp_path / "in.fifo")], output=str(tmp_path / "out.csv"),
                              model=Model.load(model_path), options=SKIP, progress=False)
        producer.join()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert summary.exit_code == 0, summary.files[0].error
    assert summary.files[0].rows == 3000
