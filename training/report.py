"""Report figures and a model card, rendered to bytes (PNG and Markdown).

matplotlib is imported here only, and only through ``Figure`` objects on the Agg canvas: no
pyplot, no global backend switch, nothing left open. PNGs carry no "Software" stamp, so the
bytes depend only on the data and the matplotlib version.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from digits_onnx.inference import contract

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURES = {
    "samples": "samples.png",
    "confusion": "confusion_matrix.png",
    "coefficients": "coefficients.png",
    "misclassified": "misclassified.png",
    "cv_curve": "cv_curve.png",
}
README = "README.md"
DPI = 80


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _digit_grid(
    images: np.ndarray,
    titles: Sequence[str],
    *,
    columns: int,
    suptitle: str,
    title_size: int = 9,
) -> bytes:
    rows = max(1, -(-len(images) // columns))
    fig = _figure(1.1 * columns, 1.25 * rows + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(
            np.reshape(image, contract.IMAGE_SHAPE),
            cmap="gray_r",
            vmin=contract.FEATURE_MIN,
            vmax=contract.FEATURE_MAX,
            interpolation="nearest",
        )
        ax.set_title(title, fontsize=title_size)
    fig.suptitle(suptitle)
    return _png(fig)


def samples_png(X: np.ndarray, y: np.ndarray, *, count: int = 32) -> bytes:
    """The first training digits with their labels: what the model sees."""
    return _digit_grid(
        X[:count],
        [f"{int(t)}" for t in y[:count]],
        columns=8,
        suptitle="Training digits and labels",
    )


def confusion_png(y_true: np.ndarray, y_pred: np.ndarray) -> bytes:
    """Counts of true against predicted digit on the test split."""
    from sklearn.metrics import confusion_matrix

    labels = list(contract.CLASS_LABELS)
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    fig = _figure(5.2, 4.6)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if count > threshold else "black",
            )
    ax.set_xticks(labels)
    ax.set_yticks(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    correct = int(np.trace(matrix))
    ax.set_title(f"Confusion matrix, test split ({correct}/{len(y_true)} correct)")
    fig.colorbar(image, ax=ax, shrink=0.8)
    return _png(fig)


def coefficients_png(weights: np.ndarray) -> bytes:
    """Each class's weights as an 8x8 image, in raw pixel units (scaler folded in).

    Folding the scaler gives rarely-inked border pixels huge weights; the colour scale is
    clipped at the 95th percentile of |w| so the shapes in the centre stay visible.
    """
    fig = _figure(9.0, 2.4)
    axes = fig.subplots(1, contract.N_CLASSES)
    limit = float(np.percentile(np.abs(weights), 95)) or 1.0
    images = []
    for digit, ax in zip(contract.CLASS_LABELS, axes, strict=True):
        images.append(ax.imshow(
            np.reshape(weights[digit], contract.IMAGE_SHAPE),
            cmap="RdBu_r",
            vmin=-limit,
            vmax=limit,
            interpolation="nearest",
        ))
        ax.set_title(str(digit))
        ax.set_axis_off()
    # The ten images share one colour scale, so the last one stands for all.
    fig.colorbar(
        images[-1], ax=list(axes), shrink=0.7, extend="both", label="weight per pixel unit"
    )
    fig.suptitle("Per-class coefficients on raw pixels (red: ink votes for the class)")
    return _png(fig)


def misclassified_png(X: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> bytes:
    """Every misclassified test digit, titled predicted / true."""
    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        fig = _figure(3.0, 1.0)
        fig.text(0.5, 0.5, "no misclassified test digits", ha="center", va="center")
        return _png(fig)
    titles = [f"pred {int(y_pred[i])}\ntrue {int(y_true[i])}" for i in wrong]
    return _digit_grid(
        X[wrong],
        titles,
        columns=min(8, wrong.size),
        title_size=8,
        suptitle=f"Misclassified test digits ({wrong.size})",
    )


def cv_curve_png(curve: Sequence[Mapping[str, float]], chosen_C: float) -> bytes:
    """Cross-validated accuracy against C (log axis), one standard deviation shaded."""
    C = np.array([p["C"] for p in curve])
    mean = np.array([p["mean"] for p in curve])
    std = np.array([p["std"] for p in curve])
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    ax.set_xscale("log")
    ax.fill_between(C, mean - std, mean + std, alpha=0.25, label="± 1 std")
    ax.plot(C, mean, marker="o", label="CV accuracy (mean of folds)")
    best = int(np.argmin(np.abs(np.log(C) - np.log(chosen_C))))
    ax.axvline(chosen_C, color="tab:red", linestyle="--", linewidth=1)
    ax.plot(
        [chosen_C],
        [mean[best]],
        marker="*",
        markersize=14,
        color="tab:red",
        linestyle="",
        label=f"chosen C = {chosen_C:.3g}",
    )
    ax.set_xlabel("C (inverse regularization strength)")
    ax.set_ylabel("accuracy")
    ax.set_title("Stratified 5-fold CV on the training split")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def readme_text(manifest: Mapping[str, Any], description: str) -> str:
    """A model card that reads well on a code host: metrics table, then the figures."""
    metrics = manifest["metrics"]
    hyper = manifest["hyperparameters"]
    data = manifest["training_data"]
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    model = manifest["model"]
    rows = [
        ("recipe", f"`{manifest['recipe']}`: {description}"),
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
    lines = [
        "# Model card: digits logistic regression",
        "",
        "Generated by `digits-train`; do not edit by hand. Logistic regression on scikit-learn's",
        "8x8 digits (pixel values 0..16), exported as a portable ONNX graph (default domain only:",
        "Gemm, Softmax or Sigmoid, ArgMax). Input `X` float32 [N, 64]; outputs `label` int64 [N]",
        "and `probabilities` float32 [N, 10].",
        "",
        "| | |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in rows],
        "",
        "## Cross-validation",
        "",
        "![CV accuracy against C](cv_curve.png)",
        "",
        "## Test split",
        "",
        "![Confusion matrix](confusion_matrix.png)",
        "",
        "![Misclassified test digits](misclassified.png)",
        "",
        "## What the model looks at",
        "",
        "![Per-class coefficients](coefficients.png)",
        "",
        "![Sample training digits](samples.png)",
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
    weights: np.ndarray,
    manifest: Mapping[str, Any],
    description: str,
) -> dict[str, bytes]:
    """All report files by name, as bytes; the caller decides where and how to write them."""
    metrics = manifest["metrics"]
    return {
        FIGURES["samples"]: samples_png(X_train, y_train),
        FIGURES["confusion"]: confusion_png(y_test, y_pred),
        FIGURES["coefficients"]: coefficients_png(weights),
        FIGURES["misclassified"]: misclassified_png(X_test, y_test, y_pred),
        FIGURES["cv_curve"]: cv_curve_png(metrics["cv_curve"], manifest["hyperparameters"]["C"]),
        README: readme_text(manifest, description).encode("utf-8"),
    }
