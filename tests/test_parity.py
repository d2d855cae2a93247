"""onnxruntime against scikit-learn, in the style of sklearn-onnx's own tests.

Labels must match exactly, except rows where scikit-learn's top-two probability margin is
below TIE_MARGIN (counted and reported); probabilities within PROBA_ATOL. Inputs are cast to
float32 first and scikit-learn sees the same float32 values, so only the arithmetic differs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from digits_onnx.inference import contract
from digits_onnx.inference.check import compare

VERSIONS = (
    f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, opset {contract.OPSET}"
)


def adversarial_rows() -> dict[str, np.ndarray]:
    """Inputs no digit looks like, inside the feature range."""
    rng = np.random.default_rng(20240229)
    lo, hi = contract.FEATURE_MIN, contract.FEATURE_MAX
    return {
        "all zeros": np.full((1, contract.N_FEATURES), lo),
        "all 16s": np.full((1, contract.N_FEATURES), hi),
        "random integers": rng.integers(0, int(hi) + 1, size=(500, contract.N_FEATURES)),
        "random floats": rng.uniform(lo, hi, size=(500, contract.N_FEATURES)),
        "one lit pixel": np.eye(contract.N_FEATURES) * hi,
    }


def assert_parity(estimator, model_bytes: bytes, X: np.ndarray, what: str) -> int:
    """Compare and return the number of near-tie rows (excused from label equality)."""
    X32 = np.asarray(X, dtype=np.float32)
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    labels, proba = session.run(
        [contract.OUTPUT_LABEL, contract.OUTPUT_PROBA], {contract.INPUT_NAME: X32}
    )
    expected_proba = estimator.predict_proba(X32.astype(np.float64))
    expected_labels = estimator.predict(X32.astype(np.float64))
    assert labels.dtype == np.int64 and proba.dtype == np.float32, VERSIONS
    assert labels.shape == (len(X32),) and proba.shape == (len(X32), contract.N_CLASSES)
    np.testing.assert_allclose(
        proba, expected_proba, atol=contract.PROBA_ATOL, rtol=0,
        err_msg=f"{what}: probabilities differ beyond {contract.PROBA_ATOL} ({VERSIONS})",
    )
    drift = compare(expected_labels, expected_proba, labels, proba)
    wrong = drift.label_mismatches
    assert wrong == 0, f"{what}: {wrong} labels differ outside near-ties ({VERSIONS})"
    return drift.near_tie_rows


def _datasets(result) -> dict[str, np.ndarray]:
    return {
        "test split": result.split.X_test,
        "all 1797 rows": result.split.X_all,
        **adversarial_rows(),
    }


@pytest.mark.parametrize("dataset", ["test split", "all 1797 rows", *adversarial_rows()])
def test_onnxruntime_matches_sklearn(trained_recipe, dataset, record_property):
    X = _datasets(trained_recipe)[dataset]
    ties = assert_parity(trained_recipe.estimator, trained_recipe.model_bytes, X, dataset)
    record_property("near_ties", ties)


def test_probabilities_are_distributions(trained_recipe):
    X = np.vstack(list(adversarial_rows().values())).astype(np.float32)
    session = ort.InferenceSession(trained_recipe.model_bytes, providers=["CPUExecutionProvider"])
    _, proba = session.run(None, {contract.INPUT_NAME: X})
    assert np.all(np.isfinite(proba)) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_near_ties_are_counted_not_failed(trained_default):
    """The tie rule works: a flipped label is excused only when the margin is tiny."""
    proba = np.array([[0.5, 0.5 - 1e-7] + [0.0] * 8, [0.6, 0.4] + [0.0] * 8])
    flipped_tie = compare(np.array([0, 0]), proba, np.array([1, 0]), proba)
    assert (flipped_tie.label_mismatches, flipped_tie.near_tie_rows) == (0, 1)
    assert flipped_tie.near_tie_flips == 1 and flipped_tie.ok
    flipped_clear = compare(np.array([0, 0]), proba, np.array([0, 1]), proba)
    assert (flipped_clear.label_mismatches, flipped_clear.near_tie_rows) == (1, 1)
    assert flipped_clear.near_tie_flips == 0 and not flipped_clear.ok


def test_parity_check_can_fail(trained_default):
    """A model with a nudged weight is caught: the comparison is not vacuous."""
    model = onnx.load_model_from_string(trained_default.model_bytes)
    coef = next(t for t in model.graph.initializer if t.name == "coef")
    weights = onnx.numpy_helper.to_array(coef).copy()
    weights[3, 36] += 0.05
    coef.CopyFrom(onnx.numpy_helper.from_array(weights, "coef"))
    with pytest.raises(AssertionError, match="opset 17"):
        assert_parity(trained_default.estimator, model.SerializeToString(),
                      trained_default.split.X_all, "tampered")
