"""--keep-columns: input columns carried into the output, aligned with their rows, under one
naming rule (never two fields of one name)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from digits_onnx.inference import ReadOptions, ScoreOptions, UsageError, score_files
from digits_onnx.inference.cli import main

FEATURES = [f"f{k}" for k in range(64)]


def _csv(path: Path, X: np.ndarray, *, names: list[str] | None = None,
         extra: dict[str, list[str]] | None = None, header: bool = True) -> None:
    """A CSV of the rows ``X``, with ``extra`` columns (name -> cells) before the features."""
    extra = extra or {}
    lines = [",".join([*extra, *(names or FEATURES)])] if header else []
    for i, row in enumerate(X):
        lines.append(",".join([*(cells[i] for cells in extra.values()),
                               *(f"{v:g}" for v in row)]))
    path.write_text("\n".join(lines) + "\n")


def _score(model_path: Path, *args: object) -> int:
    return main([*map(str, args), "--model", str(model_path), "-q"])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_named_columns_are_carried_and_are_not_features(here, model_path, model, digits_rows):
    """A file with context columns besides its 64 features scores, and each row keeps its
    own context, in the order the columns were given."""
    X = digits_rows[:6]
    extra = {"file": [f"img {i}.png" for i in range(6)], "taken": [f"2026-11-{i + 1:02d}"
                                                                 for i in range(6)]}
    _csv(here / "ctx.csv", X, extra=extra)
    assert _score(model_path, "ctx.csv", "--keep-columns", "taken,file", "-o", "out.jsonl") == 0
    rows = _jsonl(here / "out.jsonl")
    assert [list(r) for r in rows] == [["row", "taken", "file", "label", "confidence"]] * 6
    assert [r["file"] for r in rows] == extra["file"]
    assert [r["taken"] for r in rows] == extra["taken"]
    assert [r["label"] for r in rows] == model.predict(X).tolist()


def test_without_keep_columns_a_context_column_is_still_an_error(here, model_path, capsys,
                                                                 digits_rows):
    _csv(here / "ctx.csv", digits_rows[:3], extra={"file": ["a", "b", "c"]})
    assert _score(model_path, "ctx.csv", "-o", "out.csv") == 65
    assert "name the extra columns with --id-column, --label-column or --keep-columns" in \
        capsys.readouterr().err


def test_all_carries_every_column_in_the_inputs_order(here, model_path, digits_rows):
    X = digits_rows[:4]
    labels = [str(v) for v in range(4)]
    text = ["id," + ",".join(FEATURES) + ",label"]
    text += [f"s{i}," + ",".join(f"{v:g}" for v in X[i]) + f",{labels[i]}" for i in range(4)]
    (here / "in.csv").write_text("\n".join(text) + "\n")
    assert _score(model_path, "in.csv", "--id-column", "id", "--label-column", "label",
                  "--keep-columns", "all", "-o", "out.csv") == 0
    lines = (here / "out.csv").read_text().splitlines()
    assert lines[0].split(",") == ["id", *FEATURES, "input_label", "label", "confidence"]
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        assert cells[0] == f'"s{i}"'
        assert cells[1:65] == [f"{v:g}" for v in X[i]]  # the features as read
        assert cells[65] == labels[i]


def test_the_label_clash_is_settled_by_one_rule_in_every_format(here, model_path,
                                                                digits_rows):
    """The truth column called ``label`` beside the predicted ``label``: the input's becomes
    ``input_label``; the scorer's keeps its name. Checked where duplicates would bite."""
    X = digits_rows[:5]
    _csv(here / "in.csv", X, extra={"label": ["1", "2", "3", "4", "5"],
                                    "confidence": ["hi"] * 5})
    for fmt in ("csv", "tsv", "jsonl", "parquet"):
        out = here / f"out.{fmt}"
        assert _score(model_path, "in.csv", "--label-column", "label", "--keep-columns",
                      "label,confidence", "--proba", "-o", out) == 0
        if fmt == "parquet":
            names = pq.read_table(out).column_names
        elif fmt == "jsonl":
            names = list(_jsonl(out)[0])
        else:
            names = out.read_text().splitlines()[0].split("," if fmt == "csv" else "\t")
        assert names == ["row", "input_label", "input_confidence", "label", "confidence",
                         *(f"p{k}" for k in range(10))], fmt
        assert len(set(names)) == len(names)


