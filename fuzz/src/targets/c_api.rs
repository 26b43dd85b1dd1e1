//! The C entry points with arbitrary arguments: a little program of calls
//! decoded from the fuzz bytes, over a table of live objects.
//!
//! Pointer arguments are NULL, a live object of the right type, a live
//! object of another type, zeroed or fuzz-filled memory of the target's
//! that is no object at all, the address inside a live object, or a
//! pointer this run freed; a freed object is also freed a second time
//! right away. Sizes, counts, flags, typecodes, backings, methods, names,
//! handle texts and timeouts are arbitrary, except that no call may wait
//! forever (`MP_WAIT_FOREVER` is never passed to a call that could block)
//! and no buffer is claimed larger than it is unless the library can never
//! write past its real size.
//!
//! Each family's calls are in their own file (`c_api_core.rs`: queues,
//! locks, semaphores, events, barriers, arrays, segments, pipes;
//! `c_api_sync.rs`: re-entrant locks and conditions; `c_api_net.rs`:
//! listeners and clients; `c_api_manager.rs`: manager, dict, list;
//! `c_api_pool.rs`: pool and results; `c_api_process.rs`: processes and
//! the process-wide calls). Every call must return a status (or value),
//! never crash, hang or leak, and its status is checked (all but the array
//! and segment accessors): a bad argument gets its documented code (never
//! `MP_OK`), a call with good arguments one of the codes its doc names
//! ([`Expect`]).
//!
//! A manager and a pool are servers in child processes: [`start_shared`]
//! starts one of each once per process, before any input (the fuzz target's
//! init, the replay's start), and [`stop_shared`] stops and reaps them (the
//! replay's end; `atexit` under libFuzzer). The fuzz body uses them, never
//! frees, closes or shuts them down, and starts no process of its own.

use std::ffi::{CStr, c_int, c_void};

use multiproc::ffi::process::*;
use multiproc::ffi::*;

use super::Input;
use super::{c_api_core, c_api_manager, c_api_net, c_api_pool, c_api_process, c_api_sync};

pub(super) use super::c_api_expect::Expect;
pub use super::c_api_shared::{start_shared, stop_shared};
// The libFuzzer target registers it; the replay stops explicitly.
#[allow(unused_imports)]
pub use super::c_api_shared::stop_shared_at_exit;

/// The type of a C object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Queue,
    Lock,
    Sem,
    Event,
    Barrier,
    Array,
    Segment,
    Conn,
    RLock,
    Cond,
    Listener,
    Manager,
    Dict,
    List,
    Pool,
    Results,
    Process,
}

const KINDS: [Kind; 17] = [
    Kind::Queue,
    Kind::Lock,
    Kind::Sem,
    Kind::Event,
    Kind::Barrier,
    Kind::Array,
    Kind::Segment,
    Kind::Conn,
    Kind::RLock,
    Kind::Cond,
    Kind::Listener,
    Kind::Manager,
    Kind::Dict,
    Kind::List,
    Kind::Pool,
    Kind::Results,
    Kind::Process,
];

/// What a pointer argument is, as far as the library can know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arg {
    /// NULL: `MP_ERR_NULL`.
    Null,
    /// A live object of the expected type.
    Live,
    /// Anything else (another type, freed, foreign, garbage, interior):
    /// `MP_ERR_INVALID`.
    Wrong,
}

/// Which pointers a call may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// Any pointer, the shared manager and pool included.
    Any,
    /// For a free: never a shared object.
    Free,
    /// Never a live object of the expected type (for calls that would stop
    /// a shared server, or start a process).
    BadOnly,
}

/// Zeroed memory posing as an object of any type (its tag matches none).
#[repr(align(16))]
pub(super) struct Foreign {
    pub(super) bytes: [u8; 512],
}

/// The state of one run.
pub(super) struct World {
    /// Objects this run made and has not freed.
    pub(super) live: Vec<(Kind, *mut c_void)>,
    /// Objects owned by another live object (an array's lock): its owner.
    pub(super) inner: Vec<(Kind, *mut c_void, *mut c_void)>,
    /// The process-wide manager and pool (see [`start_shared`]).
    pub(super) shared: Vec<(Kind, *mut c_void)>,
    /// Pointers this run freed.
    pub(super) freed: Vec<*mut c_void>,
    pub(super) zeros: Box<Foreign>,
    /// 64 bytes of fuzz input posing as an object.
    pub(super) garbage: Box<Foreign>,
    /// A handle text taken from a live object, for the `*_open` calls.
    pub(super) handle: Vec<u8>,
    /// Bytes to send or store; queue and connection receives write here
    /// too.
    pub(super) bytes: Vec<u8>,
    /// A receive buffer larger than anything the library can hand back
    /// here (values, results, names), so a "huge" `cap` stays safe.
    pub(super) out: Vec<u8>,
    /// Client connections made to this run's listeners (each may sit in a
    /// listen backlog, where one too many would block `connect`).
    pub(super) connects: usize,
    /// Dict ids seen, for `mp_manager_attach_dict`.
    pub(super) ids: Vec<u64>,
    /// Whether this run holds a connection to the shared manager's socket
    /// made by `mp_client_connect*`: one that has not answered the
    /// server's challenge holds the server's accept loop (which runs one
    /// handshake at a time, as CPython's does) for 5 s, so no
    /// `mp_manager_connect` then.
    pub(super) raw_to_manager: bool,
    /// The shared manager's address and key, the socket directory.
    pub(super) view: super::c_api_shared::View,
}

