//! `mp_pool_*` and `mp_pool_results_*` under the `c_api` body (see
//! `c_api.rs`), over the shared pool (`c_api_shared.rs`: one fork worker,
//! with the functions `fuzz.echo`, `fuzz.fail` and `fuzz.liar`).
//!
//! Never started here: a pool (`mp_pool_new` always has a NULL `out`, no
//! process, too many processes to size, or a bad method). Never closed, terminated or freed: the
//! shared pool (those calls only get bad pointers; `mp_pool_join` gets it
//! too, and must refuse it while it runs).

use std::ffi::{c_char, c_int, c_void};

use multiproc::ffi::process::*;
use multiproc::ffi::*;

use super::Input;
use super::c_api::{Arg, BIG, Expect, Kind, Use, World, free_call};
use super::c_api_shared::{POOL_FNS, c_string};

/// A function name: registered, unregistered, not UTF-8, or NULL; with
/// the codes it brings (NOT_FOUND comes only once the pool is reached).
fn fn_name(input: &mut Input) -> (Option<std::ffi::CString>, Option<c_int>) {
    match input.choose(8) {
        0 => (None, Some(MP_ERR_NULL)),
        1 => (
            Some(c_string(b"fuzz.none".to_vec())),
            Some(MP_ERR_NOT_FOUND),
        ),
        2 => (Some(c_string(vec![0xff, b'x'])), Some(MP_ERR_INVALID)),
        _ => (Some(POOL_FNS[input.choose(3)].0.to_owned()), None),
    }
}

/// Which registered function `name` is: its failure code for every input
/// (`None`: echo).
fn fails_with(name: &Option<std::ffi::CString>) -> Option<c_int> {
    match name.as_deref().map(|n| n.to_bytes()) {
        Some(b"fuzz.fail") | Some(b"fuzz.liar") => Some(MP_ERR_VALUE),
        _ => None,
    }
}

/// One call on pools or results.
///
/// # Safety
///
/// As `c_api::run` says.
pub(super) unsafe fn call(w: &mut World, input: &mut Input, kind: Kind) {
    // SAFETY: forwarded.
    unsafe {
        if kind == Kind::Results {
            results_op(w, input)
        } else {
            pool_op(w, input)
        }
    }
}

