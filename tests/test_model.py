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


# -- models that load but break the contract when run ----------------------------------------

def _graph_model(nodes, initializers, *, label_shape=("N",), proba_shape=("N", 10)):
    """A model of X [N, 64] -> label, probabilities built from ``nodes``."""
    graph = helper.make_graph(
        nodes, "digits",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, list(label_shape)),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, list(proba_shape))],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", contract.OPSET)])
    model.ir_version = 8
    return model


def _linear(scores_to_proba=None, label_from=None, extra_nodes=(), extra_init=()):
    """X @ W + b -> scores; probabilities and label from the given nodes (softmax, argmax
    by default)."""
    from tests.model_factory import random_weights

    W, b = random_weights()
    nodes = [helper.make_node("MatMul", ["X", "W"], ["xw"]),
             helper.make_node("Add", ["xw", "b"], ["scores"]), *extra_nodes]
    nodes += scores_to_proba or [helper.make_node("Softmax", ["scores"], ["probabilities"],
                                                  axis=1)]
    nodes += label_from or [helper.make_node("ArgMax", ["scores"], ["label"], axis=1,
                                             keepdims=0)]
    init = [onnx.numpy_helper.from_array(W, "W"), onnx.numpy_helper.from_array(b, "b"),
            *extra_init]
    return _graph_model(nodes, init)


def _const(name, value):
    return onnx.numpy_helper.from_array(np.asarray(value), name)


BROKEN_AT_LOAD = [
    ("a broadcast that fails", _linear(
        extra_nodes=[helper.make_node("Add", ["scores", "bias3"], ["scores3"])],
        scores_to_proba=[helper.make_node("Softmax", ["scores3"], ["probabilities"], axis=1)],
        extra_init=[_const("bias3", np.zeros((3, 10), np.float32))]),
     r"fails when run on 8 test rows \(.*"),
    ("a huge allocation", _linear(
        extra_nodes=[helper.make_node("ConstantOfShape", ["huge"], ["big"]),
                     helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                     helper.make_node("Add", ["scores", "total"], ["scores2"])],
        scores_to_proba=[helper.make_node("Softmax", ["scores2"], ["probabilities"], axis=1)],
        extra_init=[_const("huge", np.array([1 << 40, 1 << 20], np.int64))]),
     r"fails when run on 8 test rows \(.*"),
    ("one label for all rows", _linear(
        label_from=[helper.make_node("ArgMax", ["scores"], ["l2"], axis=1, keepdims=0),
                    helper.make_node("Slice", ["l2", "zero", "one"], ["label"])],
        extra_init=[_const("zero", np.array([0])), _const("one", np.array([1]))]),
     r"breaks the model contract on 8 test rows: 1 labels and 8 rows of probabilities"),
    ("labels beyond 9", _linear(
        label_from=[helper.make_node("ArgMax", ["scores"], ["l2"], axis=1, keepdims=0),
                    helper.make_node("Add", ["l2", "ten"], ["label"])],
        extra_init=[_const("ten", np.array(10, np.int64))]),
     r"breaks the model contract on 8 test rows: label 1\d outside 0..9"),
    ("negative labels", _linear(
        label_from=[helper.make_node("ArgMax", ["scores"], ["l2"], axis=1, keepdims=0),
                    helper.make_node("Sub", ["l2", "ten"], ["label"])],
        extra_init=[_const("ten", np.array(10, np.int64))]),
     r"breaks the model contract on 8 test rows: label -\d+ outside 0..9"),
    ("NaN probabilities", _linear(
        scores_to_proba=[helper.make_node("Softmax", ["scores"], ["p"], axis=1),
                         helper.make_node("Mul", ["p", "nan"], ["probabilities"])],
        extra_init=[_const("nan", np.array(np.nan, np.float32))]),
     r"breaks the model contract on 8 test rows: probabilities that are not numbers"),
    ("probabilities that do not sum to 1", _linear(
        scores_to_proba=[helper.make_node("Sigmoid", ["scores"], ["probabilities"])]),
     r"breaks the model contract on 8 test rows: probabilities of a row sum to \d+(\.\d+)?, "
     r"not 1"),
    ("negative probabilities", _linear(
        scores_to_proba=[helper.make_node("Softmax", ["scores"], ["p"], axis=1),
                         helper.make_node("Sub", ["p", "tenth"], ["probabilities"]),
                         ],
        extra_init=[_const("tenth", np.array(0.1, np.float32))]),
     r"breaks the model contract on 8 test rows: a probability of -0\.\d+"),
]


