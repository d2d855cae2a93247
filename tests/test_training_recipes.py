"""Both recipes: the tutorial's published numbers, and C chosen by cross-validation alone."""

from __future__ import annotations

import numpy as np
import pytest
from digits_onnx.training import RecipeError
from digits_onnx.training.data import load_split
from digits_onnx.training.recipes import DEFAULT_C_GRID, fit_recipe

# Published by the tutorial (scikit-learn 0.21's one-vs-rest liblinear default).
TUTORIAL_ACCURACY = 0.961111
TUTORIAL_CORRECT = 346
TUTORIAL_FIRST_30 = "6 9 3 7 2 1 5 2 5 2 1 8 4 0 4 2 3 7 8 8 4 3 9 7 5 6 3 5 6 3"


def test_seed_reproduces_the_tutorial(trained_seed):
    metrics = trained_seed.metrics
    assert metrics["test_correct"] == TUTORIAL_CORRECT
    assert metrics["test_size"] == 360
    assert round(metrics["test_accuracy"], 6) == TUTORIAL_ACCURACY
    first = " ".join(str(v) for v in trained_seed.test_predictions[:30])
    assert first == TUTORIAL_FIRST_30
    # ... and position 11 is the tutorial's famous miss: a 9 read as an 8.
    assert trained_seed.split.y_test[11] == 9 and trained_seed.test_predictions[11] == 8


def test_seed_is_one_vs_rest_liblinear(trained_seed):
    from sklearn.multiclass import OneVsRestClassifier

    assert isinstance(trained_seed.estimator, OneVsRestClassifier)
    assert trained_seed.estimator.estimator.solver == "liblinear"
    assert trained_seed.hyperparameters["C"] == 1.0


def test_default_beats_the_seed(trained_default):
    assert trained_default.metrics["test_accuracy"] >= 0.965


def test_default_choice_is_the_best_cv_score(trained_default):
    """C is the arg-max of the CV curve: the test split played no part."""
    curve = trained_default.metrics["cv_curve"]
    assert [p["C"] for p in curve] == list(DEFAULT_C_GRID)
    best = max(curve, key=lambda p: p["mean"])
    assert trained_default.hyperparameters["C"] == best["C"]
    assert trained_default.metrics["cv_mean"] == best["mean"]
    assert trained_default.metrics["cv_std"] == best["std"]
    assert all(0 < p["std"] < 0.1 and 0.5 < p["mean"] <= 1 for p in curve)


def test_default_model_is_refit_on_the_whole_training_split(trained_default):
    pipeline = trained_default.estimator
    assert pipeline.named_steps["scaler"].n_samples_seen_ == len(trained_default.split.y_train)
    assert trained_default.hyperparameters["C"] == pipeline.named_steps["logreg"].C


def test_replaying_a_grid_is_deterministic():
    split = load_split()
    grid = [0.01, 0.1, 1.0]
    a = fit_recipe("default", split, C_grid=grid)
    b = fit_recipe("default", split, C_grid=grid)
    assert a.hyperparameters == b.hyperparameters
    assert a.cv == b.cv
    assert np.array_equal(a.estimator.predict_proba(split.X_test),
                          b.estimator.predict_proba(split.X_test))


@pytest.mark.parametrize(
    ("name", "grid", "message"),
    [
        ("bogus", None, "unknown recipe 'bogus'; choose one of default, seed"),
        ("default", [], "C grid must hold positive finite numbers"),
        ("default", [0.1, -1.0], "C grid must hold positive finite numbers"),
        ("default", [float("nan")], "C grid must hold positive finite numbers"),
        ("seed", [1.0], "the seed recipe has no C grid"),
    ],
)
def test_bad_recipe_arguments(name, grid, message):
    with pytest.raises(RecipeError, match=message):
        fit_recipe(name, None, C_grid=grid)
