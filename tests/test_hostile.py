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

#: Ends a message whose last words are another library's (they change with its version).
ITS_WORDS = "<the library's own words>"

#: (file, extra arguments, exit code, message after "digits-score: error: ")
INPUT_CASES = [
    ("csv_bad_id_column.csv", "--id-column ident", 2,
     "csv_bad_id_column.csv: --id-column 'ident' is not a column; the header has: "
     "pixel_0_0, pixel_0_1, "
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
     "columns in all); name the extra columns with --id-column, --label-column or "
     "--keep-columns"),
    ("csv_empty.csv", "", 65, "csv_empty.csv: the file is empty"),
    ("csv_empty_cell.csv", "", 65, "csv_empty_cell.csv: line 3, column 31 (pixel_3_6): empty cell"),
    ("csv_fake.csv.gz", "", 65,
     "csv_fake.csv.gz: not a valid gzip file (Not a gzipped file (b'th'))"),
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
     "columns in all); name the extra columns with --id-column, --label-column or "
     "--keep-columns"),
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
    # Header detection: a row is never taken for a header, nor a header for a row.
    ("csv_first_row_one_bad_token.csv", "", 65,
     "csv_first_row_one_bad_token.csv: line 1: cannot tell whether it is a header or data: "
     "63 of its fields are numbers and 1 not ('O' in column 7); pass --header or --no-header"),
    ("csv_index_header.csv", "", 65,
     "csv_index_header.csv: line 3, column 1 (0): 'x' is not a number"),
    # Blank lines, however many; bad lines by the million.
    ("csv_blank_lines_before_header.csv", "", 65,
     "csv_blank_lines_before_header.csv: line 70003, column 2 (pixel_0_1): 'six' is not a "
     "number"),
    ("csv_2m_bad_lines.csv.gz", "", 65,
     "csv_2m_bad_lines.csv.gz: line 2: expected 64 columns, found 1"),
    # The format from the content when the extension says nothing.
    ("sniffed_csv_word.data", "", 65,
     "sniffed_csv_word.data: line 3, column 2 (pixel_0_1): 'six' is not a number"),
    ("sniffed_npy_nan.dat", "", 65,
     "sniffed_npy_nan.dat: row 3, column 11: value nan is not a number (NaN)"),
    ("parquet_sniffed_63_columns", "", 65,
     "parquet_sniffed_63_columns: expected 64 feature columns, found 63 (63 columns in all)"),
    ("unknown_format.dat", "", 2,
     "unknown_format.dat: cannot tell the format from the extension or the content (it is "
     "not NPY, Parquet, gzip or delimited text); use --input-format (csv, tsv, csv.gz, "
     "tsv.gz, npy, parquet)"),
    # Parquet: values, ids and labels of any type, files that lie about themselves.
    ("parquet_float32_overflow.parquet", "", 65,
     "parquet_float32_overflow.parquet: row 1, column 4 (c3): value 1e+39 is outside the "
     "float32 range"),
    ("parquet_nulls.parquet", "", 65, "parquet_nulls.parquet: row 1, column 1 (c0): empty cell"),
    ("parquet_label_float.parquet", "--label-column label", 65,
     "parquet_label_float.parquet: row 1, column 65 (label): label 2.5 is not an integer"),
    ("parquet_label_text.parquet", "--label-column label", 65,
     "parquet_label_text.parquet: row 1, column 65 (label): label 'seven' is not an integer"),
    ("parquet_label_list.parquet", "--label-column label", 65,
     "parquet_label_list.parquet: column 65 (label) has type list<element: int64>, which "
     "cannot be the --label-column: labels must be integers"),
    ("parquet_id_struct.parquet", "--id-column id", 65,
     "parquet_id_struct.parquet: column 65 (id) has type struct<a: int64>, which cannot be "
     "the --id-column: an id must be text, a number or a date"),
    ("parquet_id_not_utf8.parquet", "--id-column id", 65,
     "parquet_id_not_utf8.parquet: row 1, column 65 (id): the id is bytes that are not UTF-8 "
     "text"),
    ("parquet_footer_rows_lie.parquet", "", 65,
     "parquet_footer_rows_lie.parquet: the footer declares 2000 rows but its row groups hold "
     "1000; the file is corrupt"),
    ("parquet_name_not_utf8.parquet", "", 65,
     "parquet_name_not_utf8.parquet: a column name is not UTF-8 text; save the names as UTF-8"),
    ("parquet_corrupt_page_data.parquet", "", 65,
     "parquet_corrupt_page_data.parquet: row group 0 is corrupt (could not verify page "
     "integrity, CRC checksum verification failed for page_ordinal 0)"),
    ("parquet_footer_histogram.parquet", "--id-column id --label-column label", 65,
     f"parquet_footer_histogram.parquet: row group 0 is corrupt ({ITS_WORDS}"),
    ("parquet_corrupt_page_header.parquet", "", 65,
     "parquet_corrupt_page_header.parquet: row group 0 is corrupt (Couldn't deserialize "
     "thrift: invalid TType)"),
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
    # Models that pass every static check and break the contract when run. onnxruntime's
    # own words end two messages; they are compared up to them.
    ("model_broadcast_fails.onnx", 65, f"fails when run on 8 test rows (Add node: {ITS_WORDS}"),
    ("model_huge_allocation.onnx", 65,
     f"fails when run on 8 test rows (ConstantOfShape node: {ITS_WORDS}"),
    ("model_one_label.onnx", 65,
     "breaks the model contract on 8 test rows: 1 labels and 8 rows of probabilities"),
    ("model_labels_beyond_9.onnx", 65,
     "breaks the model contract on 8 test rows: label 19 outside 0..9"),
    ("model_nan_probabilities.onnx", 65,
     "breaks the model contract on 8 test rows: probabilities that are not numbers"),
    ("model_dimension_not_utf8.onnx", 65,
     "names an input, an output or a dimension with bytes that are not UTF-8 text"),
    ("model_probabilities_not_summing_to_1.onnx", 65,
     "breaks the model contract on 8 test rows: probabilities of a row sum to 5.906, not 1"),
]


