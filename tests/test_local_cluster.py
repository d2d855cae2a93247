"""``local:N``: how it is read and refused; needs no Dask."""

from __future__ import annotations

from pathlib import Path

import pytest
from digits_onnx.inference.cli import main
from digits_onnx.inference.options import local_workers

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("scheduler, workers", [
    ("local:1", 1), ("local:12", 12), ("tcp://127.0.0.1:8786", None), (None, None),
])
def test_local_workers_are_read_from_local_n(scheduler, workers):
    assert local_workers(scheduler) == workers


@pytest.mark.parametrize("scheduler", ["local:0", "local:", "local:two", "local:-1"])
def test_a_bad_local_n_is_a_usage_error(scheduler, tmp_path, capsys):
    code = main([str(REPO / "examples" / "digits_test.npy"), "-o", str(tmp_path / "o.csv"),
                 "--scheduler", scheduler])
    assert code == 2
    assert capsys.readouterr().err == (
        f"digits-score: error: --scheduler {scheduler}: expected local:N with N >= 1\n")
    assert not (tmp_path / "o.csv").exists()
