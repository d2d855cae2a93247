"""Parquet reader: bounded record batches, one row group at a time, columns chosen by name.

A row group of a small file is read whole; in a large file a piece of each column chunk at a
time, once its page headers are proven to fit their chunks (:mod:`.parquet_pages`).

Whatever the file claims is checked against what it holds: the footer's row count against
the row groups', each row group's against the rows it yields. A corrupt page, a column name
that is not UTF-8 or an id or label column of a type that cannot be one is an error naming
the file and the column, never a traceback; bad values are found a column at a time.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from ..arrow import from_numpy, to_numpy
from ..contract import N_FEATURES
from ..errors import InputDataError, read_error
from .base import (
    Batch,
    Reject,
    Source,
    as_feature_matrix,
    kept_columns,
    label_outside,
    labels_outside,
    output_names,
    resolve_column,
    value_problem,
)
from .csv_diagnosis import INT_PATTERN, castable
from .parquet_pages import PageError, check_chunk, chunk_ranges
from .read_options import KEEP_ALL, ReadOptions
from .streams import read_up_to, spool

#: Decoded bytes a record batch may take (rows = this / (8 bytes x columns read)): Arrow
#: holds a few batches while it decodes, so this bounds the reader's memory.
BATCH_BYTES = 8 << 20
#: A file larger than this is read a piece of each column chunk at a time, after the row
#: group's page headers are checked (see :mod:`.parquet_pages`); in a smaller one a row
#: group's chunks are read whole, which no page header can inflate. (pyarrow's per-chunk
#: metadata cannot be asked: it aborts the process on some corrupt footers.)
READ_WHOLE_BYTES = 64 << 20
#: The piece of a column chunk read at a time.
BUFFER_BYTES = 1 << 20
#: The bytes a Parquet file starts (and ends) with; "PARE" where its footer is encrypted.
MAGICS = (b"PAR1", b"PARE")


def _id_type_ok(t: pa.DataType) -> bool:
    """An id is shown as text: text, numbers, dates and times can be."""
    if pa.types.is_dictionary(t):
        return _id_type_ok(t.value_type)
    return (_is_text(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
            or pa.types.is_decimal(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t))


def _carried_type(t: pa.DataType) -> pa.DataType:
    """The type a kept column has in the output (see ``ParquetSource._carried``)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.string() if _is_text(t) else t


def _is_text(t: pa.DataType) -> bool:
    return (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
            or getattr(pa.types, "is_string_view", lambda _: False)(t)
            or getattr(pa.types, "is_binary_view", lambda _: False)(t))


def _label_type_ok(t: pa.DataType) -> bool:
    """Labels are integers: integer columns, or floats and text holding whole numbers."""
    if pa.types.is_dictionary(t):
        return _label_type_ok(t.value_type)
    return pa.types.is_integer(t) or pa.types.is_floating(t) or _is_text(t)


