"""The manifest (``model.json``) and the golden set (``reference.npz``), rendered to bytes.

The bytes are deterministic, on any CPU, so retraining with the same library versions leaves
``git status`` clean; :func:`training.api.write_set` moves them into place atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from digits_onnx.inference import contract as model_contract

#: Fixed zip member timestamp (the earliest zip can store); np.savez would embed "now".
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
REFERENCE_KEYS = ("X", "y", "labels", "probabilities")
#: The golden probabilities are stored on this grid (about 9.5e-7, a tenth of PROBA_ATOL),
#: as float32: scikit-learn's float64 probabilities differ by ~1e-13 between BLAS kernels
#: (one CPU to another), and at full precision those bits changed the file. A power of two
#: makes the rounding exact and every grid point exact in float32.
GOLDEN_PROBA_STEP = 2.0**-20


def library_versions() -> dict[str, str]:
    """Versions that determine the model's bytes and numbers, recorded for reproduction."""
    import onnx
    import onnxruntime
    import skl2onnx
    import sklearn

    return {
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "skl2onnx": skl2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def describe(
    *,
    contract: Mapping[str, object] | None = None,
    recipe: str,
    hyperparameters: Mapping[str, object],
    metrics: Mapping[str, object],
    training_data: Mapping[str, object],
    versions: Mapping[str, str] | None = None,
) -> dict:
    """Everything the manifest says except the model file's hash (which depends on this).

    ``contract`` is the graph's signature (default: the full contract); it is stored in the
    model's metadata as well.
    """
    return {
        "schema_version": model_contract.MANIFEST_SCHEMA_VERSION,
        "contract": dict(contract) if contract is not None else model_contract.contract_dict(),
        "classes": list(model_contract.CLASS_LABELS),
        "feature_range": [
            _number(model_contract.FEATURE_MIN), _number(model_contract.FEATURE_MAX)
        ],
        "opset": model_contract.OPSET,
        "recipe": recipe,
        "hyperparameters": dict(hyperparameters),
        "metrics": dict(metrics),
        "training_data": dict(training_data),
        "versions": dict(versions if versions is not None else library_versions()),
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def build_manifest(
    info: Mapping[str, object],
    model_bytes: bytes,
    reference: bytes | None = None,
    *,
    profile: str = "full",
) -> dict:
    """The manifest layout the inference package reads: ``info`` plus the hashes of the
    model and (when given) the golden set, and the export profile.

    These stay out of ``info``, which goes into the model's metadata: the model cannot hold
    its own hash, and the profile there would change the bytes of every full model for
    nothing (the metadata's contract already names the outputs).
    """
    manifest: dict = {
        "schema_version": info["schema_version"],
        "model": file_entry(model_contract.MODEL_FILENAME, model_bytes),
    }
    if reference is not None:
        manifest["reference"] = file_entry(model_contract.REFERENCE_FILENAME, reference)
    manifest["profile"] = profile
    manifest.update({k: v for k, v in info.items() if k != "schema_version"})
    return manifest


def file_entry(name: str, data: bytes) -> dict:
    """A file as the manifest records it: name, sha256 and size."""
    return {"file": name, "sha256": sha256_hex(data), "size_bytes": len(data)}


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(manifest: Mapping[str, object]) -> bytes:
    """The manifest as UTF-8 JSON, indented, with a final newline (diff-friendly)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def reference_bytes(
    X: np.ndarray, y: np.ndarray, labels: np.ndarray, probabilities: np.ndarray
) -> bytes:
    """An ``.npz`` of the golden set, readable by ``np.load``, the same bytes on every machine.

    The probabilities go through :func:`golden_probabilities`; the pixels (whole numbers)
    and labels are exact anyway.
    """
    arrays = {
        "X": np.ascontiguousarray(X, dtype="<f8"),
        "y": np.ascontiguousarray(y, dtype="<i8"),
        "labels": np.ascontiguousarray(labels, dtype="<i8"),
        "probabilities": golden_probabilities(probabilities),
    }
    return npz_bytes(arrays)


def golden_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities`` rounded to the nearest multiple of :data:`GOLDEN_PROBA_STEP`, as
    little-endian float32 (each moves by at most half a step, under 4.8e-7)."""
    steps = np.round(np.asarray(probabilities, dtype=np.float64) / GOLDEN_PROBA_STEP)
    # + 0.0 turns a -0.0 (a tiny negative rounding error) into the same bytes as 0.0.
    return np.ascontiguousarray(steps * GOLDEN_PROBA_STEP + 0.0, dtype="<f4")


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Like ``np.savez`` (stored, not compressed), but with fixed member metadata: the
    timestamp, the permissions and the creating system (Unix, even on Windows)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_manifest(path: str | os.PathLike[str]) -> dict:
    """Load a manifest written by :func:`manifest_bytes`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