def test_an_input_column_named_row_is_renamed_when_the_key_is_the_row_number(
        here, model_path, digits_rows):
    _csv(here / "in.csv", digits_rows[:3], extra={"row": ["7", "8", "9"]})
    assert _score(model_path, "in.csv", "--keep-columns", "row", "-o", "out.jsonl") == 0
    rows = _jsonl(here / "out.jsonl")
    assert [(r["row"], r["input_row"]) for r in rows] == [(0, "7"), (1, "8"), (2, "9")]


def test_two_input_columns_that_would_share_a_name_are_refused(here, model_path, capsys,
                                                              digits_rows):
    _csv(here / "in.csv", digits_rows[:3], extra={"label": ["1", "2", "3"],
                                                  "input_label": ["x", "y", "z"]})
    assert _score(model_path, "in.csv", "--keep-columns", "label,input_label",
                  "-o", "out.csv") == 2
    err = capsys.readouterr().err
    assert "two output columns would be named 'input_label'" in err
    assert not (here / "out.csv").exists()


def test_a_headerless_csv_names_its_kept_columns_by_number(here, model_path, digits_rows):
    X = digits_rows[:3]
    _csv(here / "in.csv", X, extra={"name": ["a", "b", "c"]}, header=False)
    assert _score(model_path, "in.csv", "--no-header", "--keep-columns", "1",
                  "-o", "out.jsonl") == 0
    assert [r["column_1"] for r in _jsonl(here / "out.jsonl")] == ["a", "b", "c"]
    _csv(here / "plain.csv", X, header=False)
    assert _score(model_path, "plain.csv", "--keep-columns", "all", "-o", "all.csv") == 0
    head = (here / "all.csv").read_text().splitlines()[0].split(",")
    assert head == ["row", *(f"column_{k}" for k in range(1, 65)), "label", "confidence"]


@pytest.mark.parametrize(("spec", "message"), [
    ("nope", "in.csv: --keep-columns 'nope' is not a column"),
    ("file,file", "--keep-columns: file is named twice"),
    ("file,1", "--keep-columns: 1 is column 1, named already"),
    ("all,file", "--keep-columns: all stands alone"),
    ("file,,f1", "--keep-columns: name at least one column"),
    ("0", "--keep-columns 0: columns are numbered from 1"),
    ("99", "--keep-columns 99 is out of range: the file has 65 columns"),
])
def test_bad_column_lists_are_usage_errors(here, model_path, capsys, digits_rows, spec,
                                           message):
    _csv(here / "in.csv", digits_rows[:3], extra={"file": ["a", "b", "c"]})
    assert _score(model_path, "in.csv", "--keep-columns", spec, "-o", "out.csv") == 2
    assert message in capsys.readouterr().err
    assert not (here / "out.csv").exists()


@pytest.mark.parametrize("out", ["out.npy", "-"])
def test_npy_output_cannot_carry_columns(here, model_path, capsys, digits_rows, out):
    _csv(here / "in.csv", digits_rows[:3], extra={"file": ["a", "b", "c"]})
    args = ["in.csv", "--keep-columns", "file", "-o", out]
    if out == "-":
        args += ["--output-format", "npy"]
    assert _score(model_path, *args) == 2
    assert "NPY output holds the predictions only; --keep-columns needs" in \
        capsys.readouterr().err


def test_the_library_refuses_npy_output_with_kept_columns():
    with pytest.raises(UsageError, match="NPY output holds the predictions only"):
        ScoreOptions(read=ReadOptions(keep_columns=["a"]), output_format="npy")


@pytest.mark.parametrize("bad_line", [
    "x",            # a word: the block's slow path
    "nan",          # parses, then fails the finiteness check
    "99",           # out of range: rejected under --strict after parsing
])
@pytest.mark.parametrize("chunk", [None, "1"])
def test_kept_cells_stay_with_their_rows_when_others_are_rejected(here, model, digits_rows,
                                                                   bad_line, chunk):
    """Every way a row leaves a batch (the slow path, a bad value, --strict) drops its kept
    cells with it: what remains lines up, row for row, with what a clean file gives."""
    n = 40
    X = digits_rows[:n]
    names = [f"n{i}" for i in range(n)]
    lines = ["name," + ",".join(FEATURES)]
    bad = {3, 17, 18, 39}
    for i in range(n):
        cells = [f"{v:g}" for v in X[i]]
        if i in bad:
            cells[5] = bad_line
        lines.append(",".join([names[i], *cells]))
    (here / "in.csv").write_text("\n".join(lines) + "\n")
    read = ReadOptions(keep_columns=["name"], chunk_bytes=1 << 20 if chunk is None else 2048)
    summary = score_files(["in.csv"], output="out.jsonl", model=model, options=ScoreOptions(
        read=read, on_error="skip", strict=True))
    assert summary.files[0].rejected == len(bad)
    rows = _jsonl(here / "out.jsonl")
    good = [i for i in range(n) if i not in bad]
    assert [r["name"] for r in rows] == [names[i] for i in good]
    assert [r["row"] for r in rows] == good
    assert [r["label"] for r in rows] == model.predict(X[good]).tolist()


