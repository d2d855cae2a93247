"""Paths a run must never write: inputs, the model, stdin's file, its own other outputs, and
anything that is not a regular file. Each case exits 73 (or writes a stream) and changes
nothing it must not; the bookkeeping cannot be planted."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from digits_onnx.inference.journal import MAX_JOURNAL_BYTES

REPO = Path(__file__).resolve().parent.parent


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


@pytest.mark.parametrize(("args", "message"), [
    (["in.csv", "-o", "out.csv", "--summary-json", "in.csv"],
     "in.csv: --summary-json would overwrite the input in.csv"),
    (["in.csv", "-o", "in.csv"], "in.csv: the output would overwrite its own input"),
    (["in.csv", "-o", "./sub/../in.csv"],
     "./sub/../in.csv: the output would overwrite its own input"),
    (["in.csv", "-o", "in.rejects.csv"],
     "in.rejects.csv: names ending in .rejects.csv are kept for reject reports"),
    (["in.csv", "in.pred.csv", "--out-dir", "."],
     "in.pred.csv: the output would overwrite the input in.pred.csv"),
    (["in.csv", "-o", "out.csv", "--summary-json", "out.csv"],
     "out.csv: the run would write this file twice (as output and as --summary-json)"),
    (["in.csv", "-o", "model.onnx", "--output-format", "csv"],
     "model.onnx: the output would overwrite the model"),
    (["in.csv", "-o", "out.csv", "--summary-json", "model.onnx"],
     "model.onnx: --summary-json would overwrite the model"),
])
def test_a_collision_exits_73_and_changes_nothing(here, model_path, run, args, message):
    os.mkdir("sub")
    Path("in.pred.csv").write_bytes(Path("in.csv").read_bytes())
    (here / "model.onnx").symlink_to(model_path)  # the model, by another name
    args = [a.replace("model.onnx", str(model_path)) if a == "model.onnx" else a for a in args]
    before, model_bytes = snapshot(here), model_path.read_bytes()
    code, _, err = run(*args)
    assert code == 73, err
    assert len(err) == 1 and err[0].startswith("digits-score: error: ")
    assert message.replace("model.onnx", str(model_path)).split(": ", 1)[1] in err[0] \
        or message in err[0], err
    assert snapshot(here) == before
    assert model_path.read_bytes() == model_bytes
    assert not Path(".digits-score").exists()


def test_the_rejects_report_of_one_input_cannot_be_another_input(here, run):
    Path("in.rejects.csv").write_bytes(Path("in.csv").read_bytes())
    before = snapshot(here)
    code, _, err = run("in.csv", "in.rejects.csv", "--out-dir", ".", "--output-format", "jsonl")
    assert code == 73 and "in.rejects.csv: the reject report would overwrite the input" in err[0]
    assert snapshot(here) == before


def test_stdin_that_is_the_output_file_is_refused(here, model_path):
    data = Path("in.csv").read_bytes()
    with open("in.csv", "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "-", "-o", "in.csv",
                               "--model", str(model_path)], stdin=stdin, capture_output=True,
                              text=True, timeout=120, check=False)
    assert proc.returncode == 73, proc.stderr
    assert proc.stderr == ("digits-score: error: in.csv: the output would overwrite stdin "
                           "(the same file)\n")
    assert Path("in.csv").read_bytes() == data


def test_stdout_appending_to_the_input_is_refused(here, model_path):
    data = Path("in.csv").read_bytes()
    with open("in.csv", "ab") as stdout:
        proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "in.csv",
                               "--model", str(model_path)], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert proc.returncode == 73, proc.stderr
    assert "the output would overwrite its own input" in proc.stderr
    assert Path("in.csv").read_bytes() == data


# -- only regular files are replaced ------------------------------------------------------------

@pytest.fixture(autouse=True)
def system_devices_survive():
    """These tests write through /dev/null and /dev/stdout. Should a regression replace them
    (as the scorer once did as root), put them back, so the machine outlives the failure."""
    yield
    null = os.lstat("/dev/null")
    if not stat.S_ISCHR(null.st_mode):
        os.unlink("/dev/null")
        os.mknod("/dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod("/dev/null", 0o666)
    if not os.path.islink("/dev/stdout"):
        os.unlink("/dev/stdout")
        os.symlink("/proc/self/fd/1", "/dev/stdout")


@pytest.mark.parametrize("target", ["/dev/null", "link-to-dev-null"])
def test_a_device_is_written_as_a_stream_never_replaced(here, run, target):
    os.symlink("/dev/null", "link-to-dev-null")
    st = os.stat("/dev/null")
    code, _, err = run("in.csv", "-o", target, "-q")
    assert code == 0, err
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_rdev, after.st_mode) == (st.st_ino, st.st_rdev, st.st_mode)
    assert os.readlink("link-to-dev-null") == "/dev/null"
    assert not Path(".digits-score").exists(), "no lock or record beside a device"
    assert sorted(os.listdir("/dev")).count("null") == 1


def test_a_fifo_output_is_written_as_a_stream(here, model_path):
    os.mkfifo("out.csv")
    reader = subprocess.Popen(["cat", "out.csv"], stdout=subprocess.PIPE)
    try:
        proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "in.csv", "-o",
                               "out.csv", "--model", str(model_path), "-q"],
                              capture_output=True, text=True, timeout=120, check=False)
        out, _ = reader.communicate(timeout=60)
    finally:
        reader.kill()
        if reader.stdout is not None:
            reader.stdout.close()
    assert proc.returncode == 0, proc.stderr
    assert out.decode().splitlines()[0] == "row,label,confidence"
    assert len(out.decode().splitlines()) == 21
    assert Path("out.csv").is_fifo()


def test_stdout_symlink_writes_into_the_redirected_file(here, model_path):
    with open("captured.csv", "wb") as stdout:
        proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "in.csv", "-o",
                               "/dev/stdout", "--model", str(model_path), "-q"], stdout=stdout,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(Path("captured.csv").read_text().splitlines()) == 21
    assert os.path.islink("/dev/stdout")


@pytest.mark.parametrize("kind", ["symlink", "dangling", "directory", "socket"])
def test_an_output_that_is_not_a_regular_file_is_refused(here, run, kind):
    Path("elsewhere.csv").write_text("precious\n")
    if kind == "symlink":
        os.symlink("elsewhere.csv", "out.csv")
    elif kind == "dangling":
        os.symlink("nowhere.csv", "out.csv")
    elif kind == "directory":
        os.mkdir("out.csv")
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind("out.csv")
        server.close()  # the socket file stays
    code, _, err = run("in.csv", "-o", "out.csv")
    assert code == 73, err
    assert len(err) == 1 and err[0].startswith("digits-score: error: out.csv: the output ")
    assert Path("elsewhere.csv").read_text() == "precious\n"
    assert not Path("nowhere.csv").exists()
    assert os.path.lexists("out.csv")


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_a_planted_file_in_an_out_dir_is_refused(here, run, kind):
    os.mkdir("out")
    Path("elsewhere.csv").write_text("precious\n")
    target = "out/in.pred.csv"
    {"symlink": lambda: os.symlink("../elsewhere.csv", target),
     "fifo": lambda: os.mkfifo(target), "directory": lambda: os.mkdir(target)}[kind]()
    code, _, err = run("in.csv", "--out-dir", "out")
    assert code == 73, err
    assert Path("elsewhere.csv").read_text() == "precious\n"


# -- the bookkeeping cannot be planted ----------------------------------------------------------

@pytest.mark.parametrize(("kind", "message"), [
    ("symlink", "out/.digits-score/lock: the lock is a symbolic link; remove it"),
    ("fifo", "out/.digits-score/lock: the lock is not a regular file; remove it"),
    ("directory", "out: cannot lock the output directory (out/.digits-score/lock: Is a "
                  "directory)"),
])
def test_a_planted_lock_is_never_followed(here, run, kind, message):
    os.makedirs("out/.digits-score")
    Path("elsewhere").write_text("precious\n")
    lock = "out/.digits-score/lock"
    {"symlink": lambda: os.symlink("../../elsewhere", lock), "fifo": lambda: os.mkfifo(lock),
     "directory": lambda: os.mkdir(lock)}[kind]()
    code, _, err = run("in.csv", "--out-dir", "out")
    assert code == 73, err
    assert err == [f"digits-score: error: {message}"]
    assert Path("elsewhere").read_text() == "precious\n"
    assert os.listdir("out") == [".digits-score"]


def test_a_planted_bookkeeping_link_is_never_followed(here, run):
    os.mkdir("out")
    os.mkdir("elsewhere")
    os.symlink("../elsewhere", "out/.digits-score")
    code, _, err = run("in.csv", "--out-dir", "out")
    assert code == 73, err
    assert os.listdir("elsewhere") == []


@pytest.mark.parametrize("dry", [False, True])
def test_a_folder_at_the_journals_name_fails_the_run_before_anything(here, run, dry):
    """Nothing can be renamed over a folder: the run is refused at once, as for a planted
    lock, instead of scoring every file and failing each at its record."""
    assert run("in.csv", "--out-dir", "out", "-q")[0] == 0
    before = Path("out/in.pred.csv").read_bytes()
    os.unlink("out/.digits-score/records.jsonl")
    os.mkdir("out/.digits-score/records.jsonl")
    code, _, err = run("in.csv", "--out-dir", "out", "--force", *(["--dry-run"] if dry else []))
    assert code == 73, err
    assert err[-1].endswith("out/.digits-score/records.jsonl: a folder is in the place of "
                            "the records' journal; remove it")
    assert Path("out/in.pred.csv").read_bytes() == before


@pytest.mark.parametrize("kind", ["symlink", "fifo", "huge", "other output", "garbage",
                                  "cut short"])
def test_a_planted_record_is_not_trusted(here, run, kind):
    assert run("in.csv", "--out-dir", "out", "-q")[0] == 0
    journal = Path("out/.digits-score/records.jsonl")
    saved = journal.read_bytes()
    key, _, record = saved.rstrip(b"\n").partition(b" ")
    journal.unlink()
    if kind == "symlink":
        Path("copy.jsonl").write_bytes(saved)
        os.symlink(Path("copy.jsonl").resolve(), journal)
    elif kind == "fifo":
        os.mkfifo(journal)
    elif kind == "huge":
        with open(journal, "wb") as fh:
            fh.write(saved)
            fh.truncate(MAX_JOURNAL_BYTES + 1)  # sparse
    elif kind == "other output":
        state = json.loads(record)
        state["output"]["name"] = b"other.pred.csv".hex()
        journal.write_bytes(key + b" " + json.dumps(state).encode() + b"\n")
    elif kind == "cut short":
        journal.write_bytes(saved[:len(saved) // 2] + b"\n")
    else:
        journal.write_bytes(key + b" \x00\xff{[\n")
    code, _, err = run("in.csv", "--out-dir", "out")
    assert code == 0, err
    assert err[0].startswith("scored in.csv"), "an untrusted record means: score again"
    assert stat.S_ISREG(os.lstat(journal).st_mode), "what was planted is replaced"
    if kind == "symlink":
        assert Path("copy.jsonl").read_bytes() == saved, "never written through"
    code, _, err = run("in.csv", "--out-dir", "out")
    assert code == 0 and err[0].startswith("up to date: in.csv"), err


# -- names and patterns -------------------------------------------------------------------------

def test_an_existing_name_is_a_name_not_a_pattern(here, run):
    os.rename("in.csv", "brackets[1].csv")
    Path("brackets1.csv").write_text("not,a,digit\n")
    code, _, err = run("brackets[1].csv", "--out-dir", "out", "-q")
    assert code == 0, err
    assert sorted(os.listdir("out")) == [".digits-score", "brackets[1].pred.csv"]


@pytest.mark.parametrize("fmt", ["csv", "npy", "parquet", "jsonl"])
def test_a_directory_scored_into_itself_never_reads_its_own_outputs(here, run, fmt):
    os.mkdir("d")
    os.rename("in.csv", "d/in.csv")
    for _ in range(2):
        code, _, err = run("d", "--out-dir", "d", "--output-format", fmt, "--force", "-q",
                           "--on-error", "skip")
        assert code == 0, err
    assert sorted(os.listdir("d")) == [".digits-score", "in.csv", f"in.pred.{fmt}"]


def _deep_input(here: Path) -> str:
    """An existing input whose absolute path is longer than PATH_MAX (4096 on Linux)."""
    try:
        for _ in range(22):  # one level at a time: no name given to a call is too long
            os.mkdir("d" * 200)
            os.chdir("d" * 200)
        Path("in.csv").touch()
    finally:
        os.chdir(here)
    return str(here.joinpath(*["d" * 200] * 22, "in.csv"))


@pytest.mark.parametrize(("make", "reason"), [
    (lambda here: os.symlink("loop.csv", "loop.csv") or "loop.csv",
     "Too many levels of symbolic links"),
    (lambda here: "x" * 300 + ".csv", "File name too long"),
    (lambda here: "in.csv/x.csv", "Not a directory"),
    (_deep_input, "File name too long"),
])
def test_an_input_that_cannot_be_reached_says_why(here, run, make, reason):
    name = make(here)
    code, _, err = run(name, "-o", "out.csv")
    assert code == 66
    assert err == [f"digits-score: error: {name}: cannot open it ({reason})"]
    assert not Path("out.csv").exists()
