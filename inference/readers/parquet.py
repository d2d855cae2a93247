"""Parquet reader: record batches straight from pyarrow, columns chosen by name."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ..arrow import to_numpy
from ..contract import N_FEATURES
from ..errors import InputDataError
from .base import Batch, Reject, Source, as_feature_matrix, resolve_column
from .read_options import ReadOptions


class ParquetSource(Source):
    """Reads a Parquet file whose columns are 64 numeric features plus optional id and label."""

    def __init__(self, stream: io.BufferedIOBase, display: str, options: ReadOptions) -> None:
        import pyarrow.parquet as pq

        self.display = display
        self.options = options
        self._stream = stream
        try:
            self._file = pq.ParquetFile(stream)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"{display}: not a valid Parquet file ({exc})") from None
        schema = self._file.schema_arrow
        names = list(schema.names)
        self.column_names = names
        self.id_idx = self.label_idx = None
        if options.id_column is not None:
            self.id_idx = resolve_column(options.id_column, names, True, "--id-column")
            self.id_name = names[self.id_idx]
        if options.label_column is not None:
            self.label_idx = resolve_column(options.label_column, names, True, "--label-column")
        extra = {self.id_idx, self.label_idx}
        self.feature_columns = [i for i in range(len(names)) if i not in extra]
        if len(self.feature_columns) != N_FEATURES:
            raise InputDataError(
                f"{display}: expected {N_FEATURES} feature columns, found "
                f"{len(self.feature_columns)} ({len(names)} columns in all)"
            )
        for i in self.feature_columns:
            t = schema.field(i).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise InputDataError(
                    f"{display}: column {i + 1} ({names[i]}) has type {t}; expected numbers"
                )
        self.n_rows = self._file.metadata.num_rows
        if self.n_rows == 0:
            raise InputDataError(f"{display}: the file has no rows")

    def batches(self) -> Iterator[Batch]:
        first = 0
        for rb in self._file.iter_batches(batch_size=self.options.chunk_rows):
            n = rb.num_rows
            cols = []
            bad = np.zeros(n, dtype=bool)
            for i in self.feature_columns:
                col = rb.column(i)
                if col.null_count:
                    bad |= to_numpy(col.is_null())
                    col = col.fill_null(0)
                cols.append(to_numpy(col).astype(np.float64, copy=False))
            with np.errstate(over="ignore", invalid="ignore"):
                X = as_feature_matrix(cols)
            bad |= ~np.isfinite(X).all(axis=1)
            batch = Batch(X=X, rows=np.arange(first, first + n), n_rows=n)
            if self.id_idx is not None:
                batch.ids = rb.column(self.id_idx).cast(pa.string())
            if self.label_idx is not None:
                truth = rb.column(self.label_idx)
                if truth.null_count:
                    bad |= to_numpy(truth.is_null())
                    truth = truth.fill_null(-1)
                batch.truth = to_numpy(truth.cast(pa.int64()))
            if bad.any():
                for r in np.flatnonzero(bad):
                    batch.rejects.append(self._reject(rb, int(r), first + int(r)))
                batch.keep(~bad)
            first += n
            yield batch

    def _reject(self, rb: pa.RecordBatch, r: int, row: int) -> Reject:
        for i in [*self.feature_columns, self.label_idx]:
            if i is None:
                continue
            value = rb.column(i)[r].as_py()
            name = self.column_names[i] if self.column_names else None
            if value is None:
                return Reject(row, None, i + 1, name, "empty cell")
            if i != self.label_idx and not np.isfinite(np.float32(value)):
                return Reject(row, None, i + 1, name, f"value {value!r} is not finite")
        return Reject(row, None, None, None, "row cannot be scored")

    def digest(self) -> str:
        sha = hashlib.sha256()
        self._stream.seek(0)
        while chunk := self._stream.read(8 << 20):
            sha.update(chunk)
        return sha.hexdigest()

    def close(self) -> None:
        self._stream.close()
