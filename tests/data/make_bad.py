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
        "sniffed_npy_nan.dat": _npy(with_nan),
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
    # A headerless file whose first row has one bad token: a header or a bad row?
    out["csv_first_row_one_bad_token.csv"] = ("\n".join(
        [rows[0].replace("6", "O", 1), *rows[1:]]) + "\n").encode()
    # pandas' header for an unnamed frame: the column indexes, a header, not a row.
    index_header = ",".join(str(k) for k in range(64))
    out["csv_index_header.csv"] = ("\n".join(
        [index_header, rows[0], rows[1].replace("5", "x", 1), rows[2]]) + "\n").encode()
    # More blank lines before the header than the sniffer reads ahead (they gave "empty").
    out["csv_blank_lines_before_header.csv"] = ("\n" * 70_000 + "\n".join(
        [HEADER, rows[0], rows[1].replace("6", "six", 1)]) + "\n").encode()
    # 2M bad lines in 4 kB: diagnosed in bulk, not one line at a time.
    out["csv_2m_bad_lines.csv.gz"] = gzip.compress(
        (HEADER + "\n").encode() + b"x\n" * 2_000_000, mtime=0)
    # No extension that names a format: the content decides.
    out["sniffed_csv_word.data"] = out["csv_word.csv"]
    out["unknown_format.dat"] = b"Nightly digits drop.\nAsk the data team before editing.\n"
    whole = gzip.compress(out["csv_word.csv"].replace(b"six", b"6"), mtime=0)
    out["csv_truncated.csv.gz"] = whole[: len(whole) // 2]
    out["csv_fake.csv.gz"] = b"this is not gzip at all\n"
    return out


def parquet_files() -> dict[str, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(table, **options) -> bytes:
        sink = io.BytesIO()
        pq.write_table(table, sink, **options)
        return sink.getvalue()

    narrow = pa.table({f"c{k}": pa.array([1.0, 2.0]) for k in range(63)})
    text = pa.table({f"c{k}": pa.array(["1", "x"] if k == 5 else [1.0, 2.0])
                     for k in range(64)})
    X = (np.arange(4 * 64, dtype=np.float64).reshape(4, 64) * 5) % 17
    features = {f"c{k}": pa.array(X[:, k]) for k in range(64)}

    def with_column(name: str, values) -> bytes:
        return parquet(pa.table({**features, name: values}))

    overflow = dict(features, c3=pa.array([1.0, 1e39, 2.0, 3.0]))
    nulls = dict(features, c0=pa.array([1.0, None, 2.0, None]))
    big = np.resize(X, (1000, 64))
    table_1000 = pa.table({f"c{k}": pa.array(big[:, k]) for k in range(64)})
    rows_1000 = parquet(table_1000)
    checked = parquet(table_1000, write_page_checksum=True)
    # The footer's own row count (thrift field 3, zigzag varint 2000) says 2000 rows.
    footer_lies = _patched_footer(rows_1000, b"\x16\xd0\x0f", b"\x16\xa0\x1f")
    accented = parquet(pa.table({f"\u00e9{k}": features[f"c{k}"] for k in range(64)}))
    return {
        "parquet_fake.parquet": b"PAR1 not really parquet PAR1",
        "parquet_63_columns.parquet": parquet(narrow),
        "parquet_text_column.parquet": parquet(text),
        "parquet_float32_overflow.parquet": parquet(pa.table(overflow)),
        "parquet_nulls.parquet": parquet(pa.table(nulls)),
        "parquet_label_float.parquet": with_column("label", pa.array([1.0, 2.5, 3.0, 4.0])),
        "parquet_label_text.parquet": with_column("label", pa.array(["1", "seven", "3", "4"])),
        "parquet_label_list.parquet": with_column("label", pa.array([[1], [2], [3], [4]])),
        "parquet_id_struct.parquet": with_column("id", pa.array([{"a": i} for i in range(4)])),
        "parquet_id_not_utf8.parquet": with_column("id", pa.array([b"a", b"\xff", b"c", b"d"])),
        "parquet_footer_rows_lie.parquet": footer_lies,
        "parquet_name_not_utf8.parquet": accented.replace("\u00e90".encode(), b"\xe9\xff0"),
        # One flipped byte in a page's data (caught by its checksum) and in a page header.
        "parquet_corrupt_page_data.parquet": _flip(checked, 30),
        "parquet_corrupt_page_header.parquet": _flip(checked, 400),
        "parquet_sniffed_63_columns": parquet(narrow),
        "parquet_footer_histogram.parquet": _histogram_mismatch(parquet),
    }


def _histogram_mismatch(parquet) -> bytes:
    """Found by fuzz/fuzz_parquet.py: one bit of a column chunk's size statistics in the
    footer. pyarrow's accessor for that chunk's metadata aborts the process (an uncaught C++
    exception); reading the data raises a clean error."""
    import pyarrow as pa

    X = (np.arange(9 * 64, dtype=np.float64).reshape(9, 64) * 7) % 17
    table = pa.table({**{f"c{k}": pa.array(X[:, k]) for k in range(64)},
                      "id": pa.array(np.arange(9)),
                      "label": pa.array([str(i % 10) for i in range(9)])})
    data = parquet(table, compression="none", write_page_checksum=True, use_dictionary=False,
                   data_page_size=128)
    at = len(data) - 11036  # where the fuzzer flipped it, in files of this pyarrow's layout
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


def _patched_footer(data: bytes, old: bytes, new: bytes) -> bytes:
    """A Parquet file with the first ``old`` in its footer replaced by ``new``."""
    size = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - size
    footer = data[start:-8].replace(old, new, 1)
    return data[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1"


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1:]


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
        **broken_models(),
        "model_truncated.onnx": good[: len(good) // 2],
        "model_not_onnx.onnx": b"this is a text file, not a model\n",
        "model_external_data.onnx": external.SerializeToString(),
        "model_ml_domain.onnx": build_model(foreign_node=True).SerializeToString(),
        "model_wrong_input_shape.onnx": build_model(input_width=63).SerializeToString(),
        "model_hash_mismatch.onnx": good,
    }


def _linear_model(proba_nodes=None, label_nodes=None, extra_nodes=(), extra_init=()):
    """X @ W + b -> scores; probabilities and label from the given nodes (softmax and argmax
    by default): models that pass every static check."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.model_factory import random_weights

    W, b = random_weights()
    nodes = [helper.make_node("MatMul", ["X", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["scores"]), *extra_nodes]
    nodes += proba_nodes or [helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1)]
    nodes += label_nodes or [helper.make_node("ArgMax", ["scores"], ["label"], axis=1,
                                              keepdims=0)]
    graph = helper.make_graph(
        nodes, "digits",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b"),
                     *[numpy_helper.from_array(np.asarray(v), k) for k, v in extra_init]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="digits-tests")
    model.ir_version = 8
    assert isinstance(model, onnx.ModelProto)
    return model.SerializeToString()


def broken_models() -> dict[str, bytes]:
    """Models that load and pass the static checks, then break the contract when run."""
    from onnx import helper

    node = helper.make_node
    argmax = node("ArgMax", ["scores"], ["l2"], axis=1, keepdims=0)
    return {
        "model_broadcast_fails.onnx": _linear_model(
            [node("Softmax", ["s3"], ["probabilities"], axis=1)],
            extra_nodes=[node("Add", ["scores", "bias3"], ["s3"])],
            extra_init=[("bias3", np.zeros((3, 10), np.float32))]),
        "model_huge_allocation.onnx": _linear_model(
            [node("Softmax", ["s2"], ["probabilities"], axis=1)],
            extra_nodes=[node("ConstantOfShape", ["huge"], ["big"]),
                         node("ReduceSum", ["big"], ["total"], keepdims=0),
                         node("Add", ["scores", "total"], ["s2"])],
            extra_init=[("huge", np.array([1 << 40, 1 << 20], np.int64))]),
        "model_one_label.onnx": _linear_model(
            label_nodes=[argmax, node("Slice", ["l2", "zero", "one"], ["label"])],
            extra_init=[("zero", np.array([0])), ("one", np.array([1]))]),
        "model_labels_beyond_9.onnx": _linear_model(
            label_nodes=[argmax, node("Add", ["l2", "ten"], ["label"])],
            extra_init=[("ten", np.array(10, np.int64))]),
        "model_nan_probabilities.onnx": _linear_model(
            [node("Softmax", ["scores"], ["p"], axis=1), node("Mul", ["p", "nan"],
                                                              ["probabilities"])],
            extra_init=[("nan", np.array(np.nan, np.float32))]),
        "model_probabilities_not_summing_to_1.onnx": _linear_model(
            [node("Sigmoid", ["scores"], ["probabilities"])]),
        # Found by fuzzing: onnxruntime raised UnicodeDecodeError reading the input's shape.
        "model_dimension_not_utf8.onnx": _linear_model().replace(
            b"\x12\x01N", b"\x12\x01\xab", 1),
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
