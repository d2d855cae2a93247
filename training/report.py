"""The model card, rendered to bytes: its Markdown, and the figures of :mod:`.figures`.

The card states what a data scientist needs before trusting the model: per-class metrics,
how confidence relates to being right (histogram, reliability diagram, expected calibration
error), what the weights look at, and measured limits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from digits_onnx.inference import contract
from digits_onnx.training import figures

#: Figures every card has, by role.
FIGURES = {
    "samples": "samples.png",
    "confusion": "confusion_matrix.png",
    "coefficients": "coefficients.png",
    "misclassified": "misclassified.png",
    "confidence": "confidence.png",
    "calibration": "calibration.png",
}
#: Cross-validation: the accuracy against C when C was chosen from a grid, else the folds.
CV_CURVE = "cv_curve.png"
CV_FOLDS = "cv_folds.png"
README = "README.md"
#: Inputs that are no digit, run through the model for the card's limits section.
PROBES = {
    "all-zero image (no ink at all)": contract.FEATURE_MIN,
    "all-16 image (every pixel fully inked)": contract.FEATURE_MAX,
}
#: The scikit-learn digits are the UCI test set: 1,797 images by this many people.
WRITERS = 13


def per_class_rows(y_true: np.ndarray, y_pred: np.ndarray) -> list[str]:
    """The per-class precision, recall, F1 and support table in Markdown, with macro
    averages (every digit counts the same)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(contract.CLASS_LABELS), zero_division=0
    )
    rows = ["| digit | precision | recall | F1 | support |", "|---:|---:|---:|---:|---:|"]
    for k in contract.CLASS_LABELS:
        rows.append(
            f"| {k} | {precision[k]:.4f} | {recall[k]:.4f} | {f1[k]:.4f} | {support[k]} |"
        )
    rows.append(
        f"| macro average | {precision.mean():.4f} | {recall.mean():.4f} | {f1.mean():.4f} "
        f"| {support.sum()} |"
    )
    return rows


