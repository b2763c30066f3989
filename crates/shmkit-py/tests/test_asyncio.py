"""asyncio: await rx.recv_async() / async for, on the readiness descriptor."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

import shmkit
from conftest import child_that_printed


def _produce(name: str, count: int, pause: float) -> None:
    import time

    import shmkit

    with shmkit.Channel.open(name).sender() as tx:
        for i in range(count):
            tx.send(b"%d" % i)
            if pause and i % 100 == 0:
                time.sleep(pause)  # so the receiver sleeps on its descriptor


def test_async_for_across_spawned_processes(name, spawn):
    ch = shmkit.Channel.create(name, capacity=16, max_message=16)
    rx = ch.receiver()
    p = spawn.Process(target=_produce, args=(name, 2000, 0.01))

    async def consume():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        got = [int(m) async for m in rx]
        t.cancel()
        return got, ticks

    p.start()
    got, ticks = asyncio.run(consume())
    p.join(30)
    assert p.exitcode == 0
    assert got == list(range(2000))
    assert ticks > 0  # the loop ran other coroutines while the receiver waited


def test_waiting_costs_no_cpu(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx, tx = ch.receiver(), ch.sender()

    async def wait_then_get():
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, tx.send, b"late")
        return await rx.recv_async(timeout=10)

    cpu0, wall0 = time.process_time(), time.monotonic()
    assert asyncio.run(wait_then_get()) == b"late"
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    assert wall >= 0.9
    assert cpu < 0.3 * wall, f"{cpu:.3f} s of CPU in {wall:.3f} s of waiting"


def test_blocking_recv_costs_no_cpu_after_the_spin(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx = ch.receiver()
    tx = ch.sender()  # a live sender: recv waits
    cpu0 = time.process_time()
    with pytest.raises(shmkit.TimeoutError):
        rx.recv(timeout=1.0)
    assert time.process_time() - cpu0 < 0.3
    tx.close()


def test_timeout_and_bad_input(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx = ch.receiver()
    tx = ch.sender()  # a live sender: the receiver waits
    with pytest.raises(shmkit.TimeoutError):
        asyncio.run(rx.recv_async(timeout=0.05))
    tx.close()
    with pytest.raises(ValueError):
        asyncio.run(rx.recv_async(timeout=-1))


HANG = """
import sys, time, shmkit
tx = shmkit.Channel.open(sys.argv[1]).sender()
tx.send(b"one")
print("sent", flush=True)
time.sleep(600)
"""


def test_async_receiver_learns_a_killed_sender_is_gone(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx = ch.receiver()
    with child_that_printed(HANG, name, line="sent") as child:

        async def run():
            first = await rx.recv_async(timeout=10)
            child.send_signal(signal.SIGKILL)
            rest = [m async for m in rx]
            return first, rest

        assert asyncio.run(asyncio.wait_for(run(), 30)) == (b"one", [])
