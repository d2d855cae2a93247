"""The files around a run that it reads or owns: the model's manifest, the bookkeeping folder
(lock and records), and the folders of its reports. A run refused over one of them exits 73
with one line, before anything is written, and writes no summary or metrics over a file it
refused; a report that cannot be written is reported once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from digits_onnx.inference.contract import MANIFEST_FILENAME

from tests.test_paths import snapshot

PRECIOUS = b"precious\n"


@pytest.fixture
def local_model(here, model_path) -> Path:
    """A copy of the test model, its manifest beside it, in the working directory."""
    shutil.copy(model_path, here / "m.onnx")
    shutil.copy(model_path.with_name(MANIFEST_FILENAME), here / MANIFEST_FILENAME)
    return here / "m.onnx"


def _refused(run, here: Path, args: list[str], message: str) -> None:
    before = snapshot(here)
    code, _, err = run(*args)
    assert code == 73, err
    assert err == [f"digits-score: error: {message}"]
    assert snapshot(here) == before


@pytest.mark.parametrize("args", [
    ["-o", "model.json", "--output-format", "jsonl"],
    ["-o", "out.csv", "--summary-json", "model.json"],
    ["-o", "out.csv", "--metrics-file", "model.json"],
    ["-o", "sub/../model.json", "--output-format", "csv"],
])
def test_the_models_manifest_is_never_written(here, local_model, args):
    from digits_onnx.inference.cli import main

    os.mkdir("sub")
    before = snapshot(here)
    code = main(["in.csv", *args, "--model", str(local_model)])
    assert code == 73
    assert snapshot(here) == before


def test_the_manifest_message_names_it(here, local_model, capsys):
    from digits_onnx.inference.cli import main

    assert main(["in.csv", "-o", "o.csv", "--summary-json", "model.json",
                 "--model", str(local_model)]) == 73
    assert capsys.readouterr().err == ("digits-score: error: model.json: --summary-json would "
                                       "overwrite the model's manifest "
                                       f"{local_model.with_name('model.json')}\n")


BOOKKEEPING_TARGETS = [
    (["-o", "D/.digits-score/lock", "--output-format", "csv"], "D/.digits-score/lock",
     "the output"),
    (["-o", "D/.digits-score/records.jsonl", "--output-format", "jsonl"],
     "D/.digits-score/records.jsonl", "the output"),
    (["--out-dir", "D/.digits-score"], "D/.digits-score/in.pred.csv", "the output"),
    (["-o", "x.csv", "--summary-json", "D/.digits-score/lock"], "D/.digits-score/lock",
     "--summary-json"),
    (["-o", "x.csv", "--metrics-file", "D/.digits-score/m.prom"], "D/.digits-score/m.prom",
     "--metrics-file"),
    (["-o", "link/x.csv"], "link/x.csv", "the output"),
    (["-o", "D/.digits-score/x.csv", "--on-error", "skip"], "D/.digits-score/x.csv",
     "the output"),
]


@pytest.mark.parametrize(("args", "path", "what"), BOOKKEEPING_TARGETS)
def test_nothing_is_written_into_a_bookkeeping_folder(here, run, args, path, what):
    assert run("in.csv", "--out-dir", "D", "-q")[0] == 0
    (here / "link").symlink_to("D/.digits-score")
    _refused(run, here, ["in.csv", *args],
             f"{path}: {what} would be written in a bookkeeping folder (.digits-score), which "
             "holds the scorer's lock and records; give a path outside it")


def test_a_held_lock_cannot_be_replaced_through_an_output(here, run):
    """The lock is what keeps two runs apart: an output in its place would let them both in."""
    from digits_onnx.inference.fsio import output_lock

    os.mkdir("D")
    with output_lock(Path("D")):
        code, _, _ = run("in.csv", "-o", "D/.digits-score/lock", "--output-format", "csv")
        assert code == 73
        assert run("in.csv", "--out-dir", "D")[0] == 75


@pytest.mark.parametrize(("flag", "path", "folder"), [
    ("--summary-json", "nodir/s.json", "nodir"),
    ("--metrics-file", "nodir/m.prom", "nodir"),
    ("--summary-json", "in.csv/s.json", "in.csv"),
    ("--metrics-file", "a/b/m.prom", "a/b"),
])
def test_a_report_into_a_missing_folder_is_refused_before_scoring(here, run, flag, path, folder):
    _refused(run, here, ["in.csv", "-o", "out.csv", flag, path],
             f"{path}: the folder {folder} does not exist")


@pytest.mark.parametrize("flag", ["--summary-json", "--metrics-file"])
@pytest.mark.parametrize(("output", "report"), [
    (["-o", "o2.csv"], "o2.rejects.csv"),
    ([], "in.rejects.csv"),  # stdout's report goes to the working directory
])
def test_a_report_refused_as_a_reject_report_is_not_written_after_the_failure(
        here, run, flag, output, report):
    (here / report).write_bytes(PRECIOUS)
    code, out, err = run("in.csv", *output, "--on-error", "skip", flag, report)
    assert code == 73 and len(err) == 1
    assert "would write this file twice (as reject report and as" in err[0]
    assert (here / report).read_bytes() == PRECIOUS
    assert out == ""


@pytest.mark.parametrize("flag", ["--summary-json", "--metrics-file"])
def test_a_report_that_cannot_be_written_is_reported_once(here, run, flag):
    code, _, err = run("in.csv", "-o", "out.csv", "-q", flag, "/dev/full")
    assert code == 74
    assert err == ["digits-score: error: /dev/full: cannot write (No space left on device)"]
