//! `mp_rlock_*` and `mp_cond_*` under the `c_api` body (see `c_api.rs`).
//! One thread holds everything, so an acquisition of a lock this thread
//! holds, or a wait, ends by its timeout at the latest; levels nest as deep
//! as the input likes.

use std::ffi::{c_char, c_void};

use multiproc::ffi::*;

use super::Input;
use super::c_api::{Arg, Expect, Kind, Use, World, free_call};

/// Codes of an acquisition with good arguments.
const ACQUIRED: [i32; 3] = [MP_OK, MP_ERR_TIMEOUT, MP_ERR_OWNER_DIED];
/// Codes of a release, repair or notify with good arguments.
const OWNED: [i32; 2] = [MP_OK, MP_ERR_NOT_OWNER];
/// Codes of an open with good pointers.
const OPENED: [i32; 6] = [
    MP_OK,
    MP_ERR_INVALID,
    MP_ERR_KIND,
    MP_ERR_NOT_FOUND,
    MP_ERR_VERSION,
    MP_ERR_OS,
];

/// An out-pointer for a constructor: NULL (bad) or `slot`.
fn out_ptr(input: &mut Input, slot: &mut *mut c_void) -> (*mut *mut c_void, Arg) {
    if input.choose(16) == 0 {
        (std::ptr::null_mut(), Arg::Null)
    } else {
        (std::ptr::from_mut(slot), Arg::Live)
    }
}

/// A handle buffer: its pointer (NULL now and then) and the `cap` claimed,
/// never more than its 256 bytes.
fn handle_buf(input: &mut Input, buf: &mut [c_char; 256]) -> (*mut c_char, usize, bool) {
    let cap = [0usize, 1, 8, 40, 127, 128, 256][input.choose(7)];
    if input.choose(8) == 0 {
        (std::ptr::null_mut(), cap, true)
    } else {
        (buf.as_mut_ptr(), cap, false)
    }
}

/// One call on a re-entrant lock or a condition.
///
/// # Safety
///
/// As `c_api::run` says.
pub(super) unsafe fn call(w: &mut World, input: &mut Input, kind: Kind) {
    match input.choose(10) {
        // SAFETY: forwarded.
        0 => unsafe { free_call(w, input, kind) },
        1 | 2 => {
            let open = input_bool(input);
            // SAFETY: forwarded.
            unsafe { construct(w, input, kind, open) }
        }
        // SAFETY: forwarded.
        _ if kind == Kind::RLock => unsafe { rlock_op(w, input) },
        // SAFETY: forwarded.
        _ => unsafe { cond_op(w, input) },
    }
}

fn input_bool(input: &mut Input) -> bool {
    input.choose(2) == 0
}

/// `mp_rlock_new`/`mp_rlock_open`, `mp_cond_new`/`mp_cond_open`.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn construct(w: &mut World, input: &mut Input, kind: Kind, open: bool) {
    let mut obj: *mut c_void = std::ptr::null_mut();
    let (out, out_arg) = out_ptr(input, &mut obj);
    let text = w.text(input);
    let text_null = input.choose(16) == 0;
    let t = if text_null {
        std::ptr::null()
    } else {
        text.as_ptr().cast::<c_char>()
    };
    // The lock of a condition: NULL is good here (its own lock).
    let (lock, lock_arg) = w.ptr(input, Kind::Lock, Use::Any);
    let lock_bad = lock_arg == Arg::Wrong;
    // SAFETY: every pointer is NULL, ours, or refused unread.
    let status = unsafe {
        match (kind, open) {
            (Kind::RLock, false) => {
                let s = mp_rlock_new(out.cast());
                Expect::new("mp_rlock_new")
                    .arg(out_arg)
                    .check(s, &[MP_OK, MP_ERR_OS]);
                s
            }
            (Kind::RLock, true) => {
                let s = mp_rlock_open(t, out.cast());
                // The text is read first: it may be refused before `out`.
                Expect::new("mp_rlock_open")
                    .early(text_null, MP_ERR_NULL)
                    .arg(out_arg)
                    .early(out_arg == Arg::Null, MP_ERR_INVALID)
                    .check(s, &OPENED);
                s
            }
            (_, false) => {
                let s = mp_cond_new(lock.cast(), out.cast());
                Expect::new("mp_cond_new")
                    .arg(out_arg)
                    .early(lock_bad, MP_ERR_INVALID)
                    .check(s, &[MP_OK, MP_ERR_OS]);
                s
            }
            (_, true) => {
                let s = mp_cond_open(t, lock.cast(), out.cast());
                // A lock that is not the condition's own is MP_ERR_INVALID.
                Expect::new("mp_cond_open")
                    .early(text_null, MP_ERR_NULL)
                    .arg(out_arg)
                    .early(out_arg == Arg::Null, MP_ERR_INVALID)
                    .early(lock_bad, MP_ERR_INVALID)
                    .check(s, &OPENED);
                s
            }
        }
    };
    if status != MP_OK {
        assert!(obj.is_null(), "{kind:?}: *out written on failure");
    }
    w.remember(kind, status, obj);
}

