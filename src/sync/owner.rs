//! Who owns a lock, and whether that owner still lives.
//!
//! Lock, RLock and the condition's waiter slots record their owner as a
//! thread id (TID) in a lock word, plus a *stamp* in a side field. This
//! module is the one place that knows how to make an identity for the
//! calling thread and how to decide, from another process, that a recorded
//! owner is dead.
//!
//! # Identity
//!
//! A TID is unique machine-wide among live threads of one pid namespace
//! (every process sharing a lock must be in the same namespace). Linux caps
//! TIDs at `PID_MAX_LIMIT` = 2^22, so 30 bits hold any TID and leave the top
//! bits of a lock word for flags. The calling thread's TID comes from
//! [`sys::current_ids`](crate::sys::current_ids) (cached, no syscall, refreshed
//! in a fork child).
//!
//! # Stamp
//!
//! A TID is reused once its thread is gone, so a TID alone cannot tell a
//! dead owner from a new thread that happens to carry its number. The stamp
//! is `(start_time << 30) | tid`, where `start_time` is the thread's start
//! (field 22 of `/proc/TID/stat`, clock ticks since boot, kept to 34 bits:
//! 5 years at 100 Hz before it wraps). It is read once per thread and
//! cached. A stamp of `0` means "not recorded"; a stamp whose start field is
//! `0` (the start could not be read) proves nothing about reuse.
//!
//! # Liveness
//!
//! [`owner_is_dead`] says an owner is dead when `/proc/TID` is gone, when it
//! is a zombie (or dead), or when the recorded stamp names the same TID with
//! another start time than the thread now carrying that TID. Errors reading
//! `/proc` count as "alive": a wrong "dead" would hand the lock to a second
//! owner, a wrong "alive" only delays recovery until the next check.
//!
//! Under `cfg(loom)` there are no processes and no `/proc`: identities are
//! loom thread numbers (plus one, so none is 0) and every owner is alive.

/// Bits of a lock word or stamp that hold a TID.
pub(crate) const TID_MASK: u32 = (1 << 30) - 1;
/// Bits of the start time kept in a stamp.
const START_BITS: u32 = 34;
const START_MASK: u64 = (1 << START_BITS) - 1;

/// The calling thread's identity, as recorded in shared lock fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Me {
    /// The TID, in `1..=TID_MASK`.
    pub(crate) tid: u32,
    /// `(start_time << 30) | tid`; never 0.
    pub(crate) stamp: u64,
}

/// Makes a stamp from a TID and a start time (0 when unknown).
fn stamp_of(tid: u32, start_time: u64) -> u64 {
    ((start_time & START_MASK) << 30) | u64::from(tid & TID_MASK)
}

/// The TID a stamp names.
pub(crate) fn stamp_tid(stamp: u64) -> u32 {
    (stamp as u32) & TID_MASK
}

/// The start-time field of a stamp (0: unknown).
#[cfg_attr(loom, allow(dead_code))]
fn stamp_start(stamp: u64) -> u64 {
    stamp >> 30
}

/// The calling thread's identity. Cached per thread: no syscall after the
/// first call in a thread (or in a fork child).
#[cfg(not(loom))]
#[inline]
pub(crate) fn me() -> Me {
    use std::cell::Cell;
    thread_local! {
        static ME: Cell<Me> = const { Cell::new(Me { tid: 0, stamp: 0 }) };
    }
    let tid = crate::sys::current_ids().1 as u32;
    ME.with(|cached| {
        let m = cached.get();
        if m.tid == tid {
            return m;
        }
        let m = identify(tid);
        cached.set(m);
        m
    })
}

/// Reads the start time of thread `tid` (this thread) for its stamp.
#[cfg(not(loom))]
#[cold]
fn identify(tid: u32) -> Me {
    debug_assert!(tid != 0 && tid <= TID_MASK, "TID {tid} out of range");
    // Unknown start (no /proc): the stamp still names the TID.
    let start = match crate::sys::process_start_time(tid as i32) {
        Ok(Some((start, _))) => start,
        _ => 0,
    };
    Me {
        tid,
        stamp: stamp_of(tid, start),
    }
}

