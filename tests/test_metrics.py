"""--metrics-file: the run's figures in the Prometheus text format, on every exit after parsing.

Each file is read back with prometheus_client's parser (and checked by ``promtool check
metrics`` where promtool is installed). A failed run keeps the last success and the counters;
a previous file full of garbage is ignored, never trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from digits_onnx.inference import errors
from digits_onnx.inference.cli import main
from digits_onnx.inference.fsio import output_lock
from digits_onnx.inference.metrics import read_previous, render_metrics
from digits_onnx.inference.summary import BatchSummary, FileSummary

from tests.test_cli import csv_text

parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is a dev "
                             "dependency")

P = "digits_score_"


@pytest.fixture
def here(tmp_path, monkeypatch, digits_rows):
    """in/a.csv (20 rows of 64 features); out/ is missing."""
    monkeypatch.chdir(tmp_path)
    os.mkdir("in")
    Path("in/a.csv").write_text(csv_text(digits_rows[:20]))
    return tmp_path


@pytest.fixture
def labelled(here, digits_rows, model):
    """in/a.csv with an id and a label column: 18 of its 20 labels are what the model says."""
    labels = model.predict(digits_rows[:20])
    labels[:2] = (labels[:2] + 1) % 10
    Path("in/a.csv").write_text(csv_text(digits_rows[:20], ids=True, labels=labels))
    return here


def samples(path: str | Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a metrics file, by (name, sorted labels)."""
    text = Path(path).read_text()
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(P + name, tuple(sorted(labels.items())))]


def types(path: str | Path) -> dict[str, str]:
    return {f.name: f.type for f in parser.text_string_to_metric_families(Path(path).read_text())}


def score(model_path: Path, *args: str) -> int:
    return main([*map(str, args), "--model", str(model_path)])


def test_a_labelled_run_writes_every_figure(labelled, model_path, model, capsys):
    before = time.time()
    code = score(model_path, "in", "--out-dir", "out", "--id-column", "id", "--label-column",
                 "label", "--metrics-file", "run.prom")
    after = time.time()
    assert code == 0, capsys.readouterr().err
    got = samples("run.prom")
    start, end = value(got, "last_run_start_timestamp_seconds"), value(
        got, "last_run_end_timestamp_seconds")
    assert before - 1 <= start <= end <= after + 1
    assert value(got, "last_success_timestamp_seconds") == end
    assert value(got, "last_run_exit_code") == 0
    assert 0 <= value(got, "last_run_duration_seconds") <= after - before + 1
    assert value(got, "last_run_files", status="scored") == 1
    assert value(got, "last_run_files", status="skipped") == 0
    assert value(got, "last_run_files", status="failed") == 0
    assert value(got, "last_run_rows", status="scored") == 20
    assert value(got, "last_run_rows", status="rejected") == 0
    assert value(got, "last_run_rows_out_of_range") == 0
    assert value(got, "last_run_accuracy_ratio") == pytest.approx(0.9)
    assert value(got, "model_info", sha256=model.sha256) == 1
    assert value(got, "files_total", status="scored") == 1
    assert value(got, "rows_total", status="scored") == 20
    assert value(got, "rows_out_of_range_total") == 0
    kinds = types("run.prom")
    assert kinds[P + "files"] == kinds[P + "rows"] == kinds[P + "rows_out_of_range"] == "counter"
    assert kinds[P + "last_run_files"] == kinds[P + "last_success_timestamp_seconds"] == "gauge"


def test_every_metric_has_help_and_type_and_counters_end_in_total(here, model_path, capsys):
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 0
    lines = Path("run.prom").read_text().splitlines()
    names = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
    helped = {line.split(" ")[2] for line in lines if line.startswith("# HELP ")}
    typed = {line.split(" ")[2]: line.split(" ")[3] for line in lines
             if line.startswith("# TYPE ")}
    assert set(typed) == helped
    for name in names:
        family = name if name in typed else name.removesuffix("_total")
        assert family in typed, name
        assert name.endswith("_total") == (typed[family] == "counter"), name
    assert all(name.startswith(P) for name in names)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_finds_nothing_to_lint(labelled, model_path, capsys):
    assert score(model_path, "in", "--out-dir", "out", "--label-column", "label",
                 "--id-column", "id", "--metrics-file", "run.prom") == 0
    score(model_path, "missing.csv", "--out-dir", "out", "--metrics-file", "failed.prom")
    for name in ("run.prom", "failed.prom"):
        proc = subprocess.run(["promtool", "check", "metrics"], input=Path(name).read_bytes(),
                              capture_output=True, timeout=60, check=False)
        assert proc.returncode == 0 and not proc.stdout and not proc.stderr, (
            name, proc.stdout, proc.stderr)


