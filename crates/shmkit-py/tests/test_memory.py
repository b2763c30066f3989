"""shmkit.SharedMemory against multiprocessing.shared_memory.SharedMemory:
the same operations, the same results, except where shmkit is safer."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import sys
from multiprocessing import shared_memory as stdlib

import pytest

import shmkit
from conftest import run_python

KINDS = [shmkit.SharedMemory, stdlib.SharedMemory]


def _untrack(shm) -> None:
    """Keep the stdlib's resource tracker from unlinking (and warning about)
    what a test removes itself."""
    if isinstance(shm, stdlib.SharedMemory):
        from multiprocessing import resource_tracker

        try:
            resource_tracker.unregister(shm._name, "shared_memory")
        except Exception:
            pass


@pytest.mark.parametrize("cls", KINDS, ids=["shmkit", "stdlib"])
def test_same_surface_as_the_stdlib(cls, name):
    bare = name[1:]
    shm = cls(bare, create=True, size=4096)
    try:
        assert shm.name == bare
        assert shm.size == 4096
        assert isinstance(shm.buf, memoryview) and shm.buf.format == "B" and len(shm.buf) == 4096
        shm.buf[:5] = b"hello"
        other = cls(bare)
        assert other.size == 4096 and bytes(other.buf[:5]) == b"hello"
        other.close()
        assert other.buf is None
        again = pickle.loads(pickle.dumps(shm))
        assert again.name == bare and bytes(again.buf[:5]) == b"hello"
        again.close()
        assert repr(shm) == f"{cls.__name__}({bare!r}, size=4096)"
        with pytest.raises(FileExistsError):
            cls(bare, create=True, size=10)
    finally:
        shm.close()
        shm.unlink()
        _untrack(shm)
    with pytest.raises(FileNotFoundError):
        cls(bare)
    with pytest.raises(ValueError):
        cls(bare, create=True, size=0)
    with pytest.raises(ValueError):
        cls(bare, create=True, size=-1)
    with pytest.raises(ValueError):
        cls(None)  # a name is needed unless creating


@pytest.mark.parametrize("cls", KINDS, ids=["shmkit", "stdlib"])
def test_random_name_when_none(cls):
    shm = cls(create=True, size=64)
    try:
        assert shm.name.startswith("psm_")
        assert os.path.exists("/dev/shm/" + shm.name)
    finally:
        shm.close()
        shm.unlink()
        _untrack(shm)


def test_interoperates_with_the_stdlib(name):
    mine = shmkit.SharedMemory(name, create=True, size=100)
    theirs = stdlib.SharedMemory(name[1:])
    try:
        theirs.buf[10:13] = b"abc"
        assert bytes(mine.buf[10:13]) == b"abc"
    finally:
        theirs.close()
        _untrack(theirs)
        mine.close()


ATTACH_AND_EXIT = """
import sys
from multiprocessing import shared_memory
import shmkit
cls = shmkit.SharedMemory if sys.argv[2] == "shmkit" else shared_memory.SharedMemory
shm = cls(sys.argv[1])
shm.buf[0] = 1
shm.close()
"""


def test_no_resource_tracker_unlinks_behind_your_back(name):
    shm = shmkit.SharedMemory(name, create=True, size=64)
    run_python(ATTACH_AND_EXIT, name[1:], "shmkit")
    assert os.path.exists("/dev/shm" + name), "shmkit must never unlink what it only opened"
    if sys.version_info < (3, 13):
        # The stdlib's tracker in the child unlinks a segment it only
        # attached to, when the child exits (CPython gh-82300).
        run_python(ATTACH_AND_EXIT, name[1:], "stdlib", check=False)
        assert not os.path.exists("/dev/shm" + name)
    shm.close()


def test_close_never_unmaps_under_a_live_view(name):
    np = pytest.importorskip("numpy")
    shm = shmkit.SharedMemory(name, create=True, size=4096)
    arr = np.ndarray((4096,), dtype=np.uint8, buffer=shm.buf)
    piece = shm.buf[100:104]
    arr[:] = 7
    shm.close()  # the stdlib would raise BufferError here, or unmap under numpy
    assert shm.buf is None
    assert int(arr.sum()) == 7 * 4096 and bytes(piece) == b"\x07" * 4
    shm.unlink()
    del arr, piece


def test_exact_mode_whatever_the_umask(name):
    old = os.umask(0o077)
    try:
        shm = shmkit.SharedMemory(name, create=True, size=64, mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat("/dev/shm" + name).st_mode) == 0o644
    assert shm.mode == 0o644
    shm.close()


def test_resize_keeps_data_and_gives_a_new_buf(name):
    shm = shmkit.SharedMemory(name, create=True, size=100)
    shm.buf[:3] = b"xyz"
    old = shm.buf
    shm.resize(64 * 1024)
    assert shm.size == 64 * 1024 and len(shm.buf) == 64 * 1024
    assert bytes(shm.buf[:3]) == b"xyz" and os.stat("/dev/shm" + name).st_size == 64 * 1024
    assert bytes(old[:3]) == b"xyz"  # the old view still works
    shm.buf[60000] = 5
    assert shmkit.SharedMemory(name).buf[60000] == 5
    shm.resize(10)
    assert shm.size == 10
    with pytest.raises(ValueError):
        shm.resize(0)
    shm.close()
    with pytest.raises(ValueError):
        shm.resize(100)


def test_read_only(name):
    shm = shmkit.SharedMemory(name, create=True, size=16)
    ro = shmkit.SharedMemory(name, read_only=True)
    assert ro.buf.readonly
    with pytest.raises(TypeError):
        ro.buf[0] = 1
    shm.close()
    ro.close()


def test_bad_names(name):
    with pytest.raises(shmkit.InvalidName):
        shmkit.SharedMemory("a/b", create=True, size=8)
    with pytest.raises(ValueError):
        shmkit.SharedMemory("n" * 300, create=True, size=8)
    os.symlink("/etc/passwd", "/dev/shm" + name)
    with pytest.raises(shmkit.NotAnObject):
        shmkit.SharedMemory(name)


FULL_DEV_SHM = """
import errno, sys
import shmkit
try:
    shmkit.SharedMemory("shmkit-test-full", create=True, size=4 << 20)
