"""Report figures and a model card, rendered to bytes (PNG and Markdown).

matplotlib is imported here only, and only through ``Figure`` objects on the Agg canvas: no
pyplot, no global backend switch, nothing left open. PNGs carry no "Software" stamp, so the
bytes depend only on the data and the matplotlib version.

The card states what a data scientist needs before trusting the model: per-class metrics,
how confidence relates to being right (histogram, reliability diagram, expected calibration
error), what the weights look at, and measured limits.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from digits_onnx.inference import contract

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
DPI = 80
#: Equal-width bins of top probability for the reliability diagram and the ECE.
CALIBRATION_BINS = 10
#: Inputs that are no digit, run through the model for the card's limits section.
PROBES = {
    "all-zero image (no ink at all)": contract.FEATURE_MIN,
    "all-16 image (every pixel fully inked)": contract.FEATURE_MAX,
}
#: The scikit-learn digits are the UCI test set: 1,797 images by this many people.
WRITERS = 13
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
    ece = expected_calibration_error(proba, y_test)
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
        f"Test rows binned by top probability ({CALIBRATION_BINS} equal-width bins); a bar is "
        "the accuracy in its bin, the diagonal perfect calibration. The top-label expected "
        f"calibration error (ECE) is {ece:.4f}: the row-weighted mean gap between accuracy and "
        f"confidence over the bins. With {total} rows, most in the top bin, read it as a "
        "rough check.",
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
        FIGURES["samples"]: samples_png(X_train, y_train),
        FIGURES["confusion"]: confusion_png(y_test, y_pred),
        FIGURES["coefficients"]: coefficients_png(weights, pixel_std),
        FIGURES["misclassified"]: misclassified_png(X_test, y_test, y_pred, proba),
        FIGURES["confidence"]: confidence_png(proba, y_test, y_pred),
        FIGURES["calibration"]: calibration_png(proba, y_test),
    }
    if len(metrics["cv_curve"]) > 1:
        files[CV_CURVE] = cv_curve_png(metrics["cv_curve"], manifest["hyperparameters"]["C"])
    else:
        files[CV_FOLDS] = cv_folds_png(folds, manifest["hyperparameters"]["C"])
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
