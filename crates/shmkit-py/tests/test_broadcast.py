"""Broadcasts across processes: every subscriber sees every message or is
told exactly how many it missed."""

from __future__ import annotations

import subprocess

import pytest

import shmkit


def _publish(name: str, count: int) -> None:
    import shmkit

    with shmkit.Broadcast.open(name).publisher() as pub:
        for i in range(count):
            pub.send(b"%d" % i)


def test_subscriber_sees_everything_or_the_exact_gap(name, spawn):
    bc = shmkit.Broadcast.create(name, capacity=8, max_message=16)
    sub = bc.subscribe()
    p = spawn.Process(target=_publish, args=(name, 5000))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    received, missed, expected = 0, 0, 0
    for item in sub:  # ends when the writer is gone and everything is read
        if isinstance(item, shmkit.Lagged):
            assert item.missed > 0
            missed += item.missed
            expected += item.missed
        else:
            assert int(item) == expected
            expected += 1
            received += 1
    assert received + missed == 5000 and missed > 0  # capacity 8, all published first
    assert sub.missed == missed and sub.received == received


def test_recv_raises_lagged_then_goes_on(name):
    bc = shmkit.Broadcast.create(name, capacity=4, max_message=8)
    pub, sub = bc.publisher(), bc.subscribe()
    for i in range(20):
        pub.send(b"%d" % i)
    with pytest.raises(shmkit.Lagged) as e:
        sub.recv(timeout=5)
    assert e.value.missed == 18 and isinstance(e.value, OSError)
    assert sub.recv(timeout=5) == b"18"
    assert sub.try_recv() == b"19"
    assert sub.try_recv() is None
    pub.close()
    with pytest.raises(shmkit.Disconnected):
        sub.recv(timeout=5)


def test_rust_cli_subscriber_reads_python_publisher(name, shmkit_bin):
    bc = shmkit.Broadcast.create(name, capacity=64, max_message=32)
    sub = subprocess.Popen(
        [shmkit_bin, "sub", name, "--count", "10", "--from-oldest"], stdout=subprocess.PIPE, text=True
    )
    try:
        with bc.publisher() as pub:
            for i in range(10):
                pub.send(b"msg %d" % i)
        out, _ = sub.communicate(timeout=60)
    finally:
        sub.kill()
    assert out.splitlines() == [f"msg {i}" for i in range(10)]
