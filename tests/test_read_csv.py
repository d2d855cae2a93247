"""The CSV reader: dialects, headers, extra columns, and bad lines named by line and column."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import InputDataError, UsageError
from digits_onnx.inference.readers import DELIMITER_NAMES, ReadOptions, csv_parse, open_source
from digits_onnx.inference.readers.csv import block_bytes

from tests.readers_support import read_batches

HEADER = ",".join(f"pixel_{i // 8}_{i % 8}" for i in range(64))


def rows_text(X: np.ndarray, sep: str = ",") -> str:
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in X)


def read_all(path: Path, **options) -> tuple[np.ndarray, list, int]:
    _, batches = read_batches(path, **options)
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
    for id_col, label_col in (("id", "label"), (1, 66), (1, -1)):
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


@pytest.mark.parametrize(("chunk", "size", "block"), [
    (8 << 20, 20_000, 20_001),          # a small file: one block, no larger than the file
    (8 << 20, 15_000_000, 2 << 20),     # 15 MB: 8 blocks of the 2 MiB floor, not two of 8
    (8 << 20, 64 << 20, 8 << 20),       # at 8 blocks of the chunk size and above: the chunk
    (8 << 20, 40 << 20, 5 << 20),       # in between: an eighth of the file
    (100, 15_000_000, 100),             # never more than the chunk size asked for
    (64 << 20, 20_000_000, 2_500_000),  # nor a block that could hold a whole 16 MiB line
    (64 << 20, None, 8 << 20),
    (8 << 20, None, 8 << 20),           # a stream of unknown size
])
def test_a_file_is_read_in_blocks_that_let_reading_overlap_scoring(chunk, size, block):
    assert block_bytes(chunk, size) == block


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


@pytest.mark.parametrize("label", ["-1", "10", "010", " 10", "-9223372036854775808",
                                   "9223372036854775807"])
@pytest.mark.parametrize("neighbours", ["good", "short"])
def test_a_label_outside_0_to_9_rejects_its_line(tmp_path, label, neighbours):
    """No digit is -1 or 10: such a label would count as the model's mistake. Rejected on
    both paths a line takes: checked in bulk among good lines, or settled alone when its
    neighbours are bad for a reason of their own."""
    path = tmp_path / "x.csv"
    lines = [",".join(f"c{k}" for k in range(64)) + ",label"]
    lines += [good_line(i) + f",{i % 10}" for i in range(6)]
    lines[3] = good_line(2) + "," + label
    if neighbours == "short":
        lines[1:] = [line if k == 2 else ",".join(line.split(",")[:10])
                     for k, line in enumerate(lines[1:])]
    path.write_text("\n".join(lines) + "\n")
    _, batches = read_batches(path, label_column="label")
    rejects = [(r.row, r.line, r.column, r.column_name, r.reason, r.text)
               for b in batches for r in b.rejects]
    assert (2, 4, 65, "label", f"label {int(label)} is outside 0..9", lines[3]) in rejects
    assert len(rejects) == (1 if neighbours == "good" else 6)
    assert sum(b.n_rows for b in batches) == 6
    truth = np.concatenate([b.truth for b in batches])
    assert truth.tolist() == ([0, 1, 3, 4, 5] if neighbours == "good" else [])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "x.csv: the file is empty"),
        (b"\n\n", "x.csv: the file is empty"),
        ((",".join(["1"] * 66) + "\n").encode(),
         "x.csv: line 1: expected 64 feature columns, found 66 (66 columns in all); name the "
         "extra columns with --id-column, --label-column or --keep-columns"),
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


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 2 << 20, 8 << 20, 64 << 20])
@pytest.mark.parametrize("last", [b"1\n", b"1"])
def test_a_10mb_line_is_a_bad_row_and_a_line_beyond_16mib_fails_the_file(tmp_path, chunk_bytes,
                                                                         last):
    """Whatever the size of the read blocks (1 MiB, 2 MiB, and an eighth of the 18.9 MB
    file for 8 and 64 MiB), and whether the long line ends the file."""
    path = tmp_path / "x.csv"
    path.write_bytes(good_line(0).encode() + b"\n" + b"1," * (5 << 20) + last)
    _, rejects, n = read_all(path, chunk_bytes=chunk_bytes)
    assert n == 2
    assert [(r.line, r.reason) for r in rejects] == [(2, "expected 64 columns, found 5242881")]
    assert len(rejects[0].text) == 203
    path.write_bytes(good_line(0).encode() + b"\n" + b"1," * (9 << 20) + last)
    source = open_source(str(path), ReadOptions(chunk_bytes=chunk_bytes))
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
        ({"label_column": 65}, "--label-column 65 is out of range: the file has 64 columns"),
        ({"label_column": 0}, "--label-column 0: columns are numbered from 1, as in messages; "
         "the first column is 1"),
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


# -- the header: only a line that cannot be data -------------------------------------------

def read_text(tmp_path: Path, text: str, name: str = "h.csv", **options):
    path = tmp_path / name
    path.write_text(text)
    source, batches = read_batches(path, **options)
    X = np.concatenate([b.X for b in batches])
    ids = [i for b in batches if b.ids is not None for i in b.ids.to_pylist()]
    rejects = [f"{r.where()}: {r.reason}" for b in batches for r in b.rejects]
    return source, X, ids, rejects, sum(b.n_rows for b in batches)


def with_token(i: int, column: int, token: str) -> str:
    cells = good_line(i).split(",")
    cells[column] = token
    return ",".join(cells)


AMBIGUOUS_FIRST_LINES = [
    (with_token(0, 4, "O"), "63 of its fields are numbers and 1 not ('O' in column 5)"),
    (with_token(0, 0, "l"), "63 of its fields are numbers and 1 not ('l' in column 1)"),
    (with_token(0, 63, "x"), "63 of its fields are numbers and 1 not ('x' in column 64)"),
    (with_token(0, 10, "1,5").replace('1,5', '"1,5"'),
     "63 of its fields are numbers and 1 not ('1,5' in column 11)"),
    (",".join(["a", "b", "c", *good_line(0).split(",")[3:]]),
     "61 of its fields are numbers and 3 not ('a' in column 1, 'b' in column 2, 'c' in "
     "column 3)"),
    (",".join([f"p{k}" for k in range(32)] + [str(k) for k in range(32, 64)]),
     "32 of its fields are numbers and 32 not ('p0' in column 1, 'p1' in column 2, 'p2' in "
     "column 3, ...)"),
    (",".join(str(k) for k in range(63)) + ",label",
     "63 of its fields are numbers and 1 not ('label' in column 64)"),
]


@pytest.mark.parametrize(("first", "what"), AMBIGUOUS_FIRST_LINES)
def test_a_first_line_that_may_be_data_or_a_header_is_an_error(tmp_path, first, what):
    """One mistyped cell (O for 0) used to turn the first row into a header, silently."""
    text = first + "\n" + "".join(good_line(i) + "\n" for i in range(1, 5))
    with pytest.raises(InputDataError) as info:
        read_text(tmp_path, text)
    assert str(info.value) == (f"{tmp_path}/h.csv: line 1: cannot tell whether it is a "
                               f"header or data: {what}; pass --header or --no-header")


def test_header_or_no_header_settle_an_ambiguous_first_line(tmp_path):
    text = with_token(0, 4, "O") + "\n" + "".join(good_line(i) + "\n" for i in range(1, 5))
    _, X, _, rejects, n = read_text(tmp_path, text, header=False)
    assert (n, len(X)) == (5, 4)
    assert rejects == ["line 1, column 5: 'O' is not a number"]
    _, X, _, rejects, n = read_text(tmp_path, text, header=True)
    assert (n, len(X), rejects) == (4, 4, [])


def test_the_ambiguity_error_names_the_line_after_blank_lines(tmp_path):
    text = "\n\n" + with_token(0, 4, "O") + "\n" + good_line(1) + "\n"
    with pytest.raises(InputDataError, match=r"h.csv: line 3: cannot tell whether it is a "
                                             r"header or data"):
        read_text(tmp_path, text)


INDEX_HEADERS = [
    (",".join(str(k) for k in range(64)), {}),
    (",".join(str(k) for k in range(1, 65)), {}),
    (",".join(f'"{k}"' for k in range(64)), {}),
    ("," + ",".join(str(k) for k in range(64)), {"id_column": 1}),
    ("id," + ",".join(str(k) for k in range(64)), {"id_column": 1}),
    ("id," + ",".join(str(k) for k in range(64)), {"id_column": "id"}),
    ("id," + ",".join(str(k) for k in range(64)) + ",label",
     {"id_column": "id", "label_column": "label"}),
    ("id," + ",".join(str(k) for k in range(64)) + ",label", {"id_column": 1, "label_column": 66}),
    (",".join(str(k) for k in range(64)) + ",label", {"label_column": 65}),
    (",".join(str(k) for k in range(64)) + ",label", {"label_column": "label"}),
    ("\t".join(str(k) for k in range(64)), {}),
    (" ".join(str(k) for k in range(64)), {}),
]


@pytest.mark.parametrize(("header", "options"), INDEX_HEADERS)
def test_a_header_of_column_indexes_is_a_header(tmp_path, digits_rows, header, options):
    """pandas writes 0,1,...,63 for an unnamed frame: it was scored as a row of data and
    every row number after it was off by one."""
    sep = "\t" if "\t" in header else " " if " " in header else ","
    lines = [header]
    for i, row in enumerate(digits_rows[:6]):
        cells = [f"{v:g}" for v in row]
        if "id" in header or header.startswith(","):
            cells.insert(0, f"r{i}")
        if "label" in header:
            cells.append(str(i % 10))
        lines.append(sep.join(cells))
    source, X, ids, rejects, n = read_text(tmp_path, "\n".join(lines) + "\n", **options)
    assert source.layout.header
    assert (n, rejects) == (6, [])
    np.testing.assert_array_equal(X, digits_rows[:6].astype(np.float32))
    if "id_column" in options:
        assert ids == [f"r{i}" for i in range(6)]


@pytest.mark.parametrize(("first", "options"), [
    (good_line(0), {}),
    ("t0," + good_line(0), {"id_column": 1}),
    ("t0," + good_line(0) + ",3", {"id_column": 1, "label_column": -1}),
    (good_line(0) + ",zero", {"id_column": -1}),
    (with_token(0, 3, ""), {}),
    (with_token(0, 3, "nan"), {}),
    (",".join(str(k) for k in range(2, 66)), {}),
    (",".join(f"{k}.0" for k in range(64)), {}),
])
def test_a_first_line_that_can_be_data_is_data(tmp_path, first, options):
    """An id column given by index may hold words: they do not make the line a header."""
    rest = [good_line(i) for i in range(1, 4)]
    if "id_column" in options:
        rest = [f"t{i}," + line if options["id_column"] == 1 else line + f",w{i}"
                for i, line in enumerate(rest, 1)]
    if options.get("label_column") == -1:
        rest = [line + ",3" for line in rest]
    source, _, _, rejects, n = read_text(tmp_path, "\n".join([first, *rest]) + "\n", **options)
    assert not source.layout.header
    assert n == 4
    assert len(rejects) <= 1  # only a first line with a bad cell


@pytest.mark.parametrize("first", [
    ",".join(f"pixel_{k}" for k in range(64)),
    ",".join(f"p{k}" for k in range(60)) + ",60,61,62,63",
    "id," + ",".join(f"p{k}" for k in range(64)),
])
def test_a_first_line_of_names_is_a_header(tmp_path, first):
    rest = [("t," if first.startswith("id") else "") + good_line(i) for i in range(3)]
    options = {"id_column": "id"} if first.startswith("id") else {}
    source, _, _, rejects, n = read_text(tmp_path, "\n".join([first, *rest]) + "\n", **options)
    assert source.layout.header and (n, rejects) == (3, [])


def test_an_ambiguous_line_of_the_wrong_width_says_so(tmp_path):
    """When neither reading can work, the width is the problem to name."""
    text = "t0," + good_line(0) + "\n" + "t1," + good_line(1) + "\n"
    with pytest.raises(InputDataError, match=r"line 1: expected 64 feature columns, found 65 "
                                             r"\(65 columns in all\); name the extra columns"):
        read_text(tmp_path, text)


# -- blank lines: skipped anywhere, however many, at the cost of a byte scan ------------------

@pytest.mark.parametrize("blank", ["\n", "\r\n", " \n", "\t\r\n"])
@pytest.mark.parametrize("count", [1, 1000, 70_000])
def test_any_number_of_blank_lines_before_the_header(tmp_path, digits_rows, blank, count):
    """70,000 blank lines (more than the sniffer reads ahead) gave "the file is empty"."""
    header = ",".join(f"p{k}" for k in range(64))
    text = blank * count + header + "\n" + rows_text(digits_rows[:3]) + "x\n"
    _, X, _, rejects, n = read_text(tmp_path, text)
    assert n == 4
    np.testing.assert_array_equal(X, digits_rows[:3].astype(np.float32))
    assert rejects == [f"line {count + 5}: expected 64 columns, found 1"]


@pytest.mark.parametrize("count", [1, 70_000])
def test_blank_lines_before_headerless_data(tmp_path, digits_rows, count):
    _, X, _, rejects, n = read_text(tmp_path, "\n" * count + rows_text(digits_rows[:3])
                                    + "x\n", header=None)
    assert n == 4 and len(X) == 3
    assert rejects == [f"line {count + 4}: expected 64 columns, found 1"]


def test_a_file_of_blank_lines_only_is_empty(tmp_path):
    for text in ("\n" * 100_000, " \r\n" * 30_000, "\n" * 70_000 + "   "):
        with pytest.raises(InputDataError, match=r"h.csv: the file is empty"):
            read_text(tmp_path, text)


@pytest.mark.parametrize("chunk_bytes", [300, 4096, 1 << 20])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_blank_lines_anywhere_are_skipped_and_counted_in_line_numbers(
        tmp_path, digits_rows, chunk_bytes, newline):
    lines = []
    for i, row in enumerate(digits_rows[:40]):
        lines += [""] * (i % 4) + [",".join(f"{v:g}" for v in row)]
    lines[50] = "x"  # a bad line among them
    text = newline.join(["p" + ",p".join(str(k) for k in range(64)), *lines]) + newline * 3
    bad_row = sum(1 for ln in lines[:50] if ln)
    _, X, _, rejects, n = read_text(tmp_path, text, chunk_bytes=chunk_bytes)
    assert n == 40 and len(X) == 39
    assert rejects == ["line 52: expected 64 columns, found 1"]
    np.testing.assert_array_equal(X, np.delete(digits_rows[:40], bad_row, axis=0)
                                  .astype(np.float32))


def test_blank_lines_in_a_gzipped_and_a_whitespace_separated_file(tmp_path, digits_rows):
    text = "\n\n" + rows_text(digits_rows[:5]).replace("\n", "\n\n\r\n")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(text.encode()))
    X, rejects, n = read_all(tmp_path / "b.csv.gz")
    assert (n, rejects) == (5, [])
    # Separated by blanks, a line of blanks is a blank line too.
    (tmp_path / "b.txt").write_text(text.replace(",", "  ").replace("\r\n", "  \t\n"))
    X, rejects, n = read_all(tmp_path / "b.txt", delimiter="whitespace")
    assert (n, rejects) == (5, [])
    np.testing.assert_array_equal(X, digits_rows[:5].astype(np.float32))


PEAK_RSS = """
import sys
from digits_onnx.inference.readers import ReadOptions, open_source
source = open_source(sys.argv[1], ReadOptions())
rows = sum(b.n_rows + 0 * len(b.rejects) for b in source.batches())
source.close()
# VmHWM, not ru_maxrss: Linux carries the parent's peak into a child across fork and exec.
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(rows, int(hwm.split()[1]) // 1024)
"""


def peak_rss_mb(path: Path) -> tuple[int, int]:
    """(rows, peak RSS in MB) of reading ``path`` in a fresh interpreter."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path)], capture_output=True,
                         text=True, check=True, timeout=300).stdout.split()
    return int(out[0]), int(out[1])


