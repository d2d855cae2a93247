"""The NPY reader: every numeric layout reads exactly; hostile headers never allocate."""

from __future__ import annotations

import io
import struct

import numpy as np
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
    refused_as_file_and_stream,
    score_cli,
)


def read_all(path, chunk_rows=1 << 17):
    source = open_source(str(path), ReadOptions(chunk_rows=chunk_rows))
    try:
        batches = list(source.batches())
    finally:
        source.close()
    return np.concatenate([b.X for b in batches]), [r for b in batches for r in b.rejects]


@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<f4", ">f4", "<f2", "u1", "i1", "<i2", ">i4",
                                   "<i8", ">u8", "<u4"])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", ["flat", "image"])
def test_every_numeric_layout_reads_exactly(tmp_path, digits_rows, dtype, order, shape):
    X = digits_rows[:37].astype(dtype)
    if shape == "image":
        X = X.reshape(-1, 8, 8)
    path = tmp_path / "x.npy"
    np.save(path, np.asarray(X, order=order))
    got, rejects = read_all(path, chunk_rows=10)
    assert not rejects
    np.testing.assert_array_equal(got, digits_rows[:37].astype(np.float32))


def test_nonfinite_rows_are_rejected_with_row_and_column(tmp_path, digits_rows):
    X = digits_rows[:6].copy()
    X[2, 5] = np.nan
    X[4, 63] = -np.inf
    X[5, 0] = 1e300
    np.save(tmp_path / "x.npy", X)
    got, rejects = read_all(tmp_path / "x.npy")
    assert [f"{r.where()}: {r.reason}" for r in rejects] == [
        "row 2, column 6: value nan is not a number (NaN)",
        "row 4, column 64: value -inf is infinite",
        "row 5, column 1: value 1e+300 is outside the float32 range",
    ]
    np.testing.assert_array_equal(got, X[[0, 1, 3]].astype(np.float32))


def npy_bytes(header: dict, data: bytes = b"", version=(1, 0)) -> bytes:
    text = repr(header).encode("latin1")
    text += b" " * ((-(len(text) + 11)) % 64) + b"\n"
    size = struct.pack("<H", len(text)) if version == (1, 0) else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes(version) + size + text + data


def npy_text(header: str | bytes, data: bytes = b"", version=(1, 0)) -> bytes:
    """An NPY file whose header is ``header`` as written, valid or not."""
    text = header if isinstance(header, bytes) else header.encode(
        "utf-8" if version == (3, 0) else "latin1")
    width = 2 if version == (1, 0) else 4
    text += b" " * ((-(len(text) + 9 + width)) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + len(text).to_bytes(width, "little") + text + data


def saved(array, version=None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), version=version)
    return buffer.getvalue()


HOSTILE = [
    (b"", "the file is empty"),
    (b"PK\x03\x04 zip", "not an NPY file (bad magic bytes); was it written by numpy.save?"),
    (b"\x93NUMPY\x09\x00\x10\x00", "unsupported NPY format version 9.0"),
    (b"\x93NUMPY\x01\x00\xff\x00{'descr'", "the NPY header is truncated"),
    (npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**12, 64)}),
     "the file is truncated: its header declares 1000000000000 rows (512000000000128 bytes "
     "in all) but it holds 128 bytes"),
    (saved(np.zeros((4, 64)))[:-8],
     "the file is truncated: its header declares 4 rows (2176 bytes in all) but it holds "
     "2168 bytes"),
    (saved(np.zeros((4, 64))) + b"\x00" * 8,
     "the file has 8 bytes after the array it declares; it may hold several arrays, which is "
     "not supported"),
    (saved(np.zeros(64)), "the array has shape (64,); expected (N, 64) or (N, 8, 8)"),
    (saved(np.zeros((2, 2, 8, 8))), "the array has shape (2, 2, 8, 8); expected (N, 64) or "
     "(N, 8, 8)"),
    (saved(np.zeros((3, 63))), "the array has shape (3, 63); expected (N, 64) or (N, 8, 8)"),
    (saved(np.zeros((3, 65))), "the array has shape (3, 65); expected (N, 64) or (N, 8, 8)"),
    (saved(np.zeros((3, 64), complex)), "the array has dtype <c16 (complex); expected integers "
     "or floats"),
    (saved(np.zeros((3, 64), "U3")), "the array has dtype <U3 (string); expected integers or "
     "floats"),
    (saved(np.zeros((3, 64), bool)), "the array has dtype |b1 (boolean); expected integers or "
     "floats"),
    (saved(np.zeros((3, 64), [("a", "<f4"), ("b", "<i4")])),
     "the array has a structured dtype [('a', '<f4'), ('b', '<i4')]; save a plain numeric "
     "(N, 64) array"),
    (npy_bytes({"descr": "|O", "fortran_order": False, "shape": (1, 64)}, b"\x80\x04N."),
     "the array holds Python objects, which would need pickle; save a numeric array"),
    (npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (1, 64)}).replace(
        b"'descr'", b"'dexcr'"), "the NPY header is not valid"),
    (npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (-1, 64)}),
     "the NPY header is not valid"),
    (b"\x93NUMPY\x01\x00\x10\x00__import__('os')\n", "the NPY header is not valid"),
    # numpy reads the long integers of Python 2 headers (with a warning); the reader never did.
    (npy_text("{'descr': '<f8', 'fortran_order': False, 'shape': (1L, 64), }", bytes(512)),
     "the NPY header is not valid"),
    (npy_text("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 64), 'x': 0}", bytes(512)),
     "the NPY header is not valid"),
    (npy_text("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 64), ", bytes(512)),
     "the NPY header is not valid"),
    (npy_text("{'descr': '<f8', 'fortran_order': False, 'shape': (" + "-" * 3000 + "1, 64)}"),
     "the NPY header is not valid: it nests too deeply"),
    (npy_text("{'descr': '<f8', 'fortran_order': False, 'shape': (" + "-" * 9000 + "1, 64)}"),
     "the NPY header is not valid: it nests too deeply"),
    (saved(np.zeros((3, 64), [("\u03b1", "<f4")]), version=(3, 0)),
     "the array has a structured dtype [('\u03b1', '<f4')]; save a plain numeric (N, 64) array"),
    (npy_text(b"{'descr': '<f8', 'fortran_order': False, 'shape': (1, 64), }\x80", bytes(512),
              version=(3, 0)), "the NPY header is not valid"),
]


