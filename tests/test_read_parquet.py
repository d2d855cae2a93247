"""The Parquet reader: every numeric type reads exactly; ids and labels of any type either
read or are refused by name; a file that lies about itself fails cleanly; memory is bounded."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from digits_onnx.inference import InputDataError
from digits_onnx.inference.readers import ReadOptions, open_source

from tests.readers_support import (
    Feeder,
    assert_a_full_disk_stops_the_copy,
    assert_endless_stream_fails_at_once,
    assert_streams_score_as_the_file,
    disk_limit,
    left_in,
    read_batches,
    refused_as_file_and_stream,
    score_cli,
)


def table_of(X: np.ndarray, **extra: pa.Array) -> pa.Table:
    columns = {f"c{k}": pa.array(X[:, k]) for k in range(X.shape[1])}
    return pa.table({**columns, **extra})


def parquet_bytes(table: pa.Table, **options) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def read(path: Path, **options):
    _, batches = read_batches(path, **options)
    X = np.concatenate([b.X for b in batches])
    ids = [i for b in batches if b.ids is not None for i in b.ids.to_pylist()]
    truth = np.concatenate([b.truth for b in batches if b.truth is not None] or [[]])
    rejects = [f"{r.where()}: {r.reason}" for b in batches for r in b.rejects]
    return X, ids, truth, rejects, sum(b.n_rows for b in batches)


def write(tmp_path: Path, table: pa.Table, name: str = "x.parquet", **options) -> Path:
    path = tmp_path / name
    path.write_bytes(parquet_bytes(table, **options))
    return path


@pytest.mark.parametrize("dtype", ["i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4",
                                   "f8"])
def test_every_numeric_type_reads_exactly(tmp_path, digits_rows, dtype):
    X = digits_rows[:50].astype(dtype)
    got, _, _, rejects, n = read(write(tmp_path, table_of(X), row_group_size=7),
                                 chunk_rows=5)
    assert (n, rejects) == (50, [])
    np.testing.assert_array_equal(got, digits_rows[:50].astype(np.float32))


def test_bad_values_are_rejected_at_their_first_column_without_warnings(tmp_path, digits_rows):
    """A float32 overflow printed numpy's RuntimeWarning on stderr (warnings are errors in
    the tests, so any warning fails this test)."""
    X = digits_rows[:6].copy()
    X[1, 3], X[1, 9] = 1e39, np.nan
    X[2, 0] = np.inf
    X[3, 63] = -1e300
    table = table_of(X)
    X[:, 5] = [0.0, 1.0, 2.0, np.nan, 4.0, np.nan]
    table = table.set_column(5, "c5", pa.array([0.0, 1.0, 2.0, None, 4.0, None]))
    got, _, _, rejects, n = read(write(tmp_path, table))
    assert n == 6
    assert rejects == [
        "row 1, column 4 (c3): value 1e+39 is outside the float32 range",
        "row 2, column 1 (c0): value inf is infinite",
        "row 3, column 6 (c5): empty cell",
        "row 5, column 6 (c5): empty cell",
    ]
    np.testing.assert_array_equal(got, X[[0, 4]].astype(np.float32))


ID_COLUMNS = [
    (pa.array([f"r{i}" for i in range(4)]), [f"r{i}" for i in range(4)]),
    (pa.array([f"r{i}" for i in range(4)], pa.large_string()), [f"r{i}" for i in range(4)]),
    (pa.array(["a", "b", "a", "b"]).dictionary_encode(), ["a", "b", "a", "b"]),
    (pa.array([10, 11, 12, 13]), ["10", "11", "12", "13"]),
    (pa.array([0.5, 1.5, 2.5, 3.5]), ["0.5", "1.5", "2.5", "3.5"]),
    (pa.array([1, 2, 3, 4], pa.date32()), [f"1970-01-0{i}" for i in range(2, 6)]),
    (pa.array([b"r0", b"r1", b"r2", b"r3"]), ["r0", "r1", "r2", "r3"]),
    (pa.array(["x", None, "y", "z"]), ["x", None, "y", "z"]),
]


@pytest.mark.parametrize(("ids", "expected"), ID_COLUMNS, ids=[str(c[0].type) for c in ID_COLUMNS])
def test_id_columns_of_text_numbers_and_dates_read_as_text(tmp_path, digits_rows, ids, expected):
    path = write(tmp_path, table_of(digits_rows[:4], id=ids))
    _, got, _, rejects, n = read(path, id_column="id")
    assert (n, rejects, got) == (4, [], expected)


def test_an_id_of_bytes_that_are_not_utf8_rejects_its_row(tmp_path, digits_rows):
    path = write(tmp_path, table_of(digits_rows[:3], id=pa.array([b"a", b"\xff", b"c"])))
    _, got, _, rejects, n = read(path, id_column="id")
    assert (n, got) == (3, ["a", "c"])
    assert rejects == ["row 1, column 65 (id): the id is bytes that are not UTF-8 text"]


LABEL_COLUMNS = [
    (pa.array([3, 1, 4, 1], pa.int8()), [3, 1, 4, 1], []),
    (pa.array([3, 1, 4, 1], pa.uint64()), [3, 1, 4, 1], []),
    (pa.array([3.0, 1.0, 4.0, 1.0]), [3, 1, 4, 1], []),
    (pa.array([3.0, 1.5, float("nan"), None]), [3],
     ["row 1, column 65 (label): label 1.5 is not an integer",
      "row 2, column 65 (label): label nan is not an integer",
      "row 3, column 65 (label): empty cell"]),
    (pa.array(["3", " 1", "seven", ""]), [3, 1],
     ["row 2, column 65 (label): label 'seven' is not an integer",
      "row 3, column 65 (label): label '' is not an integer"]),
    (pa.array(["3", "1", "4", "1"]).dictionary_encode(), [3, 1, 4, 1], []),
    (pa.array([2**63 + 1, 1, 2, 3], pa.uint64()), [1, 2, 3],
     ["row 0, column 65 (label): label 9223372036854775809 is beyond int64"]),
    (pa.array(["99999999999999999999", "1", "2", "3"]), [1, 2, 3],
     ["row 0, column 65 (label): label '99999999999999999999' is not an integer"]),
    # No digit is -1 or 10, whatever the column's type.
    (pa.array([3, -1, 10, 9], pa.int8()), [3, 9],
     ["row 1, column 65 (label): label -1 is outside 0..9",
      "row 2, column 65 (label): label 10 is outside 0..9"]),
    (pa.array([10, 1, 2, 2**63 - 1], pa.uint64()), [1, 2],
     ["row 0, column 65 (label): label 10 is outside 0..9",
      "row 3, column 65 (label): label 9223372036854775807 is outside 0..9"]),
    (pa.array([3.0, -1.0, 10.0, None]), [3],
     ["row 1, column 65 (label): label -1 is outside 0..9",
      "row 2, column 65 (label): label 10 is outside 0..9",
      "row 3, column 65 (label): empty cell"]),
    (pa.array(["-1", "09", " 10", "x"]).dictionary_encode(), [9],
     ["row 0, column 65 (label): label -1 is outside 0..9",
      "row 2, column 65 (label): label 10 is outside 0..9",
      "row 3, column 65 (label): label 'x' is not an integer"]),
]


@pytest.mark.parametrize(("labels", "truth", "rejects"), LABEL_COLUMNS,
                         ids=[f"{c[0].type}-{k}" for k, c in enumerate(LABEL_COLUMNS)])
def test_label_columns_of_integers_whole_floats_and_digits(tmp_path, digits_rows, labels, truth,
                                                           rejects):
    """A float or string label column raised ArrowInvalid (a traceback) when cast."""
    path = write(tmp_path, table_of(digits_rows[:4], label=labels))
    _, _, got, problems, n = read(path, label_column="label")
    assert (n, problems) == (4, rejects)
    np.testing.assert_array_equal(got, truth)


@pytest.mark.parametrize(("option", "values", "message"), [
    ("id_column", pa.array([[1], [2], [3]]), "has type list<element: int64>, which cannot be the "
     "--id-column: an id must be text, a number or a date"),
    ("id_column", pa.array([{"a": 1}] * 3), "has type struct<a: int64>, which cannot be the "
     "--id-column: an id must be text, a number or a date"),
    ("id_column", pa.array([None] * 3), "has type null, which cannot be the --id-column: an "
     "id must be text, a number or a date"),
    ("label_column", pa.array([[1], [2], [3]]), "has type list<element: int64>, which cannot be "
     "the --label-column: labels must be integers"),
    ("label_column", pa.array([{"a": 1}] * 3), "has type struct<a: int64>, which cannot be "
     "the --label-column: labels must be integers"),
    ("label_column", pa.array([True, False, True]), "has type bool, which cannot be the "
     "--label-column: labels must be integers"),
    ("label_column", pa.array([1, 2, 3], pa.timestamp("ms")), "has type timestamp[ms], which "
     "cannot be the --label-column: labels must be integers"),
])
def test_id_and_label_columns_of_other_types_are_refused_by_name(tmp_path, digits_rows, option,
                                                                 values, message):
    path = write(tmp_path, table_of(digits_rows[:3], extra=values))
    with pytest.raises(InputDataError) as info:
        open_source(str(path), ReadOptions(**{option: "extra"}))
    assert str(info.value) == f"{path}: column 65 (extra) {message}"


def _patched_footer(data: bytes, old: bytes, new: bytes, occurrence: int = 0) -> bytes:
    """The file with the ``occurrence``-th ``old`` in its footer replaced by ``new``."""
    size = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - size
    footer = data[start:-8]
    at = -1
    for _ in range(occurrence + 1):
        at = footer.index(old, at + 1)
    footer = footer[:at] + new + footer[at + len(old):]
    return data[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def _zigzag_field(delta_type: int, value: int) -> bytes:
    """A thrift compact i64 field header and value (zigzag varint)."""
    n, out = value << 1, bytearray([delta_type])
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize("declared", [2000, 64, 0, 1001])
def test_a_footer_whose_row_count_lies(tmp_path, digits_rows, declared):
    """The footer said 2000 rows, the data held 1000: row accounting failed with a
    RuntimeError traceback."""
    X = np.resize(digits_rows, (1000, 64))
    data = parquet_bytes(table_of(X), row_group_size=1000)
    path = tmp_path / "lies.parquet"
    path.write_bytes(_patched_footer(data, _zigzag_field(0x16, 1000),
                                     _zigzag_field(0x16, declared)))
    with pytest.raises(InputDataError) as info:
        source = open_source(str(path))
        list(source.batches())
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "the footer declares" in message, message


def _page_flips(data: bytes, step: int) -> list[bytes]:
    size = int.from_bytes(data[-8:-4], "little")
    out = []
    for pos in range(4, len(data) - 8 - size, step):
        flipped = bytearray(data)
        flipped[pos] ^= 0x5A
        out.append(bytes(flipped))
    return out


@pytest.mark.parametrize("compression", ["snappy", "zstd", "none"])
def test_a_corrupted_byte_in_a_page_is_an_error_or_a_checked_row(tmp_path, digits_rows,
                                                                  compression):
    """One flipped byte in a page raised OSError from inside pyarrow (a traceback). Pages
    written with checksums are verified; without them a flipped value byte can only be
    caught if it makes the value unscorable."""
    data = parquet_bytes(table_of(digits_rows[:200]), compression=compression,
                         write_page_checksum=True)
    outcomes = set()
    for k, flipped in enumerate(_page_flips(data, 53)):
        path = tmp_path / f"f{k}.parquet"
        path.write_bytes(flipped)
        try:
            X, _, _, rejects, n = read(path)
        except InputDataError as exc:
            assert str(exc).startswith(f"{path}: "), exc
            outcomes.add("error")
            continue
        assert n == 200 and len(X) + len(rejects) == 200
        outcomes.add("read")
    assert "error" in outcomes


def test_a_column_name_that_is_not_utf8(tmp_path, digits_rows):
    data = parquet_bytes(table_of(digits_rows[:3]).rename_columns(
        ["\u00e9" + str(k) for k in range(64)]))
    path = tmp_path / "names.parquet"
    path.write_bytes(data.replace("\u00e90".encode(), b"\xe9\xff0"))
    with pytest.raises(InputDataError) as info:
        open_source(str(path))
    assert str(info.value) == f"{path}: a column name is not UTF-8 text; save the names as UTF-8"


def test_a_file_of_no_rows_reads_as_no_rows(tmp_path, digits_rows):
    """As a header-only CSV and an NPY of shape (0, 64): a normal night, not an error."""
    path = write(tmp_path, table_of(digits_rows[:0]))
    source = open_source(str(path))
    assert list(source.batches()) == []
    source.close()


def test_columns_are_chosen_by_name_in_any_order(tmp_path, digits_rows):
    table = table_of(digits_rows[:5], label=pa.array([1, 2, 3, 4, 5]))
    order = ["label", *[f"c{k}" for k in range(63, -1, -1)]]
    path = write(tmp_path, table.select(order))
    X, _, truth, _, _ = read(path, label_column="label")
    np.testing.assert_array_equal(X, digits_rows[:5, ::-1].astype(np.float32))
    np.testing.assert_array_equal(truth, [1, 2, 3, 4, 5])


def test_many_bad_rows_are_rejected_in_bulk(tmp_path):
    """A 0.6 MB Parquet of 2M null rows took minutes, one Python lookup per cell."""
    import time

    path = write(tmp_path, pa.table({f"c{k}": pa.nulls(300_000, pa.float64())
                                     for k in range(64)}))
    started = time.perf_counter()
    X, _, _, rejects, n = read(path)
    assert (n, len(X), len(rejects)) == (300_000, 0, 300_000)
    assert set(r.split(": ", 1)[1] for r in rejects) == {"empty cell"}
    assert time.perf_counter() - started < 20


PEAK = """
import sys
from digits_onnx.inference.readers import ReadOptions, open_source
source = open_source(sys.argv[1], ReadOptions())
rows = sum(b.n_rows for b in source.batches())
source.close()
# VmHWM, not ru_maxrss: Linux carries the parent's peak into a child across fork and exec.
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(rows, int(hwm.split()[1]) // 1024)
"""

WRITE_BIG = """
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
X = np.random.default_rng(0).integers(0, 17, size=(1_000_000, 64)).astype(np.float64)
pq.write_table(pa.table({f"c{k}": X[:, k] for k in range(64)}), sys.argv[1],
               row_group_size=1_000_000)
"""


@pytest.mark.slow
def test_a_single_row_group_of_a_million_rows_is_read_in_bounded_batches(tmp_path):
    """One row group of 1M rows (512 MB decoded) peaked at 514 MB."""
    path = tmp_path / "big.parquet"
    subprocess.run([sys.executable, "-c", WRITE_BIG, str(path)], check=True, timeout=300)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True,
                         text=True, check=True, timeout=300).stdout.split()
    assert int(out[0]) == 1_000_000
    assert int(out[1]) < 300, f"peak RSS {out[1]} MB"


# -- the format from the content, and streams given as paths -------------------------------

@pytest.mark.parametrize("name", ["x.dat", "x", "x.data"])
def test_a_parquet_file_with_any_extension_is_read_by_its_magic(tmp_path, digits_rows, name):
    from digits_onnx.inference.readers import detect_format

    path = write(tmp_path, table_of(digits_rows[:7]), name)
    assert detect_format(str(path)) == "parquet"
    _, _, _, rejects, n = read(path)
    assert (n, rejects) == (7, [])


@pytest.mark.parametrize("name", ["pipe.parquet", "pipe"])
def test_a_parquet_file_through_a_named_pipe_is_spooled(tmp_path, digits_rows, name):
    import os
    import threading

    path = tmp_path / name
    os.mkfifo(path)
    data = parquet_bytes(table_of(np.tile(digits_rows, (5, 1))), row_group_size=300)
    thread = threading.Thread(target=lambda: path.write_bytes(data), daemon=True)
    thread.start()
    X, _, _, rejects, n = read(path)
    thread.join(5)
    assert (n, rejects) == (1000, [])
    np.testing.assert_array_equal(X, np.tile(digits_rows, (5, 1)).astype(np.float32))


@pytest.mark.parametrize("path", ["/dev/stdin", "-"])
def test_a_parquet_file_on_stdin_is_recognised_and_spooled(tmp_path, digits_rows, path):
    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", path, "-o", str(out),
                           "-q"], input=parquet_bytes(table_of(digits_rows[:40])),
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 41


# -- a stream is checked as a file is before it is copied ----------------------------------

NOT_PARQUET = "not a valid Parquet file (bad magic bytes: it does not start with PAR1)"
FILLERS = {"zeros": bytes(1 << 16), "noise": np.random.default_rng(5).bytes(1 << 16),
           "csv": b"1,2,3,4\n" * 8192}
#: More than a reader that stops at once lets a feeder write (the pipe's buffer and its own).
AT_ONCE = 1 << 20


@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/urandom", "zeros", "noise", "csv",
                                  "npy"])
def test_an_endless_stream_that_is_not_parquet_fails_on_its_first_bytes(tmp_path, spools,
                                                                         digits_rows, kind):
    """/dev/zero as Parquet was copied to a temporary file until the disk was full."""
    if kind.startswith("/dev/"):
        path, feeder = kind, None
    else:
        path = str(tmp_path / "endless")
        head = b""
        if kind == "npy":
            sink = io.BytesIO()
            np.save(sink, digits_rows)
            head, kind = sink.getvalue(), "zeros"
        feeder = Feeder(Path(path), head, FILLERS[kind])
    with pytest.raises(InputDataError) as info:
        open_source(path, ReadOptions(input_format="parquet"))
    assert str(info.value) == f"{path}: {NOT_PARQUET}"
    assert spools.written == []  # nothing was copied
    if feeder is not None:
        assert feeder.join() < AT_ONCE


@pytest.mark.parametrize("head", [b"\0\0\0\0", b"PAR2", b"par1"])
def test_a_file_and_a_stream_that_do_not_start_as_parquet_are_refused_alike(
        tmp_path, digits_rows, spools, head):
    """Even with a valid footer: a stream cannot be checked at its end before it is copied,
    so neither is a file (pyarrow read such a file, and said "magic bytes not found in
    footer" of one without a footer)."""
    data = head + parquet_bytes(table_of(digits_rows[:10]))[4:]
    file, of_file, path, of_stream = refused_as_file_and_stream(tmp_path, data, ".parquet",
                                                                "pipe.parquet")
    assert of_file == f"{file}: {NOT_PARQUET}"
    assert of_stream == f"{path}: {NOT_PARQUET}"
    assert spools.written == []


@pytest.mark.parametrize("keep", ["3 bytes", "the magic", "half", "all but the last byte"])
def test_a_parquet_stream_cut_short_is_refused_as_the_file_is(tmp_path, digits_rows, spools,
                                                              keep):
    whole = parquet_bytes(table_of(digits_rows[:50]))
    data = whole[:{"3 bytes": 3, "the magic": 4, "half": len(whole) // 2,
                   "all but the last byte": len(whole) - 1}[keep]]
    file, of_file, path, of_stream = refused_as_file_and_stream(
        tmp_path, data, ".parquet", options=ReadOptions(input_format="parquet"))
    assert of_stream == of_file.replace(str(file), str(path))
    assert "not a valid Parquet file" in of_stream
    assert spools.written == [len(data)] and spools.all_closed()


def test_a_parquet_stream_that_never_ends_fills_the_disk_then_fails_in_one_line(
        tmp_path, spools):
    """A stream that starts as Parquet must be copied whole (its footer is at its end): when
    the disk is full the error is one line, and the temporary file is gone."""
    assert_a_full_disk_stops_the_copy(spools, tmp_path / "pipe", b"PAR1", FILLERS["noise"],
                                      AT_ONCE)


@pytest.mark.parametrize("source", ["/dev/zero", "-"])
def test_the_command_line_fails_an_endless_stream_that_is_not_parquet_at_once(tmp_path,
                                                                              source):
    """/dev/zero, and a pipe on stdin a thread fills forever: exit 65 and one line, nothing
    left in the temporary directory, and the pipe read no further than its first bytes."""
    assert_endless_stream_fails_at_once(tmp_path, source, "parquet", FILLERS["noise"],
                                        NOT_PARQUET, AT_ONCE)


def test_a_valid_parquet_stream_scores_as_the_file_does(tmp_path, digits_rows):
    """Through stdin and through a FIFO: the same output, byte for byte, as the file's."""
    table = table_of(np.tile(digits_rows, (3, 1)), id=pa.array([f"r{i}" for i in range(600)]),
                     label=pa.array(np.arange(600) % 10))
    file = write(tmp_path, table, row_group_size=250)
    assert_streams_score_as_the_file(tmp_path, file, "--id-column", "id", "--label-column",
                                     "label", "--proba", "-q", rows=600)


def test_a_full_disk_while_a_parquet_stream_is_copied_exits_74_in_one_line(tmp_path,
                                                                          digits_rows):
    import os

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    data = parquet_bytes(table_of(np.tile(digits_rows, (10, 1))), compression="none")
    assert len(data) > 64 << 10
    proc = score_cli("-", "-o", str(tmp_path / "out.csv"), input=data,
                     env={**os.environ, "TMPDIR": str(tmp)}, preexec_fn=disk_limit(64 << 10))
    assert (proc.returncode, proc.stderr.decode()) == (74, (
        f"digits-score: error: <stdin>: cannot copy the stream to a temporary file in {tmp} "
        "(File too large); set TMPDIR to use another directory\n"))
    assert left_in(tmp) == [] and not (tmp_path / "out.csv").exists()


# -- large row groups: read in pieces, once their page headers are proven -------------------

@pytest.fixture
def in_pieces(monkeypatch):
    """Read every row group as a large one is: column chunks in pieces, pages checked."""
    from digits_onnx.inference.readers import parquet

    monkeypatch.setattr(parquet, "READ_WHOLE_BYTES", 0)


@pytest.mark.parametrize("options", [
    {}, {"compression": "zstd", "row_group_size": 7}, {"write_page_checksum": True},
    {"use_dictionary": False, "data_page_size": 100, "write_statistics": True},
    {"data_page_version": "2.0", "compression": "snappy"},
])
def test_row_groups_read_in_pieces_read_exactly(tmp_path, digits_rows, in_pieces, options):
    table = table_of(digits_rows[:50], id=pa.array([f"r{i}" for i in range(50)]),
                     label=pa.array(np.arange(50) % 10))
    X, ids, truth, rejects, n = read(write(tmp_path, table, **options), id_column="id",
                                     label_column="label")
    assert (n, rejects) == (50, [])
    np.testing.assert_array_equal(X, digits_rows[:50].astype(np.float32))
    assert ids == [f"r{i}" for i in range(50)]
    np.testing.assert_array_equal(truth, np.arange(50) % 10)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def lying_page(digits_rows, claimed: int) -> bytes:
    """An uncompressed file whose first data page of column c5 claims ``claimed`` bytes."""
    data = bytearray(parquet_bytes(table_of(digits_rows[:20]), compression="none",
                                   use_dictionary=False))
    chunk = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(0).column(5)
    at = chunk.data_page_offset
    # PageHeader: 1 type (0x15 + varint), 2 uncompressed size, 3 compressed size.
    pos = at + 1
    while data[pos] & 0x80:
        pos += 1
    pos += 1
    for _ in range(2):  # past field 2, then onto field 3's value
        assert data[pos] == 0x15
        pos += 1
        start = pos
        while data[pos] & 0x80:
            pos += 1
        pos += 1
    data[start:pos] = _varint(claimed << 1)
    return bytes(data)


def test_a_page_that_claims_more_than_its_chunk_is_refused_before_it_is_read(
        tmp_path, digits_rows, in_pieces):
    """Read in pieces, a page header claiming 2 GB in a 30 kB file made Arrow allocate and
    fill 4 GB before it found the file shorter (found by fuzzing)."""
    path = tmp_path / "lies.parquet"
    path.write_bytes(lying_page(digits_rows, 2**31 - 1))
    with pytest.raises(InputDataError, match=r"lies.parquet: row group 0 is corrupt \(a page "
                                             r"claims 2147483647 bytes where its column chunk "
                                             r"has \d+ left\)"):
        read(path)


LIAR = """
import sys
from digits_onnx.inference import InputDataError
from digits_onnx.inference.readers import ReadOptions, open_source, parquet
parquet.READ_WHOLE_BYTES = 0
try:
    source = open_source(sys.argv[1], ReadOptions())
    sum(b.n_rows for b in source.batches())
except InputDataError:
    pass
hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(int(hwm.split()[1]) // 1024)
"""


def test_a_lying_page_costs_no_memory(tmp_path, digits_rows):
    path = tmp_path / "lies.parquet"
    path.write_bytes(lying_page(digits_rows, 2**31 - 1))
    out = subprocess.run([sys.executable, "-c", LIAR, str(path)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert int(out) < 300, f"peak RSS {out} MB"


@pytest.mark.parametrize("flip", range(0, 400, 7))
def test_the_page_walk_never_fails_otherwise_than_cleanly(tmp_path, digits_rows, in_pieces, flip):
    data = bytearray(parquet_bytes(table_of(digits_rows[:20]), compression="snappy",
                                   write_statistics=True))
    data[4 + flip] ^= 0xA5
    path = tmp_path / "flipped.parquet"
    path.write_bytes(bytes(data))
    try:
        X, _, _, rejects, n = read(path)
    except InputDataError as exc:
        assert str(exc).startswith(f"{path}: ")
    else:
        assert n == 20 and len(X) + len(rejects) == 20


@pytest.mark.parametrize("options", [
    {}, {"row_group_size": 3, "compression": "zstd"}, {"use_dictionary": False},
    {"write_statistics": False}, {"data_page_version": "2.0"},
    {"write_page_index": True, "write_page_checksum": True},
])
def test_the_footer_reader_finds_the_chunks_pyarrow_finds(tmp_path, digits_rows, options):
    """The page walk takes the chunks' places from its own reading of the footer (pyarrow's
    accessor aborts on some corrupt footers): on valid files both agree."""
    import os

    from digits_onnx.inference.readers.parquet_pages import chunk_ranges

    table = table_of(digits_rows[:10], id=pa.array([f"r{i}" for i in range(10)]))
    path = write(tmp_path, table, **options)
    meta = pq.ParquetFile(path).metadata
    expected = []
    for g in range(meta.num_row_groups):
        chunks = []
        for c in range(meta.num_columns):
            chunk = meta.row_group(g).column(c)
            start = chunk.data_page_offset
            if chunk.dictionary_page_offset:
                start = min(start, chunk.dictionary_page_offset)
            chunks.append((start, chunk.total_compressed_size))
        expected.append(chunks)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert chunk_ranges(fd, os.fstat(fd).st_size) == expected
    finally:
        os.close(fd)
