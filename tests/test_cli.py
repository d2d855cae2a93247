"""digits-score end to end through ``main(argv)``: outputs, exit codes, messages, reruns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from digits_onnx.inference import Model, ReadOptions, ScoreOptions, score_file
from digits_onnx.inference.cli import main
from digits_onnx.inference.fsio import output_lock

HEADER = ",".join(f"pixel_{i // 8}_{i % 8}" for i in range(64))


def csv_text(X: np.ndarray, *, ids: bool = False, labels: np.ndarray | None = None) -> str:
    head = (["id"] if ids else []) + [HEADER] + (["label"] if labels is not None else [])
    lines = [",".join(head)]
    for i, row in enumerate(X):
        cells = ([f"s{i}"] if ids else []) + [f"{v:g}" for v in row]
        if labels is not None:
            cells.append(str(labels[i]))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@pytest.fixture
def sample(tmp_path, digits_rows, model) -> Path:
    path = tmp_path / "in" / "sample.csv"
    path.parent.mkdir()
    labels = model.predict(digits_rows)
    labels[:10] = (labels[:10] + 1) % 10  # 10 wrong of 200: accuracy 0.95
    path.write_text(csv_text(digits_rows, ids=True, labels=labels))
    return path


def read_csv(path: Path) -> dict:
    return pacsv.read_csv(path).to_pydict()


def test_scores_a_labelled_file_with_ids(run, sample, tmp_path, model, digits_rows):
    out = tmp_path / "out.csv"
    code, _, err = run(sample, "--id-column", "id", "--label-column", "label", "-o", out)
    assert code == 0
    assert err == [f"scored {sample} -> {out}: 200 rows, 0 rejected, 0 out of range, "
                   + err[0].split("out of range, ")[1]]
    assert err[0].endswith("accuracy 0.9500 (190/200)")
    table = read_csv(out)
    assert list(table) == ["id", "label", "confidence"]
    assert table["id"] == [f"s{i}" for i in range(200)]
    assert table["label"] == model.predict(digits_rows).tolist()
    np.testing.assert_allclose(table["confidence"], model.predict_proba(digits_rows).max(axis=1),
                               atol=1e-6)


def test_default_output_is_stdout_with_row_numbers(run, tmp_path, digits_rows, model):
    path = tmp_path / "plain.csv"
    path.write_text(csv_text(digits_rows[:5]))
    code, out, _ = run(path, "--proba")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "row,label,confidence," + ",".join(f"p{k}" for k in range(10))
    assert [ln.split(",")[0] for ln in lines[1:]] == ["0", "1", "2", "3", "4"]
    proba = np.array([[float(v) for v in ln.split(",")[3:]] for ln in lines[1:]])
    np.testing.assert_allclose(proba, model.predict_proba(digits_rows[:5]), atol=1e-7)


@pytest.mark.parametrize("fmt", ["csv", "npy", "parquet", "jsonl"])
def test_every_output_format_holds_the_same_predictions(run, tmp_path, digits_rows, model, fmt):
    src = tmp_path / "x.npy"
    np.save(src, digits_rows)
    out = tmp_path / f"out.{fmt}"
    assert run(src, "-o", out, "--proba")[0] == 0
    if fmt == "csv":
        got = read_csv(out)
    elif fmt == "npy":
        arr = np.load(out)
        got = {name: arr[name].tolist() for name in arr.dtype.names}
    elif fmt == "parquet":
        got = pq.read_table(out).to_pydict()
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        got = {k: [r[k] for r in rows] for k in rows[0]}
    assert got["row"] == list(range(200))
    assert got["label"] == model.predict(digits_rows).tolist()
    proba = np.column_stack([got[f"p{k}"] for k in range(10)])
    np.testing.assert_allclose(proba, model.predict_proba(digits_rows), atol=1e-7)


def test_out_dir_names_outputs_after_inputs(run, tmp_path, digits_rows):
    inputs = tmp_path / "batch"
    inputs.mkdir()
    np.save(inputs / "a.npy", digits_rows[:10])
    (inputs / "b.csv").write_text(csv_text(digits_rows[10:30]))
    (inputs / "c.tsv").write_text(csv_text(digits_rows[30:33]).replace(",", "\t"))
    (inputs / "notes.md").write_text("not an input")
    out = tmp_path / "preds"
    out.mkdir()
    code, _, err = run(inputs, "--out-dir", out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a.pred.csv", "b.pred.csv", "c.pred.csv"]
    assert err[-1].startswith("total: 3 files (0 failed, 0 up to date), 33 rows, 0 rejected")


def test_glob_inputs(run, tmp_path, digits_rows):
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", digits_rows[:3])
    out = tmp_path / "o"
    out.mkdir()
    assert run(str(tmp_path / "*.npy"), "--out-dir", out)[0] == 0
    assert (out / "a.pred.csv").exists() and (out / "b.pred.csv").exists()


def test_stdin_to_stdout(model_path, digits_rows, model):
    proc = subprocess.run(
        [sys.executable, "-m", "digits_onnx.inference", "-", "--model", str(model_path), "-q"],
        input=csv_text(digits_rows[:4]).encode(), capture_output=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    labels = [int(line.split(b",")[1]) for line in proc.stdout.splitlines()[1:]]
    assert labels == model.predict(digits_rows[:4]).tolist()


def test_python_m_help_lists_the_exit_codes():
    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "--help"],
                          capture_output=True, text=True, check=True)
    for code in ("0", "1", "2", "65", "66", "73", "74", "75"):
        assert f"\n  {code:<3} " in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing.csv", "-o", "x.csv"], 66, "digits-score: error: missing.csv: no such file"),
        (["nothing*.csv", "--out-dir", "."], 66,
         "digits-score: error: nothing*.csv: the pattern matches no file"),
        (["bad.csv", "-o", "x.csv"], 65, "digits-score: error: bad.csv: line 3, column 2 "
         "(pixel_0_1): 'oops' is not a number"),
        (["good.csv", "-o", "no/such/dir/x.csv"], 73,
         "digits-score: error: no/such/dir: the output directory does not exist"),
        (["good.csv", "good.csv"], 2,
         "digits-score: error: 2 inputs need --out-dir DIR (-o takes one input)"),
        (["good.csv", "-o", "good.csv"], 73,
         "digits-score: error: good.csv: the output would overwrite its own input"),
        (["ids.csv", "-o", "x.npy", "--id-column", "id"], 65,
         "digits-score: error: ids.csv: line 2, column 1 (id): id 's0' is not a whole number: "
         "NPY output holds ids as 64-bit integers only; write csv, parquet or jsonl, or drop "
         "--id-column"),
    ],
)
def test_errors_have_one_line_and_a_documented_code(run, tmp_path, monkeypatch, digits_rows,
                                                    args, code, message):
    monkeypatch.chdir(tmp_path)
    Path("good.csv").write_text(csv_text(digits_rows[:3]))
    Path("good.weird").write_text(csv_text(digits_rows[:3]))
    Path("ids.csv").write_text(csv_text(digits_rows[:3], ids=True))
    lines = csv_text(digits_rows[:3]).splitlines()
    cells = lines[2].split(",")
    cells[1] = "oops"
    lines[2] = ",".join(cells)
    Path("bad.csv").write_text("\n".join(lines) + "\n")
    got, _, err = run(*args)
    assert (got, err) == (code, [message])
    assert not Path("x.csv").exists() and not Path("x.npy").exists()


@pytest.mark.parametrize(
    "args",
    [["--recipe", "x", "a.csv"], ["--on-error", "maybe", "a.csv"], ["--threads", "0", "a.csv"],
     ["a.csv", "-o", "x", "--out-dir", "y"], ["-q", "-v", "a.csv"], []],
)
def test_usage_errors_exit_2_with_one_line(capsys, args):
    """Whether argparse (syntax) or the library (values and combinations) finds the error."""
    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("digits-score: error: ")
    assert "Traceback" not in "\n".join(err)


NPY_IDS = ("NPY output holds ids as 64-bit integers only; write csv, parquet or jsonl, or "
           "drop --id-column")


def _ids_csv(path: Path, X: np.ndarray, ids: list[str]) -> None:
    lines = ["id," + HEADER] + [f"{i}," + ",".join(f"{v:g}" for v in row)
                                for i, row in zip(ids, X, strict=True)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("bad", "problem"), [
    ("9223372036854775808", "id '9223372036854775808' is beyond int64 "
     "(-9223372036854775808..9223372036854775807)"),
    ("-9223372036854775809", "id '-9223372036854775809' is beyond int64 "
     "(-9223372036854775808..9223372036854775807)"),
    ("99999999999999999999999999", "id '99999999999999999999999999' is beyond int64 "
     "(-9223372036854775808..9223372036854775807)"),
    ("", "empty id"),
    ("seven", "id 'seven' is not a whole number"),
    ("1.5", "id '1.5' is not a whole number"),
    ("3.0", "id '3.0' is not a whole number"),
    ("1e3", "id '1e3' is not a whole number"),
    ("+1", "id '+1' is not a whole number"),
    (" 12", "id ' 12' is not a whole number"),
    ("1_000", "id '1_000' is not a whole number"),
])
def test_an_id_npy_output_cannot_hold_fails_the_file_by_line_and_column(
        run, tmp_path, digits_rows, bad, problem):
    """Whatever the id, a user's data: exit 65 naming file, line and column, never an
    internal error (exit 70); nothing is written."""
    src, out = tmp_path / "x.csv", tmp_path / "out.npy"
    ids = [str(10 + i) for i in range(6)]
    ids[3] = bad
    _ids_csv(src, digits_rows[:6], ids)
    code, _, err = run(src, "--id-column", "id", "-o", out)
    assert (code, err) == (65, [f"digits-score: error: {src}: line 5, column 1 (id): "
                                f"{problem}: {NPY_IDS}"])
    assert not out.exists()
    for fmt in ("csv", "jsonl", "parquet"):  # text outputs carry any id as written
        assert run(src, "--id-column", "id", "-o", tmp_path / f"out.{fmt}")[0] == 0


def test_an_id_without_a_header_or_a_line_is_named_by_column_or_row(run, tmp_path,
                                                                     digits_rows):
    """A headerless CSV's id column has no name; a Parquet file has rows, not lines."""
    src = tmp_path / "x.csv"
    _ids_csv(src, digits_rows[:4], ["1", "2", "x", "4"])
    src.write_text(src.read_text().split("\n", 1)[1])
    code, _, err = run(src, "--id-column", "1", "--no-header", "-o", tmp_path / "o.npy")
    assert (code, err) == (65, [f"digits-score: error: {src}: line 3, column 1: id 'x' is not "
                                f"a whole number: {NPY_IDS}"])
    for ids, problem in (
            (pa.array([1, 2, None, 4], pa.int64()), "empty id"),
            (pa.array([1, 2, 2**64 - 1, 4], pa.uint64()),
             "id '18446744073709551615' is beyond int64 "
             "(-9223372036854775808..9223372036854775807)"),
            (pa.array([1.0, 2.0, 2.5, 4.0]), "id '2.5' is not a whole number")):
        table = pa.table({f"f{k}": digits_rows[:4, k] for k in range(64)} | {"key": ids})
        pq.write_table(table, tmp_path / "x.parquet")
        code, _, err = run(tmp_path / "x.parquet", "--id-column", "key", "-o",
                           tmp_path / "o.npy")
        assert (code, err) == (65, [f"digits-score: error: {tmp_path / 'x.parquet'}: row 2, "
                                    f"column 65 (key): {problem}: {NPY_IDS}"])


