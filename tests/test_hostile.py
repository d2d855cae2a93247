"""The hostile-input corpus (tests/data/bad/): every malformed file gets its own clear message.

Each case runs the CLI and must exit with the expected code and the expected one-line message:
never a traceback, never an output file, never exit 0. The corpus is written by
tests/data/make_bad.py; the first test checks the committed files are what it writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from digits_onnx.inference.cli import main

DATA = Path(__file__).resolve().parent / "data"
BAD = DATA / "bad"
sys.path.insert(0, str(DATA))

from make_bad import write_corpus  # noqa: E402

#: (file, extra arguments, exit code, message after "digits-score: error: ")
INPUT_CASES = [
    ("csv_bad_id_column.csv", "--id-column ident", 2,
     "--id-column 'ident' is not a column; the header has: pixel_0_0, pixel_0_1, "
     "pixel_0_2, pixel_0_3, pixel_0_4, pixel_0_5, pixel_0_6, pixel_0_7, ..."),
    ("csv_binary.csv", "", 65,
     "csv_binary.csv: line 1 is not valid UTF-8 text; save the file as UTF-8"),
    ("csv_bom_mid_file.csv", "", 65,
     "csv_bom_mid_file.csv: line 3, column 1 (pixel_0_0): a byte-order mark (U+FEFF) "
     "inside the file; it may only start the file"),
    ("csv_cr_only.csv", "", 65,
     "csv_cr_only.csv: line 1 holds a carriage return inside it: the file seems to end "
     "its lines with CR alone; save it with LF or CRLF line endings"),
    ("csv_decimal_commas.csv", "", 65,
     "csv_decimal_commas.csv: line 1: expected 64 feature columns, found 65 (65 "
     "columns in all); name the extra columns with --id-column and --label-column"),
    ("csv_empty.csv", "", 65, "csv_empty.csv: the file is empty"),
    ("csv_empty_cell.csv", "", 65, "csv_empty_cell.csv: line 3, column 31 (pixel_3_6): empty cell"),
    ("csv_fake.csv.gz", "", 65,
     "csv_fake.csv.gz: not a valid gzip file (Not a gzipped file (b'th'))"),
    ("csv_header_only.csv", "", 65, "csv_header_only.csv: the file has no data rows"),
    ("csv_inf.csv", "", 65, "csv_inf.csv: line 3, column 64 (pixel_7_7): 'inf' is infinite"),
    ("csv_label_not_integer.csv", "--label-column label", 65,
     "csv_label_not_integer.csv: line 3, column 65 (label): label 'seven' is not an "
     "integer"),
    ("csv_latin1.csv", "", 65,
     "csv_latin1.csv: line 1 is not valid UTF-8 text; save the file as UTF-8"),
    ("csv_latin1_data.csv", "", 65,
     "csv_latin1_data.csv: line 3, column 1 (pixel_0_0): bytes that are not UTF-8 "
     "text; save the file as UTF-8"),
    ("csv_nan.csv", "", 65,
     "csv_nan.csv: line 3, column 1 (pixel_0_0): 'nan' is not a number (NaN)"),
    ("csv_nul_byte.csv", "", 65,
     "csv_nul_byte.csv: line 3, column 6 (pixel_0_5): '\\x0010' is not a number"),
    ("csv_one_number.csv", "", 65,
     "csv_one_number.csv: line 1: expected 64 feature columns, found 1 (1 columns in "
     "all)"),
    ("csv_quoted_newline.csv", "", 65,
     "csv_quoted_newline.csv: line 3: expected 64 columns, found 1"),
    ("csv_quoted_text.csv", "", 65,
     "csv_quoted_text.csv: line 3, column 1 (pixel_0_0): 'abc' is not a number"),
    ("csv_ragged_long.csv", "", 65, "csv_ragged_long.csv: line 3: expected 64 columns, found 65"),
    ("csv_ragged_short.csv", "", 65, "csv_ragged_short.csv: line 4: expected 64 columns, found 60"),
    ("csv_too_many_columns.csv", "", 65,
     "csv_too_many_columns.csv: line 1: expected 64 feature columns, found 65 (65 "
     "columns in all); name the extra columns with --id-column and --label-column"),
    ("csv_truncated.csv.gz", "", 65,
     "csv_truncated.csv.gz: not a valid gzip file (Compressed file ended before the "
     "end-of-stream marker was reached)"),
    ("csv_whitespace_only.csv", "", 65, "csv_whitespace_only.csv: the file is empty"),
    ("csv_word.csv", "", 65, "csv_word.csv: line 3, column 2 (pixel_0_1): 'six' is not a number"),
    ("npy_63_columns.npy", "", 65,
     "npy_63_columns.npy: the array has shape (4, 63); expected (N, 64) or (N, 8, 8)"),
    ("npy_65_columns.npy", "", 65,
     "npy_65_columns.npy: the array has shape (4, 65); expected (N, 64) or (N, 8, 8)"),
    ("npy_bad_magic.npy", "", 65,
     "npy_bad_magic.npy: not an NPY file (bad magic bytes); was it written by "
     "numpy.save?"),
    ("npy_bad_version.npy", "", 65, "npy_bad_version.npy: unsupported NPY format version 9.0"),
    ("npy_complex.npy", "", 65,
     "npy_complex.npy: the array has dtype <c8 (complex); expected integers or floats"),
    ("npy_empty.npy", "", 65, "npy_empty.npy: the file is empty"),
    ("npy_header_code.npy", "", 65, "npy_header_code.npy: the NPY header is not valid"),
    ("npy_header_not_a_dict.npy", "", 65, "npy_header_not_a_dict.npy: the NPY header is not valid"),
    ("npy_header_overruns_file.npy", "", 65,
     "npy_header_overruns_file.npy: the NPY header claims 60000 bytes; refusing a "
     "header that large"),
    ("npy_huge_shape.npy", "", 65,
     "npy_huge_shape.npy: the file is truncated: its header declares 10000000000000 "
     "rows (2560000000000128 bytes in all) but it holds 192 bytes"),
    ("npy_inf.npy", "", 65, "npy_inf.npy: row 1, column 1: value inf is infinite"),
    ("npy_magic_only.npy", "", 65, "npy_magic_only.npy: the NPY header is truncated"),
    ("npy_nan.npy", "", 65, "npy_nan.npy: row 3, column 11: value nan is not a number (NaN)"),
    ("npy_ndim1.npy", "", 65,
     "npy_ndim1.npy: the array has shape (64,); expected (N, 64) or (N, 8, 8)"),
    ("npy_ndim4.npy", "", 65,
     "npy_ndim4.npy: the array has shape (2, 2, 4, 8); expected (N, 64) or (N, 8, 8)"),
    ("npy_pickled_objects.npy", "", 65,
     "npy_pickled_objects.npy: the array holds Python objects, which would need "
     "pickle; save a numeric array"),
    ("npy_strings.npy", "", 65,
     "npy_strings.npy: the array has dtype <U1 (string); expected integers or floats"),
    ("npy_structured.npy", "", 65,
     "npy_structured.npy: the array has a structured dtype [('a', '<f4', (64,))]; save "
     "a plain numeric (N, 64) array"),
    ("npy_truncated.npy", "", 65,
     "npy_truncated.npy: the file is truncated: its header declares 5 rows (1408 bytes "
     "in all) but it holds 1308 bytes"),
    ("parquet_63_columns.parquet", "", 65,
     "parquet_63_columns.parquet: expected 64 feature columns, found 63 (63 columns in "
     "all)"),
    ("parquet_fake.parquet", "", 65,
     "parquet_fake.parquet: not a valid Parquet file (Parquet file size is 28 bytes, "
     "smaller than the size reported by footer's (544499061bytes))"),
    ("parquet_text_column.parquet", "", 65,
     "parquet_text_column.parquet: column 6 (c5) has type string; expected numbers"),
]

MODEL_CASES = [
    ("model_truncated.onnx", 65,
     "not a valid ONNX model (a field runs past the end of the message)"),
    ("model_not_onnx.onnx", 65, "not a valid ONNX model (unsupported wire type 4)"),
    ("model_external_data.onnx", 65,
     "keeps tensors in external data files (W, b); only self-contained models load"),
    ("model_ml_domain.onnx", 65,
     "uses operators outside the default ONNX domain (ai.onnx.ml:Normalizer); only portable "
     "default-domain models are accepted"),
    ("model_wrong_input_shape.onnx", 65,
     "breaks the model contract: input X has shape ['N', 63], expected [N, 64]"),
    ("model_hash_mismatch.onnx", 65,
     "sha256 9ae163c3999e... does not match the expected 000000000000...; the model was "
     "replaced or corrupted"),
]


def test_the_corpus_is_large_and_current(tmp_path):
    written = write_corpus(tmp_path / "bad")
    committed = {p.name for p in BAD.iterdir()} - {"models.json"}
    assert committed == set(written)
    assert len(INPUT_CASES) + len(MODEL_CASES) >= 40
    assert {c[0] for c in INPUT_CASES} | {c[0] for c in MODEL_CASES} == committed
    for name, data in written.items():
        if not name.endswith(".parquet"):  # Parquet embeds the writer's version
            assert (BAD / name).read_bytes() == data, f"{name}: run tests/data/make_bad.py"


def _check(code: int, err: str, expected_code: int, message: str, out: Path) -> None:
    assert (code, err) == (expected_code, f"digits-score: error: {message}\n")
    assert "Traceback" not in err
    leftovers = [p.name for p in out.parent.iterdir() if p.name != ".digits-score.lock"]
    assert leftovers == [], f"partial output or temporary files: {leftovers}"


@pytest.mark.parametrize(("name", "args", "expected_code", "message"), INPUT_CASES,
                         ids=[c[0] for c in INPUT_CASES])
def test_malformed_input(name, args, expected_code, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(BAD)  # messages name the file as given
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    code = main([name, "-o", str(out), *args.split()])
    _check(code, capsys.readouterr().err, expected_code, message, out)


@pytest.mark.parametrize(("name", "expected_code", "message"), MODEL_CASES,
                         ids=[c[0] for c in MODEL_CASES])
def test_malformed_model(name, expected_code, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(BAD)
    hashes = json.loads((BAD / "models.json").read_text())
    trust = ["--model-sha256", hashes[name]] if name in hashes else ["--trust-model"]
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    sample = DATA.parent.parent / "examples" / "digits_test.npy"
    code = main([str(sample), "-o", str(out), "--model", name, *trust])
    _check(code, capsys.readouterr().err, expected_code, f"{name}: {message}", out)


def test_a_10_mb_line(tmp_path, capsys):
    header = ",".join(f"pixel_{k // 8}_{k % 8}" for k in range(64))
    row = ",".join(["1"] * 64)
    src = tmp_path / "long_line.csv"
    src.write_text(f"{header}\n{row}\n" + "1," * 5_000_000 + f"1\n{row}\n")
    out = tmp_path / "out" / "predictions.csv"
    out.parent.mkdir()
    code = main([str(src), "-o", str(out)])
    _check(code, capsys.readouterr().err, 65,
           f"{src}: line 3: expected 64 columns, found 5000001", out)


def test_no_case_leaks_a_file_descriptor(tmp_path, monkeypatch, capsys):
    import os

    monkeypatch.chdir(BAD)
    out = tmp_path / "predictions.csv"
    main([INPUT_CASES[0][0], "-o", str(out)])  # the first run opens what stays open
    before = len(os.listdir("/proc/self/fd"))
    for name, args, _, _ in INPUT_CASES:
        main([name, "-o", str(out), *args.split()])
    capsys.readouterr()
    assert len(os.listdir("/proc/self/fd")) == before
