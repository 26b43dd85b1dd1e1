//! `mp_pipe`, `mp_conn_*`, `mp_listener_*`, `mp_client_connect`, `mp_wait`:
//! message connections, wire-compatible with Python's
//! `multiprocessing.connection`.

use std::ffi::{c_char, c_int, c_void};

use super::{
    MP_OK, MP_WAIT_FOREVER, Tagged, c_str, guard, non_null_mut, timeout_from_ns, write_c_string,
};
use crate::connection::{self, Address, Connection, DEFAULT_BACKLOG, Listener, Waitable};
use crate::error::{Error, Result};

const TAG_CONN: u64 = u64::from_le_bytes(*b"mpCONNEC");
const TAG_LISTENER: u64 = u64::from_le_bytes(*b"mpLISTEN");

/// One end of a message connection (opaque). Made by `mp_pipe`,
/// `mp_listener_accept` or `mp_client_connect`; released by `mp_conn_free`.
pub struct mp_conn_t(Connection);

/// A listening socket (opaque). Made by `mp_listener_new`, released by
/// `mp_listener_free`.
pub struct mp_listener_t(Listener);

/// # Safety
///
/// - `c` is NULL or a pointer returned by this module, not freed, and no
///   other thread uses the same connection during the call (a connection
///   is used by one thread at a time, as in CPython).
unsafe fn conn<'a>(c: *mut mp_conn_t) -> Result<&'a mut Connection> {
    let p = c.cast::<Tagged<mp_conn_t>>();
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(p, TAG_CONN, "c") }?;
    // SAFETY: `p` is a live, tagged `mp_conn_t` (checked above; the shared
    // reference is gone), and the caller promises nobody else uses it now.
    Ok(unsafe { &mut (*p).inner.0 })
}

/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_listener_new`, not freed.
unsafe fn listener<'a>(l: *mut mp_listener_t) -> Result<&'a Listener> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(l.cast(), TAG_LISTENER, "l") }.map(|l: &mp_listener_t| &l.0)
}

fn boxed_conn(c: Connection) -> *mut mp_conn_t {
    Tagged::boxed(TAG_CONN, mp_conn_t(c)).cast()
}

/// `authkey[..keylen]`, or `None` for a NULL `authkey` with `keylen` 0.
///
/// # Safety
///
/// - `authkey` is NULL or valid for reading `keylen` bytes for `'a`.
unsafe fn key<'a>(authkey: *const u8, keylen: usize) -> Result<Option<&'a [u8]>> {
    if authkey.is_null() {
        if keylen != 0 {
            return Err(Error::Null("authkey"));
        }
        return Ok(None);
    }
    // SAFETY: non-NULL and readable for `keylen` bytes (caller's promise).
    Ok(Some(unsafe { std::slice::from_raw_parts(authkey, keylen) }))
}

/// # Safety
///
/// - `address` is NULL or a NUL-terminated string.
unsafe fn address(address: *const c_char) -> Result<Address> {
    // SAFETY: forwarded from the caller.
    unsafe { c_str(address, "address") }?.parse()
}

/// Makes two connected ends (Python's `Pipe(duplex)`) and stores them in
/// `*a` and `*b`. With `duplex` 0, `a` only receives and `b` only sends.
/// Both are inherited by fork children; free the end a process does not use.
///
/// # Safety
///
/// - `a` and `b` are NULL or valid for writing one pointer each.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pipe(
    duplex: c_int,
    a: *mut *mut mp_conn_t,
    b: *mut *mut mp_conn_t,
) -> c_int {
    guard("mp_pipe", || {
        // SAFETY: NULL or writable (caller's promise).
        let (a, b) = unsafe { (non_null_mut(a, "a")?, non_null_mut(b, "b")?) };
        let (x, y) = connection::pipe(duplex != 0)?;
        *a = boxed_conn(x);
        *b = boxed_conn(y);
        Ok(MP_OK)
    })
}

/// Sends `len` bytes at `buf` as one message (`buf` may be NULL when `len`
/// is 0). MP_ERR_EOF when the peer is gone, MP_ERR_STATE on a receive-only
/// end.
///
/// # Safety
///
/// - `c` is NULL or a live connection from this API, not used by another
///   thread during the call.
/// - `buf` is NULL or valid for reading `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_conn_send_bytes(
    c: *mut mp_conn_t,
    buf: *const c_void,
    len: usize,
) -> c_int {
    guard("mp_conn_send_bytes", || {
        // SAFETY: forwarded from the caller.
        let conn = unsafe { conn(c) }?;
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if buf.is_null() {
            return Err(Error::Null("buf"));
        } else {
            // SAFETY: non-NULL and readable for `len` bytes (caller's promise).
            unsafe { std::slice::from_raw_parts(buf.cast(), len) }
        };
        conn.send_bytes(bytes)?;
        Ok(MP_OK)
    })
}