@pytest.mark.parametrize(("args", "bad_ids", "bad_values", "expected"), [
    # The id on line 3 comes before the value on line 4: the id is the file's first problem.
    ([], {3: "x"}, {4: "oops"}, "line 3, column 1 (id): id 'x' is not a whole number"),
    (["--strict"], {3: "x"}, {4: "17"}, "line 3, column 1 (id): id 'x' is not a whole number"),
    # A rejected row writes no id: line 3's is never checked, line 5's is.
    (["--on-error", "skip"], {3: "x", 5: "y"}, {3: "oops"},
     "line 5, column 1 (id): id 'y' is not a whole number"),
    (["--on-error", "skip", "--strict"], {3: "x", 4: "y"}, {3: "17"},
     "line 4, column 1 (id): id 'y' is not a whole number"),
])
def test_the_first_problem_of_a_file_is_the_one_reported(run, tmp_path, digits_rows, args,
                                                         bad_ids, bad_values, expected):
    src, out = tmp_path / "x.csv", tmp_path / "out.npy"
    _ids_csv(src, digits_rows[:5], ["1", "2", "3", "4", "5"])
    lines = src.read_text().splitlines()
    for line, value in bad_values.items():
        cells = lines[line - 1].split(",")
        cells[2] = value
        lines[line - 1] = ",".join(cells)
    for line, value in bad_ids.items():
        lines[line - 1] = value + lines[line - 1][1:]
    src.write_text("\n".join(lines) + "\n")
    code, _, err = run(src, "--id-column", "id", "-o", out, *args)
    assert (code, err) == (65, [f"digits-score: error: {src}: {expected}: {NPY_IDS}"])
    cells = lines[1].split(",")  # a bad value before them all: it fails the file first,
    cells[2] = "oops"  # unless it is skipped
    lines[1] = ",".join(cells)
    src.write_text("\n".join(lines) + "\n")
    code, _, err = run(src, "--id-column", "id", "-o", out, *args)
    first = (f"{expected}: {NPY_IDS}" if "skip" in args
             else "line 2, column 3 (pixel_0_1): 'oops' is not a number")
    assert (code, err) == (65, [f"digits-score: error: {src}: {first}"])