@pytest.mark.parametrize(("what", "model", "message"), BROKEN_AT_LOAD,
                         ids=[c[0] for c in BROKEN_AT_LOAD])
def test_a_model_that_breaks_the_contract_when_run_is_refused_at_load(tmp_path, what, model,
                                                                      message):
    """These passed every static check and failed (or answered nonsense) only on data."""
    path = write_model(tmp_path, model)
    with pytest.raises(ModelError, match=rf"^{tmp_path}/model.onnx: {message}$") as info:
        Model.load(path)
    assert "\n" not in str(info.value)


BROKEN_ON_SOME_BATCHES = [
    ("a broadcast that fits only the test rows", _linear(
        extra_nodes=[helper.make_node("Add", ["scores", "bias8"], ["scores8"])],
        scores_to_proba=[helper.make_node("Softmax", ["scores8"], ["probabilities"], axis=1)],
        extra_init=[_const("bias8", np.zeros((8, 10), np.float32))]),
     r"failed on a batch of 20 rows \(.*"),
    ("at most 8 labels", _linear(
        label_from=[helper.make_node("ArgMax", ["scores"], ["l2"], axis=1, keepdims=0),
                    helper.make_node("Slice", ["l2", "zero", "eight"], ["label"])],
        extra_init=[_const("zero", np.array([0])), _const("eight", np.array([8]))]),
     r"returned 8 labels and 20 rows of probabilities for a batch of 20 rows"),
    ("labels beyond 9 for large inputs", _linear(
        label_from=[helper.make_node("ArgMax", ["scores"], ["l2"], axis=1, keepdims=0),
                    helper.make_node("ReduceMax", ["X"], ["m"], axes=[1], keepdims=0),
                    helper.make_node("Greater", ["m", "hundred"], ["big"]),
                    helper.make_node("Cast", ["big"], ["bigi"], to=TensorProto.INT64),
                    helper.make_node("Mul", ["bigi", "ten"], ["shift"]),
                    helper.make_node("Add", ["l2", "shift"], ["label"])],
        extra_init=[_const("hundred", np.array(100.0, np.float32)),
                    _const("ten", np.array(10, np.int64))]),
     r"returned label 1\d, outside 0..9"),
]


@pytest.mark.parametrize(("what", "model", "message"), BROKEN_ON_SOME_BATCHES,
                         ids=[c[0] for c in BROKEN_ON_SOME_BATCHES])
def test_every_batch_is_checked_cheaply(tmp_path, what, model, message):
    path = write_model(tmp_path, model)
    loaded = Model.load(path)
    X = np.full((20, 64), 200.0, np.float32)
    with pytest.raises(ModelError, match=rf"^{tmp_path}/model.onnx: {message}$"):
        loaded.run(X)


def test_non_finite_probabilities_on_extreme_rows_are_an_error_not_a_nan(model):
    """The bundled model's softmax gives NaN for rows of -3e38: never a silent NaN."""
    bundled = Model.load()
    X = np.zeros((3, 64), np.float32)
    X[1] = -3e38
    with pytest.raises(ModelError, match=r"probabilities that are not numbers for 1 of 3 rows "
                                         r"\(row 1 of the batch\)$") as info:
        bundled.run(X)
    assert info.value.rows.tolist() == [1]  # the others' answers stand
    assert np.isfinite(np.delete(info.value.proba, 1, axis=0)).all()


