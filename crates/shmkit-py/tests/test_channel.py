"""Channels across real processes: order, no loss, disconnection, GIL."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

import shmkit
from conftest import child_that_printed, run_python


def _produce(name: str, tag: int, count: int) -> None:
    import shmkit

    with shmkit.Channel.open(name).sender() as tx:
        for i in range(count):
            tx.send(f"{tag} {i}".encode())


def _produce_batches(name: str, count: int) -> None:
    import shmkit

    with shmkit.Channel.open(name).sender() as tx:
        for start in range(0, count, 100):
            tx.send_many([i.to_bytes(8, "little") for i in range(start, min(start + 100, count))])


@pytest.mark.parametrize("spsc", [False, True])
def test_order_and_no_loss_across_spawned_processes(name, spawn, spsc):
    producers = 1 if spsc else 3
    count = 3000
    ch = shmkit.Channel.create(name, capacity=64, max_message=32, spsc=spsc)
    rx = ch.receiver()
    procs = [spawn.Process(target=_produce, args=(name, t, count)) for t in range(producers)]
    for p in procs:
        p.start()
    # Iteration ends when every sender is gone and the channel is empty;
    # it can only end early if a sender connects late, so wait for them.
    deadline = time.monotonic() + 30
    while sum(e["role"] == "sender" for e in ch.stats()["endpoints"]) < producers:
        if not any(p.is_alive() for p in procs) or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    last = {}
    got = 0
    for msg in rx:
        tag, i = map(int, msg.split())
        assert i == last.get(tag, -1) + 1, f"producer {tag}: {i} after {last.get(tag)}"
        last[tag] = i
        got += 1
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert got == producers * count
    assert all(v == count - 1 for v in last.values())


def test_send_many_recv_many_stream(name, spawn):
    count = 20000
    ch = shmkit.Channel.create(name, capacity=256, max_message=64, spsc=True)
    rx = ch.receiver()
    p = spawn.Process(target=_produce_batches, args=(name, count))
    p.start()
    expected = 0
    while expected < count:
        for msg in rx.recv_many(128, timeout=30):
            assert int.from_bytes(msg, "little") == expected
            expected += 1
    p.join(30)
    assert p.exitcode == 0
    with pytest.raises(shmkit.Disconnected):
        rx.recv(timeout=5)


SENDER_THEN_HANG = """
import sys, time, shmkit
tx = shmkit.Channel.open(sys.argv[1]).sender()
for i in range(10):
    tx.send(b"m%d" % i)
