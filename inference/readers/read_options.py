"""How to read an input, checked once: the options every reader takes.

Light on purpose (no numpy, no pyarrow): the command line builds these, and shows the
delimiter names in ``--help``, before it loads the scoring stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import UsageError
from ..formats import INPUT_FORMATS

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
    chunk_bytes: int = 8 << 20
    chunk_rows: int = 1 << 17

    def __post_init__(self) -> None:
        if self.input_format is not None and self.input_format not in INPUT_FORMATS:
            raise UsageError(f"unknown input format {self.input_format!r}; choose from "
                             f"{', '.join(INPUT_FORMATS)}")
        if self.delimiter is None:
            return
        delimiter = DELIMITER_NAMES.get(self.delimiter)
        if delimiter is None:
            raise UsageError(
                f"unknown delimiter {self.delimiter!r}; choose {_delimiter_choices()}"
            )
        object.__setattr__(self, "delimiter", delimiter)
