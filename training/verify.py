"""Check committed artifacts against a fresh retraining: ``digits-train verify``.

Retrains by the manifest's recipe (and its C grid), then compares the committed ONNX model
with the retrained scikit-learn model and with the golden set, within the contract's
tolerances. Any failed check makes the run fail; nothing is rewritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from digits_onnx.inference import contract
from digits_onnx.inference.check import Comparison, check_entry, compare, report_dict
from digits_onnx.inference.errors import ModelError
from digits_onnx.inference.model import Model, bundled_model_path, vet_model_bytes
from digits_onnx.training import export, manifest, recipes
from digits_onnx.training.data import load_split
from digits_onnx.training.errors import ArtifactsNotFoundError, ManifestError, PortabilityError

DEFAULT_ARTIFACTS = "artifacts"
BUNDLED_NOTE = "the bundled artifacts; no ./artifacts in the working directory"


def default_artifacts() -> tuple[Path, str]:
    """``./artifacts`` when the working directory has one, else the artifacts installed with
    the package; with where they came from: ``"working directory"`` or ``"bundled"``."""
    here = Path(DEFAULT_ARTIFACTS)
    if here.exists():
        return here, "working directory"
    return bundled_model_path().parent, "bundled"


@dataclass(frozen=True)
class Check:
    """One line of the verification table: its text, and for machines the measured value
    and the limit it was held to."""

    name: str
    value: str
    ok: bool
    measure: object = None
    limit: float | int | None = None


@dataclass
class Verification:
    """All checks of one run; ``ok`` only if every check passed."""

    artifacts: Path
    checks: list[Check] = field(default_factory=list)
    #: ``"given"``, or where :func:`default_artifacts` found them when nobody named them.
    source: str = "given"
    recipe: str | None = None
    profile: str = "full"
    recorded_versions: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def add(
        self,
        name: str,
        value: str,
        ok: bool,
        *,
        measure: object = None,
        limit: float | int | None = None,
    ) -> None:
        self.checks.append(Check(name, value, bool(ok), measure, limit))

    def to_dict(self) -> dict[str, Any]:
        """The result as ``digits-train verify --json`` prints it: the layout of
        ``digits-score check --json`` (:meth:`inference.check.CheckResult.to_dict`)."""
        return report_dict(
            "digits-train verify",
            [check_entry(c.name, c.ok, c.measure, c.value, c.limit) for c in self.checks],
            self.versions,
            artifacts=str(self.artifacts),
            source=self.source,
            recipe=self.recipe,
            profile=self.profile,
            recorded_versions=self.recorded_versions,
        )

    def table(self) -> str:
        """A fixed-width table, one check a line, then the verdict."""
        width = max(len(c.name) for c in self.checks)
        # A long value (an error message) pushes only its own verdict to the right.
        vwidth = max((len(c.value) for c in self.checks if len(c.value) <= 48), default=0)
        lines = [
            f"{c.name:<{width}}  {c.value:<{vwidth}}  {'ok' if c.ok else 'FAIL'}"
            for c in self.checks
        ]
        verdict = "verified" if self.ok else "NOT verified"
        failed = sum(not c.ok for c in self.checks)
        notes = [BUNDLED_NOTE] if self.source == "bundled" else []
        if not self.ok:
            notes.append(f"{failed} check{'s' if failed != 1 else ''} failed")
        suffix = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"{verdict}: {self.artifacts}{suffix}")
        return "\n".join(lines)


def _load(artifacts: Path) -> tuple[dict, bytes, dict[str, np.ndarray]]:
    if not artifacts.is_dir():
        raise ArtifactsNotFoundError(f"artifacts directory {artifacts} does not exist")
    paths = {
        name: artifacts / name
        for name in (
            contract.MANIFEST_FILENAME,
            contract.MODEL_FILENAME,
            contract.REFERENCE_FILENAME,
        )
    }
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise ArtifactsNotFoundError(
            f"{artifacts} lacks {', '.join(missing)}; run digits-train --out {artifacts} first"
        )
    try:
        the_manifest = manifest.read_manifest(paths[contract.MANIFEST_FILENAME])
        recipe = the_manifest["recipe"]
        the_manifest["hyperparameters"]["C"]
        the_manifest["model"]["sha256"]
        the_manifest["metrics"]["test_correct"]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"{paths[contract.MANIFEST_FILENAME]} is not valid JSON: {exc}"
        ) from None
    except (KeyError, TypeError) as exc:
        raise ManifestError(
            f"{paths[contract.MANIFEST_FILENAME]} lacks the field {exc}; "
            "regenerate it with digits-train"
        ) from None
    recipes.check_recipe(recipe)
    profile = the_manifest.get("profile", export.DEFAULT_PROFILE)
    if profile not in export.PROFILES:
        raise ManifestError(
            f"{paths[contract.MANIFEST_FILENAME]} names the unknown profile {profile!r}; "
            f"expected one of {', '.join(export.PROFILES)}"
        )
    try:
        with np.load(paths[contract.REFERENCE_FILENAME], allow_pickle=False) as npz:
            golden = {key: npz[key] for key in manifest.REFERENCE_KEYS}
    except (OSError, ValueError, KeyError) as exc:
        raise ManifestError(f"{paths[contract.REFERENCE_FILENAME]} is unreadable: {exc}") from None
    _check_golden_shapes(paths[contract.REFERENCE_FILENAME], golden)
    return the_manifest, paths[contract.MODEL_FILENAME].read_bytes(), golden


def _check_golden_shapes(path: Path, golden: dict[str, np.ndarray]) -> None:
    rows = len(golden["X"]) if golden["X"].ndim else 0
    expected = {
        "X": (rows, contract.N_FEATURES),
        "y": (rows,),
        "labels": (rows,),
        "probabilities": (rows, contract.N_CLASSES),
    }
    found = {key: tuple(golden[key].shape) for key in expected}
    if found != expected:
        shapes = ", ".join(f"{key} {shape}" for key, shape in found.items())
        raise ManifestError(
            f"{path} holds arrays of shapes {shapes}; expected X (N, {contract.N_FEATURES}), "
            f"y and labels (N,), probabilities (N, {contract.N_CLASSES}); "
            "regenerate it with digits-train"
        )


Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _probabilities_runner(model_bytes: bytes, display: str) -> Runner:
    """A model of the probabilities profile, vetted as the scorer vets models; its labels are
    the argmax of its probabilities, as a runtime without ArgMax computes them."""
    vet_model_bytes(model_bytes, display)
    try:
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{display}: onnxruntime cannot load it ({first})") from None

    def run(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (proba,) = session.run([contract.OUTPUT_PROBA], {contract.INPUT_NAME: X})
        return np.argmax(proba, axis=1).astype(np.int64), proba

    return run


def _load_runner(model_bytes: bytes, profile: str, report: Verification) -> Runner | None:
    """The committed model, loaded as the scorer loads it (the full profile) or vetted the
    same way (the probabilities profile, which the scorer does not take); None after adding
    the failed check.

    The sha256 is its own line of the table, so a replaced model is still run and measured;
    the scorer's vetting (default domain, no external data, the contract) still applies.
    """
    display = contract.MODEL_FILENAME
    try:
        if profile == export.PROFILE_FULL:
            run: Runner = Model(model_bytes, display=display, verify_hash=False).run
        else:
            run = _probabilities_runner(model_bytes, display)
    except ModelError as exc:
        report.add("committed model loads", str(exc), False)
        return None
    try:
        # What the scorer does not insist on: the pinned opset and the exact signature.
        exported = onnx.load_model_from_string(model_bytes)
        export.check_portable(exported)
        export.check_contract(exported, profile=profile)
    except PortabilityError as exc:
        report.add("committed model follows the contract", str(exc), False)
        return None
    outputs = "" if profile == export.PROFILE_FULL else ", probabilities only"
    report.add(
        "committed model follows the contract",
        f"opset {contract.OPSET}, default domain{outputs}",
        True,
    )
    return run


def _add_parity(report: Verification, against: str, drift: Comparison) -> None:
    report.add(
        f"max |dp| {against} vs ONNX",
        f"{drift.max_abs_diff:.2e} (atol {contract.PROBA_ATOL:g})",
        drift.max_abs_diff <= contract.PROBA_ATOL,
        measure=drift.max_abs_diff,
        limit=contract.PROBA_ATOL,
    )
    report.add(
        f"label mismatches {against} vs ONNX",
        f"{drift.label_mismatches} ({drift.near_tie_rows} near-ties excused)",
        drift.label_mismatches == 0,
        measure=drift.label_mismatches,
        limit=0,
    )


def verify(artifacts_dir: str | os.PathLike[str] | None = None) -> Verification:
    """Retrain by the manifest and compare; see the module docstring for the checks.

    ``artifacts_dir`` defaults to :func:`default_artifacts`: ``./artifacts``, or the bundled
    artifacts when the working directory has none.
    """
    if artifacts_dir is None:
        artifacts, source = default_artifacts()
    else:
        artifacts, source = Path(artifacts_dir), "given"
    the_manifest, model_bytes, golden = _load(artifacts)
    report = Verification(
        artifacts,
        source=source,
        recipe=the_manifest["recipe"],
        profile=the_manifest.get("profile", export.DEFAULT_PROFILE),
        recorded_versions=dict(the_manifest.get("versions", {})),
        versions=manifest.library_versions(),
    )

    sha = manifest.sha256_hex(model_bytes)
    report.add(
        "model sha256 matches manifest",
        sha[:16] + "…",
        sha == the_manifest["model"]["sha256"],
        measure=sha,
    )
    recorded_reference = the_manifest.get("reference")
    if recorded_reference is not None:  # older manifests do not record it
        reference_sha = manifest.sha256_hex(
            (artifacts / contract.REFERENCE_FILENAME).read_bytes()
        )
        report.add(
            "golden set sha256 matches manifest",
            reference_sha[:16] + "…",
            isinstance(recorded_reference, dict)
            and reference_sha == recorded_reference.get("sha256"),
            measure=reference_sha,
        )

    recipe = the_manifest["recipe"]
    hyper = the_manifest["hyperparameters"]
    split = load_split()
    report.add(
        "training data fingerprint",
        split.fingerprint[:23] + "…",
        split.fingerprint == the_manifest.get("training_data", {}).get("fingerprint"),
        measure=split.fingerprint,
    )
    grid = hyper.get("C_grid") if recipe == "default" else None
    fitted = recipes.fit_recipe(recipe, split, C_grid=grid)
    report.add(
        f"retrained {recipe} recipe: C",
        f"{fitted.hyperparameters['C']:.4g} (manifest {hyper['C']:.4g})",
        fitted.hyperparameters == hyper,
        measure=fitted.hyperparameters["C"],
    )
    same_set = (
        golden["X"].shape == split.X_test.shape
        and np.array_equal(golden["X"], split.X_test)
        and np.array_equal(golden["y"], split.y_test)
    )
    report.add(
        "golden set is the test split", f"{len(golden['y'])} rows", same_set,
        measure=len(golden["y"]),
    )

    run = _load_runner(model_bytes, report.profile, report)
    if run is None:
        return report
    labels, proba = run(np.ascontiguousarray(golden["X"], dtype=np.float32))

    X64 = golden["X"].astype(np.float32).astype(np.float64)
    sk_labels, sk_proba = fitted.estimator.predict(X64), fitted.estimator.predict_proba(X64)
    _add_parity(report, "retrained sklearn", compare(sk_labels, sk_proba, labels, proba))
    _add_parity(
        report, "golden", compare(golden["labels"], golden["probabilities"], labels, proba)
    )

    correct = int(np.sum(labels == golden["y"]))
    expected = int(the_manifest["metrics"]["test_correct"])
    report.add(
        "committed model accuracy on golden set",
        f"{correct / len(golden['y']):.4f} ({correct}/{len(golden['y'])}, manifest {expected})",
        correct == expected,
        measure=correct,
        limit=expected,
    )

    recorded = report.recorded_versions
    differ = [
        f"{k} {recorded.get(k)}->{v}" for k, v in report.versions.items() if recorded.get(k) != v
    ]
    # Informational: a newer library may still pass every check above.
    report.add(
        "library versions",
        "as recorded" if not differ else "; ".join(differ),
        True,
        measure=differ,
    )
    return report
