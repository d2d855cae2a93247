"""Benchmark `digits-train` end to end: the target is under 20 s for training, export and figures.

    python bench/bench_training.py [--repeat 3]

Each run is a fresh process (imports included) writing into a temporary directory. Printed
against two named baselines measured in the same run:

  (i) import only: python -c "import sklearn, skl2onnx, matplotlib" (the floor)
  (t) the tutorial: load_digits, split, LogisticRegression().fit, score (no CV, no export)

and the per-stage split of one in-process run (data, fit, export, report, write).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET_S = 20.0

BASELINE_IMPORT = "import sklearn, sklearn.linear_model, skl2onnx, matplotlib.pyplot"
BASELINE_TUTORIAL = """
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
X, y = load_digits(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=42)
print(LogisticRegression(max_iter=10000).fit(Xtr, ytr).score(Xte, yte))
"""


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        contenders = {
            "(i) import sklearn+skl2onnx+matplotlib": [PY, "-c", BASELINE_IMPORT],
            "(t) tutorial fit, no CV/export": [PY, "-c", BASELINE_TUTORIAL],
            "digits-train --recipe seed": [
                PY, "-m", "digits_onnx.training", "--recipe", "seed", "--out", f"{tmp}/seed"],
            "digits-train (default: CV grid of 16 C)": [
                PY, "-m", "digits_onnx.training", "--out", f"{tmp}/default"],
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeat):  # interleaved, so noise hits all alike
            for name, cmd in contenders.items():
                times[name].append(wall(cmd))

        sys.path.insert(0, str(ROOT))
        from digits_onnx.training import train

        stages = train(f"{tmp}/stages", recipe="default").timings

    median = {name: statistics.median(values) for name, values in times.items()}
    floor = median["(i) import sklearn+skl2onnx+matplotlib"]
    print(f"median wall time of {args.repeat} fresh-process runs")
    for name, value in median.items():
        print(f"  {name:<42} {value:6.2f} s   x{value / floor:5.2f} of (i)")
    full = median["digits-train (default: CV grid of 16 C)"]
    print("stages of one in-process default run: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    verdict = "meets" if full < TARGET_S else "MISSES"
    print(f"digits-train default: {full:.2f} s, {verdict} the {TARGET_S:.0f} s target "
          f"({full / TARGET_S:.0%} of it)")
    return 0 if full < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
