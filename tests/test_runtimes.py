"""The committed model in every runtime the README claims, against Python onnxruntime.

Each runtime scores all 360 test rows of the committed ``artifacts/model.onnx``; labels must
be equal and probabilities within PROBA_ATOL. Node.js and onnxruntime-web are required, not
optional: CI installs them (``npm ci --prefix examples/node``), and a machine without them
fails here with the command that fixes it.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from digits_onnx.inference import contract
from digits_onnx.inference.errors import ModelError

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "artifacts" / contract.MODEL_FILENAME
NODE_DIR = REPO / "examples" / "node"
EMBEDDING_DOC = REPO / "docs" / "embedding.md"


@pytest.fixture(scope="module")
def test_rows() -> np.ndarray:
    images = np.load(REPO / "examples" / "digits_test.npy")
    return images.reshape(len(images), contract.N_FEATURES).astype(np.float32)


@pytest.fixture(scope="module")
def expected(test_rows) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(MODEL.read_bytes(), providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, {contract.INPUT_NAME: test_rows})
    return labels, proba


def assert_agrees(runtime: str, labels, proba, expected) -> None:
    want_labels, want_proba = expected
    labels, proba = np.asarray(labels), np.asarray(proba)
    assert labels.shape == want_labels.shape and proba.shape == want_proba.shape, runtime
    mismatches = np.flatnonzero(labels != want_labels)
    assert mismatches.size == 0, f"{runtime}: labels differ on rows {mismatches[:10].tolist()}"
    np.testing.assert_allclose(proba, want_proba, atol=contract.PROBA_ATOL, rtol=0,
                               err_msg=f"{runtime} vs onnxruntime {ort.__version__}")


def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js is not installed: install Node.js 18 or newer (e.g. "
                    "`apt-get install nodejs npm`), then run `npm ci --prefix examples/node`")
    if not (NODE_DIR / "node_modules" / "onnxruntime-web").is_dir():
        pytest.fail("onnxruntime-web is not installed: run `npm ci --prefix examples/node`")
    return exe


def run_node(args: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_onnxruntime_web_in_node_agrees(expected):
    proc = run_node([str(NODE_DIR / "score.mjs"), "--proba", "examples/digits_test.csv"])
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(io.StringIO(proc.stdout)))
    assert rows[0] == ["label", "confidence", *[f"p{k}" for k in range(10)]]
    table = np.array(rows[1:], dtype=np.float64)
    labels = table[:, 0].astype(np.int64)
    assert_agrees("onnxruntime-web (node)", labels, table[:, 2:], expected)
    np.testing.assert_allclose(table[:, 1], expected[1].max(axis=1), atol=contract.PROBA_ATOL)


def test_node_scorer_reports_bad_input(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(["1"] * 64) + "\n" + ",".join(["1"] * 63 + ["x"]) + "\n")
    proc = run_node([str(NODE_DIR / "score.mjs"), str(bad)])
    assert proc.returncode == 65
    assert proc.stderr == f'error: {bad}: line 2, column 64: "x" is not a number\n'
    proc = run_node([str(NODE_DIR / "score.mjs"), str(tmp_path / "missing.csv")])
    assert proc.returncode == 66 and "no such file" in proc.stderr


def test_tract_agrees(expected, test_rows):
    import tract  # in the dev extra

    model = tract.onnx().load(str(MODEL)).into_model()
    assert str(model.input_fact(0)) == "N,64,f32"
    labels, proba = (t.to_numpy() for t in model.into_runnable().run([test_rows]))
    assert_agrees(f"tract {tract.version()}", labels, proba, expected)


def test_reference_evaluator_agrees(expected, test_rows):
    from onnx.reference import ReferenceEvaluator

    labels, proba = ReferenceEvaluator(str(MODEL)).run(None, {contract.INPUT_NAME: test_rows})
    assert_agrees(f"onnx.reference {onnx.__version__}", labels, proba, expected)


def _snippet(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", EMBEDDING_DOC.read_text(), re.S)
    assert blocks, f"docs/embedding.md has no {language} snippet"
    return blocks[0]


def test_python_snippet_in_the_docs_runs(expected):
    proc = subprocess.run([sys.executable, "-c", _snippet("python")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.split()[0] == "default"
    assert second == " ".join(map(str, expected[0][:10]))


def test_javascript_snippet_in_the_docs_runs(tmp_path, expected):
    # The snippet resolves onnxruntime-web from beside itself, so it gets the example's
    # installed packages; paths inside it are relative to the repository root.
    script = tmp_path / "snippet.mjs"
    script.write_text(_snippet("js"))
    os.symlink(NODE_DIR / "node_modules", tmp_path / "node_modules")
    proc = run_node([str(script)])
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.split()[0] == "default"
    assert second == " ".join(map(str, expected[0][:10]))


def test_lock_file_pins_what_package_json_names():
    import json

    package = json.loads((NODE_DIR / "package.json").read_text())
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned: {version}"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_an_ml_domain_operator_is_refused_everywhere_we_guard(tmp_path):
    """Portability cannot regress silently: an ai.onnx.ml node fails export and load."""
    from digits_onnx.training import PortabilityError, check_portable

    model = onnx.load(MODEL)
    model.graph.node.append(onnx.helper.make_node(
        "Normalizer", ["probabilities"], ["normalized"], domain="ai.onnx.ml", norm="L1"))
    model.opset_import.append(onnx.helper.make_opsetid("ai.onnx.ml", 3))
    with pytest.raises(PortabilityError, match=r"ai\.onnx\.ml\.Normalizer"):
        check_portable(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    from digits_onnx.inference import Model

    with pytest.raises(ModelError, match=r"ai\.onnx\.ml"):
        Model.load(path, verify_hash=False)
