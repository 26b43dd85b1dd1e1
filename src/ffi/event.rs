//! `mp_event_*`: event flags (Python's `Event`).

use std::ffi::{c_char, c_int};

use super::{MP_OK, Tagged, c_str, deadline_from_ns, guard, non_null_mut, write_c_string};
use crate::error::{Error, Result};
use crate::shm::Handle;
use crate::sync::Event;

const TAG: u64 = u64::from_le_bytes(*b"mpEVENT_");

/// An event flag in shared memory.
pub struct mp_event_t(Event);

/// The event behind a C pointer, or an error for NULL / a pointer that is
/// not a live `mp_event_t`.
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`.
unsafe fn event<'a>(e: *const mp_event_t) -> Result<&'a Event> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(e.cast_mut().cast(), TAG, "e") }.map(|e: &mp_event_t| &e.0)
}

/// Creates a clear event and stores it in `*out`.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_new(out: *mut *mut mp_event_t) -> c_int {
    guard("mp_event_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = Tagged::boxed(TAG, mp_event_t(Event::new()?)).cast();
        Ok(MP_OK)
    })
}

/// Sets the flag and wakes every waiter (in any process). No syscall when
/// nobody waits; nothing happens when it is set already.
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_set(e: *mut mp_event_t) -> c_int {
    guard("mp_event_set", || {
        // SAFETY: forwarded from the caller.
        unsafe { event(e) }?.set();
        Ok(MP_OK)
    })
}

/// Clears the flag.
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_clear(e: *mut mp_event_t) -> c_int {
    guard("mp_event_clear", || {
        // SAFETY: forwarded from the caller.
        unsafe { event(e) }?.clear();
        Ok(MP_OK)
    })
}

/// 1 when the flag is set, 0 when clear, a negative code for a bad `e`.
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_is_set(e: *const mp_event_t) -> c_int {
    guard("mp_event_is_set", || {
        // SAFETY: forwarded from the caller.
        Ok(c_int::from(unsafe { event(e) }?.is_set()))
    })
}

/// Waits at most `timeout_ns` (`MP_WAIT_FOREVER`: no limit, 0: check once)
/// for the flag. `MP_OK` when it was set during the wait (or already),
/// `MP_ERR_TIMEOUT` otherwise.
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_wait(e: *mut mp_event_t, timeout_ns: i64) -> c_int {
    guard("mp_event_wait", || {
        // SAFETY: forwarded from the caller.
        let ev = unsafe { event(e) }?;
        if ev.wait_until(deadline_from_ns(timeout_ns)?) {
            Ok(MP_OK)
        } else {
            Err(Error::Timeout)
        }
    })
}

/// Writes the event's NUL-terminated handle text into `buf` (`cap` bytes);
/// `MP_ERR_TOO_LARGE` if it does not fit (128 bytes always suffice).
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_handle(
    e: *const mp_event_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_event_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { event(e) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Attaches to the event a handle text names and stores it in `*out`.
/// Errors as `mp_sem_open`.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_open(handle: *const c_char, out: *mut *mut mp_event_t) -> c_int {
    guard("mp_event_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let ev = Event::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(TAG, mp_event_t(ev)).cast();
        Ok(MP_OK)
    })
}

/// Releases this process's reference; the event lives on while other
/// processes hold it. NULL is a no-op; a pointer that is not a live event
/// is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `e` is NULL or a pointer returned by `mp_event_new`/`mp_event_open`,
///   not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_event_free(e: *mut mp_event_t) {
    guard("mp_event_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_event_t>::free(e.cast(), TAG) }?;
        Ok(MP_OK)
    });
}
