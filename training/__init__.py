"""Train the digits logistic regression and export it as a portable ONNX model.

The public API: :func:`train` writes the artifact set (model, manifest, golden set, report),
:func:`verify` checks committed artifacts against a retraining, :func:`write_samples` writes
example inputs, :func:`build_model` and :func:`check_portable` export and guard the graph.
scikit-learn, skl2onnx and matplotlib are needed here, never by ``inference``.
"""

from __future__ import annotations

from digits_onnx.training.api import TrainingResult, train, write_samples
from digits_onnx.training.errors import (
    ArtifactsNotFoundError,
    ManifestError,
    OutputDirError,
    PortabilityError,
    RecipeError,
    TrainingError,
)
from digits_onnx.training.export import build_model, check_contract, check_portable
from digits_onnx.training.recipes import RECIPES
from digits_onnx.training.verify import Verification, verify

__all__ = [
    "RECIPES",
    "ArtifactsNotFoundError",
    "ManifestError",
    "OutputDirError",
    "PortabilityError",
    "RecipeError",
    "TrainingError",
    "TrainingResult",
    "Verification",
    "build_model",
    "check_contract",
    "check_portable",
    "train",
    "verify",
    "write_samples",
]
