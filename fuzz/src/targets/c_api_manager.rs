//! `mp_manager_*`, `mp_dict_*` and `mp_list_*` under the `c_api` body (see
//! `c_api.rs`), over the shared manager (`c_api_shared.rs`) and the
//! managers the body connects to it.
//!
//! Never started here: a manager (`mp_manager_start` only gets a NULL
//! `out` or a bad method). Never shut down: the shared server (a connected
//! manager's shutdown would stop it too, so `mp_manager_shutdown` only gets
//! bad pointers). Never given to `mp_manager_connect`: a listener of this
//! run, which accepts nobody, nor a TCP port something else may listen on
//! (its handshake would wait 30 s), nor the shared manager while the run
//! holds a raw connection to it (see `World::raw_to_manager`).

use std::ffi::{c_char, c_int, c_void};

use multiproc::ffi::process::*;
use multiproc::ffi::*;

use super::Input;
use super::c_api::{Arg, BIG, Expect, Kind, Use, World, free_call};
use super::c_api_net::{Target, address};

/// What every call on the server may also get: it is gone (EOF), or the
/// system refused a socket or ring operation (OS).
const LOST: [c_int; 2] = [MP_ERR_EOF, MP_ERR_OS];

/// `codes` and [`LOST`].
fn with_lost(codes: &[c_int]) -> Vec<c_int> {
    codes.iter().chain(LOST.iter()).copied().collect()
}

/// Bytes to send: a pointer into `w.bytes` (or NULL), a length, and
/// whether the pair is bad (NULL with a length).
fn data(w: &World, input: &mut Input, lens: &[usize]) -> (*const c_void, usize, bool) {
    let len = lens[input.choose(lens.len())];
    if input.choose(16) == 0 {
        (std::ptr::null(), len, len > 0)
    } else {
        (w.bytes.as_ptr().cast(), len, false)
    }
}

/// A receive buffer in `w.out`: pointer (or NULL), claimed capacity (a
/// huge one too: nothing the server holds here is larger than the buffer),
/// and whether the pointer is NULL.
fn out_buf(w: &mut World, input: &mut Input) -> (*mut c_void, usize, bool) {
    let cap = [0usize, 1, 3, 100, 512, BIG, usize::MAX][input.choose(7)];
    if input.choose(16) == 0 {
        (std::ptr::null_mut(), cap, true)
    } else {
        (w.out.as_mut_ptr().cast(), cap, false)
    }
}

/// A `*mut T` out-parameter: NULL now and then, else `slot`.
fn out_param<T>(input: &mut Input, slot: &mut T) -> (*mut T, bool) {
    if input.choose(16) == 0 {
        (std::ptr::null_mut(), true)
    } else {
        (std::ptr::from_mut(slot), false)
    }
}

/// One call on managers, dicts or lists.
///
/// # Safety
///
/// As `c_api::run` says.
pub(super) unsafe fn call(w: &mut World, input: &mut Input, kind: Kind) {
    if input.choose(12) == 0 {
        // SAFETY: forwarded.
        return unsafe { free_call(w, input, kind) };
    }
    // SAFETY: forwarded.
    unsafe {
        match kind {
            Kind::Manager => manager_op(w, input),
            Kind::Dict => dict_op(w, input),
            _ => list_op(w, input),
        }
    }
}

