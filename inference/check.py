"""The parity check that needs no scikit-learn: the golden reference set through onnxruntime.

The reference set holds scikit-learn's labels and probabilities at export time; after an
onnxruntime upgrade (or on a new platform) this says whether the model still agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .contract import PROBA_ATOL, REFERENCE_FILENAME, TIE_MARGIN
from .errors import ModelError
from .model import Model


@dataclass
class CheckResult:
    """How far the model's outputs are from the stored reference outputs."""

    rows: int
    max_abs_diff: float
    label_mismatches: int
    near_ties: int
    accuracy: float
    reference_accuracy: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= PROBA_ATOL and self.label_mismatches == 0

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


def check_model(model: Model | None = None, reference: str | Path | None = None) -> CheckResult:
    """Run the golden set through ``model`` (default: the bundled one) and measure the drift."""
    model = model or Model.load()
    path = Path(reference) if reference is not None else reference_path_for(model)
    try:
        with np.load(path, allow_pickle=False) as ref:
            X, y = ref["X"], ref["y"]
            ref_labels, ref_proba = ref["labels"], ref["probabilities"]
    except FileNotFoundError:
        raise ModelError(f"{path}: no reference set") from None
    except (ValueError, KeyError, OSError) as exc:
        raise ModelError(f"{path}: not a valid reference set ({exc})") from None
    labels, proba = model.run(np.ascontiguousarray(X, dtype=np.float32))
    top2 = np.sort(ref_proba, axis=1)[:, -2:]
    near_tie = (top2[:, 1] - top2[:, 0]) < TIE_MARGIN
    mismatch = labels != ref_labels
    return CheckResult(
        rows=len(X),
        max_abs_diff=float(np.abs(proba.astype(np.float64) - ref_proba).max()),
        label_mismatches=int((mismatch & ~near_tie).sum()),
        near_ties=int((mismatch & near_tie).sum()),
        accuracy=float((labels == y).mean()),
        reference_accuracy=float((ref_labels == y).mean()),
    )