/// Receives the next message into `buf` (`cap` bytes) and stores its
/// length in `*len`, waiting at most `timeout_ns`.
///
/// MP_ERR_TOO_LARGE when the message is longer than `cap`: it stays first
/// in line, `*len` says its size (so `cap` 0 and `buf` NULL ask for the size).
/// MP_ERR_TIMEOUT: what arrived of a message is kept for the next call.
/// MP_ERR_EOF: the peer closed. MP_ERR_OS: the peer closed in the middle of
/// a message. MP_ERR_INVALID: bytes that are not CPython framing.
///
/// # Safety
///
/// - `c` is NULL or a live connection from this API, not used by another
///   thread during the call.
/// - `buf` is NULL or valid for writing `cap` bytes.
/// - `len` is NULL or valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_conn_recv_bytes(
    c: *mut mp_conn_t,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    timeout_ns: i64,
) -> c_int {
    guard("mp_conn_recv_bytes", || {
        // SAFETY: forwarded from the caller.
        let (conn, len) = unsafe { (conn(c)?, non_null_mut(len, "len")?) };
        let timeout = timeout_from_ns(timeout_ns)?;
        let room: &mut [u8] = if cap == 0 {
            &mut []
        } else if buf.is_null() {
            return Err(Error::Null("buf"));
        } else {
            // SAFETY: non-NULL and writable for `cap` bytes (caller's
            // promise); nothing else uses it during the call.
            unsafe { std::slice::from_raw_parts_mut(buf.cast(), cap) }
        };
        match conn.recv_bytes_into_timeout(room, 0, timeout) {
            Ok(n) => {
                *len = n;
                Ok(MP_OK)
            }
            Err(Error::TooLarge { len: size, max }) => {
                *len = size;
                Err(Error::TooLarge { len: size, max })
            }
            Err(e) => Err(e),
        }
    })
}

/// 1 if a receive would not block (a message, or the peer's end of file, is
/// there), 0 if none came within `timeout_ns`, or a negative error.
///
/// # Safety
///
/// - `c` is NULL or a live connection from this API, not used by another
///   thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_conn_poll(c: *mut mp_conn_t, timeout_ns: i64) -> c_int {
    guard("mp_conn_poll", || {
        // SAFETY: forwarded from the caller.
        let conn = unsafe { conn(c) }?;
        Ok(conn.poll(timeout_from_ns(timeout_ns)?)?.into())
    })
}

/// The connection's descriptor (to poll it with other descriptors), or a
/// negative error. Read messages through `mp_conn_recv_bytes`, not the
/// descriptor: the connection may hold bytes already received.
///
/// # Safety
///
/// - `c` is NULL or a live connection from this API, not used by another
///   thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_conn_fileno(c: *mut mp_conn_t) -> c_int {
    use std::os::fd::AsRawFd;
    guard("mp_conn_fileno", || {
        // SAFETY: forwarded from the caller.
        Ok(unsafe { conn(c) }?.fileno()?.as_raw_fd())
    })
}

/// Waits until at least one of the `n` connections in `conns` can receive
/// without blocking, or `timeout_ns` passes. Sets `ready[i]` to 1 or 0 for
/// each and returns how many are ready (0 on timeout), or a negative error.
///
/// # Safety
///
/// - `conns` is NULL or valid for reading `n` pointers, each NULL or a live
///   connection from this API (a connection may appear once only).
/// - `ready` is NULL or valid for writing `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_wait(
    conns: *const *mut mp_conn_t,
    n: usize,
    timeout_ns: i64,
    ready: *mut u8,
) -> c_int {
    guard("mp_wait", || {
        if n == 0 {
            return Err(Error::Invalid(
                "mp_wait needs at least one connection".into(),
            ));
        }
        if conns.is_null() {
            return Err(Error::Null("conns"));
        }
        if ready.is_null() {
            return Err(Error::Null("ready"));
        }
        // SAFETY: readable for `n` pointers (caller's promise).
        let ptrs = unsafe { std::slice::from_raw_parts(conns, n) };
        // SAFETY: writable for `n` bytes (caller's promise).
        let flags = unsafe { std::slice::from_raw_parts_mut(ready, n) };
        let mut objects: Vec<&dyn Waitable> = Vec::with_capacity(n);
        for p in ptrs {
            // SAFETY: each NULL or live (caller's promise); only shared use.
            objects.push(unsafe { conn(*p) }?);
        }
        let which = connection::wait(&objects, timeout_from_ns(timeout_ns)?)?;
        flags.fill(0);
        for i in &which {
            flags[*i] = 1;
        }
        Ok(which.len() as c_int)
    })
}