@pytest.mark.slow
def test_megabytes_of_blank_lines_keep_memory_flat(tmp_path):
    """2 MB of blank lines after a header peaked at 1.7 GB: each was a row of 64 nulls."""
    path = tmp_path / "blank.csv"
    path.write_text(",".join(f"p{k}" for k in range(64)) + "\n" + "\n" * 2_000_000
                    + good_line(0) + "\n" + "\r\n" * 2_000_000 + good_line(1) + "\n")
    rows, peak = peak_rss_mb(path)
    assert rows == 2
    assert peak < 400, f"peak RSS {peak} MB"


# -- bad rows in bulk -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_million_bad_lines_take_seconds(tmp_path):
    """A 4 kB .gz of 2M lines of 'x' took 8 minutes and 1 GB, bisected to single lines."""
    import time

    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(HEADER.encode() + b"\n" + b"x\n" * 2_000_000))
    started = time.perf_counter()
    source = open_source(str(path))
    n = most = 0
    for batch in source.batches():
        n += batch.n_rows
        most = max(most, len(batch.rejects))
        assert [r.reason for r in batch.rejects[:1]] in ([], ["expected 64 columns, found 1"])
    source.close()
    assert n == 2_000_000
    assert most <= 1 << 19  # rejects come in bounded batches
    assert time.perf_counter() - started < 60