def test_the_corpus_is_large_and_current(tmp_path):
    written = write_corpus(tmp_path / "bad")
    committed = {p.name for p in BAD.iterdir()} - {"models.json"}
    assert committed == set(written)
    assert len(INPUT_CASES) + len(MODEL_CASES) >= 40
    assert {c[0] for c in INPUT_CASES} | {c[0] for c in MODEL_CASES} == committed
    for name, data in written.items():
        if "parquet" not in name:  # Parquet embeds the writer's version
            assert (BAD / name).read_bytes() == data, f"{name}: run tests/data/make_bad.py"


def _check(code: int, err: str, expected_code: int, message: str, out: Path) -> None:
    """One line with the expected message (up to ITS_WORDS when it ends in another library's
    words); nothing left behind."""
    if message.endswith(ITS_WORDS):
        assert code == expected_code and err.count("\n") == 1, err
        assert err.startswith(f"digits-score: error: {message[:-len(ITS_WORDS)]}"), err
    else:
        assert (code, err) == (expected_code, f"digits-score: error: {message}\n")
    assert "Traceback" not in err
    leftovers = [p.name for p in out.parent.iterdir() if p.name != ".digits-score"]
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


@pytest.mark.parametrize("name", ["parquet_float32_overflow.parquet", "sniffed_npy_nan.dat",
                                  "parquet_nulls.parquet", "csv_inf.csv"])
def test_no_python_warning_text_reaches_stderr(name, tmp_path):
    """numpy's 'RuntimeWarning: overflow encountered in cast' leaked from the Parquet reader;
    with every warning shown (-W default), stderr holds only the scorer's own lines."""
    import re
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-W", "default", "-m", "digits_onnx.inference", name, "-o",
         str(tmp_path / "out.csv"), "--on-error", "skip"],
        cwd=BAD, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"\w*Warning: ", proc.stderr), proc.stderr
    assert proc.stderr.startswith(f"scored {name} -> "), proc.stderr
