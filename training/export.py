"""Export a fitted recipe as a tiny, portable ONNX graph in the default domain only.

skl2onnx's standard conversion of LogisticRegression emits ``ai.onnx.ml`` operators and a
ZipMap, which onnx2c, tract, onnxruntime-web and most embedded runtimes cannot run. Both
recipes are linear models, so the graph is written by hand with skl2onnx's algebra API:

    scores        = Gemm(X, W, b, transB=1)         # StandardScaler folded into W and b
    probabilities = Softmax(scores)                 # multinomial (default recipe)
                  | Softmax(-Softplus(-scores))     # one-vs-rest (seed recipe)
    label         = ArgMax(scores, axis=1)          # classes are 0..9, so index == label

which is what scikit-learn's ``predict`` and ``predict_proba`` compute for these estimators.
The ``probabilities`` profile leaves out ``ArgMax`` and the ``label`` output, for runtimes
without ArgMax (C code generators such as onnx2c, some accelerators): the caller takes the
argmax of the ten probabilities, which is the label except on exact ties.
One-vs-rest normalizes the binary sigmoids by their row sum, ``sigmoid(s_k) / sum_j
sigmoid(s_j)``; that equals a softmax of ``log sigmoid(s) = -softplus(-s)``. The log form is
used because onnxruntime's float32 Sigmoid returns exactly 0 below about -20 (and is coarse
near there), which turned rows whose ten scores are all very negative into 0/0 = NaN.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
import onnx
from digits_onnx.inference import contract
from digits_onnx.training.errors import PortabilityError, ProfileError
from digits_onnx.training.recipes import Classifier

#: Export profiles: ``full`` follows the contract (label and probabilities); ``probabilities``
#: has the probabilities output only, and no ArgMax.
PROFILE_FULL = "full"
PROFILE_PROBABILITIES = "probabilities"
PROFILES = (PROFILE_FULL, PROFILE_PROBABILITIES)
DEFAULT_PROFILE = PROFILE_FULL

#: How probabilities follow from the scores.
LINK_SOFTMAX = "softmax"
LINK_OVR = "ovr-sigmoid"

GRAPH_NAME = "digits_logistic_regression"
_INTERMEDIATE_NAMES = ("scores", "neg_scores", "softplus_neg_scores", "log_sigmoid")


def linear_parts(estimator: Classifier) -> tuple[np.ndarray, np.ndarray, str]:
    """Weights (10, 64), intercepts (10,) in original pixel units, and the link function.

    A leading StandardScaler is folded in: ``W' = W / scale`` and ``b' = b - W' @ mean``, so
    the graph reads raw pixels and needs no preprocessing nodes.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    mean = np.zeros(contract.N_FEATURES)
    scale = np.ones(contract.N_FEATURES)
    model: object = estimator
    if isinstance(model, Pipeline):
        *steps, (_, model) = model.steps
        for _, step in steps:
            if not isinstance(step, StandardScaler):
                raise PortabilityError(f"cannot fold pipeline step {type(step).__name__}")
            step_mean = step.mean_ if step.with_mean else np.zeros_like(mean)
            step_scale = step.scale_ if step.with_std else np.ones_like(scale)
            # Composing x -> (x - m1) / s1 -> (. - m2) / s2 keeps the same affine form.
            mean = mean + scale * step_mean
            scale = scale * step_scale
    _check_classes(model)
    if isinstance(model, LogisticRegression):
        W, b, link = np.array(model.coef_, dtype=np.float64), model.intercept_, LINK_SOFTMAX
        if W.shape[0] != contract.N_CLASSES:
            raise PortabilityError(f"expected a multinomial model with 10 rows, got {W.shape}")
    elif isinstance(model, OneVsRestClassifier):
        W = np.vstack([e.coef_ for e in model.estimators_]).astype(np.float64)
        b = np.concatenate([np.ravel(e.intercept_) for e in model.estimators_])
        link = LINK_OVR
    else:
        raise PortabilityError(f"cannot export {type(model).__name__}; expected a linear model")
    W_folded = W / scale
    b_folded = np.asarray(b, dtype=np.float64) - W_folded @ mean
    if W_folded.shape != (contract.N_CLASSES, contract.N_FEATURES):
        raise PortabilityError(f"weights have shape {W_folded.shape}, expected (10, 64)")
    return W_folded, b_folded, link


