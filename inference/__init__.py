"""digits-onnx inference: score 64-feature digit rows with a verified ONNX model.

numpy, onnxruntime and pyarrow only: importing this package never loads scikit-learn.

>>> from digits_onnx.inference import Model, score_file
>>> model = Model.load()                     # the bundled model, hash-checked
>>> model.predict(X)                         # X: (N, 64) or (N, 8, 8), any real dtype
>>> score_file("in.csv", "out.csv")          # streaming, atomic, returns a FileSummary

The names below load their modules on first use: the command line answers ``--help`` and
usage errors before numpy, pyarrow and onnxruntime are imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digits_onnx.lazy import lazy_exports

#: Public name -> the module that defines it.
_EXPORTS = {
    "BatchSummary": "summary",
    "FileSummary": "summary",
    "ScoreOptions": "options",
    "score_file": "api",
    "score_files": "api",
    "CheckResult": "check",
    "check_model": "check",
    "BusyError": "errors",
    "DigitsError": "errors",
    "InputDataError": "errors",
    "Interrupted": "errors",
    "MissingInputError": "errors",
    "ModelError": "errors",
    "OutputError": "errors",
    "ReadError": "errors",
    "UsageError": "errors",
    "WriteError": "errors",
    "Model": "model",
    "bundled_model_path": "model",
    "ReadOptions": "readers",
}

__all__ = [
    "BatchSummary",
    "BusyError",
    "CheckResult",
    "DigitsError",
    "FileSummary",
    "InputDataError",
    "Interrupted",
    "MissingInputError",
    "Model",
    "ModelError",
    "OutputError",
    "ReadError",
    "ReadOptions",
    "ScoreOptions",
    "UsageError",
    "WriteError",
    "bundled_model_path",
    "check_model",
    "score_file",
    "score_files",
]


if not TYPE_CHECKING:  # type checkers read the imports at the end instead
    # A public name, or a submodule (``inference.errors``), imported on first use.
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from .api import score_file, score_files
    from .check import CheckResult, check_model
    from .errors import (
        BusyError,
        DigitsError,
        InputDataError,
        Interrupted,
        MissingInputError,
        ModelError,
        OutputError,
        ReadError,
        UsageError,
        WriteError,
    )
    from .model import Model, bundled_model_path
    from .options import ScoreOptions
    from .readers import ReadOptions
    from .summary import BatchSummary, FileSummary
