"""The file formats the scorer reads and writes, and the one table of file-name endings.

Plain data and string functions only, so that the command line can offer the formats without
importing the readers and writers.
"""

from __future__ import annotations

#: Input formats (``--input-format``); otherwise detected from each file's extension.
INPUT_FORMATS = ("csv", "tsv", "csv.gz", "tsv.gz", "npy", "parquet")
#: Output formats (``--output-format``); otherwise detected from the output's extension.
OUTPUT_FORMATS = ("csv", "csv.gz", "tsv", "tsv.gz", "npy", "parquet", "jsonl")

#: File-name ending -> format, for inputs and outputs alike (matched case-insensitively,
#: longest ending first).
SUFFIXES = {
    ".csv": "csv", ".txt": "csv", ".tsv": "tsv",
    ".csv.gz": "csv.gz", ".txt.gz": "csv.gz", ".tsv.gz": "tsv.gz",
    ".npy": "npy", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl",
}
_LONGEST_FIRST = sorted(SUFFIXES, key=len, reverse=True)
#: The ending of a reject report's name (``out.csv`` -> ``out.rejects.csv``): kept for the
#: reports, never an input of a directory scan nor an output's name.
REJECTS_SUFFIX = ".rejects.csv"


def split_format(name: str) -> tuple[str, str | None]:
    """(stem, format) of a file name by its known ending (``a.csv.gz`` -> ``("a", "csv.gz")``);
    ``(name, None)`` when the ending names no format."""
    lower = name.lower()
    for suffix in _LONGEST_FIRST:
        if lower.endswith(suffix):
            return name[: -len(suffix)], SUFFIXES[suffix]
    return name, None


def input_format_of(name: str) -> str | None:
    """The input format a file name's ending names, or None."""
    fmt = split_format(name)[1]
    return fmt if fmt in INPUT_FORMATS else None


def output_format_of(name: str) -> str | None:
    """The output format a file name's ending names, or None."""
    fmt = split_format(name)[1]
    return fmt if fmt in OUTPUT_FORMATS else None
