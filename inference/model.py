"""The model session: verified bytes in, one onnxruntime session out, the contract enforced."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from . import contract
from .errors import ModelError, NonFiniteOutputError
from .onnx_wire import WireError, scan_model
from .validation import as_features

_ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}
#: A manifest is a few hundred bytes; a model at most what protobuf can hold.
MAX_MANIFEST_BYTES = 1 << 20
MAX_MODEL_BYTES = 2 << 30
#: How far a probability may stray below 0, and a row's sum from 1 (float32 arithmetic).
PROBA_SLACK = 1e-3


def _probe_rows() -> np.ndarray:
    """Rows every model runs at load: all zeros, all 16s, and six fixed pseudo-random rows
    of pixel values, three of integers and three of fractions within 0..16 (splitmix64 of
    the cell's index: numpy.random would cost every start its import)."""
    z = np.arange(1, 6 * contract.N_FEATURES + 1, dtype=np.uint64) * np.uint64(
        0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    unit = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    mixed = unit.reshape(6, contract.N_FEATURES) * (contract.FEATURE_MAX + 1)
    mixed[:3] = np.floor(mixed[:3])
    mixed[3:] = np.minimum(mixed[3:], contract.FEATURE_MAX)
    rows = [np.zeros(contract.N_FEATURES), np.full(contract.N_FEATURES, contract.FEATURE_MAX),
            *mixed]
    return np.ascontiguousarray(rows, dtype=np.float32)


PROBE_ROWS = _probe_rows()
#: A failing run is reported here, as one line; onnxruntime must not log it on stderr too.
_RUN_OPTIONS = ort.RunOptions()
_RUN_OPTIONS.log_severity_level = 4


def _first_line(exc: BaseException) -> str:
    """onnxruntime's message, on one line and without its source locations:
    ``[ONNXRuntimeError] : 1 : FAIL : ... running Add node ... Status Message: /src/...:583
    void f(...) Attempting to broadcast ...`` becomes ``Add node: Attempting to broadcast ...``.
    """
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    node = re.search(r"while running (\w+) node", text)
    if "Status Message: " in text:
        text = text.split("Status Message: ", 1)[1]
        text = re.sub(r"^/\S+:\d+ [^(]*\([^)]*\) ", "", text)
        if node:
            text = f"{node.group(1)} node: {text}"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _shape_problem(labels: np.ndarray, proba: np.ndarray, n: int) -> str | None:
    """How the outputs fail to hold one label and one row of 10 probabilities per row."""
    if labels.shape == (n,) and proba.shape == (n, contract.N_CLASSES):
        return None
    if labels.ndim == 1 and proba.ndim == 2 and proba.shape[1] == contract.N_CLASSES:
        return f"{labels.shape[0]} labels and {proba.shape[0]} rows of probabilities"
    return f"labels of shape {labels.shape} and probabilities of shape {proba.shape}"


def _label_problem(labels: np.ndarray) -> str | None:
    lo, hi = int(labels.min()), int(labels.max())
    low, high = contract.CLASS_LABELS[0], contract.CLASS_LABELS[-1]
    if lo < low:
        return f"label {lo} outside {low}..{high}"
    if hi > high:
        return f"label {hi} outside {low}..{high}"
    return None


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
    """The manifest beside a model file, or None when there is none.

    Whatever stands there is read with care: a directory or a pipe is refused (a pipe would
    block), the size is bounded, and the sha256 must be 64 hexadecimal digits.
    """
    path = model_path.with_name(contract.MANIFEST_FILENAME)
    raw = _read_regular(path, MAX_MANIFEST_BYTES, "manifest")
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a valid model manifest: it is not UTF-8 text") from None
    try:
        manifest = json.loads(text)
        sha256 = manifest["model"]["sha256"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ModelError(f"{path}: not a valid model manifest") from None
    if not isinstance(manifest, dict) or not _is_sha256(sha256):
        raise ModelError(f"{path}: not a valid model manifest: model.sha256 must be 64 "
                         "hexadecimal digits")
    return manifest


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(
        c in "0123456789abcdefABCDEF" for c in value)


def _read_regular(path: Path, limit: int, what: str) -> bytes | None:
    """The bytes of a regular file of at most ``limit`` bytes (None when it does not exist).

    Read from the descriptor that was checked, so that what is checked is what is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{path}: is not a regular file")
        if st.st_size > limit:
            raise ModelError(f"{path}: not a valid model {what}: it is larger than "
                             f"{_size(limit)}")
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, min(1 << 24, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if size > limit:  # it grew since fstat
        raise ModelError(f"{path}: not a valid model {what}: it is larger than {_size(limit)}")
    return b"".join(chunks)


def _size(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


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
        options.log_severity_level = 4  # errors are reported here, as one line each
        try:
            # No fallback: onnxruntime would print a banner on stdout and try again.
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"],
                enable_fallback=0,
            )
            self._metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{display}: onnxruntime cannot load it ({_first_line(exc)})"
                             ) from None
        try:
            self._check_contract(display)
        except UnicodeDecodeError:  # onnxruntime decodes names and dimensions when asked
            raise ModelError(f"{display}: names an input, an output or a dimension with bytes "
                             "that are not UTF-8 text") from None
        self.display = display
        self._probe()
        self.sha256 = digest
        self.data = data
        self.manifest = manifest
        self.path = path
        self.classes_ = np.array(contract.CLASS_LABELS, dtype=np.int64)

    @classmethod
    def load(cls, path: str | Path | None = None, *, sha256: str | None = None,
             verify_hash: bool = True, threads: int = 1) -> Model:
        """Load ``path`` (default: the bundled model) after checking its hash and contract."""
        model_path = Path(path) if path is not None else bundled_model_path()
        data = _read_regular(model_path, MAX_MODEL_BYTES, "model")
        if data is None:
            raise ModelError(f"{model_path}: no such model file")
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

    def _probe(self) -> None:
        """Run the fixed probe rows and hold the answers to the whole contract: one label in
        0..9 and ten probabilities summing to 1 per row. Static checks cannot see a model
        that fails, or answers nonsense, only when it runs."""
        n = len(PROBE_ROWS)
        try:
            labels, proba = self._session_run(PROBE_ROWS)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{self.display}: fails when run on {n} test rows "
                             f"({_first_line(exc)})") from None
        problem = _shape_problem(labels, proba, n) or _label_problem(labels)
        if problem is None:
            p = np.asarray(proba, dtype=np.float64)
            sums = p.sum(axis=1)
            if not np.isfinite(p).all():
                problem = "probabilities that are not numbers"
            elif p.min() < -PROBA_SLACK:
                problem = f"a probability of {p.min():.3g}"
            elif np.abs(sums - 1).max() > PROBA_SLACK:
                worst = sums[np.argmax(np.abs(sums - 1))]
                problem = f"probabilities of a row sum to {worst:.4g}, not 1"
        if problem is not None:
            raise ModelError(f"{self.display}: breaks the model contract on {n} test rows: "
                             f"{problem}")

    def _session_run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, proba = self._session.run(
            [contract.OUTPUT_LABEL, contract.OUTPUT_PROBA], {contract.INPUT_NAME: X},
            _RUN_OPTIONS,
        )
        return np.asarray(labels), np.asarray(proba)

    def run(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) for float32 rows already in the model's layout.

        Every batch is checked at the cost of a few reductions: as many labels and rows of
        probabilities as rows, labels in 0..9, probabilities that are numbers.
        """
        n = len(X)
        if n == 0:
            return np.empty(0, np.int64), np.empty((0, contract.N_CLASSES), np.float32)
        try:
            labels, proba = self._session_run(X)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{self.display}: failed on a batch of {n} rows "
                             f"({_first_line(exc)})") from None
        problem = _shape_problem(labels, proba, n)
        if problem is not None:
            raise ModelError(f"{self.display}: returned {problem} for a batch of {n} rows")
        problem = _label_problem(labels)
        if problem is not None:
            raise ModelError(f"{self.display}: returned {problem.replace(' outside', ', outside')}")
        if not np.isfinite(proba.sum()):
            bad = np.flatnonzero(~np.isfinite(proba).all(axis=1))
            error = NonFiniteOutputError(
                f"{self.display}: returned probabilities that are not numbers for {len(bad)} "
                f"of {n} rows (row {bad[0]} of the batch)")
            error.rows, error.labels, error.proba = bad, labels, proba
            raise error
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
        return dict(self._metadata)