def test_a_header_only_file_gets_the_kept_columns_in_its_header(here, model_path):
    (here / "in.csv").write_text("file," + ",".join(FEATURES) + "\n")
    assert _score(model_path, "in.csv", "--keep-columns", "file", "-o", "out.csv") == 0
    assert (here / "out.csv").read_text() == "row,file,label,confidence\n"


def test_changing_the_kept_columns_makes_the_output_stale(here, model_path, digits_rows):
    _csv(here / "in.csv", digits_rows[:3], extra={"a": ["1", "2", "3"], "b": ["x", "y", "z"]})
    args = ["in.csv", "--out-dir", "out", "--summary-json", "s.json"]
    assert _score(model_path, *args, "--keep-columns", "a,b") == 0
    assert _score(model_path, *args, "--keep-columns", "a,b") == 0
    assert json.loads((here / "s.json").read_text())["files"][0]["status"] == "skipped"
    assert _score(model_path, *args, "--keep-columns", "b,a") == 0
    assert json.loads((here / "s.json").read_text())["files"][0]["status"] == "scored"
    assert (here / "out" / "in.pred.csv").read_text().splitlines()[0] == \
        "row,b,a,label,confidence"


def _parquet(path: Path, X: np.ndarray, **extra: pa.Array) -> None:
    columns = {name: pa.array(X[:, k].astype(np.uint8)) for k, name in enumerate(FEATURES)}
    pq.write_table(pa.table({**extra, **columns}), path)


def test_parquet_columns_keep_their_types(here, model_path, digits_rows):
    X = digits_rows[:4]
    days = [datetime.date(2026, 11, d) for d in (1, 2, 3, 4)]
    _parquet(here / "in.parquet", X,
             count=pa.array([1, None, 3, 4], pa.int32()),
             ok=pa.array([True, False, None, True]),
             day=pa.array(days, pa.date32()),
             score=pa.array([0.5, float("nan"), None, 2.0]),
             tag=pa.array(["a", "b", "a", None]).dictionary_encode())
    args = ["in.parquet", "--keep-columns", "count,ok,day,score,tag"]
    assert _score(model_path, *args, "-o", "out.parquet") == 0
    table = pq.read_table(here / "out.parquet")
    assert table.schema.field("count").type == pa.int32()
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("tag").type == pa.string()
    assert table.column("day").to_pylist() == days
    assert table.column("tag").to_pylist() == ["a", "b", "a", None]
    assert _score(model_path, *args, "-o", "out.jsonl") == 0
    rows = _jsonl(here / "out.jsonl")  # strict JSON: NaN and empty cells are null
    assert [r["count"] for r in rows] == [1, None, 3, 4]
    assert [r["ok"] for r in rows] == [True, False, None, True]
    assert [r["day"] for r in rows] == [d.isoformat() for d in days]
    assert [r["score"] for r in rows] == [0.5, None, None, 2]


def test_a_parquet_column_that_cannot_be_carried_is_refused(here, model_path, capsys,
                                                           digits_rows):
    _parquet(here / "in.parquet", digits_rows[:2], tags=pa.array([["a"], ["b", "c"]]))
    assert _score(model_path, "in.parquet", "--keep-columns", "tags", "-o", "out.csv") == 65
    assert "column 1 (tags) has type list<element: string>, which --keep-columns cannot carry" \
        in capsys.readouterr().err


def test_a_kept_parquet_cell_that_is_not_text_rejects_its_row(here, model_path, digits_rows):
    _parquet(here / "in.parquet", digits_rows[:3], raw=pa.array([b"a", b"\xff", b"c"]))
    assert _score(model_path, "in.parquet", "--keep-columns", "raw", "--on-error", "skip",
                  "-o", "out.jsonl") == 0
    assert [(r["row"], r["raw"]) for r in _jsonl(here / "out.jsonl")] == [(0, "a"), (2, "c")]
    report = (here / "out.rejects.csv").read_text().splitlines()
    assert report[1] == "1,,1,raw,the value is bytes that are not UTF-8 text,"


