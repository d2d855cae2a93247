"""The page headers of a Parquet column chunk, checked before Arrow reads the chunk in pieces.

Read in pieces (a buffered stream, to keep a large row group out of memory), Arrow allocates
and fills a buffer of whatever size a page header claims, before it finds the file shorter: a
23 kB file claiming a 2 GB page took 4 GB (found by fuzzing). Walking the headers first, with
just enough of the Thrift compact protocol to skip what they hold, proves each page lies
within its column chunk.
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
