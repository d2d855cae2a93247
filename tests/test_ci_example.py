"""examples/ci/github-actions.yml is a complete job, and its digits-* commands pass here.

The job installs from the checkout and fails on drift because both commands exit 1 on it;
this test runs every digits-score / digits-train line of its ``run:`` steps for real.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"
#: The console scripts, run as modules of this interpreter (the job runs the installed ones).
COMMANDS = {
    "digits-score": [sys.executable, "-m", "digits_onnx.inference"],
    "digits-train": [sys.executable, "-m", "digits_onnx.training"],
}


def run_blocks_by_hand(text: str) -> list[str]:
    """The ``run:`` values of a workflow, without a YAML library: ``run: cmd`` on one line,
    or ``run: |`` followed by lines indented deeper than the key."""
    blocks = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?run:\s*(.*)$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value not in ("|", ">"):
            quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "\"'"
            blocks.append(value[1:-1] if quoted else value)
            continue
        body = []
        for following in lines[i + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        blocks.append("\n".join(body).strip() + "\n")
    return blocks


def steps() -> list[dict]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu")
    return job["steps"]


def test_the_job_is_complete():
    """Checkout, Python, an install from the checkout, the parity check, verify."""
    text = WORKFLOW.read_text()
    try:
        import yaml  # noqa: F401  (only if already installed)
    except ImportError:
        blocks = run_blocks_by_hand(text)
        assert "actions/checkout@" in text and "actions/setup-python@" in text
    else:
        job_steps = steps()
        uses = [step["uses"].split("@")[0] for step in job_steps if "uses" in step]
        assert uses == ["actions/checkout", "actions/setup-python"]
        blocks = [step["run"] for step in job_steps if "run" in step]
        assert blocks == run_blocks_by_hand(text)  # the fallback reads what YAML reads
        assert not any("continue-on-error" in step for step in job_steps)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert commands[0] == 'python -m pip install ".[train]"'
    assert "digits-score check" in commands
    assert "digits-train verify --artifacts artifacts" in commands
    assert "digits-train verify --artifacts artifacts/probabilities" in commands
    # Drift must fail the job: no exit status is swallowed.
    assert not any("||" in line or "; true" in line for line in commands)


def digits_commands() -> list[str]:
    blocks = run_blocks_by_hand(WORKFLOW.read_text())
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip().split(" ")[0] in COMMANDS]


@pytest.mark.slow
@pytest.mark.parametrize("command", digits_commands())
def test_each_command_passes_on_this_checkout(command):
    program, *args = shlex.split(command)
    proc = subprocess.run([*COMMANDS[program], *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"


def test_the_parser_by_hand_reads_both_forms():
    text = (
        "steps:\n"
        "  - name: one\n"
        "    run: digits-score check\n"
        "  - run: |\n"
        "      digits-train verify\n"
        "      digits-train verify --json\n"
        "  - uses: x\n"
    )
    assert run_blocks_by_hand(text) == [
        "digits-score check", "digits-train verify\ndigits-train verify --json\n"]
