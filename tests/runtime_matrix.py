"""The runtime matrix: which models every runtime must run, and how a runtime's outputs are judged.

Two export profiles:

- ``bundled``: ``artifacts/model.onnx``, outputs ``label`` and ``probabilities``; always present.
- ``probabilities``: ``artifacts/probabilities/model.onnx``, ``Gemm`` + ``Softmax`` only, output
  ``probabilities`` only (for runtimes without ``ArgMax``; the caller takes the argmax). Picked
  up as soon as it is committed; until then its cases are skipped with that reason.

Every runtime scores the golden set (``reference.npz`` beside the model, or the bundled one)
and is held to two rules: against Python onnxruntime on the same model, labels equal and
probabilities within ``PROBA_ATOL``; against the golden set (scikit-learn at export time),
the parity rule of ``digits-score check``. What each run measured is written to
``test-artifacts/runtimes/<profile>/<runtime>.json``; ``python -m tests.runtime_matrix``
prints those records as the README's table.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from digits_onnx.inference import contract
from digits_onnx.inference.check import compare

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
RECORDS = REPO / "test-artifacts" / "runtimes"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class Profile:
    name: str
    model: Path
    #: The outputs the graph must have, in order.
    outputs: tuple[str, ...]

    @property
    def reference(self) -> Path:
        """The golden set beside the model, else the bundled model's (the same rows)."""
        own = self.model.parent / contract.REFERENCE_FILENAME
        return own if own.exists() else ARTIFACTS / contract.REFERENCE_FILENAME

    @property
    def has_label(self) -> bool:
        return contract.OUTPUT_LABEL in self.outputs


BUNDLED = Profile("bundled", ARTIFACTS / contract.MODEL_FILENAME,
                  (contract.OUTPUT_LABEL, contract.OUTPUT_PROBA))
PROBABILITIES = Profile("probabilities", ARTIFACTS / "probabilities" / contract.MODEL_FILENAME,
                        (contract.OUTPUT_PROBA,))
PROFILES = (BUNDLED, PROBABILITIES)


def profile_params() -> list:
    """pytest parameters, one per profile; the bundled model is never skipped."""
    params = []
    for profile in PROFILES:
        marks = []
        if profile is not BUNDLED and not profile.model.exists():
            marks.append(pytest.mark.skip(
                reason=f"{profile.model.relative_to(REPO)} is not committed yet"))
        params.append(pytest.param(profile, id=profile.name, marks=marks))
    return params


@dataclass(frozen=True)
class Golden:
    X: np.ndarray  # float32 (N, 64)
    labels: np.ndarray
    probabilities: np.ndarray


@cache
def golden(profile: Profile) -> Golden:
    with np.load(profile.reference, allow_pickle=False) as ref:
        X = ref["X"].reshape(len(ref["X"]), contract.N_FEATURES).astype(np.float32)
        proba = ref["probabilities"]
        labels = ref["labels"] if "labels" in ref.files else proba.argmax(axis=1)
    return Golden(np.ascontiguousarray(X), labels, proba)


@cache
def onnxruntime_outputs(profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Python onnxruntime's labels and probabilities for the golden rows: the reference."""
    session = ort.InferenceSession(profile.model.read_bytes(),
                                   providers=["CPUExecutionProvider"])
    assert tuple(o.name for o in session.get_outputs()) == profile.outputs, profile.model
    outputs = dict(zip(profile.outputs, session.run(None, {contract.INPUT_NAME: golden(profile).X}),
                       strict=True))
    proba = outputs[contract.OUTPUT_PROBA]
    labels = outputs.get(contract.OUTPUT_LABEL, proba.argmax(axis=1))
    return labels, proba


def golden_csv(profile: Profile, path: Path) -> Path:
    """The golden rows as a CSV with a header of pixel_* names (what the scorers read)."""
    X = golden(profile).X
    header = ",".join(f"pixel_{i // 8}_{i % 8}" for i in range(contract.N_FEATURES))
    lines = [header, *(",".join(f"{v:g}" for v in row) for row in X)]
    path.write_text("\n".join(lines) + "\n")
    return path


def check_runtime(profile: Profile, runtime: str, version: str,
                  labels: np.ndarray, proba: np.ndarray) -> dict:
    """Hold one runtime's outputs on the golden rows to both rules and record what it measured."""
    labels = np.asarray(labels).astype(np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    want_labels, want_proba = onnxruntime_outputs(profile)
    gold = golden(profile)
    vs_golden = compare(gold.labels, gold.probabilities, labels, proba)
    vs_ort = compare(want_labels, want_proba, labels, proba)
    record = {
        "profile": profile.name,
        "model": str(profile.model.relative_to(REPO)),
        "runtime": runtime,
        "version": version,
        "rows": len(labels),
        "golden": {"max_abs_diff": vs_golden.max_abs_diff,
                   "label_mismatches": vs_golden.label_mismatches,
                   "near_tie_flips": vs_golden.near_tie_flips},
        "onnxruntime": {"version": ort.__version__,
                        "max_abs_diff": vs_ort.max_abs_diff,
                        "label_mismatches": int(np.sum(labels != want_labels))},
    }
    RECORDS.joinpath(profile.name).mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", runtime.lower()).strip("-")
    RECORDS.joinpath(profile.name, f"{slug}.json").write_text(json.dumps(record, indent=2) + "\n")

    where = f"{runtime} {version} on {profile.model.relative_to(REPO)}"
    differ = np.flatnonzero(labels != want_labels)
    assert differ.size == 0, (
        f"{where}: labels differ from onnxruntime {ort.__version__} on rows {differ[:10].tolist()}")
    assert vs_ort.max_abs_diff <= contract.PROBA_ATOL, (
        f"{where}: max |dp| {vs_ort.max_abs_diff:.3g} vs onnxruntime {ort.__version__} "
        f"exceeds {contract.PROBA_ATOL:g}")
    assert vs_golden.ok, (
        f"{where}: against the golden set max |dp| {vs_golden.max_abs_diff:.3g}, "
        f"{vs_golden.label_mismatches} label mismatches")
    return record


def table(records_dir: Path = RECORDS) -> str:
    """The recorded measurements as the README's runtime-matrix table (markdown).

    One row per runtime; per profile, label mismatches on the golden set and max |dp| against
    it, then (in parentheses) max |dp| against Python onnxruntime on the same model.
    """
    runtimes: dict[str, dict] = {}
    for path in sorted(records_dir.glob("*/*.json")):
        r = json.loads(path.read_text())
        entry = runtimes.setdefault(r["runtime"], {"version": r["version"]})
        entry[r["profile"]] = (f"{r['golden']['label_mismatches']}/{r['rows']}, "
                               f"{r['golden']['max_abs_diff']:.1e} "
                               f"({r['onnxruntime']['max_abs_diff']:.1e})")
    names = [p.name for p in PROFILES]
    rows = ["| runtime | version | " + " | ".join(
                f"{name}: label mismatches, max \\|dp\\| vs golden (vs onnxruntime)"
                for name in names) + " |",
            "|---|---|" + "---|" * len(names)]
    for runtime, entry in runtimes.items():
        cells = [entry.get(name, "not run") for name in names]
        rows.append(f"| {runtime} | {entry['version']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