except OSError as e:
    assert e.errno == errno.ENOSPC, e
    assert isinstance(e, shmkit.NoSpace)
    print("ENOSPC")
import os
assert not os.path.exists("/dev/shm/shmkit-test-full"), "a half-made object was left"
small = shmkit.SharedMemory("shmkit-test-small", create=True, size=4096)
try:
    small.resize(4 << 20)
except OSError as e:
    assert e.errno == errno.ENOSPC, e
    print("ENOSPC on resize")
if sys.argv[1] == "stdlib":
    from multiprocessing import shared_memory
    shm = shared_memory.SharedMemory("shmkit-test-std", create=True, size=4 << 20)
    print("stdlib created it", flush=True)
    for page in range(0, 4 << 20, 4096):
        shm.buf[page] = 1  # SIGBUS once a page cannot be backed
    print("not reached")
"""


def _in_small_dev_shm(script: str, *args: str) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private 1 MiB /dev/shm needs root and unshare")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1M tmpfs /dev/shm"])
    if probe.returncode != 0:
        pytest.skip("cannot mount a private tmpfs here")
    return subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount -t tmpfs -o size=1M tmpfs /dev/shm && exec "$0" -c "$1" "$2"',
            sys.executable,
            script,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_full_dev_shm_is_enospc_never_sigbus():
    out = _in_small_dev_shm(FULL_DEV_SHM, "shmkit")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["ENOSPC", "ENOSPC on resize"]
    # The stdlib, on the same full /dev/shm: created, then SIGBUS on touch.
    out = _in_small_dev_shm(FULL_DEV_SHM, "stdlib")
    assert "stdlib created it" in out.stdout and out.returncode == -7, (out.returncode, out.stderr)