def one_line_verdict(tmp_path: Path, header: str, line: str) -> str | list[float]:
    """What the reader makes of ``line`` alone after ``header``: its values or its reject."""
    path = tmp_path / "one.csv"
    path.write_bytes((header + "\n").encode() + line.encode("utf-8", "surrogateescape")
                     + b"\n")
    source = open_source(str(path), ReadOptions(header=True))
    (batch,) = list(source.batches())
    source.close()
    if batch.rejects:
        (reject,) = batch.rejects
        return f"column {reject.column}: {reject.reason}"
    return batch.X[0].tolist()


MIXED_LINES = [bad for bad, _ in BAD_LINES] + [
    with_token(1, 0, '"7"'), with_token(2, 5, ' 3 '), with_token(3, 63, "1e-3"),
    with_token(4, 2, "+2"), with_token(5, 2, "0x10"), with_token(6, 9, "Inf"),
    with_token(7, 9, "1e309"), with_token(8, 9, "\ufeff1"), with_token(9, 9, "\udce9"),
    with_token(10, 9, '"1\n2"'), '"' + good_line(11), good_line(12) + '"',
    with_token(13, 40, '"a""b"'), with_token(14, 40, "é"), with_token(15, 0, "\t"),
    with_token(16, 3, "nan(1)"), with_token(17, 3, "-"), with_token(18, 3, "."),
    with_token(19, 7, "1\r2"),
]


