//! The tracker: a small child process that unlinks this process's named
//! segments when this process dies without doing it (SIGKILL, `_exit`).
//!
//! Started with the first named segment a process creates (Python's
//! `resource_tracker` plays the same part). It holds one end of a
//! `SOCK_SEQPACKET` socket pair; this process sends `R<name>` when it
//! creates a name and `U<name>` when it unlinks one. When every holder of
//! the other end is gone (this process and the fork children that inherited
//! it), `recv` returns end-of-file, and the tracker unlinks every name still
//! registered and exits; init reaps it.
//!
//! After `fork` the tracker only makes async-signal-safe calls and never
//! allocates (its table is allocated before the fork), so starting it from a
//! multi-threaded process is safe. It closes every other descriptor it
//! inherited, so it never keeps a pipe of ours open, and it ignores SIGINT,
//! SIGTERM and SIGHUP so that a Ctrl-C to the process group leaves it to
//! clean up. If it is itself SIGKILLed, [`super::sweep_orphans`] remains.

use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use crate::sys;

/// Bytes of one table slot: `/dev/shm` + the name + NUL.
const SLOT: usize = 128;
/// Names the tracker can hold at once; more are left to the sweep.
const SLOTS: usize = 2048;
const SHM_DIR: &[u8] = b"/dev/shm";

#[derive(Debug)]
struct Tracker {
    sock: OwnedFd,
    pid: i32,
    /// The process that started it; a fork child starts its own.
    started_by: i32,
    /// Names registered and not yet unlinked, to re-register with a new
    /// tracker if this one died.
    names: HashSet<String>,
}

static STATE: Mutex<Option<Tracker>> = Mutex::new(None);

/// The pid of this process's tracker, if it has started one.
pub fn tracker_pid() -> Option<i32> {
    let state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    state
        .as_ref()
        .filter(|t| t.started_by == sys::getpid())
        .map(|t| t.pid)
}

/// Asks the tracker to unlink `name` if this process dies first.
/// Failure to start a tracker is not fatal: the sweep still covers the name.
pub(crate) fn register(name: &str) {
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if state.as_ref().is_none_or(|t| t.started_by != sys::getpid()) {
        // A fork child drops its copy of the parent's socket and starts its own.
        *state = start(HashSet::new());
    }
    let Some(tracker) = state.as_mut() else {
        return;
    };
    tracker.names.insert(name.to_owned());
    if send(tracker, b'R', name).is_err() {
        // The tracker died: reap it, start another with every name we hold.
        let _ = sys::waitpid(tracker.pid, true);
        let names = std::mem::take(&mut tracker.names);
        *state = start(names);
    }
}

/// Tells the tracker that `name` was unlinked by its owner.
pub(crate) fn unregister(name: &str) {
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(tracker) = state.as_mut().filter(|t| t.started_by == sys::getpid())
        && tracker.names.remove(name)
    {
        let _ = send(tracker, b'U', name);
    }
}

fn send(tracker: &Tracker, op: u8, name: &str) -> std::io::Result<()> {
    let mut msg = Vec::with_capacity(name.len() + 1);
    msg.push(op);
    msg.extend_from_slice(name.as_bytes());
    sys::send_nosignal(tracker.sock.as_fd(), &msg).map(drop)
}

/// Forks a tracker that already knows `names`.
fn start(names: HashSet<String>) -> Option<Tracker> {
    let (ours, theirs) = sys::socketpair_seqpacket().ok()?;
    let mut table = vec![[0u8; SLOT]; SLOTS];
    for (slot, name) in table.iter_mut().zip(&names) {
        fill_slot(slot, name.as_bytes());
    }
    // SAFETY: the child runs `serve`, which only makes async-signal-safe
    // calls on memory allocated before the fork, and ends with _exit.
    match unsafe { sys::fork() }.ok()? {
        sys::Forked::Child => serve(theirs.as_raw_fd(), &mut table),
        sys::Forked::Parent(pid) => {
            drop(theirs);
            Some(Tracker {
                sock: ours,
                pid,
                started_by: sys::getpid(),
                names,
            })
        }
    }
}

/// Writes `/dev/shm<name>\0` into `slot`; names too long are skipped.
fn fill_slot(slot: &mut [u8; SLOT], name: &[u8]) -> bool {
    let len = SHM_DIR.len() + name.len();
    if name.first() != Some(&b'/') || len >= SLOT || name.contains(&0) {
        return false;
    }
    slot[..SHM_DIR.len()].copy_from_slice(SHM_DIR);
    slot[SHM_DIR.len()..len].copy_from_slice(name);
    slot[len] = 0;
    true
}

/// The tracker's whole life, in the forked child.
fn serve(sock: i32, table: &mut [[u8; SLOT]]) -> ! {
    // SAFETY: we are a fresh fork child that owns nothing but `sock`.
    unsafe { sys::close_range_except(sock) };
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        let _ = sys::ignore_signal(sig);
    }
    // SAFETY: `sock` stays open for the life of this process (we never
    // close it), so borrowing it for that long is sound.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(sock) };
    let mut buf = [0u8; SLOT];
    loop {
        let n = sys::recv(sock, &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        let (op, name) = (buf[0], &buf[1..n]);
        match op {
            b'R' => {
                if let Some(free) = table.iter_mut().find(|s| s[0] == 0) {
                    fill_slot(free, name);
                }
            }
            b'U' => {
                let mut wanted = [0u8; SLOT];
                if fill_slot(&mut wanted, name)
                    && let Some(slot) = table.iter_mut().find(|s| **s == wanted)
                {
                    slot[0] = 0;
                }
            }
            _ => {}
        }
    }
    for slot in table.iter().filter(|s| s[0] != 0) {
        if let Ok(path) = CStr::from_bytes_until_nul(slot) {
            let _ = sys::unlink_path(path);
        }
    }
    sys::exit_immediately(0)
}
