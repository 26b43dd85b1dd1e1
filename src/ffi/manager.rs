//! `mp_manager_*`, `mp_dict_*`, `mp_list_*`: a manager's server process and
//! its shared dict and list of byte strings (Python's `Manager().dict()` /
//! `.list()`).
//!
//! Objects are used through a connection to the server; a fork child may
//! use the manager, dicts and lists it inherited (its first call opens a
//! connection of its own). Each call is one atomic operation on the server.
//! When the server is gone, every call returns MP_ERR_EOF at once.

use std::ffi::{c_char, c_int, c_void};
use std::sync::{Mutex, PoisonError};

use super::process::{MP_START_FORK, MP_START_FORKSERVER, MP_START_SPAWN};
use super::{MP_OK, Tagged, c_str, copy_out, guard, non_null_mut, write_c_string};
use crate::error::{Error, Result};
use crate::manager::{Client, DictProxy, ListProxy, Manager};
use crate::process::StartMethod;

const TAG_MANAGER: u64 = u64::from_le_bytes(*b"mpMANAGR");
const TAG_DICT: u64 = u64::from_le_bytes(*b"mpMGDICT");
const TAG_LIST: u64 = u64::from_le_bytes(*b"mpMGLIST");

/// A manager (opaque): a server this process started
/// (`mp_manager_start`) or connected to (`mp_manager_connect`). Released by
/// `mp_manager_free`.
pub struct mp_manager_t {
    client: Client,
    /// The server child, for `mp_manager_start`; `None` once shut down.
    started: Mutex<Option<Manager>>,
}

/// A proxy to a shared dict of byte keys and values (opaque). Made by
/// `mp_manager_dict`, released by `mp_dict_free`.
pub struct mp_dict_t(DictProxy);

/// A proxy to a shared list of byte values (opaque). Made by
/// `mp_manager_list`, released by `mp_list_free`.
pub struct mp_list_t(ListProxy);

/// # Safety
///
/// - `m` is NULL or a pointer returned by this module, not freed.
unsafe fn manager<'a>(m: *const mp_manager_t) -> Result<&'a mp_manager_t> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(m.cast(), TAG_MANAGER, "m") }
}

/// # Safety
///
/// - `d` is NULL or a pointer returned by this module, not freed.
unsafe fn dict<'a>(d: *const mp_dict_t) -> Result<&'a DictProxy> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(d.cast(), TAG_DICT, "d") }.map(|d: &mp_dict_t| &d.0)
}

/// # Safety
///
/// - `l` is NULL or a pointer returned by this module, not freed.
unsafe fn list<'a>(l: *const mp_list_t) -> Result<&'a ListProxy> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(l.cast(), TAG_LIST, "l") }.map(|l: &mp_list_t| &l.0)
}

/// `p[..len]`; NULL is fine when `len` is 0.
///
/// # Safety
///
/// - `p` is NULL or valid for reading `len` bytes for `'a`.
unsafe fn bytes<'a>(p: *const c_void, len: usize, param: &'static str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::Null(param));
    }
    // SAFETY: non-NULL and readable for `len` bytes (caller's promise).
    Ok(unsafe { std::slice::from_raw_parts(p.cast(), len) })
}

fn method_from_c(method: c_int) -> Result<StartMethod> {
    match method {
        MP_START_FORK => Ok(StartMethod::Fork),
        MP_START_SPAWN => Ok(StartMethod::Spawn),
        MP_START_FORKSERVER => Ok(StartMethod::ForkServer),
        _ => Err(Error::Invalid(format!(
            "method is {method}: expected MP_START_FORK (0), MP_START_SPAWN (1) or \
             MP_START_FORKSERVER (2)"
        ))),
    }
}

/// Starts a manager's server in a child process started by `method`
/// (`MP_START_FORK`, `MP_START_SPAWN` or `MP_START_FORKSERVER`; spawn and
/// forkserver need `mp_init` first in `main`) and stores it in `*out`. The
/// server listens on a Unix socket in a private directory with a random
/// key; `mp_manager_shutdown` or `mp_manager_free` stops it.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_start(method: c_int, out: *mut *mut mp_manager_t) -> c_int {
    guard("mp_manager_start", || {
        // SAFETY: NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        let started = Manager::start_with(method_from_c(method)?)?;
        let client = Client::clone(&started);
        let m = mp_manager_t {
            client,
            started: Mutex::new(Some(started)),
        };
        *out = Tagged::boxed(TAG_MANAGER, m).cast();
        Ok(MP_OK)
    })
}

