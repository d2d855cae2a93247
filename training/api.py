"""The training API the CLI calls: :func:`train` writes the artifact set, :func:`write_samples`
writes the test split as example input files.

A run never leaves a partial artifact set behind: everything is rendered in memory, written
to a temporary directory inside the destination, then renamed into place file by file with
the manifest last (readers check the model against the manifest's sha256).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from digits_onnx.inference import contract
from digits_onnx.training import export, manifest, recipes
from digits_onnx.training.data import Split, load_split
from digits_onnx.training.errors import OutputDirError

DEFAULT_OUT = "artifacts"
#: Where each profile goes by default: the probabilities profile never replaces the
#: bundled (full) model by accident.
PROFILE_OUT = {
    export.PROFILE_FULL: DEFAULT_OUT,
    export.PROFILE_PROBABILITIES: f"{DEFAULT_OUT}/{export.PROFILE_PROBABILITIES}",
}
DEFAULT_EXAMPLES = "examples"
REPORT_DIR = "report"
SAMPLES_CSV = "digits_test.csv"
SAMPLES_NPY = "digits_test.npy"


@dataclass
class TrainingResult:
    """What a training run produced, for the CLI summary, the tests and the benchmark."""

    recipe: str
    profile: str
    estimator: recipes.Classifier
    split: Split
    cv: recipes.CVRecord
    manifest: dict
    model_bytes: bytes
    test_predictions: np.ndarray
    description: str = ""
    paths: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def metrics(self) -> dict:
        return self.manifest["metrics"]

    @property
    def hyperparameters(self) -> dict:
        return self.manifest["hyperparameters"]


def prepare_out_dir(out_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Check (before any work) that ``out_dir`` can take files; create it if only it is missing.

    Returns the directory and whether this call created it. The parent must exist, so a
    mistyped path fails instead of growing a directory tree.
    """
    out = Path(out_dir)
    created = False
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output path {out} exists and is not a directory")
    if not out.exists():
        parent = out.parent
        if not parent.is_dir():
            raise OutputDirError(
                f"cannot create output directory {out}: its parent {parent} does not exist "
                "(create it first)"
            )
        try:
            out.mkdir()
        except OSError as exc:
            raise OutputDirError(f"cannot create output directory {out}: {exc.strerror}") from None
        created = True
    try:
        probe = tempfile.mkdtemp(prefix=".digits-train-probe-", dir=out)
        os.rmdir(probe)
    except OSError as exc:
        if created:
            _remove_if_empty(out)
        raise OutputDirError(f"cannot write to output directory {out}: {exc.strerror}") from None
    return out, created


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def write_set(out: Path, files: dict[str, bytes], *, created: bool = False) -> list[Path]:
    """Write ``files`` (relative path -> bytes) into ``out`` as one set.

    All files go to a temporary directory inside ``out`` first; only when every file is
    written are they renamed into place (``os.replace``, atomic per file), the manifest last.
    On failure the temporary directory is removed and no destination file has changed.
    """
    ordered = sorted(files, key=lambda name: name == contract.MANIFEST_FILENAME)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".digits-train-", dir=out))
    except OSError as exc:
        raise OutputDirError(f"cannot write to output directory {out}: {exc.strerror}") from None
    written = []
    try:
        try:
            for name in ordered:
                path = staging / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(files[name])
                os.chmod(path, 0o644)
        except OSError as exc:
            if created:
                shutil.rmtree(staging, ignore_errors=True)
                _remove_if_empty(out)
            raise OutputDirError(
                f"cannot write artifacts to {out}: {exc.strerror or exc}"
            ) from None
        for name in ordered:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
            written.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