print("sent", flush=True)
time.sleep(600)
"""


def test_sigkilled_sender_disconnects(name):
    ch = shmkit.Channel.create(name, capacity=16, max_message=16)
    rx = ch.receiver()
    with child_that_printed(SENDER_THEN_HANG, name, line="sent") as child:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        got = [rx.recv(timeout=10) for _ in range(10)]
        assert got == [b"m%d" % i for i in range(10)]
        # Every sender is gone (killed): the receiver learns it.
        with pytest.raises(shmkit.Disconnected) as e:
            rx.recv(timeout=10)
        assert isinstance(e.value, OSError) and isinstance(e.value, ConnectionError)
        assert list(rx) == []


def test_gil_released_while_waiting(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx = ch.receiver()
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = ticks[0]
        with pytest.raises(shmkit.TimeoutError):
            rx.recv(timeout=0.5)
        during = ticks[0] - before
    finally:
        stop.set()
        t.join()
    # With the GIL held for the whole wait the thread would not run at all
    # (it would get at most the switch interval's worth before the call).
    assert during > 10000, during


def test_recv_wakes_for_another_thread_sender(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx, tx = ch.receiver(), ch.sender()
    threading.Timer(0.2, lambda: tx.send(b"late")).start()
    assert rx.recv(timeout=10) == b"late"


def test_bad_input_gives_clear_exceptions(name):
    with pytest.raises(shmkit.InvalidName) as e:
        shmkit.Channel.create("a/b")
    assert isinstance(e.value, ValueError) and e.value.errno == 22
    with pytest.raises(shmkit.InvalidName):
        shmkit.Channel.create("x" * 300)
    with pytest.raises(shmkit.InvalidArgument) as e:
        shmkit.Channel.create(name, capacity=0)
    assert "capacity" in str(e.value)
    with pytest.raises(OverflowError):
        shmkit.Channel.create(name, capacity=-1)
    with pytest.raises(TypeError):
        shmkit.Channel.create(name, capacity="many")
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    with pytest.raises(FileExistsError) as e:
        shmkit.Channel.create(name)
    assert e.value.errno == 17 and name in str(e.value)
    tx, rx = ch.sender(), ch.receiver()
    with pytest.raises(TypeError):
        tx.send(42)
    with pytest.raises(TypeError):
        tx.send("text is not bytes")
    with pytest.raises(shmkit.InvalidArgument) as e:
        tx.send(b"123456789")
    assert "9 bytes" in str(e.value) and "8" in str(e.value)
    with pytest.raises(ValueError):
        rx.recv(timeout=-1)
    with pytest.raises(ValueError):
        rx.recv(timeout=float("nan"))
    with pytest.raises(shmkit.InvalidArgument):
        rx.recv_into(bytearray(4))
    with pytest.raises(TypeError):
        rx.recv_into(b"read-only bytes")
    with pytest.raises(FileNotFoundError) as e:
        shmkit.Channel.open(name + "-missing")
    assert e.value.errno == 2 and e.value.object == name + "-missing"
    tx.close()
    with pytest.raises(ValueError, match="closed"):
        tx.send(b"x")
    with pytest.raises(shmkit.InvalidArgument):
        ch.sender().send_array([1, 2])  # a channel without a record type
    # A board is not a channel.
    shmkit.Board.create(name + "-b", size=8)
    with pytest.raises(shmkit.Error, match="board, not a channel"):
        shmkit.Channel.open(name + "-b")


def test_try_recv_recv_into_and_timeouts(name):
    ch = shmkit.Channel.create(name, capacity=2, max_message=16)
    tx, rx = ch.sender(), ch.receiver()
    assert rx.try_recv() is None
    assert tx.try_send(b"a") and tx.try_send(b"b")
    assert not tx.try_send(b"c")  # full
    with pytest.raises(shmkit.TimeoutError):
        tx.send(b"c", timeout=0.05)
    buf = bytearray(16)
    assert rx.recv_into(buf) == 1 and buf[:1] == b"a"
    assert rx.try_recv() == b"b"
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.05)


def test_rust_producer_python_consumer(name, shmkit_bin):
    out = subprocess.run(
        [shmkit_bin, "produce", name, "--count", "500", "--tag", "rust"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    ch = shmkit.Channel.open(name)
    rx = ch.receiver()
    got = list(rx)
    assert got == [f"rust {i}".encode() for i in range(500)]


def test_python_producer_rust_consumer(name, shmkit_bin):
    ch = shmkit.Channel.create(name, capacity=64, max_message=64)
    consumer = subprocess.Popen(
        [shmkit_bin, "consume", name, "--count", "300"], stdout=subprocess.PIPE, text=True
    )
    try:
        with ch.sender() as tx:
            for i in range(300):
                tx.send(f"py {i}".encode(), timeout=30)
        out, _ = consumer.communicate(timeout=60)
    finally:
        consumer.kill()
    assert consumer.returncode == 0
    assert out.splitlines() == [f"py {i}" for i in range(300)]


def test_ls_and_stat_show_python_objects(name, shmkit_bin):
    import json

    shmkit.Channel.create(name, capacity=8, max_message=32)
    shmkit.Board.create(name + "-board", size=16).set(b"v")
    stat = json.loads(subprocess.check_output([shmkit_bin, "chan", "stat", name, "--json"], text=True))
    assert stat["kind"] == "channel" and stat["capacity"] == 8 and stat["max_msg"] == 32
    stat = json.loads(subprocess.check_output([shmkit_bin, "stat", name + "-board", "--json"], text=True))
    assert stat["object"] == "board" and stat["version"] == 1
    listing = subprocess.check_output([shmkit_bin, "ls", "--posix"], text=True)
    assert name in listing and name + "-board" in listing


def test_python_child_via_subprocess_sees_python_parent(name):
    ch = shmkit.Channel.create(name, capacity=8, max_message=32)
    with ch.sender() as tx:
        tx.send(b"from parent")
    code = "import sys, shmkit; print(shmkit.Channel.open(sys.argv[1]).receiver().recv(timeout=10).decode())"
    assert run_python(code, name).stdout.strip() == "from parent"


def test_readme_example_between_two_processes(name):
    import sys
    from pathlib import Path

    example = str(Path(__file__).resolve().parents[1] / "examples" / "hello.py")
    consumer = subprocess.Popen([sys.executable, example, "consume", name], stdout=subprocess.PIPE, text=True)
    try:
        subprocess.run([sys.executable, example, "produce", name], check=True, timeout=60)
        out, _ = consumer.communicate(timeout=60)
    finally:
        consumer.kill()
    assert consumer.returncode == 0
    assert out.splitlines() == [f"hello {i} from the producer" for i in range(5)]


WAIT_FOREVER = """
import signal, sys, shmkit
# Python turns SIGINT into KeyboardInterrupt only when SIGINT was at its
# default at startup; a test run started in the background by a
# non-interactive shell (as CI may be) inherits it ignored. Install the
# handler explicitly: the test is about shmkit's wait, not the parent's.
signal.signal(signal.SIGINT, signal.default_int_handler)
ch = shmkit.Channel.create(sys.argv[1], capacity=4, max_message=8)
tx, rx = ch.sender(), ch.receiver()
print("waiting", flush=True)
try:
    rx.recv()  # no timeout: only a signal ends it
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    ch.unlink()
"""


def test_ctrl_c_interrupts_a_wait_without_timeout(name):
    with child_that_printed(WAIT_FOREVER, name, line="waiting") as child:
        time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=30)
        assert out.strip() == "interrupted" and child.returncode == 0


def test_an_endpoint_used_by_two_threads_at_once_is_refused(name):
    ch = shmkit.Channel.create(name, capacity=4, max_message=8)
    rx = ch.receiver()
    tx = ch.sender()
    waiting = threading.Thread(target=lambda: pytest.raises(shmkit.TimeoutError, rx.recv, timeout=1))
    waiting.start()
    time.sleep(0.2)
    with pytest.raises(RuntimeError, match="borrowed"):
        rx.recv(timeout=0.1)
    waiting.join()
    tx.send(b"ok")
    assert rx.recv(timeout=5) == b"ok"
