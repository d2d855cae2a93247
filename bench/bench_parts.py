"""Do split-file parts earn their keep? One large CSV on ``--scheduler local:2``.

    python bench/bench_parts.py [--rows 7000000] [--repeat 3]

Contenders, each a fresh `digits-score` process scoring the same file into a fresh output
(cluster start-up included), interleaved and repeated, medians reported:

  local            the local engine (one process)
  local:2 parts    two single-threaded Dask workers; the file cut into 64 MB parts
  local:2 whole    the same cluster, the file scored as one task (--part-size above its size)

Prints wall times and the ratio whole / parts: parts stay in the code only if they win by a
clear margin.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from make_data import sample_rows, write_csv  # noqa: E402

PY = sys.executable
SCORE = [PY, "-m", "digits_onnx.inference"]


def big_csv(rows: int) -> Path:
    path = HERE / "data" / f"digits_{rows}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        step = 1_000_000
        parts = []
        for i, start in enumerate(range(0, rows, step)):
            part = path.with_name(f".{path.name}.{i}")
            write_csv(sample_rows(min(step, rows - start), seed=200 + i), part)
            parts.append(part)
        with open(path, "wb") as out:
            for i, part in enumerate(parts):
                with open(part, "rb") as fh:
                    if i:
                        fh.readline()  # one header for the whole file
                    while chunk := fh.read(16 << 20):
                        out.write(chunk)
                part.unlink()
    return path


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=7_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    src = big_csv(args.rows)
    size_mb = src.stat().st_size / 1e6
    whole = str(int(size_mb) + 1)
    contenders = {
        "local": [],
        "local:2 parts": ["--scheduler", "local:2", "--part-size", "64"],
        "local:2 whole": ["--scheduler", "local:2", "--part-size", whole],
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(dir=HERE / "data") as tmp:
        for _ in range(args.repeat):
            for name, extra in contenders.items():
                out = Path(tmp) / "out.csv"
                times[name].append(timed([*SCORE, str(src), "-o", str(out), "-q", "--force",
                                          *extra]))
                out.unlink()
    print(f"one CSV, {args.rows:,} rows ({size_mb:,.0f} MB), median of {args.repeat}")
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        runs = " ".join(f"{v:.2f}" for v in times[name])
        print(f"  {name:<16} {value:7.2f} s   (runs: {runs})")
    parts, whole, local = median["local:2 parts"], median["local:2 whole"], median["local"]
    print(f"  whole / parts on local:2      {whole / parts:.2f}x")
    print(f"  parts on local:2 / local      {parts / local:.2f}x")


if __name__ == "__main__":
    main()