MANIFESTS = [
    (b'{"model": {"sha256": 123}}', "not a valid model manifest: model.sha256 must be 64 "
     "hexadecimal digits"),
    (b'{"model": {"sha256": null}}', "not a valid model manifest: model.sha256 must be 64 "
     "hexadecimal digits"),
    (b'{"model": {"sha256": ["a"]}}', "not a valid model manifest: model.sha256 must be 64 "
     "hexadecimal digits"),
    (b'{"model": {"sha256": "abc"}}', "not a valid model manifest: model.sha256 must be 64 "
     "hexadecimal digits"),
    (b'{"model": []}', "not a valid model manifest"),
    (b"[1, 2]", "not a valid model manifest"),
    (b'{"model": {"sha256": "\xff\xfe"}}', "not a valid model manifest: it is not UTF-8 text"),
    (b"\xff\xfe\x00{", "not a valid model manifest: it is not UTF-8 text"),
    (b"[" * 100_000, "not a valid model manifest"),
    (b'{"model": {"sha256": "' + b"a" * 64 + b'"}}' + b" " * (2 << 20),
     "not a valid model manifest: it is larger than 1 MiB"),
]


@pytest.mark.parametrize(("text", "message"), MANIFESTS)
def test_a_broken_manifest_is_a_model_error(tmp_path, text, message):
    path = write_model(tmp_path)
    (tmp_path / "model.json").write_bytes(text)
    with pytest.raises(ModelError) as info:
        Model.load(path)
    assert str(info.value) == f"{tmp_path}/model.json: {message}"


def test_a_directory_or_a_pipe_in_place_of_the_manifest(tmp_path):
    import os

    path = write_model(tmp_path)
    (tmp_path / "model.json").unlink()
    (tmp_path / "model.json").mkdir()
    with pytest.raises(ModelError, match=r"model.json: is not a regular file"):
        Model.load(path)
    (tmp_path / "model.json").rmdir()
    os.mkfifo(tmp_path / "model.json")  # reading it would wait forever
    with pytest.raises(ModelError, match=r"model.json: is not a regular file"):
        Model.load(path)


def test_a_directory_or_a_pipe_in_place_of_the_model(tmp_path):
    import os

    (tmp_path / "d.onnx").mkdir()
    with pytest.raises(ModelError, match=r"d.onnx: is not a regular file"):
        Model.load(tmp_path / "d.onnx", verify_hash=False)
    os.mkfifo(tmp_path / "p.onnx")
    with pytest.raises(ModelError, match=r"p.onnx: is not a regular file"):
        Model.load(tmp_path / "p.onnx", verify_hash=False)


def test_the_bundled_and_the_test_models_pass_the_run_checks(model):
    Model.load()
    assert model.run(np.full((5, 64), 16, np.float32))[0].shape == (5,)


@pytest.mark.parametrize("where", ["dim", "input", "output"])
def test_names_that_are_not_utf8_are_a_model_error(tmp_path, where):
    """A dimension named with bytes that are not UTF-8 raised UnicodeDecodeError from
    onnxruntime when the contract was checked (found by fuzzing)."""
    model = build_model()
    if where == "dim":
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "QQQQ"
    elif where == "input":
        model.graph.input[0].name = "QQQQ"
        model.graph.node[0].input[0] = "QQQQ"
    else:
        model.graph.output[0].name = "QQQQ"
        model.graph.node[3].output[0] = "QQQQ"
    data = model.SerializeToString().replace(b"QQQQ", b"\xab\xab\xab\xab")
    with pytest.raises(ModelError) as info:
        Model(data, display="m.onnx", verify_hash=False)
    assert str(info.value).startswith("m.onnx: ")
    assert "\n" not in str(info.value)
