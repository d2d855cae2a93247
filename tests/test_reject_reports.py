"""Reject reports belong to their output: named after it, never shared by two outputs, never
a file of another name removed, and an output whose report is gone is not up to date."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from digits_onnx.inference.plan import rejects_path_for

from tests.records_support import put_record_bytes, record_bytes
from tests.test_paths import snapshot


def _with_bad_lines(path: Path, bad: tuple[int, ...] = (3, 7)) -> None:
    """in.csv with the given data lines cut short: rejects under --on-error skip."""
    lines = path.read_text().splitlines()
    for i in bad:
        lines[i] = ",".join(lines[i].split(",")[:5])
    path.write_text("\n".join(lines) + "\n")


def _report_rows(path: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in path.read_text().splitlines()[1:]]


@pytest.mark.parametrize(("src", "dst", "report"), [
    ("in.csv", "out/in.pred.csv", "out/in.rejects.csv"),
    ("a.csv.gz", "out/a.pred.jsonl", "out/a.rejects.csv"),
    ("in.csv", "first.csv", "first.rejects.csv"),
    ("in.csv", "res/first.parquet", "res/first.rejects.csv"),
    ("in.csv", "first.pred.csv", "first.rejects.csv"),
    ("in.csv", "scores", "scores.rejects.csv"),
    ("in.csv", "local.out", "local.out.rejects.csv"),
    ("in.csv", ".pred.csv", ".pred.rejects.csv"),
])
def test_a_report_is_named_after_its_output(src, dst, report):
    assert rejects_path_for(src, dst) == Path(report)


@pytest.mark.parametrize("dst", ["-", "/dev/null"])
def test_a_stream_has_no_name_so_its_report_is_named_after_the_input(here, dst):
    assert rejects_path_for("sub/in.csv", dst) == here / "in.rejects.csv"
    assert rejects_path_for("-", dst) == here / "stdin.rejects.csv"


def test_two_outputs_of_one_input_keep_a_report_each(here, run):
    _with_bad_lines(here / "in.csv")
    assert run("in.csv", "-o", "first.csv", "--on-error", "skip")[0] == 0
    _with_bad_lines(here / "in.csv", (3, 7, 9))  # the second output sees one more bad line
    assert run("in.csv", "-o", "second.csv", "--on-error", "skip")[0] == 0
    assert _report_rows(here / "first.rejects.csv") == [2, 6]
    assert _report_rows(here / "second.rejects.csv") == [2, 6, 8]
    assert not (here / "in.rejects.csv").exists()
    code, _, err = run("in.csv", "-o", "second.csv", "--on-error", "skip")
    assert code == 0 and "up to date" in err[0]
    assert _report_rows(here / "first.rejects.csv") == [2, 6]


@pytest.mark.parametrize("bad", [(), (3,)])
@pytest.mark.parametrize("name", ["in.rejects.csv", "notes.rejects.csv", "out.rejects.txt"])
def test_a_file_named_after_the_input_is_not_the_outputs_report(here, run, bad, name):
    _with_bad_lines(here / "in.csv", bad)
    (here / name).write_text("my notes\n")
    assert run("in.csv", "-o", "out.csv", "--on-error", "skip")[0] == 0
    assert (here / name).read_text() == "my notes\n"
    assert (here / "out.rejects.csv").exists() == bool(bad)


def _damage_missing(report: Path) -> None:
    report.unlink()


def _damage_cut(report: Path) -> None:
    report.write_bytes(report.read_bytes()[:-5])


def _damage_folder(report: Path) -> None:
    report.unlink()
    report.mkdir()


def _damage_link(report: Path) -> None:
    target = report.with_name("elsewhere.csv")
    report.rename(target)
    report.symlink_to(target.name)


@pytest.mark.parametrize("damage", [_damage_missing, _damage_cut])
def test_an_output_whose_report_is_gone_or_changed_is_scored_again(here, run, damage):
    _with_bad_lines(here / "in.csv")
    assert run("in.csv", "-o", "out.csv", "--on-error", "skip")[0] == 0
    report = here / "out.rejects.csv"
    written = report.read_bytes()
    damage(report)
    code, _, err = run("in.csv", "-o", "out.csv", "--on-error", "skip")
    assert code == 0 and "up to date" not in err[0]
    assert report.read_bytes() == written and not report.is_symlink()


@pytest.mark.parametrize("damage", [_damage_folder, _damage_link])
def test_a_report_replaced_by_a_folder_or_a_link_refuses_the_run(here, run, damage):
    """Not up to date, and never followed nor removed: the run stops before writing."""
    _with_bad_lines(here / "in.csv")
    assert run("in.csv", "-o", "out.csv", "--on-error", "skip")[0] == 0
    damage(here / "out.rejects.csv")
    before = {p.name: p.read_bytes() for p in here.iterdir() if p.is_file()}
    code, _, err = run("in.csv", "-o", "out.csv", "--on-error", "skip")
    assert code == 73 and "out.rejects.csv" in err[0] and "up to date" not in err[0]
    assert {p.name: p.read_bytes() for p in here.iterdir() if p.is_file()} == before


def test_a_record_without_the_reports_facts_is_not_up_to_date(here, run):
    """Records written before reports were recorded name the report but not its size."""
    _with_bad_lines(here / "in.csv")
    assert run("in.csv", "-o", "out.csv", "--on-error", "skip")[0] == 0
    out = here / "out.csv"
    state = json.loads(record_bytes(out))
    assert state["rejects"] == {"name": b"out.rejects.csv".hex(),
                                "size": os.path.getsize(here / "out.rejects.csv")}
    del state["rejects"]
    put_record_bytes(out, json.dumps(state).encode())
    code, _, err = run("in.csv", "-o", "out.csv", "--on-error", "skip")
    assert code == 0 and "up to date" not in err[0]
    assert "rejects" in json.loads(record_bytes(out))


def test_a_clean_output_needs_no_report(here, run):
    assert run("in.csv", "-o", "out.csv")[0] == 0
    assert json.loads(record_bytes(here / "out.csv"))["rejects"] is None
    code, _, err = run("in.csv", "-o", "out.csv")
    assert code == 0 and "up to date" in err[0]


@pytest.mark.parametrize("name", ["in.rejects.csv", "other.rejects.csv", "sub/x.rejects.csv"])
def test_an_output_may_not_take_a_reports_name(here, run, name):
    (here / "sub").mkdir()
    code, _, err = run("in.csv", "-o", name, "--output-format", "csv")
    assert code == 73
    assert err == [f"digits-score: error: {name}: names ending in .rejects.csv are kept for "
                   "reject reports; give the output another name"]
    assert not (here / name).exists()


def test_a_report_given_in_another_folder_is_checked_where_it_is(here, model):
    """``score_file(rejects_path=...)``: the record names the report by its path from the
    output's folder, so the output is up to date while that report is intact, and a file of
    the report's name beside the output does not stand in for it."""
    from digits_onnx.inference import score_file
    from digits_onnx.inference.options import ScoreOptions

    _with_bad_lines(here / "in.csv")
    (here / "out").mkdir()
    (here / "rep").mkdir()
    skip = ScoreOptions(on_error="skip")

    def run() -> str:
        return score_file("in.csv", "out/o.csv", model=model, options=skip,
                          rejects_path="rep/r.csv").status

    assert run() == "scored"
    assert run() == "skipped"
    report = (here / "rep" / "r.csv").read_bytes()
    (here / "rep" / "r.csv").rename(here / "out" / "r.csv")  # same name and size, elsewhere
    assert run() == "scored"
    assert (here / "rep" / "r.csv").read_bytes() == report


