"""What every reader yields: batches of validated float32 rows, and the rows it rejected."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..arrow import from_numpy
from ..contract import CLASS_LABELS, FEATURE_MAX, FEATURE_MIN, N_FEATURES
from ..errors import UsageError
from .read_options import KEEP_ALL


@dataclass(frozen=True, slots=True)
class Reject:
    """One input row that could not be scored, and why."""

    row: int
    line: int | None
    column: int | None
    column_name: str | None
    reason: str
    text: str = ""

    def where(self) -> str:
        """Where the problem is, as a person would look for it: line (or row) and column."""
        place = f"line {self.line}" if self.line is not None else f"row {self.row}"
        if self.column is not None:
            place += f", column {self.column}"
            if self.column_name:
                place += f" ({self.column_name})"
        return place


@dataclass
class Batch:
    """A run of consecutive input rows: the good ones as features, the bad ones as rejects.

    ``rows`` are 0-based data-row numbers in the input (header and blank lines excluded), so
    scored and rejected rows together cover ``first_row .. first_row + n_rows - 1`` exactly.
    """

    X: np.ndarray
    rows: np.ndarray
    n_rows: int
    #: The input's id column (an Arrow array), when it has one.
    ids: pa.Array | None = None
    #: The input columns carried to the output (``--keep-columns``), as Arrow arrays.
    kept: list[pa.Array] = field(default_factory=list)
    truth: np.ndarray | None = None
    lines: np.ndarray | None = None
    rejects: list[Reject] = field(default_factory=list)
    #: Maps row positions in this batch to file line numbers, computed only when asked.
    line_fn: Callable[[np.ndarray], np.ndarray] | None = None
    #: Maps row positions to their lines' text as reject reports quote it, for the rows a
    #: later check may reject (a text reader sets it when some value is outside 0..16).
    text_fn: Callable[[np.ndarray], list[str]] | None = None
    feature_columns: list[int] | None = None
    column_names: list[str] | None = None
    _extrema: tuple[float, float] | None = field(default=None, repr=False)

    def extrema(self) -> tuple[float, float]:
        """(min, max) of the features, computed once: the finiteness check of the readers
        and the range check of the scorer share one pass (NaN propagates into both)."""
        if self._extrema is None:
            X = self.X
            self._extrema = (float(X.min()), float(X.max())) if X.size else (0.0, 0.0)
        return self._extrema

    def line_numbers(self, idx: np.ndarray) -> list[int | None]:
        """File line numbers of the rows at positions ``idx`` (None for non-text inputs)."""
        if self.lines is not None:
            return [int(v) for v in self.lines[idx]]
        if self.line_fn is not None:
            return [int(v) for v in self.line_fn(idx)]
        return [None] * len(idx)

    def line_texts(self, idx: np.ndarray) -> list[str]:
        """The text of the rows at positions ``idx`` ("" for inputs without lines)."""
        if self.text_fn is None:
            return [""] * len(idx)
        return self.text_fn(idx)

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask`` is False (they were rejected by a later check)."""
        self.X = np.ascontiguousarray(self.X[mask])
        self._extrema = None
        self.rows = self.rows[mask]
        if self.ids is not None or self.kept:
            arrow_mask = from_numpy(mask)
            if self.ids is not None:
                self.ids = self.ids.filter(arrow_mask)
            self.kept = [column.filter(arrow_mask) for column in self.kept]
        if self.truth is not None:
            self.truth = self.truth[mask]
        if self.lines is not None:
            self.lines = self.lines[mask]
        elif self.line_fn is not None:
            kept, fn = np.flatnonzero(mask), self.line_fn
            self.line_fn = lambda idx: fn(kept[idx])
        if self.text_fn is not None:
            kept_rows, texts = np.flatnonzero(mask), self.text_fn
            self.text_fn = lambda idx: texts(kept_rows[idx])


class Source:
    """An opened input: its batches, plus what the summary needs to know about it."""

    #: The input as messages name it: its path, or ``<stdin>``.
    display: str
    #: Name of the id column in the output, when the input carries ids.
    id_name: str | None = None
    #: Position (0-based) of the id column in the input, for messages.
    id_idx: int | None = None
    #: The columns carried to the output (``--keep-columns``), named as in the input.
    kept_fields: tuple[pa.Field, ...] = ()
    #: Name of each feature column, for messages (column numbers are 1-based).
    feature_columns: list[int]
    column_names: list[str] | None = None

    def batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def restrict(self, begin: int, stop: int) -> None:
        """Read only one part of the input, before :meth:`batches` (formats that can say
        what ``begin`` and ``stop`` count)."""
        raise UsageError(f"{self.display}: this format cannot be read in parts")

    def consumed(self) -> int:
        """Bytes of the input read so far, for progress bars."""
        return 0

    def digest(self) -> str | None:
        """The sha256 of the bytes read, once they have all been read (None if not tracked)."""
        return None

    def close(self) -> None:
        """Release the file handle."""


