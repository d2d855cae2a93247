"""Soak test, run by hand: 2,000 small files plus 4 large ones in one batch, three rounds.

    python bench/soak.py [--small 2000] [--rounds 3]

Round 1 scores the batch into an empty directory. Round 2 starts again from an empty
directory, is killed with SIGKILL half-way, then restarted to finish (scoring what is left,
skipping what is done). Round 3 rescores everything (--force).
Every run is a fresh process. Recorded per run: wall time, peak RSS, open file descriptors
when the batch has finished (a leak grows them with the number of files), and rows in against
rows out (counted in the output files, not taken from the summary).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from make_data import sample_rows, write_csv  # noqa: E402


def make_inputs(folder: Path, small: int) -> int:
    """Write the batch once; returns its number of rows."""
    marker = folder / f".complete-{small}"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(small):
            write_csv(sample_rows(int(rng.integers(1, 100)), seed=i), folder / f"s{i:04d}.csv")
        write_csv(sample_rows(500_000, seed=1), folder / "large0.csv")
        write_csv(sample_rows(500_000, seed=2), folder / "large1.csv")
        np.save(folder / "large2.npy", sample_rows(1_000_000, seed=3).astype(np.float32))
        np.save(folder / "large3.npy", sample_rows(1_000_000, seed=4).reshape(-1, 8, 8))
        marker.write_text("")
    rows = 0
    for path in folder.iterdir():
        if path.suffix == ".csv":
            with path.open("rb") as fh:
                rows += sum(1 for _ in fh) - 1
        elif path.suffix == ".npy":
            rows += np.load(path, mmap_mode="r").shape[0]
    return rows


def worker(inputs: str, out: str, force: bool) -> None:
    """One run, in this process; prints what it measured as JSON."""
    from digits_onnx.inference import score_files

    fds_before = len(os.listdir("/proc/self/fd"))
    summary = score_files([inputs], out_dir=out, force=force)
    fds_after = len(os.listdir("/proc/self/fd"))
    print(json.dumps({
        "exit_code": summary.exit_code, "files": len(summary.files),
        "scored_files": sum(f.status == "scored" for f in summary.files),
        "skipped_files": sum(f.status == "skipped" for f in summary.files),
        "fds_before": fds_before, "fds_after": fds_after,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))


def output_rows(out: Path) -> int:
    rows = 0
    for path in out.glob("*.pred.csv"):
        with path.open("rb") as fh:
            rows += sum(1 for _ in fh) - 1
    return rows


def run(inputs: Path, out: Path, *, force: bool, kill_after: float | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(inputs), str(out)]
    if force:
        cmd.append("--force")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return {"killed_after_s": kill_after}
    stdout, _ = proc.communicate()
    result = json.loads(stdout)
    result["wall_s"] = round(time.perf_counter() - start, 2)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=HERE / "data" / "soak")
    parser.add_argument("--worker", nargs=2, metavar=("INPUTS", "OUT"))
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker, force=args.force)
        return

    rows_in = make_inputs(args.data / "in", args.small)
    out = args.data / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    print(f"batch: {args.small} small files + 4 large, {rows_in:,} rows")
    first_wall = 0.0
    for r in range(1, args.rounds + 1):
        runs = []
        if r == 2:
            shutil.rmtree(out)
            out.mkdir()
            runs.append(("killed", run(args.data / "in", out, force=False,
                                       kill_after=round(first_wall / 2, 2))))
            runs.append(("restarted", run(args.data / "in", out, force=False)))
        else:
            runs.append(("run", run(args.data / "in", out, force=r > 1)))
            first_wall = first_wall if r > 1 else runs[0][1]["wall_s"]
        rows_out = output_rows(out)
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        for name, result in runs:
            print(f"round {r} {name}: {json.dumps(result)}")
        print(f"round {r}: rows in {rows_in:,}, rows out {rows_out:,} "
              f"({'equal' if rows_in == rows_out else 'DIFFERENT'}), "
              f"temporary files left: {len(leftovers)}")


if __name__ == "__main__":
    main()
