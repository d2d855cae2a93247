"""The ONNX model contract, written down once.

Training asserts it when it exports; inference asserts it when it loads. Everything that
embeds the model (other runtimes, docs, tests) reads these names instead of repeating them.
"""

from __future__ import annotations

from typing import Any

INPUT_NAME = "X"
INPUT_DTYPE = "float32"
OUTPUT_LABEL = "label"
OUTPUT_LABEL_DTYPE = "int64"
OUTPUT_PROBA = "probabilities"
OUTPUT_PROBA_DTYPE = "float32"

N_FEATURES = 64
IMAGE_SHAPE = (8, 8)
CLASS_LABELS = tuple(range(10))
N_CLASSES = len(CLASS_LABELS)
FEATURE_MIN = 0.0
FEATURE_MAX = 16.0

#: ONNX opset of the default domain. Moderate on purpose: browsers, tract and onnx2c run it.
OPSET = 17
#: Operator domains a portable model may use: the default ONNX domain only.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx"})

MODEL_FILENAME = "model.onnx"
MANIFEST_FILENAME = "model.json"
REFERENCE_FILENAME = "reference.npz"
MANIFEST_SCHEMA_VERSION = 1

#: Tolerance of every parity check (ONNX against scikit-learn, runtime against runtime).
PROBA_ATOL = 1e-5
#: Rows whose top-two probability margin is below this may legitimately flip label.
TIE_MARGIN = 1e-6


def contract_dict() -> dict[str, Any]:
    """The contract as it appears in the manifest and the model's metadata."""
    return {
        "inputs": [{"name": INPUT_NAME, "dtype": INPUT_DTYPE, "shape": ["N", N_FEATURES]}],
        "outputs": [
            {"name": OUTPUT_LABEL, "dtype": OUTPUT_LABEL_DTYPE, "shape": ["N"]},
            {"name": OUTPUT_PROBA, "dtype": OUTPUT_PROBA_DTYPE, "shape": ["N", N_CLASSES]},
        ],
    }
