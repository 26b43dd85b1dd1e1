//! The C entry points with arbitrary arguments: a little program of calls
//! decoded from the fuzz bytes, over a table of live objects. Pointer
//! arguments are NULL, a live object of the right type, a live object of
//! another type, or a pointer to zeroed memory that is no object at all;
//! a freed object is freed a second time right away (see [`use_freed`]).
//! Sizes, counts, flags,
//! typecodes, backings and timeouts are arbitrary, except that no call may
//! wait forever (`MP_WAIT_FOREVER` is never passed to a call that could
//! block). Every call must return a status (or value), never crash.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use multiproc::ffi::*;

use super::Input;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Queue,
    Lock,
    Sem,
    Event,
    Barrier,
    Array,
    Segment,
    Conn,
}

const KINDS: [Kind; 8] = [
    Kind::Queue,
    Kind::Lock,
    Kind::Sem,
    Kind::Event,
    Kind::Barrier,
    Kind::Array,
    Kind::Segment,
    Kind::Conn,
];

/// Whether calls may get a pointer to an object freed just before. Reading
/// a freed object's tag is what the tagged C objects rely on to report
/// MP_ERR_INVALID; AddressSanitizer rightly calls that read a
/// use-after-free, so the sanitizer run sets `MULTIPROC_FUZZ_NO_FREED`.
pub fn use_freed() -> bool {
    static FLAG: OnceLock<bool> = OnceLock::new();
    *FLAG.get_or_init(|| std::env::var_os("MULTIPROC_FUZZ_NO_FREED").is_none())
}

/// Zeroed memory posing as an object of any type (its tag matches none).
#[repr(align(16))]
struct Foreign {
    _zeros: [u8; 512],
}

struct World {
    live: Vec<(Kind, *mut c_void)>,
    foreign: Box<Foreign>,
    /// A handle text taken from a live object, for the `*_open` calls.
    handle: Vec<u8>,
    bytes: Vec<u8>,
}

impl World {
    /// A pointer argument for a `kind` parameter.
    fn ptr(&mut self, input: &mut Input, kind: Kind) -> *mut c_void {
        let of = |k: Option<Kind>, w: &World, i: usize| {
            let matching: Vec<*mut c_void> = w
                .live
                .iter()
                .filter(|(lk, _)| k.is_none_or(|k| *lk == k) && (k.is_some() || *lk != kind))
                .map(|(_, p)| *p)
                .collect();
            if matching.is_empty() {
                std::ptr::null_mut()
            } else {
                matching[i % matching.len()]
            }
        };
        let i = usize::from(input.u8());
        match input.choose(8) {
            0 => std::ptr::null_mut(),
            1 => of(None, self, i), // another type
            2 => std::ptr::from_mut(&mut *self.foreign).cast(),
            _ => of(Some(kind), self, i),
        }
    }

    /// A timeout in ns: never MP_WAIT_FOREVER (-1), at most 50 µs, or
    /// an invalid negative one.
    fn timeout(input: &mut Input) -> i64 {
        [0, 1, 1_000, 50_000, -2, i64::MIN][input.choose(6)]
    }

    /// A C string: the saved handle, a mutated handle, or fuzz bytes.
    fn text(&mut self, input: &mut Input) -> Vec<u8> {
        let mut t = match input.choose(3) {
            0 => self.handle.clone(),
            1 => {
                let mut h = self.handle.clone();
                if !h.is_empty() {
                    let at = usize::from(input.u8()) % h.len();
                    h[at] = input.u8();
                }
                h
            }
            _ => {
                let n = input.choose(80);
                input.bytes(n).to_vec()
            }
        };
        t.retain(|b| *b != 0);
        t.push(0);
        t
    }

    fn remember(&mut self, kind: Kind, status: c_int, p: *mut c_void) {
        if status == MP_OK {
            assert!(!p.is_null(), "MP_OK with a NULL object");
            self.live.push((kind, p));
        } else {
            assert!(status < 0, "a constructor returned {status}");
        }
    }

    /// Saves the handle text of `p` (any type) when the call succeeds.
    fn save_handle(&mut self, input: &mut Input, kind: Kind, p: *mut c_void) {
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
                Kind::Conn => return,
            }
        };
        if status == MP_OK && !out.is_null() {
            // SAFETY: on success the buffer holds a NUL-terminated string.
            let text = unsafe { CStr::from_ptr(out) };
            self.handle = text.to_bytes().to_vec();
        }
    }
}

