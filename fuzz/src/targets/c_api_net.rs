//! `mp_listener_*` and `mp_client_connect*` under the `c_api` body (see
//! `c_api.rs`). Accepted and connected ends join the body's connections.
//!
//! Addresses are kept on this machine and out of the way: TCP hosts are
//! loopback names, Unix paths lie in the process's own directory; fuzz text
//! that would parse as anything else gets a prefix that makes it an unknown
//! scheme (so no name is looked up in DNS, no file is made elsewhere). A
//! client connects to this run's listeners at most [`MAX_CONNECTS`] times,
//! below the listen backlog, so `connect` never waits for room; a client
//! that would wait for a handshake without limit (`mp_client_connect` with
//! a key) is not made.

use std::ffi::{CString, c_char, c_void};
use std::path::Component;

use multiproc::connection::Address;
use multiproc::ffi::*;

use super::Input;
use super::c_api::{Expect, Kind, Use, World, free_call};
use super::c_api_shared::c_string;

/// Client connections to this run's listeners, at most (the backlog is
/// `DEFAULT_BACKLOG`, 16).
const MAX_CONNECTS: usize = 8;

/// TCP hosts a fuzz address may name.
const HOSTS: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// What an address text names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// Text that does not parse (or is not UTF-8): MP_ERR_INVALID.
    Garbage,
    /// A listener of this run.
    Listener,
    /// The shared manager's socket.
    Manager,
    /// Anything else that parses (nobody or somebody local listens there).
    Other,
}

/// The address of a live listener of this run, if any.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn listener_address(w: &World, input: &mut Input) -> Option<Vec<u8>> {
    let listeners: Vec<_> = w
        .live
        .iter()
        .filter(|(k, _)| *k == Kind::Listener)
        .collect();
    if listeners.is_empty() {
        return None;
    }
    let l = listeners[usize::from(input.u8()) % listeners.len()].1;
    let mut buf = [0 as c_char; 512];
    // SAFETY: `l` is a live listener; `buf` has the size given.
    let status = unsafe { mp_listener_address(l.cast(), buf.as_mut_ptr(), buf.len()) };
    assert_eq!(status, MP_OK, "mp_listener_address of a live listener");
    // SAFETY: on success `buf` holds a NUL-terminated string.
    Some(
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_bytes()
            .to_vec(),
    )
}

/// An address text for a listener or a client, and what it names.
/// `tcp_port_zero_only`: TCP addresses keep port 0 (nothing listens there),
/// for callers that would wait long for a peer that says nothing.
///
/// # Safety
///
/// As `c_api::run` says.
pub(super) unsafe fn address(
    w: &World,
    input: &mut Input,
    tcp_port_zero_only: bool,
) -> (CString, Target) {
    let dir = w.view.dir.clone();
    let mut text: Vec<u8> = match input.choose(9) {
        // SAFETY: forwarded.
        0 | 1 => match unsafe { listener_address(w, input) } {
            Some(a) => a,
            None => b"tcp:127.0.0.1:0".to_vec(),
        },
        2 => format!(
            "tcp:{}:0",
            ["127.0.0.1", "[::1]", "localhost"][input.choose(3)]
        )
        .into_bytes(),
        3 | 4 => {
            // A name in our directory: fuzz bytes made a file name, maybe
            // too long for a socket address.
            let n = [1usize, 8, 40, 120][input.choose(4)];
            let name: String = input
                .bytes(n)
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            match &dir {
                Some(d) => format!("unix:{}/{name}", d.display()).into_bytes(),
                None => b"unix:/nonexistent-mp-fuzz/s".to_vec(),
            }
        }
        5 => w.view.manager_address.clone(),
        6 => {
            let n = input.choose(60);
            input.bytes(n).to_vec()
        }
        _ => {
            // A valid address with one byte changed.
            // SAFETY: forwarded.
            let mut a = unsafe { listener_address(w, input) }
                .unwrap_or_else(|| b"tcp:127.0.0.1:0".to_vec());
            let at = usize::from(input.u8()) % a.len();
            a[at] = input.u8();
            a
        }
    };
    text.retain(|b| *b != 0);
    let target = match std::str::from_utf8(&text).ok().map(str::parse::<Address>) {
        None | Some(Err(_)) => Target::Garbage,
        Some(Ok(Address::Tcp { host, port })) => {
            if !HOSTS.contains(&host.as_str()) || (tcp_port_zero_only && port != 0) {
                text.insert(0, b'x');
                Target::Garbage
            } else {
                Target::Other
            }
        }
        Some(Ok(Address::Unix(path))) => {
            let ours = dir.as_ref().is_some_and(|d| path.starts_with(d))
                && !path.components().any(|c| c == Component::ParentDir);
            if text == w.view.manager_address {
                Target::Manager
            } else if !ours {
                text.insert(0, b'x');
                Target::Garbage
            } else {
                Target::Other
            }
        }
    };
    let target = match target {
        Target::Other if w.listens_at(&text) => Target::Listener,
        t => t,
    };
    (c_string(text), target)
}

impl World {
    /// Whether a live listener of this run listens at `text`.
    fn listens_at(&self, text: &[u8]) -> bool {
        self.live
            .iter()
            .filter(|(k, _)| *k == Kind::Listener)
            .any(|(_, l)| {
                let mut buf = [0 as c_char; 512];
                // SAFETY: `l` is a live listener; `buf` has the size given.
                let status = unsafe { mp_listener_address(l.cast(), buf.as_mut_ptr(), buf.len()) };
                // SAFETY: on success `buf` holds a NUL-terminated string.
                status == MP_OK
                    && unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_bytes() == text
            })
    }
}

