"""Writing predictions: one writer per format, to a temporary file (see :mod:`.fsio`) or a
stream, and the reject report."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .arrow import to_numpy
from .contract import N_CLASSES
from .errors import InputDataError, UsageError, WriteError, write_error
from .formats import output_format_of
from .fsio import AtomicFile, is_special, write_atomic_bytes
from .readers import Reject
from .readers.base import Batch, Source
from .readers.csv import LineError

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


def output_schema(id_name: str | None, proba: bool, kept: Sequence[pa.Field] = (), *,
                  display: str | None = None) -> pa.Schema:
    """Columns of every output: the key (the row number, or the id), the input columns kept
    (``--keep-columns``), then label, confidence and p0..p9.

    Never two fields of one name (a table no JSON Lines or Parquet reader could take): an
    input column carried under a name the scorer writes itself (``row``, ``label``,
    ``confidence``, ``p0``..``p9``) is renamed ``input_<name>``; two input columns that still
    share a name are refused.
    """
    own = ["label", "confidence", *(PROBA_COLUMNS if proba else [])]
    taken = {*own, "row"} if id_name is None else set(own)

    def carried(name: str) -> str:
        return f"input_{name}" if name in taken else name

    key = (pa.field(carried(id_name), pa.string()) if id_name is not None
           else pa.field("row", pa.int64()))
    fields = [key, *(pa.field(carried(f.name), f.type) for f in kept)]
    fields += [pa.field("label", pa.int64()), pa.field("confidence", pa.float32())]
    fields += [pa.field(name, pa.float32()) for name in own[2:]]
    names = [f.name for f in fields]
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        given = ([id_name] if id_name is not None else []) + [f.name for f in kept]
        raise UsageError(
            f"{display + ': ' if display else ''}two output columns would be named {twice!r} "
            f"(carried: {', '.join(given)}); keep only one of them, or rename the input columns"
        )
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
        self._file: pa.NativeFile | None = None

    def target(self) -> pa.NativeFile | BinaryIO:
        """What pyarrow writes to: the stream, or the path opened by its bytes (a file name
        need not be valid UTF-8)."""
        if isinstance(self.sink, Path):
            self._file = pa.OSFile(os.fsencode(self.sink), "wb")
            return self._file
        return self.sink

    def write(self, table: pa.Table) -> None:
        self._write(table)
        self.rows += table.num_rows

    def _write(self, table: pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the file (footer, header fix-up) and release it."""
        if self._file is not None:
            self._file.close()


class CsvWriter(TableWriter):
    """Delimited text: CSV, or TSV (``delimiter="\\t"``), gzipped when ``gz``."""

    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema, *, delimiter: str = ",",
                 gz: bool = False) -> None:
        super().__init__(sink, schema)
        plain = all(name.isidentifier() for name in schema.names)
        options = pacsv.WriteOptions(quoting_header="none" if plain else "needed",
                                     delimiter=delimiter)
        target = self.target()
        self._gz = pa.CompressedOutputStream(target, "gzip") if gz else None
        self._writer = pacsv.CSVWriter(self._gz or target, schema, write_options=options)

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()
        if self._gz is not None:
            self._gz.close()
        super().close()


class ParquetWriter(TableWriter):
    """Row groups of a fixed size, whatever the input's batches: the same rows always give the
    same bytes, however they were read (whole, in parts, on a cluster)."""

    ROW_GROUP_ROWS = 1 << 17

    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        super().__init__(sink, schema)
        self._writer = pq.ParquetWriter(self.target(), schema)
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
        super().close()


class JsonlWriter(TableWriter):
    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        super().__init__(sink, schema)
        self._own = isinstance(sink, Path)
        self._fh: BinaryIO = open(sink, "wb") if isinstance(sink, Path) else sink  # noqa: SIM115

    def _write(self, table: pa.Table) -> None:
        keys = [json.dumps(name) for name in table.schema.names]
        columns = [_json_values(column) for column in table.columns]
        lines = "".join(
            "{" + ", ".join(f"{k}: {v}" for k, v in zip(keys, values, strict=True)) + "}\n"
            for values in zip(*columns, strict=True)
        )
        self._fh.write(lines.encode())

    def close(self) -> None:
        if self._own:
            self._fh.close()
        else:
            self._fh.flush()


