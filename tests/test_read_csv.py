"""The CSV reader: dialects, headers, extra columns, and bad lines named by line and column."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import InputDataError, UsageError
from digits_onnx.inference.readers import DELIMITER_NAMES, ReadOptions, open_source

HEADER = ",".join(f"pixel_{i // 8}_{i % 8}" for i in range(64))


def rows_text(X: np.ndarray, sep: str = ",") -> str:
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in X)


def read_all(path: Path, **options) -> tuple[np.ndarray, list, int]:
    source = open_source(str(path), ReadOptions(**options))
    try:
        batches = list(source.batches())
    finally:
        source.close()
    X = np.concatenate([b.X for b in batches])
    rejects = [r for b in batches for r in b.rejects]
    return X, rejects, sum(b.n_rows for b in batches)


@pytest.mark.parametrize(
    ("sep", "delimiter"),
    [(",", None), ("\t", None), (";", None), (" ", None), ("   ", None), (";", ";"),
     ("\t", "\t")],
)
def test_delimiters_are_detected_or_given(tmp_path, digits_rows, sep, delimiter):
    path = tmp_path / "x.csv"
    path.write_text(rows_text(digits_rows[:20], sep))
    X, rejects, n = read_all(path, delimiter=delimiter)
    assert n == 20 and not rejects
    np.testing.assert_array_equal(X, digits_rows[:20].astype(np.float32))


def test_whitespace_with_leading_and_trailing_blanks(tmp_path, digits_rows):
    text = "".join("  " + "\t ".join(f"{v:g}" for v in row) + "  \n" for row in digits_rows[:5])
    (tmp_path / "x.txt").write_text(text)
    X, _, _ = read_all(tmp_path / "x.txt", delimiter="whitespace")
    np.testing.assert_array_equal(X, digits_rows[:5].astype(np.float32))


@pytest.mark.parametrize("prefix", ["", "\ufeff"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_header_bom_and_crlf(tmp_path, digits_rows, prefix, newline):
    text = prefix + HEADER + newline + rows_text(digits_rows[:7]).replace("\n", newline)
    (tmp_path / "x.csv").write_bytes(text.encode("utf-8"))
    X, rejects, n = read_all(tmp_path / "x.csv")
    assert n == 7 and not rejects
    np.testing.assert_array_equal(X, digits_rows[:7].astype(np.float32))


def test_header_detection_can_be_forced(tmp_path, digits_rows):
    path = tmp_path / "x.csv"
    path.write_text(rows_text(digits_rows[:3]))
    _, _, n = read_all(path, header=True)
    assert n == 2
    _, _, n = read_all(path, header=False)
    assert n == 3


def test_gzip_and_tsv_extensions(tmp_path, digits_rows):
    gz = tmp_path / "x.csv.gz"
    gz.write_bytes(gzip.compress(rows_text(digits_rows).encode()))
    tsv = tmp_path / "x.tsv"
    tsv.write_text(rows_text(digits_rows, "\t"))
    for path in (gz, tsv):
        X, _, n = read_all(path)
        assert n == len(digits_rows)
        np.testing.assert_array_equal(X, digits_rows.astype(np.float32))


def test_quoted_fields_and_blank_lines(tmp_path, digits_rows):
    quoted = ",".join(f'"{v:g}"' for v in digits_rows[0]) + "\n"
    text = quoted + "\n" + rows_text(digits_rows[1:3]) + "\r\n" + rows_text(digits_rows[3:4])
    (tmp_path / "x.csv").write_text(text)
    X, rejects, n = read_all(tmp_path / "x.csv")
    assert n == 4 and not rejects
    np.testing.assert_array_equal(X, digits_rows[:4].astype(np.float32))


def test_id_and_label_columns_by_name_and_index(tmp_path, digits_rows):
    lines = ["id," + HEADER + ",label"]
    lines += [f"r{i}," + ",".join(f"{v:g}" for v in row) + f",{i % 10}"
              for i, row in enumerate(digits_rows[:12])]
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    for id_col, label_col in (("id", "label"), (0, 65), (0, -1)):
        source = open_source(str(path), ReadOptions(id_column=id_col, label_column=label_col))
        batch = next(source.batches())
        source.close()
        assert source.id_name == "id"
        assert batch.ids.to_pylist() == [f"r{i}" for i in range(12)]
        np.testing.assert_array_equal(batch.truth, np.arange(12) % 10)
        np.testing.assert_array_equal(batch.X, digits_rows[:12].astype(np.float32))


def test_block_boundaries_do_not_change_values(tmp_path, digits_rows):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "\n" + rows_text(digits_rows))
    for chunk in (100, 997, 4096, 1 << 20):
        X, rejects, n = read_all(path, chunk_bytes=chunk)
        assert n == len(digits_rows) and not rejects
        np.testing.assert_array_equal(X, digits_rows.astype(np.float32))


def good_line(i: int) -> str:
    return ",".join(str((i + k) % 17) for k in range(64))


def bad_file(tmp_path: Path, bad: str, *, header: bool = True, position: int = 3) -> Path:
    lines = [HEADER] if header else []
    lines += [good_line(i) for i in range(6)]
    lines.insert(position + (1 if header else 0), bad)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


BAD_LINES = [
    (",".join(["1"] * 63), "line 5: expected 64 columns, found 63"),
    (",".join(["1"] * 65), "line 5: expected 64 columns, found 65"),
    (",".join(["1"] * 10 + ["abc"] + ["1"] * 53),
     "line 5, column 11 (pixel_1_2): 'abc' is not a number"),
    (",".join(["1"] * 5 + [""] + ["1"] * 58), "line 5, column 6 (pixel_0_5): empty cell"),
    (",".join(["nan"] + ["1"] * 63), "line 5, column 1 (pixel_0_0): 'nan' is not a number (NaN)"),
    (",".join(["1"] * 63 + ["-inf"]), "line 5, column 64 (pixel_7_7): '-inf' is infinite"),
    (",".join(["1e39"] + ["1"] * 63),
     "line 5, column 1 (pixel_0_0): '1e39' is outside the float32 range"),
    (",".join(["1\x002"] + ["1"] * 63), "line 5, column 1 (pixel_0_0): '1\\x002' is not a number"),
    ("   ", "line 5: expected 64 columns, found 1"),
]


@pytest.mark.parametrize(("bad", "where"), BAD_LINES)
def test_bad_line_fails_the_file_naming_line_and_column(tmp_path, bad, where):
    path = bad_file(tmp_path, bad)
    source = open_source(str(path))
    batch = next(source.batches())
    source.close()
    assert len(batch.rejects) == 1
    reject = batch.rejects[0]
    assert f"{reject.where()}: {reject.reason}" == where
    assert reject.row == 3
    assert batch.n_rows == 7 and len(batch.X) == 6
    np.testing.assert_array_equal(batch.rows, [0, 1, 2, 4, 5, 6])


def test_bad_lines_found_in_any_block(tmp_path):
    lines = [good_line(i) for i in range(3000)]
    bad_at = [0, 17, 1500, 2999]
    for i in bad_at:
        lines[i] = lines[i].replace("1", "x", 1) if "1" in lines[i] else "x" + lines[i][1:]
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    X, rejects, n = read_all(path, chunk_bytes=8192, header=False)
    assert n == 3000
    assert [r.row for r in rejects] == bad_at
    assert [r.line for r in rejects] == [i + 1 for i in bad_at]
    expected = np.array([[float(v) for v in ln.split(",")] for k, ln in enumerate(lines)
                         if k not in bad_at], dtype=np.float32)
    np.testing.assert_array_equal(X, expected)


def test_label_that_is_not_an_integer(tmp_path):
    path = tmp_path / "x.csv"
    lines = [",".join(f"c{k}" for k in range(64)) + ",label", good_line(0) + ",3",
             good_line(1) + ",x"]
    path.write_text("\n".join(lines) + "\n")
    source = open_source(str(path), ReadOptions(label_column="label"))
    batch = next(source.batches())
    source.close()
    assert [f"{r.where()}: {r.reason}" for r in batch.rejects] == [
        "line 3, column 65 (label): label 'x' is not an integer"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "x.csv: the file is empty"),
        (b"\n\n", "x.csv: the file is empty"),
        ((",".join(["1"] * 66) + "\n").encode(),
         "x.csv: line 1: expected 64 feature columns, found 66 (66 columns in all); name the "
         "extra columns with --id-column and --label-column"),
        (b"a,b,c\n1,2,3\n", "x.csv: line 1: expected 64 feature columns, found 3 (3 columns "
         "in all)"),
        (b"\xe9t\xe9," * 63 + b"x\n",
         "x.csv: line 1 is not valid UTF-8 text; save the file as UTF-8"),
    ],
)
def test_unreadable_files(tmp_path, text, message):
    path = tmp_path / "x.csv"
    path.write_bytes(text)
    with pytest.raises(InputDataError) as info:
        open_source(str(path))
    assert str(info.value) == f"{tmp_path}/{message}"


def test_a_10mb_line_is_a_bad_row_and_a_line_beyond_16mib_fails_the_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(good_line(0).encode() + b"\n" + b"1," * (5 << 20) + b"1\n")
    _, rejects, n = read_all(path)
    assert n == 2
    assert [(r.line, r.reason) for r in rejects] == [(2, "expected 64 columns, found 5242881")]
    assert len(rejects[0].text) == 203
    path.write_bytes(good_line(0).encode() + b"\n" + b"1," * (9 << 20) + b"1\n")
    source = open_source(str(path))
    with pytest.raises(InputDataError, match=r"x.csv: line 2 is longer than 16 MiB"):
        list(source.batches())
    source.close()


def test_fake_gzip(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(b"this is not gzip at all\n")
    with pytest.raises(InputDataError, match=r"x.csv.gz: not a valid gzip file"):
        open_source(str(path))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"id_column": "id"}, "--id-column 'id' is a name, but the file has no header"),
        ({"label_column": 70}, "--label-column 70 is out of range: the file has 64 columns"),
        ({"delimiter": "|"}, "unknown delimiter '|'"),
    ],
)
def test_column_options_that_cannot_apply(tmp_path, options, message):
    path = tmp_path / "x.csv"
    path.write_text(good_line(0) + "\n")
    with pytest.raises(UsageError, match=message):
        open_source(str(path), ReadOptions(**options))


DELIMITER_CHOICES = ("choose ',', 'comma', '\\t', 'tab', ';', 'semicolon', 'whitespace' or "
                     "'space'")


@pytest.mark.parametrize(
    ("name", "delimiter"),
    [(None, None), (",", ","), ("comma", ","), ("\\t", "\t"), ("\t", "\t"), ("tab", "\t"),
     (";", ";"), ("semicolon", ";"), ("whitespace", "whitespace"), ("space", "whitespace")],
)
def test_delimiter_names_are_normalized(name, delimiter):
    assert ReadOptions(delimiter=name).delimiter == delimiter
    assert replace(ReadOptions(delimiter=name), header=True).delimiter == delimiter


@pytest.mark.parametrize(
    ("name", "message"),
    [("|", f"unknown delimiter '|'; {DELIMITER_CHOICES}"),
     ("", f"unknown delimiter ''; {DELIMITER_CHOICES}"),
     ("Tab", f"unknown delimiter 'Tab'; {DELIMITER_CHOICES}"),
     (" ", f"unknown delimiter ' '; {DELIMITER_CHOICES}"),
     (",;", f"unknown delimiter ',;'; {DELIMITER_CHOICES}"),
     ("\\n", f"unknown delimiter '\\\\n'; {DELIMITER_CHOICES}")],
)
def test_unknown_delimiters_are_refused_when_the_options_are_made(name, message):
    with pytest.raises(UsageError) as info:
        ReadOptions(delimiter=name)
    assert str(info.value) == message


def test_every_delimiter_name_reads_its_file(tmp_path, digits_rows):
    for name, delimiter in DELIMITER_NAMES.items():
        path = tmp_path / "x.txt"
        path.write_text(rows_text(digits_rows[:4], " " if delimiter == "whitespace" else delimiter))
        X, rejects, n = read_all(path, delimiter=name)
        assert n == 4 and not rejects, name
        np.testing.assert_array_equal(X, digits_rows[:4].astype(np.float32))


def test_blank_lines_before_the_header(tmp_path, digits_rows):
    path = tmp_path / "blank_first.csv"
    header = ",".join(f"p{k}" for k in range(64))
    path.write_text("\n \n" + header + "\n" + rows_text(digits_rows[:5]))
    X, rejects, n = read_all(path)
    assert n == 5 and rejects == []
    np.testing.assert_array_equal(X, digits_rows[:5].astype(np.float32))


@pytest.mark.parametrize("chunk_bytes", [1 << 10, 1 << 12, 1 << 16, 8 << 20])
def test_a_byte_order_mark_inside_the_file_is_rejected_wherever_blocks_begin(
        tmp_path, digits_rows, chunk_bytes):
    lines = rows_text(digits_rows).splitlines()
    for k in (1, 17, 40, 120):
        lines[k] = "\ufeff" + lines[k]
    path = tmp_path / "boms.csv"
    path.write_text("\n".join(lines) + "\n")
    X, rejects, n = read_all(path, chunk_bytes=chunk_bytes)
    assert n == len(lines) and len(X) == len(lines) - 4
    assert [(r.line, r.column) for r in rejects] == [(2, 1), (18, 1), (41, 1), (121, 1)]
    assert all("byte-order mark" in r.reason for r in rejects)
