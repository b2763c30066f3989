"""shmkit's exceptions.

Every one subclasses :class:`shmkit.Error`, itself an :class:`OSError`, and
the built-in exception that fits (``FileNotFoundError``, ``ValueError``,
``TimeoutError``...), so ordinary ``except`` clauses work. ``errno`` is the
OS's where it reported one, else the errno that names the kind (``ENOENT``,
``ETIMEDOUT``, ``EAGAIN``, ``EPIPE``...). Each carries ``kind`` (the
library's ErrorKind), ``operation`` and ``object`` (the name it was about).
"""

from __future__ import annotations

import builtins

__all__ = [
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


class Error(OSError):
    """A failed shmkit operation: what was done, to which object, and why."""

    kind: str = "Other"
    operation: str = ""
    object: str = ""


class NotFound(Error, FileNotFoundError):
    """The object does not exist (ENOENT)."""


class AlreadyExists(Error, FileExistsError):
    """The object exists (EEXIST), or a board/broadcast has a live writer."""


class PermissionDenied(Error, PermissionError):
    """Permission denied (EACCES, EPERM)."""


class NoSpace(Error):
    """/dev/shm (or memory) is full (ENOSPC): nothing was left behind."""


class InvalidName(Error, ValueError):
    """A name that is not one path component of at most 255 bytes."""


class InvalidArgument(Error, ValueError):
    """An argument out of range: a message over the maximum, a bad size..."""


class ReadOnly(Error, PermissionError):
    """A write through something opened read-only."""


class LimitExceeded(Error):
    """A limit was hit: too many endpoints or subscribers, a kernel limit."""


class Corrupt(Error):
    """Shared memory does not hold what its header promises."""


class Disconnected(Error, ConnectionError):
    """The peer is gone: every sender (or receiver, or the writer) left or died."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 (shadows on purpose)
    """A wait ran out of time (ETIMEDOUT)."""


class WouldBlock(Error, BlockingIOError):
    """A non-blocking call found nothing to do (EAGAIN)."""


class NotAnObject(Error):
    """A /dev/shm entry that is not a shared memory object (a link, a FIFO...)."""


class Lagged(Error):
    """A broadcast subscriber fell behind: ``missed`` messages were overwritten.

    ``Subscriber.recv()`` raises it (the next call goes on after the gap);
    iterating a subscriber yields an instance in the gap's place instead.
    """

    missed: int = 0