/// Connects to the manager server at `address` (`"tcp:HOST:PORT"` or
/// `"unix:PATH"`, as `mp_manager_address` writes it) with the key
/// `authkey[..keylen]`, and stores the connection in `*out`.
/// MP_ERR_AUTH for a wrong key, MP_ERR_OS when nobody listens there.
///
/// # Safety
///
/// - `address` is NULL or a NUL-terminated string.
/// - `authkey` is NULL (with `keylen` 0) or valid for reading `keylen` bytes.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_connect(
    address: *const c_char,
    authkey: *const u8,
    keylen: usize,
    out: *mut *mut mp_manager_t,
) -> c_int {
    guard("mp_manager_connect", || {
        // SAFETY: forwarded from the caller.
        let (address, key, out) = unsafe {
            (
                c_str(address, "address")?,
                bytes(authkey.cast(), keylen, "authkey")?,
                non_null_mut(out, "out")?,
            )
        };
        let client = Client::connect(&address.parse()?, key)?;
        let m = mp_manager_t {
            client,
            started: Mutex::new(None),
        };
        *out = Tagged::boxed(TAG_MANAGER, m).cast();
        Ok(MP_OK)
    })
}

/// Writes the server's address as a NUL-terminated string into
/// `buf[..cap]` (MP_ERR_TOO_LARGE when it does not fit).
///
/// # Safety
///
/// - `m` is NULL or a live manager from this API.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_address(
    m: *const mp_manager_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_manager_address", || {
        // SAFETY: forwarded from the caller.
        let m = unsafe { manager(m) }?;
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&m.client.address().to_string(), buf, cap) }
    })
}

/// Copies the key of a manager this process started into `buf[..cap]` and
/// its length into `*len` (MP_ERR_TOO_LARGE, with `*len` set, when it does
/// not fit; 32 bytes always do). MP_ERR_STATE for a connected manager
/// (whose key the caller knows) or one shut down.
///
/// # Safety
///
/// - `m` is NULL or a live manager from this API.
/// - `buf` is NULL or valid for writing `cap` bytes; `len` is NULL or valid
///   for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_authkey(
    m: *const mp_manager_t,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard("mp_manager_authkey", || {
        // SAFETY: forwarded from the caller.
        let m = unsafe { manager(m) }?;
        let started = m.started.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(started) = started.as_ref() else {
            return Err(Error::State(
                "only a manager started by this process (and not shut down) has its key".into(),
            ));
        };
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(started.authkey(), buf.cast(), "buf", cap, len) }
    })
}

/// Creates an empty shared dict in the manager and stores a proxy to it in
/// `*out`.
///
/// # Safety
///
/// - `m` is NULL or a live manager from this API.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_dict(
    m: *const mp_manager_t,
    out: *mut *mut mp_dict_t,
) -> c_int {
    guard("mp_manager_dict", || {
        // SAFETY: forwarded from the caller.
        let (m, out) = unsafe { (manager(m)?, non_null_mut(out, "out")?) };
        *out = Tagged::boxed(TAG_DICT, mp_dict_t(m.client.dict()?)).cast();
        Ok(MP_OK)
    })
}

/// Creates an empty shared list in the manager and stores a proxy to it in
/// `*out`.
///
/// # Safety
///
/// - `m` is NULL or a live manager from this API.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_list(
    m: *const mp_manager_t,
    out: *mut *mut mp_list_t,
) -> c_int {
    guard("mp_manager_list", || {
        // SAFETY: forwarded from the caller.
        let (m, out) = unsafe { (manager(m)?, non_null_mut(out, "out")?) };
        *out = Tagged::boxed(TAG_LIST, mp_list_t(m.client.list()?)).cast();
        Ok(MP_OK)
    })
}

/// Stores the id of the dict's object in `*id`: another process connected
/// to the same manager reaches it with `mp_manager_attach_dict`.
///
/// # Safety
///
/// - `d` is NULL or a live dict from this API; `id` is NULL or valid for
///   writing one `uint64_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_dict_id(d: *const mp_dict_t, id: *mut u64) -> c_int {
    guard("mp_dict_id", || {
        // SAFETY: forwarded from the caller.
        let (d, id) = unsafe { (dict(d)?, non_null_mut(id, "id")?) };
        *id = d.proxy().id();
        Ok(MP_OK)
    })
}

