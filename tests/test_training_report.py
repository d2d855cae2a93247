"""The model card: per-class metrics, confidence and calibration, readable coefficients,
honest limits, and the operators the graph really has."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from digits_onnx.inference import contract
from digits_onnx.training import figures, report
from sklearn.metrics import precision_recall_fscore_support

REPO = Path(__file__).resolve().parent.parent


def _readme(result) -> str:
    return (result.paths[0].parent / "report" / report.README).read_text()


def _pngs(result) -> set[str]:
    return {p.name for p in (result.paths[0].parent / "report").glob("*.png")}


def test_figures_of_each_recipe(trained_default, trained_seed):
    common = set(report.FIGURES.values())
    assert _pngs(trained_default) == common | {report.CV_CURVE}
    # One C, no curve: the seed recipe shows its fold scores instead.
    assert _pngs(trained_seed) == common | {report.CV_FOLDS}


def test_every_figure_is_in_the_card_and_every_image_exists(trained_recipe):
    readme = _readme(trained_recipe)
    linked = set(re.findall(r"\]\(([^)]+\.png)\)", readme))
    assert linked == _pngs(trained_recipe)


def test_per_class_table_with_macro_averages(trained_recipe):
    split = trained_recipe.split
    precision, recall, f1, support = precision_recall_fscore_support(
        split.y_test, trained_recipe.test_predictions, labels=list(range(10)), zero_division=0
    )
    readme = _readme(trained_recipe)
    assert "| digit | precision | recall | F1 | support |" in readme
    for k in range(10):
        row = f"| {k} | {precision[k]:.4f} | {recall[k]:.4f} | {f1[k]:.4f} | {support[k]} |"
        assert row in readme
    macro = (f"| macro average | {precision.mean():.4f} | {recall.mean():.4f} | "
             f"{f1.mean():.4f} | {support.sum()} |")
    assert macro in readme


def test_expected_calibration_error():
    # Two bins used: confidence 0.95 with 90% right, confidence 0.55 with 50% right.
    proba = np.zeros((20, 10))
    proba[:10, 0], proba[:10, 1] = 0.95, 0.05
    proba[10:, 0], proba[10:, 1] = 0.55, 0.45
    y = np.array([0] * 9 + [1] + [0] * 5 + [1] * 5)
    ece = figures.expected_calibration_error(proba, y)
    assert ece == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert figures.expected_calibration_error(np.eye(10), np.arange(10)) == 0.0


def test_card_states_the_calibration_error(trained_recipe):
    proba = trained_recipe.estimator.predict_proba(trained_recipe.split.X_test)
    ece = figures.expected_calibration_error(proba, trained_recipe.split.y_test)
    assert f"expected calibration error (ECE) is {ece:.4f}" in _readme(trained_recipe)


def test_misclassified_captions_carry_the_confidence():
    y_true = np.array([9, 1, 5])
    y_pred = np.array([8, 1, 3])
    proba = np.full((3, 10), 0.01)
    proba[0, 8], proba[2, 3] = 0.62, 0.9049
    assert figures.misclassified_captions(y_true, y_pred, proba) == [
        "pred 8 (0.62)\ntrue 9", "pred 3 (0.90)\ntrue 5"]


def test_coefficient_images_are_symmetric_per_class():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(10, 64))
    weights[3] *= 100  # one class with far larger weights keeps its own scale
    std = rng.uniform(0, 5, size=64)
    std[0] = 0.0  # a pixel that never varies contributes nothing
    images, limits = figures.coefficient_images(weights, std)
    assert images.shape == (10, 8, 8)
    np.testing.assert_allclose(images.reshape(10, 64), weights * std)
    np.testing.assert_allclose(limits, np.abs(weights * std).max(axis=1))
    assert images[:, 0, 0].tolist() == [0.0] * 10


def test_the_card_names_the_operators_the_graph_has(trained_recipe):
    readme = _readme(trained_recipe)
    assert "Softmax or Sigmoid" not in readme
    model = onnx.load_model_from_string(trained_recipe.model_bytes)
    ops = ", ".join(node.op_type for node in model.graph.node)
    assert f"operators, in graph order: {ops}" in readme
    if trained_recipe.recipe == "seed":
        assert "no Sigmoid operator" in readme


def test_limits_are_measured(trained_recipe):
    readme = _readme(trained_recipe)
    assert "## Limits" in readme
    blank = trained_recipe.estimator.predict_proba(np.zeros((1, contract.N_FEATURES)))[0]
    digit, confidence = int(np.argmax(blank)), float(blank.max())
    assert f'all-zero image (no ink at all) is predicted "{digit}" with confidence ' \
           f"{confidence:.3f}" in readme
    assert "13 people" in readme
    assert "not a detector of non-digits" in readme


def test_the_bundled_model_reads_a_blank_as_a_confident_4(trained_default):
    """The number the card (and the README) quote for the bundled model."""
    blank = trained_default.estimator.predict_proba(np.zeros((1, contract.N_FEATURES)))[0]
    assert int(np.argmax(blank)) == 4 and round(float(blank.max()), 3) == 0.986


def test_seed_card_lists_its_fold_scores(trained_seed):
    folds = trained_seed.cv.folds
    assert len(folds) == 5
    assert np.mean(folds) == pytest.approx(trained_seed.metrics["cv_mean"])
    readme = _readme(trained_seed)
    assert ", ".join(f"{score:.4f}" for score in folds) in readme
    assert "chosen C" not in readme


def test_default_folds_are_the_chosen_Cs(trained_default):
    folds = trained_default.cv.folds
    assert len(folds) == 5
    assert np.mean(folds) == pytest.approx(trained_default.metrics["cv_mean"])
    assert np.std(folds) == pytest.approx(trained_default.metrics["cv_std"])


def test_figures_render_to_the_same_bytes_twice(trained_seed):
    """The seed recipe's figures (the default's are checked against the committed set)."""
    folder = trained_seed.paths[0].parent / "report"
    again = report.render_report(**report_inputs(trained_seed))
    assert again == {p.name: p.read_bytes() for p in folder.iterdir()}


def report_inputs(result) -> dict:
    """What training passes to render_report, rebuilt from a training result."""
    from digits_onnx.training.api import report_arguments

    return report_arguments(result.estimator, result.split, result.cv, result.manifest,
                            result.model_bytes, result.description)


def test_the_probabilities_profiles_card_has_no_label(trained_default):
    """The card of a probabilities-profile model names its one output and no ArgMax."""
    from digits_onnx.training.api import report_arguments
    from digits_onnx.training.export import build_model, profile_contract, serialize

    model_bytes = serialize(build_model(trained_default.estimator, profile="probabilities"))
    manifest = {**trained_default.manifest, "profile": "probabilities",
                "contract": profile_contract("probabilities")}
    arguments = report_arguments(trained_default.estimator, trained_default.split,
                                 trained_default.cv, manifest, model_bytes,
                                 trained_default.description)
    readme = report.readme_text(
        manifest, trained_default.description,
        **{key: arguments[key] for key in ("y_test", "y_pred", "proba", "folds", "operators",
                                           "link", "probes")})
    assert "output `probabilities` float32 [N, 10]." in readme
    assert "operators, in graph order: Gemm, Softmax." in readme
    assert "No ArgMax and no `label` output" in readme