def test_an_unlabelled_run_has_no_accuracy(here, model_path, digits_rows, capsys):
    Path("in/a.csv").write_text(csv_text(digits_rows[:10]))
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 0
    assert not any("accuracy" in name for name, _ in samples("run.prom"))


def test_counters_add_up_over_runs_and_a_rerun_counts_skips(here, model_path, capsys):
    for _ in range(2):
        assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 0
    got = samples("run.prom")
    assert value(got, "last_run_files", status="scored") == 0
    assert value(got, "last_run_files", status="skipped") == 1
    assert value(got, "last_run_rows", status="scored") == 0
    assert value(got, "files_total", status="scored") == 1
    assert value(got, "files_total", status="skipped") == 1
    assert value(got, "rows_total", status="scored") == 20


@pytest.mark.parametrize(("args", "code"), [
    (["in", "--out-dir", "out", "--on-error", "maybe"], errors.EXIT_USAGE),
    (["missing.csv", "--out-dir", "out"], errors.EXIT_NOINPUT),
    (["in", "--out-dir", "no/such/out"], errors.EXIT_CANTCREAT),
    (["in", "--out-dir", "out", "--model-sha256", "0" * 64], errors.EXIT_DATAERR),
])
def test_a_failed_run_keeps_the_last_success_and_the_counters(here, model_path, capsys, args,
                                                              code):
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 0
    first = samples("run.prom")
    time.sleep(0.01)
    assert score(model_path, *args, "--metrics-file", "run.prom") == code
    got = samples("run.prom")
    assert value(got, "last_run_exit_code") == code
    assert value(got, "last_success_timestamp_seconds") == value(
        first, "last_success_timestamp_seconds")
    assert value(got, "last_run_start_timestamp_seconds") > value(
        first, "last_run_end_timestamp_seconds")
    assert value(got, "last_run_files", status="scored") == 0
    assert value(got, "files_total", status="scored") == 1
    assert value(got, "rows_total", status="scored") == 20


def test_a_busy_run_writes_exit_75_and_keeps_the_last_success(here, model_path, capsys):
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 0
    first = samples("run.prom")
    with output_lock(Path("out")):
        assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 75
    got = samples("run.prom")
    assert value(got, "last_run_exit_code") == 75
    assert value(got, "last_success_timestamp_seconds") == value(
        first, "last_success_timestamp_seconds")


def test_some_failed_files_are_counted_and_are_no_success(here, model_path, capsys):
    Path("in/bad.csv").write_text("1,2,3\n")
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "run.prom") == 1
    got = samples("run.prom")
    assert value(got, "last_run_exit_code") == 1
    assert value(got, "last_success_timestamp_seconds") == 0  # never succeeded
    assert value(got, "last_run_files", status="failed") == 1
    assert value(got, "last_run_files", status="scored") == 1
    assert value(got, "files_total", status="failed") == 1


def test_a_first_failed_run_has_no_success_and_no_model(here, model_path, capsys):
    assert score(model_path, "in", "-o", "x.csv", "--out-dir", "out",
                 "--metrics-file", "run.prom") == 2
    got = samples("run.prom")
    assert value(got, "last_success_timestamp_seconds") == 0
    assert value(got, "last_run_exit_code") == 2
    assert not any(name == P + "model_info" for name, _ in got)