/// Stores in `*out` a new proxy to the existing dict `id` (from
/// `mp_dict_id`). MP_ERR_NOT_FOUND when no such object lives, MP_ERR_KIND
/// when it is not a dict.
///
/// # Safety
///
/// - `m` is NULL or a live manager from this API.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_attach_dict(
    m: *const mp_manager_t,
    id: u64,
    out: *mut *mut mp_dict_t,
) -> c_int {
    guard("mp_manager_attach_dict", || {
        // SAFETY: forwarded from the caller.
        let (m, out) = unsafe { (manager(m)?, non_null_mut(out, "out")?) };
        let d = DictProxy::attach(&m.client, id)?;
        *out = Tagged::boxed(TAG_DICT, mp_dict_t(d)).cast();
        Ok(MP_OK)
    })
}

/// Stops the server: one this process started is asked to stop, reaped
/// and its directory removed; for a connected manager the server is asked
/// to stop. Later calls on its dicts and lists return MP_ERR_EOF. The
/// manager must still be freed.
///
/// # Safety
///
/// - `m` is NULL or a live manager from this API.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_shutdown(m: *mut mp_manager_t) -> c_int {
    guard("mp_manager_shutdown", || {
        // SAFETY: forwarded from the caller.
        let m = unsafe { manager(m) }?;
        let started = m
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match started {
            Some(started) => started.shutdown()?,
            None => m.client.shutdown_server()?,
        }
        Ok(MP_OK)
    })
}

/// Releases the manager; one this process started and did not shut down
/// is shut down first. NULL is a no-op; a pointer that is not a live
/// manager is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `m` is NULL or a manager from this API, not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_manager_free(m: *mut mp_manager_t) {
    guard("mp_manager_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_manager_t>::free(m.cast(), TAG_MANAGER) }?;
        Ok(MP_OK)
    });
}

/// `d[key] = value`.
///
/// # Safety
///
/// - `d` is NULL or a live dict from this API.
/// - `key` and `value` are NULL (with a length of 0) or valid for reading
///   `keylen` and `vallen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_dict_set(
    d: *const mp_dict_t,
    key: *const c_void,
    keylen: usize,
    value: *const c_void,
    vallen: usize,
) -> c_int {
    guard("mp_dict_set", || {
        // SAFETY: forwarded from the caller.
        let (d, key, value) = unsafe {
            (
                dict(d)?,
                bytes(key, keylen, "key")?,
                bytes(value, vallen, "value")?,
            )
        };
        d.set(key, value)?;
        Ok(MP_OK)
    })
}

/// Copies `d[key]` into `buf[..cap]` and its length into `*len`.
/// MP_ERR_NOT_FOUND when the key is absent; MP_ERR_TOO_LARGE when the value
/// does not fit (`*len` says its size; `buf` NULL with `cap` 0 asks for it).
///
/// # Safety
///
/// - `d` is NULL or a live dict from this API.
/// - `key` is NULL (with `keylen` 0) or valid for reading `keylen` bytes.
/// - `buf` is NULL or valid for writing `cap` bytes; `len` is NULL or valid
///   for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_dict_get(
    d: *const mp_dict_t,
    key: *const c_void,
    keylen: usize,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard("mp_dict_get", || {
        // SAFETY: forwarded from the caller.
        let (d, key) = unsafe { (dict(d)?, bytes(key, keylen, "key")?) };
        let value = d
            .get(key)?
            .ok_or_else(|| Error::NotFound("no such key in the dict".into()))?;
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(&value, buf.cast(), "buf", cap, len) }
    })
}

/// `del d[key]`; MP_ERR_NOT_FOUND when the key is absent.
///
/// # Safety
///
/// - `d` is NULL or a live dict from this API.
/// - `key` is NULL (with `keylen` 0) or valid for reading `keylen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_dict_del(
    d: *const mp_dict_t,
    key: *const c_void,
    keylen: usize,
) -> c_int {
    guard("mp_dict_del", || {
        // SAFETY: forwarded from the caller.
        let (d, key) = unsafe { (dict(d)?, bytes(key, keylen, "key")?) };
        d.remove(key)?
            .ok_or_else(|| Error::NotFound("no such key in the dict".into()))?;
        Ok(MP_OK)
    })
}

/// Stores `len(d)` in `*out`.
///
/// # Safety
///
/// - `d` is NULL or a live dict from this API; `out` is NULL or valid for
///   writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_dict_len(d: *const mp_dict_t, out: *mut usize) -> c_int {
    guard("mp_dict_len", || {
        // SAFETY: forwarded from the caller.
        let (d, out) = unsafe { (dict(d)?, non_null_mut(out, "out")?) };
        *out = d.len()?;
        Ok(MP_OK)
    })
}