def test_a_bad_row_fails_its_file_and_leaves_no_output(run, tmp_path, digits_rows):
    src = tmp_path / "x.csv"
    text = csv_text(digits_rows[:50]).splitlines()
    text[30] = text[30] + ",1"
    src.write_text("\n".join(text) + "\n")
    out = tmp_path / "out.csv"
    code, _, err = run(src, "-o", out)
    assert code == 65
    assert err == [f"digits-score: error: {src}: line 31: expected 64 columns, found 65"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".digits-score", "x.csv"]


def test_skip_writes_good_rows_and_a_reject_report(run, tmp_path, digits_rows, model):
    src = tmp_path / "x.csv"
    lines = csv_text(digits_rows[:50]).splitlines()
    lines[5] = lines[5].replace("16", "sixteen", 1) if "16" in lines[5] else "x" + lines[5]
    lines[20] = ",".join(lines[20].split(",")[:10])
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    code, _, err = run(src, "-o", out, "--on-error", "skip")
    assert code == 0
    assert "50 rows, 2 rejected" in err[0]
    assert err[1] == f"  2 rejected rows written to {tmp_path / 'out.rejects.csv'}"
    table = read_csv(out)
    kept = [i for i in range(50) if i not in (4, 19)]
    assert table["row"] == kept
    assert table["label"] == model.predict(digits_rows[kept]).tolist()
    rejects = read_csv(tmp_path / "out.rejects.csv")
    assert rejects["row"] == [4, 19]
    assert rejects["line"] == [6, 21]
    assert rejects["reason"][1] == "expected 64 columns, found 10"
    assert rejects["text"][1] == lines[20]


