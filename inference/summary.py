"""What a run reports: per-file and whole-run summaries, and the running tally behind them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .contract import N_CLASSES
from .errors import EXIT_OK, EXIT_SOME_FAILED, DigitsError
from .readers import Reject


@dataclass
class FileSummary:
    """What happened to one input."""

    input: str
    output: str | None
    status: str = "scored"
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    out_of_range: int = 0
    seconds: float = 0.0
    correct: int | None = None
    labelled: int | None = None
    confusion: list[list[int]] | None = None
    rejects_file: str | None = None
    error: str | None = None
    exit_code: int = EXIT_OK
    #: Files of an earlier run that this file's failure removed (output, report, record).
    removed: list[str] | None = None

    @property
    def accuracy(self) -> float | None:
        if self.correct is None or not self.labelled:
            return None
        return self.correct / self.labelled

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["accuracy"] = self.accuracy
        out["rows_per_second"] = round(self.rows_per_second, 1)
        out["seconds"] = round(self.seconds, 4)
        return out


@dataclass
class BatchSummary:
    """What happened to every input of a run, and the exit code it earns."""

    files: list[FileSummary]
    seconds: float = 0.0
    model_sha256: str = ""
    #: Why the run as a whole failed before or instead of scoring files, and its exit code.
    error: str | None = None
    error_code: int | None = None
    #: What directory scans passed over, and why.
    left_out: list[tuple[str, str]] = field(default_factory=list)

    def total(self, name: str) -> int:
        return sum(getattr(f, name) or 0 for f in self.files)

    @property
    def failed(self) -> list[FileSummary]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when all inputs scored; a failure's own code when every input failed alike; else 1."""
        if self.error_code is not None:
            return self.error_code
        failed = self.failed
        if not failed:
            return EXIT_OK
        codes = {f.exit_code for f in failed}
        if len(failed) == len(self.files) and len(codes) == 1:
            return codes.pop()
        return EXIT_SOME_FAILED

    def to_dict(self) -> dict[str, Any]:
        labelled = self.total("labelled")
        totals: dict[str, Any] = {name: self.total(name) for name in
                  ("rows", "scored", "rejected", "out_of_range", "correct", "labelled")}
        totals["accuracy"] = totals["correct"] / labelled if labelled else None
        totals["files"] = len(self.files)
        totals["failed"] = len(self.failed)
        totals["skipped"] = sum(f.status == "skipped" for f in self.files)
        totals["seconds"] = round(self.seconds, 4)
        return {"schema_version": 1, "model_sha256": self.model_sha256,
                "exit_code": self.exit_code, "error": self.error, "totals": totals,
                "files": [f.to_dict() for f in self.files],
                "left_out": [{"path": path, "reason": reason} for path, reason in self.left_out]}


@dataclass
class Tally:
    """Running counts of one file (or one part of it) while it is scored."""

    rows: int = 0
    scored: int = 0
    out_of_range: int = 0
    correct: int = 0
    labelled: int = 0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((N_CLASSES, N_CLASSES),
                                                                   np.int64))
    #: Rejected rows, counted; kept in ``rejects`` only where no report takes them as they
    #: come (a part of a split file, whose line numbers are not final yet).
    rejected: int = 0
    rejects: list[Reject] = field(default_factory=list)
    #: A part stopped at its first reject under --on-error fail (its file fails).
    stopped: bool = False

    def add_truth(self, truth: np.ndarray, labels: np.ndarray) -> None:
        """Count right predictions and the confusion matrix against the true labels."""
        self.correct += int((truth == labels).sum())
        self.labelled += len(truth)
        known = (truth >= 0) & (truth < N_CLASSES)
        pairs = truth[known] * N_CLASSES + labels[known]
        self.confusion += np.bincount(pairs, minlength=N_CLASSES * N_CLASSES).reshape(
            N_CLASSES, N_CLASSES)

    def merge(self, other: Tally, row_shift: int = 0, line_shift: int = 0) -> None:
        """Add a later part's counts, its rejects renumbered into the whole file's rows and
        lines."""
        self.rows += other.rows
        self.scored += other.scored
        self.out_of_range += other.out_of_range
        self.correct += other.correct
        self.labelled += other.labelled
        self.rejected += other.rejected
        self.confusion += other.confusion
        self.rejects.extend(
            replace(r, row=r.row + row_shift,
                    line=None if r.line is None else r.line + line_shift)
            for r in other.rejects
        )


def failed_summary(src: str, exc: DigitsError) -> FileSummary:
    """A file that failed: no output, the error's message and exit code."""
    return FileSummary(input=src, output=None, status="failed", error=str(exc),
                       exit_code=exc.exit_code, removed=list(exc.removed) or None)
