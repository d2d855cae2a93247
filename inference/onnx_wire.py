"""Just enough of the protobuf wire format to vet an ONNX model before onnxruntime runs it.

The inference package does not depend on the ``onnx`` package (it is large and not needed to
run a model), yet it must refuse foreign operator domains, local functions and external data.
These few field numbers come from onnx.proto and have been stable since ONNX 1.0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

# ModelProto
_MODEL_GRAPH, _MODEL_OPSET_IMPORT, _MODEL_FUNCTIONS = 7, 8, 25
# OperatorSetIdProto
_OPSET_DOMAIN = 1
# GraphProto
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
# NodeProto
_NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
# AttributeProto: a tensor, a graph, or lists of them (sparse tensors hold two TensorProtos)
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS, _ATTR_GRAPHS = 5, 6, 10, 11
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
# TensorProto
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_EXTERNAL = 1


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass
class ModelFacts:
    """What the vetting needs to know of a model."""

    opset_domains: list[str] = field(default_factory=list)
    node_domains: list[tuple[str, str]] = field(default_factory=list)
    external_tensors: list[str] = field(default_factory=list)
    n_functions: int = 0


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


class _Field(NamedTuple):
    number: int
    wire: int
    #: The value of a varint field (wire type 0); 0 for the other types.
    varint: int
    #: The bytes of a length-delimited or fixed-width field; empty for a varint.
    data: memoryview


def _fields(buf: memoryview) -> Iterator[_Field]:
    """Each field of a message, in order; length-delimited values as memoryviews."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        varint, data = 0, buf[pos:pos]
        if wire == 0:
            varint, pos = _varint(buf, pos)
        elif wire == 1:
            data, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise WireError("a field runs past the end of the message")
            data, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            data, pos = buf[pos:pos + 4], pos + 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise WireError("a field runs past the end of the message")
        yield _Field(number, wire, varint, data)


def _text(data: memoryview) -> str:
    return bytes(data).decode("utf-8", errors="replace")


def _scan_tensor(buf: memoryview, facts: ModelFacts) -> None:
    name, external = "", False
    for number, wire, varint, data in _fields(buf):
        if number == _TENSOR_NAME and wire == 2:
            name = _text(data)
        elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
        elif number == _TENSOR_DATA_LOCATION and wire == 0:
            external = external or varint == _EXTERNAL
    if external:
        facts.external_tensors.append(name)


def _scan_graph(buf: memoryview, facts: ModelFacts, depth: int = 0) -> None:
    if depth > 32:
        raise WireError("subgraphs nested too deeply")
    for number, wire, _, data in _fields(buf):
        if wire != 2:
            continue
        if number == _GRAPH_NODE:
            _scan_node(data, facts, depth)
        elif number == _GRAPH_INITIALIZER:
            _scan_tensor(data, facts)
        elif number == _GRAPH_SPARSE_INITIALIZER:
            _scan_sparse_tensor(data, facts)


def _scan_sparse_tensor(buf: memoryview, facts: ModelFacts) -> None:
    """A SparseTensorProto holds its values (1) and indices (2) as TensorProtos."""
    for number, wire, _, data in _fields(buf):
        if wire == 2 and number in (1, 2):
            _scan_tensor(data, facts)


def _scan_node(buf: memoryview, facts: ModelFacts, depth: int) -> None:
    op_type, domain = "", ""
    for number, wire, _, data in _fields(buf):
        if wire != 2:
            continue
        if number == _NODE_OP_TYPE:
            op_type = _text(data)
        elif number == _NODE_DOMAIN:
            domain = _text(data)
        elif number == _NODE_ATTRIBUTE:
            # Weights can hide in attributes too (a Constant node's tensor), and in subgraphs.
            for n2, w2, _, d2 in _fields(data):
                if w2 != 2:
                    continue
                if n2 in (_ATTR_GRAPH, _ATTR_GRAPHS):
                    _scan_graph(d2, facts, depth + 1)
                elif n2 in (_ATTR_TENSOR, _ATTR_TENSORS):
                    _scan_tensor(d2, facts)
                elif n2 in (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS):
                    _scan_sparse_tensor(d2, facts)
    facts.node_domains.append((domain, op_type))


def scan_model(data: bytes) -> ModelFacts:
    """Read the operator domains, local functions and external tensors of a serialized model."""
    facts = ModelFacts()
    graphs = 0
    for number, wire, _, value in _fields(memoryview(data)):
        if wire != 2:
            continue
        if number == _MODEL_OPSET_IMPORT:
            domain = ""
            for n2, w2, _, v2 in _fields(value):
                if n2 == _OPSET_DOMAIN and w2 == 2:
                    domain = _text(v2)
            facts.opset_domains.append(domain)
        elif number == _MODEL_GRAPH:
            graphs += 1
            _scan_graph(value, facts)
        elif number == _MODEL_FUNCTIONS:
            facts.n_functions += 1
    if graphs != 1:
        raise WireError("the model has no graph")
    return facts
