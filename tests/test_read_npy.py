"""The NPY reader: every numeric layout reads exactly; hostile headers never allocate."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from digits_onnx.inference import InputDataError
from digits_onnx.inference.readers import ReadOptions, open_source


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