@pytest.mark.parametrize("bad", ["-1", "10", "42"])
def test_a_true_label_outside_0_to_9_is_a_bad_row(run, tmp_path, digits_rows, model, bad):
    """No digit is -1 or 10: counted, such a label would be the model's mistake."""
    src, out = tmp_path / "x.csv", tmp_path / "out.csv"
    labels = model.predict(digits_rows[:20]).astype(str).astype(object)
    labels[7] = bad
    src.write_text(csv_text(digits_rows[:20], labels=labels))
    code, _, err = run(src, "--label-column", "label", "-o", out)
    assert (code, err) == (65, [f"digits-score: error: {src}: line 9, column 65 (label): "
                                f"label {bad} is outside 0..9"])
    code, _, err = run(src, "--label-column", "label", "-o", out, "--on-error", "skip")
    assert code == 0 and err[0].endswith("accuracy 1.0000 (19/19)")
    rejects = read_csv(tmp_path / "out.rejects.csv")
    assert (rejects["row"], rejects["line"], rejects["column"]) == ([7], [9], [65])
    assert rejects["reason"] == [f"label {bad} is outside 0..9"]
    assert rejects["text"] == [src.read_text().splitlines()[8]]


def test_out_of_range_values_warn_and_strict_makes_them_errors(run, tmp_path, digits_rows):
    X = digits_rows[:20].copy()
    X[3, 7] = 17
    X[9, 0] = -1
    src = tmp_path / "x.csv"
    src.write_text(csv_text(X))
    out = tmp_path / "out.csv"
    code, _, err = run(src, "-o", out)
    assert code == 0
    assert err[0] == (f"digits-score: warning: {src}: 2 rows have values outside the training "
                      "range 0..16")
    assert "2 out of range" in err[1]
    out.unlink()
    code, _, err = run(src, "-o", out, "--strict")
    assert (code, err) == (65, [f"digits-score: error: {src}: line 5, column 8 (pixel_0_7): "
                                "value 17 is outside the training range 0..16 (--strict)"])
    assert not out.exists()
    code, _, err = run(src, "-o", out, "--strict", "--on-error", "skip")
    assert code == 0
    assert read_csv(out)["row"] == [i for i in range(20) if i not in (3, 9)]


