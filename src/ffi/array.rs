//! `mp_array_*`: typed shared arrays (Python's `Array` / `RawArray`), with
//! the element type named by a Python typecode.

use std::ffi::{c_char, c_int, c_void};

use super::lock::{array_lock, free_array_lock};
use super::{MP_OK, Tagged, c_str, guard, mp_lock_t, non_null_mut, write_c_string};
use crate::array::{DynArray, Typecode};
use crate::error::{Error, Result};
use crate::shm::Handle;

const TAG: u64 = u64::from_le_bytes(*b"mpARRAY_");

/// A shared array of numbers of one typecode, maybe with a lock.
pub struct mp_array_t {
    array: DynArray,
    /// The array's lock as a C object (NULL without one), made with
    /// `array_lock` when this object is made, freed with it (`mp_lock_free`
    /// refuses it).
    lock: *mut mp_lock_t,
}

impl Drop for mp_array_t {
    fn drop(&mut self) {
        if !self.lock.is_null() {
            // SAFETY: `lock` came from `array_lock` in `boxed` and is freed
            // only here, once (`mp_lock_free` refuses it).
            // Ignored: it cannot fail (a live lock of the right tag).
            let _ = unsafe { free_array_lock(self.lock) };
        }
    }
}

/// The array behind a C pointer, or an error for NULL / a pointer that is
/// not a live `mp_array_t`.
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`.
unsafe fn array<'a>(a: *const mp_array_t) -> Result<&'a mp_array_t> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(a.cast_mut().cast(), TAG, "a") }
}

/// Boxes `array` for C, with its lock (if any) as an `mp_lock_t`.
fn boxed(array: DynArray) -> Result<*mut mp_array_t> {
    let lock = array
        .get_lock()
        .map_or(std::ptr::null_mut(), |l| array_lock(l.clone()));
    Ok(Tagged::boxed(TAG, mp_array_t { array, lock }).cast())
}

/// Creates an array of `len` zeroed elements of `typecode` (one of
/// `'b' 'B' 'h' 'H' 'i' 'I' 'l' 'L' 'q' 'Q' 'f' 'd'`, as Python's `array`
/// module; `'l'` is C `long`), with a lock when `with_lock` is 1 (0: none),
/// and stores it in `*out`.
///
/// Errors: `MP_ERR_INVALID` for another typecode (the message lists the
/// accepted ones) or a `with_lock` other than 0 and 1; `MP_ERR_TOO_LARGE`
/// for a length that cannot be mapped.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_new(
    typecode: c_char,
    len: usize,
    with_lock: c_int,
    out: *mut *mut mp_array_t,
) -> c_int {
    guard("mp_array_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        let typecode = Typecode::from_byte(typecode as u8)?;
        let with_lock = match with_lock {
            0 => false,
            1 => true,
            other => {
                return Err(Error::Invalid(format!(
                    "with_lock is {other}: expected 0 (no lock) or 1"
                )));
            }
        };
        *out = boxed(DynArray::new(typecode, len, with_lock)?)?;
        Ok(MP_OK)
    })
}

/// The first element, or NULL (with `mp_last_error` set) if `a` is not a
/// live array. Elements are the C type of the typecode, `mp_array_len` of
/// them, aligned to 8 bytes. Other processes may write them at any time:
/// hold the array's lock (or use C11 atomics) when that matters.
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_data(a: *mut mp_array_t) -> *mut c_void {
    let mut data = std::ptr::null_mut();
    guard("mp_array_data", || {
        // SAFETY: forwarded from the caller.
        data = unsafe { array(a) }?.array.as_ptr().cast();
        Ok(MP_OK)
    });
    data
}

/// The number of elements, or 0 (with `mp_last_error` set) if `a` is not a
/// live array.
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_len(a: *const mp_array_t) -> usize {
    let mut len = 0;
    guard("mp_array_len", || {
        // SAFETY: forwarded from the caller.
        len = unsafe { array(a) }?.array.len();
        Ok(MP_OK)
    });
    len
}

/// The typecode character, or 0 (with `mp_last_error` set) if `a` is not a
/// live array.
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_typecode(a: *const mp_array_t) -> c_char {
    let mut code = 0;
    guard("mp_array_typecode", || {
        // SAFETY: forwarded from the caller.
        code = unsafe { array(a) }?.array.typecode() as u8 as c_char;
        Ok(MP_OK)
    });
    code
}

/// The array's lock, or NULL when it was made without one (or `a` is not
/// a live array; then `mp_last_error` says so). Use it with `mp_lock_*`;
/// it belongs to the array: do not free it, it is freed with `a`.
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_lock(a: *mut mp_array_t) -> *mut mp_lock_t {
    let mut lock = std::ptr::null_mut();
    guard("mp_array_lock", || {
        // SAFETY: forwarded from the caller.
        lock = unsafe { array(a) }?.lock;
        Ok(MP_OK)
    });
    lock
}

/// Writes the array's NUL-terminated handle text into `buf` (`cap` bytes);
/// `MP_ERR_TOO_LARGE` if it does not fit (128 bytes always suffice).
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_handle(
    a: *const mp_array_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_array_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { array(a) }?.array.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Attaches to the array a handle text names (any typecode; ask it with
/// `mp_array_typecode`) and stores it in `*out`. Errors as `mp_sem_open`.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_open(handle: *const c_char, out: *mut *mut mp_array_t) -> c_int {
    guard("mp_array_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        *out = boxed(DynArray::open(&text.parse::<Handle>()?)?)?;
        Ok(MP_OK)
    })
}

/// Releases this process's reference (and the pointer `mp_array_lock`
/// returned); the array lives on while other processes hold it. NULL is a
/// no-op; a pointer that is not a live array is refused (see
/// `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `a` is NULL or a pointer returned by `mp_array_new`/`mp_array_open`,
///   not used again afterwards, nor the lock pointer it gave.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_array_free(a: *mut mp_array_t) {
    guard("mp_array_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_array_t>::free(a.cast(), TAG) }?;
        Ok(MP_OK)
    });
}