@pytest.mark.parametrize("seed", range(6))
def test_bulk_diagnosis_agrees_with_reading_each_line_alone(tmp_path, seed):
    """Bad blocks are diagnosed a column at a time; every verdict (values or reason) must be
    what the reader gives the same line in a file of its own."""
    rng = np.random.default_rng(seed)
    header = ",".join(f"p{k}" for k in range(64))
    pool = MIXED_LINES + [good_line(i) for i in range(30)]
    lines = [pool[i] for i in rng.integers(0, len(pool), 300)]
    data = "\n".join([header, *lines]) + "\n"
    path = tmp_path / "mixed.csv"
    path.write_bytes(data.encode("utf-8", "surrogateescape"))
    source = open_source(str(path), ReadOptions(chunk_bytes=int(rng.integers(500, 40_000))))
    got: dict[int, str | list[float]] = {}
    for batch in source.batches():
        for r in batch.rejects:
            got[r.line] = f"column {r.column}: {r.reason}"
        for line, x in zip(batch.line_numbers(np.arange(len(batch.X))), batch.X, strict=True):
            got[line] = x.tolist()
    source.close()
    physical = data.split("\n")[1:-1]
    for number, line in enumerate(physical, start=2):
        if "\n" not in line:
            assert got.get(number) == one_line_verdict(tmp_path, header, line), (number, line)


