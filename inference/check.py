"""The parity check that needs no scikit-learn: the golden reference set through onnxruntime.

The reference set holds scikit-learn's labels and probabilities at export time; after an
onnxruntime upgrade (or on a new platform) this says whether the model still agrees.
:func:`compare` is the one rule every parity check applies (``digits-score check`` here,
``digits-train verify`` in training): probabilities within ``PROBA_ATOL``, labels equal except
where the reference's top-two margin is below ``TIE_MARGIN``.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from digits_onnx import __version__

from .contract import PROBA_ATOL, REFERENCE_FILENAME, TIE_MARGIN
from .errors import ModelError
from .model import Model

#: Version of the JSON layout that ``check --json`` and ``digits-train verify --json`` print.
REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Comparison:
    """How far one set of outputs is from reference outputs for the same rows."""

    rows: int
    #: Largest absolute difference of any probability.
    max_abs_diff: float
    #: Rows whose labels differ although the reference is not a near-tie: always a failure.
    label_mismatches: int
    #: Reference rows whose top-two probabilities are within ``TIE_MARGIN`` (labels may flip).
    near_tie_rows: int
    #: Near-tie rows whose labels do differ: excused, but counted.
    near_tie_flips: int

    @property
    def ok(self) -> bool:
        return within_tolerance(self.max_abs_diff, self.label_mismatches)


def within_tolerance(max_abs_diff: float, label_mismatches: int) -> bool:
    """The verdict of a parity check: probabilities within ``PROBA_ATOL``, no real mismatch."""
    return max_abs_diff <= PROBA_ATOL and label_mismatches == 0


def near_ties(probabilities: np.ndarray) -> np.ndarray:
    """A boolean per row: its top-two probabilities differ by less than ``TIE_MARGIN``."""
    proba = np.asarray(probabilities, dtype=np.float64)
    if len(proba) == 0:
        return np.zeros(0, dtype=bool)
    top2 = np.sort(proba, axis=1)[:, -2:]
    return np.asarray((top2[:, 1] - top2[:, 0]) < TIE_MARGIN)


def compare(
    reference_labels: np.ndarray,
    reference_proba: np.ndarray,
    labels: np.ndarray,
    proba: np.ndarray,
) -> Comparison:
    """Compare ``labels`` and ``proba`` with the reference outputs of the same rows.

    Probabilities are compared in float64; the near-tie rule looks at the reference's
    probabilities, since those decide whether a flipped label is plausible rounding.

    Raises
    ------
    ValueError
        When the two sets of outputs do not have the same shapes.
    """
    ref_labels, got_labels = np.asarray(reference_labels), np.asarray(labels)
    ref_proba = np.asarray(reference_proba, dtype=np.float64)
    got_proba = np.asarray(proba, dtype=np.float64)
    if ref_labels.shape != got_labels.shape or ref_proba.shape != got_proba.shape:
        raise ValueError(
            f"cannot compare outputs of different shapes: reference labels {ref_labels.shape} "
            f"and probabilities {ref_proba.shape}, got {got_labels.shape} and {got_proba.shape}"
        )
    ties = near_ties(ref_proba)
    differ = ref_labels != got_labels
    return Comparison(
        rows=len(ref_labels),
        max_abs_diff=float(np.abs(got_proba - ref_proba).max()) if ref_proba.size else 0.0,
        label_mismatches=int(np.sum(differ & ~ties)),
        near_tie_rows=int(np.sum(ties)),
        near_tie_flips=int(np.sum(differ & ties)),
    )


def check_entry(
    name: str, ok: bool, value: object, text: str, limit: float | int | None = None
) -> dict[str, Any]:
    """One check of a JSON report: what was measured (``value``), against what (``limit``)."""
    return {"name": name, "ok": bool(ok), "value": value, "limit": limit, "text": text}


def report_dict(
    command: str,
    checks: Iterable[Mapping[str, Any]],
    versions: Mapping[str, str],
    **context: Any,
) -> dict[str, Any]:
    """The JSON report both parity commands print: ``ok`` only if every check passed.

    ``checks`` are :func:`check_entry` dicts; ``versions`` the libraries that produced the
    numbers (``digits-onnx`` is added); ``context`` says what was checked.
    """
    entries = [dict(check) for check in checks]
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "command": command,
        "ok": all(entry["ok"] for entry in entries),
        "checks": entries,
        "versions": {"digits-onnx": __version__, **versions},
        **context,
    }


@dataclass
class CheckResult:
    """How far the model's outputs are from the stored reference outputs."""

    rows: int
    max_abs_diff: float
    label_mismatches: int
    near_ties: int
    accuracy: float
    reference_accuracy: float
    #: What was checked, when known: the model's path (or name) and sha256, the reference set.
    model: str | None = None
    model_sha256: str | None = None
    reference: str | None = None

    @property
    def ok(self) -> bool:
        return within_tolerance(self.max_abs_diff, self.label_mismatches)

    def to_dict(self) -> dict[str, Any]:
        """The result as ``digits-score check --json`` prints it (the layout of
        ``digits-train verify --json``: schema_version, command, ok, checks, versions)."""
        checks = [
            check_entry(
                "max |dp|",
                self.max_abs_diff <= PROBA_ATOL,
                self.max_abs_diff,
                f"{self.max_abs_diff:.3g} (tolerance {PROBA_ATOL:g})",
                PROBA_ATOL,
            ),
            check_entry(
                "label mismatches",
                self.label_mismatches == 0,
                self.label_mismatches,
                f"{self.label_mismatches} (+{self.near_ties} near-ties allowed)",
                0,
            ),
        ]
        return report_dict(
            "digits-score check",
            checks,
            {"onnxruntime": ort.__version__, "numpy": np.__version__},
            rows=self.rows,
            near_tie_flips=self.near_ties,
            accuracy=self.accuracy,
            reference_accuracy=self.reference_accuracy,
            model=self.model,
            model_sha256=self.model_sha256,
            reference=self.reference,
        )

    def table(self) -> str:
        status = "ok" if self.ok else "DRIFT"
        return "\n".join([
            f"rows checked            {self.rows}",
            f"max |dp|                {self.max_abs_diff:.3g} (tolerance {PROBA_ATOL:g})",
            f"label mismatches        {self.label_mismatches} "
            f"(+{self.near_ties} near-ties allowed)",
            f"accuracy                {self.accuracy:.4f} "
            f"(reference {self.reference_accuracy:.4f})",
            f"onnxruntime             {ort.__version__}",
            f"result                  {status}",
        ])


