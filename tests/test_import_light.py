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
    """Usage errors and --help answer at once, and local:N's fork server starts while this
    process is still importing numpy, pyarrow and onnxruntime."""
    code = "import inference, inference.cli"
    probe = (f"{code}\nimport sys\n"
             "print(' '.join(m for m in ('numpy', 'pyarrow', 'onnxruntime') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.split() == []


def test_every_public_name_loads():
    import inference

    for name in inference.__all__:
        assert getattr(inference, name).__module__.startswith("inference.")
    assert set(inference.__all__) <= set(dir(inference))