@pytest.mark.parametrize(("data", "message"), HOSTILE)
def test_hostile_npy_files_are_refused_before_allocating(tmp_path, data, message):
    path = tmp_path / "x.npy"
    path.write_bytes(data)
    with pytest.raises(InputDataError) as info:
        open_source(str(path))
    assert str(info.value) == f"{path}: {message}"


def test_truncated_while_reading_is_an_error_not_a_crash(tmp_path, digits_rows):
    path = tmp_path / "x.npy"
    np.save(path, np.repeat(digits_rows, 10, axis=0))
    source = open_source(str(path), ReadOptions(chunk_rows=100))
    batches = source.batches()
    next(batches)
    with open(path, "r+b") as fh:
        fh.truncate(4096)
    with pytest.raises(InputDataError, match="the file ended early"):
        list(batches)
    source.close()


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_header_version_reads(tmp_path, digits_rows, version):
    path = tmp_path / "x.npy"
    path.write_bytes(saved(digits_rows[:5], version=version))
    got, rejects = read_all(path)
    assert not rejects
    np.testing.assert_array_equal(got, digits_rows[:5].astype(np.float32))


# -- the format from the content, and streams given as paths -------------------------------

@pytest.mark.parametrize("name", ["x.dat", "x", "x.data", "x.tra"])
def test_an_npy_file_with_any_extension_is_read_by_its_magic(tmp_path, digits_rows, name):
    from digits_onnx.inference.readers import detect_format

    path = tmp_path / name
    path.write_bytes(saved(digits_rows[:7]))
    assert detect_format(str(path)) == "npy"
    got, rejects = read_all(path)
    assert not rejects
    np.testing.assert_array_equal(got, digits_rows[:7].astype(np.float32))


@pytest.mark.parametrize("name", ["pipe.npy", "pipe", "pipe.dat"])
def test_an_npy_file_through_a_named_pipe_is_spooled(tmp_path, digits_rows, name):
    """A FIFO cannot be read with pread: it is copied to a temporary file first."""
    import os
    import threading

    path = tmp_path / name
    os.mkfifo(path)
    data = saved(np.tile(digits_rows, (20, 1)))
    thread = threading.Thread(target=lambda: path.write_bytes(data), daemon=True)
    thread.start()
    source = open_source(str(path), ReadOptions(chunk_rows=999))
    try:
        got = np.concatenate([b.X for b in source.batches()])
        digest = source.digest()
    finally:
        source.close()
    thread.join(5)
    np.testing.assert_array_equal(got, np.tile(digits_rows, (20, 1)).astype(np.float32))
    import hashlib

    assert digest == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("path", ["/dev/stdin", "-"])
def test_an_npy_file_on_stdin_is_recognised_and_spooled(tmp_path, digits_rows, path):
    import subprocess
    import sys

    out = tmp_path / "out.csv"
    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", path, "-o", str(out),
                           "-q"], input=saved(digits_rows[:40]), capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 41


