//! The first families of the C API under the `c_api` body (see
//! `c_api.rs`): queues, locks, semaphores, events, barriers, arrays,
//! segments and pipes. Statuses are checked for every operation but the
//! array and segment accessors (which must only not crash); constructors
//! and handles must return a status.

use std::ffi::{c_char, c_int, c_void};

use multiproc::ffi::*;

use super::Input;
use super::c_api::{Arg, Expect, Kind, Use, World, free_call};

/// Writes the handle text of `p` (any type) and keeps it when the call
/// succeeds.
///
/// # Safety
///
/// `p` is one of the pointer kinds of the module doc of `c_api.rs`.
unsafe fn save_handle(w: &mut World, input: &mut Input, kind: Kind, p: *mut c_void) {
    let cap = [0usize, 1, 8, 40, 200][input.choose(5)];
    let mut buf = vec![0 as c_char; cap.max(1)];
    let out = if input.choose(8) == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr()
    };
    // SAFETY: `out` is NULL or `cap` writable bytes; `p` is one of the
    // pointer kinds the module doc lists.
    let status = unsafe {
        match kind {
            Kind::Queue => mp_queue_handle(p.cast(), out, cap),
            Kind::Lock => mp_lock_handle(p.cast(), out, cap),
            Kind::Sem => mp_sem_handle(p.cast(), out, cap),
            Kind::Event => mp_event_handle(p.cast(), out, cap),
            Kind::Barrier => mp_barrier_handle(p.cast(), out, cap),
            Kind::Array => mp_array_handle(p.cast(), out, cap),
            Kind::Segment => mp_segment_handle(p.cast(), out, cap),
            _ => return,
        }
    };
    w.keep_handle(status, out);
}

/// One call on `kind` (one of the families of this file).
///
/// # Safety
///
/// As [`run`] says.
pub(super) unsafe fn call(w: &mut World, input: &mut Input, kind: Kind) {
    let op = input.choose(8);
    let mut out: *mut c_void = std::ptr::null_mut();
    let outp = std::ptr::from_mut(&mut out);
    let null_out = input.choose(16) == 0;
    // SAFETY: for every call below, as the function's doc says.
    unsafe {
        match op {
            // Construct (or open from a handle text).
            0 | 1 => {
                let text = w.text(input);
                let t = if input.choose(16) == 0 {
                    std::ptr::null()
                } else {
                    text.as_ptr().cast::<c_char>()
                };
                let open = op == 1;
                let status = match kind {
                    Kind::Queue if open => mp_queue_open(t, outp.cast()),
                    Kind::Queue => mp_queue_new(
                        usize::from(input.u8() % 9),
                        usize::from(input.u16() % 300),
                        input.u32() % 8,
                        if null_out {
                            std::ptr::null_mut()
                        } else {
                            outp.cast()
                        },
                    ),
                    Kind::Lock if open => mp_lock_open(t, outp.cast()),
                    Kind::Lock => mp_lock_new(if null_out {
                        std::ptr::null_mut()
                    } else {
                        outp.cast()
                    }),
                    Kind::Sem if open => mp_sem_open(t, outp.cast()),
                    Kind::Sem => mp_sem_new(input.u32() % 5, input.u32(), outp.cast()),
                    Kind::Event if open => mp_event_open(t, outp.cast()),
                    Kind::Event => mp_event_new(outp.cast()),
                    Kind::Barrier if open => mp_barrier_open(t, outp.cast()),
                    Kind::Barrier => mp_barrier_new(input.u32() % 4, outp.cast()),
                    Kind::Array if open => mp_array_open(t, outp.cast()),
                    Kind::Array => mp_array_new(
                        input.u8() as c_char,
                        usize::from(input.u16() % 2048),
                        c_int::from(input.u8()) - 1,
                        outp.cast(),
                    ),
                    Kind::Segment if open => mp_segment_open(t, outp.cast()),
                    Kind::Segment => mp_segment_new(
                        (input.u32() % (1 << 20)) as usize,
                        c_int::from(input.u8() % 5) - 1,
                        outp.cast(),
                    ),
                    _ => {
                        let mut b: *mut c_void = std::ptr::null_mut();
                        let s = mp_pipe(
                            c_int::from(input.u8() % 3),
                            outp.cast(),
                            std::ptr::from_mut(&mut b).cast(),
                        );
                        if s == MP_OK {
                            w.live.push((Kind::Conn, b));
                        }
                        s
                    }
                };
                w.remember(kind, status, out);
                if kind == Kind::Array && status == MP_OK {
                    // Its lock (if any) is a live lock the array owns.
                    let lock = mp_array_lock(out.cast());
                    if !lock.is_null() {
                        w.inner.push((Kind::Lock, lock.cast(), out));
                    }
                }
            }
            2 => {
                let (p, _) = w.ptr(input, kind, Use::Any);
                save_handle(w, input, kind, p);
            }
            // Free: the right type frees, any other pointer is refused.
            3 => free_call(w, input, kind),
            // Operations.
            _ => operate(w, input, kind),
        }
    }
}

