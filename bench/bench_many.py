"""Many small files: digits-score against the loop anyone writes in five minutes.

    python bench/bench_many.py [--files 500] [--rows 100] [--repeat 5] [--before DIR]

Contenders, each a fresh process scoring every file into a fresh output directory, cold
(imports included), interleaved and repeated, medians reported:

  digits-score     digits-score DIR --out-dir OUT
  (p) pandas loop  for each file: pandas.read_csv -> onnxruntime -> DataFrame.to_csv
  --threads 1      digits-score file after file (one thread for pyarrow, one file at a time)
  before           an earlier checkout's digits-score (``--before DIR``, a git worktree)
  (2) two halves   two digits-score processes at once, each scoring half of the files
                   (``--threads 1``) into a folder of its own: what two cores give when
                   nothing is shared, the ceiling of any way to spread the files over them

Outputs go to a fresh folder under the system's temporary directory: set TMPDIR to measure
another disk (this machine's /tmp charges about 0.5 ms for each file created; /var/tmp,
on the same disk, 0.02 ms).

Also 16 files of 100,000 rows against the same 1.6M rows in one file (digits-score both).
The issue's goals: many small files at most 0.5x the pandas loop; 16 files at most 1.1x of
one file. Peak RSS (``/usr/bin/time``) is the largest over the runs.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scoring import before_command  # noqa: E402
from bench_scoring import timed as timed_rss  # noqa: E402
from make_data import sample_rows, write_csv  # noqa: E402

PY = sys.executable
SCORE = [PY, "-m", "digits_onnx.inference"]
#: Two scorers at once, on the folders given first, into two folders of the one given last.
TWO_HALVES = (
    '{cmd} "$1" -q --threads 1 --out-dir "$3/a" & '
    '{cmd} "$2" -q --threads 1 --out-dir "$3/b"; status=$?; wait $! && exit $status'
)
PANDAS_LOOP = """
import sys, pathlib
import numpy as np, onnxruntime as ort, pandas as pd
from digits_onnx.inference import bundled_model_path
session = ort.InferenceSession(str(bundled_model_path()), providers=["CPUExecutionProvider"])
out = pathlib.Path(sys.argv[2])
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.csv")):
    X = pd.read_csv(path).to_numpy(dtype=np.float32)
    label, proba = session.run(None, {"X": X})
    frame = pd.DataFrame({"label": label, "confidence": proba.max(axis=1)})
    frame.to_csv(out / (path.stem + ".pred.csv"), index_label="row")
"""


def make_files(folder: Path, files: int, rows: int, seed: int) -> Path:
    if not folder.exists():
        folder.mkdir(parents=True)
        for i in range(files):
            write_csv(sample_rows(rows, seed=seed + i), folder / f"f{i:04d}.csv")
    return folder


def halves(folder: Path) -> tuple[Path, Path]:
    """The files of ``folder`` split in two folders of links, first half and second half."""
    files = sorted(folder.glob("*.csv"))
    parts = (folder.with_name(folder.name + "_first"), folder.with_name(folder.name + "_second"))
    for part, share in zip(parts, (files[:len(files) // 2], files[len(files) // 2:]), strict=True):
        if not part.exists():
            part.mkdir()
            for path in share:
                (part / path.name).symlink_to(path)
    return parts


def timed(cmd: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of one fresh process writing into an empty ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return timed_rss(cmd, env)


def measure(contenders: dict[str, tuple[list[str], dict[str, str] | None]], out: Path,
            repeat: int) -> dict[str, tuple[float, int]]:
    """Per contender: the median wall time and the largest peak RSS over ``repeat`` runs."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    peaks: dict[str, int] = dict.fromkeys(contenders, 0)
    for _ in range(repeat):
        for name, (cmd, env) in contenders.items():
            wall, rss = timed([*cmd, str(out)], out, env)
            times[name].append(wall)
            peaks[name] = max(peaks[name], rss)
    return {name: (statistics.median(values), peaks[name]) for name, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    data = HERE / "data"
    small = make_files(data / f"many_{args.files}x{args.rows}", args.files, args.rows, 500)
    out = Path(tempfile.mkdtemp(prefix="digits-many-"))
    contenders = {
        "digits-score": ([*SCORE, str(small), "-q", "--out-dir"], None),
        "(p) pandas loop": ([PY, "-c", PANDAS_LOOP, str(small)], None),
        "--threads 1": ([*SCORE, str(small), "-q", "--threads", "1", "--out-dir"], None),
        "(2) two halves": (["sh", "-c", TWO_HALVES.format(cmd=shlex.join(SCORE)), "sh",
                            *map(str, halves(small))], None),
    }
    if args.before is not None:
        old, env = before_command(args.before)
        contenders["before"] = ([*old, str(small), "-q", "--out-dir"], env)
    median = measure(contenders, out / "o", args.repeat)
    print(f"{args.files} CSV files x {args.rows} rows, cold, fresh out-dir, median of "
          f"{args.repeat}")
    for name, (value, rss) in median.items():
        print(f"  {name:<18} {value:7.3f} s   ({value / args.files * 1000:.2f} ms a file)"
              f"  {rss:5d} MB")
    ours, pandas = median["digits-score"][0], median["(p) pandas loop"][0]
    print(f"  ours / (p)         {ours / pandas:6.2f}x   (goal <= 0.5x)")
    print(f"  ours / --threads 1 {ours / median['--threads 1'][0]:6.2f}x")
    print(f"  (2) / (p)          {median['(2) two halves'][0] / pandas:6.2f}x   "
          "(two cores, nothing shared)")
    if "before" in median:
        print(f"  ours / before      {ours / median['before'][0]:6.2f}x")

    many = make_files(data / "many_16x100000", 16, 100_000, 900)
    one = data / "one_1600000.csv"
    if not one.exists():
        with open(one, "wb") as fh:
            for i, path in enumerate(sorted(many.glob("*.csv"))):
                with open(path, "rb") as part:
                    if i:
                        part.readline()
                    shutil.copyfileobj(part, fh)
    split = measure({
        "16 files": ([*SCORE, str(many), "-q", "--out-dir"], None),
        "one file": ([*SCORE, str(one), "-q", "--out-dir"], None),
    }, out / "o", max(3, args.repeat // 2))
    print("\n16 files x 100,000 rows vs the same 1.6M rows in one file (digits-score)")
    for name, (value, rss) in split.items():
        print(f"  {name:<18} {value:7.3f} s   {rss:5d} MB")
    print(f"  16 files / one     {split['16 files'][0] / split['one file'][0]:6.2f}x   "
          "(goal <= 1.1x)")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
