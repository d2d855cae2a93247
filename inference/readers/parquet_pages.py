"""The page headers of a Parquet column chunk, checked before Arrow reads the chunk in pieces.

Read in pieces (a buffered stream, to keep a large row group out of memory), Arrow allocates
and fills a buffer of whatever size a page header claims, before it finds the file shorter: a
23 kB file claiming a 2 GB page took 4 GB (found by fuzzing). Walking the headers first, with
just enough of the Thrift compact protocol to read what they hold, proves each page lies
within its column chunk.

Where the chunks are comes from the footer, read here too: pyarrow's own accessor for a
column chunk's metadata aborts the process (an uncaught C++ exception) on some corrupt
footers, where reading the data raises a clean error (also found by fuzzing).
"""

from __future__ import annotations

import os

#: Thrift compact types.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = 0, 1, 2, 3, 4, 5, 6, 7, 8
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12
#: PageHeader fields: uncompressed_page_size, compressed_page_size.
_UNCOMPRESSED, _COMPRESSED = 2, 3
#: A page header is a few dozen bytes; statistics can make it longer, never this long.
MAX_HEADER_BYTES = 1 << 20
_MAX_DEPTH = 16


class PageError(ValueError):
    """A page header that is not well formed, or a page that does not fit its chunk."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise PageError("a page header runs past the bytes read")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise PageError("an overlong number in a page header")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def skip(self, kind: int, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise PageError("a page header nests too deeply")
        if kind in (_TRUE, _FALSE):
            return
        if kind == _BYTE:
            self.byte()
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.pos += 8
        elif kind == _BINARY:
            length = self.varint()  # read before self.pos is: the length moves it
            self.pos += length
        elif kind in (_LIST, _SET):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                if head & 0x0F in (_TRUE, _FALSE):  # a list holds its booleans as bytes
                    self.byte()
                else:
                    self.skip(head & 0x0F, depth + 1)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.skip(types >> 4, depth + 1)
                    self.skip(types & 0x0F, depth + 1)
        elif kind == _STRUCT:
            self.struct(depth + 1)
        else:
            raise PageError(f"an unknown Thrift type {kind} in a page header")
        if self.pos > len(self.data):
            raise PageError("a page header runs past the bytes read")

    def value(self, kind: int, depth: int) -> object:
        """A value of any type: ints, bytes, lists, and structs as {field: value}."""
        if depth > _MAX_DEPTH:
            raise PageError("the footer nests too deeply")
        if kind in (_TRUE, _FALSE):
            return kind == _TRUE
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _BINARY:
            length = self.varint()
            if self.pos + length > len(self.data):
                raise PageError("a string in the footer runs past its end")
            self.pos += length
            return self.data[self.pos - length:self.pos]
        if kind in (_LIST, _SET):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            if size > len(self.data) - self.pos:  # every element takes a byte at least
                raise PageError("a list in the footer is longer than the footer")
            return [self.byte() if head & 0x0F in (_TRUE, _FALSE) else
                    self.value(head & 0x0F, depth + 1) for _ in range(size)]
        if kind == _STRUCT:
            fields: dict[int, object] = {}
            field = 0
            while (head := self.byte()) & 0x0F != _STOP:
                delta = head >> 4
                field = field + delta if delta else self.zigzag()
                fields[field] = self.value(head & 0x0F, depth + 1)
            return fields
        self.skip(kind, depth)
        return None

    def struct(self, depth: int, wanted: dict[int, int] | None = None) -> None:
        field = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == _STOP:
                return
            delta = head >> 4
            field = field + delta if delta else self.zigzag()
            if wanted is not None and depth == 0 and field in wanted and kind == _I32:
                wanted[field] = self.zigzag()
            else:
                self.skip(kind, depth)


def page_header(data: bytes) -> tuple[int, int, int]:
    """(header length, uncompressed size, compressed size) of the page header ``data`` starts
    with."""
    reader = _Reader(data)
    sizes = {_UNCOMPRESSED: -1, _COMPRESSED: -1}
    reader.struct(0, sizes)
    return reader.pos, sizes[_UNCOMPRESSED], sizes[_COMPRESSED]


def check_chunk(fd: int, start: int, length: int, file_size: int) -> None:
    """Walk the pages of the column chunk at ``[start, start + length)``: each header must
    parse and each page must end within the chunk, which must end within the file."""
    end = start + length
    if start < 0 or length < 0 or end > file_size:
        raise PageError(f"a column chunk claims bytes {start}..{end} of a {file_size}-byte "
                        "file")
    pos = start
    while pos < end:
        head = os.pread(fd, min(4096, end - pos), pos)
        while True:
            try:
                size, _, compressed = page_header(head)
                break
            except PageError:
                if len(head) >= min(MAX_HEADER_BYTES, end - pos):
                    raise
                head = os.pread(fd, min(len(head) * 4, MAX_HEADER_BYTES, end - pos), pos)
        if compressed < 0 or pos + size + compressed > end:
            raise PageError(f"a page claims {compressed} bytes where its column chunk has "
                            f"{max(0, end - pos - size)} left")
        pos += size + compressed


#: FileMetaData.row_groups, RowGroup.columns, ColumnChunk.meta_data; ColumnMetaData's
#: total_compressed_size, data_page_offset, dictionary_page_offset.
_ROW_GROUPS, _COLUMNS, _META_DATA = 4, 1, 3
_TOTAL_COMPRESSED, _DATA_PAGE, _DICTIONARY_PAGE = 7, 9, 11


def chunk_ranges(fd: int, file_size: int) -> list[list[tuple[int, int]]]:
    """(start, length) of every column chunk, per row group, from the file's footer."""
    if file_size < 12:
        raise PageError("the file is too short for a footer")
    tail = os.pread(fd, 8, file_size - 8)
    size = int.from_bytes(tail[:4], "little")
    if tail[4:] != b"PAR1" or size > file_size - 12:
        raise PageError("the footer's length does not fit the file")
    footer = _Reader(os.pread(fd, size, file_size - 8 - size))
    meta = footer.value(_STRUCT, 0)
    groups = []
    for group in _as_list(_field(meta, _ROW_GROUPS)):
        ranges = []
        for column in _as_list(_field(group, _COLUMNS)):
            md = _field(column, _META_DATA)
            start = _as_int(_field(md, _DATA_PAGE))
            dictionary = _field(md, _DICTIONARY_PAGE, 0)
            if isinstance(dictionary, int) and dictionary > 0:  # 0 means none for some writers
                start = min(start, dictionary)
            ranges.append((start, _as_int(_field(md, _TOTAL_COMPRESSED))))
        groups.append(ranges)
    return groups


def _field(struct: object, number: int, default: object = None) -> object:
    if not isinstance(struct, dict):
        raise PageError("the footer is not what Parquet writes")
    value = struct.get(number, default)
    if value is None:
        raise PageError(f"the footer lacks field {number}")
    return value


def _as_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise PageError("the footer is not what Parquet writes")
    return value


def _as_int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PageError("the footer is not what Parquet writes")
    return value