FLOAT_ALPHABET = [*"0123456789+-.eEinfatyINFATY()_xX \tb,", "nan", "inf", "infinity"]


def test_the_float_pattern_is_what_pyarrow_parses():
    """The bulk diagnosis decides 'is a number' with a pattern: it must match exactly the
    tokens pyarrow's parser accepts."""
    import random

    import pyarrow as pa
    import pyarrow.compute as pc
    from digits_onnx.inference.readers.csv_diagnosis import FLOAT_PATTERN, INT_PATTERN

    rng = random.Random(3)
    tokens = sorted({"".join(rng.choice(FLOAT_ALPHABET) for _ in range(rng.randint(0, 7)))
                     for _ in range(60_000)})
    cells = pc.utf8_trim(pa.array(tokens), characters=" \t")
    for pattern, to in ((FLOAT_PATTERN, pa.float64()), (INT_PATTERN, pa.int64())):
        matched = pc.match_substring_regex(cells, pattern, ignore_case=True).to_pylist()
        for token, match in zip(cells.to_pylist(), matched, strict=True):
            try:
                pa.array([token]).cast(to)
                parses = True
            except pa.ArrowInvalid:
                parses = False
            assert match == parses or (to == pa.int64() and match and len(token) > 18), token


# -- the format from the content, and streams given as paths -------------------------------