/// Releases this proxy (its reference to the dict). NULL is a no-op; a
/// pointer that is not a live dict is refused and left alone.
///
/// # Safety
///
/// - `d` is NULL or a dict from this API, not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_dict_free(d: *mut mp_dict_t) {
    guard("mp_dict_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_dict_t>::free(d.cast(), TAG_DICT) }?;
        Ok(MP_OK)
    });
}

/// `l.append(value)`.
///
/// # Safety
///
/// - `l` is NULL or a live list from this API.
/// - `value` is NULL (with `len` 0) or valid for reading `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_list_append(
    l: *const mp_list_t,
    value: *const c_void,
    len: usize,
) -> c_int {
    guard("mp_list_append", || {
        // SAFETY: forwarded from the caller.
        let (l, value) = unsafe { (list(l)?, bytes(value, len, "value")?) };
        l.append(value)?;
        Ok(MP_OK)
    })
}

/// Copies `l[index]` (negative: from the end) into `buf[..cap]` and its
/// length into `*len`. MP_ERR_VALUE when the index is out of range;
/// MP_ERR_TOO_LARGE as for `mp_dict_get`.
///
/// # Safety
///
/// - `l` is NULL or a live list from this API.
/// - `buf` is NULL or valid for writing `cap` bytes; `len` is NULL or valid
///   for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_list_get(
    l: *const mp_list_t,
    index: i64,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard("mp_list_get", || {
        // SAFETY: forwarded from the caller.
        let l = unsafe { list(l) }?;
        let value = l.get(index)?;
        // SAFETY: forwarded from the caller.
        unsafe { copy_out(&value, buf.cast(), "buf", cap, len) }
    })
}

/// `l[index] = value` (negative: from the end); MP_ERR_VALUE when the
/// index is out of range.
///
/// # Safety
///
/// - `l` is NULL or a live list from this API.
/// - `value` is NULL (with `len` 0) or valid for reading `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_list_set(
    l: *const mp_list_t,
    index: i64,
    value: *const c_void,
    len: usize,
) -> c_int {
    guard("mp_list_set", || {
        // SAFETY: forwarded from the caller.
        let (l, value) = unsafe { (list(l)?, bytes(value, len, "value")?) };
        l.set(index, value)?;
        Ok(MP_OK)
    })
}

/// Stores `len(l)` in `*out`.
///
/// # Safety
///
/// - `l` is NULL or a live list from this API; `out` is NULL or valid for
///   writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_list_len(l: *const mp_list_t, out: *mut usize) -> c_int {
    guard("mp_list_len", || {
        // SAFETY: forwarded from the caller.
        let (l, out) = unsafe { (list(l)?, non_null_mut(out, "out")?) };
        *out = l.len()?;
        Ok(MP_OK)
    })
}

/// Releases this proxy (its reference to the list). NULL is a no-op; a
/// pointer that is not a live list is refused and left alone.
///
/// # Safety
///
/// - `l` is NULL or a list from this API, not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_list_free(l: *mut mp_list_t) {
    guard("mp_list_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_list_t>::free(l.cast(), TAG_LIST) }?;
        Ok(MP_OK)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::MP_ERR_AUTH;
    use crate::manager::Transport;
    use std::ffi::{CStr, CString};

    /// Found by the c_api fuzz target: a client given no key skipped the
    /// handshake and read the server's challenge as a reply
    /// (MP_ERR_INTERNAL, "incompatible layout version ... found 35").
    #[test]
    fn a_client_without_the_key_is_refused_with_auth() {
        let mgr = Manager::start_with(StartMethod::Fork).unwrap();
        let address = CString::new(mgr.address().to_string()).unwrap();
        let mut m = std::ptr::null_mut();
        // SAFETY: a C string, no key (NULL with length 0), a writable `out`.
        let status = unsafe { mp_manager_connect(address.as_ptr(), std::ptr::null(), 0, &mut m) };
        // SAFETY: mp_last_error never returns NULL.
        let last = unsafe { CStr::from_ptr(crate::ffi::mp_last_error()) };
        assert_eq!(status, MP_ERR_AUTH, "{last:?}");
        assert!(m.is_null(), "*out written on failure");
        // On the socket transport the first call is refused the same way.
        let c = Client::connect_with(mgr.address(), b"", Transport::Socket).unwrap();
        assert!(matches!(c.dict(), Err(Error::Auth(_))));
        mgr.shutdown().unwrap();
    }
}
