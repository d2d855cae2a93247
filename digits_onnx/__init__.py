"""digits-onnx: a digits classifier trained with scikit-learn, shipped as portable ONNX.

Two packages live under this one distinctive import name, so that neither collides with
another distribution's top-level module:

- :mod:`digits_onnx.inference`: score files with the ONNX model (numpy + onnxruntime only);
- :mod:`digits_onnx.training`: train, export and verify the model (needs the ``train`` extra).

In the repository they are the top-level folders ``inference/`` and ``training/``.
"""

from __future__ import annotations

DISTRIBUTION = "digits-onnx"


def _find_version(distribution: str = DISTRIBUTION) -> str:
    """The installed distribution's version; in a checkout without an install, pyproject's."""
    import re
    from importlib import metadata
    from pathlib import Path

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return "0+unknown"
    # The [project] table's own ``version = "..."`` line (tomllib is not in Python 3.10).
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    found = project and re.search(r'^version\s*=\s*"([^"]+)"', project.group(1), re.MULTILINE)
    return found.group(1) if found else "0+unknown"


__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, looked up on first use: every command imports this package, and
    reading the distribution's metadata is not free."""
    if name == "__version__":
        version = _find_version()
        globals()["__version__"] = version
        return version
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
