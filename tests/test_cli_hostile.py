"""The command line under hostile conditions: closed standard streams, odd names, odd option
values, internal errors, Ctrl-C. Never a traceback, always a documented code, every message
one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import errors
from digits_onnx.inference.cli import main
from digits_onnx.inference.console import printable
from digits_onnx.inference.state import read_state

from tests.test_cli import csv_text

REPO = Path(__file__).resolve().parent.parent


def score(*args: str, model_path: Path, stdin=None, stdout=subprocess.PIPE,
          stderr=subprocess.PIPE, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digits_onnx.inference", *map(str, args),
                           "--model", str(model_path)], stdin=stdin, stdout=stdout,
                          stderr=stderr, timeout=120, check=False, **kwargs)


# -- option values -------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["--threads", "99999999999999999999"], "--threads must be a whole number from 1 to 1024"),
    (["--threads", "0"], "--threads must be a whole number from 1 to 1024"),
    (["-o", ""], "-o needs a path (or - for stdout)"),
    (["--out-dir", ""], "--out-dir needs a path"),
    (["--scheduler", ""], "--scheduler needs an address (tcp://host:port) or local:N"),
    (["--part-size", "0", "--scheduler", "local:1"], "the part size must be positive"),
    (["--part-size", "5"], "--part-size applies to --scheduler runs only"),
    (["--output-format", "xlsx"], "unknown output format 'xlsx'; choose from csv, csv.gz, "
     "tsv, tsv.gz, npy, parquet, jsonl"),
    (["--input-format", "xls"], "unknown input format 'xls'; choose from csv, tsv, csv.gz, "
     "tsv.gz, npy, parquet"),
])
def test_bad_option_values_are_usage_errors(here, model_path, capsys, args, message):
    code = main(["in.csv", *args, "--model", str(model_path)])
    assert code == 2
    assert capsys.readouterr().err == f"digits-score: error: {message}\n"


def test_a_scheduler_address_dask_cannot_parse_is_a_usage_error(here, model_path, capsys):
    pytest.importorskip("distributed")
    code = main(["in.csv", "-o", "out.csv", "--scheduler", "bogus://x:1", "--model",
                 str(model_path)])
    err = capsys.readouterr().err
    assert code in (errors.EXIT_USAGE, errors.EXIT_UNAVAILABLE), err
    assert err.count("\n") == 1 and err.startswith("digits-score: error: ")
    assert "bogus://x:1" in err and not Path("out.csv").exists()


# -- the summary on every exit -------------------------------------------------------------------

@pytest.mark.parametrize(("args", "code"), [
    (["in.csv", "-o", "out.csv", "--on-error", "maybe"], 2),
    (["in.csv", "-o", "no/such/dir/out.csv"], 73),
    (["missing.csv", "-o", "out.csv"], 66),
    (["in.csv", "-o", "in.csv"], 73),
])
def test_a_failed_run_replaces_an_older_summary(here, model_path, capsys, args, code):
    Path("summary.json").write_text(json.dumps({"exit_code": 0}))
    got = main([*args, "--summary-json", "summary.json", "--model", str(model_path)])
    assert got == code, capsys.readouterr().err
    summary = json.loads(Path("summary.json").read_text())
    assert summary["exit_code"] == code
    assert summary["error"] or summary["files"][0]["error"]


def test_a_busy_run_writes_its_summary(here, model_path, capsys):
    from digits_onnx.inference.fsio import output_lock

    os.mkdir("out")
    Path("summary.json").write_text(json.dumps({"exit_code": 0}))
    with output_lock(Path("out")):
        got = main(["in.csv", "--out-dir", "out", "--summary-json", "summary.json",
                    "--model", str(model_path)])
    assert got == 75
    assert json.loads(Path("summary.json").read_text())["exit_code"] == 75


def test_a_summary_path_that_is_an_input_is_never_written_even_after_a_failure(
        here, model_path, capsys):
    data = Path("in.csv").read_bytes()
    code = main(["in.csv", "-o", "out.csv", "--on-error", "maybe", "--summary-json", "in.csv",
                 "--model", str(model_path)])
    assert code == 2
    assert Path("in.csv").read_bytes() == data


# -- cron habits ---------------------------------------------------------------------------------

def test_an_empty_input_directory_is_a_normal_night(here, model_path, capsys):
    os.mkdir("incoming")
    code = main(["incoming", "--out-dir", "scored", "--summary-json", "s.json", "--model",
                 str(model_path)])
    assert code == 0
    assert capsys.readouterr().err.startswith("total: 0 files")
    assert json.loads(Path("s.json").read_text())["totals"]["files"] == 0


def test_a_missing_out_dir_is_created(here, model_path, capsys):
    assert main(["in.csv", "--out-dir", "scored", "-q", "--model", str(model_path)]) == 0
    assert Path("scored/in.pred.csv").exists()
    code = main(["in.csv", "--out-dir", "no/such/scored", "--model", str(model_path)])
    assert code == 73
    assert "its parent does not exist" in capsys.readouterr().err


def test_a_content_change_that_keeps_size_and_mtime_is_rescored(here, model_path, capsys):
    assert main(["in.csv", "--out-dir", "out", "-q", "--model", str(model_path)]) == 0
    st = os.stat("in.csv")
    lines = Path("in.csv").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # same bytes, other order: same size
    Path("in.csv").write_text("\n".join(lines) + "\n")
    os.utime("in.csv", ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r
    assert os.stat("in.csv").st_size == st.st_size
    capsys.readouterr()
    assert main(["in.csv", "--out-dir", "out", "--model", str(model_path)]) == 0
    assert capsys.readouterr().err.startswith("scored in.csv")


def test_stdin_is_never_up_to_date(here, model_path):
    for rows in (5, 7):
        text = "\n".join(Path("in.csv").read_text().splitlines()[:rows + 1]) + "\n"
        proc = score("-", "-o", "out.csv", model_path=model_path, input=text.encode())
        assert proc.returncode == 0, proc.stderr
        assert len(Path("out.csv").read_text().splitlines()) == rows + 1


def test_an_id_column_named_like_an_output_column_is_carried_as_input_name(
        here, model_path, digits_rows):
    """Never two fields of one name: the input's column is renamed, the scorer's kept."""
    text = csv_text(digits_rows[:5], ids=True).replace("id,", "label,", 1)
    Path("ids.csv").write_text(text)
    code = main(["ids.csv", "-o", "out.jsonl", "--id-column", "label", "--model",
                 str(model_path)])
    assert code == 0
    first = json.loads(Path("out.jsonl").read_text().splitlines()[0])
    assert list(first) == ["input_label", "label", "confidence"]


def test_a_failed_rerun_removes_the_stale_unit(here, model_path, capsys, digits_rows):
    assert main(["in.csv", "--out-dir", "out", "--on-error", "skip", "-q", "--model",
                 str(model_path)]) == 0
    assert Path("out/in.pred.csv").exists()
    Path("in.csv").write_text("this is not,a digit\n" * 3)
    code = main(["in.csv", "--out-dir", "out", "--on-error", "skip", "--model",
                 str(model_path)])
    err = capsys.readouterr().err
    assert code == 65, err
    assert err.rstrip().endswith("(removed the earlier out/in.pred.csv)")
    assert os.listdir("out") == [".digits-score"]
    assert read_state(Path("out/in.pred.csv")) is None


# -- standard streams ----------------------------------------------------------------------------

def test_with_stderr_closed_a_valid_run_still_scores(here, model_path):
    proc = score("in.csv", "-o", "out.csv", model_path=model_path, stderr=None,
                 pass_fds=(), preexec_fn=lambda: os.close(2))
    assert proc.returncode == 0
    assert len(Path("out.csv").read_text().splitlines()) == 21


def test_with_stdout_closed_output_to_stdout_is_an_io_error(here, model_path):
    proc = score("in.csv", model_path=model_path, stdout=None,
                 preexec_fn=lambda: os.close(1))
    assert proc.returncode == 74
    assert proc.stderr.decode() == ("digits-score: error: -: cannot write to stdout: it is "
                                    "closed; give -o FILE\n")


def test_with_stdout_closed_a_file_output_is_not_disturbed(here, model_path):
    proc = score("in.csv", "-o", "out.csv", "-v", model_path=model_path, stdout=None,
                 preexec_fn=lambda: os.close(1))
    assert proc.returncode == 0, proc.stderr
    assert len(Path("out.csv").read_text().splitlines()) == 21


def test_with_stdin_closed_reading_stdin_fails_cleanly(here, model_path):
    proc = score("-", "-o", "out.csv", model_path=model_path, stdin=None,
                 preexec_fn=lambda: os.close(0))
    assert proc.returncode in (errors.EXIT_NOINPUT, errors.EXIT_IOERR), proc.stderr
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("digits-score: error: ") and "stdin" in err
    assert not Path("out.csv").exists()


@pytest.mark.parametrize("sent", ["part of a row", "many rows"])
def test_ctrl_c_while_waiting_on_an_idle_stdin_ends_at_once(here, model_path, digits_rows,
                                                           sent):
    """Whether the reader waits for its first block or for the rest of a later one."""
    proc = subprocess.Popen([sys.executable, "-m", "digits_onnx.inference", "-", "-o",
                             "out.csv", "--model", str(model_path)], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    data = (Path("in.csv").read_bytes()[:200] if sent == "part of a row"
            else csv_text(np.tile(digits_rows, (15, 1))).encode())
    proc.stdin.write(data)  # then stdin stays open and idle
    proc.stdin.flush()
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        code = proc.wait(timeout=5)
    finally:
        proc.kill()
        proc.stdin.close()
    assert time.monotonic() - started < 1.5
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert (code, err) == (130, b"digits-score: error: interrupted\n")
    assert not Path("out.csv").exists()


# -- names and messages ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [b"caf\xe9.csv", b"new\nline.csv", b"esc\x1b[31mred.csv",
                                  "bidi\u202etxt.csv".encode()])
def test_odd_file_names_score_and_print_one_escaped_line(here, model_path, name):
    folder = os.fsencode(here / "odd\xff")
    os.mkdir(folder)
    src = os.path.join(folder, name)
    with open(src, "wb") as fh:
        fh.write(Path("in.csv").read_bytes())
    for fmt in ("csv", "parquet", "npy", "jsonl"):
        proc = score(os.fsdecode(folder), "--out-dir", os.fsdecode(folder), "--output-format",
                     fmt, "--force", model_path=model_path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("scored "), lines
        assert "\x1b" not in lines[0] and "\u202e" not in lines[0]
    broken = os.path.join(folder, b"bad\n" + name)
    with open(broken, "wb") as fh:
        fh.write(b"x\n")
    proc = score(os.fsdecode(broken), "-o", os.fsdecode(broken + b".out.csv"),
                 model_path=model_path)
    assert proc.returncode == 65
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and "bad\\n" in err


@pytest.mark.parametrize(("text", "shown"), [
    ("plain.csv", "plain.csv"), ("a\nb", "a\\nb"), ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ("a\rb", "a\\rb"), ("caf\udce9", "caf\\xe9"), ("x\u202ey", "x\\u202ey"),
    ("\x9b31m", "\\x9b31m"), ("tab\tbed", "tab\\tbed"), ("é ü 数字", "é ü 数字"),
])
def test_printable_escapes_what_a_terminal_would_act_on(text, shown):
    assert printable(text) == shown


# -- the last line of defence --------------------------------------------------------------------

def test_an_internal_error_is_one_line_and_exit_70(here, model_path, monkeypatch, capsys):
    from digits_onnx.inference import pipeline

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug\nwith two lines")

    monkeypatch.setattr(pipeline, "prediction_table", broken)
    code = main(["in.csv", "-o", "out.csv", "--model", str(model_path)])
    err = capsys.readouterr().err
    assert code == 70
    assert err == ("digits-score: error: in.csv: internal error: ZeroDivisionError: a bug "
                   "(--debug shows the traceback)\n")
    assert not Path("out.csv").exists()


def test_debug_shows_the_traceback(here, model_path, monkeypatch, capsys):
    from digits_onnx.inference import pipeline

    monkeypatch.setattr(pipeline, "prediction_table", lambda *a, **k: 1 / 0)
    code = main(["in.csv", "-o", "out.csv", "--debug", "--model", str(model_path)])
    err = capsys.readouterr().err
    assert code == 70
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_no_python_warning_reaches_stderr(here, model_path, monkeypatch, capsys):
    import warnings

    from digits_onnx.inference import pipeline

    original = pipeline.range_check

    def noisy(*args, **kwargs):
        warnings.warn("overflow encountered in cast", RuntimeWarning, stacklevel=1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "range_check", noisy)
    assert main(["in.csv", "-o", "out.csv", "-q", "--model", str(model_path)]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("flag", ["--id-column", "--label-column", "--keep-columns"])
def test_column_options_on_an_npy_input_are_refused_not_ignored(here, model_path, capsys,
                                                                digits_rows, flag):
    np.save("in.npy", digits_rows[:5])
    code = main(["in.npy", "-o", "out.csv", flag, "1", "--model", str(model_path)])
    assert code == 2
    assert capsys.readouterr().err == (
        "digits-score: error: in.npy: an NPY file holds only the 64 features; --id-column, "
        "--label-column and --keep-columns name columns of CSV or Parquet inputs\n")
    assert not Path("out.csv").exists()


def test_npy_to_stdout_streams_in_bounded_memory(here, model_path, tmp_path):
    """NPY output to stdout goes through a temporary file, not an in-memory buffer."""
    X = np.random.default_rng(0).integers(0, 17, size=(1_500_000, 64)).astype(np.uint8)
    np.save("big.npy", X)
    with open("out.npy", "wb") as stdout:
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "digits_onnx.inference",
             "big.npy", "--output-format", "npy", "--proba", "-q", "--model", str(model_path)],
            stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
    out = np.load("out.npy")
    assert len(out) == len(X) and out.dtype.names[:3] == ("row", "label", "confidence")
    # The output is 1.5M x 56 bytes = 84 MB; a whole-array buffer would add it to the peak.
    assert peak_mb < 300, peak_mb


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "npy"])
def test_a_header_only_csv_is_a_file_of_no_rows(here, model_path, capsys, fmt):
    """Nothing came in tonight: an empty output with its header, exit 0."""
    Path("empty.csv").write_text(Path("in.csv").read_text().splitlines()[0] + "\n")
    code = main(["empty.csv", "-o", f"out.{fmt}", "--model", str(model_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.startswith("scored empty.csv -> out.") and ": 0 rows, 0 rejected" in err
    if fmt == "csv":
        assert Path("out.csv").read_text() == "row,label,confidence\n"
    elif fmt == "npy":
        assert np.load("out.npy").shape == (0,)
    elif fmt == "jsonl":
        assert Path("out.jsonl").read_text() == ""
    else:
        import pyarrow.parquet as pq

        table = pq.read_table("out.parquet")
        assert table.num_rows == 0 and table.column_names == ["row", "label", "confidence"]


@pytest.mark.parametrize("shape", [(0, 64), (0, 8, 8)])
def test_an_npy_of_no_rows_is_a_file_of_no_rows(here, model_path, capsys, shape):
    np.save("empty.npy", np.zeros(shape, np.float32))
    assert main(["empty.npy", "-o", "out.csv", "--model", str(model_path)]) == 0
    assert Path("out.csv").read_text() == "row,label,confidence\n"


def test_a_directory_scan_says_with_v_what_it_left_out_and_why(here, model_path, capsys):
    os.makedirs("in/sub")
    for name in ("a.csv", ".hidden.csv", "a.pred.csv"):
        Path("in", name).write_text(Path("in.csv").read_text())
    Path("in/NOTES.md").write_text("notes about the data\n")
    Path("in/blob.bin").write_bytes(b"\x00\x01\x02 not data")
    code = main(["in", "--out-dir", "out", "-v", "--summary-json", "s.json", "--model",
                 str(model_path)])
    assert code == 0
    left = [line for line in capsys.readouterr().err.splitlines()
            if line.startswith("left out: ")]
    assert left == [
        "left out: in/.hidden.csv (hidden)",
        "left out: in/NOTES.md (not a format digits-score reads; see --input-format)",
        "left out: in/a.pred.csv (an output or reject report of digits-score)",
        "left out: in/blob.bin (not a format digits-score reads; see --input-format)",
        "left out: in/sub (a directory; --recursive descends into it)",
    ]
    summary = json.loads(Path("s.json").read_text())
    assert [f["input"] for f in summary["files"]] == ["in/a.csv"]
    assert len(summary["left_out"]) == 5


def _shown(line: str) -> str:
    """A line as reject reports quote it: its first 200 characters."""
    return line[:200] + "..." if len(line) > 200 else line


def _overflowing_csv(path: Path, digits_rows: np.ndarray) -> None:
    """Rows 0..5 of the digits; the bundled model overflows on row 2."""
    lines = ["name," + ",".join(f"f{k}" for k in range(64))]
    for i, row in enumerate(digits_rows[:6]):
        cells = [f"{v:g}" for v in row]
        if i == 2:  # 17 comes first, but 3e38 is what overflows
            cells = ["17", "3e38", *["-3e38"] * 62]
        lines.append(",".join([f"n{i}", *cells]))
    path.write_text("\n".join(lines) + "\n")


def test_rows_the_model_overflows_on_are_rejects_not_a_failed_file(here, digits_rows):
    """Values so far outside 0..16 that the probabilities are not numbers: the row is bad
    input, as an unparsable one is. Skipped into the report, the others scored."""
    _overflowing_csv(Path("x.csv"), digits_rows)
    assert main(["x.csv", "-o", "out.jsonl", "--on-error", "skip", "--keep-columns", "name",
                 "-q", "--summary-json", "s.json"]) == 0
    rows = [json.loads(line) for line in Path("out.jsonl").read_text().splitlines()]
    assert [(r["row"], r["name"]) for r in rows] == [(0, "n0"), (1, "n1"), (3, "n3"),
                                                     (4, "n4"), (5, "n5")]
    report = Path("out.rejects.csv").read_text().splitlines()
    text = _shown(Path("x.csv").read_text().splitlines()[3])
    assert report[1] == ("2,4,3,f1,value 3e+38 is so far outside the training range 0..16 "
                         f"that the model's probabilities overflow,\"{text}\"")
    (summary,) = json.loads(Path("s.json").read_text())["files"]
    assert (summary["rows"], summary["scored"], summary["rejected"]) == (6, 5, 1)


@pytest.mark.parametrize("layout", ["csv", "crlf", "blank lines", "tsv", "csv.gz",
                                    "beside a bad line", "strict"])
def test_a_row_rejected_for_its_values_range_quotes_its_line_as_other_rejects_do(
        here, digits_rows, layout):
    """Rejects for a value the model overflows on (or, under --strict, any value outside
    0..16) had an empty text column; every other reject quotes its line as read."""
    import csv
    import gzip

    _overflowing_csv(Path("x.csv"), digits_rows)
    lines = Path("x.csv").read_text().splitlines()
    if layout == "beside a bad line":  # its block goes the slow way, diagnosed in bulk
        lines[5] = ",".join([*lines[5].split(",")[:3], "oops", *lines[5].split(",")[4:]])
    if layout == "blank lines":
        lines[2:2] = ["", "", ""]
    end, name = "\n", "x.csv"
    if layout == "tsv":
        name = "x.tsv"
        lines = [line.replace(",", "\t") for line in lines]
    if layout == "crlf":
        end = "\r\n"
    data = (end.join(lines) + end).encode()
    if layout == "csv.gz":
        name = "x.csv.gz"
        data = gzip.compress(data, mtime=0)
    Path("x.csv").unlink()
    Path(name).write_bytes(data)
    args = ["--strict"] if layout == "strict" else []
    assert main([name, "-o", "out.csv", "--on-error", "skip", "--keep-columns", "name", "-q",
                 *args]) == 0
    with open("out.rejects.csv", newline="", encoding="utf-8") as fh:
        report = {int(r["line"]): r for r in csv.DictReader(fh)}
    overflowed = lines.index(next(line for line in lines if "3e38" in line)) + 1
    assert report[overflowed]["text"] == _shown(lines[overflowed - 1])
    assert all(r["text"] == _shown(lines[line - 1]) for line, r in report.items())
    assert len(report) == {"beside a bad line": 2, "strict": 1}.get(layout, 1)


def test_a_row_the_model_overflows_on_fails_its_file_by_line_and_column(here, capsys,
                                                                        digits_rows):
    _overflowing_csv(Path("x.csv"), digits_rows)
    assert main(["x.csv", "-o", "out.csv", "--keep-columns", "name", "-q"]) == 65
    assert capsys.readouterr().err == (
        "digits-score: error: x.csv: line 4, column 3 (f1): value 3e+38 is so far outside the "
        "training range 0..16 that the model's probabilities overflow\n")
    assert not Path("out.csv").exists()


def test_probabilities_that_are_not_numbers_on_rows_in_range_are_the_models_fault(
        digits_rows):
    """Only input far out of range excuses the model; otherwise the file fails as a model
    error, as every other broken answer does."""
    from digits_onnx.inference.errors import NonFiniteOutputError
    from digits_onnx.inference.pipeline import run_model
    from digits_onnx.inference.readers import Batch

    class Broken:
        def run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            error = NonFiniteOutputError("model.onnx: not numbers")
            error.rows, error.labels = np.array([1]), np.zeros(len(X), np.int64)
            error.proba = np.full((len(X), 10), np.nan, np.float32)
            raise error

    X = digits_rows[:3].astype(np.float32)
    batch = Batch(X=X, rows=np.arange(3), n_rows=3)
    with pytest.raises(NonFiniteOutputError, match="not numbers"):
        run_model(Broken(), batch)  # type: ignore[arg-type]
    assert len(batch.X) == 3 and not batch.rejects
