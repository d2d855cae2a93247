"""``--metrics-file``: a run's figures in the Prometheus text exposition format.

The file is meant for node_exporter's textfile collector (or, written to stdout, for a
Pushgateway). Like the summary JSON it is written on every exit after the arguments parse,
atomically, and only where the run's plan allows a report.

Two kinds of figures:

- gauges of the last run (``digits_score_last_run_*``): start and end time, exit code,
  duration, files and rows by outcome, accuracy when labelled; the model's sha256 is the label
  of ``digits_score_model_info``; ``digits_score_last_success_timestamp_seconds`` is when a
  run last exited 0 (0 before the first success);
- counters over every run that wrote this file (``*_total``), for ``increase()``.

The last success and the counters come from the previous file: it is read bounded (never
through a link, never a FIFO), and whatever in it is not a sane value is ignored, so a damaged
file costs the history, never the run.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EXIT_OK, UsageError
from .fsio import is_special, read_small_file
from .plan import goes_to_stdout, identity, report_is_safe
from .summary import BatchSummary
from .writers import STDOUT, write_report

PREFIX = "digits_score_"
#: Outcomes of a file: they partition the run's files.
FILE_STATUSES = ("scored", "skipped", "failed")
#: Outcomes of an input row: they partition its rows (rows = scored + rejected, always).
ROW_STATUSES = ("scored", "rejected")
#: The counters a run carries forward, with the statuses each is labelled by ("" for none).
COUNTERS = {"files_total": FILE_STATUSES, "rows_total": ROW_STATUSES,
            "rows_out_of_range_total": ("",)}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^{}\n]*)\})?[ \t]+(\S+)[ \t]*$")
_STATUS = re.compile(r'\s*status="([a-z_]*)"\s*,?\s*')
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Previous:
    """What a run carries over from the file it replaces."""

    last_success: float = 0.0
    #: (counter name without the prefix, status label or "") -> value
    counters: dict[tuple[str, str], float] = field(default_factory=dict)


def read_previous(data: bytes | None) -> Previous:
    """The last success and the counters of a previous metrics file; anything else in it,
    and any value that is not a finite, non-negative number, is ignored."""
    if not data:
        return Previous()
    last_success = 0.0
    counters: dict[tuple[str, str], float] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        match = _SAMPLE.match(line)
        if match is None or not match.group(1).startswith(PREFIX):
            continue
        name, labels, text = match.group(1)[len(PREFIX):], match.group(2) or "", match.group(3)
        try:
            number = float(text)
        except ValueError:
            continue
        if not math.isfinite(number) or number < 0:
            continue
        if not labels.strip():
            status: str | None = ""
        else:
            labelled = _STATUS.fullmatch(labels)
            status = labelled.group(1) if labelled else None
        if name == "last_success_timestamp_seconds" and status == "":
            last_success = number
        elif name in COUNTERS and status in COUNTERS[name]:
            counters[(name, status or "")] = number
    return Previous(last_success, counters)


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class _Text:
    """The exposition text, one family at a time: HELP, TYPE, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Sequence[tuple[str, float]]) -> None:
        full = PREFIX + name
        self.lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
        self.lines += [f"{full}{labels} {_number(v)}" for labels, v in samples]


