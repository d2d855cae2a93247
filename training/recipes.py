"""The two training recipes: each returns a fitted estimator and the record of how C was chosen.

``seed`` reproduces the tutorial (scikit-learn 0.21's default: one-vs-rest liblinear) so its
published numbers stay checkable. ``default`` standardizes the pixels, fits a multinomial
logistic regression and picks ``C`` by stratified 5-fold cross-validation on the training
split only; the test split is touched once, after the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from digits_onnx.training.data import RANDOM_STATE, Split
from digits_onnx.training.errors import RecipeError

if TYPE_CHECKING:
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

RECIPES = ("default", "seed")
DEFAULT_RECIPE = "default"

#: Thirds of a decade from 1e-3 to 1e2: wide enough to see both sides of the optimum.
DEFAULT_C_GRID = tuple(float(c) for c in np.logspace(-3, 2, 16))
CV_FOLDS = 5
#: lbfgs needs ~30 iterations on standardized digits; the cap only guards against surprises.
MAX_ITER = 1000


class Classifier(Protocol):
    """What training and verification use of a fitted recipe's estimator."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class CVRecord:
    """Cross-validated accuracy of each C tried, and which one was chosen."""

    chosen_C: float
    mean: float
    std: float
    curve: tuple[dict, ...]
    #: The chosen C's accuracy on each fold (for the report; not in the manifest).
    folds: tuple[float, ...] = ()

    def as_metrics(self) -> dict:
        """The CV part of the manifest's ``metrics``."""
        return {"cv_mean": self.mean, "cv_std": self.std, "cv_curve": [dict(p) for p in self.curve]}


@dataclass
class RecipeResult:
    """A fitted estimator with the hyperparameters and CV record the manifest needs."""

    name: str
    estimator: Classifier
    hyperparameters: dict
    cv: CVRecord
    description: str = field(default="")


def cv_splitter() -> StratifiedKFold:
    """Deterministic stratified folds, shared by both recipes so their CV numbers compare."""
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=RANDOM_STATE)


def cv_settings() -> dict:
    """How the folds were drawn, as recorded in the hyperparameters."""
    return {"folds": CV_FOLDS, "shuffle": True, "random_state": RANDOM_STATE, "stratified": True}


def _single_thread() -> threadpool_limits:
    # On small problems OpenMP/BLAS threads cost more than they save (lbfgs ran ~15x slower
    # with 2 threads here), and one thread keeps the floating-point sums reproducible.
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def fit_seed(split: Split) -> RecipeResult:
    """The tutorial's model: ten liblinear binary classifiers, one per digit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.multiclass import OneVsRestClassifier

    C = 1.0
    estimator = OneVsRestClassifier(LogisticRegression(C=C, solver="liblinear"))
    with _single_thread():
        scores = cross_val_score(estimator, split.X_train, split.y_train, cv=cv_splitter())
        estimator.fit(split.X_train, split.y_train)
    mean, std = float(np.mean(scores)), float(np.std(scores))
    return RecipeResult(
        name="seed",
        estimator=estimator,
        hyperparameters={
            "C": C,
            "model": "OneVsRestClassifier(LogisticRegression)",
            "solver": "liblinear",
            "scaler": None,
            "cv": cv_settings(),
        },
        cv=CVRecord(
            chosen_C=C,
            mean=mean,
            std=std,
            curve=({"C": C, "mean": mean, "std": std},),
            folds=tuple(float(score) for score in scores),
        ),
        description="one-vs-rest liblinear logistic regression (the tutorial's model)",
    )


def fit_default(split: Split, *, C_grid: Sequence[float] = DEFAULT_C_GRID) -> RecipeResult:
    """Standardize, fit multinomial lbfgs, choose C by stratified CV on the training split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    grid = [float(c) for c in C_grid]
    if not grid or any(not np.isfinite(c) or c <= 0 for c in grid):
        raise RecipeError(f"C grid must hold positive finite numbers, got {grid!r}")
    pipeline = Pipeline(
        [
            ("scaler", StandardScaler()),
            ("logreg", LogisticRegression(solver="lbfgs", max_iter=MAX_ITER)),
        ]
    )
    search = GridSearchCV(
        pipeline, {"logreg__C": grid}, cv=cv_splitter(), scoring="accuracy", refit=True
    )
    with _single_thread():
        search.fit(split.X_train, split.y_train)
    results = search.cv_results_
    curve = tuple(
        {"C": float(c), "mean": float(m), "std": float(s)}
        for c, m, s in zip(
            results["param_logreg__C"],
            results["mean_test_score"],
            results["std_test_score"],
            strict=True,
        )
    )
    best = int(search.best_index_)
    chosen = float(search.best_params_["logreg__C"])
    folds = tuple(float(results[f"split{i}_test_score"][best]) for i in range(CV_FOLDS))
    return RecipeResult(
        name="default",
        estimator=search.best_estimator_,
        hyperparameters={
            "C": chosen,
            "C_grid": grid,
            "model": "Pipeline(StandardScaler, LogisticRegression)",
            "solver": "lbfgs",
            "max_iter": MAX_ITER,
            "scaler": "StandardScaler",
            "cv": cv_settings(),
        },
        cv=CVRecord(
            chosen_C=chosen,
            mean=curve[best]["mean"],
            std=curve[best]["std"],
            curve=curve,
            folds=folds,
        ),
        description="standardized pixels, multinomial logistic regression, C chosen by 5-fold CV",
    )


def check_recipe(name: str) -> str:
    """Reject unknown recipe names with the list of known ones."""
    if name not in RECIPES:
        raise RecipeError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return name


def fit_recipe(name: str, split: Split, *, C_grid: Sequence[float] | None = None) -> RecipeResult:
    """Fit the named recipe; ``C_grid`` (default recipe only) replays a manifest's grid."""
    check_recipe(name)
    if name == "seed":
        if C_grid is not None:
            raise RecipeError("the seed recipe has no C grid; it always uses C=1.0")
        return fit_seed(split)
    return fit_default(split, C_grid=DEFAULT_C_GRID if C_grid is None else C_grid)
