"""The split, its fingerprint and the example files written from the test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import contract
from digits_onnx.training import api
from digits_onnx.training.cli import main
from digits_onnx.training.data import fingerprint, load_split

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def split():
    return load_split()


def test_split_is_the_tutorials(split):
    assert split.X_train.shape == (1437, contract.N_FEATURES)
    assert split.X_test.shape == (360, contract.N_FEATURES)
    assert split.X_train.dtype == np.float64
    assert split.y_test.dtype == np.int64
    assert split.split_params() == {"test_size": 0.2, "random_state": 42}
    # The tutorial's published truth starts 6 9 3 7 2 1 5 2 5 2 1 9.
    assert split.y_test[:12].tolist() == [6, 9, 3, 7, 2, 1, 5, 2, 5, 2, 1, 9]


def test_pixels_are_integers_in_the_contract_range(split):
    assert split.X_all.min() == contract.FEATURE_MIN
    assert split.X_all.max() == contract.FEATURE_MAX
    assert np.array_equal(split.X_all, np.round(split.X_all))


def test_fingerprint_is_stable_and_sensitive(split):
    again = load_split()
    assert split.fingerprint == again.fingerprint
    assert split.fingerprint.startswith("sha256:") and len(split.fingerprint) == 7 + 64
    X = split.X_train.copy()
    X[0, 0] += 1
    assert fingerprint(X, split.y_train) != split.fingerprint
    y = split.y_train.copy()
    y[0] = (y[0] + 1) % 10
    assert fingerprint(split.X_train, y) != split.fingerprint


def test_samples_command_writes_csv_and_npy(tmp_path, capsys, split):
    out = tmp_path / "examples"
    assert main(["samples", "--out", str(out)]) == 0
    assert "digits_test.csv" in capsys.readouterr().out

    raw = (out / api.SAMPLES_CSV).read_bytes()
    assert b"\r" not in raw and raw.endswith(b"\n")
    lines = raw.decode("ascii").splitlines()
    header = lines[0].split(",")
    assert header == ["id", *[f"pixel_{r}_{c}" for r in range(8) for c in range(8)], "label"]
    assert len(lines) == 1 + 360
    first, last = lines[1].split(","), lines[-1].split(",")
    assert first[0] == "t0000" and last[0] == "t0359"
    assert all(cell.isdigit() for cell in first[1:])  # integers, no "0.0"
    table = np.array([line.split(",")[1:] for line in lines[1:]], dtype=np.int64)
    assert np.array_equal(table[:, :-1], split.X_test)
    assert np.array_equal(table[:, -1], split.y_test)

    images = np.load(out / api.SAMPLES_NPY)
    assert images.shape == (360, 8, 8) and images.dtype == np.uint8
    assert np.array_equal(images.reshape(360, 64), split.X_test)


def test_committed_examples_are_current(tmp_path):
    """examples/ holds exactly what `digits-train samples` writes today."""
    assert main(["samples", "--out", str(tmp_path)]) == 0
    for name in (api.SAMPLES_CSV, api.SAMPLES_NPY):
        committed = REPO / "examples" / name
        assert committed.is_file(), f"run: digits-train samples --out examples ({name} missing)"
        assert committed.read_bytes() == (tmp_path / name).read_bytes(), name
