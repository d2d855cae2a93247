"""The inference package stays light: importing or running it never loads the training stack."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("sklearn", "skl2onnx", "matplotlib", "pandas", "onnx", "scipy", "dask", "distributed")


def run_python(code: str) -> str:
    """What ``code`` prints in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return proc.stdout


def loaded_after(code: str, modules: tuple[str, ...] = HEAVY) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    return run_python(probe).splitlines()[-1].split()


def test_importing_inference_loads_no_heavy_module():
    assert loaded_after("import digits_onnx.inference, digits_onnx.inference.cli") == []


def test_scoring_a_file_loads_no_heavy_module(tmp_path, model_path):
    src = tmp_path / "x.csv"
    src.write_text("\n".join(",".join(str((i + k) % 17) for k in range(64)) for i in range(20)))
    code = (f"from digits_onnx.inference.cli import main\n"
            f"assert main([{str(src)!r}, '-o', {str(tmp_path / 'o.csv')!r}, '-q', '--model', "
            f"{str(model_path)!r}, '--proba']) == 0")
    assert loaded_after(code) == []


def test_the_command_line_parses_before_importing_the_scoring_stack():
    """--help and usage errors, whether argparse or the library finds them, answer without
    numpy, pyarrow and onnxruntime."""
    code = (
        "from digits_onnx.inference.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "assert main(['x.csv', '--scheduler', 'local:0']) == 2\n"
        "assert main(['x.csv', '--delimiter', '|']) == 2\n"
        "assert main(['x.csv', '--on-error', 'maybe']) == 2\n"
        "assert main(['x.csv', '--output-format', 'xlsx']) == 2\n"
        "assert main(['x.csv', '-o', 'a', '--out-dir', 'b']) == 2\n"
    )
    assert loaded_after(code, ("numpy", "pyarrow", "onnxruntime")) == []


def test_every_public_name_and_submodule_loads():
    code = (
        "from digits_onnx import inference\n"
        "assert sorted(inference.__all__) == sorted(inference._EXPORTS)\n"
        "for name in inference.__all__:\n"
        "    module = getattr(inference, name).__module__\n"
        "    assert module.startswith('digits_onnx.inference.'), name\n"
        "assert inference.errors.EXIT_USAGE == 2\n"
        "try:\n"
        "    inference.no_such_name\n"
        "except AttributeError:\n"
        "    print('ok')\n"
    )
    assert run_python(code) == "ok\n"
