"""The digits data set, its one fixed split and the fingerprint that identifies it.

Every stage (recipes, golden set, figures, verify) goes through :func:`load_split`, so the
split is written down once and the manifest's fingerprint means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

#: The tutorial's split; changing it changes every published number.
TEST_SIZE = 0.2
RANDOM_STATE = 42


@dataclass(frozen=True)
class Split:
    """The train/test split of the 1,797 digits, features as loaded (float64 in 0..16)."""

    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    X_all: np.ndarray
    y_all: np.ndarray
    feature_names: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        """sha256 of the training features' bytes followed by the training labels' bytes."""
        return fingerprint(self.X_train, self.y_train)

    def split_params(self) -> dict:
        """The arguments of the split, as recorded in the manifest."""
        return {"test_size": TEST_SIZE, "random_state": RANDOM_STATE}


def fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    """Identify training data by content, so a manifest can tell a changed data set apart."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return "sha256:" + digest.hexdigest()


def load_split() -> Split:
    """Load scikit-learn's bundled digits (no download) and split them like the tutorial."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=RANDOM_STATE
    )
    return Split(
        X_train=np.ascontiguousarray(X_train),
        X_test=np.ascontiguousarray(X_test),
        y_train=np.ascontiguousarray(y_train),
        y_test=np.ascontiguousarray(y_test),
        X_all=X,
        y_all=y,
        feature_names=tuple(bunch.feature_names),
    )
