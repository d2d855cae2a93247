"""How a delimited text file is laid out, read from its first lines.

The delimiter (given or detected), whether the first line is a header, and which columns
hold the features, the ids and the labels. The file itself is not read here: the CSV reader
hands over the bytes it has read ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract import N_FEATURES
from ..errors import InputDataError, UsageError
from .base import kept_columns, output_names, resolve_column
from .read_options import KEEP_ALL, ReadOptions
from .sniff import DELIMITERS, HEAD_BYTES, SAMPLE_LINES, detect_delimiter, split_fields

__all__ = ["DELIMITERS", "SAMPLE_LINES", "SNIFF_BYTES", "Layout", "detect_delimiter",
           "first_line", "header_verdict", "layout_of", "sniff_layout", "split_fields"]

#: Bytes read ahead to decide the layout; the first line must end within them.
SNIFF_BYTES = HEAD_BYTES


@dataclass(frozen=True)
class Layout:
    """The columns of a delimited file: how they are separated, named and used (shared by
    the files of one layout: never changed)."""

    delimiter: bytes
    whitespace: bool
    header: bool
    names: list[str]
    feature_idx: list[int]
    id_idx: int | None
    label_idx: int | None
    #: Columns carried to the output (``--keep-columns``), and their names there.
    kept_idx: list[int]
    kept_names: list[str]


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _complete_lines(ahead: bytes, n: int = SAMPLE_LINES + 1) -> list[bytes]:
    lines = ahead.split(b"\n")
    complete = lines[:-1] if len(lines) > 1 else lines
    return complete[:n]


def sniff_layout(ahead: bytes, options: ReadOptions, display: str, line: int = 1) -> Layout:
    """The layout of a file whose first non-blank line, numbered ``line``, starts ``ahead``
    (the byte-order mark and blank lines before it already removed).

    Whether that line is a header is decided by :func:`header_verdict`, unless
    ``options.header`` says.
    """
    first, delim, ws = first_line(ahead, options, display, line)
    return layout_of(first, delim, ws, options, display, line)


def first_line(ahead: bytes, options: ReadOptions, display: str,
               line: int = 1) -> tuple[bytes, bytes, bool]:
    """What decides a file's layout, besides the options: its first line (checked to be
    UTF-8, ended by LF or CRLF, within the read-ahead) and its delimiter (given, or detected
    from its first lines). Two files that agree on these have the same layout."""
    lines = _complete_lines(ahead)
    first = next((ln for ln in lines if ln.strip()), b"")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError:
        raise InputDataError(
            f"{display}: line {line} is not valid UTF-8 text; save the file as UTF-8"
        ) from None
    if b"\r" in first.rstrip(b"\r"):
        raise InputDataError(
            f"{display}: line {line} holds a carriage return inside it: the file seems to "
            "end its lines with CR alone; save it with LF or CRLF line endings"
        )
    if options.delimiter is None:
        delim, ws = detect_delimiter(lines)
    else:  # ReadOptions has checked the name and holds the delimiter it means
        delim, ws = DELIMITERS[options.delimiter], options.delimiter == "whitespace"
    if b"\n" not in ahead and len(ahead) >= SNIFF_BYTES:
        raise InputDataError(
            f"{display}: line {line} is longer than {SNIFF_BYTES} bytes; "
            "this is not a file of 64-feature rows"
        )
    return first, delim, ws


def layout_of(first: bytes, delim: bytes, ws: bool, options: ReadOptions, display: str,
              line: int = 1) -> Layout:
    """The layout that a first line, a delimiter and the options make (``display`` and
    ``line`` only name the file and the line in errors)."""
    fields = split_fields(first, delim, ws)
    n_cols = len(fields)
    header = options.header
    if header is None:
        header = header_verdict(fields, options)
    if header is None:
        given = {_index(spec, n_cols) for spec in _given(options)}
        n_features = n_cols - len(given)
        if None not in given and n_features != N_FEATURES:
            raise _width_error(display, line, n_features, n_cols)  # wrong either way: say why
        raise InputDataError(
            f"{display}: line {line}: cannot tell whether it is a header or data: "
            f"{_ambiguity(fields, options)}; pass --header or --no-header"
        )
    names = [f.strip() for f in fields] if header else [f"column {i + 1}" for i in
                                                          range(n_cols)]
    id_idx = label_idx = None
    if options.id_column is not None:
        id_idx = resolve_column(options.id_column, names, header, "--id-column", display)
    if options.label_column is not None:
        label_idx = resolve_column(options.label_column, names, header, "--label-column",
                                   display)
        if label_idx == id_idx:
            raise UsageError(f"{display}: --id-column and --label-column name the same column")
    kept_idx = kept_columns(options.keep_columns, names, header, id_idx, display)
    extra = {i for i in (id_idx, label_idx) if i is not None}
    if options.keep_columns != KEEP_ALL:
        extra.update(kept_idx)  # named columns are carried, not scored
    feature_idx = [i for i in range(n_cols) if i not in extra]
    if len(feature_idx) != N_FEATURES:
        raise _width_error(display, line, len(feature_idx), n_cols)
    return Layout(delim, ws, header, names, feature_idx, id_idx, label_idx, kept_idx,
                  output_names(kept_idx, names, header))


def _width_error(display: str, line: int, n_features: int, n_cols: int) -> InputDataError:
    hint = ""
    if n_features > N_FEATURES:
        hint = "; name the extra columns with --id-column, --label-column or --keep-columns"
    return InputDataError(
        f"{display}: line {line}: expected {N_FEATURES} feature columns, found "
        f"{n_features} ({n_cols} columns in all){hint}"
    )


def _given(options: ReadOptions) -> list[str | int]:
    """The columns the options name one by one: the id, the label, the kept ones."""
    given = [spec for spec in (options.id_column, options.label_column) if spec is not None]
    if isinstance(options.keep_columns, tuple):
        given.extend(options.keep_columns)
    return given


def _index(spec: str | int | None, n_cols: int) -> int | None:
    """The 0-based position an ``--id-column``/``--label-column`` given by number (from 1;
    -1 is the last) points at."""
    if isinstance(spec, int) and (1 <= spec <= n_cols or -n_cols <= spec <= -1):
        return spec - 1 if spec > 0 else spec % n_cols
    return None


def _is_word(field: str) -> bool:
    return bool(field.strip()) and not is_number(field)


def _counted(fields: list[str], options: ReadOptions) -> list[int]:
    """The columns that must hold numbers in a data row: all but those given by index as
    the id, label or kept columns (an id may be anything)."""
    skip = {_index(spec, len(fields)) for spec in _given(options)}
    return [i for i in range(len(fields)) if i not in skip]


def header_verdict(fields: list[str], options: ReadOptions) -> bool | None:
    """Whether a first line is a header (True), data (False), or cannot be told (None).

    A header must be a line that cannot be data, so that no data row is ever dropped and no
    header ever scored:

    - a line naming the ``--id-column``, ``--label-column`` or a ``--keep-columns`` column
      given by name is a header;
    - a line whose numbers are exactly the column indexes, ``0, 1, ..., 63`` or
      ``1, 2, ..., 64`` in order (what pandas writes for an unnamed frame), is a header,
      whatever else it holds (an id or label name, an empty index name); pixel values stop
      at 16, so no data row looks like this;
    - a line of numbers only (empty cells aside) is data;
    - a line where most fields (more than half) are not numbers is a header;
    - anything else, a line of numbers with a few words, is ambiguous: one mistyped cell
      (``O`` for ``0``) must not turn a row into a header, nor a header with numeric names
      into a row.

    The id, label and kept columns given by index are left out of the count (an id may be a
    word).
    """
    names = {spec for spec in _given(options) if isinstance(spec, str)}
    if names & {f.strip() for f in fields}:
        return True
    counted = [fields[i] for i in _counted(fields, options)]
    numbers = [f.strip() for f in counted if f.strip() and not _is_word(f)]
    if len(numbers) >= N_FEATURES and all(n.isascii() and n.isdigit() for n in numbers):
        start = int(numbers[0])
        if start in (0, 1) and [int(n) for n in numbers] == list(
                range(start, start + len(numbers))):
            return True
    words = sum(_is_word(f) for f in counted)
    if words == 0:
        return False
    if 2 * words > len(counted):
        return True
    return None


def _ambiguity(fields: list[str], options: ReadOptions) -> str:
    """What makes a first line ambiguous, for the message: how many numbers, which words."""
    counted = _counted(fields, options)
    words = [i for i in counted if _is_word(fields[i])]
    shown = ", ".join(f"{fields[i].strip()[:20]!r} in column {i + 1}" for i in words[:3])
    more = ", ..." if len(words) > 3 else ""
    n_numbers = sum(1 for i in counted if fields[i].strip() and not _is_word(fields[i]))
    return f"{n_numbers} of its fields are numbers and {len(words)} not ({shown}{more})"
