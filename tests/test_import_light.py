"""The inference package stays light: importing or running it never loads the training stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "skl2onnx", "matplotlib", "pandas", "onnx", "scipy", "dask", "distributed")


def loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    return proc.stdout.split()


def test_importing_inference_loads_no_heavy_module():
    assert loaded_after("import inference, inference.cli") == []


def test_scoring_a_file_loads_no_heavy_module(tmp_path, model_path):
    src = tmp_path / "x.csv"
    src.write_text("\n".join(",".join(str((i + k) % 17) for k in range(64)) for i in range(20)))
    code = (f"from inference.cli import main\n"
            f"assert main([{str(src)!r}, '-o', {str(tmp_path / 'o.csv')!r}, '-q', '--model', "
            f"{str(model_path)!r}, '--proba']) == 0")
    assert loaded_after(code) == []


def test_the_command_line_parses_before_importing_the_scoring_stack():
    """--help and usage errors answer without numpy, pyarrow and onnxruntime, and local:N's
    fork server starts before them."""
    probe = (
        "import sys\n"
        "from inference.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert main(['x.csv', '--scheduler', 'local:0']) == 2\n"
        "print(' '.join(m for m in ('numpy', 'pyarrow', 'onnxruntime') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert "usage: digits-score" in proc.stdout
    assert proc.stdout.splitlines()[-1].split() == []


def test_every_public_name_and_submodule_loads():
    probe = (
        "import inference\n"
        "assert sorted(inference.__all__) == sorted(inference._EXPORTS)\n"
        "for name in inference.__all__:\n"
        "    assert getattr(inference, name).__module__.startswith('inference.'), name\n"
        "assert inference.errors.EXIT_USAGE == 2\n"
        "try:\n"
        "    inference.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert proc.stdout == "ok\n"
