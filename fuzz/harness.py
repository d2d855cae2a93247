"""What the fuzz targets share: scoring one file under the pipeline's promises, and the
empty corpus folder a target seeds on its first run. Imported by the targets, which run as
scripts from this folder (``python fuzz/fuzz_readers.py``)."""

from __future__ import annotations

from pathlib import Path

from digits_onnx.inference import Model, ScoreOptions, score_file
from digits_onnx.inference.errors import DigitsError


def score_and_check(src: Path, dst: Path, model: Model, options: ScoreOptions) -> None:
    """Score ``src``: it fails with one of the library's errors and leaves no output, or
    every row is accounted for (anything else propagates: libFuzzer saves the input)."""
    try:
        summary = score_file(str(src), dst, model=model, options=options, force=True)
    except DigitsError:
        if dst.exists():
            raise AssertionError("a failed file left an output") from None
        return
    if summary.rows != summary.scored + summary.rejected:
        raise AssertionError(f"rows lost: {summary}")
    dst.unlink()


def empty_corpus(argv: list[str]) -> Path | None:
    """The first corpus folder named on the command line, created, when it is still empty
    (the target seeds it then); None when there is none or it holds inputs already."""
    folders = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if not folders:
        return None
    folders[0].mkdir(parents=True, exist_ok=True)
    return None if any(folders[0].iterdir()) else folders[0]
