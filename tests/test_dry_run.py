"""--dry-run: what a run would do to each input, with nothing written.

The tree is compared byte for byte, with every entry's type, mode and mtime (a temporary file
created and removed would still change its directory's mtime). Each exit code is compared
with what the real run does on a copy of the same tree.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from digits_onnx.inference import errors
from digits_onnx.inference.cli import main
from digits_onnx.inference.fsio import output_lock

from tests.test_cli import csv_text


@pytest.fixture
def here(tmp_path, monkeypatch, digits_rows):
    """tree/in/a.csv and tree/in/b.csv (20 rows each); tree/ is the working directory."""
    tree = tmp_path / "tree"
    (tree / "in").mkdir(parents=True)
    monkeypatch.chdir(tree)
    Path("in/a.csv").write_text(csv_text(digits_rows[:20]))
    Path("in/b.csv").write_text(csv_text(digits_rows[20:40]))
    return tree


def tree_state(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (and the folder): type, mode, size, mtime, bytes or link."""
    found = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            content: object = path.read_bytes()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        else:
            content = None
        found[str(path.relative_to(folder))] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                                st.st_ino, content)
    return found


def dry(model_path: Path, capsys, *args: str) -> tuple[int, list[str], str]:
    code = main([*map(str, args), "--dry-run", "--model", str(model_path)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_a_first_dry_run_tells_what_would_be_scored(here, model_path, capsys):
    before = tree_state(here)
    code, out, err = dry(model_path, capsys, "in", "--out-dir", "out")
    assert (code, err) == (0, "")
    assert out == [
        "create out (the output directory)",
        "score  in/a.csv -> out/a.pred.csv",
        "score  in/b.csv -> out/b.pred.csv",
        "dry run: 2 inputs: 2 to score, 0 up to date, 0 refused; a run would start with exit 0",
    ]
    assert tree_state(here) == before
    assert not Path("out").exists()


def test_after_a_run_the_dry_run_tells_what_is_up_to_date(here, model_path, capsys,
                                                          digits_rows):
    assert main(["in", "--out-dir", "out", "-q", "--model", str(model_path),
                 "--summary-json", "s.json", "--metrics-file", "m.prom"]) == 0
    Path("in/b.csv").write_text(csv_text(digits_rows[40:50]))  # changed since
    Path("in/c.csv").write_text(csv_text(digits_rows[50:60]))  # new
    # What a killed run leaves: a real run would remove it, a dry run does not.
    Path("out/.a.pred.csv.x1y2z3.tmp").write_text("partial")
    before = tree_state(here)
    code, out, err = dry(model_path, capsys, "in", "--out-dir", "out", "--summary-json",
                         "s.json", "--metrics-file", "m.prom")
    assert (code, err) == (0, "")
    assert out == [
        "skip   in/a.csv: out/a.pred.csv is up to date (--force rescores)",
        "score  in/b.csv -> out/b.pred.csv",
        "score  in/c.csv -> out/c.pred.csv",
        "dry run: 3 inputs: 2 to score, 1 up to date, 0 refused; a run would start with exit 0",
    ]
    assert tree_state(here) == before
    code, out, _ = dry(model_path, capsys, "in", "--out-dir", "out", "--force")
    assert out[0] == "score  in/a.csv -> out/a.pred.csv"
    assert tree_state(here) == before


def test_refused_inputs_are_named_with_the_reason_and_the_code(here, model_path, capsys,
                                                               digits_rows):
    np.save("in/c.npy", digits_rows[:5])
    before = tree_state(here)
    code, out, err = dry(model_path, capsys, "in/a.csv", "in/c.npy", "missing.csv",
                         "--out-dir", "out", "--id-column", "1")
    assert code == errors.EXIT_SOME_FAILED and err == ""
    assert out == [
        "create out (the output directory)",
        "score  in/a.csv -> out/a.pred.csv",
        "refuse in/c.npy: an NPY file holds only the 64 features; --id-column, "
        "--label-column and --keep-columns name columns of CSV or Parquet inputs (exit 2)",
        "refuse missing.csv: no such file (exit 66)",
        "dry run: 3 inputs: 1 to score, 0 up to date, 2 refused; a run would start with exit 1",
    ]
    assert tree_state(here) == before


def test_streams_are_scored_and_stdin_is_not_read(here, model_path, capsys, monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("not read"))
    code, out, _ = dry(model_path, capsys, "-", "-o", "/dev/null")
    assert code == 0
    assert out[0] == "score  <stdin> -> /dev/null (a stream)"
    assert sys.stdin.read() == "not read"


def test_names_are_shown_escaped(here, model_path, capsys):
    os.rename("in/a.csv", "in/new\nline.csv")
    code, out, _ = dry(model_path, capsys, "in/new\nline.csv", "-o", "x.csv")
    assert code == 0
    assert out[0] == "score  in/new\\nline.csv -> x.csv"


def test_a_busy_output_directory_exits_75_and_leaves_the_holder_its_lock(here, model_path,
                                                                          capsys):
    os.mkdir("out")
    with output_lock(Path("out")):
        before = tree_state(here)
        code, out, err = dry(model_path, capsys, "in", "--out-dir", "out")
        assert code == errors.EXIT_TEMPFAIL
        assert out == []
        assert err == ("digits-score: error: out: another digits-score run is writing here; "
                       "try again when it ends\n")
        assert tree_state(here) == before
    with output_lock(Path("out")):  # the dry run kept nothing
        pass


def test_a_dry_run_writes_neither_summary_nor_metrics_even_when_it_fails(here, model_path,
                                                                         capsys):
    before = tree_state(here)
    for args in (["in", "--out-dir", "out"], ["in", "--out-dir", "out", "--on-error", "x"],
                 ["in", "--out-dir", "no/such/out"]):
        dry(model_path, capsys, *args, "--summary-json", "s.json", "--metrics-file", "m.prom")
        assert tree_state(here) == before


# -- the dry run's code is the real run's --------------------------------------------------------

def _scenario(name: str, model_path: Path) -> list[str]:
    """Set up the working directory for one case; return its arguments."""
    if name == "empty directory":
        os.mkdir("empty")
        return ["empty", "--out-dir", "out"]
    if name == "all up to date":
        assert main(["in", "--out-dir", "out", "-q", "--model", str(model_path)]) == 0
        return ["in", "--out-dir", "out"]
    if name == "bookkeeping is a file":
        os.makedirs("out")
        Path("out/.digits-score").write_text("")
        return ["in", "--out-dir", "out"]
    if name == "lock is a link":
        os.makedirs("out/.digits-score")
        Path("elsewhere").write_text("")
        Path("out/.digits-score/lock").symlink_to(Path("elsewhere").resolve())
        return ["in", "--out-dir", "out"]
    if name == "out-dir is a file":
        Path("out").write_text("")
        return ["in", "--out-dir", "out"]
    return {
        "fresh": ["in", "--out-dir", "out"],
        "one file": ["in/a.csv", "-o", "x.csv"],
        "usage error": ["in", "--out-dir", "out", "-o", "x.csv"],
        "bad option value": ["in", "--out-dir", "out", "--threads", "0"],
        "missing input": ["missing.csv", "--out-dir", "out"],
        "one missing of two": ["in/a.csv", "missing.csv", "--out-dir", "out"],
        "pattern matches nothing": ["nothing-*.csv", "--out-dir", "out"],
        "unknown input format": ["in/a.csv", "--input-format", "xls", "-o", "x.csv"],
        "format unknown": ["in/a.csv", "empty.dat", "--out-dir", "out"],
        "output is the input": ["in/a.csv", "-o", "in/a.csv"],
        "summary is an input": ["in", "--out-dir", "out", "--summary-json", "in/a.csv"],
        "metrics is the model": ["in", "--out-dir", "out", "--metrics-file", str(model_path)],
        "out-dir parent missing": ["in", "--out-dir", "no/such/out"],
        "-o directory missing": ["in/a.csv", "-o", "no/such/x.csv"],
        "wrong model hash": ["in", "--out-dir", "out", "--model-sha256", "0" * 64],
        "both reports to stdout": ["in", "--out-dir", "out", "--summary-json", "-",
                                   "--metrics-file", "-"],
        "predictions and summary to stdout": ["in/a.csv", "--summary-json", "-"],
    }[name]


SCENARIOS = ["fresh", "one file", "empty directory", "all up to date", "usage error",
             "bad option value", "missing input", "one missing of two",
             "pattern matches nothing", "unknown input format", "format unknown",
             "output is the input", "summary is an input", "metrics is the model",
             "out-dir parent missing", "-o directory missing", "wrong model hash",
             "both reports to stdout", "predictions and summary to stdout",
             "bookkeeping is a file", "lock is a link", "out-dir is a file"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_dry_run_exits_as_the_real_run(here, tmp_path, model_path, capsys, monkeypatch,
                                           name):
    Path("empty.dat").write_bytes(b"")
    args = _scenario(name, model_path)
    twin = tmp_path / "twin"
    shutil.copytree(here, twin, symlinks=True)
    before = tree_state(here)
    code, _, err = dry(model_path, capsys, *args)
    assert tree_state(here) == before
    monkeypatch.chdir(twin)
    real = main([*args, "--model", str(model_path)])
    real_err = capsys.readouterr().err
    assert code == real, (err, real_err)
    if code not in (errors.EXIT_OK, errors.EXIT_SOME_FAILED) and err:
        assert err == real_err.splitlines(keepends=True)[0] or err in real_err


#: Root reads and writes anything; without these two capabilities, permissions apply to it too.
NO_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
               "--inh-caps=-dac_override,-dac_read_search"]


@pytest.mark.slow
@pytest.mark.parametrize(("setup", "args", "code"), [
    ("chmod 0 in/a.csv", ["in/a.csv", "-o", "x.csv"], errors.EXIT_NOINPUT),
    ("chmod 0 in/a.csv", ["in", "--out-dir", "out"], errors.EXIT_SOME_FAILED),
    ("mkdir ro && chmod 555 ro", ["in/a.csv", "-o", "ro/x.csv"], errors.EXIT_CANTCREAT),
    ("mkdir ro && chmod 555 ro", ["in", "--out-dir", "ro/out"], errors.EXIT_CANTCREAT),
    ("mkdir -p out/.digits-score && chmod 555 out/.digits-score", ["in", "--out-dir", "out"],
     errors.EXIT_CANTCREAT),
    ("mkdir -p out/.digits-score && touch out/.digits-score/lock && "
     "chmod 444 out/.digits-score/lock", ["in", "--out-dir", "out"], errors.EXIT_CANTCREAT),
])
def test_permissions_give_the_real_run_s_code(here, tmp_path, model_path, setup, args, code):
    import subprocess
    import sys

    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv reads and writes anything")
        prefix = NO_OVERRIDE
    subprocess.run(["sh", "-c", setup], check=True)
    before = tree_state(here)
    command = [*prefix, sys.executable, "-m", "digits_onnx.inference", *args, "--model",
               str(model_path)]
    dry_proc = subprocess.run([*command, "--dry-run"], capture_output=True, text=True,
                              timeout=120, check=False)
    assert tree_state(here) == before
    real = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert (dry_proc.returncode, real.returncode) == (code, code), (dry_proc, real)
    subprocess.run(["chmod", "-R", "u+rwX", str(here)], check=True)  # let pytest clean up
