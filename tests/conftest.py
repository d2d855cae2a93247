"""Shared fixtures. Inference tests build their own small model; training fixtures train once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import Model

from tests.model_factory import build_model, random_weights, write_model


@pytest.fixture(scope="session")
def weights() -> tuple[np.ndarray, np.ndarray]:
    return random_weights()


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory, weights) -> Path:
    """A contract-shaped test model with its manifest, independent of the trained artifacts."""
    return write_model(tmp_path_factory.mktemp("model"), build_model(*weights))


@pytest.fixture(scope="session")
def model(model_path: Path) -> Model:
    return Model.load(model_path)


@pytest.fixture
def here(tmp_path, monkeypatch, digits_rows) -> Path:
    """A fresh working directory holding one input, in.csv (20 rows with a header)."""
    from tests.test_cli import csv_text

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text(csv_text(digits_rows[:20]))
    return tmp_path


@pytest.fixture
def run(model_path, capsys):
    """Run the CLI in-process with the test model; return (exit code, stdout, stderr lines)."""
    from digits_onnx.inference.cli import main

    def runner(*args: object) -> tuple[int, str, list[str]]:
        code = main([*map(str, args), "--model", str(model_path)])
        out, err = capsys.readouterr()
        return code, out, err.splitlines()

    return runner


@pytest.fixture(scope="session")
def digits_rows() -> np.ndarray:
    """200 rows of plausible pixel values 0..16 (integers), reproducible."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 17, size=(200, 64)).astype(np.float64)


# --- training fixtures: each recipe is trained once per session, into its own tmp dir ---


@pytest.fixture(scope="session")
def trained_default(tmp_path_factory: pytest.TempPathFactory):
    """The default recipe trained into a fresh directory, with report figures."""
    from digits_onnx.training import train

    return train(tmp_path_factory.mktemp("trained-default") / "out", recipe="default")


@pytest.fixture(scope="session")
def trained_seed(tmp_path_factory: pytest.TempPathFactory):
    """The tutorial's seed recipe trained into a fresh directory, with report figures."""
    from digits_onnx.training import train

    return train(tmp_path_factory.mktemp("trained-seed") / "out", recipe="seed")


@pytest.fixture(scope="session", params=["default", "seed"])
def trained_recipe(request: pytest.FixtureRequest):
    """Each recipe in turn, for tests that must hold for both."""
    return request.getfixturevalue(f"trained_{request.param}")


@pytest.fixture
def spools(monkeypatch):
    """Every temporary file a reader copies a stream to, and the bytes it wrote there (see
    :class:`tests.readers_support.Spools`)."""
    import tempfile

    from tests.readers_support import Spools

    recorder = Spools()
    monkeypatch.setattr(tempfile, "TemporaryFile", recorder.make)
    return recorder