/// One call on a manager.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn manager_op(w: &mut World, input: &mut Input) {
    let mut obj: *mut c_void = std::ptr::null_mut();
    let (out, out_null) = out_param(input, &mut obj);
    let op = input.choose(9);
    let (m, arg) = w.ptr(
        input,
        Kind::Manager,
        if op == 8 { Use::BadOnly } else { Use::Any },
    );
    let m = m.cast::<mp_manager_t>();
    // SAFETY: (whole block) pointers are NULL, ours, or refused unread;
    // buffers are ours with at least the sizes given.
    unsafe {
        match op {
            0 => {
                // Never a good method with a good out-pointer.
                let method = if out_null {
                    [MP_START_FORK, MP_START_SPAWN, 3, -1][input.choose(4)]
                } else {
                    [3, -1, MP_START_DAEMON, c_int::MIN, 0x7fff][input.choose(5)]
                };
                let s = mp_manager_start(method, out.cast());
                Expect::new("mp_manager_start")
                    .early(out_null, MP_ERR_NULL)
                    .early(!out_null, MP_ERR_INVALID)
                    .check(s, &[]);
            }
            1 | 2 => {
                let (addr, target) = address(w, input, true);
                if target == Target::Listener || (target == Target::Manager && w.raw_to_manager) {
                    return;
                }
                let mut keybuf = [0u8; 64];
                let (k, klen, kbad) = match input.choose(4) {
                    0 => (std::ptr::null(), 0, false),
                    1 => (std::ptr::null(), 5, true),
                    2 => {
                        let n = input.choose(65);
                        let src = input.bytes(n);
                        keybuf[..src.len()].copy_from_slice(src);
                        (keybuf.as_ptr(), src.len(), false)
                    }
                    _ => (w.view.manager_key.as_ptr(), w.view.manager_key.len(), false),
                };
                let s = mp_manager_connect(addr.as_ptr(), k, klen, out.cast());
                Expect::new("mp_manager_connect")
                    .early(out_null || kbad, MP_ERR_NULL)
                    .early(target == Target::Garbage, MP_ERR_INVALID)
                    .check(
                        s,
                        &with_lost(&[
                            MP_OK,
                            MP_ERR_AUTH,
                            MP_ERR_INVALID,
                            MP_ERR_NOT_FOUND,
                            MP_ERR_TIMEOUT,
                        ]),
                    );
                w.remember(Kind::Manager, s, obj);
            }
            3 => {
                let mut buf = [0 as c_char; 512];
                let cap = [0usize, 1, 10, 512][input.choose(4)];
                let null = input.choose(8) == 0;
                let b = if null {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr()
                };
                let s = mp_manager_address(m, b, cap);
                Expect::new("mp_manager_address")
                    .arg(arg)
                    .early(null, MP_ERR_NULL)
                    .check(s, &[MP_OK, MP_ERR_TOO_LARGE]);
            }
            4 => {
                let (b, cap, null) = out_buf(w, input);
                let mut len = usize::MAX;
                let (lenp, len_null) = out_param(input, &mut len);
                let s = mp_manager_authkey(m, b.cast(), cap, lenp);
                Expect::new("mp_manager_authkey")
                    .arg(arg)
                    .late(null, MP_ERR_NULL)
                    .late(len_null, MP_ERR_NULL)
                    .check(s, &[MP_OK, MP_ERR_TOO_LARGE, MP_ERR_STATE]);
            }
            5 => {
                let s = mp_manager_dict(m, out.cast());
                Expect::new("mp_manager_dict")
                    .arg(arg)
                    .early(out_null, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK]));
                w.remember(Kind::Dict, s, obj);
            }
            6 => {
                let s = mp_manager_list(m, out.cast());
                Expect::new("mp_manager_list")
                    .arg(arg)
                    .early(out_null, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK]));
                w.remember(Kind::List, s, obj);
            }
            7 => {
                let id = match input.choose(4) {
                    0 | 1 if !w.ids.is_empty() => w.ids[usize::from(input.u8()) % w.ids.len()],
                    2 => u64::from(input.u8()),
                    _ => input.u64(),
                };
                let s = mp_manager_attach_dict(m, id, out.cast());
                Expect::new("mp_manager_attach_dict")
                    .arg(arg)
                    .early(out_null, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK, MP_ERR_NOT_FOUND, MP_ERR_KIND]));
                w.remember(Kind::Dict, s, obj);
            }
            _ => {
                assert_ne!(arg, Arg::Live, "a live manager picked for shutdown");
                let s = mp_manager_shutdown(m);
                Expect::new("mp_manager_shutdown").arg(arg).check(s, &[]);
            }
        }
    }
}

