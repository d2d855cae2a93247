"""Benchmark digits-score against named baselines, all measured in one run.

    python bench/bench_scoring.py [--rows 1000000] [--repeat 3] [--skip-slow] [--before DIR]

Every measurement is a fresh process (imports included), repeated and reduced to the median,
with the contenders interleaved so machine noise hits them alike. Peak RSS comes from
``/usr/bin/time -f %M``. Baselines:

  (a) pyarrow.csv.read_csv of the file: the parsing limit
  (b) the tutorial's way: np.loadtxt, scikit-learn predict, np.savetxt
  (c) the usual script: pandas read_csv, scikit-learn predict_proba, to_csv
  (n) np.load of the NPY file plus np.save of a labels array

``--before DIR`` also times the scorer of an earlier checkout (``git worktree add DIR REV``),
interleaved with this one, and prints after / before ratios: a change must not slow it down.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_data import main as make_data  # noqa: E402

PY = sys.executable
SCORE = [PY, "-m", "digits_onnx.inference"]

BASELINE_A = "import sys, pyarrow.csv as c; c.read_csv(sys.argv[1])"
BASELINE_B = """
import sys, pickle, numpy as np
model = pickle.load(open(sys.argv[2], 'rb'))
X = np.loadtxt(sys.argv[1], delimiter=',', skiprows=1)
np.savetxt(sys.argv[3], model.predict(X), fmt='%d')
"""
BASELINE_C = """
import sys, pickle, pandas as pd
model = pickle.load(open(sys.argv[2], 'rb'))
X = pd.read_csv(sys.argv[1])
P = model.predict_proba(X.to_numpy())
out = pd.DataFrame(P, columns=[f'p{k}' for k in range(10)])
out.insert(0, 'confidence', P.max(axis=1))
out.insert(0, 'label', P.argmax(axis=1))
out.to_csv(sys.argv[3], index_label='row')
"""
BASELINE_N = """
import sys, numpy as np
X = np.load(sys.argv[1])
np.save(sys.argv[2], np.zeros(len(X), dtype=np.int64))
"""


def sklearn_model(path: Path) -> Path:
    if not path.exists():
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression

        X, y = load_digits(return_X_y=True)
        model = LogisticRegression(max_iter=5000).fit(X, y)
        path.write_bytes(pickle.dumps(model))
    return path


def before_command(checkout: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run an earlier checkout's scorer from its source
    folder: under ``digits_onnx`` (linked into a temporary folder, as it installs) or, before
    the packages moved there, as the top-level ``inference``."""
    checkout = checkout.resolve()
    links = Path(tempfile.mkdtemp(prefix="digits-before-"))
    if (checkout / "digits_onnx" / "__init__.py").exists():
        (links / "digits_onnx").mkdir()
        (links / "digits_onnx" / "__init__.py").symlink_to(checkout / "digits_onnx" / "__init__.py")
        (links / "digits_onnx" / "inference").symlink_to(checkout / "inference")
        module = "digits_onnx.inference"
    else:
        (links / "inference").symlink_to(checkout / "inference")
        module = "inference"
    # PYTHONSAFEPATH: ``-m`` would put the working directory first on the path, and run
    # from the repository that is this checkout's package, not the earlier one.
    return [PY, "-m", module], {**os.environ, "PYTHONPATH": str(links), "PYTHONSAFEPATH": "1"}


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True,
                          check=False, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) // 1024


def measure(contenders: dict[str, list[str]], repeat: int,
            env: dict[str, dict[str, str]] | None = None) -> dict[str, tuple[float, int]]:
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, cmd in contenders.items():
            results[name].append(timed(cmd, (env or {}).get(name)))
    return {name: (statistics.median(w for w, _ in runs), max(m for _, m in runs))
            for name, runs in results.items()}