def _check_classes(model: object) -> None:
    classes = tuple(int(c) for c in getattr(model, "classes_", ()))
    if classes != contract.CLASS_LABELS:
        raise PortabilityError(f"classes {classes} differ from the contract's 0..9")


def check_profile(profile: str) -> str:
    """Reject unknown profile names with the list of known ones."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


def profile_contract(profile: str = DEFAULT_PROFILE) -> dict[str, object]:
    """The contract a profile's graph follows: the full one, or its probabilities output only."""
    full = contract.contract_dict()
    if check_profile(profile) == PROFILE_FULL:
        return full
    return {
        "inputs": full["inputs"],
        "outputs": [o for o in full["outputs"] if o["name"] == contract.OUTPUT_PROBA],
    }


def build_model(estimator: Classifier, *, profile: str = DEFAULT_PROFILE) -> onnx.ModelProto:
    """The portable graph of a fitted recipe, checked against the profile's contract (no
    metadata)."""
    from skl2onnx.algebra.onnx_ops import (
        OnnxArgMax,
        OnnxGemm,
        OnnxNeg,
        OnnxSoftmax,
        OnnxSoftplus,
    )
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    check_profile(profile)
    W, b, link = linear_parts(estimator)
    op = contract.OPSET
    scores = OnnxGemm(
        contract.INPUT_NAME, W.astype(np.float32), b.astype(np.float32), transB=1, op_version=op
    )
    if link == LINK_SOFTMAX:
        proba = OnnxSoftmax(scores, axis=1, op_version=op, output_names=[contract.OUTPUT_PROBA])
    else:
        log_sigmoid = OnnxNeg(
            OnnxSoftplus(OnnxNeg(scores, op_version=op), op_version=op), op_version=op
        )
        proba = OnnxSoftmax(
            log_sigmoid, axis=1, op_version=op, output_names=[contract.OUTPUT_PROBA]
        )
    inputs = [(contract.INPUT_NAME, FloatTensorType([None, contract.N_FEATURES]))]
    proba_output = (contract.OUTPUT_PROBA, FloatTensorType([None, contract.N_CLASSES]))
    if profile == PROFILE_PROBABILITIES:
        model = proba.to_onnx(inputs=inputs, outputs=[proba_output], target_opset=op)
    else:
        label = OnnxArgMax(
            scores, axis=1, keepdims=0, op_version=op, output_names=[contract.OUTPUT_LABEL]
        )
        model = label.to_onnx(
            inputs=inputs,
            outputs=[(contract.OUTPUT_LABEL, Int64TensorType([None])), proba_output],
            other_outputs=[proba],
            target_opset=op,
        )
    _canonicalize(model, profile)
    check_portable(model)
    check_contract(model, profile=profile)
    return model


def _canonicalize(model: onnx.ModelProto, profile: str) -> None:
    """Readable, stable names and the pinned opset, whatever skl2onnx chose internally."""
    graph = model.graph
    renames = {}
    for init, name in zip(graph.initializer, ("coef", "intercept"), strict=True):
        renames[init.name] = name
        init.name = name
    public = {contract.OUTPUT_LABEL, contract.OUTPUT_PROBA}
    # Intermediate tensors are named after what they hold, in graph order.
    names = iter(_INTERMEDIATE_NAMES)
    for node in graph.node:
        if node.output[0] not in public:
            old, new = node.output[0], next(names)
            renames[old] = node.output[0] = new
        node.name = node.output[0]
    for node in graph.node:
        for i, inp in enumerate(node.input):
            node.input[i] = renames.get(inp, inp)
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = "N"
    graph.name = GRAPH_NAME
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", contract.OPSET))
    # The lowest IR version that carries this opset: older runtimes refuse newer IR versions.
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    if profile == PROFILE_PROBABILITIES:
        model.doc_string = (
            "Logistic regression on 8x8 digits (pixels 0..16). Input X float32 [N, 64]; "
            "output probabilities float32 [N, 10]; the label is their argmax (column k is "
            "digit k)."
        )
    else:
        model.doc_string = (
            "Logistic regression on 8x8 digits (pixels 0..16). Input X float32 [N, 64]; "
            "outputs label int64 [N] and probabilities float32 [N, 10]."
        )