BLOCK_PANDAS = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ImportError("pandas is not installed here")
sys.meta_path.insert(0, Block())
from digits_onnx.inference.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_every_carried_type_is_written_as_json_the_way_csv_writes_it(here, digits_rows):
    """Dates, times, durations and decimals, nanoseconds included, as Arrow formats them
    (what the CSV writer prints), with no pandas in the process (not a dependency)."""
    import decimal
    import subprocess
    import sys

    X = digits_rows[:2]
    _parquet(here / "in.parquet", X,
             ts=pa.array([1_000_000_001, None], pa.timestamp("ns")),
             tz=pa.array([0, 1], pa.timestamp("s", tz="UTC")),
             t=pa.array([1, 2], pa.time64("ns")),
             dur=pa.array([86405, None], pa.duration("s")),
             dec=pa.array([decimal.Decimal("1.50"), None]),
             big=pa.array([2**62, None], pa.uint64()))
    kept = "ts,tz,t,dur,dec,big"
    for out in ("out.jsonl", "out.csv"):
        proc = subprocess.run([sys.executable, "-c", BLOCK_PANDAS, "in.parquet",
                               "--keep-columns", kept, "-o", out, "-q"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    rows = _jsonl(here / "out.jsonl")
    assert rows[0] == {"row": 0, "ts": "1970-01-01 00:00:01.000000001",
                       "tz": "1970-01-01 00:00:00.000Z", "t": "00:00:00.000000001",
                       "dur": 86405, "dec": 1.5, "big": 2**62,
                       "label": rows[0]["label"], "confidence": rows[0]["confidence"]}
    assert [rows[1][k] for k in ("ts", "dur", "dec", "big")] == [None] * 4
    csv_first = (here / "out.csv").read_text().splitlines()[1].split(",")
    assert csv_first[1:7] == ["1970-01-01 00:00:01.000000001", "1970-01-01 00:00:00.000Z",
                              "00:00:00.000000001", "86405", "1.50", str(2**62)]
    assert '"dec": 1.50,' in (here / "out.jsonl").read_text()  # the decimal's digits, kept


def test_in_a_run_over_many_files_the_one_whose_columns_differ_is_named(here, model_path,
                                                                      capsys, digits_rows):
    (here / "in").mkdir()
    _csv(here / "in" / "a.csv", digits_rows[:2], extra={"name": ["x", "y"]})
    _csv(here / "in" / "b.csv", digits_rows[:2], extra={"other": ["x", "y"]})
    _csv(here / "in" / "c.csv", digits_rows[:2], extra={"name": ["1", "2"], "row": ["a", "b"]})
    assert _score(model_path, "in", "--keep-columns", "name", "--out-dir", "out") == 1
    err = capsys.readouterr().err
    assert "in/b.csv: --keep-columns 'name' is not a column; the header has: other, f0" in err
    assert _score(model_path, "in/c.csv", "--keep-columns", "name,row", "--id-column", "row",
                  "-o", "x.csv") == 0  # the id is the key already: not carried twice


def test_a_name_the_header_holds_twice_must_be_given_by_number(here, model_path, capsys,
                                                              digits_rows):
    _csv(here / "in.csv", digits_rows[:2], extra={"a": ["1", "2"], "b": ["3", "4"]})
    text = (here / "in.csv").read_text().replace("a,b,", "a,a,", 1)
    (here / "in.csv").write_text(text)
    assert _score(model_path, "in.csv", "--keep-columns", "a", "-o", "x.csv") == 2
    assert capsys.readouterr().err == ("digits-score: error: in.csv: --keep-columns 'a' names "
                                       "columns 1 and 2; give the column's number\n")
    assert _score(model_path, "in.csv", "--keep-columns", "1,2", "-o", "x.csv") == 2
    assert "in.csv: two output columns would be named 'a'" in capsys.readouterr().err


def test_spaces_around_the_commas_are_not_part_of_the_names(here, model_path, digits_rows):
    _csv(here / "in.csv", digits_rows[:2], extra={"a": ["1", "2"], "b": ["3", "4"]})
    assert _score(model_path, "in.csv", "--keep-columns", "b, a", "-o", "x.csv") == 0
    assert (here / "x.csv").read_text().splitlines()[0] == "row,b,a,label,confidence"


def test_an_id_column_without_a_name_is_named_by_its_number(here, model_path, digits_rows):
    _csv(here / "in.csv", digits_rows[:2], extra={"": ["n5", "n6"]})
    assert _score(model_path, "in.csv", "--id-column", "1", "-o", "x.jsonl") == 0
    assert [r["column_1"] for r in _jsonl(here / "x.jsonl")] == ["n5", "n6"]
