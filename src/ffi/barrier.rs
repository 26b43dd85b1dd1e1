//! `mp_barrier_*`: reusable barriers (Python's `Barrier`).

use std::ffi::{c_char, c_int};

use super::{MP_OK, Tagged, c_str, deadline_from_ns, guard, non_null_mut, write_c_string};
use crate::error::Result;
use crate::shm::Handle;
use crate::sync::Barrier;

const TAG: u64 = u64::from_le_bytes(*b"mpBARRIE");

/// A barrier in shared memory.
pub struct mp_barrier_t(Barrier);

/// The barrier behind a C pointer, or an error for NULL / a pointer that is
/// not a live `mp_barrier_t`.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
unsafe fn barrier<'a>(b: *const mp_barrier_t) -> Result<&'a Barrier> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(b.cast_mut().cast(), TAG, "b") }.map(|b: &mp_barrier_t| &b.0)
}

/// Creates a barrier for `parties` parties and stores it in `*out`.
/// `MP_ERR_INVALID` for 0 parties (or more than 16777215).
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_new(parties: u32, out: *mut *mut mp_barrier_t) -> c_int {
    guard("mp_barrier_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = Tagged::boxed(TAG, mp_barrier_t(Barrier::new(parties)?)).cast();
        Ok(MP_OK)
    })
}

/// Waits at most `timeout_ns` (`MP_WAIT_FOREVER`: no limit) until all
/// parties have arrived, and stores this party's arrival index
/// (`0 .. parties`, the last to arrive gets `parties - 1`) in `*index` if
/// `index` is not NULL.
///
/// Errors: `MP_ERR_BROKEN` when the barrier is or becomes broken (aborted,
/// reset, or another party timed out); `MP_ERR_TIMEOUT` when this party's
/// time ran out, which breaks the barrier for the others.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
/// - `index` is NULL or valid for writing one `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_wait(
    b: *mut mp_barrier_t,
    timeout_ns: i64,
    index: *mut u32,
) -> c_int {
    guard("mp_barrier_wait", || {
        // SAFETY: forwarded from the caller.
        let bar = unsafe { barrier(b) }?;
        let i = bar.wait_until(deadline_from_ns(timeout_ns)?)?;
        // SAFETY: NULL or writable (caller's promise).
        if let Some(out) = unsafe { index.as_mut() } {
            *out = i;
        }
        Ok(MP_OK)
    })
}

/// Breaks the barrier: waiting and later parties get `MP_ERR_BROKEN`
/// until `mp_barrier_reset`.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_abort(b: *mut mp_barrier_t) -> c_int {
    guard("mp_barrier_abort", || {
        // SAFETY: forwarded from the caller.
        unsafe { barrier(b) }?.abort();
        Ok(MP_OK)
    })
}

/// Starts a fresh, unbroken round; parties waiting in the current one get
/// `MP_ERR_BROKEN`.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_reset(b: *mut mp_barrier_t) -> c_int {
    guard("mp_barrier_reset", || {
        // SAFETY: forwarded from the caller.
        unsafe { barrier(b) }?.reset();
        Ok(MP_OK)
    })
}

/// 1 when the barrier is broken, 0 when not, a negative code for a bad `b`.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_broken(b: *const mp_barrier_t) -> c_int {
    guard("mp_barrier_broken", || {
        // SAFETY: forwarded from the caller.
        Ok(c_int::from(unsafe { barrier(b) }?.broken()))
    })
}

/// Stores the number of parties waiting in the current round (0 when
/// broken) in `*out`.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
/// - `out` is NULL or valid for writing one `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_n_waiting(b: *const mp_barrier_t, out: *mut u32) -> c_int {
    guard("mp_barrier_n_waiting", || {
        // SAFETY: forwarded from the caller.
        let (bar, out) = unsafe { (barrier(b)?, non_null_mut(out, "out")?) };
        *out = bar.n_waiting();
        Ok(MP_OK)
    })
}

/// Stores the number of parties a round needs in `*out`.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
/// - `out` is NULL or valid for writing one `uint32_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_parties(b: *const mp_barrier_t, out: *mut u32) -> c_int {
    guard("mp_barrier_parties", || {
        // SAFETY: forwarded from the caller.
        let (bar, out) = unsafe { (barrier(b)?, non_null_mut(out, "out")?) };
        *out = bar.parties();
        Ok(MP_OK)
    })
}

/// Writes the barrier's NUL-terminated handle text into `buf` (`cap`
/// bytes); `MP_ERR_TOO_LARGE` if it does not fit (128 bytes always suffice).
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_handle(
    b: *const mp_barrier_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_barrier_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { barrier(b) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Attaches to the barrier a handle text names and stores it in `*out`.
/// Errors as `mp_sem_open`.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_open(
    handle: *const c_char,
    out: *mut *mut mp_barrier_t,
) -> c_int {
    guard("mp_barrier_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let bar = Barrier::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(TAG, mp_barrier_t(bar)).cast();
        Ok(MP_OK)
    })
}

/// Releases this process's reference; the barrier lives on while other
/// processes hold it. NULL is a no-op; a pointer that is not a live
/// barrier is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `b` is NULL or a pointer returned by `mp_barrier_new`/`mp_barrier_open`,
///   not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_barrier_free(b: *mut mp_barrier_t) {
    guard("mp_barrier_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_barrier_t>::free(b.cast(), TAG) }?;
        Ok(MP_OK)
    });
}
