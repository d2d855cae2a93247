"""--recursive: directory scans that descend, with outputs mirroring the tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from digits_onnx.inference.cli import main
from digits_onnx.inference.plan import plan_run


def _tree(root: Path, text: str) -> None:
    """in/x.csv, in/a/x.csv, in/a/deep/x.csv, in/b/y.csv, in/.hidden/x.csv, in/b/loop ->
    in (a link that would loop)."""
    for folder in ("", "a", "a/deep", "b", ".hidden"):
        (root / "in" / folder).mkdir(parents=True, exist_ok=True)
    for name in ("x.csv", "a/x.csv", "a/deep/x.csv", "b/y.csv", ".hidden/x.csv"):
        (root / "in" / name).write_text(text)
    os.symlink("../../in", root / "in" / "b" / "loop")


def _run(model_path: Path, *args: object) -> int:
    return main([*map(str, args), "--model", str(model_path)])


def test_a_recursive_scan_mirrors_the_tree_under_the_out_dir(here, model_path, capsys):
    _tree(here, Path("in.csv").read_text())
    assert _run(model_path, "in", "-r", "--out-dir", "out", "-v", "--summary-json",
                "s.json") == 0
    summary = json.loads(Path("s.json").read_text())
    assert [(f["input"], f["output"]) for f in summary["files"]] == [
        ("in/a/deep/x.csv", "out/a/deep/x.pred.csv"),
        ("in/a/x.csv", "out/a/x.pred.csv"),
        ("in/b/y.csv", "out/b/y.pred.csv"),
        ("in/x.csv", "out/x.pred.csv"),
    ]
    for f in summary["files"]:  # equal names in different folders do not clash
        assert Path(f["output"]).read_text() == Path("out/x.pred.csv").read_text()
    left = [line for line in capsys.readouterr().err.splitlines() if line.startswith("left")]
    assert left == ["left out: in/.hidden (hidden)",
                    "left out: in/b/loop (a link to a directory; not followed)"]
    # A second run finds every output up to date, however deep.
    assert _run(model_path, "in", "-r", "--out-dir", "out", "--summary-json", "s.json") == 0
    statuses = {f["status"] for f in json.loads(Path("s.json").read_text())["files"]}
    assert statuses == {"skipped"}


def test_without_recursive_subdirectories_are_left_out_with_the_way_in(here, model_path,
                                                                      capsys):
    _tree(here, Path("in.csv").read_text())
    assert _run(model_path, "in", "--out-dir", "out", "-v") == 0
    left = [line for line in capsys.readouterr().err.splitlines() if line.startswith("left")]
    assert "left out: in/a (a directory; --recursive descends into it)" in left
    assert "left out: in/b (a directory; --recursive descends into it)" in left
    assert sorted(p.name for p in Path("out").iterdir()) == [".digits-score", "x.pred.csv"]


def test_a_dry_run_names_the_folders_it_would_create_and_creates_none(here, model_path,
                                                                     capsys):
    _tree(here, Path("in.csv").read_text())
    Path("out").mkdir()
    assert _run(model_path, "in", "--recursive", "--out-dir", "out", "--dry-run") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["create out/a (the output directory)",
                         "create out/a/deep (the output directory)",
                         "create out/b (the output directory)"]
    assert "score  in/a/deep/x.csv -> out/a/deep/x.pred.csv" in lines
    assert list(Path("out").iterdir()) == []


def test_a_tree_planned_into_itself_pairs_each_file_beside_itself(here):
    """plan_run, the start both engines share (the Dask client calls it too), with the
    scanned directory as --out-dir: each output lands beside its input."""
    _tree(here, Path("in.csv").read_text())
    plan = plan_run(["in"], None, "in", None, recursive=True)
    assert plan.pairs == [("in/a/deep/x.csv", "in/a/deep/x.pred.csv"),
                          ("in/a/x.csv", "in/a/x.pred.csv"),
                          ("in/b/y.csv", "in/b/y.pred.csv"),
                          ("in/x.csv", "in/x.pred.csv")]


def test_the_tree_scored_into_itself_twice_takes_only_its_inputs(here, model_path):
    _tree(here, Path("in.csv").read_text())
    assert _run(model_path, "in", "-r", "--out-dir", "in", "-q") == 0
    assert _run(model_path, "in", "-r", "--out-dir", "in", "-q", "--summary-json",
                "s.json") == 0
    files = json.loads(Path("s.json").read_text())["files"]
    assert len(files) == 4 and {f["status"] for f in files} == {"skipped"}


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_file_in_the_way_of_a_mirror_folder_fails_the_run_before_anything_is_made(
        here, model_path, capsys, dry_run):
    """out/b is a file; out/a and out/a/deep sort before it and must not be made either,
    and the dry run says what the run would."""
    _tree(here, Path("in.csv").read_text())
    Path("out").mkdir()
    Path("out/b").write_text("a file where a folder must go")
    args = ["in", "-r", "--out-dir", "out"] + (["--dry-run"] if dry_run else [])
    assert _run(model_path, *args) == 73
    assert capsys.readouterr().err == ("digits-score: error: out/b: cannot create the output "
                                       "directory: a file of that name is in the way\n")
    assert sorted(p.name for p in Path("out").iterdir()) == ["b"]


def test_the_dry_run_names_every_folder_of_a_deep_mirror(here, model_path, capsys):
    (here / "in" / "p" / "q").mkdir(parents=True)
    (here / "in" / "p" / "q" / "z.csv").write_text(Path("in.csv").read_text())
    Path("out").mkdir()
    assert _run(model_path, "in", "-r", "--out-dir", "out", "--dry-run") == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "create out/p (the output directory)", "create out/p/q (the output directory)"]


def test_a_tree_deeper_than_the_stack_is_scanned(here, model_path, capsys):
    folders = [here / "deep"]
    for _ in range(1200):  # deeper than Python's recursion limit
        folders.append(folders[-1] / "a")
    for folder in folders:
        folder.mkdir()
    (folders[-1] / "x.csv").write_text(Path("in.csv").read_text())
    try:
        assert _run(model_path, "deep", "-r", "--out-dir", "out", "--dry-run") == 0
        assert capsys.readouterr().out.splitlines()[-1].startswith(
            "dry run: 1 inputs: 1 to score")
    finally:  # bottom up: pytest's own clean-up (shutil.rmtree) recurses per level
        (folders[-1] / "x.csv").unlink()
        for folder in reversed(folders):
            folder.rmdir()


def test_a_folder_that_cannot_be_listed_fails_the_run_not_its_files_silently(
        here, model_path, capsys, monkeypatch):
    """Its files would go unscored with exit 0 otherwise (root reads any folder: the
    refusal is simulated)."""
    _tree(here, Path("in.csv").read_text())
    real = Path.iterdir

    def iterdir(self: Path):
        if self.name == "deep":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    assert _run(model_path, "in", "-r", "--out-dir", "out") == 74
    assert capsys.readouterr().err == (
        "digits-score: error: in/a/deep: cannot list the directory (Permission denied); its "
        "files would go unscored\n")
    assert not Path("out").exists()


def test_overlapping_inputs_take_each_file_once(here, model_path, capsys):
    _tree(here, Path("in.csv").read_text())
    assert _run(model_path, "in/b/y.csv", "in", "in/a", "-r", "--out-dir", "out", "-v",
                "--summary-json", "s.json") == 0
    files = json.loads(Path("s.json").read_text())["files"]
    assert [(f["input"], f["output"]) for f in files] == [
        ("in/b/y.csv", "out/y.pred.csv"),  # named first: its output is where it was named
        ("in/a/deep/x.csv", "out/a/deep/x.pred.csv"),
        ("in/a/x.csv", "out/a/x.pred.csv"),
        ("in/x.csv", "out/x.pred.csv"),
    ]
    left = capsys.readouterr().err
    assert "left out: in/b/y.csv (found already, as in/b/y.csv)" in left
    assert "left out: in/a/x.csv (found already, as in/a/x.csv)" in left


def test_a_file_named_twice_is_said_so(here, model_path, capsys):
    assert _run(model_path, "in.csv", "./in.csv", "--out-dir", "out") == 2
    assert capsys.readouterr().err == ("digits-score: error: ./in.csv is named twice (in.csv "
                                       "and ./in.csv); name it once\n")


def test_a_glob_that_matches_folders_scans_them(here, model_path):
    _tree(here, Path("in.csv").read_text())
    assert _run(model_path, "in/[ab]", "-r", "--out-dir", "out", "-q", "--summary-json",
                "s.json") == 0
    files = json.loads(Path("s.json").read_text())["files"]
    assert [(f["input"], f["output"]) for f in files] == [
        ("in/a/deep/x.csv", "out/deep/x.pred.csv"),  # each folder's files, as if named
        ("in/a/x.csv", "out/x.pred.csv"),
        ("in/b/y.csv", "out/y.pred.csv")]
    assert {f["status"] for f in files} == {"scored"}


def test_odd_folder_names_are_mirrored_byte_for_byte(here, model_path):
    odd = [b"new\nline", b"caf\xe9", b" lead"]
    for name in odd:
        folder = os.path.join(b"in", name)
        os.makedirs(folder)
        Path(os.fsdecode(os.path.join(folder, b"x.csv"))).write_text(Path("in.csv").read_text())
    assert _run(model_path, "in", "-r", "--out-dir", "out", "-q") == 0
    for name in odd:
        assert os.path.isfile(os.path.join(b"out", name, b"x.pred.csv"))


@pytest.mark.parametrize(("hard", "code"), [(None, 0), (128, 73)])
def test_more_folders_than_open_files_are_found_before_anything_is_made(here, model_path,
                                                                        hard, code):
    """A lock per output folder is held for the run: the soft limit is raised toward the
    hard one; past the hard one the run is refused before it creates or locks anything."""
    import resource
    import subprocess
    import sys

    text = Path("in.csv").read_text()
    for k in range(150):
        (here / "many" / f"d{k:03d}").mkdir(parents=True)
        (here / "many" / f"d{k:03d}" / "x.csv").write_text(text)
    limit = 128 if hard else None

    def lower() -> None:
        _, top = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard or top))

    proc = subprocess.run([sys.executable, "-m", "digits_onnx.inference", "many", "-r",
                           "--out-dir", "out", "-q", "--model", str(model_path)],
                          capture_output=True, text=True, preexec_fn=lower, timeout=300,
                          check=False)
    assert proc.returncode == code, proc.stderr
    if limit:
        assert proc.stderr == (
            "digits-score: error: the run writes into 150 output directories and locks each "
            "of them at once, more than the 100 open files this process may hold (ulimit -n); "
            "raise the limit, or score fewer directories per run\n")
        assert not Path("out").exists()
    else:
        assert len(list(Path("out").glob("d*/x.pred.csv"))) == 150


@pytest.mark.parametrize("flag", ["-r", "--recursive"])
def test_recursive_with_one_file_and_o(here, model_path, flag):
    (here / "only" / "sub").mkdir(parents=True)
    (here / "only" / "sub" / "x.csv").write_text(Path("in.csv").read_text())
    assert _run(model_path, "only", flag, "-o", "one.csv", "-q") == 0
    assert Path("one.csv").read_text().startswith("row,label,confidence\n")
