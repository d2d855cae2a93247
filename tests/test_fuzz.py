"""Property-based fuzzing of the CSV, NPY and Parquet readers through the whole scoring
path, and of the model loader.

Whatever the bytes, scoring ends in a complete output (every row scored or rejected) or in
one of the library's own errors with no output; never another exception, a hang (each example
has a deadline) or unbounded memory (peak RSS and Arrow's pool are checked after the run).
A mutated model either loads and answers within the contract or is refused with a
ModelError; nothing is printed.
"""

from __future__ import annotations

import io
import resource
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from digits_onnx.inference import Model, ReadOptions, ScoreOptions, score_file
from digits_onnx.inference.errors import DigitsError, ModelError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: A fuzzed input is a few kB; scoring it must not grow the process by more than this.
MEMORY_BOUND_MB = 300


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(scope="module", autouse=True)
def memory_bound():
    rss, pool = _peak_rss_mb(), pa.default_memory_pool().max_memory()
    yield
    assert _peak_rss_mb() - rss < MEMORY_BOUND_MB
    assert (pa.default_memory_pool().max_memory() - pool) / 2**20 < MEMORY_BOUND_MB


def _score(model, data: bytes, suffix: str, on_error: str = "skip", **read) -> None:
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / f"in{suffix}", Path(folder) / "out" / "p.csv"
        dst.parent.mkdir()
        src.write_bytes(data)
        options = ScoreOptions(read=ReadOptions(chunk_bytes=256, chunk_rows=7, **read),
                               on_error=on_error)
        try:
            summary = score_file(str(src), dst, model=model, options=options)
        except DigitsError:
            assert not dst.exists(), "a failed file left an output"
            return
        assert summary.rows == summary.scored + summary.rejected
        assert len(dst.read_text().splitlines()) == summary.scored + 1
        assert not [p for p in dst.parent.iterdir() if p.suffix == ".tmp"]


# -- CSV -------------------------------------------------------------------------------------

TOKENS = st.sampled_from(
    ["0", "7", "16", "3.5", "-1", "1e3", "", " ", "nan", "inf", "-inf", "x", '"4"', '"a,b"',
     "\r", "\0", "\ufeff", "é", "1,5", ";", "\t", "0x10", "1_000", "+2", ".5", "5."])


@st.composite
def csv_like(draw) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t", " "]))
    n_rows = draw(st.integers(0, 12))
    lines = []
    if draw(st.booleans()):
        lines.append(delimiter.join(f"c{k}" for k in range(64)))
    for _ in range(n_rows):
        width = draw(st.sampled_from([64, 64, 64, 63, 65, 1, 0]))
        cells = [str(draw(st.integers(0, 16))) for _ in range(width)]
        for _ in range(draw(st.integers(0, 2))):
            if cells:
                cells[draw(st.integers(0, len(cells) - 1))] = draw(TOKENS)
        lines.append(delimiter.join(cells))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    data = text.encode("utf-8")
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + data


@FUZZ
@given(data=st.binary(max_size=3000))
def test_arbitrary_bytes_as_csv(model, data):
    _score(model, data, ".csv")


@FUZZ
@given(data=csv_like(), on_error=st.sampled_from(["skip", "fail"]))
def test_csv_like_bytes(model, data, on_error):
    _score(model, data, ".csv", on_error)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_as_gzip_csv(model, data):
    _score(model, b"\x1f\x8b\x08\x00" + data, ".csv.gz")


# -- NPY -------------------------------------------------------------------------------------

def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


VALID_NPY = [
    _npy(np.arange(3 * 64, dtype=np.float32).reshape(3, 64) % 17),
    _npy(np.ones((2, 8, 8), dtype=">i2")),
    _npy(np.asfortranarray(np.zeros((4, 64), dtype=np.float64))),
    _npy(np.full((1, 64), 16, dtype=np.uint8)),
]


def _mutate_bytes(draw, data: bytearray, action: str, *, insert_max: int = 16) -> bool:
    """The mutations every format shares, in place: ``flip`` a byte, ``cut`` the tail,
    ``insert`` a few bytes. False for an action that is the format's own."""
    if action == "flip":
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif action == "cut":
        del data[draw(st.integers(0, len(data))):]
    elif action == "insert":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=insert_max))
    else:
        return False
    return True


@st.composite
def mutated_npy(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID_NPY)))
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if _mutate_bytes(draw, data, action):
            continue
        if action == "header" and len(data) > 10:
            header = draw(st.sampled_from([
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 64), }",
                "{'descr': '|O', 'fortran_order': False, 'shape': (1, 64), }",
                "{'descr': '<f4', 'fortran_order': True, 'shape': (-1, 64), }",
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }",
                "{'descr': '<U4', 'fortran_order': False, 'shape': (1, 64), }",
                "{'descr': '<f4', 'fortran_order': 'yes', 'shape': (1, 64), }",
                "{'descr': '<f4', 'shape': (1, 64), }",
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 8, 8, 1), }",
                "(lambda: 1)()",
            ]))
            body = header.encode() + b" " * ((-(10 + len(header) + 1)) % 64) + b"\n"
            data[:] = (b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body
                       + bytes(data[10 + int.from_bytes(data[8:10], "little"):]))
    return bytes(data)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_as_npy(model, data):
    _score(model, b"\x93NUMPY" + data, ".npy")


