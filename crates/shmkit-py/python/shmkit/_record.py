"""Fixed-shape numpy records: the side record that describes them.

A channel or board created with ``dtype=`` carries records of that dtype
and shape, each exactly ``dtype.itemsize * prod(shape)`` bytes. The
description is stored beside the object, in a small POSIX object named
``<name>.shmkit-record``, so that a reader need not know it in advance:

    offset 0   b"SHMKREC1" (magic)
    offset 8   u32 little-endian: length N of the text that follows
    offset 12  N bytes of UTF-8: repr({"kind", "descr", "shape", "size"})

``descr`` is ``numpy.lib.format.dtype_to_descr(dtype)`` (what .npy files
store: structured dtypes too). The record is created, exclusively and
completely, *before* the object it describes, so anyone who can open the
object finds it whole; ``unlink()`` of the Python classes removes both
(``shmkit rm NAME`` removes only the object: remove ``NAME.shmkit-record``
too). The text is parsed with ``ast.literal_eval`` (literals only) and
checked against the object's message size.
"""

from __future__ import annotations

import ast
import math
import struct
from typing import Any, Optional, Tuple

from . import _errors, _shmkit

MAGIC = b"SHMKREC1"
SUFFIX = ".shmkit-record"
MAX_TEXT = 64 * 1024


def side_name(name: str) -> str:
    return name + SUFFIX


class RecordType:
    """A numpy dtype and shape, and the size in bytes of one record."""

    def __init__(self, dtype: Any, shape: Any = ()) -> None:
        import numpy as np

        self.dtype = np.dtype(dtype)
        if isinstance(shape, int):
            shape = (shape,)
        self.shape: Tuple[int, ...] = tuple(int(n) for n in shape)
        if any(n < 0 for n in self.shape):
            raise ValueError(f"a record shape has no negative dimensions: {self.shape}")
        if self.dtype.hasobject:
            raise TypeError(f"dtype {self.dtype} holds Python objects: it cannot live in shared memory")
        self.size = self.dtype.itemsize * math.prod(self.shape)
        if self.size == 0:
            raise ValueError(f"a record of dtype {self.dtype} and shape {self.shape} has no bytes")

    def text(self, kind: str) -> bytes:
        import numpy as np

        descr = np.lib.format.dtype_to_descr(self.dtype)
        return repr({"kind": kind, "descr": descr, "shape": self.shape, "size": self.size}).encode()

    def attach(self, endpoint: Any) -> Any:
        endpoint._set_record(self.dtype, self.shape, self.size)
        return endpoint


def write(name: str, record: RecordType, kind: str, mode: int) -> None:
    """Creates the side record of `name` (exclusively)."""
    text = record.text(kind)
    obj = _shmkit.ShmObject.open(side_name(name), create=True, size=12 + len(text), mode=mode)
    try:
        m = obj.map()
        import ctypes

        ctypes.memmove(m.address + 8, struct.pack("<I", len(text)) + text, 4 + len(text))
        ctypes.memmove(m.address, MAGIC, 8)
    except BaseException:
        obj.unlink()
        raise


def read(name: str, kind: str, size: int) -> Optional[RecordType]:
    """The side record of `name`, or None if it has none."""
    try:
        obj = _shmkit.ShmObject.open(side_name(name), read_only=True)
    except FileNotFoundError:
        return None
    total = obj.size()
    where = side_name(name)

    def corrupt(why: str) -> Exception:
        e = _errors.Corrupt(f"cannot open {where}: {why}")
        e.kind, e.operation, e.object = "Corrupt", "open", where
        return e

    if total < 12 or total > 12 + MAX_TEXT:
        raise corrupt(f"{total} bytes is not a record description")
    import ctypes

    m = obj.map()
    raw = ctypes.string_at(m.address, total)
    if raw[:8] != MAGIC:
        raise corrupt("it does not start with the record magic")
    (n,) = struct.unpack("<I", raw[8:12])
    if n > total - 12:
        raise corrupt(f"its text length {n} exceeds the object")
    try:
        meta = ast.literal_eval(raw[12 : 12 + n].decode())
        import numpy as np

        rec = RecordType(np.lib.format.descr_to_dtype(meta["descr"]), meta["shape"])
    except Exception as e:  # any malformed description
        raise corrupt(f"its description cannot be read ({e})") from None
    if meta.get("kind") != kind or rec.size != size or meta.get("size") != size:
        raise corrupt(
            f"it describes a {meta.get('kind')} of {rec.size}-byte records, "
            f"not this {kind} of {size}-byte messages"
        )
    return rec


def unlink(name: str) -> None:
    try:
        _shmkit.ShmObject.open(side_name(name)).unlink()
    except FileNotFoundError:
        pass
