"""Every command-line option is documented in the README (and the exit codes agree)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from digits_onnx.inference import errors
from digits_onnx.inference.cli import build_parser as score_parser
from digits_onnx.training.cli import build_parser as train_parser

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("parser", [score_parser(), train_parser()], ids=["score", "train"])
def test_every_option_is_in_the_readme(parser):
    options = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
    missing = sorted(o for o in options - {"--help"} if f"`{o}" not in README
                     and f"{o} " not in README and f"{o}`" not in README)
    assert missing == [], f"document these options in README.md: {missing}"


def test_exit_code_table_matches_the_library():
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    codes = {int(v) for k, v in vars(errors).items() if k.startswith("EXIT_")}
    documented = {int(c) for c in table}
    assert codes <= documented, f"undocumented exit codes: {sorted(codes - documented)}"


def test_the_readme_and_help_exit_code_tables_agree():
    """One table (errors.SCORE_EXIT_CODES) in --help and in the README, word for word."""
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    help_text = score_parser().format_help()
    for code, meaning in errors.SCORE_EXIT_CODES.items():
        assert table.get(str(code)) == meaning, code
        assert f"  {code:<3} {meaning}" in help_text, code
    assert {int(c) for c in table} == set(errors.SCORE_EXIT_CODES)