@pytest.mark.parametrize("name", ["x.dat", "x.data", "x.tra", "x", "x.weird", "X.DAT"])
@pytest.mark.parametrize("sep", [",", "\t", ";", " "])
def test_delimited_text_with_any_extension_is_read_by_content(tmp_path, digits_rows, name, sep):
    from digits_onnx.inference.readers import detect_format

    path = tmp_path / name
    path.write_text(HEADER.replace(",", sep) + "\n" + rows_text(digits_rows[:9], sep))
    assert detect_format(str(path)) == "csv"
    X, rejects, n = read_all(path)
    assert (n, rejects) == (9, [])
    np.testing.assert_array_equal(X, digits_rows[:9].astype(np.float32))


@pytest.mark.parametrize("name", ["x.dat", "x"])
def test_gzipped_text_with_any_extension_is_read_by_content(tmp_path, digits_rows, name):
    from digits_onnx.inference.readers import detect_format

    path = tmp_path / name
    path.write_bytes(gzip.compress(rows_text(digits_rows[:9]).encode()))
    assert detect_format(str(path)) == "csv.gz"
    _, _, n = read_all(path)
    assert n == 9


NOT_INPUTS = [
    (b"", "it is empty"),
    (b"This folder holds the nightly digits.\nSee the wiki.\n",
     "it is not NPY, Parquet, gzip or delimited text"),
    (b'{"row": 0, "label": 3, "confidence": 0.9}\n{"row": 1, "label": 4, "confidence": 0.8}\n',
     "it is not NPY, Parquet, gzip or delimited text"),
    (bytes(range(256)) * 4, "it is not NPY, Parquet, gzip or delimited text"),
    (b"1,2,3\x00,4\n", "it is not NPY, Parquet, gzip or delimited text"),
    (b"\xe9,1,2\n3,4,5\n", "it is not NPY, Parquet, gzip or delimited text"),
    (b"PK\x03\x04 a zip file", "it is not NPY, Parquet, gzip or delimited text"),
]


