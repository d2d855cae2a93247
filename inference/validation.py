"""The one place in-memory features are checked before they reach the model."""

from __future__ import annotations

import numpy as np

from .contract import IMAGE_SHAPE, N_FEATURES
from .errors import InputDataError


def as_features(X: object) -> np.ndarray:
    """Return ``X`` as C-ordered float32 of shape (N, 64), or say precisely what is wrong.

    Accepts any real numeric array-like of shape (N, 64) or (N, 8, 8).
    """
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise InputDataError(f"X cannot be read as an array: {exc}") from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes",
                "O": "Python objects"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise InputDataError(
            f"X holds {what}; expected real numbers (any integer or float dtype)"
        )
    if arr.ndim == 3 and arr.shape[1:] == IMAGE_SHAPE:
        arr = arr.reshape(arr.shape[0], N_FEATURES)
    if arr.ndim == 1:
        raise InputDataError(
            f"Expected a 2D array of shape (N, {N_FEATURES}), got a 1D array of shape "
            f"{arr.shape} instead; use X.reshape(1, -1) for a single row"
        )
    if arr.ndim != 2:
        raise InputDataError(
            f"Expected shape (N, {N_FEATURES}) or (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}), "
            f"got shape {arr.shape}"
        )
    if arr.shape[1] != N_FEATURES:
        raise InputDataError(
            f"X has {arr.shape[1]} features, but the model expects {N_FEATURES} features"
        )
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if out.size and not np.isfinite(out.min() + out.max()):
        bad = ~np.isfinite(out)
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        col = int(np.argmax(bad[row]))
        value = arr[row, col].item()
        raise InputDataError(
            f"X[{row}, {col}] = {value!r} is not finite in float32; "
            "NaN, inf and values beyond +-3.4e38 cannot be scored"
        )
    return out
