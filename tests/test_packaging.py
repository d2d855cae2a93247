"""`pip install .` (not only editable installs) ships every module and the bundled model."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _modules(package: str) -> set[str]:
    """The package's modules as the wheel names them: under the digits_onnx import name."""
    root = REPO / package
    return {f"digits_onnx/{p.relative_to(REPO).as_posix()}" for p in root.rglob("*.py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Build from a clean copy: a stale build/ folder in the checkout would hide omissions.
    source = tmp_path_factory.mktemp("source") / "digits-onnx"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", "node_modules", "data", ".*cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(out), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("digits_onnx-*.whl")
    return zipfile.ZipFile(path)


@pytest.mark.slow
def test_wheel_holds_every_module(wheel):
    names = set(wheel.namelist())
    expected = _modules("inference") | _modules("training")
    assert expected - names == set()
    assert "digits_onnx/__init__.py" in names
    assert not any(n.startswith(("inference/", "training/")) for n in names), \
        "nothing is installed under the generic top-level names"


@pytest.mark.slow
def test_wheel_ships_the_bundled_model_once(wheel):
    names = set(wheel.namelist())
    for name in ("model.onnx", "model.json", "reference.npz"):
        assert f"digits_onnx/inference/bundled/{name}" in names
        committed = (REPO / "artifacts" / name).read_bytes()
        assert wheel.read(f"digits_onnx/inference/bundled/{name}") == committed
    assert not any(n.startswith("artifacts/") for n in names)
    assert not any("/report/" in n for n in names), "figures stay out of the wheel"


@pytest.mark.slow
def test_wheel_declares_both_commands(wheel):
    (entry,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry).decode()
    assert "digits-score = digits_onnx.inference.cli:entrypoint" in text
    assert "digits-train = digits_onnx.training.cli:entrypoint" in text