/// One operation (not a constructor or free) on `kind`.
///
/// # Safety
///
/// As [`run`] says.
unsafe fn operate(w: &mut World, input: &mut Input, kind: Kind) {
    let (p, arg) = w.ptr(input, kind, Use::Any);
    let t = World::timeout(input);
    // At most 512 bytes: 64 sends of that fit any pipe buffer, so a send
    // (which has no timeout) never blocks.
    let n = usize::from(input.u16()) % 513;
    let data = if input.choose(16) == 0 {
        std::ptr::null_mut()
    } else {
        w.bytes.as_mut_ptr()
    };
    let mut len = 0usize;
    let lenp = if input.choose(16) == 0 {
        std::ptr::null_mut()
    } else {
        std::ptr::from_mut(&mut len)
    };
    let mut v32 = 0u32;
    let v32p = if input.choose(16) == 0 {
        std::ptr::null_mut()
    } else {
        std::ptr::from_mut(&mut v32)
    };
    let op = input.choose(6);
    // SAFETY: for every call below, `data` is NULL or `w.bytes.len() >= n`
    // bytes; the other out-pointers are NULL or ours; `p` as in `run`.
    unsafe {
        let status = match kind {
            Kind::Queue => {
                let e = Expect::new("mp_queue_*").arg(arg);
                match op {
                    0 => {
                        let s = mp_queue_put(p.cast(), data.cast(), n, t);
                        e.early(data.is_null() && n > 0, MP_ERR_NULL)
                            .timeout(t)
                            .check(
                                s,
                                &[
                                    MP_OK,
                                    MP_ERR_FULL,
                                    MP_ERR_TOO_LARGE,
                                    MP_ERR_CLOSED,
                                    MP_ERR_STATE,
                                ],
                            );
                        s
                    }
                    1 => {
                        let s = mp_queue_get(p.cast(), data.cast(), n, lenp, t);
                        e.early(lenp.is_null() || (data.is_null() && n > 0), MP_ERR_NULL)
                            .timeout(t)
                            .check(
                                s,
                                &[
                                    MP_OK,
                                    MP_ERR_EMPTY,
                                    MP_ERR_CLOSED,
                                    MP_ERR_TOO_LARGE,
                                    MP_ERR_STATE,
                                ],
                            );
                        s
                    }
                    2 => {
                        let s = mp_queue_close(p.cast());
                        e.check(s, &[MP_OK]);
                        s
                    }
                    3 => {
                        let s = mp_queue_task_done(p.cast());
                        e.check(s, &[MP_OK, MP_ERR_VALUE, MP_ERR_STATE]);
                        s
                    }
                    4 => {
                        let s = mp_queue_join(p.cast(), t);
                        e.timeout(t)
                            .check(s, &[MP_OK, MP_ERR_TIMEOUT, MP_ERR_STATE]);
                        s
                    }
                    _ => {
                        let sizes = (mp_queue_qsize(p.cast()), mp_queue_max_msg_size(p.cast()));
                        if arg != Arg::Live {
                            assert_eq!(sizes, (0, 0), "sizes of a bad queue pointer");
                        }
                        MP_OK
                    }
                }
            }
            Kind::Lock => {
                let e = Expect::new("mp_lock_*").arg(arg);
                let status = match op {
                    0 | 1 => {
                        let s = mp_lock_acquire(p.cast(), t);
                        Expect::new("mp_lock_acquire")
                            .arg(arg)
                            .timeout(t)
                            .check(s, &[MP_OK, MP_ERR_TIMEOUT, MP_ERR_OWNER_DIED]);
                        s
                    }
                    2 | 3 => mp_lock_release(p.cast()),
                    4 => mp_lock_make_consistent(p.cast()),
                    _ => mp_lock_is_locked(p.cast()).min(0),
                };
                if op >= 2 {
                    e.check(status, &[MP_OK, MP_ERR_NOT_OWNER]);
                }
                status
            }
            Kind::Sem => {
                let e = Expect::new("mp_sem_*").arg(arg);
                match op {
                    0 | 1 => {
                        let s = mp_sem_acquire(p.cast(), t);
                        e.timeout(t).check(s, &[MP_OK, MP_ERR_TIMEOUT]);
                        s
                    }
                    2 | 3 => {
                        let s = mp_sem_release(p.cast());
                        e.check(s, &[MP_OK, MP_ERR_VALUE]);
                        s
                    }
                    _ => {
                        let s = mp_sem_value(p.cast(), v32p);
                        e.early(v32p.is_null(), MP_ERR_NULL).check(s, &[MP_OK]);
                        s
                    }
                }
            }
            Kind::Event => {
                let waits = matches!(op, 2 | 3);
                let e = Expect::new("mp_event_*").arg(arg);
                let e = if waits { e.timeout(t) } else { e };
                let s = match op {
                    0 => mp_event_set(p.cast()),
                    1 => mp_event_clear(p.cast()),
                    2 | 3 => mp_event_wait(p.cast(), t),
                    _ => {
                        let s = mp_event_is_set(p.cast());
                        assert!(arg != Arg::Live || s == 0 || s == 1, "mp_event_is_set: {s}");
                        s.min(0)
                    }
                };
                let documented: &[i32] = if waits {
                    &[MP_OK, MP_ERR_TIMEOUT]
                } else {
                    &[MP_OK]
                };
                e.check(s, documented);
                s
            }
            Kind::Barrier => {
                let e = Expect::new("mp_barrier_*").arg(arg);
                match op {
                    0 | 1 => {
                        // `index` may be NULL.
                        let s = mp_barrier_wait(p.cast(), t, v32p);
                        e.timeout(t)
                            .check(s, &[MP_OK, MP_ERR_BROKEN, MP_ERR_TIMEOUT]);
                        s
                    }
                    2 | 3 => {
                        let s = if op == 2 {
                            mp_barrier_abort(p.cast())
                        } else {
                            mp_barrier_reset(p.cast())
                        };
                        e.check(s, &[MP_OK]);
                        s
                    }
                    4 => {
                        let s = mp_barrier_n_waiting(p.cast(), v32p);
                        e.early(v32p.is_null(), MP_ERR_NULL).check(s, &[MP_OK]);
                        s
                    }
                    _ => {
                        let s = mp_barrier_parties(p.cast(), v32p);
                        let broken = mp_barrier_broken(p.cast());
                        assert!(
                            arg != Arg::Live || broken == 0 || broken == 1,
                            "broken: {broken}"
                        );
                        e.early(v32p.is_null(), MP_ERR_NULL).check(s, &[MP_OK]);
                        s
                    }
                }
            }
            Kind::Array => {
                let data = mp_array_data(p.cast());
                let alen = mp_array_len(p.cast());
                let _ = mp_array_typecode(p.cast());
                let _ = mp_array_lock(p.cast());
                if !data.is_null() && alen > 0 {
                    // The data pointer of a live array is its memory:
                    // touching its first byte must be fine.
                    std::ptr::write_volatile(data.cast::<u8>(), 1);
                }
                MP_OK
            }
            Kind::Segment => {
                let data = mp_segment_data(p.cast());
                let slen = mp_segment_len(p.cast());
                if !data.is_null() && slen > 0 {
                    std::ptr::write_volatile(data.cast::<u8>().add(slen - 1), 1);
                }
                let mut removed = 0usize;
                if op == 0 {
                    // Only this process's dead names could go; harmless.
                    mp_segment_sweep(std::ptr::from_mut(&mut removed))
                } else {
                    MP_OK
                }
            }
            _ => {
                // The peer may be gone (EOF, or OS for a reset), the end
                // receive- or send-only (STATE).
                let lost = [MP_ERR_EOF, MP_ERR_OS, MP_ERR_STATE];
                let e = Expect::new("mp_conn_*").arg(arg);
                match op {
                    0 | 1 => {
                        let s = mp_conn_send_bytes(p.cast(), data.cast(), n);
                        e.early(data.is_null() && n > 0, MP_ERR_NULL)
                            .check(s, &[&[MP_OK][..], &lost].concat());
                        s
                    }
                    2 | 3 => {
                        let s = mp_conn_recv_bytes(p.cast(), data.cast(), n, lenp, t);
                        e.early(lenp.is_null() || (data.is_null() && n > 0), MP_ERR_NULL)
                            .timeout(t)
                            .check(
                                s,
                                &[
                                    &[MP_OK, MP_ERR_TOO_LARGE, MP_ERR_TIMEOUT, MP_ERR_INVALID][..],
                                    &lost,
                                ]
                                .concat(),
                            );
                        s
                    }
                    4 => {
                        let s = mp_conn_poll(p.cast(), t);
                        let e = e.timeout(t);
                        if s < 0 {
                            e.check(s, &lost);
                        } else {
                            e.check(MP_OK, &[MP_OK]);
                            assert!(s <= 1, "mp_conn_poll: {s}");
                        }
                        s
                    }
                    _ => {
                        let conns = [p.cast::<mp_conn_t>(), std::ptr::null_mut()];
                        let mut ready = [0u8; 2];
                        let _ = mp_conn_fileno(p.cast());
                        let count = input.choose(3);
                        let s = mp_wait(conns.as_ptr(), count, t, ready.as_mut_ptr());
                        let e = Expect::new("mp_wait")
                            .early(count == 0, MP_ERR_INVALID)
                            .arg(if count == 0 { Arg::Live } else { arg })
                            .early(count == 2, MP_ERR_NULL)
                            .timeout(t);
                        if s < 0 {
                            e.check(s, &lost);
                        } else {
                            e.check(MP_OK, &[MP_OK]);
                            assert!(s as usize <= count, "mp_wait: {s} of {count}");
                        }
                        s
                    }
                }
            }
        };
        assert!(
            status <= 0 || kind == Kind::Conn,
            "{kind:?}: status {status}"
        );
    }
}
