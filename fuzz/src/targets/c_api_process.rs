//! `mp_process_*`, `mp_register`, `mp_init` and the process-wide calls
//! (`mp_active_children`, `mp_current_process_name`, `mp_parent_pid`,
//! `mp_cpu_count`) under the `c_api` body (see `c_api.rs`).
//!
//! The body starts no process: every `mp_process_start*` has at least one
//! argument the library refuses before anything starts (a NULL `out` or
//! `entry`, an entry name not UTF-8 or not registered, a name not UTF-8, a
//! bad method, NULL bytes with a length), so the calls on a process only
//! ever get pointers that are no live process. `mp_init` only gets bad
//! arguments (with good ones it is the program's first call, once).

use std::ffi::{CStr, c_char, c_int};

use multiproc::ffi::process::*;
use multiproc::ffi::*;

use super::Input;
use super::c_api::{Expect, Kind, Use, World, free_call};
use super::c_api_shared::{ENTRY, ENTRY_FN, c_string};

/// One call on processes or the process-wide state.
///
/// # Safety
///
/// As `c_api::run` says.
pub(super) unsafe fn call(w: &mut World, input: &mut Input) {
    // SAFETY: forwarded.
    unsafe {
        match input.choose(10) {
            0..=2 => start(w, input),
            3 | 4 => on_process(w, input),
            5 => free_call(w, input, Kind::Process),
            6 => active_children(input),
            7 => current_name(w, input),
            8 => register(input),
            _ => init(input),
        }
    }
}

/// `mp_process_start` / `mp_process_start_named`, never with every
/// argument good.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn start(w: &mut World, input: &mut Input) {
    let mut out: *mut mp_process_t = std::ptr::null_mut();
    let out_null = input.choose(8) == 0;
    let (entry, mut entry_bad) = match input.choose(5) {
        0 => (None, Some(MP_ERR_NULL)),
        1 => (Some(c_string(vec![0xfe, b'e'])), Some(MP_ERR_INVALID)),
        2 => (
            Some(c_string(b"fuzz.unregistered".to_vec())),
            Some(MP_ERR_NOT_FOUND),
        ),
        _ => (Some(ENTRY.to_owned()), None),
    };
    let named = input.choose(2) == 0;
    let (name, name_bad) = match input.choose(4) {
        0 => (None, false),
        1 => (Some(c_string(vec![0x80])), true),
        2 => (Some(c_string(vec![b'p'; 300])), false),
        _ => (Some(c_string(b"fuzz-child".to_vec())), false),
    };
    let name_bad = named && name_bad;
    let method = [
        MP_START_FORK,
        MP_START_SPAWN,
        MP_START_FORKSERVER,
        MP_START_FORK | MP_START_DAEMON,
        3,
        -1,
        0x200,
        c_int::MIN,
    ][input.choose(8)];
    let method_bad = !(0..=2).contains(&(method & !MP_START_DAEMON));
    let (arg, arg_len, arg_null) = match input.choose(5) {
        0 => (std::ptr::null(), 0, false),
        1 => (std::ptr::null(), 8, true),
        2 => (w.bytes.as_ptr(), usize::MAX, false),
        _ => (w.bytes.as_ptr(), usize::from(input.u8()), false),
    };
    let arg_huge = arg_len > isize::MAX as usize && !arg_null;
    let mut entry = entry;
    if !out_null && entry_bad.is_none() && !name_bad && !method_bad && !arg_null && !arg_huge {
        // Everything good: it would start. Name no registered entry.
        entry = Some(c_string(b"fuzz.unregistered".to_vec()));
        entry_bad = Some(MP_ERR_NOT_FOUND);
    }
    let e = entry.as_ref().map_or(std::ptr::null(), |e| e.as_ptr());
    let n = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    let outp = if out_null {
        std::ptr::null_mut()
    } else {
        std::ptr::from_mut(&mut out)
    };
    // SAFETY: C strings or NULL; `arg` readable for `arg_len` bytes unless
    // that is over isize::MAX (refused unread) or it is NULL.
    let s = unsafe {
        if named {
            mp_process_start_named(method, e, arg, arg_len, n, outp)
        } else {
            mp_process_start(method, e, arg, arg_len, outp)
        }
    };
    // What comes first is the library's order; every one is a refusal.
    let not_found = entry_bad == Some(MP_ERR_NOT_FOUND);
    Expect::new("mp_process_start")
        .early(out_null, MP_ERR_NULL)
        .early(
            entry_bad.is_some() && !not_found,
            entry_bad.unwrap_or(MP_OK),
        )
        .early(name_bad || method_bad || arg_huge, MP_ERR_INVALID)
        .early(arg_null, MP_ERR_NULL)
        .early(not_found, MP_ERR_NOT_FOUND)
        .check(s, &[]);
    assert!(out.is_null(), "mp_process_start wrote *out on failure");
}