def value_problem(value: float) -> str | None:
    """Why a parsed feature value cannot be scored, or None when it can."""
    if np.isnan(value):
        return "is not a number (NaN)"
    if not np.isfinite(value):
        return "is infinite"
    with np.errstate(over="ignore"):
        narrowed = np.float32(value)
    if not np.isfinite(narrowed):
        return "is outside the float32 range"
    return None


def labels_outside(truth: np.ndarray) -> np.ndarray:
    """Mask of the true labels that are no digit's (outside 0..9): a wrong label column, or
    a code such as -1 for "unknown", would count as the model's mistake."""
    return (truth < CLASS_LABELS[0]) | (truth > CLASS_LABELS[-1])


def label_outside(value: int) -> str:
    """Why a true label is refused, for a label :func:`labels_outside` marks."""
    return f"label {value} is outside {CLASS_LABELS[0]}..{CLASS_LABELS[-1]}"


def check_values(X: np.ndarray, extrema: tuple[float, float] | None = None) -> tuple[bool, bool]:
    """(all finite, all within 0..16) for float32 rows, from their min and max.

    NaN propagates through min and max, so one in-range min/max proves both at once.
    """
    if X.size == 0:
        return True, True
    lo, hi = extrema if extrema is not None else (X.min(), X.max())
    if lo >= FEATURE_MIN and hi <= FEATURE_MAX:
        return True, True
    finite = bool(np.isfinite(X).all())
    return finite, False


def resolve_column(spec: str | int, names: list[str], has_header: bool, what: str,
                   display: str) -> int:
    """The 0-based position of a column given by name (needs a header) or by number.

    Columns are numbered from 1, in options as in every message ("line 3, column 5"), as cut,
    awk and csvkit number them; -1 is the last column. A name the header holds twice is
    refused (which one is meant?). Messages start with the file: in a run over many files,
    the one whose columns differ must be found.
    """
    if isinstance(spec, str) and spec in names and has_header:
        where = [i + 1 for i, name in enumerate(names) if name == spec]
        if len(where) > 1:
            raise UsageError(f"{display}: {what} {spec!r} names columns {where[0]} and "
                             f"{where[1]}; give the column's number")
        return names.index(spec)
    try:
        number = int(spec)
    except ValueError:
        if not has_header:
            raise UsageError(
                f"{display}: {what} {spec!r} is a name, but the file has no header; give the "
                "column's number (from 1)"
            ) from None
        raise UsageError(
            f"{display}: {what} {spec!r} is not a column; the header has: "
            f"{', '.join(names[:8])}" + (", ..." if len(names) > 8 else "")
        ) from None
    if number == 0:
        raise UsageError(f"{display}: {what} 0: columns are numbered from 1, as in messages; "
                         "the first column is 1")
    if not -len(names) <= number <= len(names):
        raise UsageError(f"{display}: {what} {number} is out of range: the file has "
                         f"{len(names)} columns")
    return number - 1 if number > 0 else number % len(names)


def kept_columns(spec: str | Sequence[str | int] | None, names: list[str], has_header: bool,
                 id_idx: int | None, display: str) -> list[int]:
    """The 0-based positions of the ``--keep-columns``: every column for ``all`` (in the
    input's order), else the ones given (in that order). The id column is the output's key
    already: it is not carried twice."""
    if spec is None:
        return []
    if spec == KEEP_ALL:
        return [i for i in range(len(names)) if i != id_idx]
    positions: list[int] = []
    for column in spec:
        i = resolve_column(column, names, has_header, "--keep-columns", display)
        if i in positions:
            raise UsageError(f"{display}: --keep-columns: {column} is column {i + 1}, named "
                             "already")
        positions.append(i)
    return [i for i in positions if i != id_idx]


def output_names(positions: list[int], names: list[str], has_header: bool) -> list[str]:
    """The names carried columns take in the output: their header's, else ``column_N``
    (numbered from 1, as in messages)."""
    return [names[i] if has_header and names[i] else f"column_{i + 1}" for i in positions]


def out_of_range_rows(X: np.ndarray) -> np.ndarray:
    """Boolean mask of rows with a value outside the training range 0..16."""
    return np.any((X < FEATURE_MIN) | (X > FEATURE_MAX), axis=1)


def first_out_of_range_column(row: np.ndarray) -> int:
    return int(np.argmax((row < FEATURE_MIN) | (row > FEATURE_MAX)))


def as_feature_matrix(columns: list[np.ndarray]) -> np.ndarray:
    """Stack per-column arrays into C-ordered float32 rows (the model's layout).

    Stacking first and transposing once is several times faster than filling strided columns.
    """
    if len(columns) != N_FEATURES:
        raise AssertionError(f"{len(columns)} feature columns reached the matrix")
    stacked = np.stack(columns)
    out = np.empty((stacked.shape[1], N_FEATURES), dtype=np.float32)
    out[...] = stacked.T
    return out