def test_a_stream_of_bad_npy_bytes_fails_like_a_file(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "-", "-o",
                           str(tmp_path / "o.csv")], input=b"\x93NUMPY\x01\x00\xff\x00{'d",
                          capture_output=True, timeout=120, check=False)
    assert (proc.returncode, proc.stderr.decode()) == (
        65, "digits-score: error: <stdin>: the NPY header is truncated\n")


# -- a stream is checked as a file is before it is copied, and copied no further than declared

#: What an endless stream repeats: zeros, or random bytes.
FILLERS = {"zeros": bytes(1 << 16), "noise": np.random.default_rng(3).bytes(1 << 16)}
#: More than a reader that stops at once lets a feeder write (the pipe's buffer and its own).
AT_ONCE = 1 << 20
BAD_MAGIC = "not an NPY file (bad magic bytes); was it written by numpy.save?"


def goes_on(size: int) -> str:
    return (f"the stream goes on after the array it declares ({size} bytes in all); it may "
            "hold several arrays, which is not supported")


def _endless(kind: str, tmp_path):
    """An endless stream: a device, or a FIFO a thread fills with zeros or noise forever."""
    if kind.startswith("/dev/"):
        return kind, None
    path = tmp_path / "endless"
    return str(path), Feeder(path, b"", FILLERS[kind])


@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/urandom", "zeros", "noise"])
def test_an_endless_stream_that_is_not_npy_fails_on_its_first_bytes(tmp_path, spools, kind):
    """/dev/zero filled a temporary file by 5 GB in 6 s, and never ended."""
    path, feeder = _endless(kind, tmp_path)
    with pytest.raises(InputDataError) as info:
        open_source(path, ReadOptions(input_format="npy"))
    assert str(info.value) == f"{path}: {BAD_MAGIC}"
    assert spools.written == []  # nothing was copied
    if feeder is not None:
        assert feeder.join() < AT_ONCE


@pytest.mark.parametrize(("header", "message"), ids=[
    "version", "header size", "code", "objects", "complex", "shape"], argvalues=[
    (b"\x93NUMPY\x09\x00\x10\x00", "unsupported NPY format version 9.0"),
    (b"\x93NUMPY\x01\x00\x60\xea", "the NPY header claims 60000 bytes; refusing a header that "
     "large"),
    (b"\x93NUMPY\x01\x00\x10\x00__import__('os')\n", "the NPY header is not valid"),
    (npy_bytes({"descr": "|O", "fortran_order": False, "shape": (10**9, 64)}),
     "the array holds Python objects, which would need pickle; save a numeric array"),
    (npy_bytes({"descr": "<c16", "fortran_order": False, "shape": (10**9, 64)}),
     "the array has dtype <c16 (complex); expected integers or floats"),
    (npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**9, 63)}),
     "the array has shape (1000000000, 63); expected (N, 64) or (N, 8, 8)"),
])
def test_an_endless_npy_stream_with_a_bad_header_fails_before_anything_is_copied(
        tmp_path, spools, header, message):
    path = tmp_path / "pipe"
    feeder = Feeder(path, header, FILLERS["zeros"])
    with pytest.raises(InputDataError) as info:
        open_source(str(path))
    assert str(info.value) == f"{path}: {message}"
    assert spools.written == []
    assert feeder.join() < AT_ONCE


@pytest.mark.parametrize(("data", "message"), HOSTILE)
def test_hostile_npy_streams_are_refused_as_the_files_are(tmp_path, spools, data, message):
    """Every hostile file of the table above, through a FIFO: the file's words, except that
    a stream's bytes after the array are not counted (the stream may never end)."""
    if "after the array" in message:
        message = goes_on(len(data) - 8)
    path = tmp_path / "pipe"
    feeder = Feeder(path, data)
    with pytest.raises(InputDataError) as info:
        open_source(str(path), ReadOptions(input_format="npy"))
    assert str(info.value) == f"{path}: {message}"
    assert spools.all_closed()
    feeder.join()


@pytest.mark.parametrize("cut", [1, 8, 2048, "all the data", "part of the header"])
def test_an_npy_stream_shorter_than_its_header_declares_is_refused_as_the_file_is(
        tmp_path, digits_rows, spools, cut):
    whole = saved(digits_rows[:4])
    keep = {"all the data": 128, "part of the header": 60}.get(str(cut)) or len(whole) - cut
    file, of_file, path, of_stream = refused_as_file_and_stream(tmp_path, whole[:keep], ".npy")
    assert of_stream == of_file.replace(str(file), str(path))
    assert "truncated" in of_stream
    assert spools.written == ([] if cut == "part of the header" else [keep])
    assert spools.all_closed()


