"""Scoring on a running Dask cluster, against the local engine and Dask's own idiom.

    python bench/bench_dask.py [--repeat 5] [--files 16] [--rows 100000]
                               [--big-rows 7000000] [--half-rows 4000000]

Starts ``dask scheduler`` and two ``dask worker`` processes (one thread each) on 127.0.0.1,
and stops them by PID at the end. Contenders, each a fresh process (imports and connecting to
the cluster included), run alternately (the order rotates every round), medians reported:

  local   the local engine: ``digits-score INPUTS --out-dir DIR``
  ours    the same command with ``--scheduler tcp://...``
  idiom   bench/dask_idiom.py: ``dd.read_csv`` -> ``map_partitions`` (explicit meta, one
          onnxruntime session per worker) -> ``to_csv`` on the workers

on two jobs (wall time, and the CPU time of the command, the scheduler and the workers
together: the machine's 2 cores are shared, and CPU time is what a busy machine inflates
least): many files (16 CSV files x 100,000 rows) and one big CSV (7,000,000 rows,
about 1 GB), which ours cuts into parts of ``--part-size`` (64 MB) and the idiom into blocks
of the same size. One untimed round first, so that the workers have imported what they need,
as on a cluster that is already running. The first timed round checks that ours wrote the
local engine's bytes.

Then each worker's peak memory (VmHWM, on workers restarted before each run) for one run of
ours and of the idiom on each job, and on a CSV of ``--half-rows`` rows: flat in the file's
size means the same peak for 4,000,000 and 7,000,000 rows.
"""

from __future__ import annotations

import argparse
import filecmp
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
CONTENDERS = ("local", "ours", "idiom")
GOALS = {"many": ("ours", "idiom", 0.75), "big": ("ours", "local", 1.05)}


