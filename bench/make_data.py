"""Write the benchmark inputs: rows sampled (with replacement) from the digits data.

    python bench/make_data.py --rows 1000000 --out bench/data

writes digits_<rows>.csv (header + integer pixels, ~145 B a row) and digits_<rows>.npy
(float32). Files that already exist are kept, so reruns are cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def sample_rows(n_rows: int, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits

    X = load_digits().data.astype(np.uint8)
    rng = np.random.default_rng(seed)
    return X[rng.integers(0, len(X), size=n_rows)]


def write_csv(X: np.ndarray, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"pixel_{i // 8}_{i % 8}" for i in range(X.shape[1])]
    table = pa.table({name: X[:, j] for j, name in enumerate(names)})
    tmp = path.with_suffix(".tmp")
    pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_header="none"))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/data"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"digits_{args.rows}.csv"
    npy_path = args.out / f"digits_{args.rows}.npy"
    if csv_path.exists() and npy_path.exists():
        return
    X = sample_rows(args.rows)
    if not csv_path.exists():
        write_csv(X, csv_path)
    if not npy_path.exists():
        np.save(npy_path, X.astype(np.float32))
    print(f"wrote {csv_path} ({csv_path.stat().st_size / 1e6:.0f} MB) and {npy_path}")


if __name__ == "__main__":
    main()
