"""Writing predictions: one writer per format, to a temporary file (see :mod:`.fsio`) or a
stream, and the reject report."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .arrow import to_numpy
from .contract import N_CLASSES
from .errors import UsageError
from .formats import output_format_of
from .fsio import write_atomic_bytes
from .readers import Reject

STDOUT = "-"
PROBA_COLUMNS = [f"p{k}" for k in range(N_CLASSES)]


def detect_output_format(path: str | None, given: str | None) -> str:
    """The output format from ``--output-format`` (checked by ScoreOptions), else the output's
    extension, else CSV."""
    if given is not None:
        return given
    if path is None or path == STDOUT:
        return "csv"
    return output_format_of(Path(path).name) or "csv"


def output_schema(id_name: str | None, proba: bool) -> pa.Schema:
    """Columns of every output: the row number or the id, label, confidence, then p0..p9."""
    key = pa.field(id_name, pa.string()) if id_name else pa.field("row", pa.int64())
    fields = [key, pa.field("label", pa.int64()), pa.field("confidence", pa.float32())]
    if proba:
        fields += [pa.field(name, pa.float32()) for name in PROBA_COLUMNS]
    return pa.schema(fields)


class Writer(Protocol):
    """What the scoring loop writes prediction tables to: a format's writer, or a part file of
    a split file on a cluster."""

    #: Rows written so far.
    rows: int

    def write(self, table: pa.Table) -> None: ...

    def close(self) -> None:
        """Finish the file (footer, header fix-up) and release it."""


class TableWriter:
    """Base of the format writers: counts the rows; a subclass writes them."""

    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        self.sink = sink
        self.schema = schema
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self._write(table)
        self.rows += table.num_rows

    def _write(self, table: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file (footer, header fix-up) and release it."""


class CsvWriter(TableWriter):
    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        super().__init__(sink, schema)
        plain = all(name.isidentifier() for name in schema.names)
        options = pacsv.WriteOptions(quoting_header="none" if plain else "needed")
        target = str(sink) if isinstance(sink, Path) else sink
        self._writer = pacsv.CSVWriter(target, schema, write_options=options)

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


class ParquetWriter(TableWriter):
    """Row groups of a fixed size, whatever the input's batches: the same rows always give the
    same bytes, however they were read (whole, in parts, on a cluster)."""

    ROW_GROUP_ROWS = 1 << 17

    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        super().__init__(sink, schema)
        target = str(sink) if isinstance(sink, Path) else sink
        self._writer = pq.ParquetWriter(target, schema)
        self._held: list[pa.Table] = []
        self._held_rows = 0

    def _write(self, table: pa.Table) -> None:
        self._held.append(table)
        self._held_rows += table.num_rows
        if self._held_rows >= self.ROW_GROUP_ROWS:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        size = self.ROW_GROUP_ROWS
        table = pa.concat_tables(self._held) if self._held else self.schema.empty_table()
        cut = table.num_rows if final else table.num_rows // size * size
        if cut:
            # One chunk per column, so page boundaries cannot follow the input's batches.
            self._writer.write_table(table.slice(0, cut).combine_chunks(), row_group_size=size)
        rest = table.slice(cut)
        self._held, self._held_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        self._flush(final=True)
        self._writer.close()


class JsonlWriter(TableWriter):
    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        super().__init__(sink, schema)
        self._own = isinstance(sink, Path)
        self._fh: BinaryIO = open(sink, "wb") if isinstance(sink, Path) else sink  # noqa: SIM115

    def _write(self, table: pa.Table) -> None:
        columns = [table.column(name).to_pylist() for name in table.schema.names]
        names = table.schema.names
        lines = "".join(
            json.dumps(dict(zip(names, values, strict=True))) + "\n"
            for values in zip(*columns, strict=True)
        )
        self._fh.write(lines.encode())

    def close(self) -> None:
        if self._own:
            self._fh.close()
        else:
            self._fh.flush()


class NpyWriter(TableWriter):
    """A 1-D structured array; the row count in the header is fixed up when the file closes."""

    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        super().__init__(sink, schema)
        if not pa.types.is_integer(schema.field(0).type):
            raise UsageError(
                "NPY output cannot hold string ids; drop --id-column or write csv, parquet "
                "or jsonl"
            )
        self.dtype = np.dtype([
            (f.name, "<i8" if pa.types.is_integer(f.type) else "<f4") for f in schema
        ])
        self._seekable = isinstance(sink, Path)
        self._fh: BinaryIO = open(sink, "wb") if isinstance(sink, Path) else io.BytesIO()  # noqa: SIM115
        self._header_len = len(self._header(10**18))
        self._fh.write(self._header(0, self._header_len))

    def _header(self, n: int, length: int | None = None) -> bytes:
        """The NPY 1.0 header, padded to ``length`` bytes so it can be rewritten in place."""
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (n,)})
        used = 10 + len(text) + 1
        pad = (-used) % 64 if length is None else length - used
        body = (text + " " * pad + "\n").encode("latin1")
        return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body

    def _write(self, table: pa.Table) -> None:
        records = np.empty(table.num_rows, dtype=self.dtype)
        for name in self.dtype.names or ():
            records[name] = to_numpy(table.column(name))
        self._fh.write(records.tobytes())

    def close(self) -> None:
        self._fh.seek(0)
        self._fh.write(self._header(self.rows, self._header_len))
        if isinstance(self._fh, io.BytesIO) and not isinstance(self.sink, Path):
            self.sink.write(self._fh.getvalue())
            self.sink.flush()
        else:
            self._fh.close()


_WRITERS: dict[str, type[TableWriter]] = {
    "csv": CsvWriter, "parquet": ParquetWriter, "jsonl": JsonlWriter, "npy": NpyWriter,
}


def open_writer(fmt: str, sink: Path | BinaryIO, schema: pa.Schema) -> Writer:
    """A writer of ``fmt`` predictions to a temporary path or a stream (stdout)."""
    return _WRITERS[fmt](sink, schema)


def stdout_sink() -> BinaryIO:
    return sys.stdout.buffer


REJECT_COLUMNS = ["row", "line", "column", "column_name", "reason", "text"]


def write_rejects(dst: Path, rejects: list[Reject]) -> None:
    """Every rejected row, with where and why, as a small CSV written atomically."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(REJECT_COLUMNS)
    for r in rejects:
        out.writerow([r.row, "" if r.line is None else r.line,
                      "" if r.column is None else r.column, r.column_name or "", r.reason,
                      r.text])
    write_atomic_bytes(dst, buffer.getvalue().encode("utf-8"))