def test_rejects_and_out_of_range_rows_are_counted(here, model_path, digits_rows, capsys):
    rows = digits_rows[:10].copy()
    rows[3, 5] = 40  # out of range: scored, with a warning
    text = csv_text(rows).splitlines()
    text[5] = text[5].replace(",", ",x", 1)  # line 6: not a number
    Path("in/a.csv").write_text("\n".join(text) + "\n")
    assert score(model_path, "in", "--out-dir", "out", "--on-error", "skip",
                 "--metrics-file", "run.prom") == 0
    got = samples("run.prom")
    assert value(got, "last_run_rows", status="scored") == 9
    assert value(got, "last_run_rows", status="rejected") == 1
    assert value(got, "last_run_rows_out_of_range") == 1
    assert value(got, "rows_total", status="rejected") == 1


@pytest.mark.parametrize("previous", [
    b"\x00\xff garbage \xfe\n" * 50,
    b"digits_score_last_success_timestamp_seconds NaN\n"
    b'digits_score_files_total{status="scored"} -5\n'
    b'digits_score_rows_total{status="scored"} +Inf\n',
    b"digits_score_last_success_timestamp_seconds{\n" b"# HELP\n" b"{}} 1 2 3 4\n",
    b"x" * (2 << 20),  # larger than anything this writes: not read at all
])
def test_a_previous_file_of_garbage_is_ignored(here, model_path, capsys, previous):
    Path("run.prom").write_bytes(previous)
    assert score(model_path, "missing.csv", "-o", "x.csv", "--metrics-file", "run.prom") == 66
    got = samples("run.prom")
    assert value(got, "last_success_timestamp_seconds") == 0
    assert value(got, "files_total", status="scored") == 0


def test_read_previous_takes_only_what_it_carries():
    text = (
        "# HELP digits_score_files_total x\n"
        'digits_score_files_total{status="scored"} 7\n'
        'digits_score_files_total{status="bogus"} 3\n'
        'digits_score_rows_total{status="rejected"} 1e3\n'
        "digits_score_last_success_timestamp_seconds 1700000000.5\n"
        "digits_score_last_run_exit_code 4\n"
        "other_metric 9\n"
    )
    previous = read_previous(text.encode())
    assert previous.last_success == 1700000000.5
    assert previous.counters == {("files_total", "scored"): 7.0,
                                 ("rows_total", "rejected"): 1000.0}


def test_render_is_deterministic_and_ends_with_a_newline():
    summary = BatchSummary(files=[FileSummary(input="a.csv", output="a.pred.csv", rows=3,
                                              scored=3)], model_sha256="ab" * 32)
    one = render_metrics(summary, started=1700000000.25, ended=1700000001.5)
    assert one == render_metrics(summary, started=1700000000.25, ended=1700000001.5)
    text = one.decode()
    assert text.endswith("\n") and "\n\n" not in text
    assert "digits_score_last_run_start_timestamp_seconds 1700000000.25\n" in text
    assert "digits_score_last_run_duration_seconds 1.25\n" in text
    assert 'digits_score_model_info{sha256="' + "ab" * 32 + '"} 1\n' in text


# -- where it may be written ---------------------------------------------------------------------

def test_a_metrics_path_that_is_an_input_is_never_written(here, model_path, capsys):
    data = Path("in/a.csv").read_bytes()
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "in/a.csv") == 73
    assert score(model_path, "in", "--out-dir", "out", "--on-error", "maybe",
                 "--metrics-file", "in/a.csv") == 2
    assert Path("in/a.csv").read_bytes() == data
    assert not Path("out").exists()
    assert "in/a.csv: --metrics-file would overwrite the input in/a.csv" in \
        capsys.readouterr().err


def test_a_metrics_path_that_is_the_model_or_an_output_is_refused(here, model_path, capsys):
    model_bytes = model_path.read_bytes()
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", model_path) == 73
    assert model_path.read_bytes() == model_bytes
    assert score(model_path, "in/a.csv", "-o", "x.csv", "--metrics-file", "x.csv") == 73
    assert not Path("x.csv").exists()