/// The largest value, input or message the fuzz body stores or sends
/// (over the pool's 64 KiB message limit on purpose).
pub(super) const BIG: usize = 70 * 1024;

impl World {
    fn new(input: &mut Input) -> World {
        let mut garbage = Box::new(Foreign { bytes: [0; 512] });
        let fill = input.bytes(64);
        garbage.bytes[..fill.len()].copy_from_slice(fill);
        let view = super::c_api_shared::view();
        World {
            live: Vec::new(),
            inner: Vec::new(),
            shared: super::c_api_shared::pointers(&view.objects),
            freed: Vec::new(),
            zeros: Box::new(Foreign { bytes: [0; 512] }),
            garbage,
            handle: Vec::new(),
            bytes: vec![0x5a; BIG],
            out: vec![0; BIG + 4096],
            connects: 0,
            ids: Vec::new(),
            raw_to_manager: false,
            view,
        }
    }

    /// Every object the library knows as live, with its type.
    fn known(&self) -> impl Iterator<Item = (Kind, *mut c_void)> + '_ {
        self.live
            .iter()
            .copied()
            .chain(self.shared.iter().copied())
            .chain(self.inner.iter().map(|(k, p, _)| (*k, *p)))
    }

    /// What `p` is as an argument of type `kind`.
    pub(super) fn classify(&self, p: *mut c_void, kind: Kind) -> Arg {
        if p.is_null() {
            return Arg::Null;
        }
        match self.known().find(|(_, q)| *q == p) {
            Some((k, _)) if k == kind => Arg::Live,
            _ => Arg::Wrong,
        }
    }

    /// A pointer argument for a `kind` parameter, and what it is.
    pub(super) fn ptr(&mut self, input: &mut Input, kind: Kind, usage: Use) -> (*mut c_void, Arg) {
        let i = usize::from(input.u8());
        let pick = |v: Vec<*mut c_void>| {
            if v.is_empty() {
                std::ptr::null_mut()
            } else {
                v[i % v.len()]
            }
        };
        let p = match input.choose(12) {
            0 => std::ptr::null_mut(),
            1 => pick(
                self.known()
                    .filter(|(k, _)| *k != kind)
                    .map(|(_, p)| p)
                    .collect(),
            ),
            2 => std::ptr::from_mut(&mut *self.zeros).cast(),
            3 => std::ptr::from_mut(&mut *self.garbage).cast(),
            4 => pick(self.freed.clone()),
            5 => {
                // Inside a live object: never its address.
                let p = pick(self.known().map(|(_, p)| p).collect());
                if p.is_null() {
                    p
                } else {
                    p.cast::<u8>().wrapping_add(8).cast()
                }
            }
            _ if usage == Use::BadOnly => std::ptr::null_mut(),
            _ => {
                let owned = self
                    .live
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, p)| *p);
                let inner = self
                    .inner
                    .iter()
                    .filter(|(k, ..)| *k == kind)
                    .map(|(_, p, _)| *p);
                let shared = self
                    .shared
                    .iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, p)| *p);
                let candidates: Vec<_> = if usage == Use::Free {
                    owned.chain(inner).collect()
                } else {
                    owned.chain(inner).chain(shared).collect()
                };
                pick(candidates)
            }
        };
        let arg = self.classify(p, kind);
        if usage != Use::Any && arg == Arg::Live && self.shared.iter().any(|(_, q)| *q == p) {
            // Never a shared object for a destructive call (no choice above
            // gives one; this keeps it so).
            return (std::ptr::null_mut(), Arg::Null);
        }
        if usage == Use::BadOnly && arg == Arg::Live {
            return (std::ptr::null_mut(), Arg::Null);
        }
        (p, arg)
    }

    /// A timeout in ns: never MP_WAIT_FOREVER (-1), at most 50 µs, or
    /// an invalid negative one (then also whether it is invalid).
    pub(super) fn timeout(input: &mut Input) -> i64 {
        [0, 1, 1_000, 50_000, -2, i64::MIN][input.choose(6)]
    }

    /// A C string: the saved handle, a mutated handle, or fuzz bytes.
    pub(super) fn text(&mut self, input: &mut Input) -> Vec<u8> {
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

    /// Records the object a constructor made (`kind`, in `p`) if `status`
    /// is `MP_OK`.
    pub(super) fn remember(&mut self, kind: Kind, status: c_int, p: *mut c_void) {
        if status == MP_OK {
            assert!(!p.is_null(), "{kind:?}: MP_OK with a NULL object");
            self.live.push((kind, p));
            self.freed.retain(|q| *q != p);
        } else {
            assert!(status < 0, "a {kind:?} constructor returned {status}");
        }
    }

    /// Saves a handle text written into `buf` by a successful call.
    pub(super) fn keep_handle(&mut self, status: c_int, buf: *const std::ffi::c_char) {
        if status == MP_OK && !buf.is_null() {
            // SAFETY: on success the buffer holds a NUL-terminated string.
            self.handle = unsafe { CStr::from_ptr(buf) }.to_bytes().to_vec();
        }
    }

    /// After `p` (of `kind`) was passed to its free function: forgets it if
    /// it was ours, and frees it a second time (refused unread: its address
    /// left the library's live set).
    ///
    /// # Safety
    ///
    /// `p` is one of the pointer kinds of the module doc.
    pub(super) unsafe fn freed(&mut self, kind: Kind, p: *mut c_void) {
        let owned = self.live.iter().position(|(k, q)| *k == kind && *q == p);
        let inner = self
            .inner
            .iter()
            .position(|(k, q, _)| *k == kind && *q == p);
        if let Some(i) = owned {
            self.live.swap_remove(i);
            // What it owned is gone with it.
            self.inner.retain(|(_, _, owner)| *owner != p);
        } else if let Some(i) = inner {
            self.inner.swap_remove(i);
        } else {
            return;
        }
        self.freed.push(p);
        // SAFETY: forwarded; a second free is refused by the live set.
        unsafe { free(kind, p) };
    }
}