def report(title: str, results: dict[str, tuple[float, int]]) -> None:
    print(f"\n{title}")
    for name, (wall, rss) in results.items():
        print(f"  {name:<44} {wall:8.3f} s  {rss:6d} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-slow", action="store_true", help="skip np.loadtxt (b)")
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="an earlier checkout to time against, interleaved")
    args = parser.parse_args(argv)
    make_data(["--rows", str(args.rows), "--out", str(args.data)])
    make_data(["--rows", str(4 * args.rows), "--out", str(args.data)])
    make_data(["--rows", "10", "--out", str(args.data)])
    csv = args.data / f"digits_{args.rows}.csv"
    csv4 = args.data / f"digits_{4 * args.rows}.csv"
    npy = args.data / f"digits_{args.rows}.npy"
    tiny = args.data / "digits_10.csv"
    pkl = sklearn_model(args.data / "sklearn_model.pkl")
    out = Path(tempfile.mkdtemp(prefix="digits-bench-"))
    ours = [*SCORE, "-q", "--force"]

    csv_runs = {
        "(a) pyarrow.csv.read_csv": [PY, "-c", BASELINE_A, str(csv)],
        "digits-score csv -> csv": [*ours, str(csv), "-o", str(out / "o.csv")],
        "digits-score csv -> csv --proba": [*ours, str(csv), "-o", str(out / "p.csv"), "--proba"],
        "(c) pandas + sklearn predict_proba + to_csv": [PY, "-c", BASELINE_C, str(csv), str(pkl),
                                                        str(out / "c.csv")],
    }
    before: dict[str, list[str]] = {}
    env: dict[str, dict[str, str]] = {}
    if args.before is not None:
        old, old_env = before_command(args.before)
        old = [*old, "-q", "--force"]
        before = {
            "before: csv -> csv": [*old, str(csv), "-o", str(out / "bo.csv")],
            "before: csv -> csv --proba": [*old, str(csv), "-o", str(out / "bp.csv"), "--proba"],
            "before: npy -> npy": [*old, str(npy), "-o", str(out / "bo.npy")],
            "before: 10-row csv": [*old, str(tiny), "-o", str(out / "bt.csv")],
        }
        env = {name: old_env for name in before}
    pick = {name: before[name] for name in list(before)[:2]}
    r = measure({**csv_runs, **pick}, args.repeat, env)
    report(f"CSV, {args.rows:,} rows ({csv.stat().st_size / 1e6:.0f} MB), median of "
           f"{args.repeat}", r)
    a, ours_t, ours_p, c = (r[k][0] for k in csv_runs)
    if pick:
        bt, bp = (r[k][0] for k in pick)
        print(f"  after / before csv -> csv         {ours_t / bt:6.2f}x   (target: noise, ~1x)")
        print(f"  after / before --proba            {ours_p / bp:6.2f}x")
    print(f"  ratio ours / (a)                  {ours_t / a:6.2f}x   (target <= 1.3x)")
    print(f"  ratio (c) / ours --proba          {c / ours_p:6.2f}x   (target >= 8x)")
    if not args.skip_slow:
        rb = measure({"(b) np.loadtxt + predict + np.savetxt": [
            PY, "-c", BASELINE_B, str(csv), str(pkl), str(out / "b.txt")]}, 1)
        report("tutorial baseline (one run)", rb)
        b = next(iter(rb.values()))[0]
        print(f"  ratio (b) / ours                  {b / ours_t:6.2f}x   (target >= 8x)")

    npy_runs = {
        "(n) np.load + np.save(labels)": [PY, "-c", BASELINE_N, str(npy), str(out / "n.npy")],
        "digits-score npy -> npy": [*ours, str(npy), "-o", str(out / "o.npy")],
    }
    pick = {name: before[name] for name in list(before)[2:3]}
    rn = measure({**npy_runs, **pick}, args.repeat, env)
    report(f"NPY, {args.rows:,} rows ({npy.stat().st_size / 1e6:.0f} MB float32)", rn)
    n, o = (rn[k][0] for k in npy_runs)
    print(f"  ratio ours / (n)                  {o / n:6.2f}x   (target <= 1.5x)")
    if pick:
        print(f"  after / before npy -> npy         {o / rn[next(iter(pick))][0]:6.2f}x")

    rm = measure({
        f"digits-score {args.rows:,} rows": [*ours, str(csv), "-o", str(out / "m1.csv")],
        f"digits-score {4 * args.rows:,} rows": [*ours, str(csv4), "-o", str(out / "m4.csv")],
    }, 1)
    report("peak memory", rm)
    m1, m4 = (v[1] for v in rm.values())
    print(f"  peak RSS 1x: {m1} MB (target <= 300); 4x rows / 1x rows: {m4 / m1:.2f}x "
          "(target <= 1.15x)")

    pick = {name: before[name] for name in list(before)[3:4]}
    rc = measure({
        "digits-score 10-row csv": [*ours, str(tiny), "-o", str(out / "t.csv")],
        "(c) pandas + sklearn, 10-row csv": [PY, "-c", BASELINE_C, str(tiny), str(pkl),
                                             str(out / "tc.csv")],
        **pick,
    }, max(3, args.repeat), env)
    report("cold start", rc)
    t, tc = (rc[k][0] for k in list(rc)[:2])
    print(f"  ours {t:.3f} s (target <= 0.5 s); ours / (c) {t / tc:.2f}x (target <= 0.3x)")
    if pick:
        print(f"  after / before 10-row csv         {t / rc[next(iter(pick))][0]:6.2f}x")


if __name__ == "__main__":
    main()