def reference_path_for(model: Model) -> Path:
    base = model.path.parent if model.path is not None else None
    if base is None:
        raise ModelError("the model was not loaded from a file; no reference set beside it")
    return base / REFERENCE_FILENAME


#: How every .npz archive (a zip) begins.
NPZ_MAGIC = b"PK\x03\x04"


def _check_is_npz(path: Path) -> None:
    """A reference set is an .npz archive in a regular file: anything else is named for what
    it is, before numpy guesses (a CSV "contains pickled data"; a FIFO would block)."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{path}: not a valid reference set (not a regular file)")
        with open(path, "rb") as fh:
            magic = fh.read(len(NPZ_MAGIC))
    except FileNotFoundError:
        raise ModelError(f"{path}: no reference set") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the reference set ({exc.strerror})") from None
    if magic != NPZ_MAGIC:
        raise ModelError(f"{path}: not a valid reference set (an .npz archive of X, y, labels "
                         "and probabilities is expected)")


def check_model(model: Model | None = None, reference: str | Path | None = None) -> CheckResult:
    """Run the golden set through ``model`` (default: the bundled one) and measure the drift."""
    model = model or Model.load()
    path = Path(reference) if reference is not None else reference_path_for(model)
    _check_is_npz(path)
    try:
        with np.load(path, allow_pickle=False) as ref:
            X, y = ref["X"], ref["y"]
            ref_labels, ref_proba = ref["labels"], ref["probabilities"]
    except FileNotFoundError:
        raise ModelError(f"{path}: no reference set") from None
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"{path}: not a valid reference set ({exc})") from None
    labels, proba = model.run(np.ascontiguousarray(X, dtype=np.float32))
    try:
        drift = compare(ref_labels, ref_proba, labels, proba)
    except ValueError as exc:
        raise ModelError(f"{path}: not a valid reference set ({exc})") from None
    return CheckResult(
        rows=drift.rows,
        max_abs_diff=drift.max_abs_diff,
        label_mismatches=drift.label_mismatches,
        near_ties=drift.near_tie_flips,
        accuracy=float((labels == y).mean()),
        reference_accuracy=float((ref_labels == y).mean()),
        model=model.display,
        model_sha256=model.sha256,
        reference=str(path),
    )