/// Under loom: the loom thread's number, plus one.
#[cfg(loom)]
pub(crate) fn me() -> Me {
    let text = format!("{:?}", loom::thread::current().id());
    let n: u32 = text
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .expect("loom ThreadId prints as ThreadId(N)");
    let tid = n + 1;
    Me {
        tid,
        stamp: stamp_of(tid, 0),
    }
}

/// Whether the owner recorded as `tid` (in a lock word) is dead, given the
/// `stamp` read from the side field between two reads of that word that
/// both showed `tid`. `me` is the caller, who is *not* the owner (it is
/// waiting, or checking a slot it does not own).
///
/// Reads `/proc/TID/stat`: call it on slow paths only.
#[cfg(not(loom))]
pub(crate) fn owner_is_dead(tid: u32, stamp: u64, me: Me) -> bool {
    if tid == me.tid {
        // The word names our TID, yet we are not the owner unless we wrote
        // our own stamp (self-deadlock on a plain Lock: alive, as in Python).
        // Anything else is a dead earlier thread that carried our number.
        return stamp != me.stamp;
    }
    match crate::sys::process_start_time(tid as i32) {
        Ok(None) => true,
        Ok(Some((_, true))) => true,
        Ok(Some((start, false))) => {
            stamp_tid(stamp) == tid
                && stamp_start(stamp) != 0
                && stamp_start(stamp) != start & START_MASK
        }
        // Cannot tell: assume alive (see the module doc).
        Err(_) => false,
    }
}

/// Under loom every owner lives (there is no `/proc`, and loom threads do
/// not die holding locks).
#[cfg(loom)]
pub(crate) fn owner_is_dead(tid: u32, stamp: u64, me: Me) -> bool {
    let _ = (tid, stamp, me);
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sys::{self, Forked};

    #[test]
    fn identity_is_cached_and_stamped() {
        let a = me();
        assert_eq!(a, me());
        assert_eq!(a.tid, sys::gettid() as u32);
        assert_eq!(stamp_tid(a.stamp), a.tid);
        assert_ne!(stamp_start(a.stamp), 0, "start time readable from /proc");
        let other = std::thread::spawn(me).join().unwrap();
        assert_ne!(other.tid, a.tid);
    }

    #[test]
    fn live_threads_are_alive_and_gone_ones_dead() {
        let m = me();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(me()).unwrap();
            let _ = done_rx.recv();
        });
        let other = rx.recv().unwrap();
        assert!(!owner_is_dead(other.tid, other.stamp, m));
        assert!(!owner_is_dead(other.tid, 0, m), "unknown stamp: alive");
        // Same TID, another start time: an earlier thread with this number.
        let reused = stamp_of(other.tid, stamp_start(other.stamp) + 1);
        assert!(owner_is_dead(other.tid, reused, m));
        done_tx.send(()).unwrap();
        t.join().unwrap();
        // join returns when the kernel cleared the thread's TID word, which
        // is shortly before the task leaves /proc: poll, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !owner_is_dead(other.tid, other.stamp, m) {
            assert!(
                std::time::Instant::now() < deadline,
                "exited thread still alive"
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn our_own_tid_is_alive_only_with_our_stamp() {
        let m = me();
        assert!(!owner_is_dead(m.tid, m.stamp, m));
        assert!(owner_is_dead(m.tid, 0, m));
        assert!(owner_is_dead(m.tid, stamp_of(m.tid, 1), m));
    }

    #[test]
    fn a_zombie_is_dead() {
        let m = me();
        // SAFETY: the child only calls _exit.
        match unsafe { sys::fork() }.unwrap() {
            Forked::Child => sys::exit_immediately(0),
            Forked::Parent(pid) => {
                // The pidfd turns readable once the child exited (a zombie
                // until we reap it).
                let fd = sys::pidfd_open(pid).unwrap();
                let exited = sys::poll_readable(
                    std::os::fd::AsFd::as_fd(&fd),
                    Some(std::time::Duration::from_secs(10)),
                );
                assert!(exited.unwrap(), "child did not exit within 10 s");
                assert!(owner_is_dead(pid as u32, 0, m));
                sys::waitpid(pid, false).unwrap();
            }
        }
    }
}