def test_the_summary_and_the_metrics_cannot_share_a_file(here, model_path, capsys):
    code = score(model_path, "in", "--out-dir", "out", "--summary-json", "r", "--metrics-file",
                 "r")
    assert code == 2
    assert capsys.readouterr().err == ("digits-score: error: --summary-json and --metrics-file "
                                       "name one file (r); give each its own\n")
    assert json.loads(Path("r").read_text())["exit_code"] == 2  # the summary's, not both
    Path("r").unlink()
    os.symlink("r", "link")  # one file by two names
    assert score(model_path, "in", "--out-dir", "out", "--summary-json", "r",
                 "--metrics-file", "link") == 2
    assert "name one file (link)" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--summary-json", "--metrics-file"])
def test_the_predictions_and_a_report_cannot_both_go_to_stdout(here, model_path, flag):
    """By any name of stdout: ``-``, /dev/stdout, /proc/self/fd/1 (a pipe here)."""
    for output in ([], ["-o", "-"], ["-o", "/dev/stdout"], ["-o", "/proc/self/fd/1"]):
        for report in ("-", "/dev/stdout"):
            proc = subprocess.run(
                [sys.executable, "-m", "digits_onnx.inference", "in/a.csv", *output, flag,
                 report, "--model", str(model_path)], capture_output=True, text=True,
                timeout=120, check=False)
            assert (proc.returncode, proc.stderr) == (2, (
                f"digits-score: error: the predictions and {flag} would both go to stdout; "
                "give -o FILE, or a file for the report\n")), (output, report)
            assert "confidence" not in proc.stdout  # no prediction reached it


def test_an_empty_directory_with_its_summary_on_stdout_is_a_normal_night(here, model_path,
                                                                         capsys):
    os.mkdir("empty")
    assert score(model_path, "empty", "--summary-json", "-") == 0
    assert json.loads(capsys.readouterr().out)["files"] == []


def test_the_library_names_reports_as_the_caller_does(here, model):
    from digits_onnx.inference import OutputError, score_files
    from digits_onnx.inference.plan import Report

    with pytest.raises(OutputError, match=r"o.csv: the run would write this file twice "
                                          r"\(as output and as --audit\)"):
        score_files(["in/a.csv"], output="o.csv", model=model,
                    reports=[Report("o.csv", "--audit")])
    with pytest.raises(OutputError, match=r"in/a.csv: the report would overwrite the input"):
        score_files(["in/a.csv"], output="x.csv", model=model, reports=["in/a.csv"])


def test_metrics_to_stdout(here, model_path, capsys):
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "-") == 0
    out = capsys.readouterr().out
    names = {f.name for f in parser.text_string_to_metric_families(out)}
    assert P + "last_run_exit_code" in names


def test_the_summary_and_the_metrics_cannot_both_go_to_stdout(here, model_path, capsys):
    code = score(model_path, "in", "--out-dir", "out", "--summary-json", "-",
                 "--metrics-file", "-")
    assert code == 2
    assert capsys.readouterr().err == ("digits-score: error: the summary and the metrics would "
                                       "both go to stdout; give a file for one\n")
    assert not Path("out").exists()


def test_an_empty_metrics_path_is_a_usage_error(here, model_path, capsys):
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "") == 2
    assert capsys.readouterr().err == ("digits-score: error: --metrics-file needs a path (or - "
                                       "for stdout)\n")
    assert sorted(os.listdir(".")) == ["in"]


def test_the_file_is_replaced_atomically_and_leaves_no_temporary(here, model_path, capsys):
    Path("textfile").mkdir()
    Path("textfile/digits.prom").write_text("old\n")
    old_inode = os.stat("textfile/digits.prom").st_ino
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file",
                 "textfile/digits.prom") == 0
    assert os.listdir("textfile") == ["digits.prom"]
    assert os.stat("textfile/digits.prom").st_ino != old_inode  # renamed over, not rewritten


def test_a_metrics_link_is_refused_and_its_target_kept(here, model_path, capsys):
    Path("target.prom").write_text("kept\n")
    Path("link.prom").symlink_to("target.prom")
    assert score(model_path, "in", "--out-dir", "out", "--metrics-file", "link.prom") == 73
    assert Path("target.prom").read_text() == "kept\n"
    assert Path("link.prom").is_symlink()