/// Frees `p` as `kind`: refused (status) for a wrong-type pointer.
///
/// # Safety
///
/// `p` is one of the pointer kinds of the module doc.
unsafe fn free(kind: Kind, p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe {
        match kind {
            Kind::Queue => mp_queue_free(p.cast()),
            Kind::Lock => mp_lock_free(p.cast()),
            Kind::Sem => mp_sem_free(p.cast()),
            Kind::Event => mp_event_free(p.cast()),
            Kind::Barrier => mp_barrier_free(p.cast()),
            Kind::Array => mp_array_free(p.cast()),
            Kind::Segment => mp_segment_free(p.cast()),
            Kind::Conn => mp_conn_free(p.cast()),
        }
    }
}

/// The body: a sequence of calls (at most 64).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut w = World {
        live: Vec::new(),
        foreign: Box::new(Foreign { _zeros: [0; 512] }),
        handle: Vec::new(),
        bytes: vec![0x5a; 1024],
    };
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let kind = KINDS[input.choose(KINDS.len())];
        // SAFETY: every pointer passed is NULL, zeroed memory, or a live
        // object (of any type); buffers are ours with the sizes given.
        unsafe { call(&mut w, &mut input, kind) };
    }
    for (kind, p) in std::mem::take(&mut w.live) {
        // SAFETY: a live object of this kind, freed once.
        unsafe { free(kind, p) };
    }
}

/// One call on `kind`.
///
/// # Safety
///
/// As [`run`] says.
unsafe fn call(w: &mut World, input: &mut Input, kind: Kind) {
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
                    Kind::Conn => {
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
            }
            2 => {
                let p = w.ptr(input, kind);
                w.save_handle(input, kind, p);
            }
            // Free: the right type frees, any other pointer is refused.
            3 => {
                let p = w.ptr(input, kind);
                free(kind, p);
                let was_live = w.live.iter().position(|(k, q)| *k == kind && *q == p);
                if let Some(i) = was_live {
                    w.live.swap_remove(i);
                    if use_freed() {
                        // A second free of the same pointer right away:
                        // refused by its tag, not a double free.
                        free(kind, p);
                    }
                }
            }
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
    let p = w.ptr(input, kind);
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
            Kind::Queue => match op {
                0 => mp_queue_put(p.cast(), data.cast(), n, t),
                1 => mp_queue_get(p.cast(), data.cast(), n, lenp, t),
                2 => mp_queue_close(p.cast()),
                3 => mp_queue_task_done(p.cast()),
                4 => mp_queue_join(p.cast(), t),
                _ => {
                    let _ = (mp_queue_qsize(p.cast()), mp_queue_max_msg_size(p.cast()));
                    MP_OK
                }
            },
            Kind::Lock => match op {
                0 | 1 => mp_lock_acquire(p.cast(), t),
                2 | 3 => mp_lock_release(p.cast()),
                4 => mp_lock_make_consistent(p.cast()),
                _ => mp_lock_is_locked(p.cast()).min(0),
            },
            Kind::Sem => match op {
                0 | 1 => mp_sem_acquire(p.cast(), t),
                2 | 3 => mp_sem_release(p.cast()),
                _ => mp_sem_value(p.cast(), v32p),
            },
            Kind::Event => match op {
                0 => mp_event_set(p.cast()),
                1 => mp_event_clear(p.cast()),
                2 | 3 => mp_event_wait(p.cast(), t),
                _ => mp_event_is_set(p.cast()).min(0),
            },
            Kind::Barrier => match op {
                0 | 1 => mp_barrier_wait(p.cast(), t, v32p),
                2 => mp_barrier_abort(p.cast()),
                3 => mp_barrier_reset(p.cast()),
                4 => mp_barrier_n_waiting(p.cast(), v32p),
                _ => mp_barrier_parties(p.cast(), v32p).min(mp_barrier_broken(p.cast()).min(0)),
            },
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
            Kind::Conn => match op {
                0 | 1 => mp_conn_send_bytes(p.cast(), data.cast(), n),
                2 | 3 => mp_conn_recv_bytes(p.cast(), data.cast(), n, lenp, t),
                4 => mp_conn_poll(p.cast(), t),
                _ => {
                    let conns = [p.cast::<mp_conn_t>(), std::ptr::null_mut()];
                    let mut ready = [0u8; 2];
                    let _ = mp_conn_fileno(p.cast());
                    mp_wait(conns.as_ptr(), input.choose(3), t, ready.as_mut_ptr())
                }
            },
        };
        // Every status has a message; the last error is a valid C string.
        let msg = mp_strerror(if input.choose(4) == 0 {
            c_int::from(input.u8() as i8)
        } else {
            status
        });
        assert!(!msg.is_null());
        let _ = CStr::from_ptr(msg);
        let last = mp_last_error();
        if !last.is_null() {
            let _ = CStr::from_ptr(last);
        }
    }
}