@pytest.mark.parametrize(("src", "first", "second"), [
    ("in.csv", ["-o", "out.parquet"], ["-o", "out.csv"]),
    ("in.csv", ["-o", "out.csv"], ["-o", "out.pred.csv"]),
    ("in.csv", ["-o", "out.csv"], ["-o", "out.jsonl"]),
    ("in.csv", ["--out-dir", "d"], ["--out-dir", "d", "--output-format", "parquet"]),
    # stdout's report goes to the working directory, named after the input
    ("sub/in.csv", ["-o", "in.pred.csv"], ["-o", "-"]),
])
@pytest.mark.parametrize("bad", [(), (3,)])
@pytest.mark.parametrize("dry", [False, True])
def test_a_report_another_output_owns_is_never_written_nor_removed(here, run, src, first,
                                                                    second, bad, dry):
    """One report name, two outputs: the second run stops before anything is written
    (exit 73, in the dry run too), whether it has bad rows to report or none to remove."""
    if src != "in.csv":
        (here / src).parent.mkdir()
        (here / "in.csv").rename(here / src)
    _with_bad_lines(here / src, (3, 7))
    assert run(src, *first, "--on-error", "skip")[0] == 0
    (report,) = here.rglob("*.rejects.csv")
    _with_bad_lines(here / src, bad)
    before = snapshot(here)
    code, out, err = run(src, *second, "--on-error", "skip", *(["--dry-run"] if dry else []))
    assert code == 73, err
    named, _, owner = err[0].removeprefix("digits-score: error: ").partition(
        ": the reject report of ")
    assert Path(named).resolve() == report and owner
    assert snapshot(here) == before and out == ""
