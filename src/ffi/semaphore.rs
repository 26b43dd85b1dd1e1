//! `mp_sem_*`: counting semaphores (Python's `Semaphore` and
//! `BoundedSemaphore`).

use std::ffi::{c_char, c_int};

use super::{MP_OK, Tagged, c_str, deadline_from_ns, guard, non_null_mut, write_c_string};
use crate::error::Result;
use crate::shm::Handle;
use crate::sync::Semaphore;

const TAG: u64 = u64::from_le_bytes(*b"mpSEMAPH");

/// A counting semaphore, bounded or not, in shared memory.
pub struct mp_sem_t(Semaphore);

/// The semaphore behind a C pointer, or an error for NULL / a pointer that
/// is not a live `mp_sem_t`.
///
/// # Safety
///
/// - `s` is NULL or a pointer returned by `mp_sem_new`/`mp_sem_open`.
unsafe fn sem<'a>(s: *const mp_sem_t) -> Result<&'a Semaphore> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(s.cast_mut().cast(), TAG, "s") }.map(|s: &mp_sem_t| &s.0)
}

/// Creates a semaphore with `initial` permits. `max` bounds the value
/// (Python's `BoundedSemaphore`: a release past it is `MP_ERR_VALUE`); 0
/// leaves it unbounded. Stores it in `*out`.
///
/// Errors: `MP_ERR_INVALID` when `max` is not 0 and below `initial`.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_new(initial: u32, max: u32, out: *mut *mut mp_sem_t) -> c_int {
    guard("mp_sem_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        let sem = Semaphore::with_max(initial, (max != 0).then_some(max))?;
        *out = Tagged::boxed(TAG, mp_sem_t(sem)).cast();
        Ok(MP_OK)
    })
}

/// Takes a permit, waiting at most `timeout_ns` (`MP_WAIT_FOREVER`: no
/// limit, 0: try once). `MP_ERR_TIMEOUT` when none became free in time.
///
/// # Safety
///
/// - `s` is NULL or a pointer returned by `mp_sem_new`/`mp_sem_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_acquire(s: *mut mp_sem_t, timeout_ns: i64) -> c_int {
    guard("mp_sem_acquire", || {
        // SAFETY: forwarded from the caller.
        let sem = unsafe { sem(s) }?;
        sem.acquire_until(deadline_from_ns(timeout_ns)?)?;
        Ok(MP_OK)
    })
}

/// Gives a permit back and wakes one waiter. `MP_ERR_VALUE` (and no
/// change) when the value is already at its maximum.
///
/// # Safety
///
/// - `s` is NULL or a pointer returned by `mp_sem_new`/`mp_sem_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_release(s: *mut mp_sem_t) -> c_int {
    guard("mp_sem_release", || {
        // SAFETY: forwarded from the caller.
        unsafe { sem(s) }?.release()?;
        Ok(MP_OK)
    })
}

/// Stores the number of free permits now in `*out`.
///
/// # Safety
///
/// - `s` is NULL or a pointer returned by `mp_sem_new`/`mp_sem_open`.
/// - `out` is NULL or valid for writing one `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_value(s: *const mp_sem_t, out: *mut u32) -> c_int {
    guard("mp_sem_value", || {
        // SAFETY: forwarded from the caller.
        let (sem, out) = unsafe { (sem(s)?, non_null_mut(out, "out")?) };
        *out = sem.value();
        Ok(MP_OK)
    })
}

/// Writes the semaphore's NUL-terminated handle text into `buf` (`cap`
/// bytes); `MP_ERR_TOO_LARGE` if it does not fit (128 bytes always suffice).
///
/// # Safety
///
/// - `s` is NULL or a pointer returned by `mp_sem_new`/`mp_sem_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_handle(s: *const mp_sem_t, buf: *mut c_char, cap: usize) -> c_int {
    guard("mp_sem_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { sem(s) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Attaches to the semaphore a handle text names and stores it in `*out`.
///
/// Errors: `MP_ERR_INVALID` for text that does not parse, `MP_ERR_KIND`
/// for a handle of another object kind, `MP_ERR_VERSION` for an
/// incompatible layout, `MP_ERR_NOT_FOUND` when the segment is gone.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_open(handle: *const c_char, out: *mut *mut mp_sem_t) -> c_int {
    guard("mp_sem_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let sem = Semaphore::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(TAG, mp_sem_t(sem)).cast();
        Ok(MP_OK)
    })
}

/// Releases this process's reference; the semaphore lives on while other
/// processes hold it. NULL is a no-op; a pointer that is not a live
/// semaphore is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `s` is NULL or a pointer returned by `mp_sem_new`/`mp_sem_open`, not
///   used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_sem_free(s: *mut mp_sem_t) {
    guard("mp_sem_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_sem_t>::free(s.cast(), TAG) }?;
        Ok(MP_OK)
    });
}