def test_one_bad_file_among_many_exits_1_and_the_others_are_scored(run, tmp_path, digits_rows):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "c"):
        (inputs / f"{name}.csv").write_text(csv_text(digits_rows[:5]))
    (inputs / "b.csv").write_text(csv_text(digits_rows[:5]) + "1,2,3\n")
    out = tmp_path / "out"
    out.mkdir()
    summary = tmp_path / "summary.json"
    code, _, err = run(inputs, "--out-dir", out, "--summary-json", summary)
    assert code == 1
    assert err[1] == (f"digits-score: error: {inputs / 'b.csv'}: line 7: expected 64 columns, "
                      "found 3")
    assert (out / "a.pred.csv").exists() and (out / "c.pred.csv").exists()
    assert not (out / "b.pred.csv").exists()
    report = json.loads(summary.read_text())
    assert report["exit_code"] == 1
    assert report["totals"]["failed"] == 1 and report["totals"]["rows"] == 10
    assert [f["status"] for f in report["files"]] == ["scored", "failed", "scored"]


def test_rerun_skips_up_to_date_outputs_and_force_rescores(run, tmp_path, sample):
    out = tmp_path / "out.csv"
    cols = ("--id-column", "id", "--label-column", "label")
    assert run(sample, "-o", out, *cols)[0] == 0
    first = out.stat().st_mtime_ns
    code, _, err = run(sample, "-o", out, *cols)
    assert code == 0 and err == [f"up to date: {sample} -> {out} (--force rescores)"]
    assert out.stat().st_mtime_ns == first
    os.utime(sample)  # touched, same bytes: still up to date (the hash decides)
    assert run(sample, "-o", out, *cols)[2][0].startswith("up to date")
    code, _, err = run(sample, "-o", out, *cols, "--proba")  # other options: rescored
    assert err[0].startswith("scored")
    with sample.open("a") as fh:
        fh.write(sample.read_text().splitlines()[1] + "\n")
    assert run(sample, "-o", out, *cols, "--proba")[2][0].startswith("scored 201 rows"[:6])
    assert "201 rows" in run(sample, "-o", out, *cols, "--proba", "--force")[2][0]


def test_a_locked_output_directory_exits_75_and_touches_nothing(run, tmp_path, sample):
    out = tmp_path / "out.csv"
    with output_lock(tmp_path):
        code, _, err = run(sample, "-o", out)
    assert code == 75
    assert err == [f"digits-score: error: {tmp_path}: another digits-score run is writing "
                   "here; try again when it ends"]
    assert not out.exists()


def test_quiet_prints_nothing_on_success(run, tmp_path, sample):
    out = tmp_path / "o.csv"
    assert run(sample, "-o", out, "-q", "--id-column", "id", "--label-column", "label")[1:] == (
        "", [])
    assert out.exists()


def test_verbose_prints_the_confusion_matrix(run, tmp_path, sample):
    err = run(sample, "-o", tmp_path / "o.csv", "-v", "--label-column", "label",
              "--id-column", "id")[2]
    assert err[1] == "  confusion (rows: true label, columns: predicted):"
    assert len(err) == 12


def test_score_file_api_returns_the_same_summary(tmp_path, sample, model):
    summary = score_file(str(sample), tmp_path / "o.parquet", model=model,
                         options=ScoreOptions(
                             read=ReadOptions(label_column="label", id_column="id")))
    assert (summary.rows, summary.scored, summary.rejected) == (200, 200, 0)
    assert summary.accuracy == 0.95
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 200


def test_check_passes_on_a_matching_reference_and_fails_on_drift(tmp_path, model, digits_rows,
                                                                 model_path, capsys):
    ref = tmp_path / "ref.npz"
    proba = model.predict_proba(digits_rows).astype(np.float64)
    np.savez(ref, X=digits_rows, y=model.predict(digits_rows), labels=model.predict(digits_rows),
             probabilities=proba)
    assert main(["check", "--model", str(model_path), "--reference", str(ref)]) == 0
    assert "result                  ok" in capsys.readouterr().out
    np.savez(ref, X=digits_rows, y=model.predict(digits_rows), labels=model.predict(digits_rows),
             probabilities=proba + 2e-5)
    assert main(["check", "--model", str(model_path), "--reference", str(ref)]) == 1
    assert "DRIFT" in capsys.readouterr().out


def test_model_hash_mismatch_exits_65(tmp_path, sample, capsys, model_path):
    code = main([str(sample), "--model", str(model_path), "--model-sha256", "ab" * 32])
    assert code == 65
    assert "does not match the expected abababababab..." in capsys.readouterr().err
    assert isinstance(Model.load(model_path, sha256="ab" * 32, verify_hash=False), Model)
