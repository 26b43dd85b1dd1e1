"""Every status code in include/multiproc.h has a name; mp_last_error is never NULL."""

from mp_ctypes import c_text, load_library, status_codes

lib = load_library()

assert lib.mp_last_error() is not None, "mp_last_error() is NULL before any call"
print("mp_last_error before any call:", c_text(lib.mp_last_error()))

codes = status_codes()
assert codes.get("MP_OK") == 0, f"MP_OK missing or not 0: {codes.get('MP_OK')}"
assert len(codes) > 1, "no MP_ERR_* codes found in the header"
assert len(set(codes.values())) == len(codes), f"two codes share a value: {codes}"

for name, value in codes.items():
    if name != "MP_OK":
        assert value < 0, f"{name} = {value} is not negative"
    text = c_text(lib.mp_strerror(value))
    assert text.startswith(name + ": ") and len(text) > len(name) + 2, (
        f"mp_strerror({value}) = {text!r} does not name {name}"
    )
    print(f"{name:<20} {value:4}  {text}")

for value in (1, 42, -1000, 2**31 - 1, -(2**31)):
    text = c_text(lib.mp_strerror(value))
    assert text == "unknown status", f"mp_strerror({value}) = {text!r}"
print("numbers that are no code: unknown status")

assert lib.mp_last_error() is not None, "mp_last_error() is NULL"
print(f"test_status: {len(codes)} codes named")
