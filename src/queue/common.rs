//! Pieces both queue layouts share: the join counter of a joinable queue,
//! the liveness test for a claimant that stopped answering, and the bounded
//! wait loop.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shim::{self, AtomicU32, AtomicU64, Ordering};
use crate::sync::owner;
use crate::sync::{EventCount, asymmetric_fence};

/// The state of `JoinableQueue::join`, inside a queue header.
#[repr(C)]
#[derive(Debug, Default)]
pub struct JoinState {
    /// Messages put and not yet marked done by `task_done`. Incremented by a
    /// producer *before* it publishes a message (so a consumer can never mark
    /// a message done before it was counted), decremented by `task_done`,
    /// never below zero.
    unfinished: AtomicU64,
    /// Notified when `unfinished` drops to zero; `join` sleeps on it.
    all_done: EventCount,
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<JoinState>() == 16);

impl JoinState {
    /// Counts `n` more messages (a put about to publish them).
    pub(crate) fn add(&self, n: u64) {
        // Relaxed: the messages' publication (a Release store) that follows
        // carries this increment to the consumer that later calls task_done.
        self.unfinished.fetch_add(n, Ordering::Relaxed);
    }

    /// Marks one message done; [`Error::Value`] if none is outstanding.
    pub(crate) fn task_done(&self) -> Result<()> {
        // Relaxed: the CAS below re-reads the value it changes.
        let mut cur = self.unfinished.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return Err(Error::Value(
                    "task_done() called more times than there were items put".into(),
                ));
            }
            // SYNC(join-count): Release publishes the caller's work on the
            // message to `join`'s Acquire load.
            match self.unfinished.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            self.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every message put was marked done; [`Error::Timeout`].
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<()> {
        self.all_done
            .wait_until(deadline, || {
                // SYNC(join-count): pairs with the Release decrement.
                (self.unfinished.load(Ordering::Acquire) == 0).then_some(())
            })
            .ok_or(Error::Timeout)
    }

    /// Messages not yet marked done (a snapshot).
    pub(crate) fn unfinished(&self) -> u64 {
        // Relaxed: a snapshot for callers and tests.
        self.unfinished.load(Ordering::Relaxed)
    }
}

/// The sizes every queue layout refuses: a capacity of 0 messages, a
/// maximum message size of 0 bytes.
pub(crate) fn check_sizes(capacity: usize, max_msg: usize) -> Result<()> {
    if capacity == 0 {
        return Err(Error::Invalid(
            "queue capacity 0: it must hold at least one message".into(),
        ));
    }
    if max_msg == 0 {
        return Err(Error::Invalid(
            "maximum message size 0: it must be at least 1 byte".into(),
        ));
    }
    Ok(())
}

/// How often a waiter that is stuck behind another participant's claim
/// checks whether that participant is still alive.
pub(crate) const CLAIMANT_POLL: Duration = Duration::from_millis(2);

/// True when the thread `tid` that claimed a slot no longer runs
/// (`/proc/TID` gone or a zombie), as the locks decide it
/// ([`owner_is_dead`](crate::sync::owner::owner_is_dead)). Under loom
/// nobody dies.
///
/// A slot word has no room for the claimant's start-time stamp, so a TID
/// reused by an unrelated live thread reads as alive: the waiter then waits
/// until that thread ends, or its own deadline. All participants must share
/// one PID namespace. The caller never waits on its own claim, so a claim
/// naming the caller's TID is a dead earlier thread's.
pub(crate) fn claimant_is_dead(tid: u32) -> bool {
    tid != 0 && owner::owner_is_dead(tid, 0, owner::me())
}

/// What the tries of one queue handle remember of a claim that stopped
/// them, so that a claim left by a dead participant is cleared by tries
/// alone (a consumer that only ever polls with `get_nowait` must not be
/// stuck behind it forever), without reading `/proc` on every try: a claim
/// is checked once it has stood in the way of this handle's tries for
/// [`CLAIMANT_POLL`], as a blocking waiter checks it after each slice of
/// sleep. A live claimant finishes its copy in microseconds.
#[derive(Debug, Default)]
pub(crate) struct ClaimWatch {
    /// The claim last seen (slot, slot word) and when it was first seen.
    #[cfg(not(loom))]
    seen: std::sync::Mutex<Option<(usize, u64, Instant)>>,
}

