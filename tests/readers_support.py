"""Reading a whole input in tests: every batch, the source closed whatever happens."""

from __future__ import annotations

from pathlib import Path

from digits_onnx.inference.readers import Batch, ReadOptions, Source, open_source


def read_batches(path: Path, **options: object) -> tuple[Source, list[Batch]]:
    """The opened (and closed) source of ``path`` and all its batches."""
    source = open_source(str(path), ReadOptions(**options))  # type: ignore[arg-type]
    try:
        return source, list(source.batches())
    finally:
        source.close()
