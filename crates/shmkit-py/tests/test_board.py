"""Boards across processes: Rust writer, Python reader; a killed writer
taken over; watch; the GIL released while watching."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest

import shmkit
from conftest import child_that_printed


def test_python_reads_a_board_the_rust_cli_writes(name, shmkit_bin):
    subprocess.run([shmkit_bin, "board", "create", name, "--size", "64"], check=True, timeout=30)
    b = shmkit.Board.open(name)
    assert b.get_with_version() == (b"", 0)
    watcher = threading.Thread(target=lambda: seen.append(b.wait(0, timeout=20)))
    seen: list = []
    watcher.start()
    subprocess.run([shmkit_bin, "board", "set", name, "from rust"], check=True, timeout=30)
    watcher.join(30)
    assert seen == [(b"from rust", 1)]
    subprocess.run([shmkit_bin, "board", "set", name, "second"], check=True, timeout=30)
    assert b.get() == b"second" and b.version == 2


def test_rust_cli_reads_what_python_writes(name, shmkit_bin):
    b = shmkit.Board.create(name, size=32)
    b.set(b"from python")
    out = subprocess.run([shmkit_bin, "board", "get", name], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "from python"


WRITE_THEN_HANG = """
import sys, time, shmkit
b = shmkit.Board.open(sys.argv[1])
b.set(b"last complete")
print("written", flush=True)
time.sleep(600)
"""


def test_killed_writer_is_taken_over(name):
    b = shmkit.Board.create(name, size=32)
    with child_that_printed(WRITE_THEN_HANG, name, line="written") as child:
        with pytest.raises(FileExistsError, match="live writer"):
            b.set(b"refused while it lives")
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert b.get() == b"last complete"
        assert b.claim_writer() == child.pid
        assert b.took_over_from == child.pid
        assert b.set(b"mine now") == 2
        assert shmkit.Board.open(name).get() == b"mine now"


def test_watch_yields_new_versions_and_releases_the_gil(name):
    b = shmkit.Board.create(name, size=16)
    writer = shmkit.Board.open(name)

    def write():
        for i in range(3):
            time.sleep(0.05)
            writer.set(b"v%d" % i)

    t = threading.Thread(target=write)
    t.start()  # runs only if watch releases the GIL while it waits
    seen = []
    for value in b.watch(timeout=10):
        seen.append(value)
        if value == b"v2":
            break
    t.join()
    assert seen[-1] == b"v2"
    with pytest.raises(shmkit.TimeoutError):
        next(b.watch(timeout=0.05))


def test_bad_board_input(name):
    with pytest.raises(shmkit.InvalidArgument):
        shmkit.Board.create(name, size=0)
    b = shmkit.Board.create(name, size=4)
    with pytest.raises(shmkit.InvalidArgument, match="5 bytes"):
        b.set(b"12345")
    with pytest.raises(TypeError):
        b.set(5)
    with pytest.raises(shmkit.InvalidArgument):
        b.get_into(bytearray(2))
    buf = bytearray(4)
    b.set(b"ab")
    assert b.get_into(buf) == (2, 1) and buf[:2] == b"ab"
