//! The C ABI: thin, no logic. Each `mp_*` function checks its pointers and
//! lengths, calls the Rust API, and maps the result to a status code.
//! No panic crosses the boundary: every entry goes through `guard`.
//!
//! `include/multiproc.h` is generated from this module by cbindgen
//! (`cbindgen.toml`); `tests/header_up_to_date.rs` fails when it is stale.

// The C names of the ABI are snake_case types (`mp_lock_t`) on purpose.
#![allow(non_camel_case_types)]

#[cfg(not(loom))]
mod array;
#[cfg(not(loom))]
mod barrier;
mod connection;
#[cfg(not(loom))]
mod event;
mod live;
#[cfg(not(loom))]
mod lock;
#[cfg(not(loom))]
mod manager;
#[cfg(not(loom))]
mod pool;
pub mod process;
#[cfg(not(loom))]
mod queue;
mod segment;
#[cfg(not(loom))]
mod semaphore;
mod status;

#[cfg(not(loom))]
pub use array::*;
#[cfg(not(loom))]
pub use barrier::*;
pub use connection::*;
#[cfg(not(loom))]
pub use event::*;
#[cfg(not(loom))]
pub use lock::*;
#[cfg(not(loom))]
pub use manager::*;
#[cfg(not(loom))]
pub use pool::*;
#[cfg(not(loom))]
pub use queue::*;
pub use segment::*;
#[cfg(not(loom))]
pub use semaphore::*;

pub use status::*;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::{Error, Result};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::from(c"no error"));
}

/// Records `err` as this thread's last error and returns its status code.
pub(crate) fn fail(err: Error) -> c_int {
    let code = err.status() as c_int;
    let text = CString::new(err.to_string().replace('\0', "\\0"))
        .unwrap_or_else(|_| CString::from(c"unprintable error"));
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    code
}

/// Records `message` as this thread's last error and returns the code of
/// `status`: for errors that reach the boundary as a status and a text,
/// not as an [`Error`] (a pool task's, whose status is kept whatever it is).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn fail_status(status: crate::error::Status, message: &str) -> c_int {
    let text = CString::new(message.replace('\0', "\\0"))
        .unwrap_or_else(|_| CString::from(c"unprintable error"));
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
    status as c_int
}

/// Runs the body of a C entry point: catches panics, records errors.
///
/// `name` is the C function's name, used in the message of a caught panic.
pub(crate) fn guard(name: &'static str, body: impl FnOnce() -> Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => fail(err),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            fail(Error::Internal(format!("panic in {name}: {what}")))
        }
    }
}

/// `p` as a shared reference, or [`Error::Null`] naming `param`.
///
/// # Safety
///
/// - `p` is NULL or points to a live, properly aligned `T` for `'a`.
// Unused since every object pointer goes through `Tagged::get`; kept for
// plain (non-object) pointer arguments.
#[allow(dead_code)]
pub(crate) unsafe fn non_null<'a, T>(p: *const T, param: &'static str) -> Result<&'a T> {
    // SAFETY: the caller promises `p` is NULL or valid for `'a`.
    unsafe { p.as_ref() }.ok_or(Error::Null(param))
}

/// `p` as a mutable reference, or [`Error::Null`] naming `param`.
///
/// # Safety
///
/// - `p` is NULL or points to a live, properly aligned `T` for `'a` that
///   nothing else references meanwhile.
pub(crate) unsafe fn non_null_mut<'a, T>(p: *mut T, param: &'static str) -> Result<&'a mut T> {
    // SAFETY: the caller promises `p` is NULL or valid and unaliased for `'a`.
    unsafe { p.as_mut() }.ok_or(Error::Null(param))
}

/// A C string argument as UTF-8 text.
///
/// # Safety
///
/// - `p` is NULL or points to a NUL-terminated string alive for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, param: &'static str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::Null(param));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| Error::Invalid(format!("`{param}` is not valid UTF-8")))
}

/// Copies `text` and a NUL into `buf[..cap]`; [`Error::TooLarge`] when it
/// does not fit (nothing is written then).
///
/// # Safety
///
/// - `buf` is NULL or valid for writes of `cap` bytes.
pub(crate) unsafe fn write_c_string(text: &str, buf: *mut c_char, cap: usize) -> Result<c_int> {
    if buf.is_null() {
        return Err(Error::Null("buf"));
    }
    let need = text.len() + 1;
    if need > cap {
        return Err(Error::TooLarge {
            len: need,
            max: cap,
        });
    }
    // SAFETY: `buf` has room for `cap >= need` bytes (caller's promise), and
    // `text` cannot overlap a buffer the caller owns exclusively.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    Ok(MP_OK)
}

/// Copies `items` into `buf[..cap]` and their count into `*len`;
/// [`Error::TooLarge`] (with `*len` set, nothing copied) when they do not
/// fit. `buf` may be NULL when there is nothing to copy; `buf_name` names
/// it in the error otherwise.
///
/// # Safety
///
/// - `buf` is NULL or valid for writing `cap` items; `len` is NULL or valid
///   for writing one `size_t`.
pub(crate) unsafe fn copy_out<T: Copy>(
    items: &[T],
    buf: *mut T,
    buf_name: &'static str,
    cap: usize,
    len: *mut usize,
) -> Result<c_int> {
    // SAFETY: NULL or writable (caller's promise).
    *unsafe { non_null_mut(len, "len") }? = items.len();
    if items.len() > cap {
        return Err(Error::TooLarge {
            len: items.len(),
            max: cap,
        });
    }
    if !items.is_empty() {
        if buf.is_null() {
            return Err(Error::Null(buf_name));
        }
        // SAFETY: `buf` has room for `cap >= items.len()` items (caller's
        // promise) and cannot overlap `items`, which the library owns.
        unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), buf, items.len()) };
    }
    Ok(MP_OK)
}

