r"""Coverage-guided fuzzing of the Parquet reader with atheris, from valid files.

    pip install atheris
    python fuzz/fuzz_parquet.py -max_total_time=600 -timeout=10 -rss_limit_mb=2048 \
        fuzz/corpus/parquet

Random bytes rarely get past a Parquet footer, so the corpus starts from valid files (plain,
compressed, with checksums, several row groups, nulls, id and label columns of several types)
written into the first corpus folder when it is empty, plus the hostile corpus's Parquet
files; libFuzzer then flips, cuts and splices them. Every input must end in a scored file or
one of the library's own errors (DigitsError); anything else, a crash, a hang or memory
beyond -rss_limit_mb is a finding saved as crash-*/timeout-*/oom-*. The first byte picks the
id and label options, --on-error, and whether row groups are read whole or in pieces.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

with atheris.instrument_imports():
    from digits_onnx.inference import Model, ReadOptions, ScoreOptions
    from digits_onnx.inference.readers import (  # noqa: F401 - traced
        csv_diagnosis,
        parquet,
        parquet_pages,
    )

from harness import empty_corpus, score_and_check  # after the instrumented imports

MODEL = Model.load()
WHOLE = parquet.READ_WHOLE_BYTES
FOLDER = Path(tempfile.mkdtemp(prefix="digits-fuzz-", dir="/dev/shm" if os.path.isdir(
    "/dev/shm") else None))
BAD = Path(__file__).resolve().parent.parent / "tests" / "data" / "bad"
#: The first byte of an input picks the options: which columns are the id and the label.
READS = [ReadOptions(chunk_rows=5), ReadOptions(chunk_rows=5, id_column="id"),
         ReadOptions(chunk_rows=5, label_column="label"),
         ReadOptions(chunk_rows=5, id_column="id", label_column="label")]


def seeds() -> dict[str, bytes]:
    """Valid Parquet files, each a different path through the reader."""
    X = (np.arange(9 * 64, dtype=np.float64).reshape(9, 64) * 7) % 17
    base = {f"c{k}": pa.array(X[:, k]) for k in range(64)}
    tables = {
        "plain": pa.table(base),
        "typed": pa.table({**{f"c{k}": pa.array(X[:, k].astype(t)) for k, t in
                              zip(range(64), ["u1", "i2", "f4", "f2"] * 16, strict=True)}}),
        "ids": pa.table({**base, "id": pa.array([f"r{i}" for i in range(9)]),
                         "label": pa.array(np.arange(9) % 10)}),
        "text_labels": pa.table({**base, "id": pa.array(np.arange(9)),
                                 "label": pa.array([str(i % 10) for i in range(9)])}),
        "nulls": pa.table({**base, "c3": pa.array([None, 1.0] * 4 + [2.0]),
                           "label": pa.array([1.0, None, 2.5] * 3)}),
    }
    out = {}
    for name, table in tables.items():
        for options in ({}, {"compression": "zstd", "row_group_size": 4},
                        {"compression": "none", "write_page_checksum": True,
                         "use_dictionary": False, "data_page_size": 128}):
            sink = io.BytesIO()
            pq.write_table(table, sink, **options)
            out[f"{name}-{len(out)}"] = sink.getvalue()
    return out


def one_input(data: bytes) -> None:
    if not data:
        return
    options = ScoreOptions(read=READS[data[0] % len(READS)],
                           on_error="skip" if data[0] & 0x80 else "fail")
    # Bit 6: read row groups in pieces after walking their page headers, as a large one is.
    parquet.READ_WHOLE_BYTES = 0 if data[0] & 0x40 else WHOLE
    src, dst = FOLDER / "in.parquet", FOLDER / "out.csv"
    src.write_bytes(data[1:])
    score_and_check(src, dst, MODEL, options)


def fill_corpus(argv: list[str]) -> None:
    folder = empty_corpus(argv)
    if folder is None:
        return
    for k, (name, data) in enumerate(seeds().items()):
        (folder / f"seed-{name}").write_bytes(bytes([k * 37 % 256]) + data)
    for path in sorted(BAD.glob("*.parquet")):
        (folder / f"bad-{path.name}").write_bytes(b"\x81" + path.read_bytes())


if __name__ == "__main__":
    fill_corpus(sys.argv)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
