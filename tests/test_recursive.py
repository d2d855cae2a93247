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


def test_the_scan_is_the_same_for_both_engines_and_the_output_into_itself(here):
    """plan_run is the start both engines share; a tree scored into itself is scanned
    without its own outputs, bookkeeping or mirrors of them."""
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


def test_a_mirror_folder_that_cannot_be_made_fails_the_run_before_writing(here, model_path,
                                                                          capsys):
    _tree(here, Path("in.csv").read_text())
    Path("out").mkdir()
    Path("out/a").write_text("a file where a folder must go")
    assert _run(model_path, "in", "-r", "--out-dir", "out") == 73
    assert "out/a: cannot create the output directory" in capsys.readouterr().err
    assert sorted(p.name for p in Path("out").iterdir()) == ["a"]


@pytest.mark.parametrize("flag", ["-r", "--recursive"])
def test_recursive_with_one_file_and_o(here, model_path, flag):
    (here / "only" / "sub").mkdir(parents=True)
    (here / "only" / "sub" / "x.csv").write_text(Path("in.csv").read_text())
    assert _run(model_path, "only", flag, "-o", "one.csv", "-q") == 0
    assert Path("one.csv").read_text().startswith("row,label,confidence\n")
