"""Train the digits logistic regression and export it as a portable ONNX model.

The public API: :func:`train` writes the artifact set (model, manifest, golden set, report),
:func:`verify` checks committed artifacts against a retraining, :func:`write_samples` writes
example inputs, :func:`build_model` and :func:`check_portable` export and guard the graph.
scikit-learn, skl2onnx, onnx and matplotlib (the ``train`` extra) are needed here, never by
``inference``.

The names below load their modules on first use, so ``digits-train --help`` and
``--version`` answer on a base install, where the train extra is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits_onnx import __version__
from digits_onnx.lazy import lazy_exports

#: Public name -> the module that defines it.
_EXPORTS = {
    "TrainingResult": "api",
    "train": "api",
    "write_samples": "api",
    "ArtifactsNotFoundError": "errors",
    "ManifestError": "errors",
    "OutputDirError": "errors",
    "PortabilityError": "errors",
    "ProfileError": "errors",
    "RecipeError": "errors",
    "TrainingError": "errors",
    "build_model": "export",
    "check_contract": "export",
    "check_portable": "export",
    "PROFILES": "export",
    "RECIPES": "recipes",
    "Verification": "verify",
    "verify": "verify",
}

__all__ = [
    "PROFILES",
    "RECIPES",
    "ArtifactsNotFoundError",
    "ManifestError",
    "OutputDirError",
    "PortabilityError",
    "ProfileError",
    "RecipeError",
    "TrainingError",
    "TrainingResult",
    "Verification",
    "__version__",
    "build_model",
    "check_contract",
    "check_portable",
    "train",
    "verify",
    "write_samples",
]


if not TYPE_CHECKING:  # type checkers read the imports at the end instead
    # A public name, or a submodule (``training.export``), imported on first use.
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from digits_onnx.training.api import TrainingResult, train, write_samples
    from digits_onnx.training.errors import (
        ArtifactsNotFoundError,
        ManifestError,
        OutputDirError,
        PortabilityError,
        ProfileError,
        RecipeError,
        TrainingError,
    )
    from digits_onnx.training.export import (
        PROFILES,
        build_model,
        check_contract,
        check_portable,
    )
    from digits_onnx.training.recipes import RECIPES
    from digits_onnx.training.verify import Verification, verify