@FUZZ
@given(data=mutated_npy())
def test_mutated_npy(model, data):
    _score(model, data, ".npy")


@FUZZ
@given(data=st.binary(max_size=2000), suffix=st.sampled_from(["", ".dat", ".data"]))
def test_arbitrary_bytes_of_unknown_format(model, data, suffix):
    """No extension: the content decides (magic bytes, else delimited text, else refused)."""
    _score(model, data, suffix)


# -- Parquet ---------------------------------------------------------------------------------

def _parquet(table: pa.Table, **options) -> bytes:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def _parquet_table(n: int, *, extra: bool = False, nulls: bool = False) -> pa.Table:
    X = (np.arange(n * 64, dtype=np.float64).reshape(n, 64) * 7) % 17
    columns = {f"c{k}": pa.array(X[:, k], mask=(np.arange(n) % 3 == 0) if nulls and k == 5
                                 else None) for k in range(64)}
    if extra:
        columns["id"] = pa.array([f"r{i}" for i in range(n)])
        columns["label"] = pa.array(np.arange(n) % 10)
    return pa.table(columns)


VALID_PARQUET = [
    (_parquet(_parquet_table(3)), {}),
    (_parquet(_parquet_table(7, extra=True), row_group_size=2, compression="zstd"),
     {"id_column": "id", "label_column": "label"}),
    (_parquet(_parquet_table(5, nulls=True), compression="none", write_page_checksum=True),
     {}),
    (_parquet(_parquet_table(4, extra=True), use_dictionary=False, data_page_size=64),
     {"label_column": "label"}),
]


@st.composite
def mutated_parquet(draw) -> tuple[bytes, dict]:
    data, read = draw(st.sampled_from(VALID_PARQUET))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "flip", "cut", "insert", "footer", "tail"]))
        if _mutate_bytes(draw, data, action):
            continue
        if action == "footer" and len(data) >= 8:  # the footer's length lies
            data[-8:-4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
        elif action == "tail" and len(data) > 12:  # a byte of the footer itself
            size = int.from_bytes(data[-8:-4], "little")
            start = max(4, len(data) - 8 - min(size, len(data)))
            if start < len(data) - 8:
                i = draw(st.integers(start, len(data) - 9))
                data[i] = draw(st.integers(0, 255))
    return bytes(data), read


@FUZZ
@given(case=mutated_parquet(), on_error=st.sampled_from(["skip", "fail"]),
       pieces=st.booleans())
def test_mutated_parquet(model, case, on_error, pieces):
    """Row groups read whole, or in pieces after their page headers are walked (as a large
    row group is)."""
    from unittest import mock

    from digits_onnx.inference.readers import parquet

    data, read = case
    with mock.patch.object(parquet, "READ_WHOLE_BYTES", 0 if pieces else parquet.READ_WHOLE_BYTES):
        _score(model, data, ".parquet", on_error, **read)


@FUZZ
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_as_parquet(model, data):
    _score(model, b"PAR1" + data + b"PAR1", ".parquet")


# -- the model loader ------------------------------------------------------------------------

def _small_model() -> bytes:
    from tests.model_factory import build_model

    return build_model().SerializeToString()


SMALL_MODEL = _small_model()
PROBE = np.tile(np.arange(64, dtype=np.float32) % 17, (5, 1))


@st.composite
def mutated_model(draw) -> bytes:
    data = bytearray(SMALL_MODEL)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "flip", "cut", "insert", "repeat"]))
        if _mutate_bytes(draw, data, action, insert_max=8):
            continue
        if action == "repeat" and data:
            i = draw(st.integers(0, len(data) - 1))
            j = draw(st.integers(i, min(len(data), i + 64)))
            data[i:i] = data[i:j]
    return bytes(data)


def test_mutated_models_load_within_the_contract_or_are_refused(capfd):
    """Each mutation loads and answers within the contract, or is a one-line ModelError;
    onnxruntime prints nothing on stdout or stderr (it printed a banner and retried)."""

    @FUZZ
    @given(data=mutated_model())
    def one(data: bytes) -> None:
        try:
            loaded = Model(data, verify_hash=False)
            labels, proba = loaded.run(PROBE)
        except ModelError as exc:
            assert "\n" not in str(exc)
        else:
            assert labels.shape == (5,) and proba.shape == (5, 10)
            assert labels.min() >= 0 and labels.max() <= 9
            repr(loaded)

    one()
    assert capfd.readouterr() == ("", ""), "the model loader printed something"
