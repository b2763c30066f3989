"""Python-to-Python IPC benchmarks: ``python -m shmkit.bench``.

Two scenarios between two Python processes (multiprocessing, spawn):

- ``roundtrip``: the parent sends a 64-byte message, the child echoes it;
  the figure is the time of one round trip.
- ``stream``: the child sends 64-byte messages as fast as it can, the
  parent receives them; the figure is messages per second.

over shmkit channels (SPSC ring; the default spin-then-sleep wait,
``wait="sleep"`` that sleeps on the futex at once, and a busy-poll of
``try_recv`` in Python on both ends: the floor of Python's own overhead,
never sleeping, so one core each), ``multiprocessing.Pipe``,
``multiprocessing.Queue``, and raw ``multiprocessing.shared_memory`` with
``multiprocessing.Event`` (round trip) or the textbook bounded buffer of two
``multiprocessing.Semaphore`` (stream). A third, ``numpy``, times receiving
a 1 MiB record in one process: ``recv_view()`` (zero-copy) against
``recv_array()`` (a copy).

Runs are interleaved (every transport once, then again) and the report gives
the median and range of ``--runs`` runs, and each transport's ratio to a
baseline measured in the same runs: on a shared, loaded machine only the
ratios mean much.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

MSG = 64
CTX = multiprocessing.get_context("spawn")


def _per_round_trip(n: int, send: Callable[[bytes], object], receive: Callable[[], object]) -> float:
    """Seconds per round trip over `n` trips, after a warm-up."""
    msg = b"x" * MSG
    for _ in range(min(200, n)):
        send(msg)
        receive()
    t0 = time.perf_counter()
    for _ in range(n):
        send(msg)
        receive()
    return (time.perf_counter() - t0) / n


def _name(tag: str) -> str:
    return f"/shmkit-bench-{os.getpid()}-{tag}-{time.monotonic_ns() % 10**9}"


# ---------------------------------------------------------------- round trip


def _echo_shmkit(req: str, resp: str, wait: str, ready) -> None:
    import shmkit

    rx = shmkit.Channel.open(req).receiver()
    tx = shmkit.Channel.open(resp).sender()
    rx.set_wait(wait)
    tx.set_wait(wait)
    ready.set()
    for msg in rx:
        tx.send(msg)


def _echo_shmkit_poll(req: str, resp: str, ready) -> None:
    import shmkit

    rx = shmkit.Channel.open(req).receiver()
    tx = shmkit.Channel.open(resp).sender()
    ready.set()
    while True:
        msg = rx.try_recv()
        if msg == b"":  # try_recv does not wait to learn of a disconnection
            return
        if msg is not None:
            tx.send(msg)


def rt_shmkit(n: int, wait: str = "spin") -> float:
    import shmkit

    names = (_name("req"), _name("resp"))
    req = shmkit.Channel.create(names[0], capacity=64, max_message=MSG, spsc=True)
    resp = shmkit.Channel.create(names[1], capacity=64, max_message=MSG, spsc=True)
    try:
        tx, rx = req.sender(), resp.receiver()
        if wait != "poll":
            tx.set_wait(wait)
            rx.set_wait(wait)
        receive = rx.recv if wait != "poll" else lambda: _poll(rx)
        ready = CTX.Event()
        if wait == "poll":
            p = CTX.Process(target=_echo_shmkit_poll, args=(names[0], names[1], ready))
        else:
            p = CTX.Process(target=_echo_shmkit, args=(names[0], names[1], wait, ready))
        p.start()
        ready.wait(60)
        per_trip = _per_round_trip(n, tx.send, receive)
        if wait == "poll":
            tx.send(b"")
        tx.close()
        p.join(60)
        return per_trip
    finally:
        req.unlink()
        resp.unlink()


def _poll(rx) -> bytes:
    while True:
        msg = rx.try_recv()
        if msg is not None:
            return msg


def _echo_pipe(conn) -> None:
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass


def rt_pipe(n: int) -> float:
    a, b = CTX.Pipe()
    p = CTX.Process(target=_echo_pipe, args=(b,))
    p.start()
    b.close()
    per_trip = _per_round_trip(n, a.send_bytes, a.recv_bytes)
    a.close()
    p.join(60)
    return per_trip


def _echo_queue(q_in, q_out) -> None:
    while True:
        m = q_in.get()
        if m is None:
            return
        q_out.put(m)


def rt_queue(n: int) -> float:
    q_in, q_out = CTX.Queue(), CTX.Queue()
    p = CTX.Process(target=_echo_queue, args=(q_in, q_out))
    p.start()
    per_trip = _per_round_trip(n, q_in.put, q_out.get)
    q_in.put(None)
    p.join(60)
    return per_trip


def _echo_raw(name: str, ping, pong) -> None:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name)
    buf = shm.buf
    try:
        while True:
            ping.wait()
            ping.clear()
            if buf[0] == 0:
                return
            buf[MSG : 2 * MSG] = buf[0:MSG]
            pong.set()
    finally:
        del buf
        shm.close()


def rt_raw(n: int) -> float:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=4096)
    ping, pong = CTX.Event(), CTX.Event()
    p = CTX.Process(target=_echo_raw, args=(shm.name, ping, pong))
    p.start()
    buf = shm.buf

    def send(msg: bytes) -> None:
        buf[0:MSG] = msg
        ping.set()

    def receive() -> bytes:
        pong.wait()
        pong.clear()
        return bytes(buf[MSG : 2 * MSG])

    try:
        per_trip = _per_round_trip(n, send, receive)
        buf[0] = 0
        ping.set()
        p.join(60)
        return per_trip
    finally:
        shm.close()  # releases shm.buf, which `buf` is (not an export of)
        shm.unlink()


# -------------------------------------------------------------------- stream


def _produce_shmkit(name: str, n: int, batch: int) -> None:
    import shmkit

    with shmkit.Channel.open(name).sender() as tx:
        msg = b"x" * MSG
        if batch > 1:
            chunk = [msg] * batch
            for _ in range(n // batch):
                tx.send_many(chunk)
        else:
            for _ in range(n):
                tx.send(msg)


def st_shmkit(n: int, batch: int) -> float:
    import shmkit

    name = _name("stream")
    ch = shmkit.Channel.create(name, capacity=1024, max_message=MSG, spsc=True)
    try:
        rx = ch.receiver()
        p = CTX.Process(target=_produce_shmkit, args=(name, n, batch))
        p.start()
        got = 0
        first = rx.recv(timeout=60)  # the clock starts at the first message
        got = 1
        t0 = time.perf_counter()
        if batch > 1:
            while got < n:
                got += len(rx.recv_many(batch))
        else:
            while got < n:
                rx.recv()
                got += 1
        dt = time.perf_counter() - t0
        del first
        p.join(60)
        return (n - 1) / dt
    finally:
        ch.unlink()


def _produce_pipe(conn, n: int) -> None:
    msg = b"x" * MSG
    for _ in range(n):
        conn.send_bytes(msg)
    conn.close()


def _rate(n: int, receive: Callable[[], object]) -> float:
    """Messages per second receiving `n`, the clock started at the first."""
    receive()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        receive()
    return (n - 1) / (time.perf_counter() - t0)


def st_pipe(n: int) -> float:
    a, b = CTX.Pipe(duplex=False)
    p = CTX.Process(target=_produce_pipe, args=(b, n))
    p.start()
    b.close()
    rate = _rate(n, a.recv_bytes)
    p.join(60)
    return rate


def _produce_queue(q, n: int) -> None:
    msg = b"x" * MSG
    for _ in range(n):
        q.put(msg)


def st_queue(n: int) -> float:
    q = CTX.Queue(maxsize=1024)
    p = CTX.Process(target=_produce_queue, args=(q, n))
    p.start()
    rate = _rate(n, q.get)
    p.join(60)
    return rate


SLOTS = 64


def _produce_raw(name: str, n: int, items, spaces) -> None:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name)
    buf = shm.buf
    msg = b"x" * MSG
    for i in range(n):
        spaces.acquire()
        off = (i % SLOTS) * MSG
        buf[off : off + MSG] = msg
        items.release()
    del buf
    shm.close()


def st_raw(n: int) -> float:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(create=True, size=SLOTS * MSG)
    items, spaces = CTX.Semaphore(0), CTX.Semaphore(SLOTS)
    p = CTX.Process(target=_produce_raw, args=(shm.name, n, items, spaces))
    p.start()
    buf = shm.buf
    try:
        items.acquire()
        bytes(buf[0:MSG])
        spaces.release()
        t0 = time.perf_counter()
        for i in range(1, n):
            items.acquire()
            off = (i % SLOTS) * MSG
            bytes(buf[off : off + MSG])
            spaces.release()
        dt = time.perf_counter() - t0
        p.join(60)
        return (n - 1) / dt
    finally:
        del buf
        shm.close()
        shm.unlink()


# --------------------------------------------------------------------- numpy


def numpy_receive(n: int, zero_copy: bool) -> float:
    """Seconds per receive of a 1 MiB record already in the channel."""
    import numpy as np

    import shmkit

    name = _name("np")
    ch = shmkit.Channel.create(name, capacity=4, dtype="<f8", shape=(128, 1024))
    try:
        tx, rx = ch.sender(), ch.receiver()
        record = np.ones((128, 1024))
        total = 0.0
        for _ in range(n):
            tx.send_array(record)
            t0 = time.perf_counter()
            if zero_copy:
                with rx.recv_view() as view:
                    view.array[0, 0]
            else:
                rx.recv_array()[0, 0]
            total += time.perf_counter() - t0
        return total / n
    finally:
        ch.unlink()


# -------------------------------------------------------------------- driver


def scenarios(quick: bool) -> Dict[str, Dict[str, Callable[[], float]]]:
    k = 1 if quick else 4
    return {
        "roundtrip": {
            "shmkit": lambda: rt_shmkit(20000 * k),
            "shmkit (wait=sleep)": lambda: rt_shmkit(2000 * k, "sleep"),
            "shmkit (busy-poll try_recv)": lambda: rt_shmkit(20000 * k, "poll"),
            "multiprocessing.Pipe": lambda: rt_pipe(2000 * k),
            "multiprocessing.Queue": lambda: rt_queue(1000 * k),
            "SharedMemory+Event": lambda: rt_raw(1000 * k),
        },
        "stream": {
            "shmkit send_many/recv_many": lambda: st_shmkit(200000 * k, 64),
            "shmkit send/recv": lambda: st_shmkit(100000 * k, 1),
            "multiprocessing.Pipe": lambda: st_pipe(50000 * k),
            "multiprocessing.Queue": lambda: st_queue(20000 * k),
            "SharedMemory+Semaphore": lambda: st_raw(20000 * k),
        },
        "numpy": {
            "recv_view (zero-copy)": lambda: numpy_receive(200 * k, True),
            "recv_array (copy)": lambda: numpy_receive(200 * k, False),
        },
    }


BASELINE = {
    "roundtrip": "multiprocessing.Pipe",
    "stream": "multiprocessing.Queue",
    "numpy": "recv_array (copy)",
}
UNITS = {"roundtrip": "µs per round trip", "stream": "messages/s", "numpy": "µs per receive"}


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shmkit.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs (median and range)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--scenario", action="append", choices=list(BASELINE), help="only these")
    ap.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    args = ap.parse_args(argv)
    chosen = scenarios(args.quick)
    if args.scenario:
        chosen = {k: v for k, v in chosen.items() if k in args.scenario}
    raw: Dict[str, Dict[str, List[float]]] = {s: {t: [] for t in ts} for s, ts in chosen.items()}
    for run in range(args.runs):
        for s, transports in chosen.items():
            for t, fn in transports.items():
                value = fn()
                raw[s][t].append(value)
                print(f"run {run + 1}/{args.runs} {s:9} {t:28} {_show(s, value)}", file=sys.stderr)
    print(f"# python -m shmkit.bench --runs {args.runs}{' --quick' if args.quick else ''}")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n")
    for s, transports in raw.items():
        base = statistics.median(transports[BASELINE[s]])
        print(f"## {s} ({UNITS[s]}; ratio against {BASELINE[s]})\n")
        print("| transport | median | range | ratio |")
        print("| --- | ---: | ---: | ---: |")
        for t, values in transports.items():
            med = statistics.median(values)
            ratio = base / med if s != "stream" else med / base
            print(
                f"| {t} | {_show(s, med)} | {_show(s, min(values))} – {_show(s, max(values))} | {ratio:.1f}× |"
            )
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0


def _show(scenario: str, value: float) -> str:
    if scenario == "stream":
        return f"{value:,.0f}"
    return f"{value * 1e6:.2f}"


if __name__ == "__main__":
    sys.exit(main())
