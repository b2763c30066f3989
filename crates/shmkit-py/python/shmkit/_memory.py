"""``shmkit.SharedMemory``: ``multiprocessing.shared_memory.SharedMemory``
without its traps.

Same surface: ``SharedMemory(name=None, create=False, size=0)``, ``name``,
``size``, ``buf``, ``close()``, ``unlink()``. Differences, each on purpose:

- no resource tracker: nothing unlinks a segment behind your back when
  some process exits (CPython gh-82300); ``unlink()`` when you mean it
  (``track=`` is accepted and ignored);
- space reserved: creating (and ``resize``) reserves the pages with
  ``fallocate``, so a full /dev/shm is ``OSError(ENOSPC)`` (``shmkit.NoSpace``)
  at once, never ``SIGBUS`` later; opening a sparse object made by someone
  else reserves its holes before mapping it writable;
- exact modes: ``mode=0o600`` (the default) is what the object gets,
  whatever the umask;
- ``close()`` never unmaps memory that a live view still uses: ``buf``,
  its slices and numpy arrays made from it keep the mapping alive, and it is
  unmapped when the last of them goes (no ``BufferError: cannot close
  exported pointers exist``, no segfault as in numpy #23305);
- ``resize(n)`` grows or shrinks the object and gives a new ``buf``
  (views of the old one keep the old mapping);
- names are checked (one component, at most 255 bytes), and opening never
  follows a symbolic link planted in /dev/shm;
- ``read_only=True`` opens and maps read-only (``buf`` is a read-only
  memoryview).
"""

from __future__ import annotations

import ctypes
import secrets
from typing import Optional

from . import _shmkit

__all__ = ["SharedMemory"]


class SharedMemory:
    """A named POSIX shared memory block, mapped into this process."""

    _name: str
    _buf: Optional[memoryview]

    def __init__(
        self,
        name: Optional[str] = None,
        create: bool = False,
        size: int = 0,
        *,
        mode: int = 0o600,
        read_only: bool = False,
        track: bool = True,
    ) -> None:
        del track  # there is no resource tracker to turn off
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create:
            if size == 0:
                raise ValueError("'size' must be a positive number different from zero")
            if read_only:
                raise ValueError("cannot create a block read-only")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        self._buf = None
        self._mapping = None
        if name is None:
            # Like the stdlib: a fresh random name, retried on a collision.
            while True:
                candidate = "/psm_" + secrets.token_hex(4)
                try:
                    self._object = _shmkit.ShmObject.open(candidate, create=True, size=size, mode=mode)
                    break
                except FileExistsError:
                    continue
        else:
            self._object = _shmkit.ShmObject.open(
                name, create=create, size=size, mode=mode, read_only=read_only
            )
        self._name = self._object.name
        self._map()

    def _map(self) -> None:
        mapping = self._object.map()
        n = mapping.size
        array = (ctypes.c_ubyte * n).from_address(mapping.address)
        # The ctypes array keeps the mapping alive; every memoryview (and
        # every numpy array made from one) keeps the ctypes array alive.
        array._shmkit_mapping = mapping  # type: ignore[attr-defined]
        buf = memoryview(array).cast("B")
        if not mapping.writable:
            buf = buf.toreadonly()
        self._mapping = mapping
        self._size = n
        self._buf = buf

    @property
    def name(self) -> str:
        """The name, without the leading slash (as the stdlib gives it)."""
        return self._name[1:] if self._name.startswith("/") else self._name

    @property
    def size(self) -> int:
        """Size in bytes of the mapping."""
        return self._size

    @property
    def buf(self) -> Optional[memoryview]:
        """A memoryview of the block; None after close()."""
        return self._buf

    @property
    def mode(self) -> int:
        """The object's permission bits."""
        return self._object.mode()

    def resize(self, size: int) -> None:
        """Grows (reserving the new space: ``OSError(ENOSPC)`` if /dev/shm is
        full) or shrinks the object, and maps it again: ``buf`` is new.

        Views of the old ``buf`` keep the old mapping. Shrinking an object
        that other processes map makes their accesses past the new end raise
        SIGBUS: shrink only what you alone use.
        """
        if self._buf is None:
            raise ValueError("the block is closed")
        if not size > 0:
            raise ValueError("'size' must be a positive number different from zero")
        self._object.resize(size)
        self._buf = None
        self._map()

    def close(self) -> None:
        """Lets go of this process's mapping. Memory still used by a view
        (a slice of ``buf``, a numpy array) stays mapped until that view goes."""
        self._buf = None
        self._mapping = None

    def unlink(self) -> None:
        """Removes the name (``shm_unlink``); mappings stay valid. Call it
        once, from one process, when the block is no longer needed."""
        self._object.unlink()

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (self.__class__, (self.name, False, self.size))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.name!r}, size={self.size})"

    def __enter__(self) -> "SharedMemory":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