/// The body: a sequence of calls (at most 64).
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let mut w = World::new(&mut input);
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let kind = KINDS[input.choose(KINDS.len())];
        // SAFETY: every pointer passed is NULL, memory of ours, or a
        // pointer the live set refuses unread; buffers are ours with at
        // least the sizes given (see the module doc).
        unsafe {
            match kind {
                Kind::Queue
                | Kind::Lock
                | Kind::Sem
                | Kind::Event
                | Kind::Barrier
                | Kind::Array
                | Kind::Segment
                | Kind::Conn => c_api_core::call(&mut w, &mut input, kind),
                Kind::RLock | Kind::Cond => c_api_sync::call(&mut w, &mut input, kind),
                Kind::Listener => c_api_net::call(&mut w, &mut input),
                Kind::Manager | Kind::Dict | Kind::List => {
                    c_api_manager::call(&mut w, &mut input, kind)
                }
                Kind::Pool | Kind::Results => c_api_pool::call(&mut w, &mut input, kind),
                Kind::Process => c_api_process::call(&mut w, &mut input),
            }
        }
        last_error_is_a_string(&mut input);
    }
    // Owners first: an array frees its lock itself.
    for (kind, p) in std::mem::take(&mut w.live).into_iter().rev() {
        // SAFETY: a live object of this kind, freed once.
        unsafe { free(kind, p) };
    }
    c_api_net::after_run(&w);
}

/// Every status has a message; the last error is a valid C string.
fn last_error_is_a_string(input: &mut Input) {
    let code = c_int::from(input.u8() as i8);
    // SAFETY: both return static or thread-local NUL-terminated strings.
    unsafe {
        let msg = mp_strerror(code);
        assert!(!msg.is_null());
        let _ = CStr::from_ptr(msg);
        let last = mp_last_error();
        assert!(!last.is_null());
        let _ = CStr::from_ptr(last);
    }
}

/// Frees `p` as `kind`: refused (status) for a pointer that is not a live
/// object of that type.
///
/// # Safety
///
/// `p` is one of the pointer kinds of the module doc.
pub(super) unsafe fn free(kind: Kind, p: *mut c_void) {
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
            Kind::RLock => mp_rlock_free(p.cast()),
            Kind::Cond => mp_cond_free(p.cast()),
            Kind::Listener => mp_listener_free(p.cast()),
            Kind::Manager => mp_manager_free(p.cast()),
            Kind::Dict => mp_dict_free(p.cast()),
            Kind::List => mp_list_free(p.cast()),
            Kind::Pool => mp_pool_free(p.cast()),
            Kind::Results => mp_pool_results_free(p.cast()),
            Kind::Process => mp_process_free(p.cast()),
        }
    }
}

/// A free call on `kind` with a fuzz-chosen pointer (never a shared
/// object); a live one is then freed a second time.
///
/// # Safety
///
/// As [`run`] says.
pub(super) unsafe fn free_call(w: &mut World, input: &mut Input, kind: Kind) {
    let (p, _) = w.ptr(input, kind, Use::Free);
    // SAFETY: as the module doc says.
    unsafe {
        free(kind, p);
        w.freed(kind, p);
    }
}
