"""Every output format an extension names is honoured; an unknown extension or one that
contradicts --output-format is a usage error; all formats print the same float32 text."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from digits_onnx.inference.cli import main


def run(model_path, *args: str) -> int:
    return main([*args, "--model", str(model_path), "-q"])


def text_of(path: str) -> str:
    data = Path(path).read_bytes()
    return (gzip.decompress(data) if path.lower().endswith(".gz") else data).decode()


@pytest.mark.parametrize(("name", "delimiter"), [
    ("out.csv", ","), ("out.csv.gz", ","), ("out.tsv", "\t"), ("out.tsv.gz", "\t"),
    ("OUT.CSV.GZ", ","), ("out.txt", ","), ("predictions", ","),
])
def test_delimited_outputs_follow_the_extension(here, model_path, name, delimiter):
    assert run(model_path, "in.csv", "-o", name, "--proba") == 0
    reference = "out-ref.csv"
    assert run(model_path, "in.csv", "-o", reference, "--proba") == 0
    expected = Path(reference).read_text().replace(",", delimiter)
    assert text_of(name) == expected


@pytest.mark.parametrize("fmt", ["csv.gz", "tsv", "tsv.gz", "jsonl", "parquet", "npy"])
def test_out_dir_names_outputs_by_format(here, model_path, fmt):
    assert run(model_path, "in.csv", "--out-dir", "out", "--output-format", fmt) == 0
    assert sorted(os.listdir("out")) == [".digits-score", f"in.pred.{fmt}"]


@pytest.mark.parametrize(("args", "message"), [
    (["-o", "x.json"], "-o x.json: '.json' names no output format"),
    (["-o", "x.xlsx"], "-o x.xlsx: '.xlsx' names no output format"),
    (["-o", "x.parquet", "--output-format", "npy"],
     "-o x.parquet names parquet output but --output-format says npy; make them agree"),
    (["-o", "x.csv", "--output-format", "tsv"],
     "-o x.csv names csv output but --output-format says tsv; make them agree"),
])
def test_an_unknown_or_contradicting_extension_is_a_usage_error(here, model_path, capsys, args,
                                                                message):
    assert main(["in.csv", *args, "--model", str(model_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"digits-score: error: {message}") and err.count("\n") == 1
    assert sorted(os.listdir(".")) == ["in.csv"]


def test_an_unknown_extension_with_an_explicit_format_is_fine(here, model_path):
    assert run(model_path, "in.csv", "-o", "x.dat", "--output-format", "jsonl") == 0
    assert len(Path("x.dat").read_text().splitlines()) == 20


def test_json_lines_print_the_same_float32_text_as_csv(here, model_path):
    assert run(model_path, "in.csv", "-o", "out.csv", "--proba") == 0
    assert run(model_path, "in.csv", "-o", "out.jsonl", "--proba") == 0
    table = pacsv.read_csv("out.csv", convert_options=pacsv.ConvertOptions(
        column_types={f"p{k}": "string" for k in range(10)} | {"confidence": "string"}))
    csv_rows = table.to_pylist()
    lines = Path("out.jsonl").read_text().splitlines()
    for line, row in zip(lines, csv_rows, strict=True):
        record = json.loads(line)
        assert list(record) == list(row)
        for key in ("confidence", *(f"p{k}" for k in range(10))):
            assert f'"{key}": {row[key]}' in line  # the very same digits
            assert np.float32(record[key]) == np.float32(row[key])