@pytest.mark.parametrize(("data", "what"), NOT_INPUTS)
def test_a_file_that_is_no_input_format_is_a_usage_error(tmp_path, data, what):
    """Directory scans take the UsageError as "not an input"; a file named on the command
    line gets the message."""
    from digits_onnx.inference.readers import detect_format

    path = tmp_path / "notes"
    path.write_bytes(data)
    message = (f"{path}: cannot tell the format from the extension or the content ({what}); "
               "use --input-format (csv, tsv, csv.gz, tsv.gz, npy, parquet)")
    with pytest.raises(UsageError) as info:
        detect_format(str(path))
    assert str(info.value) == message
    with pytest.raises(UsageError) as info:
        open_source(str(path))
    assert str(info.value) == message


def test_the_extension_and_the_option_come_before_the_content(tmp_path, digits_rows):
    from digits_onnx.inference.readers import detect_format

    path = tmp_path / "x.txt"  # .txt is CSV whatever it holds
    np.save(tmp_path / "a.npy", digits_rows[:3])
    path.write_bytes((tmp_path / "a.npy").read_bytes())
    assert detect_format(str(path)) == "csv"
    assert detect_format(str(tmp_path / "notes"), "npy") == "npy"  # not read at all
    data = tmp_path / "x.dat"
    data.write_text(rows_text(digits_rows[:3], "\t"))
    assert detect_format(str(data), "tsv") == "tsv"
    _, _, n = read_all(data, input_format="tsv")
    assert n == 3


def test_an_unreadable_file_of_unknown_format_is_a_usage_error(tmp_path):
    import os

    path = tmp_path / "locked"
    path.write_text("1,2\n")
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as a user who reads any file")
    from digits_onnx.inference.readers import detect_format

    with pytest.raises(UsageError, match=r"locked: cannot read it to tell its format"):
        detect_format(str(path))


def feed_fifo(path: Path, data: bytes):
    """Make ``path`` a named pipe and write ``data`` into it from a thread."""
    import os
    import threading

    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as fh:
            fh.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("name", ["pipe.csv", "pipe", "pipe.dat"])
@pytest.mark.parametrize("gz", [False, True])
def test_a_named_pipe_is_streamed(tmp_path, digits_rows, name, gz):
    """A FIFO given as a path is read once, as it comes; its first bytes tell gzip."""
    from digits_onnx.inference.readers import detect_format

    data = (HEADER + "\n" + rows_text(np.tile(digits_rows, (60, 1)))).encode()
    path = tmp_path / (name + (".gz" if gz and name.endswith(".csv") else ""))
    thread = feed_fifo(path, gzip.compress(data) if gz else data)
    if not path.name.endswith((".csv", ".gz")):
        assert detect_format(str(path)) == "csv"  # a stream is not read to tell
    X, rejects, n = read_all(path, chunk_bytes=1 << 16)
    thread.join(5)
    assert (n, rejects) == (12_000, [])
    np.testing.assert_array_equal(X, np.tile(digits_rows, (60, 1)).astype(np.float32))


def run_scorer_on_stdin(tmp_path: Path, data: bytes, *args: str):
    import subprocess
    import sys

    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", *args, "-o",
                           str(out), "-q"], input=data, capture_output=True, timeout=120,
                          check=False)
    return proc, out


