"""Packages whose public names load their modules on first use.

Both packages export names from many modules, and the command lines must answer ``--help``
and usage errors before numpy, pyarrow, onnxruntime or scikit-learn are imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``: a public name (``exports``: name -> the
    module that defines it) or a submodule, imported on first use and kept in
    ``namespace`` (the package's globals) afterwards."""

    def getattr_(name: str) -> object:
        module = exports.get(name)
        if module is None:
            if importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f".{name}", package)
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exports})

    return getattr_, dir_
