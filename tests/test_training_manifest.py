"""The golden set's bytes: the same on every CPU, whatever the last bits of BLAS say."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import contract
from digits_onnx.training.manifest import (
    GOLDEN_PROBA_STEP,
    golden_probabilities,
    reference_bytes,
)

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "artifacts" / contract.REFERENCE_FILENAME


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(COMMITTED, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_the_step_is_well_inside_the_contract():
    assert GOLDEN_PROBA_STEP / 2 <= contract.PROBA_ATOL / 20
    assert GOLDEN_PROBA_STEP == 2.0**-20  # exact in float32, so the rounding is exact too


def test_probabilities_are_rounded_float32_on_the_grid(golden):
    proba = golden["probabilities"]
    assert proba.dtype == np.dtype("<f4")
    steps = proba.astype(np.float64) / GOLDEN_PROBA_STEP
    assert np.array_equal(steps, np.round(steps))


def test_rounding_moves_no_probability_by_more_than_half_a_step():
    rng = np.random.default_rng(1)
    raw = rng.dirichlet(np.ones(contract.N_CLASSES) * 0.1, size=500)
    rounded = golden_probabilities(raw)
    assert rounded.dtype == np.dtype("<f4")
    assert np.abs(rounded - raw).max() <= GOLDEN_PROBA_STEP / 2


def test_blas_noise_does_not_change_the_bytes(trained_default):
    """Another CPU's BLAS kernels move scikit-learn's probabilities by ~1e-13 (measured
    8e-14 across OpenBLAS's Haswell, SkylakeX, Sandybridge and Prescott kernels): far below
    the grid, so the golden set's bytes stay the same."""
    split = trained_default.split
    proba = trained_default.estimator.predict_proba(split.X_test)
    args = split.X_test, split.y_test, trained_default.test_predictions
    rng = np.random.default_rng(2)
    for _ in range(20):
        noise = rng.uniform(-1e-12, 1e-12, size=proba.shape)
        assert reference_bytes(*args, proba + noise) == COMMITTED.read_bytes()


def test_a_negative_zero_is_stored_as_zero():
    rounded = golden_probabilities(np.array([[-1e-12, 1.0]]))
    assert rounded.tobytes() == np.array([[0.0, 1.0]], dtype="<f4").tobytes()


def test_every_byte_of_the_archive_is_fixed(golden):
    data = reference_bytes(golden["X"], golden["y"], golden["labels"],
                           golden["probabilities"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        assert [m.filename for m in members] == ["X.npy", "y.npy", "labels.npy",
                                                 "probabilities.npy"]
        for member in members:
            assert member.date_time == (1980, 1, 1, 0, 0, 0)
            assert member.create_system == 3  # Unix, also when written on Windows
            assert member.compress_type == zipfile.ZIP_STORED
            header = archive.read(member)[:128].decode("latin-1")
            assert "'<" in header, header  # little-endian on every machine
