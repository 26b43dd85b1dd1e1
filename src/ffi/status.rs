//! Status codes, `mp_strerror` and `mp_last_error`.

use std::ffi::{c_char, c_int};

use crate::error::Status;

/// Success.
pub const MP_OK: c_int = 0;
/// A bad argument: a value out of range, text that does not parse.
pub const MP_ERR_INVALID: c_int = -1;
/// A NULL pointer where an object or buffer was required.
pub const MP_ERR_NULL: c_int = -2;
/// The timeout elapsed first.
pub const MP_ERR_TIMEOUT: c_int = -3;
/// The queue is full.
pub const MP_ERR_FULL: c_int = -4;
/// The queue is empty.
pub const MP_ERR_EMPTY: c_int = -5;
/// The object was closed.
pub const MP_ERR_CLOSED: c_int = -6;
/// A message or value larger than the maximum, or a buffer too small for it.
pub const MP_ERR_TOO_LARGE: c_int = -7;
/// The lock was acquired, but its previous owner died holding it.
pub const MP_ERR_OWNER_DIED: c_int = -8;
/// Released by a process or thread that does not hold it.
pub const MP_ERR_NOT_OWNER: c_int = -9;
/// A value error (a bounded semaphore released too often).
pub const MP_ERR_VALUE: c_int = -10;
/// The barrier is broken.
pub const MP_ERR_BROKEN: c_int = -11;
/// The named thing does not exist.
pub const MP_ERR_NOT_FOUND: c_int = -12;
/// A handle of another kind of object.
pub const MP_ERR_KIND: c_int = -13;
/// A shared layout of an incompatible version.
pub const MP_ERR_VERSION: c_int = -14;
/// Authentication failed.
pub const MP_ERR_AUTH: c_int = -15;
/// The peer closed.
pub const MP_ERR_EOF: c_int = -16;
/// The operating system refused; `mp_last_error` has errno's text.
pub const MP_ERR_OS: c_int = -17;
/// The object's state does not allow the call (start twice, join before start).
pub const MP_ERR_STATE: c_int = -18;
/// A bug inside multiproc, caught at the boundary; please report it.
pub const MP_ERR_INTERNAL: c_int = -19;

/// `timeout_ns` value that waits without limit.
pub const MP_WAIT_FOREVER: i64 = -1;

/// The name of a status code (`"MP_ERR_TIMEOUT: timed out"`), or
/// `"unknown status"` for a number that is none. Never NULL; static storage.
#[unsafe(no_mangle)]
pub extern "C" fn mp_strerror(status: c_int) -> *const c_char {
    use std::ffi::CString;
    use std::sync::OnceLock;
    static TEXTS: OnceLock<Vec<CString>> = OnceLock::new();
    let Some(status) = Status::from_code(status) else {
        return c"unknown status".as_ptr();
    };
    let texts = TEXTS.get_or_init(|| {
        Status::ALL
            .iter()
            .map(|s| {
                CString::new(format!("{}: {}", s.name(), s.describe()))
                    .expect("status texts have no NUL")
            })
            .collect()
    });
    // Status::ALL is in code order 0, -1, -2, ...
    texts[(-(status as i32)) as usize].as_ptr()
}

/// The detailed message of the last failed call in this thread: what was
/// wrong and what was expected. Never NULL; valid until the next failing
/// call in this thread.
#[unsafe(no_mangle)]
pub extern "C" fn mp_last_error() -> *const c_char {
    super::LAST_ERROR.with(|e| e.borrow().as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn constants_match_the_rust_statuses() {
        let consts = [
            MP_OK,
            MP_ERR_INVALID,
            MP_ERR_NULL,
            MP_ERR_TIMEOUT,
            MP_ERR_FULL,
            MP_ERR_EMPTY,
            MP_ERR_CLOSED,
            MP_ERR_TOO_LARGE,
            MP_ERR_OWNER_DIED,
            MP_ERR_NOT_OWNER,
            MP_ERR_VALUE,
            MP_ERR_BROKEN,
            MP_ERR_NOT_FOUND,
            MP_ERR_KIND,
            MP_ERR_VERSION,
            MP_ERR_AUTH,
            MP_ERR_EOF,
            MP_ERR_OS,
            MP_ERR_STATE,
            MP_ERR_INTERNAL,
        ];
        for (c, s) in consts.iter().zip(Status::ALL) {
            assert_eq!(*c, s as c_int, "{}", s.name());
        }
    }

    #[test]
    fn strerror_names_every_code() {
        for s in Status::ALL {
            // SAFETY: mp_strerror returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(mp_strerror(s as c_int)) }
                .to_str()
                .unwrap();
            assert!(text.starts_with(s.name()), "{text}");
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(mp_strerror(42)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown status");
    }

    #[test]
    fn last_error_keeps_the_message() {
        let code = crate::ffi::fail(crate::Error::Invalid("len must be positive".into()));
        assert_eq!(code, MP_ERR_INVALID);
        // SAFETY: mp_last_error never returns NULL.
        let msg = unsafe { CStr::from_ptr(mp_last_error()) };
        assert_eq!(
            msg.to_str().unwrap(),
            "invalid argument: len must be positive"
        );
    }
}
