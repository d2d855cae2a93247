"""digits-onnx inference: score 64-feature digit rows with a verified ONNX model.

numpy, onnxruntime and pyarrow only: importing this package never loads scikit-learn.

>>> from inference import Model, score_file
>>> model = Model.load()                     # the bundled model, hash-checked
>>> model.predict(X)                         # X: (N, 64) or (N, 8, 8), any real dtype
>>> score_file("in.csv", "out.csv")          # streaming, atomic, returns a FileSummary
"""

from .batch import BatchSummary, FileSummary, ScoreOptions, score_file, score_files
from .check import CheckResult, check_model
from .errors import (
    BusyError,
    DigitsError,
    InputDataError,
    MissingInputError,
    ModelError,
    OutputError,
    ReadError,
    UsageError,
    WriteError,
)
from .model import Model, bundled_model_path
from .readers import ReadOptions

__all__ = [
    "BatchSummary",
    "BusyError",
    "CheckResult",
    "DigitsError",
    "FileSummary",
    "InputDataError",
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
