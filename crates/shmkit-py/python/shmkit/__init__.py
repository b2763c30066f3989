"""shmkit: shared-memory IPC for Linux, from Python.

Crash-tolerant channels between processes, latest-value boards, broadcasts,
a ``SharedMemory`` that is safe to use, robust mutexes and semaphores. Every
wait releases the GIL. Objects are the same ones the Rust library and the
``shmkit`` command-line tool use: ``shmkit ls`` and ``shmkit stat`` show them.

    import shmkit
    ch = shmkit.Channel.create("jobs", capacity=1024, max_message=256)
    with ch.sender() as tx:             # in one process
        tx.send(b"hello")
    rx = shmkit.Channel.open("jobs").receiver()   # in another
    for msg in rx:                      # until every sender is gone
        print(msg)
    # or, in a coroutine: async for msg in rx: ...   (await rx.recv_async())
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

from . import _record, _shmkit
from ._errors import (
    AlreadyExists,
    Corrupt,
    Disconnected,
    Error,
    InvalidArgument,
    InvalidName,
    LimitExceeded,
    Lagged,
    NoSpace,
    NotAnObject,
    NotFound,
    PermissionDenied,
    ReadOnly,
    TimeoutError,
    WouldBlock,
)
from ._aio import Receiver
from ._memory import SharedMemory
from ._shmkit import (
    Broadcast,
    Mutex,
    MutexGuard,
    Publisher,
    RecordView,
    Semaphore,
    Sender,
    Subscriber,
)

__all__ = [
    "Channel",
    "Sender",
    "Receiver",
    "RecordView",
    "Board",
    "Broadcast",
    "Publisher",
    "Subscriber",
    "SharedMemory",
    "Mutex",
    "MutexGuard",
    "Semaphore",
    "Error",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "NoSpace",
    "InvalidName",
    "InvalidArgument",
    "ReadOnly",
    "LimitExceeded",
    "Corrupt",
    "Disconnected",
    "TimeoutError",
    "WouldBlock",
    "NotAnObject",
    "Lagged",
]

__version__ = "0.1.0"


class Channel:
    """A bounded, crash-tolerant producer/consumer channel between processes.

    Any number of senders and receivers (or one of each with ``spsc=True``,
    the faster ring). A sender killed mid-send never publishes a torn
    message; receivers learn when every sender is gone.
    """

    def __init__(self, native: Any, record: Optional[_record.RecordType]) -> None:
        self._native = native
        self._record = record

    @classmethod
    def create(
        cls,
        name: str,
        capacity: int = 1024,
        max_message: Optional[int] = None,
        *,
        spsc: bool = False,
        mode: int = 0o600,
        dtype: Any = None,
        shape: Any = (),
    ) -> "Channel":
        """Creates the channel ``name`` (``FileExistsError`` if it exists).

        ``capacity`` messages (rounded up to a power of two) of up to
        ``max_message`` bytes (default 1024). With ``dtype`` (and ``shape``),
        it carries numpy records of exactly that dtype and shape, described
        beside the channel so that ``Channel.open`` learns them.
        """
        if dtype is None:
            native = _shmkit.NativeChannel.create(
                name, capacity, 1024 if max_message is None else max_message, spsc, mode
            )
            return cls(native, None)
        record = _record.RecordType(dtype, shape)
        if max_message is not None and max_message != record.size:
            raise ValueError(
                f"max_message {max_message} is not the record's size ({record.size} bytes)"
            )
        _record.write(_canonical(name), record, "channel", mode)
        try:
            native = _shmkit.NativeChannel.create(name, capacity, record.size, spsc, mode)
        except BaseException:
            _record.unlink(_canonical(name))
            raise
        return cls(native, record)

    @classmethod
    def open(cls, name: str) -> "Channel":
        """Opens the existing channel ``name`` (and its record type, if any)."""
        native = _shmkit.NativeChannel.open(name)
        return cls(native, _record.read(native.name, "channel", native.max_message))

    @classmethod
    def open_or_create(cls, name: str, **options: Any) -> "Channel":
        """Opens ``name``, creating it with ``options`` if it does not exist."""
        try:
            return cls.create(name, **options)
        except FileExistsError:
            return cls.open(name)

    def sender(self) -> Sender:
        """Connects a sender endpoint."""
        tx = self._native.sender()
        return self._record.attach(tx) if self._record else tx

    def receiver(self) -> Receiver:
        """Connects a receiver endpoint."""
        rx = Receiver(self._native)
        return self._record.attach(rx) if self._record else rx

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def capacity(self) -> int:
        return self._native.capacity

    @property
    def max_message(self) -> int:
        return self._native.max_message

    @property
    def spsc(self) -> bool:
        return self._native.spsc

    @property
    def dtype(self) -> Any:
        """The record dtype, or None for a channel of bytes."""
        return self._record.dtype if self._record else None

    @property
    def shape(self) -> Optional[Tuple[int, ...]]:
        """The record shape, or None for a channel of bytes."""
        return self._record.shape if self._record else None

    def stats(self) -> dict:
        """Depth, counters and connected endpoints (as ``shmkit chan stat``)."""
        return self._native.stats()

    def unlink(self) -> None:
        """Removes the name (and the record description); endpoints keep working."""
        self._native.unlink()
        if self._record:
            _record.unlink(self._native.name)

    def __enter__(self) -> "Channel":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        extra = f", dtype={self.dtype}, shape={self.shape}" if self._record else ""
        return f"Channel({self.name!r}, capacity={self.capacity}, max_message={self.max_message}{extra})"


class Board:
    """A blackboard: one value, one writer at a time, any number of readers.

    Readers never see a torn value and never wait for the writer; a writer
    killed mid-write leaves the last complete value, and the next ``set``
    (from any process) takes over.
    """

    def __init__(self, native: Any, record: Optional[_record.RecordType]) -> None:
        self._native = native
        self._record = record

    @classmethod
    def create(
        cls,
        name: str,
        size: Optional[int] = None,
        *,
        mode: int = 0o600,
        dtype: Any = None,
        shape: Any = (),
    ) -> "Board":
        """Creates the board ``name`` for values of up to ``size`` bytes
        (default 4096), or for numpy records of ``dtype`` and ``shape``."""
        if dtype is None:
            return cls(_shmkit.NativeBoard.create(name, 4096 if size is None else size, mode), None)
        record = _record.RecordType(dtype, shape)
        if size is not None and size != record.size:
            raise ValueError(f"size {size} is not the record's size ({record.size} bytes)")
        _record.write(_canonical(name), record, "board", mode)
        try:
            native = _shmkit.NativeBoard.create(name, record.size, mode)
        except BaseException:
            _record.unlink(_canonical(name))
            raise
        return cls(native, record)

    @classmethod
    def open(cls, name: str) -> "Board":
        """Opens the existing board ``name`` (and its record type, if any)."""
        native = _shmkit.NativeBoard.open(name)
        return cls(native, _record.read(native.name, "board", native.max_size))

    def set(self, value: Any) -> int:
        """Replaces the value (bytes-like); returns its version. The first
        call makes this handle the writer (``FileExistsError`` while another
        live process writes; a dead writer is taken over)."""
        return self._native.set(value)

    def get(self) -> bytes:
        """The latest complete value (empty before the first write)."""
        return self._native.get()

    def get_with_version(self) -> Tuple[bytes, int]:
        return self._native.get_with_version()

    def get_into(self, buffer: Any) -> Tuple[int, int]:
        """Copies the value into a writable buffer; returns (length, version)."""
        return self._native.get_into(buffer)

    @property
    def version(self) -> int:
        """The latest complete version (0 before the first write)."""
        return self._native.version

    def wait(self, since: Optional[int] = None, timeout: Optional[float] = None) -> Tuple[bytes, int]:
        """Waits (GIL released) for a version other than ``since`` (default:
        the current one); returns (value, version)."""
        return self._native.wait(since, timeout)

    def watch(self, timeout: Optional[float] = None) -> Iterator[bytes]:
        """Yields each new value as it comes (versions in between may be
        skipped: a board holds the latest value, not a history). Stops with
        ``TimeoutError`` when none comes within ``timeout``."""
        version = self._native.version
        while True:
            value, version = self._native.wait(version, timeout)
            yield value

    def set_array(self, array: Any) -> int:
        """Writes a numpy record of the board's dtype and shape."""
        rec = self._need_record()
        import numpy as np

        a = np.asarray(array)
        if a.dtype != rec.dtype or a.shape != rec.shape:
            raise InvalidArgument(
                f"cannot write {self.name}: an array of dtype {a.dtype} and shape {a.shape} "
                f"is not a record of dtype {rec.dtype} and shape {rec.shape}"
            )
        return self._native.set(a.tobytes())

    def get_array(self) -> Any:
        """The latest record as a new numpy array (a copy)."""
        rec = self._need_record()
        import numpy as np

        out = np.empty(rec.shape, rec.dtype)
        n, _ = self._native.get_into(out)
        if n != rec.size:
            raise Corrupt(f"board {self.name} holds {n} bytes, not a {rec.size}-byte record")
        return out

    def _need_record(self) -> _record.RecordType:
        if self._record is None:
            raise InvalidArgument(f"board {self.name} was created without a record dtype")
        return self._record

    def claim_writer(self) -> Optional[int]:
        """Becomes the writer now; returns the pid of a dead writer taken over."""
        return self._native.claim_writer()

    def release_writer(self) -> None:
        """Gives the writer role back."""
        self._native.release_writer()

    @property
    def took_over_from(self) -> Optional[int]:
        return self._native.took_over_from

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def max_size(self) -> int:
        return self._native.max_size

    @property
    def dtype(self) -> Any:
        return self._record.dtype if self._record else None

    @property
    def shape(self) -> Optional[Tuple[int, ...]]:
        return self._record.shape if self._record else None

    def stats(self) -> dict:
        return self._native.stats()

    def unlink(self) -> None:
        """Removes the name (and the record description)."""
        self._native.unlink()
        if self._record:
            _record.unlink(self._native.name)

    def close(self) -> None:
        """Gives the writer role back (if this handle holds it)."""
        self._native.release_writer()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Board({self.name!r}, max_size={self.max_size})"


def _canonical(name: str) -> str:
    return name if name.startswith("/") else "/" + name
