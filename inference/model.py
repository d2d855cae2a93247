"""The model session: verified bytes in, one onnxruntime session out, the contract enforced."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import contract
from .errors import ModelError
from .onnx_wire import WireError, scan_model
from .validation import as_features

_ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


def bundled_model_path() -> Path:
    """The model shipped inside the package (the committed ``artifacts/model.onnx``).

    Installed, it lives in ``digits_onnx/inference/bundled``; run from a source checkout without an
    install, it is the checkout's ``artifacts/`` folder.
    """
    try:
        folder = Path(str(resources.files(f"{__package__}.bundled")))
    except ModuleNotFoundError:
        folder = Path(__file__).resolve().parent.parent / "artifacts"
    return folder / contract.MODEL_FILENAME


def read_manifest(model_path: Path) -> dict[str, Any] | None:
    """The manifest beside a model file, or None when there is none."""
    path = model_path.with_name(contract.MANIFEST_FILENAME)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        manifest = json.loads(text)
        manifest["model"]["sha256"]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{path}: not a valid model manifest") from None
    return manifest


def vet_model_bytes(data: bytes, display: str) -> None:
    """Refuse models that are not plain, self-contained, default-domain ONNX graphs."""
    try:
        facts = scan_model(data)
    except WireError as exc:
        raise ModelError(f"{display}: not a valid ONNX model ({exc})") from None
    foreign = sorted({f"{d}:{op}" for d, op in facts.node_domains
                      if d not in contract.ALLOWED_DOMAINS})
    if foreign or any(d not in contract.ALLOWED_DOMAINS for d in facts.opset_domains):
        names = ", ".join(foreign) or ", ".join(
            d for d in facts.opset_domains if d not in contract.ALLOWED_DOMAINS)
        raise ModelError(
            f"{display}: uses operators outside the default ONNX domain ({names}); "
            "only portable default-domain models are accepted"
        )
    if facts.n_functions:
        raise ModelError(f"{display}: defines local functions; they are not accepted")
    if facts.external_tensors:
        raise ModelError(
            f"{display}: keeps tensors in external data files "
            f"({', '.join(facts.external_tensors[:3])}); only self-contained models load"
        )


class Model:
    """A verified digits model in an onnxruntime session.

    Load it with :meth:`Model.load`; it reads the file once, checks the bytes' sha256 against
    the manifest beside it (or ``sha256``), hands the same bytes to onnxruntime and checks the
    input and output names, dtypes and shapes.
    """

    def __init__(self, data: bytes, *, display: str = "<model>", sha256: str | None = None,
                 verify_hash: bool = True, threads: int = 1, manifest: dict[str, Any] | None = None,
                 path: Path | None = None) -> None:
        digest = hashlib.sha256(data).hexdigest()
        if verify_hash:
            if sha256 is None:
                raise ModelError(
                    f"{display}: no manifest ({contract.MANIFEST_FILENAME}) beside the model to "
                    "check its sha256; give the expected hash or trust the model explicitly"
                )
            if digest != sha256.lower():
                raise ModelError(
                    f"{display}: sha256 {digest[:12]}... does not match the expected "
                    f"{sha256[:12]}...; the model was replaced or corrupted"
                )
        vet_model_bytes(data, display)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{display}: onnxruntime cannot load it ({first})") from None
        self._check_contract(display)
        self.sha256 = digest
        self.data = data
        self.manifest = manifest
        self.path = path
        self.display = display
        self.classes_ = np.array(contract.CLASS_LABELS, dtype=np.int64)

    @classmethod
    def load(cls, path: str | Path | None = None, *, sha256: str | None = None,
             verify_hash: bool = True, threads: int = 1) -> Model:
        """Load ``path`` (default: the bundled model) after checking its hash and contract."""
        model_path = Path(path) if path is not None else bundled_model_path()
        try:
            data = model_path.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"{model_path}: no such model file") from None
        except OSError as exc:
            raise ModelError(f"{model_path}: cannot read the model ({exc.strerror})") from None
        manifest = read_manifest(model_path)
        expected = sha256 or (manifest["model"]["sha256"] if manifest else None)
        return cls(data, display=str(model_path), sha256=expected, verify_hash=verify_hash,
                   threads=threads, manifest=manifest, path=model_path)

    def _check_contract(self, display: str) -> None:
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        problems = []
        if [i.name for i in inputs] != [contract.INPUT_NAME]:
            problems.append(f"inputs {[i.name for i in inputs]}, expected ['X']")
        else:
            x = inputs[0]
            if x.type != _ORT_TYPES[contract.INPUT_DTYPE]:
                problems.append(f"input X is {x.type}, expected tensor(float)")
            if len(x.shape) != 2 or x.shape[1] != contract.N_FEATURES or isinstance(
                x.shape[0], int
            ):
                problems.append(f"input X has shape {x.shape}, expected [N, 64]")
        by_name = {o.name: o for o in outputs}
        expected = {
            contract.OUTPUT_LABEL: (contract.OUTPUT_LABEL_DTYPE, 1),
            contract.OUTPUT_PROBA: (contract.OUTPUT_PROBA_DTYPE, 2),
        }
        for name, (dtype, ndim) in expected.items():
            out = by_name.get(name)
            if out is None:
                problems.append(f"output {name!r} is missing")
            elif out.type != _ORT_TYPES[dtype] or len(out.shape) != ndim:
                problems.append(f"output {name} is {out.type} of shape {out.shape}")
            elif ndim == 2 and out.shape[1] != contract.N_CLASSES:
                problems.append(f"output {name} has shape {out.shape}, expected [N, 10]")
        if problems:
            raise ModelError(f"{display}: breaks the model contract: {'; '.join(problems)}")

    def run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) for float32 rows already in the model's layout."""
        if len(X) == 0:
            return np.empty(0, np.int64), np.empty((0, contract.N_CLASSES), np.float32)
        labels, proba = self._session.run(
            [contract.OUTPUT_LABEL, contract.OUTPUT_PROBA], {contract.INPUT_NAME: X}
        )
        return labels, proba

    def predict(self, X: object) -> np.ndarray:
        """Class labels (int64) of the rows of ``X``: shape (N, 64) or (N, 8, 8)."""
        return self.run(as_features(X))[0]

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities (float32, (N, 10)) of the rows of ``X``."""
        return self.run(as_features(X))[1]

    def __repr__(self) -> str:
        """Which model this is: path (or display name), sha256 prefix, opset and recipe
        when the manifest or the model's metadata says."""
        described: dict[str, Any] = {**self.metadata, **(self.manifest or {})}
        parts = [repr(self.display), f"sha256={self.sha256[:12]!r}"]
        opset = described.get("opset")
        if opset is not None:
            parts.append(f"opset={opset}")
        recipe = described.get("recipe")
        if recipe is not None:
            parts.append(f"recipe={recipe!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` (recipe, metrics, versions...)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)