impl ClaimWatch {
    /// Whether the claim `word` at `slot` has stopped this handle's tries
    /// for [`CLAIMANT_POLL`] or longer; otherwise it is remembered (another
    /// thread using the handle at this instant skips the bookkeeping).
    pub(crate) fn overdue(&self, slot: usize, word: u64) -> bool {
        #[cfg(not(loom))]
        {
            let Ok(mut seen) = self.seen.try_lock() else {
                return false;
            };
            let now = Instant::now();
            match *seen {
                Some((s, w, since)) if s == slot && w == word => now - since >= CLAIMANT_POLL,
                _ => {
                    *seen = Some((slot, word, now));
                    false
                }
            }
        }
        // Under loom nobody dies.
        #[cfg(loom)]
        {
            let _ = (slot, word);
            false
        }
    }
}

/// The calling thread's id, as recorded in a claim (cached, no syscall).
pub(crate) fn my_tid() -> u32 {
    owner::me().tid
}

/// The calling thread's id, for comparing with a claim it made: the same
/// value as [`my_tid`], read from one thread-local cache instead of two.
#[inline]
pub(crate) fn my_tid_fast() -> u32 {
    #[cfg(not(loom))]
    {
        crate::sys::current_ids().1 as u32
    }
    #[cfg(loom)]
    {
        my_tid()
    }
}

/// Converts a Python-style `(block, timeout)` into a deadline:
/// `None` waits forever, a deadline in the past tries once.
pub(crate) fn deadline_of(block: bool, timeout: Option<Duration>) -> Option<Instant> {
    if !block {
        return try_once();
    }
    timeout.map(|t| {
        let now = Instant::now();
        now.checked_add(t)
            .unwrap_or(now + Duration::from_secs(86400 * 365))
    })
}

/// A deadline that has passed already: try once. A fixed instant, so a
/// `put_nowait` that succeeds never reads the clock.
pub fn try_once() -> Option<Instant> {
    static PAST: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    Some(*PAST.get_or_init(Instant::now))
}

/// Whether `deadline` has passed (a try-once deadline has).
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| cfg!(loom) || Instant::now() >= d)
}

/// What an attempt that could not finish now is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Nothing to do until the other side acts (full or empty).
    Plain,
    /// A slot claimed by `tid` (whose slot word is `word` at index `slot`)
    /// stands in the way: if it stays so, check whether `tid` still lives.
    Claim { slot: usize, word: u64, tid: u32 },
}

/// How long a waiter polls its queue before it goes to sleep: long enough
/// that a peer answering promptly is seen without a syscall on either side
/// (a futex sleep and wake cost about as much as a pipe round trip), short
/// enough that a waiter never burns a core for long.
pub(crate) const SPIN_WINDOW: Duration = Duration::from_micros(50);

/// The first part of [`SPIN_WINDOW`], in which the waiter polls with only a
/// CPU pause in between (a prompt peer answers well within it). For the rest
/// of the window it yields the CPU between polls: if the peer waits for the
/// same CPU (more runnable threads than CPUs), it runs now instead of after
/// the spinner's time slice; if not, a yield returns at once.
pub(crate) const PAUSE_WINDOW: Duration = Duration::from_micros(2);

/// Wakes the sleepers of `ec` after the caller changed the state they wait
/// for; no atomic write, no syscall and no CPU fence when nobody sleeps.
///
/// SYNC(sleeper-check): the light half of an asymmetric fence
/// ([`asymmetric_fence`]), paired with the heavy half a waiter runs in
/// [`wait_loop`] after it registered and before its check: either the
/// waiter's registration is seen here, or the waiter's check sees the
/// caller's change.
#[inline]
pub(crate) fn wake(ec: &EventCount) {
    asymmetric_fence::light();
    if ec.sleepers() > 0 {
        wake_sleepers(ec);
    }
}