/// One operation on a re-entrant lock.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn rlock_op(w: &mut World, input: &mut Input) {
    let (r, arg) = w.ptr(input, Kind::RLock, Use::Any);
    let r = r.cast::<mp_rlock_t>();
    let t = World::timeout(input);
    let e = Expect::new("mp_rlock_*").arg(arg);
    // SAFETY: (whole block) `r` is NULL, ours, or refused unread; buffers
    // are ours with at least the sizes given.
    unsafe {
        match input.choose(6) {
            0 | 1 => {
                let s = mp_rlock_acquire(r, t);
                e.timeout(t).check(s, &ACQUIRED);
                if s == MP_OK || s == MP_ERR_OWNER_DIED {
                    assert!(mp_rlock_count(r) >= 1, "acquired, yet a count of 0");
                }
            }
            2 | 3 => e.check(mp_rlock_release(r), &OWNED),
            4 => e.check(mp_rlock_make_consistent(r), &OWNED),
            _ => {
                let count = mp_rlock_count(r);
                if arg == Arg::Live {
                    assert!(count >= 0, "mp_rlock_count: {count}");
                } else {
                    e.check(count, &[]);
                }
                let mut buf = [0 as c_char; 256];
                let (b, cap, null) = handle_buf(input, &mut buf);
                let s = mp_rlock_handle(r, b, cap);
                Expect::new("mp_rlock_handle")
                    .arg(arg)
                    .early(null, MP_ERR_NULL)
                    .check(s, &[MP_OK, MP_ERR_TOO_LARGE]);
                w.keep_handle(s, b);
            }
        }
    }
}

/// One operation on a condition.
///
/// # Safety
///
/// As `c_api::run` says.
unsafe fn cond_op(w: &mut World, input: &mut Input) {
    let (c, arg) = w.ptr(input, Kind::Cond, Use::Any);
    let c = c.cast::<mp_cond_t>();
    let t = World::timeout(input);
    let n = [0u32, 1, 2, u32::MAX][input.choose(4)];
    let e = Expect::new("mp_cond_*").arg(arg);
    // SAFETY: (whole block) `c` is NULL, ours, or refused unread; buffers
    // are ours with at least the sizes given.
    unsafe {
        match input.choose(8) {
            0 | 1 => e.timeout(t).check(mp_cond_acquire(c, t), &ACQUIRED),
            2 => e.check(mp_cond_release(c), &OWNED),
            3 => e.check(mp_cond_make_consistent(c), &OWNED),
            4 => e.timeout(t).check(
                mp_cond_wait(c, t),
                &[MP_OK, MP_ERR_TIMEOUT, MP_ERR_OWNER_DIED, MP_ERR_NOT_OWNER],
            ),
            5 => e.check(mp_cond_notify(c, n), &OWNED),
            6 => e.check(mp_cond_notify_all(c), &OWNED),
            _ => {
                let mut buf = [0 as c_char; 256];
                let (b, cap, null) = handle_buf(input, &mut buf);
                let s = mp_cond_handle(c, b, cap);
                e.early(null, MP_ERR_NULL)
                    .check(s, &[MP_OK, MP_ERR_TOO_LARGE]);
                w.keep_handle(s, b);
            }
        }
    }
}