class ParquetSource(Source):
    """Reads a Parquet file whose columns are 64 numeric features plus optional id and label."""

    def __init__(self, stream: io.BufferedIOBase, display: str, options: ReadOptions) -> None:
        import pyarrow.parquet as pq

        self.display = display
        self.options = options
        self._stream = stream
        self._chunks: list[list[tuple[int, int]]] | None = None
        try:
            stream.seek(0)
            _check_magic(stream.read(len(MAGICS[0])), self._fail)
            stream.seek(0)
            self._file = pq.ParquetFile(stream, pre_buffer=False,
                                        page_checksum_verification=True)
            schema = self._file.schema_arrow
            metadata = self._file.metadata
            self._buffered = self._buffered_file(stream)
        except UnicodeDecodeError:
            raise self._fail("a column name is not UTF-8 text; save the names as UTF-8") from None
        except OSError as exc:
            raise self._broken(exc, "not a valid Parquet file") from None
        except pa.ArrowException as exc:
            raise self._fail(f"not a valid Parquet file ({_first_line(exc)})") from None
        names = list(schema.names)
        self.column_names = names
        self._names = names
        self.id_idx = self.label_idx = None
        if options.id_column is not None:
            self.id_idx = resolve_column(options.id_column, names, True, "--id-column",
                                         display)
            self.id_name = output_names([self.id_idx], names, True)[0]
        if options.label_column is not None:
            self.label_idx = resolve_column(options.label_column, names, True,
                                            "--label-column", display)
        self.kept_idx = kept_columns(options.keep_columns, names, True, self.id_idx, display)
        extra = {self.id_idx, self.label_idx}
        if options.keep_columns != KEEP_ALL:
            extra.update(self.kept_idx)  # named columns are carried, not scored
        self.feature_columns = [i for i in range(len(names)) if i not in extra]
        if len(self.feature_columns) != N_FEATURES:
            raise self._fail(
                f"expected {N_FEATURES} feature columns, found "
                f"{len(self.feature_columns)} ({len(names)} columns in all)"
            )
        for i in self.feature_columns:
            t = schema.field(i).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                raise self._fail(f"column {i + 1} ({names[i]}) has type {t}; expected numbers")
        for idx, ok, what in ((self.id_idx, _id_type_ok, "--id-column: an id must be text, "
                               "a number or a date"),
                              (self.label_idx, _label_type_ok, "--label-column: labels must "
                               "be integers")):
            if idx is not None and not ok(schema.field(idx).type):
                raise self._fail(f"column {idx + 1} ({names[idx]}) has type "
                                 f"{schema.field(idx).type}, which cannot be the {what}")
        for i in self.kept_idx:
            if not _id_type_ok(schema.field(i).type):
                raise self._fail(f"column {i + 1} ({names[i]}) has type {schema.field(i).type}, "
                                 "which --keep-columns cannot carry: it takes text, numbers, "
                                 "booleans, dates and times")
        self.kept_fields = tuple(
            pa.field(name, _carried_type(schema.field(i).type))
            for i, name in zip(self.kept_idx, output_names(self.kept_idx, names, True),
                               strict=True))
        self.n_rows = metadata.num_rows
        held = sum(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))
        if self.n_rows != held:
            raise self._fail(f"the footer declares {self.n_rows} rows but its row groups "
                             f"hold {held}; the file is corrupt")
        wanted = sorted({i for i in (*self.feature_columns, *self.kept_idx, self.id_idx,
                                     self.label_idx) if i is not None})
        if len(set(names)) == len(names):
            self._columns: list[str] | None = [names[i] for i in wanted]
            #: Where each column of the file is in a record batch read.
            self._position = {i: k for k, i in enumerate(wanted)}
        else:  # duplicate names cannot select columns: read them all
            self._columns = None
            self._position = {i: i for i in range(len(names))}

    @classmethod
    def from_stream(cls, stream: io.BufferedIOBase, display: str,
                    options: ReadOptions) -> ParquetSource:
        """Read a pipe or a device: its magic bytes first, checked as a file's are, then the
        whole stream copied to a temporary file (the footer, which says what the file holds,
        is at its end)."""
        try:
            head = read_up_to(stream, len(MAGICS[0]))
        except OSError as exc:
            raise read_error(display, exc) from None
        _check_magic(head, lambda message: InputDataError(f"{display}: {message}"))
        spooled, _ = spool(stream, display, head=head)
        try:
            return cls(spooled, display, options)
        except BaseException:
            spooled.close()
            raise

    def _buffered_file(self, stream: io.BufferedIOBase) -> Any:
        """The same file opened to read column chunks in pieces, when it is too large to read
        a row group whole (None otherwise, or when the stream has no descriptor)."""
        import pyarrow.parquet as pq

        try:
            size = os.fstat(stream.fileno()).st_size
        except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
            return None
        if size <= READ_WHOLE_BYTES:  # no row group can take more than the file
            return None
        return pq.ParquetFile(stream, metadata=self._file.metadata, pre_buffer=False,
                              buffer_size=BUFFER_BYTES, page_checksum_verification=True)

    def _check_pages(self, group: int) -> None:
        """Prove every page of a row group read in pieces lies within its column chunk."""
        fd = self._stream.fileno()
        size = os.fstat(fd).st_size
        try:
            if self._chunks is None:
                self._chunks = chunk_ranges(fd, size)
            if group >= len(self._chunks):
                raise PageError(f"the footer lists {len(self._chunks)} row groups")
            for start, length in self._chunks[group]:
                check_chunk(fd, start, length, size)
        except PageError as exc:
            raise self._fail(f"row group {group} is corrupt ({exc})") from None

    def _fail(self, message: str) -> InputDataError:
        return InputDataError(f"{self.display}: {message}")

    def _broken(self, exc: OSError, what: str) -> Exception:
        """An OSError from the operating system (with an errno) is an I/O error; pyarrow's
        own (without one) says the bytes are not what they claim to be."""
        if exc.errno is not None:
            return read_error(self.display, exc)
        return self._fail(f"{what} ({_first_line(exc)})")

    def batches(self) -> Iterator[Batch]:
        metadata = self._file.metadata
        rows = max(1, min(self.options.chunk_rows, BATCH_BYTES // (8 * len(self._position))))
        first = 0
        for group in range(metadata.num_row_groups):
            declared, held = metadata.row_group(group).num_rows, 0
            reader = self._file
            if self._buffered is not None:
                self._check_pages(group)
                reader = self._buffered
            batches = reader.iter_batches(batch_size=rows, row_groups=[group],
                                          columns=self._columns, use_threads=True)
            while True:
                try:
                    rb = next(batches, None)
                except OSError as exc:
                    raise self._broken(exc, f"row group {group} is corrupt") from None
                except pa.ArrowException as exc:
                    raise self._fail(f"row group {group} is corrupt ({_first_line(exc)})"
                                     ) from None
                if rb is None:
                    break
                held += rb.num_rows
                if held > declared:
                    break
                yield self._batch(rb, first)
                first += rb.num_rows
            if held != declared:
                raise self._fail(f"row group {group} declares {declared} rows but holds "
                                 f"{'more' if held > declared else held}; the file is corrupt")

    def _column(self, rb: pa.RecordBatch, i: int) -> pa.Array:
        return rb.column(self._position[i])

    def _batch(self, rb: pa.RecordBatch, first: int) -> Batch:
        """Features, ids and labels of one record batch; rows with a bad value are rejected
        at their first bad column (empty, NaN, infinite, beyond float32), then by label."""
        n = rb.num_rows
        cols, nulls = [], []
        for i in self.feature_columns:
            col = self._column(rb, i)
            nulls.append(to_numpy(col.is_null()) if col.null_count else None)
            if col.null_count:
                col = col.fill_null(0)
            cols.append(to_numpy(col).astype(np.float64, copy=False))
        with np.errstate(over="ignore", invalid="ignore"):
            X = as_feature_matrix(cols)
        problems: dict[int, tuple[int, str]] = {}  # rows of bad ids and labels (rare)
        reasons: list[str] = []
        bad_rows, bad_columns = np.empty(0, np.int64), np.empty(0, np.int64)
        if any(m is not None for m in nulls) or (X.size and not np.isfinite(X.min() + X.max())):
            bad_rows, bad_columns, reasons = self._feature_problems(X, cols, nulls)
        batch = Batch(X=X, rows=np.arange(first, first + n), n_rows=n)
        if self.id_idx is not None:
            batch.ids = self._text(self._column(rb, self.id_idx), self.id_idx, "id", problems)
        if self.label_idx is not None:
            batch.truth = self._labels(self._column(rb, self.label_idx), problems)
        batch.kept = [self._carried(self._column(rb, i), i, problems) for i in self.kept_idx]
        if problems:  # a row is rejected for its first problem: features come first
            keep = np.ones(n, dtype=bool)
            keep[bad_rows] = False
            more = [r for r in sorted(problems) if keep[r]]
            bad_rows = np.concatenate([bad_rows, np.array(more, dtype=np.int64)])
            bad_columns = np.concatenate([bad_columns, np.array(
                [problems[r][0] for r in more], dtype=np.int64)])
            reasons = reasons + [problems[r][1] for r in more]
            order = np.argsort(bad_rows, kind="stable")
            bad_rows, bad_columns = bad_rows[order], bad_columns[order]
            reasons = [reasons[k] for k in order.tolist()]
        if len(bad_rows):
            names = self._names
            batch.rejects = [Reject(first + r, None, c + 1, names[c], reason) for r, c, reason
                             in zip(bad_rows.tolist(), bad_columns.tolist(), reasons,
                                    strict=True)]
            keep = np.ones(n, dtype=bool)
            keep[bad_rows] = False
            batch.keep(keep)
        return batch

    def _feature_problems(self, X: np.ndarray, cols: list[np.ndarray],
                          nulls: list[np.ndarray | None]
                          ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(rows, file columns, reasons) of the rows with a bad feature, at the first one: an
        empty cell, or a value that is NaN, infinite or beyond float32. Found in bulk."""
        bad = ~np.isfinite(X)
        for k, mask in enumerate(nulls):
            if mask is not None:
                bad[:, k] |= mask
        rows = np.flatnonzero(bad.any(axis=1))
        firsts = np.argmax(bad[rows], axis=1)
        empty = np.zeros(len(rows), dtype=bool)
        for k, mask in enumerate(nulls):
            if mask is not None:
                at = firsts == k
                empty[at] = mask[rows[at]]
        reasons = ["empty cell"] * len(rows)
        for i in np.flatnonzero(~empty).tolist():
            value = float(cols[int(firsts[i])][rows[i]])
            reasons[i] = f"value {value!r} {value_problem(value) or 'is not finite'}"
        return rows, np.asarray(self.feature_columns, dtype=np.int64)[firsts], reasons

    def _text(self, col: pa.Array, column: int, what: str,
              problems: dict[int, tuple[int, str]]) -> pa.Array:
        """A column as text; bytes that are not UTF-8 reject their row."""
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        try:
            return col.cast(pa.string())
        except pa.ArrowInvalid:
            pass
        texts: list[str | None] = []
        for r, value in enumerate(col.to_pylist()):
            try:
                texts.append(None if value is None else bytes(value).decode("utf-8"))
            except UnicodeDecodeError:
                problems.setdefault(r, (column, f"the {what} is bytes that are not UTF-8 text"))
                texts.append(None)
        return pa.array(texts, pa.string())

    def _carried(self, col: pa.Array, column: int,
                 problems: dict[int, tuple[int, str]]) -> pa.Array:
        """A kept column as the output carries it: decoded from a dictionary, bytes as text."""
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if _is_text(col.type):
            return self._text(col, column, "value", problems)
        return col

    def _labels(self, col: pa.Array, problems: dict[int, tuple[int, str]]) -> np.ndarray:
        """The labels as int64; an empty, fractional, non-finite or unreadable label, or one
        outside 0..9, rejects its row (0 stands in its place)."""
        assert self.label_idx is not None
        i = self.label_idx
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        null = to_numpy(col.is_null()) if col.null_count else np.zeros(len(col), dtype=bool)
        reasons: dict[int, str] = {}
        if pa.types.is_integer(col.type):
            values = to_numpy(col.fill_null(0)) if col.null_count else to_numpy(col)
            too_big = values > np.iinfo(np.int64).max if values.dtype == np.uint64 else None
            if too_big is not None and too_big.any():
                reasons.update((r, f"label {int(values[r])} is beyond int64") for r in
                               np.flatnonzero(too_big).tolist())
                values = np.where(too_big, 0, values)
            labels = values.astype(np.int64)
        elif pa.types.is_floating(col.type):
            values = to_numpy(col.fill_null(0.0)).astype(np.float64)
            with np.errstate(invalid="ignore"):
                whole = np.isfinite(values) & (np.floor(values) == values) & (
                    np.abs(values) < 2.0**63)
            reasons.update((r, f"label {float(values[r])!r} is not an integer")
                           for r in np.flatnonzero(~whole & ~null).tolist())
            labels = np.where(whole, values, 0).astype(np.int64)
        else:
            import pyarrow.compute as pc  # labels as text are rare: keep it off every start

            text = self._text(col, i, "label", problems)
            cells = pc.utf8_trim(text.fill_null(""), characters=" \t")
            ok, parsed = castable(cells, pa.int64(), INT_PATTERN)
            reasons.update((r, f"label {_short(v)} is not an integer") for r, v in zip(
                np.flatnonzero(~ok & ~null).tolist(),
                cells.filter(from_numpy(~ok & ~null)).to_pylist(), strict=True))
            labels = to_numpy(parsed).copy()
        # Labels refused above are 0 by now: only readable ones can be outside 0..9.
        reasons.update((r, label_outside(int(labels[r])))
                       for r in np.flatnonzero(labels_outside(labels) & ~null).tolist())
        for r in np.flatnonzero(null).tolist():
            problems.setdefault(r, (i, "empty cell"))
        for r, reason in reasons.items():
            problems.setdefault(r, (i, reason))
        return labels

    def digest(self) -> str:
        sha = hashlib.sha256()
        self._stream.seek(0)
        while chunk := self._stream.read(8 << 20):
            sha.update(chunk)
        return sha.hexdigest()

    def close(self) -> None:
        self._stream.close()


def _check_magic(head: bytes, fail: Callable[[str], Exception]) -> None:
    """Refuse an input whose first bytes are not Parquet's magic: a stream is checked before
    it is copied, and a file the same way, with the same words. Fewer bytes are a whole input
    too short to be Parquet, which pyarrow names by its size."""
    if len(head) >= len(MAGICS[0]) and head[:len(MAGICS[0])] not in MAGICS:
        raise fail("not a valid Parquet file (bad magic bytes: it does not start with PAR1)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text).rstrip(": ")


def _short(token: Any, limit: int = 40) -> str:
    token = str(token).strip()
    return repr(token if len(token) <= limit else token[:limit] + "...")
