"""numpy records: dtype and shape found by the reader, copies, and the
zero-copy view's lifetime (a released view raises, never crashes)."""

from __future__ import annotations

import gc

import pytest

np = pytest.importorskip("numpy")
import shmkit  # noqa: E402
from conftest import run_python  # noqa: E402

POINT = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<u4"), ("tag", "S4")])


def _send_points(name: str, n: int) -> None:
    import numpy as np

    import shmkit

    ch = shmkit.Channel.open(name)  # learns dtype and shape from the record
    with ch.sender() as tx:
        for i in range(n):
            a = np.zeros(ch.shape, ch.dtype)
            a["x"], a["y"], a["id"], a["tag"] = i, -i, i, b"pt"
            tx.send_array(a)


def test_reader_learns_dtype_and_shape_across_processes(name, spawn):
    ch = shmkit.Channel.create(name, capacity=8, dtype=POINT, shape=(3,))
    rx = ch.receiver()
    p = spawn.Process(target=_send_points, args=(name, 50))
    p.start()
    for i in range(50):
        a = rx.recv_array(timeout=30)
        assert a.dtype == POINT and a.shape == (3,)
        assert a.flags.owndata and a.flags.writeable
        assert list(a["id"]) == [i] * 3 and a["tag"][0] == b"pt"
    p.join(30)
    assert p.exitcode == 0
    opened = shmkit.Channel.open(name)
    assert opened.dtype == POINT and opened.shape == (3,) and opened.max_message == POINT.itemsize * 3


def test_zero_copy_view_lifetime(name):
    ch = shmkit.Channel.create(name, capacity=4, dtype="<f4", shape=(16, 16))
    tx, rx = ch.sender(), ch.receiver()
    tx.send_array(np.full((16, 16), 7, "<f4"))
    with rx.recv_view(timeout=5) as view:
        arr = view.array
        assert arr.shape == (16, 16) and arr.dtype == np.float32
        assert not arr.flags.writeable and not arr.flags.owndata
        assert float(arr.sum()) == 7 * 256
        sub = arr[3:5, ::2]  # a view of a view still holds the slot
        del arr
        with pytest.raises(BufferError, match="1 numpy array"):
            view.release()
        assert not view.released
        with pytest.raises(BufferError):
            rx.recv(timeout=0)  # the receiver is lent to the view meanwhile
        del sub
        gc.collect()
    assert view.released
    with pytest.raises(ValueError, match="released"):
        view.array
    with pytest.raises(ValueError, match="released"):
        view.tobytes()
    with pytest.raises(ValueError):
        len(view)
    view.release()  # idempotent
    # The receiver works again, and the freed slot is reused.
    for i in range(8):
        tx.send_array(np.full((16, 16), i, "<f4"))
        assert rx.recv_array(timeout=5)[0, 0] == i


def test_array_outlives_receiver_channel_and_name(name):
    ch = shmkit.Channel.create(name, capacity=4, dtype="<i8", shape=(1024,))
    tx, rx = ch.sender(), ch.receiver()
    tx.send_array(np.arange(1024, dtype="<i8"))
    view = rx.recv_view(timeout=5)
    arr = view.array
    # Drop every handle; the array keeps the mapping (and the slot) alive.
    del view, rx, tx
    ch.unlink()
    del ch
    gc.collect()
    assert int(arr.sum()) == sum(range(1024))
    del arr
    gc.collect()


RELEASED_VIEW = """
import sys, numpy as np, shmkit
ch = shmkit.Channel.create(sys.argv[1], capacity=2, dtype="u1", shape=(4096,))
tx, rx = ch.sender(), ch.receiver()
tx.send_array(np.ones(4096, "u1"))
v = rx.recv_view()
v.release()
try:
    v.array
except ValueError:
    print("raised")
rx.close()
del rx
ch.unlink()
try:
    v.tobytes()
except ValueError:
    print("raised again")
"""


def test_released_view_raises_never_crashes_in_a_fresh_process(name):
    out = run_python(RELEASED_VIEW, name)
    assert out.returncode == 0 and out.stdout.split() == ["raised", "raised", "again"]


def test_wrong_record_is_refused(name):
    ch = shmkit.Channel.create(name, capacity=2, dtype="<f8", shape=(2, 2))
    tx = ch.sender()
    with pytest.raises(shmkit.InvalidArgument, match="shape"):
        tx.send_array(np.zeros((2, 3)))
    with pytest.raises(shmkit.InvalidArgument, match="dtype"):
        tx.send_array(np.zeros((2, 2), "<f4"))
    with pytest.raises(ValueError):
        shmkit.Channel.create(name + "-x", dtype="<f8", shape=(2,), max_message=3)
    with pytest.raises(TypeError):
        shmkit.Channel.create(name + "-o", dtype=object)
    # A plain bytes message of the wrong size is a corrupt record.
    tx.send(b"short")
    with pytest.raises(shmkit.Corrupt):
        ch.receiver().recv_array(timeout=5)


def test_board_of_records(name, spawn):
    b = shmkit.Board.create(name, dtype="<f8", shape=(3,))
    b.set_array(np.array([1.0, 2.0, 3.0]))
    code = "import sys, shmkit; print(shmkit.Board.open(sys.argv[1]).get_array().tolist())"
    assert run_python(code, name).stdout.strip() == "[1.0, 2.0, 3.0]"
    assert shmkit.Board.open(name).dtype == np.float64


def test_corrupt_record_description_is_an_error(name):
    shmkit.Channel.create(name, capacity=2, dtype="<f8", shape=(2,))
    side = shmkit.SharedMemory(name + ".shmkit-record")
    side.buf[12:20] = b"garbage!"
    side.close()
    with pytest.raises(shmkit.Corrupt, match="shmkit-record"):
        shmkit.Channel.open(name)