/// The rare part of [`wake`], out of the hot path's way.
#[cold]
#[inline(never)]
fn wake_sleepers(ec: &EventCount) {
    ec.notify_all();
}

/// Runs `attempt` until it gives a result: polls it for [`SPIN_WINDOW`]
/// (pausing for [`PAUSE_WINDOW`], then yielding), then sleeps on `ec`
/// between tries, asking `skip_dead` to clear a claim
/// whose owner died (and trying again at once). `None` when `deadline`
/// passed first (a deadline already past tries once; a claim in its way
/// that `watch` finds overdue is checked, and cleared if its claimant
/// died, before it gives up). Whoever changes the state `attempt` waits for
/// calls [`wake`] on `ec`.
///
/// While blocked by a claim, the sleep is cut into [`CLAIMANT_POLL`] slices
/// so the claimant's liveness is checked even if nobody notifies; blocked
/// plainly, it sleeps until a notify or the deadline.
pub(crate) fn wait_loop<T>(
    ec: &EventCount,
    deadline: Option<Instant>,
    watch: Option<&ClaimWatch>,
    mut attempt: impl FnMut() -> std::result::Result<T, Blocked>,
    mut skip_dead: impl FnMut(usize, u64, u32),
) -> Option<T> {
    let mut blocked = match attempt() {
        Ok(v) => return Some(v),
        Err(b) => b,
    };
    if expired(deadline) {
        if let (Blocked::Claim { slot, word, tid }, Some(watch)) = (blocked, watch)
            && watch.overdue(slot, word)
            && claimant_is_dead(tid)
        {
            skip_dead(slot, word, tid);
            return attempt().ok();
        }
        return None;
    }
    // The spin window (none under loom: every interleaving of one check is
    // explored already).
    if !cfg!(loom) {
        let start = Instant::now();
        let mut round = 0u32;
        let mut yielding = false;
        loop {
            if yielding {
                std::thread::yield_now();
            } else {
                shim::spin_loop();
            }
            match attempt() {
                Ok(v) => return Some(v),
                Err(b) => blocked = b,
            }
            round += 1;
            if yielding || round.is_multiple_of(64) {
                let now = Instant::now();
                if now - start >= SPIN_WINDOW || deadline.is_some_and(|d| now >= d) {
                    break;
                }
                yielding = now - start >= PAUSE_WINDOW;
            }
        }
    }
    loop {
        if expired(deadline) {
            return None;
        }
        // Under loom nobody dies, so nobody polls: a wait with a deadline
        // returns at once there and the model would spin.
        let polling = matches!(blocked, Blocked::Claim { .. }) && !cfg!(loom);
        let until = if polling {
            let p = Instant::now() + CLAIMANT_POLL;
            Some(deadline.map_or(p, |d| d.min(p)))
        } else {
            deadline
        };
        // SYNC(sleeper-check): the heavy half, after the registration and
        // before the check that decides the sleep; pairs with `wake`.
        let got = ec.wait_until_registered(until, asymmetric_fence::heavy, || {
            match attempt() {
                Ok(v) => Some(Ok(v)),
                // A claim appeared while we sleep without polling: come
                // out and sleep again in slices.
                Err(b @ Blocked::Claim { .. }) if !polling && !cfg!(loom) => Some(Err(b)),
                Err(b) => {
                    blocked = b;
                    None
                }
            }
        });
        match got {
            Some(Ok(v)) => return Some(v),
            Some(Err(b)) => blocked = b,
            None => {
                if let Blocked::Claim { slot, word, tid } = blocked
                    && claimant_is_dead(tid)
                {
                    skip_dead(slot, word, tid);
                    // At once: a deadline that passed meanwhile would end
                    // the wait before the message behind the claim is seen.
                    match attempt() {
                        Ok(v) => return Some(v),
                        Err(b) => blocked = b,
                    }
                }
            }
        }
    }
}
