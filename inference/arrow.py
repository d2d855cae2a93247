"""numpy <-> pyarrow conversions through raw buffers.

``pa.array(ndarray)`` and ``Array.to_numpy()`` import pandas whenever it is installed (to
check for pandas objects), which costs a quarter of a second at every start. These helpers
cover the few primitive cases the scorer needs without touching pandas.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY_TYPES = {
    pa.int8(): "i1", pa.int16(): "<i2", pa.int32(): "<i4", pa.int64(): "<i8",
    pa.uint8(): "u1", pa.uint16(): "<u2", pa.uint32(): "<u4", pa.uint64(): "<u8",
    pa.float16(): "<f2", pa.float32(): "<f4", pa.float64(): "<f8",
}
_ARROW_TYPES = {np.dtype(v): k for k, v in _NUMPY_TYPES.items()}


def to_numpy(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numpy view (no copy for one chunk) of a primitive numeric or boolean arrow array.

    Null slots hold whatever the buffer holds: check ``null_count`` first.
    """
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 1:
            return to_numpy(arr.chunk(0))
        if arr.num_chunks == 0:
            return np.empty(0, dtype=_NUMPY_TYPES.get(arr.type, "<f8"))
        return np.concatenate([to_numpy(c) for c in arr.chunks])
    if pa.types.is_boolean(arr.type):
        bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[arr.offset:arr.offset + len(arr)].astype(
            bool)
    dtype = np.dtype(_NUMPY_TYPES[arr.type])
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr),
                         offset=arr.offset * dtype.itemsize)


def from_numpy(values: np.ndarray) -> pa.Array:
    """An arrow array sharing a contiguous 1-D numeric or boolean numpy array's memory."""
    values = np.ascontiguousarray(values)
    if values.dtype == bool:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    return pa.Array.from_buffers(_ARROW_TYPES[values.dtype.newbyteorder("<")
                                              if values.dtype.byteorder == ">" else values.dtype],
                                 len(values), [None, pa.py_buffer(values)])


def string_array(tokens: list[str]) -> pa.Array:
    """An arrow string array from Python strings."""
    data = [t.encode("utf-8") for t in tokens]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(data),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])