/// A call on something that is no live process.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn on_process(w: &mut World, input: &mut Input) {
    let (p, arg) = w.ptr(input, Kind::Process, Use::BadOnly);
    let p = p.cast::<mp_process_t>();
    let t = World::timeout(input);
    let mut code: c_int = 12345;
    let codep: *mut c_int = if input.choose(4) == 0 {
        std::ptr::null_mut()
    } else {
        std::ptr::from_mut(&mut code)
    };
    let mut buf = [0 as c_char; 64];
    let e = Expect::new("mp_process_*").arg(arg);
    // SAFETY: (whole block) `p` is NULL or refused unread; buffers are ours
    // with the sizes given.
    let s = unsafe {
        match input.choose(8) {
            0 => mp_process_name(p, buf.as_mut_ptr(), buf.len()),
            1 => {
                let s = mp_process_join(p, t, codep);
                e.timeout(t).check(s, &[]);
                return;
            }
            2 => mp_process_pid(p),
            3 => mp_process_is_alive(p),
            4 => mp_process_terminate(p),
            5 => mp_process_kill(p),
            6 => mp_process_exitcode(p, codep),
            _ => mp_process_sentinel(p, codep),
        }
    };
    e.check(s, &[]);
    assert_eq!(code, 12345, "an out-parameter written on failure");
}

/// `mp_active_children` with every shape of buffer.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn active_children(input: &mut Input) {
    // The shared manager and pool are at most a few children: a "huge" cap
    // never lets the library write past these 16.
    let mut pids = [0 as c_int; 16];
    let cap = [0usize, 1, 2, 16, usize::MAX][input.choose(5)];
    let pids_null = input.choose(6) == 0;
    let p = if pids_null {
        std::ptr::null_mut()
    } else {
        pids.as_mut_ptr()
    };
    let mut count = usize::MAX;
    let count_null = input.choose(8) == 0;
    let c = if count_null {
        std::ptr::null_mut()
    } else {
        std::ptr::from_mut(&mut count)
    };
    // SAFETY: `p` is NULL or 16 writable ints, as many as can be written.
    let s = unsafe { mp_active_children(p, cap, c) };
    Expect::new("mp_active_children")
        .early(count_null, MP_ERR_NULL)
        // A NULL `pids` is fine when no child runs.
        .check(s, &[MP_OK, MP_ERR_TOO_LARGE, MP_ERR_NULL]);
    if s == MP_OK {
        assert!(count <= cap.min(16), "{count} children, cap {cap}");
        assert!(pids[..count].iter().all(|p| *p > 0), "{:?}", &pids[..count]);
    }
}

/// `mp_current_process_name`, `mp_parent_pid`, `mp_cpu_count`.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn current_name(w: &mut World, input: &mut Input) {
    let cap = [0usize, 1, 11, 12, 64, usize::MAX][input.choose(6)];
    let null = input.choose(6) == 0;
    let b = if null {
        std::ptr::null_mut()
    } else {
        w.out.as_mut_ptr().cast::<c_char>()
    };
    // SAFETY: `b` is NULL or `w.out`, larger than "MainProcess" and its NUL
    // (all the library writes, whatever `cap` says).
    let s = unsafe { mp_current_process_name(b, cap) };
    Expect::new("mp_current_process_name")
        .early(null, MP_ERR_NULL)
        .check(s, &[MP_OK, MP_ERR_TOO_LARGE]);
    if s == MP_OK {
        // SAFETY: on success a NUL-terminated string.
        let name = unsafe { CStr::from_ptr(b) };
        assert_eq!(name.to_bytes(), b"MainProcess");
    }
    assert_eq!(mp_parent_pid(), 0, "no multiproc parent here");
    assert!(mp_cpu_count() >= 1);
}

/// `mp_register` with good and bad names and functions (only the body's
/// one entry name is ever registered).
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn register(input: &mut Input) {
    unsafe extern "C" fn other(_: *const u8, _: usize) -> c_int {
        1
    }
    let (name, bad) = match input.choose(5) {
        0 => (None, Some(MP_ERR_NULL)),
        1 => (Some(c_string(Vec::new())), Some(MP_ERR_INVALID)),
        2 => (Some(c_string(vec![b'e'; 256])), Some(MP_ERR_INVALID)),
        3 => (Some(c_string(vec![0xed, 0xa0, 0x80])), Some(MP_ERR_INVALID)),
        _ => (Some(ENTRY.to_owned()), None),
    };
    let (f, f_other): (mp_entry_fn, bool) = match input.choose(3) {
        0 => (None, false),
        1 => (Some(other), true),
        _ => (ENTRY_FN, false),
    };
    let n = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: `n` is NULL or a C string; `f` follows `mp_entry_fn` (and is
    // never called: nothing starts).
    let s = unsafe { mp_register(n, f) };
    Expect::new("mp_register")
        .early(bad.is_some(), bad.unwrap_or(MP_OK))
        .early(f.is_none(), MP_ERR_NULL)
        .early(f_other, MP_ERR_INVALID)
        .check(s, &[MP_OK]);
}

/// `mp_init` with bad arguments only.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn init(input: &mut Input) {
    let arg0 = c"fuzz".as_ptr().cast_mut();
    let mut argv: [*mut c_char; 3] = [arg0, std::ptr::null_mut(), arg0];
    let (argc, v, code) = match input.choose(3) {
        0 => (
            -1 - c_int::from(input.u8()),
            argv.as_mut_ptr(),
            MP_ERR_INVALID,
        ),
        1 => (
            1 + c_int::from(input.u8() % 3),
            std::ptr::null_mut(),
            MP_ERR_NULL,
        ),
        // argv[1] is NULL within argc.
        _ => (
            2 + c_int::from(input.u8() % 2),
            argv.as_mut_ptr(),
            MP_ERR_INVALID,
        ),
    };
    // SAFETY: `v` is NULL or holds 3 pointers, `argc` at most 3 when it is
    // not NULL (the library stops at the first NULL anyway).
    let s = unsafe { mp_init(argc, v) };
    Expect::new("mp_init").early(true, code).check(s, &[]);
}
