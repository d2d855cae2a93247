"""The model session: hash checked, contract enforced, foreign graphs refused, inputs vetted."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from digits_onnx.inference import InputDataError, Model, ModelError, bundled_model_path, contract
from onnx import TensorProto, external_data_helper, helper

from tests.model_factory import build_model, numpy_predict, write_model


def test_predictions_match_an_independent_numpy_oracle(model, weights, digits_rows):
    labels, proba = numpy_predict(digits_rows, *weights)
    np.testing.assert_array_equal(model.predict(digits_rows), labels)
    np.testing.assert_allclose(model.predict_proba(digits_rows), proba, atol=contract.PROBA_ATOL)
    assert model.predict(digits_rows).dtype == np.int64
    assert model.predict_proba(digits_rows).dtype == np.float32
    np.testing.assert_array_equal(model.classes_, np.arange(10))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int64", "float16", ">f8", "<f4"])
@pytest.mark.parametrize("layout", ["C", "F", "image", "list"])
def test_any_real_dtype_and_layout_is_accepted(model, digits_rows, dtype, layout):
    expected = model.predict(digits_rows.astype(np.float32))
    X = digits_rows.astype(dtype)
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "image":
        X = X.reshape(-1, 8, 8)
    elif layout == "list":
        X = X.tolist()
    np.testing.assert_array_equal(model.predict(X), expected)


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (np.zeros(64), r"Expected a 2D array of shape \(N, 64\), got a 1D array of shape \(64,\) "
         r"instead; use X.reshape\(1, -1\) for a single row"),
        (np.zeros((2, 63)), "X has 63 features, but the model expects 64 features"),
        (np.zeros((2, 4, 16)), r"Expected shape \(N, 64\) or \(N, 8, 8\), got shape \(2, 4, 16\)"),
        (np.zeros((2, 64), bool), "X holds booleans; expected real numbers"),
        (np.zeros((2, 64), complex), "X holds complex numbers; expected real numbers"),
        (np.full((2, 64), "1"), "X holds strings; expected real numbers"),
        (np.array([[np.nan] * 64]), r"X\[0, 0\] = nan is not finite in float32"),
        (np.array([[0.0] * 63 + [1e39]]), r"X\[0, 63\] = 1e\+39 is not finite in float32"),
        ([[1, 2], [3]], "X cannot be read as an array"),
    ],
)
def test_bad_arrays_get_precise_messages(model, X, message):
    with pytest.raises(InputDataError, match=message):
        model.predict(X)


def test_empty_input_gives_empty_output(model):
    assert model.predict(np.zeros((0, 64))).shape == (0,)
    assert model.predict_proba(np.zeros((0, 64))).shape == (0, 10)


def test_hash_mismatch_is_refused(tmp_path, model_path):
    other = write_model(tmp_path / "m")
    manifest = json.loads((other.parent / "model.json").read_text())
    manifest["model"]["sha256"] = "0" * 64
    (other.parent / "model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"does not match the expected 000000000000\.\.\.; the "
                                         r"model was replaced or corrupted"):
        Model.load(other)
    Model.load(other, verify_hash=False)
    Model.load(other, sha256=hashlib.sha256(other.read_bytes()).hexdigest())


def test_a_model_without_manifest_needs_a_hash_or_trust(tmp_path):
    path = write_model(tmp_path, manifest=False)
    with pytest.raises(ModelError, match="no manifest"):
        Model.load(path)
    assert Model.load(path, verify_hash=False).sha256 == hashlib.sha256(
        path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: build_model(foreign_node=True), r"uses operators outside the default ONNX "
         r"domain \(ai.onnx.ml:Normalizer\)"),
        (lambda: build_model(input_width=63), r"breaks the model contract: input X has shape "
         r"\['N', 63\], expected \[N, 64\]"),
    ],
)
def test_unportable_or_wrong_models_are_refused(tmp_path, make, message):
    path = write_model(tmp_path, make())
    with pytest.raises(ModelError, match=message):
        Model.load(path)


def test_external_data_is_refused(tmp_path):
    model = build_model()
    external_data_helper.convert_model_to_external_data(model, location="weights.bin",
                                                        size_threshold=0)
    path = write_model(tmp_path, model)
    with pytest.raises(ModelError, match=r"keeps tensors in external data files \(W, b\)"):
        Model.load(path)


def _weights_in_a_constant_node(model):
    """Move the initializer W into a Constant node's tensor attribute."""
    (W,) = [t for t in model.graph.initializer if t.name == "W"]
    model.graph.initializer.remove(W)
    model.graph.node.insert(0, helper.make_node("Constant", [], ["W"], value=W))
    return model


def _weights_in_a_subgraph(model):
    """Make W the output of an If node whose branches each hold a Constant node."""
    (W,) = [t for t in model.graph.initializer if t.name == "W"]
    model.graph.initializer.remove(W)
    out = helper.make_tensor_value_info("W", TensorProto.FLOAT, list(W.dims))
    branches = [helper.make_graph([helper.make_node("Constant", [], ["W"], value=W)],
                                  name, [], [out]) for name in ("then", "else")]
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    model.graph.initializer.append(cond)
    model.graph.node.insert(0, helper.make_node("If", ["cond"], ["W"], then_branch=branches[0],
                                                else_branch=branches[1]))
    return model


@pytest.mark.parametrize("move", [_weights_in_a_constant_node, _weights_in_a_subgraph])
def test_external_data_hidden_in_attributes_is_refused(tmp_path, move):
    """A tensor of a node attribute (a Constant's value), in the main graph or a subgraph,
    may point at a file beside the model too: its bytes must never be read."""
    model = move(build_model())
    path = tmp_path / contract.MODEL_FILENAME
    onnx.save_model(model, path, save_as_external_data=True, location="weights.bin",
                    size_threshold=100, convert_attribute=True)  # W, not b
    assert (tmp_path / "weights.bin").stat().st_size > 0
    with pytest.raises(ModelError, match=r"keeps tensors in external data files \(W(, W)?\)"):
        Model.load(path, verify_hash=False)


@pytest.mark.parametrize("cut", [1, 10, 100])
def test_truncated_model_file(tmp_path, cut):
    path = write_model(tmp_path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(ModelError, match=r"not a valid ONNX model|cannot load it"):
        Model.load(path, verify_hash=False)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        Model.load(tmp_path / "nope.onnx")


def test_bundled_model_loads_with_its_manifest_and_metadata():
    model = Model.load()
    assert model.path == bundled_model_path()
    assert model.sha256 == model.manifest["model"]["sha256"]
    assert model.metadata["recipe"] == model.manifest["recipe"]
