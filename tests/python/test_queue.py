"""A queue made through the C ABI is filled by a C program
(tests/python/queue_filler.c, built by tests/python_ctypes.rs into the
directory $MP_C_HELPERS), which attaches by the handle text alone (its memfd
passed down at the same number); it is drained here, every message checked
exactly once and in order, for an MPMC and an SPSC queue. A too-small
buffer, close and bad input get specific codes."""

import ctypes
import os
import subprocess
import sys

from mp_ctypes import c_text, check, header_defines, load_library

lib = load_library()
codes = header_defines()
q_p = ctypes.c_void_p

lib.mp_queue_new.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(q_p)]
lib.mp_queue_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(q_p)]
lib.mp_queue_handle.argtypes = [q_p, ctypes.c_char_p, ctypes.c_size_t]
lib.mp_queue_put.argtypes = [q_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]
lib.mp_queue_get.argtypes = [q_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.c_int64]
lib.mp_queue_qsize.argtypes = [q_p]
lib.mp_queue_qsize.restype = ctypes.c_size_t
lib.mp_queue_close.argtypes = [q_p]
lib.mp_queue_free.argtypes = [q_p]
lib.mp_queue_free.restype = None

COUNT = 10000
SECONDS = 30 * 10**9
FILLER = os.path.join(os.environ["MP_C_HELPERS"], "queue_filler")


def drain_from_c_filler(flags, kind):
    """Makes a queue, lets the C filler fill it, drains and checks it."""
    q = q_p()
    check(lib, lib.mp_queue_new(16, 64, flags, ctypes.byref(q)), f"mp_queue_new ({kind})")
    buf = ctypes.create_string_buffer(300)
    check(lib, lib.mp_queue_handle(q, buf, len(buf)), "mp_queue_handle")
    handle = buf.value.decode()
    assert handle.startswith("mp1:memfd:"), handle
    fd = int(handle.split(":")[2])
    print(f"{kind} handle:", handle)

    # The filler: a C process that knows only the handle text (and holds the
    # memfd at the same number). It puts COUNT numbered messages, then one of
    # 40 bytes, then closes the queue.
    child = subprocess.Popen([FILLER, handle, str(COUNT)], pass_fds=(fd,))
    try:
        got = ctypes.create_string_buffer(64)
        length = ctypes.c_size_t()
        for i in range(COUNT):
            check(lib, lib.mp_queue_get(q, got, 64, ctypes.byref(length), SECONDS), f"get {i}")
            assert got.raw[: length.value] == b"message %d" % i, (i, got.raw[: length.value])

        # The 40-byte message into 8 bytes: too large, its size reported, it stays.
        small = ctypes.create_string_buffer(8)
        status = lib.mp_queue_get(q, small, 8, ctypes.byref(length), SECONDS)
        assert status == codes["MP_ERR_TOO_LARGE"], status
        assert length.value == 40, length.value
        assert "40" in c_text(lib.mp_last_error())
        check(lib, lib.mp_queue_get(q, got, 64, ctypes.byref(length), SECONDS), "get the 40-byte message")
        assert got.raw[:40] == b"y" * 40
        assert child.wait(timeout=60) == 0, "the C filler failed"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # Closed and drained: nothing more came (each message exactly once).
    assert lib.mp_queue_get(q, got, 64, ctypes.byref(length), 0) == codes["MP_ERR_CLOSED"]
    assert lib.mp_queue_put(q, b"z", 1, 0) == codes["MP_ERR_CLOSED"]
    assert lib.mp_queue_qsize(q) == 0
    lib.mp_queue_free(q)


drain_from_c_filler(0, "MPMC")
drain_from_c_filler(codes["MP_QUEUE_SPSC"], "SPSC")

got = ctypes.create_string_buffer(64)
length = ctypes.c_size_t()
q = q_p()
check(lib, lib.mp_queue_new(16, 64, 0, ctypes.byref(q)), "mp_queue_new")
buf = ctypes.create_string_buffer(300)
check(lib, lib.mp_queue_handle(q, buf, len(buf)), "mp_queue_handle")
handle = buf.value.decode()

# Bad input.
other = q_p()
assert lib.mp_queue_new(0, 8, 0, ctypes.byref(other)) == codes["MP_ERR_INVALID"]
assert lib.mp_queue_new(8, 0, 0, ctypes.byref(other)) == codes["MP_ERR_INVALID"]
assert lib.mp_queue_new(8, 8, 0, None) == codes["MP_ERR_NULL"]
assert lib.mp_queue_open(handle.replace(":queue", ":lock").encode(), ctypes.byref(other)) == codes["MP_ERR_KIND"]
assert lib.mp_queue_open(b"not a handle", ctypes.byref(other)) == codes["MP_ERR_INVALID"]
assert lib.mp_queue_get(None, got, 64, ctypes.byref(length), 0) == codes["MP_ERR_NULL"]

lib.mp_queue_free(q)
print(f"test_queue: {COUNT + 1} messages from a C process in order, MPMC and SPSC; too-small buffer, close, bad input")
