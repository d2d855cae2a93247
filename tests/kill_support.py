"""Running the scorer with a fault armed (``tests/fault_runner.py``) and checking what a
kill left: only complete outputs, and a rerun that finishes the job and cleans up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).with_name("fault_runner.py")


def run_scorer(args: list[str], kill_at: str = "none",
               **kw: object) -> subprocess.CompletedProcess[str]:
    """``digits-score ARGS`` in a fresh process, killed at ``kill_at`` (see fault_runner)."""
    return subprocess.run([sys.executable, str(RUNNER), kill_at, "--", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False,
                          **kw)  # type: ignore[call-overload]


def visible(folder: Path) -> dict[str, bytes]:
    """The files a reader sees in ``folder``, by name."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if not p.name.startswith(".")}


def hidden(folder: Path) -> list[str]:
    """Hidden files other than the bookkeeping folder: what a killed run left behind."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and p.name != ".digits-score")


def assert_only_complete_then_rerun(out: Path, args: list[str], reference: dict[str, bytes],
                                    point: str) -> None:
    """After a kill at ``point``: every output under its final name is complete, and a rerun
    finishes the job byte for byte and removes the killed run's leftovers."""
    for name, data in visible(out).items():
        assert data == reference[name], f"{name} is partial after a kill at {point}"
    rerun = run_scorer(args)
    assert rerun.returncode == 0, rerun.stderr
    assert visible(out) == reference
    assert hidden(out) == [], "leftovers of the killed run were not cleaned up"
