"""How to read an input, checked once: the options every reader takes.

Light on purpose (no numpy, no pyarrow): the command line builds these, and shows the
delimiter names in ``--help``, before it loads the scoring stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import UsageError
from ..formats import INPUT_FORMATS

#: Why an NPY input refuses the options that name columns.
NPY_HAS_NO_COLUMNS = ("an NPY file holds only the 64 features; --id-column, --label-column "
                      "and --keep-columns name columns of CSV or Parquet inputs")

#: Every name a delimiter may be given by, and the delimiter it stands for: ",", tab, ";" or
#: "whitespace" (runs of blanks). Both ``\\t`` as typed in a shell and a tab character mean tab.
DELIMITER_NAMES: Mapping[str, str] = MappingProxyType({
    ",": ",", "comma": ",",
    "\\t": "\t", "\t": "\t", "tab": "\t",
    ";": ";", "semicolon": ";",
    "whitespace": "whitespace", "space": "whitespace",
})


def _delimiter_choices() -> str:
    """The delimiter names as a person types them (a tab character goes without saying)."""
    names = [f"'{name}'" for name in DELIMITER_NAMES if name != "\t"]
    return f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class ReadOptions:
    """How to read an input file; the CLI's reading flags, one field each.

    ``delimiter`` takes any name in :data:`DELIMITER_NAMES` and holds the delimiter it means.
    """

    input_format: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    id_column: str | int | None = None
    label_column: str | int | None = None
    #: Input columns carried to the output: names or numbers (from 1), or ``"all"``.
    keep_columns: str | Sequence[str | int] | None = None
    chunk_bytes: int = 8 << 20
    chunk_rows: int = 1 << 17

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format not in INPUT_FORMATS:
            raise UsageError(f"unknown input format {self.input_format!r}; choose from "
                             f"{', '.join(INPUT_FORMATS)}")
        object.__setattr__(self, "keep_columns", _kept(self.keep_columns))
        if self.delimiter is None:
            return
        delimiter = DELIMITER_NAMES.get(self.delimiter)
        if delimiter is None:
            raise UsageError(
                f"unknown delimiter {self.delimiter!r}; choose {_delimiter_choices()}"
            )
        object.__setattr__(self, "delimiter", delimiter)

    def names_columns(self) -> bool:
        """Whether an option names input columns (which an NPY input does not have)."""
        return not (self.id_column is None and self.label_column is None
                    and self.keep_columns is None)


#: ``--keep-columns all``: every input column, in the input's order.
KEEP_ALL = "all"


def _kept(spec: str | Sequence[str | int] | None) -> str | tuple[str | int, ...] | None:
    """``keep_columns`` as held: ``"all"``, a tuple of distinct columns, or None for none."""
    if spec is None or spec == KEEP_ALL:
        return spec
    columns = (spec,) if isinstance(spec, str | int) else tuple(spec)
    if not columns or any(c == "" for c in columns):
        raise UsageError("--keep-columns: name at least one column, with no empty names "
                         "between commas (or say all)")
    if KEEP_ALL in columns:
        raise UsageError("--keep-columns: all stands alone; it already keeps every column")
    seen = [c for i, c in enumerate(columns) if c in columns[:i]]
    if seen:
        raise UsageError(f"--keep-columns: {seen[0]} is named twice")
    return columns
