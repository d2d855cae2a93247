"""`digits-train verify` on broken artifact sets: a failed line or one error line, no traceback.

The seed recipe retrains in seconds, so each case copies its artifact set and breaks one part.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from digits_onnx.inference import contract
from digits_onnx.training import verify
from digits_onnx.training.cli import main
from digits_onnx.training.manifest import reference_bytes

SET = (contract.MODEL_FILENAME, contract.MANIFEST_FILENAME, contract.REFERENCE_FILENAME)


@pytest.fixture
def seed_set(trained_seed, tmp_path: Path) -> Path:
    """A private copy of the seed recipe's model, manifest and golden set."""
    folder = trained_seed.paths[0].parent
    for name in SET:
        shutil.copy(folder / name, tmp_path / name)
    return tmp_path


def _lines(report) -> dict[str, tuple[str, bool]]:
    return {check.name: (check.value, check.ok) for check in report.checks}


def test_an_intact_set_verifies(seed_set):
    report = verify(seed_set)
    assert report.ok, report.table()
    lines = _lines(report)
    assert lines["committed model follows the contract"] == ("opset 17, default domain", True)
    assert lines["label mismatches golden vs ONNX"] == ("0 (0 near-ties excused)", True)


def test_a_damaged_model_is_a_failed_line(seed_set, capsys):
    model = seed_set / contract.MODEL_FILENAME
    model.write_bytes(model.read_bytes()[:200])
    assert main(["verify", "--artifacts", str(seed_set)]) == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    line = next(x for x in captured.out.splitlines() if x.startswith("committed model loads"))
    assert "model.onnx: not a valid ONNX model" in line and line.endswith("FAIL")
    assert "max |dp|" not in captured.out
    assert captured.out.rstrip().splitlines()[-1].startswith(f"NOT verified: {seed_set}")


def test_a_model_outside_the_default_domain_is_refused(seed_set):
    path = seed_set / contract.MODEL_FILENAME
    model = onnx.load(path)
    model.opset_import.append(onnx.helper.make_opsetid("ai.onnx.ml", 3))
    model.graph.node[0].domain = "ai.onnx.ml"
    onnx.save(model, path)
    value, ok = _lines(verify(seed_set))["committed model loads"]
    assert not ok and "outside the default ONNX domain" in value


def test_a_model_with_another_opset_breaks_the_contract(seed_set):
    """onnxruntime runs opset 13 as well; the scorer accepts it, the exporter's guard does not."""
    path = seed_set / contract.MODEL_FILENAME
    model = onnx.load(path)
    model.opset_import[0].version = 13
    onnx.save(model, path)
    report = verify(seed_set)
    value, ok = _lines(report)["committed model follows the contract"]
    assert not ok and "opset 13, the contract pins 17" in value
    assert not report.ok


def test_a_golden_set_of_the_wrong_shape_exits_65(seed_set, capsys):
    reference = seed_set / contract.REFERENCE_FILENAME
    with np.load(reference, allow_pickle=False) as npz:
        golden = {key: npz[key] for key in npz.files}
    reference.write_bytes(reference_bytes(
        golden["X"][:, :63], golden["y"], golden["labels"], golden["probabilities"]
    ))
    assert main(["verify", "--artifacts", str(seed_set)]) == 65
    err = capsys.readouterr().err
    assert err == (
        f"digits-train: error: {reference} holds arrays of shapes X (360, 63), y (360,), "
        "labels (360,), probabilities (360, 10); expected X (N, 64), y and labels (N,), "
        "probabilities (N, 10); regenerate it with digits-train\n"
    )


def test_verify_json_is_the_check_json_shape(seed_set, capsys):
    import json

    from digits_onnx.inference.check import CheckResult

    assert main(["verify", "--artifacts", str(seed_set), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    shape = CheckResult(rows=0, max_abs_diff=0.0, label_mismatches=0, near_ties=0,
                        accuracy=1.0, reference_accuracy=1.0).to_dict()
    assert {"schema_version", "command", "ok", "checks", "versions"} <= set(report)
    assert report["schema_version"] == shape["schema_version"]
    assert report["command"] == "digits-train verify" and report["ok"] is True
    assert all(set(check) == set(shape["checks"][0]) for check in report["checks"])
    checks = {check["name"]: check for check in report["checks"]}
    dp = checks["max |dp| golden vs ONNX"]
    assert isinstance(dp["value"], float) and dp["limit"] == contract.PROBA_ATOL and dp["ok"]
    assert checks["label mismatches golden vs ONNX"]["value"] == 0
    assert report["artifacts"] == str(seed_set) and report["recipe"] == "seed"
    assert {"digits-onnx", "onnxruntime", "scikit-learn"} <= set(report["versions"])
    assert report["recorded_versions"] == json.loads(
        (seed_set / contract.MANIFEST_FILENAME).read_text())["versions"]


def test_verify_json_reports_drift_with_exit_1(seed_set, capsys):
    import json

    model = seed_set / contract.MODEL_FILENAME
    model.write_bytes(model.read_bytes()[:200])
    assert main(["verify", "--artifacts", str(seed_set), "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and captured.err == ""
    failed = [check["name"] for check in report["checks"] if not check["ok"]]
    assert failed == ["model sha256 matches manifest", "committed model loads"]


def test_verify_defaults_to_the_working_directory_artifacts(tmp_path, monkeypatch, capsys):
    (tmp_path / "artifacts").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["verify"]) == 66
    assert "artifacts lacks model.json" in capsys.readouterr().err


def test_verify_finds_the_bundled_artifacts_elsewhere(tmp_path, monkeypatch, capsys):
    """Outside a checkout (no ./artifacts), verify checks the artifacts installed with the
    package, and says so."""
    from digits_onnx.inference import bundled_model_path

    monkeypatch.chdir(tmp_path)
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    bundled = bundled_model_path().parent
    assert out.rstrip().splitlines()[-1] == (
        f"verified: {bundled} (the bundled artifacts; no ./artifacts in the working directory)"
    )


def test_a_replaced_golden_set_fails_its_hash_line(seed_set):
    """The manifest records the golden set's sha256: a rewritten one is caught even when its
    numbers still pass."""
    reference = seed_set / contract.REFERENCE_FILENAME
    with np.load(reference, allow_pickle=False) as npz:
        golden = {key: npz[key] for key in npz.files}
    golden["probabilities"] = golden["probabilities"].astype(np.float64) + 1e-6
    reference.write_bytes(reference_bytes(
        golden["X"], golden["y"], golden["labels"], golden["probabilities"]
    ))
    report = verify(seed_set)
    _, ok = _lines(report)["golden set sha256 matches manifest"]
    assert not ok and not report.ok
    assert _lines(report)["max |dp| golden vs ONNX"][1]