def render_metrics(summary: BatchSummary, *, started: float, ended: float,
                   previous: Previous | None = None) -> bytes:
    """The metrics of a run that started at ``started`` and ended at ``ended`` (Unix time)."""
    previous = previous or Previous()
    code = summary.exit_code
    files = {s: sum(f.status == s for f in summary.files) for s in FILE_STATUSES}
    # Rows this run read: a file skipped as up to date carries the figures of the run that
    # scored it, which counted them then.
    done = BatchSummary([f for f in summary.files if f.status == "scored"])
    totals = done.to_dict()["totals"]
    rows = {"scored": totals["scored"], "rejected": totals["rejected"]}
    started, ended = round(started, 3), round(ended, 3)
    out = _Text()
    out.family("last_run_start_timestamp_seconds", "gauge",
               "When the last digits-score run started (Unix time).", [("", started)])
    out.family("last_run_end_timestamp_seconds", "gauge",
               "When the last digits-score run ended (Unix time).", [("", ended)])
    out.family("last_success_timestamp_seconds", "gauge",
               "When a digits-score run last exited 0 (Unix time; 0 before the first).",
               [("", ended if code == EXIT_OK else previous.last_success)])
    out.family("last_run_exit_code", "gauge",
               "Exit code of the last run (0 all scored or up to date, 1 some failed, "
               "75 another run held the lock; see digits-score --help).", [("", code)])
    out.family("last_run_duration_seconds", "gauge", "Wall-clock time of the last run.",
               [("", round(max(0.0, ended - started), 3))])
    out.family("last_run_files", "gauge", "Input files of the last run, by outcome.",
               [(f'{{status="{s}"}}', files[s]) for s in FILE_STATUSES])
    out.family("last_run_rows", "gauge",
               "Input rows of the last run: scored, or rejected into a reject report.",
               [(f'{{status="{s}"}}', rows[s]) for s in ROW_STATUSES])
    out.family("last_run_rows_out_of_range", "gauge",
               "Rows of the last run with values outside the training range (scored, or "
               "rejected under --strict).", [("", totals["out_of_range"])])
    if totals["accuracy"] is not None:
        out.family("last_run_accuracy_ratio", "gauge",
                   "Share of labelled rows of the last run predicted right.",
                   [("", round(totals["accuracy"], 6))])
    if _SHA256.fullmatch(summary.model_sha256):
        out.family("model_info", "gauge", "The model the last run scored with.",
                   [(f'{{sha256="{summary.model_sha256}"}}', 1)])
    carried = previous.counters
    out.family("files_total", "counter", "Input files of every run, by outcome.",
               [(f'{{status="{s}"}}', carried.get(("files_total", s), 0) + files[s])
                for s in FILE_STATUSES])
    out.family("rows_total", "counter", "Input rows of every run, by outcome.",
               [(f'{{status="{s}"}}', carried.get(("rows_total", s), 0) + rows[s])
                for s in ROW_STATUSES])
    out.family("rows_out_of_range_total", "counter",
               "Rows of every run with values outside the training range.",
               [("", carried.get(("rows_out_of_range_total", ""), 0) + totals["out_of_range"])])
    return ("\n".join(out.lines) + "\n").encode()


def write_metrics(path: str, summary: BatchSummary, *, started: float,
                  ended: float | None = None) -> None:
    """Write a run's metrics to ``path``: atomically over a regular file (its previous last
    success and counters carried over), into a device or FIFO as a stream, ``-`` for stdout.
    The caller has checked ``path`` (the run's plan, or :func:`metrics_after_failure`)."""
    streamed = path == STDOUT or is_special(path)
    previous = Previous() if streamed else read_previous(read_small_file(Path(path)))
    data = render_metrics(summary, started=started,
                          ended=time.time() if ended is None else ended, previous=previous)
    write_report(path, data)


def check_report_paths(metrics: str | None, summary: str | None) -> None:
    """The rules between ``--metrics-file`` and ``--summary-json`` (the run's plan checks
    each against the outputs and inputs): a path; not both on stdout, nor in one file."""
    if metrics == "":
        raise UsageError("--metrics-file needs a path (or - for stdout)")
    if not metrics or not summary:
        return
    if goes_to_stdout(metrics) and goes_to_stdout(summary):
        raise UsageError("the summary and the metrics would both go to stdout; give a file "
                         "for one")
    if identity(summary) is not None and identity(summary) == identity(metrics):
        raise UsageError(f"--summary-json and --metrics-file name one file ({metrics}); give "
                         "each its own")


def metrics_after_failure(path: str, code: int, *, started: float, inputs: Sequence[str],
                          model_path: Path | None, output: str | None, out_dir: str | None,
                          summary_path: str | None) -> None:
    """The metrics of a run that stopped early (a usage error, a busy lock, an unusable
    model): written unless the path is what the run refused to overwrite, or the summary's
    (which then holds the error). Raises the library's errors when writing fails."""
    if not path or not report_is_safe(path, inputs, model_path, output, out_dir):
        return
    if summary_path is not None and (
            (path == summary_path == STDOUT)
            or (STDOUT not in (path, summary_path)
                and identity(path) is not None and identity(path) == identity(summary_path))):
        return
    write_metrics(path, BatchSummary(files=[], error_code=code), started=started)
