"""Write the hostile-input corpus: malformed NPY, CSV, Parquet and model files.

    python tests/data/make_bad.py            # rewrites tests/data/bad/ (deterministic)

The committed files are what this script writes; tests/test_hostile.py checks that they are
current and holds each file's expected message and exit code. Two large cases (a 10 MB
line, a 20 MB NPY cut short) are written by the tests into a temporary directory instead.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests.model_factory import build_model  # noqa: E402

BAD = HERE / "bad"
HEADER = ",".join(f"pixel_{k // 8}_{k % 8}" for k in range(64))


def _row(i: int, n: int = 64) -> str:
    return ",".join(str((i * 5 + k) % 17) for k in range(n))


def _rows(n: int = 5) -> list[str]:
    return [_row(i) for i in range(n)]


def _npy(array: np.ndarray, **kw) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kw)
    return buffer.getvalue()


def _npy_header(header: str, version: bytes = b"\x01\x00") -> bytes:
    body = header.encode("latin1")
    body += b" " * ((-(10 + len(body) + 1)) % 64) + b"\n"
    return b"\x93NUMPY" + version + len(body).to_bytes(2, "little") + body


def npy_files() -> dict[str, bytes]:
    good = np.arange(5 * 64, dtype=np.float32).reshape(5, 64) % 17
    with_nan = good.copy()
    with_nan[3, 10] = np.nan
    with_inf = good.copy()
    with_inf[1, 0] = np.inf
    return {
        "npy_pickled_objects.npy": _npy(np.array([{"a": 1}, None], dtype=object),
                                        allow_pickle=True),
        "npy_bad_magic.npy": b"\x93NUMPX\x01\x00" + _npy(good)[8:],
        "npy_bad_version.npy": b"\x93NUMPY\x09\x00" + _npy(good)[8:],
        "npy_empty.npy": b"",
        "npy_magic_only.npy": b"\x93NUMPY",
        "npy_huge_shape.npy": _npy_header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (10000000000000, 64), }"
        ) + bytes(64),
        "npy_truncated.npy": _npy(good)[:-100],
        "npy_ndim1.npy": _npy(np.arange(64, dtype=np.float32)),
        "npy_ndim4.npy": _npy(np.zeros((2, 2, 4, 8), np.float32)),
        "npy_63_columns.npy": _npy(np.zeros((4, 63), np.float32)),
        "npy_65_columns.npy": _npy(np.zeros((4, 65), np.float32)),
        "npy_complex.npy": _npy(np.zeros((4, 64), np.complex64)),
        "npy_strings.npy": _npy(np.full((4, 64), "7", dtype="<U1")),
        "npy_structured.npy": _npy(np.zeros(4, dtype=[("a", "<f4", (64,))])),
        "npy_header_not_a_dict.npy": _npy_header("[1, 2, 3]") + bytes(256),
        "npy_header_code.npy": _npy_header("__import__('os').system('true')") + bytes(256),
        "npy_nan.npy": _npy(with_nan),
        "npy_inf.npy": _npy(with_inf),
        "npy_header_overruns_file.npy": b"\x93NUMPY\x01\x00" + (60000).to_bytes(2, "little")
        + b"{'descr'",
    }


def csv_files() -> dict[str, bytes]:
    rows = _rows()
    data = {
        "csv_ragged_long.csv": [HEADER, rows[0], rows[1] + ",3", rows[2]],
        "csv_ragged_short.csv": [HEADER, rows[0], rows[1], _row(2, 60)],
        "csv_word.csv": [HEADER, rows[0], rows[1].replace("6", "six", 1), rows[2]],
        "csv_nan.csv": [HEADER, rows[0], "nan," + rows[1].split(",", 1)[1]],
        "csv_inf.csv": [HEADER, rows[0], rows[1].rsplit(",", 1)[0] + ",inf"],
        "csv_empty_cell.csv": [HEADER, rows[0], ",".join(["1"] * 30 + [""] + ["1"] * 33)],
        "csv_bom_mid_file.csv": [HEADER, rows[0], "\ufeff" + rows[1], rows[2]],
        "csv_quoted_newline.csv": [HEADER, rows[0], '"1\n2",' + rows[1].split(",", 1)[1]],
        "csv_quoted_text.csv": [HEADER, rows[0], '"abc",' + rows[1].split(",", 1)[1]],
        "csv_header_only.csv": [HEADER],
        "csv_decimal_commas.csv": [";".join(["1,5"] * 64), ";".join(["2,5"] * 64)],
        "csv_one_number.csv": ["7"],
        "csv_too_many_columns.csv": [HEADER + ",extra", rows[0] + ",1"],
        "csv_label_not_integer.csv": [HEADER + ",label", rows[0] + ",3", rows[1] + ",seven"],
        "csv_bad_id_column.csv": [HEADER, rows[0]],
    }
    out = {name: ("\n".join(lines) + "\n").encode() for name, lines in data.items()}
    out["csv_empty.csv"] = b""
    out["csv_whitespace_only.csv"] = b"  \n\t\n\n"
    out["csv_nul_byte.csv"] = (HEADER + "\n" + rows[0] + "\n" + rows[1][:10] + "\0"
                               + rows[1][10:] + "\n").encode()
    out["csv_cr_only.csv"] = ("\r".join([HEADER, *rows]) + "\r").encode()
    out["csv_latin1.csv"] = ("caf\xe9," + HEADER.split(",", 1)[1] + "\n" + rows[0]
                             + "\n").encode("latin1")
    out["csv_latin1_data.csv"] = (HEADER + "\n" + rows[0] + "\n" + "\xe9"
                                  + rows[1][1:] + "\n").encode("latin1")
    out["csv_binary.csv"] = bytes(np.random.default_rng(7).integers(0, 256, 3000, np.uint8))
    whole = gzip.compress(out["csv_word.csv"].replace(b"six", b"6"), mtime=0)
    out["csv_truncated.csv.gz"] = whole[: len(whole) // 2]
    out["csv_fake.csv.gz"] = b"this is not gzip at all\n"
    return out


def parquet_files() -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(table) -> bytes:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    narrow = pa.table({f"c{k}": pa.array([1.0, 2.0]) for k in range(63)})
    text = pa.table({f"c{k}": pa.array(["1", "x"] if k == 5 else [1.0, 2.0])
                     for k in range(64)})
    return {
        "parquet_fake.parquet": b"PAR1 not really parquet PAR1",
        "parquet_63_columns.parquet": parquet(narrow),
        "parquet_text_column.parquet": parquet(text),
    }


def model_files() -> dict[str, bytes]:
    import onnx

    good = build_model().SerializeToString()
    external = build_model()
    for tensor in external.graph.initializer:
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value="weights.bin")
    return {
        "model_truncated.onnx": good[: len(good) // 2],
        "model_not_onnx.onnx": b"this is a text file, not a model\n",
        "model_external_data.onnx": external.SerializeToString(),
        "model_ml_domain.onnx": build_model(foreign_node=True).SerializeToString(),
        "model_wrong_input_shape.onnx": build_model(input_width=63).SerializeToString(),
        "model_hash_mismatch.onnx": good,
    }


def write_corpus(folder: Path = BAD) -> dict[str, bytes]:
    files = {**npy_files(), **csv_files(), **parquet_files(), **model_files()}
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, data in sorted(files.items()):
        (folder / name).write_bytes(data)
    # Each model is checked against a manifest; this one's hash is of some other model.
    (folder / "models.json").write_text(json.dumps(
        {"model_hash_mismatch.onnx": "0" * 64}, indent=1) + "\n")
    return files


if __name__ == "__main__":
    files = write_corpus()
    print(f"wrote {len(files)} files to {BAD}")
