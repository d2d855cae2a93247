"""The packages type-check with mypy, as they are installed: under the ``digits_onnx`` name.

The repository keeps ``inference/`` and ``training/`` at its top and setuptools maps them
under ``digits_onnx``; mypy cannot follow that mapping in an editable install, so the check
runs over a tree of links with the installed layout.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_mypy_is_clean_over_both_packages(tmp_path):
    assert importlib.util.find_spec("mypy") is not None, "mypy is a dev dependency"
    tree = tmp_path / "digits_onnx"
    tree.mkdir()
    for name in (p.name for p in (REPO / "digits_onnx").iterdir()
                 if p.suffix == ".py" or p.name == "py.typed"):
        (tree / name).symlink_to(REPO / "digits_onnx" / name)
    for package in ("inference", "training"):
        (tree / package).symlink_to(REPO / package, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "digits_onnx"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "MYPYPATH": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
