"""asyncio for channels: ``await rx.recv_async()`` and ``async for msg in rx``.

No thread and no polling loop: the receiver's readiness descriptor (an
``AF_UNIX`` datagram socket, see ``shmkit::readiness`` in the Rust library)
is watched with ``loop.add_reader``. A sender makes it readable only when
this receiver has armed it, i.e. is about to sleep; while messages keep
coming, ``recv_async`` takes them with ``try_recv`` and the loop is never
involved. Each sleep is bounded by the library's slice (250 ms), after which
the receiver looks again and checks whether every sender is gone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

from . import _errors, _shmkit

#: The longest one sleep on the descriptor lasts (the library's SLICE).
SLICE = 0.25


class Receiver(_shmkit.Receiver):
    """A channel's receiving end (see ``_shmkit.Receiver``), with asyncio."""

    async def recv_async(self, timeout: Optional[float] = None) -> bytes:
        """The next message, awaited on the event loop (no thread, no
        polling). ``Disconnected`` once the channel is empty and every sender
        is gone; ``TimeoutError`` after ``timeout`` seconds."""
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be a non-negative number of seconds or None, not {timeout}")
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            msg = self.try_recv()
            if msg is not None:
                return msg
            if not self._arm():
                continue  # one came while arming
            left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
            if left <= 0:
                raise self._timed_out()
            fd = self._readiness_fd()
            woken = loop.create_future()
            loop.add_reader(fd, _wake, woken)
            try:
                await asyncio.wait_for(woken, left)
            except asyncio.TimeoutError:
                msg = self.try_recv()
                if msg is not None:
                    return msg
                if self._senders_gone():
                    raise _disconnected()
            finally:
                loop.remove_reader(fd)

    def _timed_out(self) -> Exception:
        e = _errors.TimeoutError(110, "cannot receive: timed out")
        e.kind, e.operation = "TimedOut", "receive from"
        return e

    def __aiter__(self) -> "Receiver":
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv_async()
        except _errors.Disconnected:
            raise StopAsyncIteration from None


def _wake(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


def _disconnected() -> Exception:
    e = _errors.Disconnected(32, "cannot receive: the channel is empty and every sender is gone")
    e.kind, e.operation = "Disconnected", "receive from"
    return e
