"""The model card's figures, rendered to PNG bytes.

matplotlib is imported here only, and only through ``Figure`` objects on the Agg canvas: no
pyplot, no global backend switch, nothing left open. PNGs carry no "Software" stamp, so the
bytes depend only on the data and the matplotlib version.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from digits_onnx.inference import contract

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 80
#: Equal-width bins of top probability for the reliability diagram and the ECE.
CALIBRATION_BINS = 10
RIGHT_COLOR, WRONG_COLOR = "tab:blue", "tab:red"


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


def coefficient_images(
    weights: np.ndarray, pixel_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's weights times the pixel's standard deviation in training, as 8x8 images,
    with each image's own colour limit (its largest absolute value).

    A raw-pixel weight times the pixel's spread is what a typical stroke through that pixel
    adds to the class score (for the default recipe, exactly the weight on standardized
    pixels). Raw weights alone are dominated by rarely-inked border pixels, whose tiny spread
    the folded scaler divides by; a pixel that never varies contributes nothing.
    """
    scaled = np.asarray(weights, dtype=np.float64) * np.asarray(pixel_std, dtype=np.float64)
    limits = np.abs(scaled).max(axis=1)
    return scaled.reshape(-1, *contract.IMAGE_SHAPE), limits


def coefficients_png(weights: np.ndarray, pixel_std: np.ndarray) -> bytes:
    """One 8x8 image per class, each scaled symmetric around zero to its own largest value,
    so that every digit's shape shows whatever the size of its weights."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    images, limits = coefficient_images(weights, pixel_std)
    fig = _figure(9.0, 2.6)
    axes = fig.subplots(1, contract.N_CLASSES)
    for digit, ax in zip(contract.CLASS_LABELS, axes, strict=True):
        limit = float(limits[digit]) or 1.0
        ax.imshow(images[digit], cmap="RdBu_r", vmin=-limit, vmax=limit,
                  interpolation="nearest")
        ax.set_title(f"{digit}\n±{limit:.2g}", fontsize=9)
        ax.set_axis_off()
    scale = fig.colorbar(
        ScalarMappable(Normalize(-1.0, 1.0), cmap="RdBu_r"), ax=list(axes), shrink=0.7,
        ticks=[-1.0, 0.0, 1.0],
    )
    scale.ax.set_yticklabels(["-max", "0", "+max"])
    fig.suptitle("Weight times pixel std, per class (red: ink votes for the digit, blue: "
                 "against;\neach image scaled to ± its own largest value, printed in its title)",
                 fontsize=10)
    return _png(fig)


def misclassified_captions(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray
) -> list[str]:
    """``pred 8 (0.62)\\ntrue 9`` for each misclassified row: the predicted digit with its
    probability, and the truth."""
    wrong = np.flatnonzero(y_true != y_pred)
    return [
        f"pred {int(y_pred[i])} ({float(proba[i, int(y_pred[i])]):.2f})\ntrue {int(y_true[i])}"
        for i in wrong
    ]


def misclassified_png(
    X: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray
) -> bytes:
    """Every misclassified test digit, captioned with the prediction, its probability and
    the truth."""
    wrong = np.flatnonzero(y_true != y_pred)
    if wrong.size == 0:
        fig = _figure(3.0, 1.0)
        fig.text(0.5, 0.5, "no misclassified test digits", ha="center", va="center")
        return _png(fig)
    return _digit_grid(
        X[wrong],
        misclassified_captions(y_true, y_pred, proba),
        columns=min(8, wrong.size),
        title_size=8,
        suptitle=f"Misclassified test digits ({wrong.size}): predicted (its probability), true",
    )


def _calibration_bins(proba: np.ndarray, y: np.ndarray, bins: int) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray
]:
    """Per equal-width bin of top probability (``(0, 0.1]``, ..., ``(0.9, 1]``): row count,
    mean confidence and accuracy (0 where empty), and the bin edges."""
    proba = np.asarray(proba, dtype=np.float64)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    safe = np.maximum(counts, 1)
    mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / safe
    accuracy = np.bincount(index, weights=correct, minlength=bins) / safe
    return counts, mean_confidence, accuracy, edges


def expected_calibration_error(
    proba: np.ndarray, y: np.ndarray, *, bins: int = CALIBRATION_BINS
) -> float:
    """Top-label expected calibration error: the row-weighted mean, over equal-width bins of
    top probability, of |accuracy - mean confidence| in the bin."""
    counts, confidence, accuracy, _ = _calibration_bins(proba, y, bins)
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(np.sum(counts * np.abs(accuracy - confidence)) / total)


def confidence_png(proba: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> bytes:
    """Histogram of the top probability, right and wrong predictions side by side (log
    counts, so the few wrong ones show next to the many right ones)."""
    top = np.asarray(proba, dtype=np.float64).max(axis=1)
    right = y_true == y_pred
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    edges = np.linspace(0.0, 1.0, 21).tolist()
    ax.hist(
        [top[right], top[~right]],
        bins=edges,
        color=[RIGHT_COLOR, WRONG_COLOR],
        label=[f"right ({int(right.sum())})", f"wrong ({int((~right).sum())})"],
    )
    ax.set_yscale("log")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("top probability (confidence)")
    ax.set_ylabel("test rows (log scale)")
    ax.set_title("Confidence of right and wrong predictions, test split")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def calibration_png(proba: np.ndarray, y: np.ndarray) -> bytes:
    """Reliability diagram: accuracy per bin of top probability against the diagonal of
    perfect calibration, each bar labelled with its row count; the ECE in the title."""
    counts, _, accuracy, edges = _calibration_bins(proba, y, CALIBRATION_BINS)
    ece = expected_calibration_error(proba, y)
    fig = _figure(5.0, 4.2)
    ax = fig.subplots()
    used = counts > 0
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    ax.bar(centers[used], accuracy[used], width=width * 0.9, color=RIGHT_COLOR, alpha=0.8,
           label="accuracy in the bin")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1,
            label="perfect calibration")
    for x, acc, n in zip(centers[used], accuracy[used], counts[used], strict=True):
        ax.text(x, acc + 0.02, f"n={int(n)}", ha="center", va="bottom", fontsize=7)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.1)
    ax.set_xlabel("top probability (confidence), 10 equal-width bins")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram, test split (ECE {ece:.4f})")
    ax.legend(loc="center left", fontsize=8)
    return _png(fig)


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


def cv_folds_png(folds: Sequence[float], C: float) -> bytes:
    """A fixed C's accuracy on each cross-validation fold, with their mean and ± 1 std."""
    scores = np.asarray(folds, dtype=np.float64)
    mean, std = float(scores.mean()), float(scores.std())
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    positions = np.arange(1, len(scores) + 1)
    ax.axhspan(mean - std, mean + std, color=RIGHT_COLOR, alpha=0.15, label="mean ± 1 std")
    ax.axhline(mean, color=RIGHT_COLOR, linewidth=1, label=f"mean {mean:.4f}")
    ax.plot(positions, scores, marker="o", linestyle="", color=RIGHT_COLOR,
            label="accuracy on the fold")
    for x, score in zip(positions, scores, strict=True):
        ax.annotate(f"{score:.4f}", (x, score), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=8)
    ax.set_xticks(positions, [f"fold {i}" for i in positions])
    ax.set_xlim(0.5, len(scores) + 0.5)
    span = max(float(scores.max() - scores.min()), 0.01)
    ax.set_ylim(float(scores.min()) - span, float(scores.max()) + span)
    ax.set_ylabel("accuracy")
    ax.set_title(f"Stratified {len(scores)}-fold CV on the training split, fixed C = {C:g}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
