"""The baseline of bench/bench_dask.py: CSV files scored the dask.dataframe way on a cluster.

    python bench/dask_idiom.py --scheduler tcp://HOST:PORT --model model.onnx \
        --out-dir DIR INPUT.csv...

Written as the Dask documentation recommends: ``dd.read_csv`` in blocks (``blocksize``),
``map_partitions`` with an explicit ``meta`` (so Dask does not run the function on fake data
to guess the output), one onnxruntime session per worker process (built on the worker's
first partition and kept in this module, which the workers import by name), and ``to_csv``
writing one file per partition on the workers. The output holds what ``digits-score`` writes
(a row number, the label and its probability); row numbers restart in each partition, as the
index of a ``read_csv`` partition does.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

N_FEATURES = 64


@functools.cache
def session(model: str):
    """One onnxruntime session per worker process, single-threaded like the worker."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def predict(frame, model: str):
    """Score one partition: label and confidence, on the partition's own index."""
    import numpy as np
    import pandas as pd

    X = frame.to_numpy(dtype=np.float32)
    label, proba = session(model).run(None, {"X": X})
    return pd.DataFrame({"label": label.astype(np.int64), "confidence": proba.max(axis=1)},
                        index=frame.index)


def main(argv: list[str] | None = None) -> None:
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from distributed import Client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--scheduler", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--blocksize", default="64MB")
    args = parser.parse_args(argv)
    names = [f"pixel_{k // 8}_{k % 8}" for k in range(N_FEATURES)]
    meta = pd.DataFrame({"label": pd.Series(dtype=np.int64),
                         "confidence": pd.Series(dtype=np.float32)})
    with Client(args.scheduler):
        frame = dd.read_csv(args.inputs, blocksize=args.blocksize,
                            dtype=dict.fromkeys(names, np.float32))
        scored = frame.map_partitions(predict, str(args.model), meta=meta)
        scored.to_csv(str(args.out_dir / "part-*.csv"), index=True, index_label="row")


if __name__ == "__main__":
    # Through the module's importable name, so that the workers import ``predict`` (and keep
    # one session each) rather than unpickle a copy of it with every task.
    import dask_idiom

    dask_idiom.main()
