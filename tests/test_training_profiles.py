"""The probabilities profile: a graph without ArgMax for runtimes that lack it (C code
generators, some accelerators). Same recipe, manifest, golden set and verify; the caller takes
the argmax."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from digits_onnx.inference import Model, ModelError, contract
from digits_onnx.inference.check import compare
from digits_onnx.training import PROFILES, ProfileError, build_model, check_portable, verify
from digits_onnx.training.cli import main
from digits_onnx.training.export import check_contract, profile_contract

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "artifacts" / "probabilities"
SET = (contract.MODEL_FILENAME, contract.MANIFEST_FILENAME, contract.REFERENCE_FILENAME)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory like a checkout's, trained into by the command line's defaults."""
    root = tmp_path_factory.mktemp("profile")
    (root / "artifacts").mkdir()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["--profile", "probabilities", "--no-report"]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Path:
    return workdir / "artifacts" / "probabilities"


def _model(folder: Path) -> onnx.ModelProto:
    return onnx.load(folder / contract.MODEL_FILENAME)


def _run(folder: Path, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        (folder / contract.MODEL_FILENAME).read_bytes(), providers=["CPUExecutionProvider"]
    )
    (proba,) = session.run(None, {contract.INPUT_NAME: X.astype(np.float32)})
    return proba


def test_profiles():
    assert PROFILES == ("full", "probabilities")


def test_the_default_out_is_a_subfolder_of_artifacts(workdir, trained):
    """The profile never lands on the bundled model's files by default."""
    assert sorted(p.name for p in trained.iterdir()) == sorted(SET)
    assert list((workdir / "artifacts").iterdir()) == [trained]


def test_graph_is_gemm_and_softmax_only(trained):
    model = _model(trained)
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Softmax"]
    assert {n.domain for n in model.graph.node} <= contract.ALLOWED_DOMAINS
    assert [(o.domain, o.version) for o in model.opset_import] == [("", contract.OPSET)]
    assert [o.name for o in model.graph.output] == [contract.OUTPUT_PROBA]
    check_portable(model)
    check_contract(model, profile="probabilities")
    onnx.checker.check_model(model, full_check=True)
    assert "argmax" in model.doc_string.lower()


def test_the_seed_recipe_adds_only_its_log_sigmoid(trained_seed):
    model = build_model(trained_seed.estimator, profile="probabilities")
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Neg", "Softplus", "Neg", "Softmax"]
    assert [o.name for o in model.graph.output] == [contract.OUTPUT_PROBA]
    check_portable(model)


def test_profile_contract_has_the_probabilities_output_only():
    full = contract.contract_dict()
    assert profile_contract("full") == full
    assert profile_contract("probabilities") == {
        "inputs": full["inputs"],
        "outputs": [o for o in full["outputs"] if o["name"] == contract.OUTPUT_PROBA],
    }
    with pytest.raises(ProfileError, match="unknown profile 'labels'; choose one of full, "
                                           "probabilities"):
        profile_contract("labels")


def test_manifest_records_the_profile(trained, trained_default):
    manifest = json.loads((trained / contract.MANIFEST_FILENAME).read_text())
    full = trained_default.manifest
    assert manifest["profile"] == "probabilities" and full["profile"] == "full"
    assert manifest["contract"] == profile_contract("probabilities")
    same = ("recipe", "hyperparameters", "metrics", "training_data", "versions", "opset",
            "classes", "feature_range", "schema_version", "reference")
    assert {key: manifest[key] for key in same} == {key: full[key] for key in same}
    assert manifest["model"]["sha256"] != full["model"]["sha256"]
    props = {p.key: p.value for p in _model(trained).metadata_props}
    assert json.loads(props["contract"]) == profile_contract("probabilities")


def test_golden_set_is_the_full_profiles(trained, trained_default):
    full = trained_default.paths[0].parent
    assert (trained / contract.REFERENCE_FILENAME).read_bytes() == (
        full / contract.REFERENCE_FILENAME).read_bytes()


def test_probabilities_and_their_argmax_match_the_full_model(trained, trained_default):
    X = trained_default.split.X_all.astype(np.float32)
    proba = _run(trained, X)
    session = ort.InferenceSession(trained_default.model_bytes,
                                   providers=["CPUExecutionProvider"])
    labels, full_proba = session.run(None, {contract.INPUT_NAME: X})
    np.testing.assert_array_equal(proba, full_proba)
    drift = compare(labels, full_proba, proba.argmax(axis=1), proba)
    assert drift.ok and drift.label_mismatches == 0


def test_retraining_reproduces_the_committed_set(trained):
    assert sorted(p.name for p in COMMITTED.iterdir()) == sorted(SET)
    for name in SET:
        assert (trained / name).read_bytes() == (COMMITTED / name).read_bytes(), name


def test_the_committed_set_verifies(capsys):
    assert main(["verify", "--artifacts", str(COMMITTED)]) == 0
    out = capsys.readouterr().out
    assert "probabilities only" in out
    assert out.rstrip().splitlines()[-1] == f"verified: {COMMITTED}"


def test_verify_catches_a_changed_weight(trained, tmp_path):
    for name in SET:
        shutil.copy(trained / name, tmp_path / name)
    model = _model(tmp_path)
    coef = next(t for t in model.graph.initializer if t.name == "coef")
    weights = onnx.numpy_helper.to_array(coef).copy()
    weights[3, 36] += 0.5
    coef.CopyFrom(onnx.numpy_helper.from_array(weights, "coef"))
    onnx.save(model, tmp_path / contract.MODEL_FILENAME)
    report = verify(tmp_path)
    failed = {check.name for check in report.checks if not check.ok}
    assert {"model sha256 matches manifest", "max |dp| golden vs ONNX"} <= failed


def test_verify_refuses_a_full_model_under_a_probabilities_manifest(trained, tmp_path):
    for name in SET:
        shutil.copy(trained / name, tmp_path / name)
    shutil.copy(REPO / "artifacts" / contract.MODEL_FILENAME, tmp_path / contract.MODEL_FILENAME)
    report = verify(tmp_path)
    check = next(c for c in report.checks if c.name == "committed model follows the contract")
    assert not check.ok and "differs from the contract" in check.value


def test_the_scorer_refuses_it_clearly():
    with pytest.raises(ModelError, match="output 'label' is missing"):
        Model.load(COMMITTED / contract.MODEL_FILENAME)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--profile", "labels"], "argument --profile: invalid choice: 'labels'"),
        (["--profile", "probabilities", "verify"], "apply to training, not verify"),
    ],
)
def test_profile_usage_errors(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
