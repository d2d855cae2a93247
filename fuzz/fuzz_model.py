r"""Coverage-guided fuzzing of the model loader with atheris, from valid models.

    pip install atheris
    python fuzz/fuzz_model.py -max_total_time=600 -timeout=10 -rss_limit_mb=2048 \
        fuzz/corpus/model

The corpus starts from the bundled model and the hostile corpus's models (copied into the
first corpus folder when it is empty); libFuzzer flips, cuts and splices their bytes. Every
input must load and answer within the contract (one label in 0..9 and ten probabilities per
row) or be refused with a ModelError; any other exception, a crash, a hang or memory beyond
-rss_limit_mb is a finding saved as crash-*/timeout-*/oom-*.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports():
    from digits_onnx.inference import Model
    from digits_onnx.inference.errors import ModelError
    from digits_onnx.inference.model import bundled_model_path
    from digits_onnx.inference.onnx_wire import scan_model  # noqa: F401 - traced

from harness import empty_corpus  # after the instrumented imports

BAD = Path(__file__).resolve().parent.parent / "tests" / "data" / "bad"
ROWS = np.tile(np.arange(64, dtype=np.float32) % 17, (5, 1))


def one_input(data: bytes) -> None:
    try:
        model = Model(data, verify_hash=False)
        labels, proba = model.run(ROWS)
    except ModelError as exc:
        if "\n" in str(exc):
            raise AssertionError(f"a message of several lines: {exc!r}") from None
        return
    if labels.shape != (5,) or proba.shape != (5, 10):
        raise AssertionError(f"outputs of shapes {labels.shape}, {proba.shape}")
    if labels.min() < 0 or labels.max() > 9:
        raise AssertionError(f"labels {labels}")
    repr(model)


def fill_corpus(argv: list[str]) -> None:
    folder = empty_corpus(argv)
    if folder is None:
        return
    (folder / "seed-bundled.onnx").write_bytes(bundled_model_path().read_bytes())
    for path in sorted(BAD.glob("model_*.onnx")):
        (folder / f"bad-{path.name}").write_bytes(path.read_bytes())


if __name__ == "__main__":
    fill_corpus(sys.argv)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
