r"""Coverage-guided fuzzing of the readers (CSV, gzipped CSV, NPY, Parquet, and files whose
format only their content tells) with atheris.

    pip install atheris
    python fuzz/fuzz_readers.py -max_total_time=600 -timeout=10 -rss_limit_mb=2048 \
        fuzz/corpus/readers tests/data/bad

The first input byte picks the format; the rest is the file. Every input must end in a scored
file or one of the library's own errors (DigitsError): any other exception, a crash, a hang
(-timeout, default 1200 s; use -timeout=10) or memory beyond -rss_limit_mb is a finding that
libFuzzer saves as crash-*/timeout-*/oom-* in the working directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from digits_onnx.inference import Model, ReadOptions, ScoreOptions
    from digits_onnx.inference.readers import (  # noqa: F401 - loaded when a file opens; traced
        csv,
        csv_diagnosis,
        csv_layout,
        csv_lines,
        npy,
        parquet,
        sniff,
    )

from harness import score_and_check  # after the instrumented imports

#: "" and ".dat" name no format: the content decides (magic bytes, else delimited text).
SUFFIXES = (".csv", ".csv.gz", ".npy", ".parquet", ".tsv", "", ".dat")
MODEL = Model.load()
FOLDER = Path(tempfile.mkdtemp(prefix="digits-fuzz-", dir="/dev/shm" if os.path.isdir(
    "/dev/shm") else None))
OPTIONS = [ScoreOptions(read=ReadOptions(chunk_bytes=512, chunk_rows=5), on_error=mode)
           for mode in ("skip", "fail")]


def one_input(data: bytes) -> None:
    if not data:
        return
    suffix = SUFFIXES[data[0] % len(SUFFIXES)]
    options = OPTIONS[(data[0] // len(SUFFIXES)) % 2]
    src, dst = FOLDER / f"in{suffix}", FOLDER / "out.csv"
    src.write_bytes(data[1:])
    score_and_check(src, dst, MODEL, options)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
