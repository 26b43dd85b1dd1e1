//! `mp_queue_*`: Python's `Queue` / `JoinableQueue` for C, over shared memory.

use std::ffi::{c_char, c_int, c_void};
use std::time::{Duration, Instant};

use super::{MP_OK, MP_WAIT_FOREVER, Tagged, c_str, guard, non_null_mut, write_c_string};
use crate::error::{Error, Result};
use crate::queue::{Queue, QueueOptions};
use crate::shm::Handle;

/// `mp_queue_new` flag: count messages for `mp_queue_task_done` / `mp_queue_join`.
pub const MP_QUEUE_JOINABLE: u32 = 1;
/// `mp_queue_new` flag: one producer thread and one consumer thread at a
/// time (any process): the faster byte ring. A second producer or consumer
/// gets MP_ERR_STATE.
pub const MP_QUEUE_SPSC: u32 = 2;

/// A queue of byte messages in shared memory (opaque). Made by
/// `mp_queue_new` or `mp_queue_open`, released by `mp_queue_free`.
/// Inherited by fork children as it is.
pub struct mp_queue_t {
    _opaque: [u8; 0],
}

/// The type tag of a boxed `Queue` ("MPQUEU" and a version).
const TAG_QUEUE: u64 = 0x4D50_5155_4555_0001;

/// The queue behind a C pointer, shared (several C threads may use one
/// `mp_queue_t` at once).
///
/// # Safety
///
/// - Any pointer: one that is not a live object of this library (NULL,
///   freed, foreign) is refused unread, by the live set (it used to read
///   the tag behind any non-NULL pointer, a freed one included).
/// - `q` is not freed while the returned reference lives.
unsafe fn queue_ref<'a>(q: *const mp_queue_t) -> Result<&'a Queue> {
    // SAFETY: forwarded from the caller; `Tagged::get` reads nothing behind
    // a pointer outside the live set, and checks the tag.
    unsafe { Tagged::get(q.cast::<Tagged<Queue>>(), TAG_QUEUE, "q") }
}

/// A C `timeout_ns` as a deadline: MP_WAIT_FOREVER is `None`, 0 is now.
fn deadline_from_ns(timeout_ns: i64) -> Result<Option<Instant>> {
    match timeout_ns {
        MP_WAIT_FOREVER => Ok(None),
        0 => Ok(crate::queue::try_once()),
        ns if ns >= 0 => Ok(Some(Instant::now() + Duration::from_nanos(ns as u64))),
        ns => Err(Error::Invalid(format!(
            "timeout_ns is {ns}: expected MP_WAIT_FOREVER (-1), 0 (try once) or a positive number"
        ))),
    }
}

/// Creates a queue of `capacity` messages of up to `max_msg_size` bytes
/// and stores it in `*out`. `flags`: 0, or `MP_QUEUE_JOINABLE` and/or
/// `MP_QUEUE_SPSC`.
///
/// Errors: MP_ERR_INVALID for a capacity or size of 0 or unknown flags,
/// MP_ERR_TOO_LARGE when the queue would not fit a segment.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_new(
    capacity: usize,
    max_msg_size: usize,
    flags: u32,
    out: *mut *mut mp_queue_t,
) -> c_int {
    guard("mp_queue_new", || {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        if flags & !(MP_QUEUE_JOINABLE | MP_QUEUE_SPSC) != 0 {
            return Err(Error::Invalid(format!(
                "flags {flags:#x}: expected a combination of MP_QUEUE_JOINABLE (1) and MP_QUEUE_SPSC (2)"
            )));
        }
        let q = Queue::with_options(QueueOptions {
            capacity,
            max_msg_size,
            spsc: flags & MP_QUEUE_SPSC != 0,
            joinable: flags & MP_QUEUE_JOINABLE != 0,
        })?;
        *out = Tagged::boxed(TAG_QUEUE, q).cast();
        Ok(MP_OK)
    })
}

/// Attaches to the queue named by a handle text (from `mp_queue_handle` in
/// this or another process) and stores it in `*out`.
///
/// Errors: MP_ERR_INVALID for text that does not parse, MP_ERR_KIND for a
/// handle of another kind of object, MP_ERR_VERSION for an incompatible
/// layout, MP_ERR_NOT_FOUND when the segment cannot be reached.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_open(handle: *const c_char, out: *mut *mut mp_queue_t) -> c_int {
    guard("mp_queue_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let q = Queue::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(TAG_QUEUE, q).cast();
        Ok(MP_OK)
    })
}

