"""Shared helpers for the ctypes scripts in tests/python (not a test itself).

Each script is run by tests/python_ctypes.rs as
    python3 tests/python/test_<topic>.py /abs/path/to/libmultiproc.so
and must exit 0. Only the standard library is used.
"""

import ctypes
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "multiproc.h"


def load_library():
    """The cdylib named by argv[1], with the status functions declared."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} /path/to/libmultiproc.so")
    lib = ctypes.CDLL(sys.argv[1])
    # c_void_p, not c_char_p: a NULL must stay visible as None, not b"".
    lib.mp_strerror.restype = ctypes.c_void_p
    lib.mp_strerror.argtypes = [ctypes.c_int]
    lib.mp_last_error.restype = ctypes.c_void_p
    lib.mp_last_error.argtypes = []
    return lib


def header_defines():
    """Every `#define NAME <integer>` of include/multiproc.h, in order."""
    pattern = re.compile(r"^#define\s+(MP_\w+)\s+(-?\d+)\s*$")
    found = {}
    for line in HEADER.read_text().splitlines():
        m = pattern.match(line)
        if m:
            found[m.group(1)] = int(m.group(2))
    return found


def status_codes():
    """MP_OK and every MP_ERR_* of the header: {name: value}."""
    return {n: v for n, v in header_defines().items() if n == "MP_OK" or n.startswith("MP_ERR_")}


def c_text(address):
    """The NUL-terminated string at `address` (asserting it is not NULL)."""
    assert address is not None, "got a NULL string pointer"
    return ctypes.string_at(address).decode()


def check(lib, status, what):
    """Asserts `status` is MP_OK, showing mp_strerror and mp_last_error otherwise."""
    assert status == 0, (
        f"{what}: {c_text(lib.mp_strerror(status))} ({c_text(lib.mp_last_error())})"
    )