@pytest.mark.parametrize("path", ["/dev/stdin", "-"])
def test_dev_stdin_and_dash_read_csv_and_gzip_from_a_pipe(tmp_path, digits_rows, path):
    data = rows_text(digits_rows[:50]).encode()
    for payload in (data, gzip.compress(data)):
        proc, out = run_scorer_on_stdin(tmp_path, payload, path)
        assert proc.returncode == 0, proc.stderr
        assert len(out.read_text().splitlines()) == 51


def test_a_replaced_stdin_that_only_reads_is_streamed_not_copied_first(monkeypatch, spools,
                                                                       digits_rows):
    """A sys.stdin whose buffer has read() alone was copied whole to a temporary file before
    its format was looked at; it is read as it comes, as stdin is."""
    import io
    import sys
    import types

    class Reads:
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, n=-1):
            return self._data.read(n)

    data = (HEADER + "\n" + rows_text(digits_rows[:30])).encode()
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=Reads(data)))
    _, batches = read_batches(Path("-"))
    assert sum(b.n_rows for b in batches) == 30 and not any(b.rejects for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.X for b in batches]),
                                  digits_rows[:30].astype(np.float32))
    assert spools.files == []


# -- files of one layout share its parser --------------------------------------------------------

def _parser_of(path: Path, **options):
    source, _ = read_batches(path, **options)
    return source._parser  # which parser a source got is the point here


def test_files_that_share_a_first_line_and_a_delimiter_share_one_parser(tmp_path, digits_rows):
    for i in range(3):
        (tmp_path / f"{i}.csv").write_text(HEADER + "\n" + rows_text(digits_rows[i:i + 4]))
    parsers = {id(_parser_of(tmp_path / f"{i}.csv")) for i in range(3)}
    assert len(parsers) == 1
    # The options are part of what a layout is made of.
    assert id(_parser_of(tmp_path / "0.csv", header=True)) not in parsers


@pytest.mark.parametrize("variant", [
    "a header one byte apart",     # pixel_7_7 -> pixel_7_8: still a header, other names
    "the same header, CRLF",       # the first line differs by its line end
    "the same header, data by ;",  # the lines after it are cut by another delimiter
    "the same header, BOM",        # a byte-order mark before it
    "no header",                   # a first line of data
    "a header of 65 names",        # an extra column: the file is refused
])
def test_a_file_that_differs_from_the_layout_before_it_is_read_as_it_is(
        tmp_path, digits_rows, variant, monkeypatch):
    """Each file's first line and delimiter are its own: whatever files sharing a header
    were read before, a file reads as it reads alone."""
    rows = rows_text(digits_rows[:6])
    texts = {
        "a header one byte apart": HEADER[:-1] + "8\n" + rows,
        "the same header, CRLF": (HEADER + "\n" + rows).replace("\n", "\r\n"),
        "the same header, data by ;": HEADER + "\n" + rows.replace(",", ";"),
        "the same header, BOM": "\ufeff" + HEADER + "\n" + rows,
        "no header": rows,
        "a header of 65 names": "id," + HEADER + "\n" + "".join(
            f"r{i}," + line for i, line in enumerate(rows.splitlines(keepends=True))),
    }
    odd = tmp_path / "odd.csv"
    odd.write_bytes(texts[variant].encode())

    def outcome() -> tuple:
        try:
            source, batches = read_batches(odd)
        except InputDataError as exc:
            return ("error", str(exc))
        return (source.layout, [b.X.tobytes() for b in batches],
                [(r.line, r.column, r.reason) for b in batches for r in b.rejects])

    monkeypatch.setattr(csv_parse, "_known", {})  # no layout known yet: the file alone
    alone = outcome()
    monkeypatch.setattr(csv_parse, "_known", {})
    for i in range(3):  # files of the common header, read before it
        (tmp_path / f"{i}.csv").write_text(HEADER + "\n" + rows_text(digits_rows[i:i + 5]))
        read_batches(tmp_path / f"{i}.csv")
    assert outcome() == alone
