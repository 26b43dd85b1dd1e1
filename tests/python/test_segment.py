"""A named segment made from Python through the C ABI is found by its handle
text in a second Python process, which reads it and writes a reply; bad
input gets specific codes."""

import ctypes
import os
import subprocess
import sys

from mp_ctypes import c_text, check, header_defines, load_library

lib = load_library()
codes = header_defines()
seg_p = ctypes.c_void_p

lib.mp_segment_new.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.POINTER(seg_p)]
lib.mp_segment_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(seg_p)]
lib.mp_segment_data.argtypes = [seg_p]
lib.mp_segment_data.restype = ctypes.c_void_p
lib.mp_segment_len.argtypes = [seg_p]
lib.mp_segment_len.restype = ctypes.c_size_t
lib.mp_segment_handle.argtypes = [seg_p, ctypes.c_char_p, ctypes.c_size_t]
lib.mp_segment_free.argtypes = [seg_p]
lib.mp_segment_free.restype = None

GREETING = b"hello from the creating python process"
REPLY = b"reply from the attaching python process"
REPLY_AT = 1024

seg = seg_p()
check(lib, lib.mp_segment_new(4096, codes["MP_BACKING_NAMED"], ctypes.byref(seg)), "mp_segment_new")
data = lib.mp_segment_data(seg)
assert data, "mp_segment_data returned NULL"
assert lib.mp_segment_len(seg) == 4096
ctypes.memmove(data, GREETING, len(GREETING))

buf = ctypes.create_string_buffer(256)
status = lib.mp_segment_handle(seg, buf, 4)
assert status == codes["MP_ERR_TOO_LARGE"], f"short buffer: {status}"
check(lib, lib.mp_segment_handle(seg, buf, len(buf)), "mp_segment_handle")
handle = buf.value.decode()
assert handle.startswith("mp1:shm:mp-"), handle
shm_path = "/dev/shm/" + handle.split(":")[2]
assert os.path.exists(shm_path), shm_path
print("handle:", handle)

# The second process: a fresh interpreter that knows only the handle text.
child = f"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.mp_segment_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
lib.mp_segment_data.argtypes = [ctypes.c_void_p]
lib.mp_segment_data.restype = ctypes.c_void_p
lib.mp_segment_free.argtypes = [ctypes.c_void_p]
seg = ctypes.c_void_p()
rc = lib.mp_segment_open(sys.argv[2].encode(), ctypes.byref(seg))
assert rc == 0, rc
data = lib.mp_segment_data(seg)
assert ctypes.string_at(data, {len(GREETING)}) == {GREETING!r}
ctypes.memmove(data + {REPLY_AT}, {REPLY!r}, {len(REPLY)})
kind = sys.argv[2].replace(":bytes", ":lock").encode()
assert lib.mp_segment_open(kind, ctypes.byref(ctypes.c_void_p())) == {codes["MP_ERR_KIND"]}
lib.mp_segment_free(seg)
print("child: read the greeting, wrote the reply")
"""
done = subprocess.run(
    [sys.executable, "-c", child, sys.argv[1], handle], timeout=60, capture_output=True, text=True
)
print(done.stdout, done.stderr, end="")
assert done.returncode == 0, f"attaching process failed with {done.returncode}"
assert ctypes.string_at(data + REPLY_AT, len(REPLY)) == REPLY, "no reply in the segment"
assert os.path.exists(shm_path), "the attaching process must not unlink the creator's name"

# Bad input: specific codes, and the last error says what was wrong.
other = seg_p()
assert lib.mp_segment_open(b"not a handle", ctypes.byref(other)) == codes["MP_ERR_INVALID"]
assert "not a handle" in c_text(lib.mp_last_error())
assert lib.mp_segment_open(None, ctypes.byref(other)) == codes["MP_ERR_NULL"]
assert lib.mp_segment_new(16, codes["MP_BACKING_MEMFD"], None) == codes["MP_ERR_NULL"]
assert lib.mp_segment_new(0, codes["MP_BACKING_MEMFD"], ctypes.byref(other)) == codes["MP_ERR_INVALID"]
assert lib.mp_segment_new(16, 99, ctypes.byref(other)) == codes["MP_ERR_INVALID"]
assert lib.mp_segment_data(None) is None

lib.mp_segment_free(seg)
assert not os.path.exists(shm_path), "freeing the creator's segment unlinks its name"
missing = lib.mp_segment_open(handle.encode(), ctypes.byref(other))
assert missing == codes["MP_ERR_NOT_FOUND"], missing
print("test_segment: cross-process attach by handle, reply seen, bad input refused")