/// A C `timeout_ns` as a Rust timeout: `MP_WAIT_FOREVER` (-1) is `None`
/// (wait without limit), 0 tries once, a positive value waits that many
/// nanoseconds. Other negative values are [`Error::Invalid`].
pub(crate) fn timeout_from_ns(timeout_ns: i64) -> Result<Option<std::time::Duration>> {
    match timeout_ns {
        MP_WAIT_FOREVER => Ok(None),
        0.. => Ok(Some(std::time::Duration::from_nanos(timeout_ns as u64))),
        _ => Err(Error::Invalid(format!(
            "timeout_ns is {timeout_ns}: expected MP_WAIT_FOREVER (-1), 0 (try once) or a positive number"
        ))),
    }
}

/// A C `timeout_ns` as a deadline from now (see [`timeout_from_ns`]).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn deadline_from_ns(timeout_ns: i64) -> Result<Option<std::time::Instant>> {
    Ok(timeout_from_ns(timeout_ns)?.and_then(|t| std::time::Instant::now().checked_add(t)))
}

/// Every boxed C object: its address is in the live set (`live.rs`) from
/// `boxed` to `free`, so a freed, foreign or made-up pointer is refused with
/// `MP_ERR_INVALID` without being read; the tag then tells a live object of
/// another type from one of the expected type.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Tagged<T> {
    tag: u64,
    pub(crate) inner: T,
}

impl<T> Tagged<T> {
    /// Boxes `inner` with its tag, for handing to C.
    pub(crate) fn boxed(tag: u64, inner: T) -> *mut Tagged<T> {
        let p = Box::into_raw(Box::new(Tagged { tag, inner }));
        live::insert(p as usize);
        p
    }

    /// The object behind a C pointer, if it carries `tag`. Shared, never
    /// `&mut`: C code may use one object from several threads at once, so
    /// every object's operations take `&self`.
    ///
    /// # Safety
    ///
    /// - Any pointer is accepted: one not in the live set (NULL, freed,
    ///   foreign, garbage) is refused without being read, and a live object
    ///   with another tag is refused.
    /// - `p` is not freed while the returned reference lives (a free racing
    ///   with a use is the C caller's bug, as with any C object).
    pub(crate) unsafe fn get<'a>(
        p: *const Tagged<T>,
        tag: u64,
        param: &'static str,
    ) -> Result<&'a T> {
        if p.is_null() {
            return Err(Error::Null(param));
        }
        if !live::contains(p as usize) {
            return Err(Error::Invalid(format!(
                "`{param}` is not a live object of this library (freed, or never made by it)"
            )));
        }
        // SAFETY: `p` is in the live set: a `Tagged::boxed` allocation not
        // freed yet (a concurrent free is excluded by the contract above).
        let obj = unsafe { &*p };
        if obj.tag != tag {
            return Err(Error::Invalid(format!(
                "`{param}` is not a live object of this type (freed, or another type)"
            )));
        }
        Ok(&obj.inner)
    }

    /// Frees the object behind a C pointer. NULL is a no-op; a wrong tag is
    /// refused.
    ///
    /// # Safety
    ///
    /// - As for [`Tagged::get`]; afterwards `p` must not be used again.
    pub(crate) unsafe fn free(p: *mut Tagged<T>, tag: u64) -> Result<()> {
        if p.is_null() {
            return Ok(());
        }
        if !live::contains(p as usize) {
            return Err(Error::Invalid(
                "free of a pointer that is not a live object of this library (freed twice, \
                 or never made by it)"
                    .into(),
            ));
        }
        // SAFETY: `p` is live (checked above), so it is a `Tagged` box.
        if unsafe { (*p).tag } != tag {
            return Err(Error::Invalid(
                "free of a pointer that is not a live object of this type".into(),
            ));
        }
        if !live::remove(p as usize) {
            // Another thread freed it between the two checks.
            return Err(Error::Invalid(
                "free of an object freed at the same time".into(),
            ));
        }
        // SAFETY: removed from the live set by this call alone, so this is
        // the one reclaim of the box `Tagged::boxed` made.
        drop(unsafe { Box::from_raw(p) });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timeouts_from_c() {
        assert_eq!(timeout_from_ns(-1).unwrap(), None);
        assert_eq!(timeout_from_ns(0).unwrap(), Some(Duration::ZERO));
        assert_eq!(
            timeout_from_ns(1_500).unwrap(),
            Some(Duration::from_nanos(1_500))
        );
        assert!(matches!(timeout_from_ns(-2), Err(Error::Invalid(_))));
        assert!(deadline_from_ns(MP_WAIT_FOREVER).unwrap().is_none());
        assert!(deadline_from_ns(i64::MIN).is_err());
    }
}
