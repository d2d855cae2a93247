"""The file formats the scorer reads and writes, by name: plain data, so that the command line
can offer them without importing the readers and writers."""

from __future__ import annotations

#: Input formats (``--input-format``); otherwise detected from each file's extension.
INPUT_FORMATS = ("csv", "tsv", "csv.gz", "tsv.gz", "npy", "parquet")
#: Output formats (``--output-format``); otherwise detected from the output's extension.
OUTPUT_FORMATS = ("csv", "npy", "parquet", "jsonl")