def train(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    recipe: str = recipes.DEFAULT_RECIPE,
    report: bool = True,
    profile: str = export.DEFAULT_PROFILE,
) -> TrainingResult:
    """Train ``recipe`` on the digits split and write model, manifest, golden set and report.

    ``profile`` picks the graph (:data:`training.export.PROFILES`): ``full`` (the contract's
    label and probabilities) or ``probabilities`` (no ArgMax); ``out_dir`` defaults to the
    profile's folder in :data:`PROFILE_OUT`. Raises :class:`~training.errors.RecipeError` or
    :class:`~training.errors.ProfileError` for an unknown name and
    :class:`~training.errors.OutputDirError` (before training) when ``out_dir`` cannot be
    written; see :func:`prepare_out_dir` for when it is created.
    """
    recipes.check_recipe(recipe)
    export.check_profile(profile)
    out, created = prepare_out_dir(PROFILE_OUT[profile] if out_dir is None else out_dir)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    split = load_split()
    lap("data")
    fitted = recipes.fit_recipe(recipe, split)
    estimator = fitted.estimator
    y_pred = np.asarray(estimator.predict(split.X_test), dtype=np.int64)
    proba = np.asarray(estimator.predict_proba(split.X_test), dtype=np.float64)
    lap("fit")

    correct = int(np.sum(y_pred == split.y_test))
    metrics = {
        "test_accuracy": correct / len(split.y_test),
        "test_correct": correct,
        "test_size": len(split.y_test),
        **fitted.cv.as_metrics(),
    }
    info = manifest.describe(
        contract=export.profile_contract(profile),
        recipe=recipe,
        hyperparameters=fitted.hyperparameters,
        metrics=metrics,
        training_data={
            "fingerprint": split.fingerprint,
            "n_train": len(split.y_train),
            "n_test": len(split.y_test),
            "split": split.split_params(),
        },
    )
    model = export.attach_metadata(export.build_model(estimator, profile=profile), info)
    model_bytes = export.serialize(model)
    reference = manifest.reference_bytes(split.X_test, split.y_test, y_pred, proba)
    the_manifest = manifest.build_manifest(info, model_bytes, reference, profile=profile)
    files = {
        contract.MODEL_FILENAME: model_bytes,
        contract.REFERENCE_FILENAME: reference,
        contract.MANIFEST_FILENAME: manifest.manifest_bytes(the_manifest),
    }
    lap("export")

    if report:
        from digits_onnx.training import report as report_module

        rendered = report_module.render_report(
            **report_arguments(
                estimator, split, fitted.cv, the_manifest, model_bytes, fitted.description
            )
        )
        files.update({f"{REPORT_DIR}/{name}": data for name, data in rendered.items()})
        lap("report")

    paths = write_set(out, files, created=created)
    lap("write")
    return TrainingResult(
        recipe=recipe,
        profile=profile,
        estimator=estimator,
        split=split,
        cv=fitted.cv,
        manifest=the_manifest,
        model_bytes=model_bytes,
        test_predictions=y_pred,
        description=fitted.description,
        paths=paths,
        timings=timings,
    )


def report_arguments(
    estimator: recipes.Classifier,
    split: Split,
    cv: recipes.CVRecord,
    the_manifest: dict,
    model_bytes: bytes,
    description: str,
) -> dict[str, Any]:
    """What :func:`training.report.render_report` needs, measured from the fitted estimator
    and the exported model (its operators, as the card lists them)."""
    from digits_onnx.training.report import PROBES

    weights, _, link = export.linear_parts(estimator)
    graph = onnx.load_model_from_string(model_bytes).graph
    probes = {
        name: np.asarray(estimator.predict_proba(np.full((1, contract.N_FEATURES), value)))[0]
        for name, value in PROBES.items()
    }
    return {
        "X_train": split.X_train,
        "y_train": split.y_train,
        "X_test": split.X_test,
        "y_test": split.y_test,
        "y_pred": np.asarray(estimator.predict(split.X_test), dtype=np.int64),
        "proba": np.asarray(estimator.predict_proba(split.X_test), dtype=np.float64),
        "weights": weights,
        "manifest": the_manifest,
        "description": description,
        "folds": cv.folds,
        "operators": [node.op_type for node in graph.node],
        "link": link,
        "probes": probes,
    }


def samples_csv(split: Split) -> bytes:
    """The test split as CSV: ``id,pixel_0_0,...,pixel_7_7,label``, integer pixels, LF."""
    header = ",".join(["id", *split.feature_names, "label"])
    pixels = split.X_test.astype(np.int64)
    lines = [header]
    for i, (row, label) in enumerate(zip(pixels, split.y_test, strict=True)):
        lines.append(",".join([f"t{i:04d}", *map(str, row.tolist()), str(int(label))]))
    return ("\n".join(lines) + "\n").encode("ascii")


def samples_npy(split: Split) -> bytes:
    """The test split's images as a (360, 8, 8) uint8 ``.npy``."""
    import io

    images = split.X_test.reshape(-1, *contract.IMAGE_SHAPE).astype(np.uint8)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, images, allow_pickle=False)
    return buffer.getvalue()


def write_samples(out_dir: str | os.PathLike[str] = DEFAULT_EXAMPLES) -> list[Path]:
    """Write the test split as example inputs for the scoring tools (CSV and ``.npy``)."""
    out, created = prepare_out_dir(out_dir)
    split = load_split()
    return write_set(
        out, {SAMPLES_CSV: samples_csv(split), SAMPLES_NPY: samples_npy(split)}, created=created
    )
