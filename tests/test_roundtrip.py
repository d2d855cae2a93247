"""Any valid array, written in any supported layout, scores exactly like in-memory predict."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from digits_onnx.inference import (
    InputDataError,
    Model,
    ReadOptions,
    ScoreOptions,
    contract,
    score_file,
)
from digits_onnx.inference.model import bundled_model_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

LAYOUTS = ["csv", "tsv", "csv.gz", "whitespace.txt", "npy-C", "npy-F", "npy-image-F",
           "npy-f4-big", "parquet"]


def write_layout(X: np.ndarray, directory: Path, layout: str) -> Path:
    """Write float64 rows in one of the supported layouts; values survive exactly."""
    text_rows = [[repr(float(v)) for v in row] for row in X]
    if layout in ("csv", "tsv", "csv.gz", "whitespace.txt"):
        sep = {"csv": ",", "tsv": "\t", "csv.gz": ",", "whitespace.txt": "  "}[layout]
        text = "".join(sep.join(row) + "\n" for row in text_rows).encode()
        path = directory / f"x.{layout}"
        path.write_bytes(gzip.compress(text, mtime=0) if layout.endswith(".gz") else text)
        return path
    if layout.startswith("npy"):
        path = directory / "x.npy"
        arr = X.astype(">f4") if layout == "npy-f4-big" else X
        if "image" in layout:
            arr = arr.reshape(-1, 8, 8)
        np.save(path, np.asarray(arr, order="F" if layout.endswith("F") else "C"))
        return path
    path = directory / "x.parquet"
    pq.write_table(pa.table({f"f{k}": X[:, k] for k in range(X.shape[1])}), path)
    return path


def scored(path: Path, out: Path, model: Model, **read) -> tuple[np.ndarray, np.ndarray]:
    opts = ScoreOptions(read=ReadOptions(**read), proba=True, output_format="npy")
    summary = score_file(str(path), out, model=model, options=opts, force=True)
    assert summary.rows == summary.scored
    arr = np.load(out)
    proba = np.column_stack([arr[f"p{k}"] for k in range(contract.N_CLASSES)])
    return arr["label"], proba


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=64)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(X=arrays(np.float64, st.tuples(st.integers(1, 30), st.just(64)), elements=finite),
       layout=st.sampled_from(LAYOUTS))
def test_any_array_in_any_layout_scores_like_predict(tmp_path_factory, model, X, layout):
    directory = tmp_path_factory.mktemp("rt")
    if layout == "npy-f4-big":
        X = X.astype(np.float32).astype(np.float64)
    path = write_layout(X, directory, layout)
    labels, proba = scored(path, directory / "out.npy", model,
                           delimiter="whitespace" if "whitespace" in layout else None,
                           header=False)
    np.testing.assert_array_equal(labels, model.predict(X))
    np.testing.assert_array_equal(proba, model.predict_proba(X))


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(bundled_model_path().with_name(contract.REFERENCE_FILENAME)) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_test_split_through_every_format_matches_scikit_learn(tmp_path, reference, layout):
    """Parity with scikit-learn's stored outputs (no scikit-learn needed at run time)."""
    model = Model.load()
    path = write_layout(reference["X"].astype(np.float64), tmp_path, layout)
    labels, proba = scored(path, tmp_path / "out.npy", model,
                           delimiter="whitespace" if "whitespace" in layout else None,
                           header=False)
    np.testing.assert_array_equal(labels, reference["labels"])
    np.testing.assert_allclose(proba, reference["probabilities"], atol=contract.PROBA_ATOL,
                               rtol=0)


def test_examples_score_to_the_reference_labels(tmp_path, reference):
    """The bundled sample files are the test split: scoring them gives scikit-learn's labels."""
    examples = Path(__file__).parents[1] / "examples"
    model = Model.load()
    csv_out = tmp_path / "csv.npy"
    opts = ScoreOptions(read=ReadOptions(id_column="id", label_column="label"),
                        output_format="npy")
    with pytest.raises(InputDataError, match="line 2, column 1 \\(id\\): id 't0000' is not a whole "
                       "number: NPY output holds ids as 64-bit integers only"):
        score_file(str(examples / "digits_test.csv"), csv_out, model=model, options=opts)
    assert not csv_out.exists()
    summary = score_file(str(examples / "digits_test.csv"), tmp_path / "csv.jsonl", model=model,
                         options=ScoreOptions(read=ReadOptions(id_column="id",
                                                               label_column="label")))
    rows = [json.loads(line) for line in (tmp_path / "csv.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == reference["labels"].tolist()
    assert summary.correct == int((reference["labels"] == reference["y"]).sum())
    labels, _ = scored(examples / "digits_test.npy", tmp_path / "npy.npy", model)
    np.testing.assert_array_equal(labels, reference["labels"])


def test_npy_output_keeps_numeric_ids(tmp_path, model, digits_rows):
    """NPY has no string type: ids that are whole numbers are written as int64."""
    ids = [1000 + 7 * i for i in range(len(digits_rows))]
    src = tmp_path / "ids.csv"
    lines = ["id," + ",".join(f"p{k}" for k in range(64))]
    lines += [f"{i}," + ",".join(f"{v:g}" for v in row) for i, row in zip(ids, digits_rows,
                                                                          strict=True)]
    src.write_text("\n".join(lines) + "\n")
    dst = tmp_path / "out.npy"
    score_file(str(src), dst, model=model,
               options=ScoreOptions(read=ReadOptions(id_column="id"), output_format="npy"))
    out = np.load(dst)
    assert out.dtype.names == ("id", "label", "confidence")
    assert out["id"].tolist() == ids
    np.testing.assert_array_equal(out["label"], model.predict(digits_rows))


@pytest.mark.parametrize("ids", [
    [16777217, 16777219, -16777217],  # beyond float32's 24-bit mantissa
    [9007199254740993, -9007199254740993, 2**62 + 1],  # beyond float64's too
    [2**63 - 1, -2**63, 0],  # int64's ends
])
def test_npy_output_keeps_every_int64_id_exactly(tmp_path, model, digits_rows, ids):
    """The key field is int64, not a float that would round large ids to their neighbours."""
    src = tmp_path / "ids.csv"
    lines = ["id," + ",".join(f"p{k}" for k in range(64))]
    lines += [f"{i}," + ",".join(f"{v:g}" for v in row) for i, row in zip(ids, digits_rows,
                                                                          strict=False)]
    src.write_text("\n".join(lines) + "\n")
    dst = tmp_path / "out.npy"
    score_file(str(src), dst, model=model,
               options=ScoreOptions(read=ReadOptions(id_column="id"), output_format="npy",
                                    proba=True))
    out = np.load(dst)
    assert out.dtype["id"] == np.dtype("<i8")
    assert out["id"].tolist() == ids
