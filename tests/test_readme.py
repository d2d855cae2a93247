"""The README's quick start is what CI runs and what a new user can paste."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def quick_start() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_quick_start_is_two_commands():
    commands = quick_start()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == quick_start()[1]


def test_readme_main_command_scores_the_sample(tmp_path):
    install, score = quick_start()[0].split(" && ")
    assert install == "pip install ."
    argv = score.split()
    assert argv[0] == "digits-score"
    argv[argv.index("examples/digits_test.csv")] = str(REPO / "examples" / "digits_test.csv")
    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", *argv[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "360 rows, 0 rejected" in proc.stderr and "accuracy 0.9722 (350/360)" in proc.stderr
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert lines[0] == "id,label,confidence" and len(lines) == 361


def test_the_quick_start_leaves_the_checkout_clean(tmp_path):
    """What the main command writes in a checkout (its output and the bookkeeping folder)
    is ignored by git, so a new user's `git status` stays clean."""
    if not (REPO / ".git").exists():
        pytest.skip("an unpacked source tree, not a git checkout: nothing to keep clean")
    written = [tmp_path / "predictions.csv", tmp_path / ".digits-score" / "lock"]
    for path in written:
        relative = path.relative_to(tmp_path)
        proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(relative)],
                              cwd=REPO, check=False)
        assert proc.returncode == 0, f"{relative} is not ignored by .gitignore"