/// One call on a dict.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn dict_op(w: &mut World, input: &mut Input) {
    let (d, arg) = w.ptr(input, Kind::Dict, Use::Any);
    let d = d.cast::<mp_dict_t>();
    let (key, klen, kbad) = data(w, input, &[0, 1, 2, 3]);
    // SAFETY: (whole block) pointers are NULL, ours, or refused unread;
    // buffers are ours with at least the sizes given.
    unsafe {
        match input.choose(6) {
            0 | 1 => {
                let (v, vlen, vbad) = data(w, input, &[0, 1, 100, 512, BIG]);
                let s = mp_dict_set(d, key, klen, v, vlen);
                Expect::new("mp_dict_set")
                    .arg(arg)
                    .early(kbad || vbad, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK, MP_ERR_TOO_LARGE]));
                if s == MP_OK {
                    // The value reads back as stored.
                    let mut len = 0;
                    let g = mp_dict_get(
                        d,
                        key,
                        klen,
                        w.out.as_mut_ptr().cast(),
                        w.out.len(),
                        &mut len,
                    );
                    if !LOST.contains(&g) {
                        assert_eq!(g, MP_OK, "mp_dict_get right after mp_dict_set");
                        assert_eq!(len, vlen);
                        assert!(w.out[..len] == w.bytes[..vlen], "another value read back");
                    }
                }
            }
            2 => {
                let (b, cap, _) = out_buf(w, input);
                let mut len = 0;
                let (lenp, len_null) = out_param(input, &mut len);
                let s = mp_dict_get(d, key, klen, b, cap, lenp);
                Expect::new("mp_dict_get")
                    .arg(arg)
                    .early(kbad, MP_ERR_NULL)
                    // A NULL `buf` is fine for an empty value.
                    .late(len_null, MP_ERR_NULL)
                    .check(
                        s,
                        &with_lost(&[MP_OK, MP_ERR_NOT_FOUND, MP_ERR_TOO_LARGE, MP_ERR_NULL]),
                    );
            }
            3 => {
                let s = mp_dict_del(d, key, klen);
                Expect::new("mp_dict_del")
                    .arg(arg)
                    .early(kbad, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK, MP_ERR_NOT_FOUND]));
            }
            4 => {
                let mut n = 0usize;
                let (np, null) = out_param(input, &mut n);
                let s = mp_dict_len(d, np);
                Expect::new("mp_dict_len")
                    .arg(arg)
                    .early(null, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK]));
            }
            _ => {
                let mut id = 0u64;
                let (idp, null) = out_param(input, &mut id);
                let s = mp_dict_id(d, idp);
                Expect::new("mp_dict_id")
                    .arg(arg)
                    .early(null, MP_ERR_NULL)
                    .check(s, &[MP_OK]);
                if s == MP_OK && w.ids.len() < 16 {
                    w.ids.push(id);
                }
            }
        }
    }
}

/// One call on a list.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn list_op(w: &mut World, input: &mut Input) {
    let (l, arg) = w.ptr(input, Kind::List, Use::Any);
    let l = l.cast::<mp_list_t>();
    let index = [0i64, 1, 2, -1, -3, i64::MAX, i64::MIN][input.choose(7)];
    // SAFETY: (whole block) pointers are NULL, ours, or refused unread;
    // buffers are ours with at least the sizes given.
    unsafe {
        match input.choose(5) {
            0 | 1 => {
                let (v, vlen, vbad) = data(w, input, &[0, 1, 100, 512, BIG]);
                let s = mp_list_append(l, v, vlen);
                Expect::new("mp_list_append")
                    .arg(arg)
                    .early(vbad, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK, MP_ERR_TOO_LARGE]));
                if s == MP_OK {
                    let mut n = 0;
                    let g = mp_list_len(l, &mut n);
                    assert!(
                        LOST.contains(&g) || (g == MP_OK && n >= 1),
                        "append, then {g}, {n}"
                    );
                }
            }
            2 => {
                let (b, cap, _) = out_buf(w, input);
                let mut len = 0;
                let (lenp, len_null) = out_param(input, &mut len);
                let s = mp_list_get(l, index, b, cap, lenp);
                Expect::new("mp_list_get")
                    .arg(arg)
                    // A NULL `buf` is fine for an empty value.
                    .late(len_null, MP_ERR_NULL)
                    .check(
                        s,
                        &with_lost(&[MP_OK, MP_ERR_VALUE, MP_ERR_TOO_LARGE, MP_ERR_NULL]),
                    );
            }
            3 => {
                let (v, vlen, vbad) = data(w, input, &[0, 1, 100]);
                let s = mp_list_set(l, index, v, vlen);
                Expect::new("mp_list_set")
                    .arg(arg)
                    .early(vbad, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK, MP_ERR_VALUE, MP_ERR_TOO_LARGE]));
            }
            _ => {
                let mut n = 0usize;
                let (np, null) = out_param(input, &mut n);
                let s = mp_list_len(l, np);
                Expect::new("mp_list_len")
                    .arg(arg)
                    .early(null, MP_ERR_NULL)
                    .check(s, &with_lost(&[MP_OK]));
            }
        }
    }
}
