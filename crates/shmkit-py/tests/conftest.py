"""Shared fixtures: unique object names with guaranteed cleanup, helpers
to run real processes (multiprocessing with spawn, subprocess, the shmkit
binary)."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_counter = itertools.count()
PREFIX = f"shmkit-test-{os.getpid()}-py"
ROOT = Path(__file__).resolve().parents[3]


def _remove_prefixed(prefix: str) -> None:
    for entry in os.listdir("/dev/shm"):
        if entry.startswith(prefix) or entry.startswith("sem." + prefix):
            try:
                os.unlink(os.path.join("/dev/shm", entry))
            except FileNotFoundError:
                pass


@pytest.fixture
def name(request: pytest.FixtureRequest):
    """A fresh name `/shmkit-test-<pid>-py<n>`; everything under it (the
    object, its record description, a semaphore) is removed afterwards,
    even when the test fails."""
    n = f"/{PREFIX}{next(_counter)}"
    yield n
    _remove_prefixed(n[1:])


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    yield
    left = [e for e in os.listdir("/dev/shm") if PREFIX in e]
    _remove_prefixed(PREFIX)
    assert not left, f"tests left objects in /dev/shm: {left}"


@pytest.fixture(scope="session")
def spawn():
    """The spawn start method: children are fresh interpreters."""
    return multiprocessing.get_context("spawn")


@pytest.fixture(scope="session")
def shmkit_bin() -> str:
    """The `shmkit` binary: $SHMKIT_BIN, else the workspace's build, else PATH."""
    for candidate in (
        os.environ.get("SHMKIT_BIN"),
        str(ROOT / "target" / "debug" / "shmkit"),
        str(ROOT / "target" / "release" / "shmkit"),
        shutil.which("shmkit"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("SHMKIT_REQUIRE_BIN"):
        pytest.fail("the shmkit binary was not found (build it: cargo build -p shmkit-cli)")
    pytest.skip("the shmkit binary was not found (set SHMKIT_BIN)")


def run_python(code: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (a real, separate process)."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def popen_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], **kwargs)


@contextlib.contextmanager
def child_that_printed(code: str, *args: str, line: str):
    """A fresh interpreter running `code`, once it has printed `line`;
    killed (if still running) and reaped on the way out."""
    child = popen_python(code, *args, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == line
        yield child
    finally:
        child.kill()
        child.wait()
