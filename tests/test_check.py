"""The one parity rule (``inference.check.compare``) that `check` and `verify` both apply."""

from __future__ import annotations

import numpy as np
import pytest
from digits_onnx.inference import contract
from digits_onnx.inference.check import compare, near_ties


def _proba(*top: tuple[float, float]) -> np.ndarray:
    """Rows whose two largest probabilities are ``top`` (in classes 0 and 1)."""
    rows = np.zeros((len(top), contract.N_CLASSES))
    rows[:, :2] = top
    return rows


def test_identical_outputs_agree():
    proba = _proba((0.9, 0.1), (0.2, 0.8))
    drift = compare(np.array([0, 1]), proba, np.array([0, 1]), proba.astype(np.float32))
    assert drift.ok and drift.rows == 2 and drift.label_mismatches == 0
    assert drift.max_abs_diff < 1e-7


def test_probabilities_beyond_the_tolerance_fail():
    proba = _proba((0.9, 0.1))
    moved = proba + np.eye(1, contract.N_CLASSES) * 2 * contract.PROBA_ATOL
    drift = compare(np.array([0]), proba, np.array([0]), moved)
    assert drift.max_abs_diff == pytest.approx(2 * contract.PROBA_ATOL)
    assert not drift.ok


def test_the_tie_margin_decides_whether_a_flip_is_excused():
    just_inside = 0.5 - contract.TIE_MARGIN / 2
    just_outside = 0.5 - contract.TIE_MARGIN * 2
    proba = _proba((0.5, just_inside), (0.5, just_outside))
    assert near_ties(proba).tolist() == [True, False]
    drift = compare(np.array([0, 0]), proba, np.array([1, 1]), proba)
    assert (drift.label_mismatches, drift.near_tie_rows, drift.near_tie_flips) == (1, 1, 1)


def test_outputs_of_other_shapes_are_refused():
    proba = _proba((0.9, 0.1), (0.2, 0.8))
    with pytest.raises(ValueError, match=r"different shapes: reference labels \(2,\)"):
        compare(np.array([0, 1]), proba, np.array([0]), proba[:1])


def test_no_rows_compare_cleanly():
    empty = np.zeros((0, contract.N_CLASSES))
    drift = compare(np.zeros(0, np.int64), empty, np.zeros(0, np.int64), empty)
    assert drift.ok and drift.rows == 0 and drift.max_abs_diff == 0.0


# --- the result as JSON: `digits-score check --json` prints CheckResult.to_dict() ---

REPORT_KEYS = {"schema_version", "command", "ok", "checks", "versions"}
CHECK_KEYS = {"name", "ok", "value", "limit", "text"}


def test_check_result_as_json():
    import json

    import onnxruntime
    from digits_onnx.inference import Model, bundled_model_path, check_model

    import digits_onnx

    model = Model.load()
    result = check_model(model)
    report = json.loads(json.dumps(result.to_dict()))
    assert set(report) >= REPORT_KEYS
    assert report["schema_version"] == 1 and report["command"] == "digits-score check"
    assert report["ok"] is True
    assert all(set(check) == CHECK_KEYS for check in report["checks"])
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["max |dp|"]["value"] == result.max_abs_diff
    assert checks["max |dp|"]["limit"] == contract.PROBA_ATOL
    assert checks["label mismatches"]["value"] == 0 and checks["label mismatches"]["limit"] == 0
    assert report["versions"]["digits-onnx"] == digits_onnx.__version__
    assert report["versions"]["onnxruntime"] == onnxruntime.__version__
    assert report["rows"] == 360 and report["accuracy"] == result.accuracy
    assert report["model"] == str(bundled_model_path())
    assert report["model_sha256"] == model.sha256
    assert report["reference"] == str(bundled_model_path().parent / contract.REFERENCE_FILENAME)


def test_drift_shows_in_the_json():
    from digits_onnx.inference.check import CheckResult

    result = CheckResult(rows=3, max_abs_diff=0.5, label_mismatches=1, near_ties=0,
                         accuracy=0.5, reference_accuracy=1.0)
    report = result.to_dict()
    assert report["ok"] is False
    assert [(c["name"], c["ok"]) for c in report["checks"]] == [
        ("max |dp|", False), ("label mismatches", False)]
    assert report["model"] is None


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.write_text("id,f0\n1,2\n"), "not a valid reference set (an .npz archive of X, "
     "y, labels and probabilities is expected)"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy").rename(p),
     "not a valid reference set (an .npz archive of X, y, labels and probabilities is "
     "expected)"),
    (lambda p: p.write_bytes(b""), "not a valid reference set (an .npz archive of X, y, labels "
     "and probabilities is expected)"),
    (lambda p: p.mkdir(), "not a valid reference set (not a regular file)"),
    (lambda p: __import__("os").mkfifo(p), "not a valid reference set (not a regular file)"),
    (lambda p: None, "no reference set"),
])
def test_a_reference_that_is_not_an_npz_archive_is_named_for_what_it_is(
        tmp_path, model_path, capsys, make, reason):
    from digits_onnx.inference.cli import main

    ref = tmp_path / "ref.npz"
    make(ref)
    assert main(["check", "--model", str(model_path), "--reference", str(ref)]) == 65
    assert capsys.readouterr().err == f"digits-score: error: {ref}: {reason}\n"