/// A key: none (NULL, 0), NULL with a length (bad), fuzz bytes, or the
/// shared manager's key; and whether it is bad.
fn key(w: &World, input: &mut Input, buf: &mut [u8; 64]) -> (*const u8, usize, bool) {
    match input.choose(6) {
        0 | 1 => (std::ptr::null(), 0, false),
        2 => (std::ptr::null(), 1 + input.choose(40), true),
        3 => {
            let k = &w.view.manager_key;
            buf[..k.len()].copy_from_slice(k);
            (buf.as_ptr(), k.len(), false)
        }
        _ => {
            let n = input.choose(65);
            let src = input.bytes(n);
            buf[..src.len()].copy_from_slice(src);
            (buf.as_ptr(), src.len(), false)
        }
    }
}

/// One call on listeners or clients.
///
/// # Safety
///
/// As `c_api::run` says.
pub(super) unsafe fn call(w: &mut World, input: &mut Input) {
    let mut obj: *mut c_void = std::ptr::null_mut();
    let out_null = input.choose(16) == 0;
    let out: *mut *mut c_void = if out_null {
        std::ptr::null_mut()
    } else {
        std::ptr::from_mut(&mut obj)
    };
    let t = World::timeout(input);
    let mut keybuf = [0u8; 64];
    // SAFETY: (whole block) pointers are NULL, ours, or refused unread;
    // buffers are ours with at least the sizes given.
    unsafe {
        match input.choose(8) {
            0 => free_call(w, input, Kind::Listener),
            1 | 2 => {
                let (addr, target) = address(w, input, false);
                let (k, klen, kbad) = key(w, input, &mut keybuf);
                let s = mp_listener_new(addr.as_ptr(), k, klen, out.cast());
                Expect::new("mp_listener_new")
                    .early(out_null, MP_ERR_NULL)
                    .early(kbad, MP_ERR_NULL)
                    .early(target == Target::Garbage, MP_ERR_INVALID)
                    .check(s, &[MP_OK, MP_ERR_INVALID, MP_ERR_OS, MP_ERR_NOT_FOUND]);
                w.remember(Kind::Listener, s, obj);
            }
            3 => {
                let (l, arg) = w.ptr(input, Kind::Listener, Use::Any);
                let mut buf = [0 as c_char; 512];
                let cap = [0usize, 1, 12, 100, 512][input.choose(5)];
                let null = input.choose(8) == 0;
                let b = if null {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr()
                };
                let s = mp_listener_address(l.cast(), b, cap);
                Expect::new("mp_listener_address")
                    .arg(arg)
                    .early(null, MP_ERR_NULL)
                    .check(s, &[MP_OK, MP_ERR_TOO_LARGE]);
            }
            4 | 5 => {
                let (l, arg) = w.ptr(input, Kind::Listener, Use::Any);
                let s = mp_listener_accept(l.cast(), t, out.cast());
                Expect::new("mp_listener_accept")
                    .arg(arg)
                    .early(out_null, MP_ERR_NULL)
                    .timeout(t)
                    .check(
                        s,
                        &[MP_OK, MP_ERR_TIMEOUT, MP_ERR_AUTH, MP_ERR_EOF, MP_ERR_OS],
                    );
                w.remember(Kind::Conn, s, obj);
            }
            _ => {
                let (addr, target) = address(w, input, false);
                let (k, klen, kbad) = key(w, input, &mut keybuf);
                let forever = input.choose(2) == 0;
                let keyed = klen > 0;
                if target == Target::Listener {
                    if w.connects >= MAX_CONNECTS {
                        return;
                    }
                    w.connects += 1;
                }
                if target == Target::Manager && keyed && !kbad && !forever {
                    // The right key would give a raw authenticated
                    // connection to the shared server; fuzz sends on it
                    // could stop it. Wrong keys are fine.
                    if std::slice::from_raw_parts(k, klen) == w.view.manager_key.as_slice() {
                        return;
                    }
                }
                let s = if forever {
                    if keyed && !kbad && target != Target::Garbage {
                        // It would wait for a handshake without limit.
                        return;
                    }
                    mp_client_connect(addr.as_ptr(), k, klen, out.cast())
                } else {
                    mp_client_connect_timeout(addr.as_ptr(), k, klen, t, out.cast())
                };
                Expect::new("mp_client_connect")
                    .early(kbad, MP_ERR_NULL)
                    .early(out_null, MP_ERR_NULL)
                    .early(target == Target::Garbage, MP_ERR_INVALID)
                    .early(!forever && t < 0, MP_ERR_INVALID)
                    .check(
                        s,
                        &[
                            MP_OK,
                            MP_ERR_OS,
                            MP_ERR_AUTH,
                            MP_ERR_TIMEOUT,
                            MP_ERR_EOF,
                            MP_ERR_NOT_FOUND,
                            MP_ERR_INVALID,
                        ],
                    );
                w.remember(Kind::Conn, s, obj);
                w.raw_to_manager |= s == MP_OK && target == Target::Manager;
            }
        }
    }
}

/// After a run freed everything: no socket of it is left in the directory.
pub(super) fn after_run(w: &World) {
    if let Some(d) = &w.view.dir {
        let left: Vec<_> = std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "sockets left behind: {left:?}");
    }
}
