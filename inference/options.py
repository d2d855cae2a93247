"""Every option a scoring run takes, and the one place each is checked.

The command line only parses its arguments into these; the library raises ``UsageError`` for
a bad value or combination, and the command line reports it (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UsageError
from .formats import OUTPUT_FORMATS, split_format
from .readers import ReadOptions

#: What a bad row does to its file: ``fail`` it, or ``skip`` the row into a reject report.
ON_ERROR = ("fail", "skip")
#: Threads one process may ask for: more than any machine this runs on has cores.
MAX_THREADS = 1024
#: Files larger than this are cut into parts on a cluster (``--part-size``).
DEFAULT_PART_BYTES = 64 << 20


@dataclass(frozen=True)
class ScoreOptions:
    """Everything that decides what an output contains (and so whether it is up to date)."""

    read: ReadOptions = field(default_factory=ReadOptions)
    output_format: str | None = None
    proba: bool = False
    on_error: str = "fail"
    strict: bool = False

    def __post_init__(self) -> None:
        if self.output_format is not None and self.output_format not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format {self.output_format!r}; choose from "
                             f"{', '.join(OUTPUT_FORMATS)}")
        if self.on_error not in ON_ERROR:
            raise UsageError(f"--on-error must be one of {', '.join(ON_ERROR)}")
        if self.output_format == "npy" and self.read.keep_columns is not None:
            raise UsageError("NPY output holds the predictions only; --keep-columns needs csv, "
                             "tsv, jsonl or parquet output")

    def fingerprint(self) -> dict[str, Any]:
        # Every reading option but the block sizes (which change no output byte), read field
        # by field: a new option is in the fingerprint without a line here. Not asdict: its
        # deep copy costs more than the rest of a small file's record.
        read = {f.name: getattr(self.read, f.name) for f in fields(self.read)
                if f.name not in ("chunk_bytes", "chunk_rows")}
        if isinstance(self.read.keep_columns, tuple):  # as JSON gives it back from a record
            read["keep_columns"] = list(self.read.keep_columns)
        return {"read": read, "output_format": self.output_format, "proba": self.proba,
                "on_error": self.on_error, "strict": self.strict}


def resolve_output_format(output: str | None, given: str | None) -> str | None:
    """The output format: ``--output-format``, else the extension of ``-o``'s file.

    An extension that names no output format, or one that contradicts ``--output-format``,
    is a usage error; a name without an extension (or a stream: ``-``, a device) takes the
    given format, or CSV.
    """
    if output is None or output == "-":
        return given
    name = Path(output).name
    named = split_format(name)[1]
    if named is not None and given is not None and named != given:
        raise UsageError(f"-o {output} names {named} output but --output-format says {given}; "
                         "make them agree")
    if named is None and given is None and Path(name).suffix:
        raise UsageError(f"-o {output}: {Path(name).suffix!r} names no output format; end the "
                         f"name with .{', .'.join(OUTPUT_FORMATS)}, or give --output-format")
    return given or named


def local_workers(scheduler: object) -> int | None:
    """N for ``local:N``, None for anything else (a Client, an address)."""
    if not isinstance(scheduler, str) or not scheduler.startswith("local:"):
        return None
    try:
        n = int(scheduler.split(":", 1)[1])
        if n < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--scheduler {scheduler}: expected local:N with N >= 1") from None
    return n


def check_run(*, output: str | None = None, out_dir: str | Path | None = None,
              scheduler: object | None = None, part_bytes: int | None = None,
              threads: int | None = None, output_format: str | None = None) -> None:
    """The rules between a run's options, checked before anything is loaded or read."""
    resolve_output_format(output, output_format)
    if output is not None and out_dir is not None:
        raise UsageError("give either -o/--output or --out-dir, not both")
    if output == "" or out_dir == "":
        raise UsageError(f"{'-o' if output == '' else '--out-dir'} needs a path "
                         f"{'(or - for stdout)' if output == '' else ''}".rstrip())
    if scheduler == "":
        raise UsageError("--scheduler needs an address (tcp://host:port) or local:N")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be a whole number from 1 to {MAX_THREADS}")
    if scheduler is None:
        if part_bytes is not None:
            raise UsageError("--part-size applies to --scheduler runs only")
        return
    local_workers(scheduler)
    if part_bytes is not None and part_bytes < 1:
        raise UsageError("the part size must be positive")
