"""Small contract-shaped ONNX models for the inference tests (built with onnx.helper)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from digits_onnx.inference import contract
from onnx import TensorProto, helper, numpy_helper


def random_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.3, size=(contract.N_FEATURES, contract.N_CLASSES)).astype(np.float32)
    b = rng.normal(0, 0.5, size=contract.N_CLASSES).astype(np.float32)
    return W, b


def build_model(W: np.ndarray | None = None, b: np.ndarray | None = None, *,
                foreign_node: bool = False, input_width: int = contract.N_FEATURES,
                opset: int = contract.OPSET) -> onnx.ModelProto:
    """Scores = X @ W + b; probabilities = softmax; label = argmax. The contract's shape."""
    if W is None or b is None:
        W, b = random_weights()
    W = W[:input_width]
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
    ]
    opsets = [helper.make_opsetid("", opset)]
    if foreign_node:
        nodes.append(helper.make_node("Normalizer", ["scores"], ["unused"], domain="ai.onnx.ml",
                                      norm="L1"))
        opsets.append(helper.make_opsetid("ai.onnx.ml", 1))
    graph = helper.make_graph(
        nodes, "digits",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", input_width])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       ["N", contract.N_CLASSES])],
        initializer=[numpy_helper.from_array(W, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=opsets, producer_name="digits-tests")
    model.ir_version = 8
    return model


def write_model(directory: Path, model: onnx.ModelProto | None = None, *,
                manifest: bool = True) -> Path:
    """Write model.onnx (and a manifest with its sha256) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    data = (model or build_model()).SerializeToString()
    path = directory / contract.MODEL_FILENAME
    path.write_bytes(data)
    if manifest:
        (directory / contract.MANIFEST_FILENAME).write_text(json.dumps({
            "schema_version": contract.MANIFEST_SCHEMA_VERSION,
            "model": {"file": contract.MODEL_FILENAME,
                      "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)},
        }))
    return path


def numpy_predict(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The test model's outputs computed in numpy, as an independent oracle."""
    scores = X.astype(np.float64) @ W.astype(np.float64) + b
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return scores.argmax(axis=1), e / e.sum(axis=1, keepdims=True)
