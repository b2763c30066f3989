"""The robust mutex and named semaphores across processes."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import shmkit
from conftest import child_that_printed, popen_python

LOCK_THEN_HANG = """
import sys, time, shmkit
m = shmkit.Mutex.open(sys.argv[1])
g = m.lock()
print("locked", flush=True)
time.sleep(600)
"""


def test_previous_owner_died(name):
    shmkit.Mutex.create(name)
    with child_that_printed(LOCK_THEN_HANG, name, line="locked") as child:
        m = shmkit.Mutex.open(name)
        assert m.try_lock() is None
        with pytest.raises(shmkit.TimeoutError):
            m.lock(timeout=0.1)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        with shmkit.Mutex.open(name) as guard:
            assert guard.previous_owner_died and not guard.consistent
            guard.mark_consistent()
            assert guard.consistent
        with m as guard:
            assert not guard.previous_owner_died


def test_unrepaired_mutex_becomes_unrecoverable(name):
    shmkit.Mutex.create(name)
    with child_that_printed(LOCK_THEN_HANG, name, line="locked") as child:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        m = shmkit.Mutex.open(name)
        with m as guard:
            assert guard.previous_owner_died  # ...and not marked consistent
        with pytest.raises(shmkit.Corrupt):
            m.lock(timeout=1)


def test_lock_wait_releases_the_gil(name):
    m = shmkit.Mutex.create(name)
    held = threading.Event()
    done = threading.Event()

    def holder():
        with m:
            held.set()
            done.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    ticks = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks[0] += 1

    c = threading.Thread(target=count)
    c.start()
    time.sleep(0.05)
    before = ticks[0]
    with pytest.raises(TimeoutError):
        m.lock(timeout=0.3)
    during = ticks[0] - before
    stop.set()
    done.set()
    c.join()
    t.join()
    assert during > 10000, during


def test_bad_mutex_input(name):
    with pytest.raises(FileNotFoundError):
        shmkit.Mutex.open(name)
    shmkit.SharedMemory(name, create=True, size=4096).close()
    with pytest.raises(shmkit.Corrupt, match="no shmkit mutex"):
        shmkit.Mutex.open(name)


SEM_POST = """
import sys, shmkit
s = shmkit.Semaphore.open(sys.argv[1])
for _ in range(3):
    s.post()
"""


def test_semaphore_across_processes(name):
    sem = shmkit.Semaphore.create(name, 0)
    try:
        assert not sem.wait(timeout=0.05)
        child = popen_python(SEM_POST, name)
        assert child.wait(30) == 0
        assert all(sem.wait(timeout=5) for _ in range(3))
        assert not sem.try_wait()
        sem.post()
        with shmkit.Semaphore.open(name) as s:  # takes the unit, gives it back
            assert s.value == 0
        assert sem.value == 1
    finally:
        shmkit.Semaphore.unlink(name)