def many_files(folder: Path, files: int, rows: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        path = folder / f"part{i:02d}.csv"
        if not path.exists():
            write_csv(sample_rows(rows, seed=100 + i), path)
        paths.append(path)
    return paths


def big_csv(rows: int) -> Path:
    """One CSV of ``rows`` rows (one header), written a million rows at a time."""
    path = HERE / "data" / f"digits_{rows}.csv"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as out:
        for i, start in enumerate(range(0, rows, 1_000_000)):
            piece = path.with_name(f".{path.name}.{i}")
            write_csv(sample_rows(min(1_000_000, rows - start), seed=200 + i), piece)
            with open(piece, "rb") as fh:
                if i:
                    fh.readline()  # one header for the whole file
                shutil.copyfileobj(fh, out, 16 << 20)
            piece.unlink()
    tmp.replace(path)
    return path


class Cluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, stopped by PID."""

    def __init__(self, folder: Path, workers: int) -> None:
        scheduler_file = folder / "scheduler.json"
        # Scheduler and workers import the idiom's module by name (the scheduler unpacks
        # the graph; each worker keeps one session).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [subprocess.Popen(
            [PY, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(scheduler_file)], env=env, **quiet)]
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the scheduler did not start")
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        for i in range(workers):
            self.procs.append(subprocess.Popen(
                [PY, "-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1",
                 "--name", f"w{i}", "--no-dashboard", "--host", "127.0.0.1"],
                cwd=ROOT, env=env, **quiet))
        self.workers = workers
        # Scheduler, nannies and workers: the processes whose CPU time a run adds to.
        self.pids = [*(proc.pid for proc in self.procs), *self.wait().values()]

    def wait(self) -> dict[str, int]:
        """The worker processes' PIDs, once all of them are registered."""
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(self.workers, timeout=60)
            return client.run(os.getpid)

    def restart(self) -> dict[str, int]:
        """Fresh worker processes (their nannies start them again); their PIDs."""
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.restart(wait_for_workers=True)
        return self.wait()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def command(name: str, inputs: list[str], out: Path, address: str, model: str) -> list[str]:
    if name == "idiom":
        return [PY, str(HERE / "dask_idiom.py"), "--scheduler", address, "--model", model,
                "--out-dir", str(out), *inputs]
    extra = ["--scheduler", address] if name == "ours" else []
    return [PY, "-m", "digits_onnx.inference", *inputs, "-q", "--force", "--out-dir", str(out),
            *extra]


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used, and this one's reaped children."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def reset_peaks(pids: dict[str, int]) -> None:
    for pid in pids.values():
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peaks_mb(pids: dict[str, int]) -> list[float]:
    """Each worker's peak resident memory since its last reset, in MB."""
    peaks = []
    for pid in pids.values():
        status = Path(f"/proc/{pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines()
                  if line.startswith("VmHWM:"))
        peaks.append(kb * 1024 / 1e6)
    return sorted(peaks)


def same_outputs(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    other = sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    return names == other and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--big-rows", type=int, default=7_000_000)
    parser.add_argument("--half-rows", type=int, default=4_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    from digits_onnx.inference.model import bundled_model_path

    model = str(bundled_model_path())
    jobs = {
        "many": [str(p) for p in many_files(HERE / "data" / "dask" / str(args.rows),
                                            args.files, args.rows)],
        "big": [str(big_csv(args.big_rows))],
    }
    half = [str(big_csv(args.half_rows))]
    sizes = {job: sum(os.path.getsize(p) for p in paths) / 1e6 for job, paths in jobs.items()}
    work = Path(tempfile.mkdtemp(prefix="bench-dask-", dir=HERE / "data"))
    print(f"load average at start: {load()}", flush=True)
    cluster = Cluster(work, 2)
    times: dict[tuple[str, str], list[float]] = {(j, c): [] for j in jobs for c in CONTENDERS}
    cpu: dict[tuple[str, str], list[float]] = {(j, c): [] for j in jobs for c in CONTENDERS}
    memory: dict[tuple[str, str], list[float]] = {}
    checked: dict[str, bool] = {}
    try:
        for r in range(-1, args.repeat):  # round -1 warms the workers up, untimed
            for job, inputs in jobs.items():
                order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]
                outs = {}
                for name in order:
                    out = work / f"{job}-{name}-{r}"
                    out.mkdir()
                    used = cpu_seconds(cluster.pids)
                    took = timed(command(name, inputs, out, cluster.address, model))
                    used = cpu_seconds(cluster.pids) - used
                    if r >= 0:
                        times[job, name].append(took)
                        cpu[job, name].append(used)
                        print(f"  round {r}  {job:<5} {name:<6} {took:6.2f} s  cpu {used:6.2f} s"
                              f"  load {load()}", flush=True)
                    outs[name] = out
                if r == 0:
                    checked[job] = same_outputs(outs["local"], outs["ours"])
                for out in outs.values():
                    shutil.rmtree(out)
        for job, inputs in {"many": jobs["many"], "half": half, "big": jobs["big"]}.items():
            for name in ("ours", "idiom"):
                pids = cluster.restart()
                reset_peaks(pids)
                out = work / f"memory-{job}-{name}"
                out.mkdir()
                timed(command(name, inputs, out, cluster.address, model))
                memory[job, name] = peaks_mb(pids)
                shutil.rmtree(out)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, times, cpu, memory, checked, sizes)


def report(args: argparse.Namespace, times: dict[tuple[str, str], list[float]],
           cpu: dict[tuple[str, str], list[float]], memory: dict[tuple[str, str], list[float]],
           checked: dict[str, bool], sizes: dict[str, float]) -> None:
    median = {key: statistics.median(v) for key, v in times.items()}
    median_cpu = {key: statistics.median(v) for key, v in cpu.items()}
    titles = {"many": f"{args.files} CSV files x {args.rows:,} rows ({sizes['many']:.0f} MB)",
              "big": f"one CSV, {args.big_rows:,} rows ({sizes['big']:.0f} MB)"}
    print(f"\nrunning cluster: scheduler + 2 workers x 1 thread, 127.0.0.1, {os.cpu_count()} "
          f"cores; median of {args.repeat} alternating fresh processes; load average at end: "
          f"{load()}")
    for job, title in titles.items():
        print(f"{title}; ours = local engine's bytes: {checked.get(job)}")
        for name in CONTENDERS:
            runs = " ".join(f"{v:.2f}" for v in times[job, name])
            print(f"  {name:<6} {median[job, name]:6.2f} s   cpu {median_cpu[job, name]:6.2f} s   "
                  f"(runs: {runs})")
        print(f"  ours / local {median[job, 'ours'] / median[job, 'local']:.2f}x   "
              f"ours / idiom {median[job, 'ours'] / median[job, 'idiom']:.2f}x")
    for job, (ours, other, goal) in GOALS.items():
        ratio = median[job, ours] / median[job, other]
        print(f"goal {job}: {ours} / {other} at most {goal:.2f}x -> {ratio:.2f}x "
              f"({'met' if ratio <= goal else 'missed'})")
    print("worker peak memory (VmHWM, MB, both workers; restarted before each run)")
    rows = {"many": titles["many"], "half": f"one CSV, {args.half_rows:,} rows",
            "big": titles["big"]}
    for job, title in rows.items():
        cells = "   ".join(f"{name} {' / '.join(f'{v:.0f}' for v in memory[job, name])}"
                           for name in ("ours", "idiom"))
        print(f"  {title:<44} {cells}")
    flat = max(memory["big", "ours"]) / max(memory["half", "ours"])
    print(f"  ours: {args.big_rows:,} rows / {args.half_rows:,} rows peak {flat:.2f}x; "
          f"largest {max(v for (_, n), m in memory.items() if n == 'ours' for v in m):.0f} MB "
          "(bar: 270-295 MB)")


if __name__ == "__main__":
    main()