def check_portable(model: onnx.ModelProto) -> None:
    """Raise :class:`PortabilityError` if any operator or opset leaves the default domain.

    Also rejects ZipMap-style outputs (maps, sequences): they are unreadable outside Python.
    """
    foreign = sorted(
        {
            f"{node.domain}.{node.op_type}"
            for node in _all_nodes(model)
            if node.domain not in contract.ALLOWED_DOMAINS
        }
    )
    if foreign:
        raise PortabilityError(
            f"model uses operators outside the default ONNX domain: {', '.join(foreign)}; "
            "export with training.export.build_model instead of skl2onnx's standard conversion"
        )
    opsets = {o.domain: o.version for o in model.opset_import}
    extra = sorted(d for d in opsets if d not in contract.ALLOWED_DOMAINS)
    if extra:
        raise PortabilityError(f"model imports foreign opset domains: {', '.join(extra)}")
    default = opsets.get("", opsets.get("ai.onnx"))
    if default != contract.OPSET:
        raise PortabilityError(f"model uses opset {default}, the contract pins {contract.OPSET}")
    for value in model.graph.output:
        if not value.type.HasField("tensor_type"):
            kind = value.type.WhichOneof("value")
            raise PortabilityError(f"output {value.name!r} is a {kind}, not a tensor")


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    def walk(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g)
                for sub in attr.graphs:
                    yield from walk(sub)

    yield from walk(model.graph)
    for function in model.functions:
        yield from function.node


def _signature(values: Iterable[onnx.ValueInfoProto]) -> list[dict[str, object]]:
    out = []
    for value in values:
        tensor = value.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        shape = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        out.append({"name": value.name, "dtype": dtype, "shape": shape})
    return out


def check_contract(model: onnx.ModelProto, *, profile: str = DEFAULT_PROFILE) -> None:
    """Raise :class:`PortabilityError` unless inputs and outputs match the profile's contract
    (:func:`profile_contract`; for ``full``, ``contract.contract_dict()``)."""
    expected = profile_contract(profile)
    found = {"inputs": _signature(model.graph.input), "outputs": _signature(model.graph.output)}
    if found != expected:
        raise PortabilityError(
            f"model signature ({_describe(found)}) differs from the contract of the {profile} "
            f"profile ({_describe(expected)})"
        )


def _describe(signature: Mapping[str, object]) -> str:
    """``inputs X float32 [N, 64]; outputs label int64 [N]``: a signature in one line."""
    parts = []
    for kind in ("inputs", "outputs"):
        values = signature[kind]
        assert isinstance(values, list)
        tensors = ", ".join(
            f"{v['name']} {v['dtype']} [{', '.join(str(d) for d in v['shape'])}]" for v in values
        )
        parts.append(f"{kind} {tensors or 'none'}")
    return "; ".join(parts)


def metadata_props(info: Mapping[str, object]) -> dict[str, str]:
    """The manifest's fields as ONNX string properties: strings as is, the rest as JSON."""
    props = {}
    for key, value in info.items():
        props[key] = value if isinstance(value, str) else _compact_json(value)
    return dict(sorted(props.items()))


def _compact_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def attach_metadata(model: onnx.ModelProto, info: Mapping[str, object]) -> onnx.ModelProto:
    """Store ``info`` in ``metadata_props`` (sorted), replacing any earlier properties."""
    del model.metadata_props[:]
    for key, value in metadata_props(info).items():
        model.metadata_props.add(key=key, value=value)
    return model


def serialize(model: onnx.ModelProto) -> bytes:
    """Deterministic bytes: the same model always serializes identically."""
    return model.SerializeToString(deterministic=True)