/// Closes and releases a connection. NULL is a no-op; a pointer that is
/// not a live connection is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `c` is NULL or a connection from this API, not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_conn_free(c: *mut mp_conn_t) {
    guard("mp_conn_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_conn_t>::free(c.cast(), TAG_CONN) }?;
        Ok(MP_OK)
    });
}

/// Listens at `address` (`"tcp:HOST:PORT"`, port 0 picks a free one, or
/// `"unix:PATH"`) and stores the listener in `*out`. With an `authkey`
/// (`keylen` bytes; NULL or empty: none), accepted clients must prove they
/// know it, and the listener proves it back (CPython's handshake).
///
/// MP_ERR_INVALID for an address that does not parse or a Unix path that
/// is too long, MP_ERR_OS when the system refuses (address in use).
///
/// # Safety
///
/// - `address` is NULL or a NUL-terminated string.
/// - `authkey` is NULL or valid for reading `keylen` bytes.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_listener_new(
    address: *const c_char,
    authkey: *const u8,
    keylen: usize,
    out: *mut *mut mp_listener_t,
) -> c_int {
    guard("mp_listener_new", || {
        // SAFETY: forwarded from the caller's promises.
        let (addr, key, out) = unsafe {
            (
                self::address(address)?,
                key(authkey, keylen)?,
                non_null_mut(out, "out")?,
            )
        };
        let l = Listener::new(&addr, DEFAULT_BACKLOG, key)?;
        *out = Tagged::boxed(TAG_LISTENER, mp_listener_t(l)).cast();
        Ok(MP_OK)
    })
}

/// Writes the address the listener listens at, NUL-terminated, into `buf`
/// (`cap` bytes): for TCP with the port the system chose. MP_ERR_TOO_LARGE
/// if it does not fit.
///
/// # Safety
///
/// - `l` is NULL or a live listener from `mp_listener_new`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_listener_address(
    l: *mut mp_listener_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_listener_address", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { listener(l) }?.address().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Accepts the next client, authenticates it if the listener has a key,
/// and stores the connection in `*out`; waits at most `timeout_ns` in all.
///
/// MP_ERR_AUTH for a client with another key or that does not speak the
/// handshake; MP_ERR_EOF / MP_ERR_OS for one that hung up; MP_ERR_TIMEOUT.
/// The listener keeps working after any of these.
///
/// # Safety
///
/// - `l` is NULL or a live listener from `mp_listener_new`.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_listener_accept(
    l: *mut mp_listener_t,
    timeout_ns: i64,
    out: *mut *mut mp_conn_t,
) -> c_int {
    guard("mp_listener_accept", || {
        // SAFETY: forwarded from the caller's promises.
        let (l, out) = unsafe { (listener(l)?, non_null_mut(out, "out")?) };
        *out = boxed_conn(l.accept(timeout_from_ns(timeout_ns)?)?);
        Ok(MP_OK)
    })
}

/// Stops listening and releases the listener (a Unix socket file it made
/// is removed). NULL is a no-op; a pointer that is not a live listener is
/// refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `l` is NULL or a listener from `mp_listener_new`, not used again
///   afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_listener_free(l: *mut mp_listener_t) {
    guard("mp_listener_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_listener_t>::free(l.cast(), TAG_LISTENER) }?;
        Ok(MP_OK)
    });
}

/// Connects to a listener (ours or Python's) at `address` and, with an
/// `authkey`, runs the handshake; stores the connection in `*out`. Waits
/// for the handshake without limit; see `mp_client_connect_timeout`.
///
/// MP_ERR_AUTH when either side's check fails; MP_ERR_OS when the
/// connection is refused; MP_ERR_INVALID for an address that does not parse.
///
/// # Safety
///
/// - `address` is NULL or a NUL-terminated string.
/// - `authkey` is NULL or valid for reading `keylen` bytes.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_client_connect(
    address: *const c_char,
    authkey: *const u8,
    keylen: usize,
    out: *mut *mut mp_conn_t,
) -> c_int {
    // SAFETY: forwarded from the caller's promises.
    unsafe { mp_client_connect_timeout(address, authkey, keylen, MP_WAIT_FOREVER, out) }
}