def wilson_interval(correct: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy of ``correct`` out of ``total``."""
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    denominator = 1 + z * z / total
    center = (p + z * z / (2 * total)) / denominator
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return float(center - half), float(center + half)


def _signature(values: Sequence[Mapping[str, Any]]) -> str:
    return " and ".join(
        f"`{v['name']}` {v['dtype']} [{', '.join(str(d) for d in v['shape'])}]" for v in values
    )


def _graph_sentences(operators: Sequence[str], link: str, scaler: bool) -> list[str]:
    """What the graph computes, from the operators it really has."""
    if link == "ovr-sigmoid":
        proba = (
            "`probabilities` = Softmax(-Softplus(-scores)): the one-vs-rest recipe's ten binary "
            "sigmoids divided by their sum, written as a softmax of log-sigmoids; no Sigmoid "
            "operator is emitted (onnxruntime's float32 Sigmoid returns 0 below about -20, "
            "which turned some rows into 0/0)."
        )
    else:
        proba = "`probabilities` = Softmax(scores), the multinomial model's own link."
    label = (
        "`label` = ArgMax(scores)."
        if "ArgMax" in operators
        else "No ArgMax and no `label` output (the probabilities profile): the label is the "
        "argmax of the probabilities."
    )
    return [
        f"The operators, in graph order: {', '.join(operators)}.",
        "",
        "- `scores` = Gemm(X, W, b)"
        + (", with the scaler folded into W and b." if scaler else " on raw pixels."),
        f"- {proba}",
        f"- {label}",
    ]


def readme_text(
    manifest: Mapping[str, Any],
    description: str,
    *,
    y_test: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    folds: Sequence[float],
    operators: Sequence[str],
    link: str,
    probes: Mapping[str, np.ndarray],
) -> str:
    """A model card that reads well on a code host: metrics tables, then the figures, then
    the limits."""
    metrics = manifest["metrics"]
    hyper = manifest["hyperparameters"]
    data = manifest["training_data"]
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    model = manifest["model"]
    signature = manifest["contract"]
    rows = [
        ("recipe", f"`{manifest['recipe']}`: {description}"),
        ("profile", f"`{manifest.get('profile', 'full')}`"),
        ("C", f"{hyper['C']:.4g}"),
        (
            "CV accuracy (5-fold, training split)",
            f"{metrics['cv_mean']:.4f} ± {metrics['cv_std']:.4f}",
        ),
        (
            "test accuracy",
            f"{metrics['test_accuracy']:.4f} ({metrics['test_correct']}/{metrics['test_size']})",
        ),
        ("training / test rows", f"{data['n_train']} / {data['n_test']}"),
        ("training data fingerprint", f"`{data['fingerprint'][:23]}…`"),
        ("model", f"`{model['file']}`, {model['size_bytes']} bytes, opset {manifest['opset']}"),
        ("model sha256", f"`{model['sha256']}`"),
        ("versions", versions),
    ]
    top = np.asarray(proba, dtype=np.float64).max(axis=1)
    wrong = y_test != y_pred
    confident_wrong = int(np.sum(wrong & (top > 0.9)))
    ece = figures.expected_calibration_error(proba, y_test)
    fold_text = ", ".join(f"{score:.4f}" for score in folds)
    if len(metrics["cv_curve"]) > 1:
        cv = [
            "![CV accuracy against C](cv_curve.png)",
            "",
            f"C is the grid's best mean accuracy over the folds; its accuracy on each of the "
            f"{len(folds)} folds: {fold_text}.",
        ]
    else:
        cv = [
            f"This recipe fixes C = {hyper['C']:g}, so there is no curve to choose from: its "
            f"accuracy on each of the {len(folds)} stratified folds of the training split is "
            f"{fold_text} (mean {metrics['cv_mean']:.4f} ± {metrics['cv_std']:.4f}).",
            "",
            "![Accuracy on each CV fold](cv_folds.png)",
        ]
    correct, total = int(metrics["test_correct"]), int(metrics["test_size"])
    low, high = wilson_interval(correct, total)
    probe_text = "; ".join(
        f'an {name} is predicted "{int(np.argmax(p))}" with confidence {float(np.max(p)):.3f}'
        for name, p in probes.items()
    )
    n_images = data["n_train"] + data["n_test"]
    lines = [
        "# Model card: digits logistic regression",
        "",
        "Generated by `digits-train`; do not edit by hand. Logistic regression on scikit-learn's",
        "8x8 digits (pixel values 0..16), exported as a portable ONNX graph (default domain",
        f"only). Input {_signature(signature['inputs'])}; "
        f"output{'s' if len(signature['outputs']) > 1 else ''} "
        f"{_signature(signature['outputs'])}.",
        "",
        *_graph_sentences(operators, link, scaler=bool(hyper.get("scaler"))),
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in rows],
        "",
        "## Per-class metrics (test split)",
        "",
        *per_class_rows(y_test, y_pred),
        "",
        "## Cross-validation",
        "",
        *cv,
        "",
        "## Test split",
        "",
        "![Confusion matrix](confusion_matrix.png)",
        "",
        "![Misclassified test digits](misclassified.png)",
        "",
        "## Confidence and calibration",
        "",
        f"Top probability of right and wrong predictions: {int(wrong.sum())} wrong, "
        f"{confident_wrong} of them with confidence above 0.9.",
        "",
        "![Confidence of right and wrong predictions](confidence.png)",
        "",
        f"Test rows binned by top probability ({figures.CALIBRATION_BINS} equal-width bins); "
        "a bar is the accuracy in its bin, the diagonal perfect calibration. The top-label "
        f"expected calibration error (ECE) is {ece:.4f}: the row-weighted mean gap between "
        f"accuracy and confidence over the bins. With {total} rows, most in the top bin, read "
        "it as a rough check.",
        "",
        "![Reliability diagram](calibration.png)",
        "",
        "## What the model looks at",
        "",
        "![Per-class coefficients](coefficients.png)",
        "",
        "![Sample training digits](samples.png)",
        "",
        "## Limits",
        "",
        "- **Confidence is not a detector of non-digits.** The ten probabilities always sum "
        "to 1: the model has no \"none of these\" answer, and inputs unlike any digit can get "
        f"a high top probability. Measured: {probe_text}. Check that inputs are digits before "
        "scoring.",
        f"- **The same writers in training and test.** The {n_images:,} images were written "
        f"by {WRITERS} people (scikit-learn's copy of the UCI test set), and the random split "
        "puts every person's digits on both sides: the test accuracy measures new digits by "
        "known writers. Expect less on other people's handwriting.",
        f"- **A small test set.** {total} rows: one error moves the accuracy by "
        f"{100 / total:.2f} points; the 95% Wilson interval of the test accuracy is "
        f"{low:.3f} to {high:.3f}.",
        "- **Fixed preprocessing.** Inputs must be made as the data was: a 32x32 bitmap counted "
        "in 4x4 blocks, 0..16 per pixel. Grayscale 0..255, other sizes or unnormalized "
        "positions are outside what the model has seen.",
        "",
    ]
    return "\n".join(lines)


def render_report(
    *,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    weights: np.ndarray,
    manifest: Mapping[str, Any],
    description: str,
    folds: Sequence[float],
    operators: Sequence[str],
    link: str,
    probes: Mapping[str, np.ndarray],
) -> dict[str, bytes]:
    """All report files by name, as bytes; the caller decides where and how to write them.

    ``proba`` are the test split's probabilities, ``folds`` the chosen C's accuracy on each
    CV fold, ``operators`` the exported graph's operator types in order, ``link`` how its
    probabilities follow from the scores, ``probes`` the probabilities of :data:`PROBES`.
    """
    metrics = manifest["metrics"]
    pixel_std = np.asarray(X_train, dtype=np.float64).std(axis=0)
    files = {
        FIGURES["samples"]: figures.samples_png(X_train, y_train),
        FIGURES["confusion"]: figures.confusion_png(y_test, y_pred),
        FIGURES["coefficients"]: figures.coefficients_png(weights, pixel_std),
        FIGURES["misclassified"]: figures.misclassified_png(X_test, y_test, y_pred, proba),
        FIGURES["confidence"]: figures.confidence_png(proba, y_test, y_pred),
        FIGURES["calibration"]: figures.calibration_png(proba, y_test),
    }
    C = manifest["hyperparameters"]["C"]
    if len(metrics["cv_curve"]) > 1:
        files[CV_CURVE] = figures.cv_curve_png(metrics["cv_curve"], C)
    else:
        files[CV_FOLDS] = figures.cv_folds_png(folds, C)
    files[README] = readme_text(
        manifest,
        description,
        y_test=y_test,
        y_pred=y_pred,
        proba=proba,
        folds=folds,
        operators=operators,
        link=link,
        probes=probes,
    ).encode("utf-8")
    return files
