"""`digits-train`'s command line: help, version, and a base install without the train extra."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest
from digits_onnx.inference.errors import EXIT_UNAVAILABLE
from digits_onnx.training.cli import build_parser, main

import digits_onnx
from digits_onnx import training

VERSION = importlib.metadata.version("digits-onnx")
INSTALL_HINTS = ("pip install 'digits-onnx[train]'", "pip install -e '.[train]'")

#: A fresh interpreter that behaves as a base install would: the train extra is absent.
WITHOUT_TRAIN_EXTRA = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {"sklearn", "onnx", "skl2onnx", "matplotlib"}

    class NotInstalled(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from digits_onnx.training.cli import main

    code = main(sys.argv[1:])
    assert not BLOCKED & set(sys.modules), sorted(BLOCKED & set(sys.modules))
    sys.exit(code)
    """
)


def without_train_extra(*argv: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TRAIN_EXTRA, *argv],
        capture_output=True, text=True, check=False, timeout=120, cwd=cwd,
    )


@pytest.mark.parametrize("argv", [["--help"], ["verify", "--help"], ["samples", "--help"]])
def test_help_works_without_the_train_extra(argv):
    proc = without_train_extra(*argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("usage: digits-train")


def test_help_says_which_extra_training_needs():
    proc = without_train_extra("--help")
    text = " ".join(proc.stdout.split())
    for hint in INSTALL_HINTS:
        assert hint in text
    assert f"{EXIT_UNAVAILABLE} the train extra is not installed" in text


def test_version_works_without_the_train_extra():
    proc = without_train_extra("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"digits-train {VERSION}\n", "")


@pytest.mark.parametrize(
    "argv", [["--no-report", "--out", "{tmp}/out"], ["verify"], ["samples", "--out", "{tmp}/ex"]]
)
def test_a_run_without_the_train_extra_says_what_to_install(argv, tmp_path):
    proc = without_train_extra(*(a.format(tmp=tmp_path) for a in argv), cwd=tmp_path)
    assert proc.returncode == EXIT_UNAVAILABLE, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("digits-train: error: ")
    assert "is not installed" in proc.stderr
    for hint in INSTALL_HINTS:
        assert hint in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "ex").exists()


def test_an_unrelated_missing_module_is_not_blamed_on_the_extra(monkeypatch):
    """Only the train extra's own modules get the install hint; anything else is a bug."""
    import digits_onnx.training.cli as cli

    def broken(args):
        raise ModuleNotFoundError("No module named 'nonexistent'", name="nonexistent")

    monkeypatch.setattr(cli, "_samples", broken)
    with pytest.raises(ModuleNotFoundError, match="nonexistent"):
        main(["samples"])


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"digits-train {VERSION}\n"
    assert main(["--version"]) == 0


def test_package_versions():
    assert digits_onnx.__version__ == VERSION
    assert training.__version__ == VERSION


def test_version_falls_back_to_the_source_tree():
    """Run from a checkout without an install, the version comes from pyproject.toml."""
    from digits_onnx import _find_version

    assert _find_version("no-such-distribution-digits") == VERSION


def _help(*argv: str, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_recipe_help_names_the_real_default(capsys):
    text = _help(capsys=capsys)
    assert "None" not in text
    assert "(default: default)" in text


def test_paths_that_default_to_the_working_directory_say_so(capsys):
    assert "(default: ./artifacts in the working directory" in _help(capsys=capsys)
    verify = _help("verify", capsys=capsys)
    assert "./artifacts in the working directory if it exists, else the bundled" in verify
    assert "(default: ./examples in the working directory)" in _help("samples", capsys=capsys)
