"""Benchmark scoring on Dask against the local engine: 16 CSV files of 100,000 rows.

    python bench/bench_dask.py [--files 16] [--rows 100000] [--repeat 3]

Contenders, each a fresh `digits-score` process scoring all files into a fresh directory
(so cluster start-up is included, as a cron job pays it), interleaved and repeated:

  local      the local engine (one process, files one after another)
  local:1    a LocalCluster of one single-threaded worker process
  local:2    a LocalCluster of two
  local:2 (warm)  two workers started beforehand (`dask scheduler`/`dask worker`), the way an
             existing cluster is used: the job's own overhead without cluster start-up

Each contender also scores twice as many files (the same 16 and 16 more): the extra time is
what the extra rows cost, so rows / (T[2n] - T[n]) is the steady throughput, free of start-up
and shutdown, and 2 T[n] - T[2n] is the fixed cost of one run.

Prints wall times, end-to-end and steady throughput and ratios against the local engine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def make_files(folder: Path, files: int, rows: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"part{i:02d}.csv"
        if not path.exists():
            write_csv(sample_rows(rows, seed=100 + i), path)
        paths.append(path)
    return paths


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def start_cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    scheduler_file = folder / "scheduler.json"
    procs = [subprocess.Popen(
        [PY, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(scheduler_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    while not scheduler_file.exists():
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    for _ in range(workers):
        procs.append(subprocess.Popen(
            [PY, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--no-dashboard", "--host", "127.0.0.1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    import distributed

    with distributed.Client(address) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, procs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "dask")
    args = parser.parse_args(argv)
    both = [str(p) for p in make_files(args.data / f"{args.rows}", 2 * args.files, args.rows)]
    workloads = {"n": both[:args.files], "2n": both}
    mb = sum(os.path.getsize(p) for p in workloads["n"]) / 1e6
    work = Path(tempfile.mkdtemp(prefix="digits-dask-bench-"))
    address, procs = start_cluster(work, 2)
    contenders = {
        "local engine": [],
        "local:1": ["--scheduler", "local:1"],
        "local:2": ["--scheduler", "local:2"],
        "local:2 (warm, started beforehand)": ["--scheduler", address],
    }
    times = {(name, size): [] for name in contenders for size in workloads}
    try:
        for r in range(args.repeat):
            for size, inputs in workloads.items():
                for name, extra in contenders.items():
                    out = work / f"out-{r}-{size}-{name.split()[0]}"
                    out.mkdir()
                    times[name, size].append(timed(
                        [PY, "-m", "digits_onnx.inference", *inputs, "-q", "--force",
                         "--out-dir", str(out), *extra]))
                    shutil.rmtree(out)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)

    median = {key: statistics.median(v) for key, v in times.items()}
    rows = args.files * args.rows
    print(f"{args.files} CSV files x {args.rows:,} rows ({mb:.0f} MB), CSV out, median of "
          f"{args.repeat} fresh processes, {os.cpu_count()} cores; steady = {rows:,} rows / "
          f"(T[{2 * args.files} files] - T[{args.files} files])")
    local = median["local engine", "n"]
    local_steady = median["local engine", "2n"] - local
    print(f"  {'':<36} {'T[n]':>7}  {'T[2n]':>7}  {'end to end':>10}  {'steady':>8}  "
          f"{'fixed':>6}")
    for name in contenders:
        t1, t2 = median[name, "n"], median[name, "2n"]
        steady = t2 - t1
        print(f"  {name:<36} {t1:6.2f}s  {t2:6.2f}s  {local / t1:9.2f}x  "
              f"{local_steady / steady:7.2f}x  {2 * t1 - t2:5.2f}s")
    t1, t2 = median["local:2", "n"], median["local:2", "2n"]
    print(f"  target: local:2 at least 0.9x the local engine's throughput -> "
          f"{local / t1:.2f}x end to end ({args.files} files, start-up included), "
          f"{local_steady / (t2 - t1):.2f}x steady")


if __name__ == "__main__":
    main()