/// `mp_client_connect` whose handshake waits at most `timeout_ns`
/// (MP_ERR_TIMEOUT then).
///
/// # Safety
///
/// - As for `mp_client_connect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_client_connect_timeout(
    address: *const c_char,
    authkey: *const u8,
    keylen: usize,
    timeout_ns: i64,
    out: *mut *mut mp_conn_t,
) -> c_int {
    guard("mp_client_connect_timeout", || {
        // SAFETY: forwarded from the caller's promises.
        let (addr, key, out) = unsafe {
            (
                self::address(address)?,
                key(authkey, keylen)?,
                non_null_mut(out, "out")?,
            )
        };
        *out = boxed_conn(connection::client(
            &addr,
            key,
            timeout_from_ns(timeout_ns)?,
        )?);
        Ok(MP_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::{MP_ERR_INVALID, MP_ERR_NULL, MP_ERR_TIMEOUT, MP_ERR_TOO_LARGE};
    use std::ptr::{null, null_mut};

    #[test]
    fn pipe_send_recv_and_bad_arguments() {
        let (mut a, mut b) = (null_mut(), null_mut());
        // SAFETY: valid out-pointers, live connections, buffers of the sizes given.
        unsafe {
            assert_eq!(mp_pipe(1, &mut a, &mut b), MP_OK);
            assert_eq!(mp_conn_send_bytes(a, b"hello".as_ptr().cast(), 5), MP_OK);
            assert_eq!(mp_conn_send_bytes(a, null(), 0), MP_OK);
            assert_eq!(mp_conn_send_bytes(a, null(), 3), MP_ERR_NULL);
            assert_eq!(mp_conn_poll(b, 0), 1);
            let mut len = 0;
            assert_eq!(
                mp_conn_recv_bytes(b, null_mut(), 0, &mut len, -1),
                MP_ERR_TOO_LARGE
            );
            assert_eq!(len, 5);
            let mut buf = [0u8; 8];
            assert_eq!(
                mp_conn_recv_bytes(b, buf.as_mut_ptr().cast(), 8, &mut len, -1),
                MP_OK
            );
            assert_eq!(&buf[..len], b"hello");
            assert_eq!(mp_conn_recv_bytes(b, null_mut(), 0, &mut len, 0), MP_OK);
            assert_eq!(len, 0);
            assert_eq!(
                mp_conn_recv_bytes(b, buf.as_mut_ptr().cast(), 8, &mut len, 0),
                MP_ERR_TIMEOUT
            );
            assert_eq!(
                mp_conn_recv_bytes(b, buf.as_mut_ptr().cast(), 8, &mut len, -5),
                MP_ERR_INVALID
            );
            assert_eq!(mp_conn_poll(b, 0), 0);
            let mut ready = [9u8; 2];
            assert_eq!(mp_wait([a, b].as_ptr(), 2, 0, ready.as_mut_ptr()), 0);
            assert_eq!(ready, [0, 0]);
            assert!(mp_conn_fileno(a) >= 0);
            mp_conn_free(a);
            assert_eq!(mp_wait([b].as_ptr(), 1, -1, ready.as_mut_ptr()), 1);
            assert_eq!(
                mp_conn_recv_bytes(b, buf.as_mut_ptr().cast(), 8, &mut len, -1),
                crate::ffi::MP_ERR_EOF
            );
            mp_conn_free(b);
            mp_conn_free(null_mut());
            assert_eq!(mp_pipe(1, null_mut(), &mut b), MP_ERR_NULL);
        }
    }

    #[test]
    fn listener_and_client_on_loopback() {
        let mut l = null_mut();
        // SAFETY: NUL-terminated strings, valid out-pointers, live objects.
        unsafe {
            assert_eq!(
                mp_listener_new(c"tcp:127.0.0.1:0".as_ptr(), b"k".as_ptr(), 1, &mut l),
                MP_OK
            );
            let mut text = [0 as c_char; 64];
            assert_eq!(mp_listener_address(l, text.as_mut_ptr(), 64), MP_OK);
            let addr = std::ffi::CStr::from_ptr(text.as_ptr()).to_owned();
            assert_eq!(
                mp_listener_address(l, text.as_mut_ptr(), 4),
                MP_ERR_TOO_LARGE
            );
            let peer = std::thread::spawn(move || {
                let mut c = null_mut();
                let rc = mp_client_connect_timeout(
                    addr.as_ptr(),
                    b"k".as_ptr(),
                    1,
                    10_000_000_000,
                    &mut c,
                );
                if rc == MP_OK {
                    mp_conn_free(c);
                }
                rc
            });
            let mut c = null_mut();
            assert_eq!(mp_listener_accept(l, 10_000_000_000, &mut c), MP_OK);
            assert_eq!(peer.join().unwrap(), MP_OK);
            mp_conn_free(c);
            assert_eq!(mp_listener_accept(l, 0, &mut c), MP_ERR_TIMEOUT);
            mp_listener_free(l);
            assert_eq!(
                mp_listener_new(c"tcp:nope".as_ptr(), null(), 0, &mut l),
                MP_ERR_INVALID
            );
            assert_eq!(
                mp_listener_new(c"unix:/x".as_ptr(), null(), 3, &mut l),
                MP_ERR_NULL
            );
            assert_eq!(mp_client_connect(null(), null(), 0, &mut c), MP_ERR_NULL);
        }
    }
}