/// One call on a pool.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn pool_op(w: &mut World, input: &mut Input) {
    let op = input.choose(10);
    let usage = match op {
        0..=2 => Use::BadOnly,
        _ => Use::Any,
    };
    let (p, arg) = w.ptr(input, Kind::Pool, usage);
    let p = p.cast::<mp_pool_t>();
    let (name, name_bad) = fn_name(input);
    let n = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: (whole block) pointers are NULL, ours, or refused unread;
    // buffers are ours with at least the sizes given.
    unsafe {
        match op {
            0 => Expect::new("mp_pool_close")
                .arg(arg)
                .check(mp_pool_close(p), &[]),
            1 => Expect::new("mp_pool_terminate")
                .arg(arg)
                .check(mp_pool_terminate(p), &[]),
            2 => free_call(w, input, Kind::Pool),
            3 => Expect::new("mp_pool_join")
                .arg(arg)
                .check(mp_pool_join(p), &[MP_ERR_STATE]),
            4 => {
                // Never a pool that starts.
                let mut out: *mut mp_pool_t = std::ptr::null_mut();
                let too_many = [usize::MAX, 1 << 61, u32::MAX as usize + 1];
                let (processes, method, null) = match input.choose(5) {
                    0 => (input.u64() as usize, input.u8().into(), true),
                    1 => (0, MP_START_FORK, false),
                    2 => (usize::MAX, c_int::from(input.u8()) + 3, false),
                    // Sizes that overflow: refused before anything starts.
                    3 => (too_many[input.choose(3)], MP_START_FORK, false),
                    _ => (1 + input.choose(4), -1 - c_int::from(input.u8()), false),
                };
                let outp = if null {
                    std::ptr::null_mut()
                } else {
                    std::ptr::from_mut(&mut out)
                };
                let s = mp_pool_new(processes, method, outp);
                Expect::new("mp_pool_new")
                    .early(null, MP_ERR_NULL)
                    .early(!null, MP_ERR_INVALID)
                    .check(s, &[]);
                assert!(out.is_null(), "mp_pool_new wrote *out on failure");
            }
            5 => register(input),
            6 | 7 => {
                let (arg_ptr, arg_len, arg_null) = input_bytes(w, input);
                let (b, cap, buf_null) = out_buf(w, input);
                let mut len = usize::MAX;
                let len_null = input.choose(16) == 0;
                let lenp = if len_null {
                    std::ptr::null_mut()
                } else {
                    std::ptr::from_mut(&mut len)
                };
                let s = mp_pool_apply(p, n, arg_ptr, arg_len, b, cap, lenp);
                Expect::new("mp_pool_apply")
                    .arg(arg)
                    .early(name.is_none(), MP_ERR_NULL)
                    .early(name_bad == Some(MP_ERR_INVALID), MP_ERR_INVALID)
                    .early(arg_null, MP_ERR_NULL)
                    .late(name_bad == Some(MP_ERR_NOT_FOUND), MP_ERR_NOT_FOUND)
                    .late(arg_len >= 64 * 1024, MP_ERR_TOO_LARGE)
                    // A NULL `buf` is fine for an empty result.
                    .late(len_null || (buf_null && arg_len > 0), MP_ERR_NULL)
                    .check(
                        s,
                        &[MP_OK, MP_ERR_TOO_LARGE, fails_with(&name).unwrap_or(MP_OK)],
                    );
                if s == MP_OK && arg_len <= 512 {
                    assert_eq!(len, arg_len, "fuzz.echo's result");
                }
            }
            _ => {
                let count = [0usize, 1, 2, 5, 9][input.choose(5)];
                let mut ptrs: Vec<*const u8> = Vec::with_capacity(count);
                let mut lens: Vec<usize> = Vec::with_capacity(count);
                let mut entry_null = false;
                let mut too_large = false;
                for _ in 0..count {
                    let (ptr, len, null) = input_bytes(w, input);
                    entry_null |= null;
                    too_large |= len >= 64 * 1024;
                    ptrs.push(ptr);
                    lens.push(len);
                }
                let arrays_null = count > 0 && input.choose(16) == 0;
                let (inputs, input_lens) = if arrays_null {
                    (std::ptr::null(), lens.as_ptr())
                } else {
                    (ptrs.as_ptr(), lens.as_ptr())
                };
                let chunksize = [MP_POOL_CHUNKSIZE_AUTO, 1, 2, 0, usize::MAX - 1][input.choose(5)];
                let mut out: *mut c_void = std::ptr::null_mut();
                let out_null = input.choose(16) == 0;
                let outp = if out_null {
                    std::ptr::null_mut()
                } else {
                    std::ptr::from_mut(&mut out)
                };
                let s = mp_pool_map(p, n, inputs, input_lens, count, chunksize, outp.cast());
                Expect::new("mp_pool_map")
                    .arg(arg)
                    .early(name.is_none() || out_null || arrays_null, MP_ERR_NULL)
                    .early(name_bad == Some(MP_ERR_INVALID), MP_ERR_INVALID)
                    .early(entry_null && !arrays_null, MP_ERR_INVALID)
                    .late(name_bad == Some(MP_ERR_NOT_FOUND), MP_ERR_NOT_FOUND)
                    .late(chunksize == 0, MP_ERR_INVALID)
                    .late(too_large, MP_ERR_TOO_LARGE)
                    .check(s, &[MP_OK]);
                if s == MP_OK {
                    assert_eq!(mp_pool_results_len(out.cast()), count);
                }
                w.remember(Kind::Results, s, out);
            }
        }
    }
}

