"""The exceptions a training run can raise on purpose, each mapped to one exit code.

Exit codes are shared with the inference CLI (sysexits(3)), so shells and cron wrappers
read both commands the same way.
"""

from __future__ import annotations

from digits_onnx.inference.errors import (
    EXIT_CANTCREAT,
    EXIT_DATAERR,
    EXIT_NOINPUT,
    EXIT_SOME_FAILED,
    EXIT_USAGE,
)


class TrainingError(Exception):
    """Base class of every error the training package raises on purpose."""

    exit_code = EXIT_SOME_FAILED


class RecipeError(TrainingError, ValueError):
    """The recipe name is unknown, or a manifest names hyperparameters it cannot use."""

    exit_code = EXIT_USAGE


class ProfileError(TrainingError, ValueError):
    """The export profile name is unknown."""

    exit_code = EXIT_USAGE


class OutputDirError(TrainingError):
    """The output directory is missing, not a directory or not writable; nothing was written."""

    exit_code = EXIT_CANTCREAT


class ArtifactsNotFoundError(TrainingError, FileNotFoundError):
    """The artifacts directory to verify lacks the manifest, the model or the golden set."""

    exit_code = EXIT_NOINPUT


class PortabilityError(TrainingError, ValueError):
    """The ONNX graph leaves the contract: foreign operator domain, wrong opset, names or types."""

    exit_code = EXIT_DATAERR


class ManifestError(TrainingError, ValueError):
    """The manifest is not valid JSON or lacks the fields verification needs."""

    exit_code = EXIT_DATAERR