/// Writes the queue's NUL-terminated handle text into `buf` (`cap` bytes);
/// MP_ERR_TOO_LARGE if it does not fit (300 bytes always suffice).
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_handle(
    q: *const mp_queue_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_queue_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { queue_ref(q) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Puts the `len` bytes at `msg` as one message, waiting at most
/// `timeout_ns` for room.
///
/// Errors: MP_ERR_FULL when no room came in time, MP_ERR_TOO_LARGE for a
/// message over the maximum (nothing is sent), MP_ERR_CLOSED after
/// `mp_queue_close`, MP_ERR_STATE for a second producer of an SPSC queue.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
/// - `msg` is NULL or valid for reading `len` bytes (NULL is accepted when
///   `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_put(
    q: *mut mp_queue_t,
    msg: *const c_void,
    len: usize,
    timeout_ns: i64,
) -> c_int {
    guard("mp_queue_put", || {
        // SAFETY: forwarded from the caller.
        let q = unsafe { queue_ref(q) }?;
        let msg: &[u8] = if len == 0 {
            &[]
        } else if msg.is_null() {
            return Err(Error::Null("msg"));
        } else {
            // SAFETY: non-NULL and readable for `len` bytes (caller's promise).
            unsafe { std::slice::from_raw_parts(msg.cast::<u8>(), len) }
        };
        q.put_until(msg, deadline_from_ns(timeout_ns)?)?;
        Ok(MP_OK)
    })
}

/// Takes the oldest message into `buf` (`cap` bytes) and stores its length
/// in `*len`, waiting at most `timeout_ns` for one.
///
/// Errors: MP_ERR_EMPTY when none came in time, MP_ERR_CLOSED once the
/// queue is closed and drained, MP_ERR_TOO_LARGE when `cap` is too short:
/// the message stays queued and `*len` holds its size.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
/// - `buf` is NULL or valid for writing `cap` bytes (NULL only with `cap` 0).
/// - `len` is NULL or valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_get(
    q: *mut mp_queue_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard("mp_queue_get", || {
        // SAFETY: forwarded from the caller.
        let (q, len) = unsafe { (queue_ref(q)?, non_null_mut(len, "len")?) };
        let buf: &mut [u8] = if cap == 0 {
            &mut []
        } else if buf.is_null() {
            return Err(Error::Null("buf"));
        } else {
            // SAFETY: non-NULL and writable for `cap` bytes (caller's promise).
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap) }
        };
        match q.get_until(buf, deadline_from_ns(timeout_ns)?) {
            Ok(n) => {
                *len = n;
                Ok(MP_OK)
            }
            Err(Error::TooLarge { len: need, max }) => {
                *len = need;
                Err(Error::TooLarge { len: need, max })
            }
            Err(e) => Err(e),
        }
    })
}

/// The number of messages in the queue: approximate while other processes
/// put and get. 0 (with `mp_last_error` set) if `q` is not a live queue.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_qsize(q: *const mp_queue_t) -> usize {
    let mut n = 0;
    guard("mp_queue_qsize", || {
        // SAFETY: forwarded from the caller.
        n = unsafe { queue_ref(q) }?.qsize();
        Ok(MP_OK)
    });
    n
}

/// The largest message in bytes, or 0 (with `mp_last_error` set) if `q` is
/// not a live queue.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_max_msg_size(q: *const mp_queue_t) -> usize {
    let mut n = 0;
    guard("mp_queue_max_msg_size", || {
        // SAFETY: forwarded from the caller.
        n = unsafe { queue_ref(q) }?.max_msg_size();
        Ok(MP_OK)
    });
    n
}

/// Closes the queue for every process: later puts fail with MP_ERR_CLOSED;
/// gets drain what is left, then fail with MP_ERR_CLOSED. Sleepers wake.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_close(q: *mut mp_queue_t) -> c_int {
    guard("mp_queue_close", || {
        // SAFETY: forwarded from the caller.
        unsafe { queue_ref(q) }?.close();
        Ok(MP_OK)
    })
}

/// Marks one message taken from a joinable queue as processed.
/// MP_ERR_VALUE when called more times than messages were put,
/// MP_ERR_STATE when the queue was made without MP_QUEUE_JOINABLE.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_task_done(q: *mut mp_queue_t) -> c_int {
    guard("mp_queue_task_done", || {
        // SAFETY: forwarded from the caller.
        unsafe { queue_ref(q) }?.task_done()?;
        Ok(MP_OK)
    })
}

/// Waits at most `timeout_ns` until every message put on a joinable queue
/// was marked done. MP_ERR_TIMEOUT, or MP_ERR_STATE when the queue was made
/// without MP_QUEUE_JOINABLE.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_join(q: *mut mp_queue_t, timeout_ns: i64) -> c_int {
    guard("mp_queue_join", || {
        // SAFETY: forwarded from the caller.
        let q = unsafe { queue_ref(q) }?;
        let timeout =
            deadline_from_ns(timeout_ns)?.map(|d| d.saturating_duration_since(Instant::now()));
        q.join(timeout)?;
        Ok(MP_OK)
    })
}

/// Releases this process's reference. The queue lives on while other
/// processes hold it. NULL is a no-op; a pointer that is not a live queue
/// is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `q` is NULL or a pointer returned by `mp_queue_new`/`mp_queue_open`,
///   not used again afterwards (by any thread).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_queue_free(q: *mut mp_queue_t) {
    guard("mp_queue_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<Queue>::free(q.cast(), TAG_QUEUE) }?;
        Ok(MP_OK)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{MP_ERR_INVALID, mp_last_error};
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: mp_last_error never returns NULL.
        unsafe { CStr::from_ptr(mp_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    /// Found by the c_api fuzz target under ASan: the queue calls read the
    /// tag behind any non-NULL pointer, a freed one included (a heap
    /// use-after-free), and a made-up one faulted. They ask the live set
    /// first now, as every other object does.
    #[test]
    fn freed_and_made_up_queue_pointers_are_refused_unread() {
        // SAFETY: (whole test) `q` comes from mp_queue_new; the freed and
        // made-up pointers are refused by the live set without being read.
        unsafe {
            let mut q = std::ptr::null_mut();
            assert_eq!(mp_queue_new(4, 16, 0, &mut q), MP_OK);
            mp_queue_free(q);
            assert_eq!(mp_queue_put(q, c"x".as_ptr().cast(), 1, 0), MP_ERR_INVALID);
            assert!(
                last_error().contains("not a live object"),
                "{}",
                last_error()
            );
            let bogus = 0x10usize as *mut mp_queue_t;
            assert_eq!(mp_queue_close(bogus), MP_ERR_INVALID);
            assert_eq!(mp_queue_qsize(bogus), 0);
        }
    }
}