/// Bytes for a task: pointer, length, and whether it is NULL with a length
/// (an input over 64 KiB is too large for the pool).
fn input_bytes(w: &World, input: &mut Input) -> (*const u8, usize, bool) {
    let len = [0usize, 1, 10, 512, 64 * 1024, BIG][input.choose(6)];
    if input.choose(16) == 0 {
        (std::ptr::null(), len, len > 0)
    } else {
        (w.bytes.as_ptr(), len, false)
    }
}

/// A result buffer in `w.out` (larger than any result: at most 64 KiB).
fn out_buf(w: &mut World, input: &mut Input) -> (*mut u8, usize, bool) {
    let cap = [0usize, 1, 10, 512, BIG, usize::MAX][input.choose(6)];
    if input.choose(16) == 0 {
        (std::ptr::null_mut(), cap, true)
    } else {
        (w.out.as_mut_ptr(), cap, false)
    }
}

/// `mp_pool_register` with good and bad names and functions.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn register(input: &mut Input) {
    let i = input.choose(3);
    let (name, bad) = match input.choose(6) {
        0 => (None, Some(MP_ERR_NULL)),
        1 => (Some(c_string(Vec::new())), Some(MP_ERR_INVALID)),
        2 => (Some(c_string(vec![b'n'; 256])), Some(MP_ERR_INVALID)),
        3 => (Some(c_string(vec![0xc3, 0x28])), Some(MP_ERR_INVALID)),
        _ => (Some(POOL_FNS[i].0.to_owned()), None),
    };
    // Its own function, another registered one, or none.
    let (f, f_bad) = match input.choose(4) {
        0 => (None, Some(MP_ERR_NULL)),
        1 => (POOL_FNS[(i + 1) % 3].1, Some(MP_ERR_INVALID)),
        _ => (POOL_FNS[i].1, None),
    };
    let n = name
        .as_ref()
        .map_or(std::ptr::null(), |n| n.as_ptr().cast::<c_char>());
    // SAFETY: `n` is NULL or a C string; `f` follows `mp_pool_fn`.
    let s = unsafe { mp_pool_register(n, f) };
    // Another function under a free (invalid) name is refused for the name.
    Expect::new("mp_pool_register")
        .early(bad.is_some(), bad.unwrap_or(MP_OK))
        .early(f_bad == Some(MP_ERR_NULL), MP_ERR_NULL)
        .early(f_bad == Some(MP_ERR_INVALID), MP_ERR_INVALID)
        .check(s, &[MP_OK]);
}

/// One call on results.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn results_op(w: &mut World, input: &mut Input) {
    if input.choose(6) == 0 {
        // SAFETY: forwarded.
        return unsafe { free_call(w, input, Kind::Results) };
    }
    let (r, arg) = w.ptr(input, Kind::Results, Use::Any);
    let r = r.cast::<mp_pool_results_t>();
    // SAFETY: (whole block) pointers are NULL, ours, or refused unread;
    // buffers are ours with at least the sizes given.
    unsafe {
        let n = mp_pool_results_len(r);
        if arg != Arg::Live {
            assert_eq!(n, 0, "mp_pool_results_len of a bad pointer");
        }
        let i = match input.choose(4) {
            0 => usize::MAX,
            1 => n,
            _ => usize::from(input.u8()) % n.max(1),
        };
        let (b, cap, _) = out_buf(w, input);
        let mut len = usize::MAX;
        let len_null = input.choose(16) == 0;
        let lenp = if len_null {
            std::ptr::null_mut()
        } else {
            std::ptr::from_mut(&mut len)
        };
        let s = mp_pool_results_get(r, i, b, cap, lenp);
        // A NULL `buf` is fine for an empty result.
        Expect::new("mp_pool_results_get")
            .arg(arg)
            .early(arg == Arg::Live && i >= n, MP_ERR_INVALID)
            .late(len_null, MP_ERR_NULL)
            .check(
                s,
                &[
                    MP_OK,
                    MP_ERR_TOO_LARGE,
                    MP_ERR_VALUE,
                    MP_ERR_OWNER_DIED,
                    MP_ERR_CLOSED,
                    MP_ERR_NULL,
                ],
            );
    }
}