def _json_values(column: pa.ChunkedArray) -> list[str]:
    """A column's values as JSON text, each as the CSV writer prints it: floats as the
    shortest text that reads back the same float32 ("0.9983885"), decimals and durations
    (in their unit) as numbers, dates and times as strings. An empty cell, NaN and infinity
    are null (JSON has no such numbers). Arrow formats every value: no pandas needed."""
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_duration(kind):
        column, kind = pc.cast(column, pa.int64()), pa.int64()
    if pa.types.is_integer(kind):
        return ["null" if v is None else str(v) for v in column.to_pylist()]
    if pa.types.is_boolean(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [json.dumps(v) for v in column.to_pylist()]
    texts = pc.cast(column, pa.string()).to_pylist()
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return [t if t is not None and t[-1:].isdigit() else "null" for t in texts]
    return ["null" if t is None else json.dumps(t) for t in texts]


class NpyWriter(TableWriter):
    """A 1-D structured array; the row count in the header is fixed up when the file closes.

    The key field is always int64: ids must be whole numbers (:func:`npy_ids`). A stream
    (stdout) gets the array through a temporary file, so that memory stays bounded whatever
    the row count.
    """

    def __init__(self, sink: Path | BinaryIO, schema: pa.Schema) -> None:
        super().__init__(sink, schema)
        # By position: a schema hands out a new Field object on every access.
        self.dtype = np.dtype([
            (f.name, "<i8" if i == 0 or pa.types.is_integer(f.type) else "<f4")
            for i, f in enumerate(schema)
        ])
        self._seekable = isinstance(sink, Path)
        self._fh: BinaryIO
        if isinstance(sink, Path):
            self._fh = open(sink, "wb")  # noqa: SIM115 - closed in close()
        else:
            self._fh = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
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
        for i, name in enumerate(self.dtype.names or ()):
            column = table.column(i)
            records[name] = to_numpy(npy_ids(column) if i == 0 else column)
        self._fh.write(records.tobytes())

    def close(self) -> None:
        self._fh.seek(0)
        self._fh.write(self._header(self.rows, self._header_len))
        if not isinstance(self.sink, Path):
            self._fh.seek(0)
            shutil.copyfileobj(self._fh, self.sink, 1 << 20)
            self.sink.flush()
        self._fh.close()


#: Why an output refuses an id, after the id's own problem.
NPY_IDS = ("NPY output holds ids as 64-bit integers only; write csv, parquet or jsonl, or drop "
           "--id-column")
_WHOLE = re.compile(r"-?[0-9]+|0x[0-9a-f]+", re.IGNORECASE)


class IdError(InputDataError):
    """An id the output format cannot hold. ``position`` is its row in the ids checked, so
    that the scorer can name the input's line and column."""

    def __init__(self, position: int, problem: str) -> None:
        self.position, self.problem = position, problem
        super().__init__(problem)


def npy_ids(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Ids as NPY's int64 key field: whole numbers as Arrow's integer parser reads them
    (``12``, ``-3``, ``007``, ``0x1f``), within int64's range.

    Raises IdError for the first other one (an empty id, text, ``1.0``, ``1e3``, a number
    beyond int64): NPY has no string type and no empty value.
    """
    from .readers.csv_diagnosis import INT_PATTERN, castable

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_integer(column.type) and column.type != pa.uint64():
        return column.cast(pa.int64())
    if not pa.types.is_string(column.type):
        column = column.cast(pa.string())
    ok, values = castable(column.fill_null(""), pa.int64(), INT_PATTERN)
    if column.null_count:
        ok &= ~to_numpy(column.is_null())
    if ok.all():
        return values
    i = int(np.argmin(ok))
    value = column[i].as_py()
    if not value:
        problem = "empty id"
    elif _WHOLE.fullmatch(value):
        problem = (f"id {_shown(value)} is beyond int64 "
                   f"({np.iinfo(np.int64).min}..{np.iinfo(np.int64).max})")
    else:
        problem = f"id {_shown(value)} is not a whole number"
    raise IdError(i, f"{problem}: {NPY_IDS}")


def check_npy_ids(source: Source, batch: Batch, before: int | None = None) -> None:
    """Fail the file at the first id NPY output cannot hold (among the rows before row
    ``before``), named by line (or row) and column as bad values are.

    Checked as the rows are read, not as they are written: a part of a file split on a
    cluster knows its lines only then (a LineError is renumbered into the whole file's).
    """
    ids = batch.ids
    if ids is None:
        return
    if before is not None:
        ids = ids.slice(0, int(np.searchsorted(batch.rows, before)))
    try:
        npy_ids(ids)
    except IdError as exc:
        i = exc.position
        (line,) = batch.line_numbers(np.array([i]))
        column = source.id_idx if source.id_idx is not None else 0
        name = source.column_names[column] if source.column_names else None
        where = f", column {column + 1}" + (f" ({name})" if name else "")
        if line is not None:
            raise LineError(source.display, line, f"{where}: {exc.problem}") from None
        raise InputDataError(f"{source.display}: row {int(batch.rows[i])}{where}: "
                             f"{exc.problem}") from None


def _shown(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


_WRITERS: dict[str, Any] = {
    "csv": CsvWriter,
    "csv.gz": lambda sink, schema: CsvWriter(sink, schema, gz=True),
    "tsv": lambda sink, schema: CsvWriter(sink, schema, delimiter="\t"),
    "tsv.gz": lambda sink, schema: CsvWriter(sink, schema, delimiter="\t", gz=True),
    "parquet": ParquetWriter, "jsonl": JsonlWriter, "npy": NpyWriter,
}


def open_writer(fmt: str, sink: Path | BinaryIO, schema: pa.Schema) -> Writer:
    """A writer of ``fmt`` predictions to a temporary path or a stream (stdout)."""
    writer: Writer = _WRITERS[fmt](sink, schema)
    return writer


def stream_sink(dst: str) -> BinaryIO:
    """The stream an output is written into: stdout for ``-``, else the device or FIFO named.

    Raises WriteError when stdout is closed (a cron line with ``>&-``).
    """
    if dst != STDOUT:
        return open(dst, "wb")
    stream = sys.stdout
    if stream is None or getattr(stream, "buffer", None) is None:
        raise WriteError("-: cannot write to stdout: it is closed; give -o FILE")
    return stream.buffer


REJECT_COLUMNS = ["row", "line", "column", "column_name", "reason", "text"]


class RejectReport:
    """The reject report of one input, written as rejects are found: to a temporary file
    beside its final name, committed with the output (or discarded with it). Holds no rejected
    row in memory, however many there are."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._out: AtomicFile | None = None
        self._fh: io.TextIOWrapper | None = None
        self._csv: Any = None

    def add(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        try:
            if self._out is None:
                self._out = AtomicFile(self.path)
                self._fh = open(self._out.tmp, "w", encoding="utf-8",  # noqa: SIM115
                                errors="backslashreplace", newline="")
                self._csv = csv.writer(self._fh, lineterminator="\n")
                self._csv.writerow(REJECT_COLUMNS)
            self._csv.writerows(
                [r.row, "" if r.line is None else r.line, "" if r.column is None else r.column,
                 r.column_name or "", r.reason, r.text] for r in rejects)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        self.count += len(rejects)

    def commit(self, *, sync_dir: bool = True) -> None:
        """Put the report under its final name (when there was any reject)."""
        if self._out is not None and self._fh is not None:
            self._fh.close()
            self._out.commit(sync_dir=sync_dir)
            self._out = None

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        if self._out is not None:
            self._out.discard()
            self._out = None


def write_report(path: str, data: bytes) -> None:
    """Write a report (the summary, the metrics): to stdout for ``-``, into a device or FIFO
    as a stream, else atomically (checked by the run's plan, or by
    :func:`.plan.report_is_safe`)."""
    if path == STDOUT or is_special(path):
        try:
            sink = stream_sink(path)
            try:
                sink.write(data)
                sink.flush()
            finally:
                if path != STDOUT:
                    with contextlib.suppress(OSError):  # what flush could not write
                        sink.close()
        except OSError as exc:
            raise write_error(path, exc) from None
        return
    write_atomic_bytes(Path(path), data)
