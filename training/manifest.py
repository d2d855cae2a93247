"""The manifest (``model.json``) and the golden set (``reference.npz``), rendered to bytes.

The bytes are deterministic, so retraining with the same library versions leaves
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
from digits_onnx.inference import contract

#: Fixed zip member timestamp (the earliest zip can store); np.savez would embed "now".
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
REFERENCE_KEYS = ("X", "y", "labels", "probabilities")


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
    recipe: str,
    hyperparameters: Mapping[str, object],
    metrics: Mapping[str, object],
    training_data: Mapping[str, object],
    versions: Mapping[str, str] | None = None,
) -> dict:
    """Everything the manifest says except the model file's hash (which depends on this)."""
    return {
        "schema_version": contract.MANIFEST_SCHEMA_VERSION,
        "contract": contract.contract_dict(),
        "classes": list(contract.CLASS_LABELS),
        "feature_range": [_number(contract.FEATURE_MIN), _number(contract.FEATURE_MAX)],
        "opset": contract.OPSET,
        "recipe": recipe,
        "hyperparameters": dict(hyperparameters),
        "metrics": dict(metrics),
        "training_data": dict(training_data),
        "versions": dict(versions if versions is not None else library_versions()),
    }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def build_manifest(info: Mapping[str, object], model_bytes: bytes) -> dict:
    """The manifest layout the inference package reads: ``info`` plus the model's hash."""
    manifest = {
        "schema_version": info["schema_version"],
        "model": {
            "file": contract.MODEL_FILENAME,
            "sha256": sha256_hex(model_bytes),
            "size_bytes": len(model_bytes),
        },
    }
    manifest.update({k: v for k, v in info.items() if k != "schema_version"})
    return manifest


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(manifest: Mapping[str, object]) -> bytes:
    """The manifest as UTF-8 JSON, indented, with a final newline (diff-friendly)."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def reference_bytes(
    X: np.ndarray, y: np.ndarray, labels: np.ndarray, probabilities: np.ndarray
) -> bytes:
    """An ``.npz`` of the golden set with fixed timestamps, readable by ``np.load``."""
    arrays = {
        "X": np.ascontiguousarray(X, dtype=np.float64),
        "y": np.ascontiguousarray(y, dtype=np.int64),
        "labels": np.ascontiguousarray(labels, dtype=np.int64),
        "probabilities": np.ascontiguousarray(probabilities, dtype=np.float64),
    }
    return npz_bytes(arrays)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Like ``np.savez`` (stored, not compressed), but with fixed member timestamps."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def read_manifest(path: str | os.PathLike[str]) -> dict:
    """Load a manifest written by :func:`manifest_bytes`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
