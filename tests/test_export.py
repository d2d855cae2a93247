"""The exported graph: fixed contract, default domain only, valid, and runnable everywhere."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from digits_onnx.inference import contract
from digits_onnx.training import PortabilityError, build_model, check_contract, check_portable
from digits_onnx.training.export import linear_parts
from onnx.reference import ReferenceEvaluator


def _model(result) -> onnx.ModelProto:
    return onnx.load_model_from_string(result.model_bytes)


def _tensor(value):
    t = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
    return value.name, dtype, [d.dim_param or d.dim_value for d in t.shape.dim]


def test_contract_inputs_and_outputs(trained_recipe):
    graph = _model(trained_recipe).graph
    assert [_tensor(v) for v in graph.input] == [
        (contract.INPUT_NAME, contract.INPUT_DTYPE, ["N", contract.N_FEATURES])
    ]
    assert [_tensor(v) for v in graph.output] == [
        (contract.OUTPUT_LABEL, contract.OUTPUT_LABEL_DTYPE, ["N"]),
        (contract.OUTPUT_PROBA, contract.OUTPUT_PROBA_DTYPE, ["N", contract.N_CLASSES]),
    ]


def test_onnxruntime_sees_the_same_contract(trained_recipe):
    session = ort.InferenceSession(trained_recipe.model_bytes, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("X", "tensor(float)", ["N", 64])
    outs = {o.name: (o.type, o.shape) for o in session.get_outputs()}
    assert outs == {"label": ("tensor(int64)", ["N"]),
                    "probabilities": ("tensor(float)", ["N", 10])}


def test_pinned_opset_default_domain_no_zipmap(trained_recipe):
    model = _model(trained_recipe)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", contract.OPSET)]
    assert {n.domain for n in model.graph.node} <= contract.ALLOWED_DOMAINS
    ops = [n.op_type for n in model.graph.node]
    assert "ZipMap" not in ops
    assert len(ops) <= 6, ops  # tiny: Gemm, ArgMax, Softmax (+ Neg, Softplus, Neg for OvR)
    assert all(v.type.WhichOneof("value") == "tensor_type" for v in model.graph.output)
    check_portable(model)
    check_contract(model)


def test_checker_full_check_passes(trained_recipe):
    onnx.checker.check_model(_model(trained_recipe), full_check=True)


def test_reference_evaluator_agrees_with_onnxruntime(trained_recipe):
    X = trained_recipe.split.X_all.astype(np.float32)
    ref_labels, ref_proba = ReferenceEvaluator(_model(trained_recipe)).run(
        [contract.OUTPUT_LABEL, contract.OUTPUT_PROBA], {contract.INPUT_NAME: X}
    )
    session = ort.InferenceSession(trained_recipe.model_bytes, providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {contract.INPUT_NAME: X})
    assert np.array_equal(ref_labels, labels)
    assert np.array_equal(ref_labels, trained_recipe.estimator.predict(trained_recipe.split.X_all))
    np.testing.assert_allclose(ref_proba, proba, atol=contract.PROBA_ATOL, rtol=0)


def test_scaler_is_folded_into_the_weights(trained_default):
    """W' x + b' equals the pipeline's decision function on raw pixels."""
    W, b, link = linear_parts(trained_default.estimator)
    X = trained_default.split.X_test
    np.testing.assert_allclose(X @ W.T + b, trained_default.estimator.decision_function(X),
                               rtol=1e-10, atol=1e-9)
    assert link == "softmax"


def test_ovr_weights_are_the_ten_binary_models(trained_seed):
    W, b, link = linear_parts(trained_seed.estimator)
    X = trained_seed.split.X_test
    np.testing.assert_allclose(X @ W.T + b, trained_seed.estimator.decision_function(X),
                               rtol=1e-10, atol=1e-9)
    assert link == "ovr-sigmoid"


def test_skl2onnx_standard_conversion_is_an_oracle_and_is_rejected(trained_recipe):
    """skl2onnx's own converter agrees on the numbers, but uses ai.onnx.ml: the guard fails it."""
    from skl2onnx import to_onnx

    estimator = trained_recipe.estimator
    X = trained_recipe.split.X_test.astype(np.float32)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    standard = to_onnx(estimator, X[:1], options={id(final): {"zipmap": False}},
                       target_opset={"": contract.OPSET, "ai.onnx.ml": 3})
    assert any(n.domain == "ai.onnx.ml" for n in standard.graph.node)
    with pytest.raises(PortabilityError, match=r"outside the default ONNX domain: ai\.onnx\.ml\."):
        check_portable(standard)

    ours = ort.InferenceSession(trained_recipe.model_bytes, providers=["CPUExecutionProvider"])
    oracle = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"])
    labels, proba = ours.run(None, {"X": X})
    oracle_labels, oracle_proba = oracle.run(None, {"X": X})
    assert np.array_equal(labels, oracle_labels)
    np.testing.assert_allclose(proba, oracle_proba, atol=contract.PROBA_ATOL, rtol=0)


def test_guard_rejects_other_departures(trained_default):
    model = _model(trained_default)
    wrong_opset = onnx.ModelProto()
    wrong_opset.CopyFrom(model)
    wrong_opset.opset_import[0].version = 13
    with pytest.raises(PortabilityError, match="opset 13, the contract pins 17"):
        check_portable(wrong_opset)

    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    renamed.graph.input[0].name = "input"
    with pytest.raises(PortabilityError, match="differs from the contract"):
        check_contract(renamed)


def test_non_linear_models_are_refused():
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier().fit(np.eye(10, 64) * 16, np.arange(10))
    with pytest.raises(PortabilityError, match="cannot export DecisionTreeClassifier"):
        build_model(tree)


def test_export_is_deterministic_in_process(trained_default):
    from digits_onnx.training.export import serialize

    first = serialize(build_model(trained_default.estimator))
    second = serialize(build_model(trained_default.estimator))
    assert first == second