@pytest.mark.parametrize("after", ["one byte", "eight bytes", "another array", "endless"])
def test_an_npy_stream_that_goes_on_after_its_array_is_refused(tmp_path, digits_rows, spools,
                                                               after):
    """No more than the declared bytes are copied; one more is read to see the stream goes on."""
    data = saved(digits_rows[:4])
    extra = {"one byte": b"\0", "eight bytes": bytes(8), "another array": data,
             "endless": b""}[after]
    path = tmp_path / "pipe"
    feeder = Feeder(path, data + extra, FILLERS["zeros"] if after == "endless" else b"")
    with pytest.raises(InputDataError) as info:
        open_source(str(path))
    assert str(info.value) == f"{path}: {goes_on(len(data))}"
    assert spools.written == [len(data)] and spools.all_closed()
    assert feeder.join() < len(data) + AT_ONCE


def test_a_stream_declaring_more_than_the_disk_holds_fails_in_one_line_when_it_fills(
        tmp_path, spools):
    """A header may declare 512 TB: it is copied as it comes until the disk is full, then
    the error is one line and the temporary file is gone."""
    head = npy_bytes({"descr": "<f8", "fortran_order": False, "shape": (10**12, 64)})
    assert_a_full_disk_stops_the_copy(spools, tmp_path / "pipe", head, FILLERS["noise"],
                                      AT_ONCE)


def test_a_replaced_stdin_is_read_as_it_comes_not_copied_first(monkeypatch, spools):
    """A sys.stdin whose buffer only has read() was copied whole before its first byte was
    looked at."""
    import sys
    import types

    class Zeros:
        taken = 0

        def read(self, n=-1):
            n = 1 << 16 if n is None or n < 0 else n
            Zeros.taken += n
            return bytes(n)

    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=Zeros()))
    with pytest.raises(InputDataError) as info:
        open_source("-", ReadOptions(input_format="npy"))
    assert str(info.value) == f"<stdin>: {BAD_MAGIC}"
    assert spools.written == [] and Zeros.taken < AT_ONCE


@pytest.mark.parametrize("source", ["/dev/zero", "-"])
def test_the_command_line_fails_an_endless_stream_that_is_not_npy_at_once(tmp_path, source):
    """/dev/zero, and a pipe on stdin a thread fills forever: exit 65 and one line, nothing
    left in the temporary directory, and the pipe read no further than its first bytes."""
    assert_endless_stream_fails_at_once(tmp_path, source, "npy", FILLERS["zeros"], BAD_MAGIC,
                                        AT_ONCE)


@pytest.mark.parametrize("layout", ["<f8 C (N, 64)", ">i2 F (N, 8, 8)"])
def test_a_valid_npy_stream_scores_as_the_file_does(tmp_path, digits_rows, layout):
    """Through stdin and through a FIFO: the same output, byte for byte, as the file's."""
    dtype, order, shape = layout.split(" ", 2)
    X = np.tile(digits_rows, (3, 1)).astype(dtype)
    X = np.asarray(X.reshape(-1, 8, 8) if shape == "(N, 8, 8)" else X, order=order)
    file = tmp_path / "x.npy"
    np.save(file, X)
    assert_streams_score_as_the_file(tmp_path, file, "--proba", "-q", rows=600)


def test_a_full_disk_while_an_npy_stream_is_copied_exits_74_in_one_line(tmp_path, digits_rows):
    import os

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = score_cli("-", "-o", str(tmp_path / "out.csv"), input=saved(
        np.tile(digits_rows, (10, 1))), env={**os.environ, "TMPDIR": str(tmp)},
        preexec_fn=disk_limit(64 << 10))
    assert (proc.returncode, proc.stderr.decode()) == (74, (
        f"digits-score: error: <stdin>: cannot copy the stream to a temporary file in {tmp} "
        "(File too large); set TMPDIR to use another directory\n"))
    assert left_in(tmp) == [] and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("option", [{"id_column": 0}, {"label_column": "label"},
                                    {"keep_columns": "all"}, {"keep_columns": ["a"]}])
def test_column_options_cannot_apply_to_an_npy_input_however_it_arrives(tmp_path, digits_rows,
                                                                        option):
    """Silently ignored before; the format of a stream is known only once it is read."""
    from digits_onnx.inference import UsageError

    path = tmp_path / "x.dat"
    path.write_bytes(saved(digits_rows[:3]))
    with pytest.raises(UsageError, match=r"x.dat: an NPY file holds only the 64 features; "
                                         r"--id-column, --label-column and --keep-columns name "
                                         r"columns of CSV or Parquet inputs"):
        open_source(str(path), ReadOptions(**option))
