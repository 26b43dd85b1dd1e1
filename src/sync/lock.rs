//! A process-shared, robust mutual-exclusion lock: Python's
//! `multiprocessing.Lock`, plus recovery when the owner dies holding it.
//!
//! # The lock word
//!
//! | bits   | name    | meaning                                                  |
//! |--------|---------|----------------------------------------------------------|
//! | 0..30  | owner   | TID of the holder; 0 when unlocked                       |
//! | 30     | —       | always 0                                                 |
//! | 31     | WAITERS | somebody may sleep on the word: an unlock must wake one  |
//!
//! | word            | state                           | moved by                                  |
//! |-----------------|---------------------------------|-------------------------------------------|
//! | `0`             | unlocked, nobody sleeps         | unlock (to here); acquire (from here)     |
//! | `T`             | held by `T`, nobody sleeps      | fast acquire `0 -> T` (one CAS)           |
//! | `T \| WAITERS`  | held by `T`, sleepers may exist | a waiter before it sleeps; a waiter that slept, when it acquires (`0 -> T \| WAITERS`), since others may still sleep; a takeover |
//! | `WAITERS`       | never                           | unlock swaps the whole word to `0`        |
//!
//! Unlock by `T`: CAS `T -> 0`; if WAITERS was set, swap to `0` and wake one
//! sleeper, which re-sets WAITERS when it acquires or sleeps again. A waiter
//! that slept sets WAITERS *before* it gives up on its deadline, so a waiter
//! that was woken and leaves never strands the others asleep (and sleepers
//! re-check the word at the end of every liveness slice anyway).
//!
//! # Owner death
//!
//! A sleeping waiter sleeps in slices (1 ms, doubling to 50 ms) and, after
//! each slice, asks [`owner`](super::owner) whether the holder still lives.
//! A dead holder's word is taken over with a CAS from the exact word seen
//! (WAITERS kept set), the lock is marked inconsistent, and the new owner is
//! told [`LockError::OwnerDied`], which carries the guard. A try (or an
//! expired deadline) makes the same check once, so nobody ever hangs on, or
//! is refused by, a dead owner.
//!
//! The holder records its stamp (TID and thread start time) in
//! `owner_stamp` right after acquiring and clears it right before
//! releasing. A waiter reads word, stamp, word again; when both words show
//! the same TID and the stamp names that TID with another start time than
//! the thread now carrying it, the TID was reused and the holder is dead.
//!
//! Inconsistency is sticky: every acquisition is told `OwnerDied` until a
//! holder calls [`LockGuard::make_consistent`]. POSIX robust mutexes instead
//! turn *unrecoverable* (`ENOTRECOVERABLE`, forever) when the holder that
//! was told `EOWNERDEAD` unlocks without `pthread_mutex_consistent`; here
//! the lock stays usable and the next acquirer gets the chance to repair.
//!
//! Residual races, documented rather than closed, both needing a TID to be
//! reused (after the kernel cycled through `pid_max` TIDs) within a tiny
//! window: an owner that dies in the two instructions between its acquiring
//! CAS and its stamp store leaves no stamp, so only "gone or zombie" reveals
//! its death (should an unrelated thread take its TID before a waiter
//! looks, waiters wait until that thread ends); and a takeover CAS could
//! succeed on an identical word if, between one waiter's liveness check and
//! its CAS (microseconds), another waiter took over, released, and a new
//! thread with the dead owner's TID acquired.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::owner::{self, Me, TID_MASK};
use crate::error::Error;
use crate::shim::{self, AtomicU32, AtomicU64, Ordering, Wake};
#[cfg(not(loom))]
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};

/// A robust, process-shared lock, placed in shared memory. All-zero bytes
/// are an unlocked, consistent lock.
///
/// # Example
///
/// ```
/// use multiproc::sync::RawLock;
///
/// let lock = RawLock::new();
/// {
///     let _guard = lock.acquire().expect("nobody died holding it");
///     assert!(lock.is_held_by_current_thread());
///     assert!(lock.try_acquire().is_err(), "not re-entrant");
/// }
/// assert!(!lock.is_locked());
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawLock {
    /// The lock word (see the module's truth table). Owner TID written by
    /// acquirers (CAS from unlocked, or from a dead owner) and cleared by the
    /// owner; WAITERS set by waiters, cleared by unlock.
    word: AtomicU32,
    /// [`CONSISTENT`] or [`INCONSISTENT`]. Written only by a holder: set
    /// inconsistent by a takeover, consistent by `make_consistent`.
    state: AtomicU32,
    /// The holder's stamp (`owner::Me::stamp`), or 0 when not recorded.
    /// Written by the holder right after acquiring and cleared right before
    /// releasing; a takeover clears a dead holder's stamp before its CAS.
    owner_stamp: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RawLock>() == 16);
    assert!(align_of::<RawLock>() == 8);
};

/// Somebody may sleep on the word: unlock must wake one.
const WAITERS: u32 = 1 << 31;
/// `state`: the data the lock protects is consistent.
const CONSISTENT: u32 = 0;
/// `state`: a holder died; the data may need repair.
const INCONSISTENT: u32 = 1;
/// How many times an acquirer polls a held lock before it sleeps. Shorter
/// than `shim::SPIN_ROUNDS`: with two processes hammering one lock, a long
/// spin keeps handing the lock (and its cache line) back and forth on every
/// release, while a short one lets the loser sleep and the holder run on
/// (`benches/lock.rs`, `contended/*`: about 1.7x the throughput of 200
/// rounds, and faster than a robust `pthread_mutex_t`, which never spins).
const LOCK_SPIN_ROUNDS: u32 = if cfg!(loom) { 1 } else { 32 };
/// The first sleep before a waiter checks that the holder lives.
#[cfg(not(loom))]
const FIRST_SLICE: Duration = Duration::from_millis(1);
/// The longest sleep between two liveness checks.
#[cfg(not(loom))]
const MAX_SLICE: Duration = Duration::from_millis(50);

/// How an acquisition went (the internal form of the public results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Acquired; the lock is consistent.
    Clean,
    /// Acquired; a holder died and nobody marked the lock consistent since.
    OwnerDied,
}

/// The deadline passed before the lock could be acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// Release, repair or notify by a thread that does not hold the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOwner;

impl std::fmt::Display for NotOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the lock is not held by the calling thread")
    }
}

impl std::error::Error for NotOwner {}

impl From<NotOwner> for Error {
    fn from(_: NotOwner) -> Error {
        Error::NotOwner
    }
}

/// Why an acquisition did not simply succeed.
///
/// `OwnerDied` carries the guard: the lock *is* held, but its previous
/// holder died inside the critical section, so the protected data may be
/// half-updated. Repair it, then call `make_consistent` on the guard.
pub enum LockError<G> {
    /// The deadline passed first (or a try found the lock held).
    Timeout,
    /// Acquired, but a holder died holding it and the lock has not been
    /// marked consistent since.
    OwnerDied(G),
}

impl<G> LockError<G> {
    /// Maps the guard of an `OwnerDied`.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::Timeout => LockError::Timeout,
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
        }
    }

    /// The guard of an `OwnerDied`, or `None` for a timeout.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::Timeout => None,
            LockError::OwnerDied(g) => Some(g),
        }
    }
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Timeout => f.write_str("Timeout"),
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Timeout => f.write_str("timed out waiting for the lock"),
            LockError::OwnerDied(_) => {
                f.write_str("acquired, but the previous owner died holding the lock")
            }
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// `OwnerDied` becomes [`Error::OwnerDied`]; its guard is dropped, which
/// releases the lock still inconsistent (the next acquirer is told again).
impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::Timeout => Error::Timeout,
            LockError::OwnerDied(_) => Error::OwnerDied,
        }
    }
}

/// The deadline `timeout` from now; `None` (no deadline) when it is too far
/// to represent.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Maps an internal result onto the public one, building a guard on success.
pub(crate) fn to_guard_result<G>(
    r: Result<Acquired, TimedOut>,
    guard: impl FnOnce() -> G,
) -> Result<G, LockError<G>> {
    match r {
        Ok(Acquired::Clean) => Ok(guard()),
        Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(guard())),
        Err(TimedOut) => Err(LockError::Timeout),
    }
}

impl RawLock {
    /// An unlocked, consistent lock (the same as all-zero bytes).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RawLock {
            word: AtomicU32::new(0),
            state: AtomicU32::new(CONSISTENT),
            owner_stamp: AtomicU64::new(0),
        }
    }

    /// An unlocked, consistent lock (the same as all-zero bytes).
    #[cfg(loom)]
    pub fn new() -> Self {
        RawLock {
            word: AtomicU32::new(0),
            state: AtomicU32::new(CONSISTENT),
            owner_stamp: AtomicU64::new(0),
        }
    }

    /// Blocks until the lock is acquired. See [`LockError`] for `OwnerDied`.
    ///
    /// Not re-entrant: called again by the holding thread it waits forever,
    /// as Python's `Lock` does (use a timeout, or [`RawRLock`](super::RawRLock)).
    pub fn acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_until(None)
    }

    /// Acquires the lock if it is free now (or its holder is dead). When
    /// the lock is held, the try reads `/proc` once to see whether its
    /// holder lives (a few microseconds), so that a dead holder is never
    /// mistaken for a busy one.
    pub fn try_acquire(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_until(Some(Instant::now()))
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for the lock.
    pub fn acquire_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        to_guard_result(self.acquire_as(owner::me(), deadline), || LockGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Python's `acquire(timeout=...)` without a guard: on `Ok(())` or
    /// `Err(LockError::OwnerDied(()))` the caller holds the lock and must
    /// [`release`](Self::release) it from the same thread.
    pub fn acquire_unguarded(&self, deadline: Option<Instant>) -> Result<(), LockError<()>> {
        to_guard_result(self.acquire_as(owner::me(), deadline), || ())
    }

    /// Releases the lock held by the calling thread (Python's `release`).
    pub fn release(&self) -> Result<(), NotOwner> {
        let me = owner::me();
        if !self.held_by(me) {
            return Err(NotOwner);
        }
        self.release_held(me);
        Ok(())
    }

    /// Marks the protected data repaired after an `OwnerDied`; later
    /// acquisitions are clean again. Only the holder may call it.
    pub fn make_consistent(&self) -> Result<(), NotOwner> {
        if !self.held_by(owner::me()) {
            return Err(NotOwner);
        }
        // Relaxed: written under the lock; SYNC(lock-handoff) publishes it
        // to the next holder.
        self.state.store(CONSISTENT, Ordering::Relaxed);
        Ok(())
    }

    /// Whether some thread holds the lock now (a snapshot).
    pub fn is_locked(&self) -> bool {
        // Relaxed: a snapshot; nothing is read on the strength of it.
        self.word.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// Whether the calling thread holds the lock.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.held_by(owner::me())
    }

    /// Whether the lock is consistent (no holder died since the last
    /// `make_consistent`). Exact for the holder, a snapshot for others.
    pub fn is_consistent(&self) -> bool {
        // Relaxed: the holder reads its own (or its predecessors', through
        // SYNC(lock-handoff)) write; others get a snapshot.
        self.state.load(Ordering::Relaxed) == CONSISTENT
    }

    /// Acquires as `me`: one CAS, then the slow path.
    #[inline]
    pub(crate) fn acquire_as(
        &self,
        me: Me,
        deadline: Option<Instant>,
    ) -> Result<Acquired, TimedOut> {
        // SYNC(lock-handoff): Acquire pairs with the Release of the unlock
        // (or takeover) that made the word 0, so the previous critical
        // section, its `state` and its stamp clear happen before ours.
        if self
            .word
            .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(self.after_acquire(me));
        }
        self.acquire_slow(me, deadline)
    }

    /// Records our stamp and reads the consistency state, right after the
    /// acquiring CAS.
    #[inline]
    fn after_acquire(&self, me: Me) -> Acquired {
        // Relaxed: the stamp is read back by us (release check) and, as a
        // value only, by waiters judging liveness; it publishes nothing.
        self.owner_stamp.store(me.stamp, Ordering::Relaxed);
        // Relaxed: SYNC(lock-handoff) made the previous holder's write visible.
        if self.state.load(Ordering::Relaxed) == CONSISTENT {
            Acquired::Clean
        } else {
            Acquired::OwnerDied
        }
    }

    /// The consistency of a lock the caller already holds (RLock re-entry).
    pub(crate) fn held_state(&self) -> Acquired {
        if self.is_consistent() {
            Acquired::Clean
        } else {
            Acquired::OwnerDied
        }
    }

    #[cold]
    fn acquire_slow(&self, me: Me, deadline: Option<Instant>) -> Result<Acquired, TimedOut> {
        // A try (deadline already passed) looks once, without spinning.
        let mut last_look = deadline.is_some_and(|d| Instant::now() >= d);
        if !last_look {
            for _ in 0..LOCK_SPIN_ROUNDS {
                // Relaxed: only a hint for when to try the CAS.
                let w = self.word.load(Ordering::Relaxed);
                if w == 0 {
                    // SYNC(lock-handoff), as in `acquire_as`.
                    if self
                        .word
                        .compare_exchange(0, me.tid, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return Ok(self.after_acquire(me));
                    }
                } else if w & WAITERS != 0 {
                    break; // others sleep already: queue up behind them
                }
                shim::spin_loop();
            }
        }
        let mut slept = false;
        #[cfg(not(loom))]
        let mut slice = FIRST_SLICE;
        loop {
            // Relaxed: a hint; the CAS below carries the ordering.
            let w = self.word.load(Ordering::Relaxed);
            if w & TID_MASK == 0 {
                // Free. Having slept, keep WAITERS set: other sleepers may
                // remain, and the unlock that woke us cleared the bit.
                let new = me.tid | if slept { WAITERS } else { w & WAITERS };
                // SYNC(lock-handoff), as in `acquire_as`.
                if self
                    .word
                    .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Ok(self.after_acquire(me));
                }
                continue;
            }
            if last_look && !slept {
                // A try: no sleeper of ours to announce.
                return self.take_over_if_dead(w, me).ok_or(TimedOut);
            }
            if w & WAITERS == 0 {
                // Relaxed: announcing a sleeper publishes nothing; the
                // owner's unlock swap reads it.
                if self
                    .word
                    .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            let w = w | WAITERS;
            if last_look {
                // We slept and leave now: WAITERS is set, so if other
                // sleepers remain the holder's unlock wakes one.
                return self.take_over_if_dead(w, me).ok_or(TimedOut);
            }
            #[cfg(not(loom))]
            let (sleep_until, slice_end) = {
                let slice_end = Instant::now() + slice;
                (
                    Some(deadline.map_or(slice_end, |d| d.min(slice_end))),
                    slice_end,
                )
            };
            // Under loom owners never die: sleep until woken or the deadline.
            #[cfg(loom)]
            let sleep_until = deadline;
            slept = true;
            if shim::futex_wait(&self.word, w, sleep_until) == Wake::TimedOut {
                let now = Instant::now();
                if deadline.is_some_and(|d| cfg!(loom) || now >= d) {
                    last_look = true;
                    continue;
                }
                #[cfg(not(loom))]
                if now >= slice_end {
                    if let Some(a) = self.take_over_if_dead(w, me) {
                        return Ok(a);
                    }
                    slice = (slice * 2).min(MAX_SLICE);
                }
            }
        }
    }

    /// Takes the lock over if the holder named by `w` is dead: the word is
    /// still `w`, and [`owner::owner_is_dead`] says so.
    #[cold]
    fn take_over_if_dead(&self, w: u32, me: Me) -> Option<Acquired> {
        // Word, stamp, word again. SYNC(lock-handoff): the Acquire load
        // pairs with the last unlock (or takeover) before the current
        // holder's CAS, whose stamp clear is therefore visible: the stamp
        // read is 0, the current holder's, or a later one's.
        if self.word.load(Ordering::Acquire) != w {
            return None;
        }
        // Acquire: keeps the second word load below after this one, so the
        // stamp was read while the word still showed `w`.
        let stamp = self.owner_stamp.load(Ordering::Acquire);
        // Relaxed: only compared; ordered after the stamp load above.
        if self.word.load(Ordering::Relaxed) != w {
            return None;
        }
        if !owner::owner_is_dead(w & TID_MASK, stamp, me) {
            return None;
        }
        // Clear the dead holder's stamp first, so that nobody pairs it with
        // our word should we carry the same TID number as the dead holder.
        // Relaxed: the AcqRel CAS below publishes it. A failure means
        // another waiter cleared it, or took over and wrote its own.
        let _ = self
            .owner_stamp
            .compare_exchange(stamp, 0, Ordering::Relaxed, Ordering::Relaxed);
        // SYNC(lock-handoff): Acquire takes over the dead holder's writes;
        // Release publishes the stamp clear above to the next waiter.
        self.word
            .compare_exchange(w, me.tid | WAITERS, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        // Relaxed: see `after_acquire`.
        self.owner_stamp.store(me.stamp, Ordering::Relaxed);
        // Relaxed: written under the lock; SYNC(lock-handoff) publishes it.
        self.state.store(INCONSISTENT, Ordering::Relaxed);
        Some(Acquired::OwnerDied)
    }

    /// Whether `me` holds the lock: the word names our TID *and* the stamp
    /// is ours (a dead earlier thread with our TID is not us).
    #[inline]
    pub(crate) fn held_by(&self, me: Me) -> bool {
        // Relaxed: if we hold the lock, both values are our own writes (or
        // later ones with our TID kept), which we always see; if we do not,
        // no write of ours with these values remains (our release cleared
        // both before letting go).
        self.word.load(Ordering::Relaxed) & TID_MASK == me.tid
            && self.owner_stamp.load(Ordering::Relaxed) == me.stamp
    }

    /// Releases a lock that `me` holds.
    #[inline]
    pub(crate) fn release_held(&self, me: Me) {
        // Relaxed: published by the Release CAS or swap below (SYNC(lock-handoff)).
        self.owner_stamp.store(0, Ordering::Relaxed);
        // SYNC(lock-handoff): Release publishes the critical section.
        if self
            .word
            .compare_exchange(me.tid, 0, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.release_waking();
        }
    }

    #[cold]
    fn release_waking(&self) {
        // SYNC(lock-handoff): Release, as in `release_held`. WAITERS was
        // set: somebody may sleep on the word.
        self.word.swap(0, Ordering::Release);
        shim::futex_wake(&self.word, 1);
    }
}

// SAFETY: repr(C), three atomics of plain integers, no pointers, no
// destructor. Every bit pattern is a state the code handles: a word's
// unknown TID is judged by liveness like any other, bit 30 is ignored, any
// `state` but CONSISTENT reads as inconsistent, a stamp is only compared.
// All-zero is an unlocked, consistent lock.
#[cfg(not(loom))]
unsafe impl ShmSafe for RawLock {}

// SAFETY: `ObjectKind::Lock` is stored only for `RawLock`; version 1 is
// the layout above (word, state, owner_stamp: 16 bytes).
#[cfg(not(loom))]
unsafe impl ShmObject for RawLock {
    const KIND: ObjectKind = ObjectKind::Lock;
    const VERSION: u32 = 1;
}

/// Python's `multiprocessing.Lock`: a robust [`RawLock`] in its own shared
/// object. Clones, fork children and processes that [`open`](Lock::open)
/// its [`handle`](Lock::handle) all use the same lock. Everything else is
/// [`RawLock`]'s API (through `Deref`).
///
/// # Example
///
/// ```
/// use multiproc::process::Process;
/// use multiproc::sync::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::new()?;
/// let guard = lock.acquire().expect("nobody died holding it");
/// let child = Process::new({
///     let lock = lock.clone();
///     move || match lock.try_acquire() {
///         Err(multiproc::sync::LockError::Timeout) => 0, // the parent holds it
///         _ => 1,
///     }
/// });
/// child.start()?;
/// assert_eq!(child.join(Some(Duration::from_secs(30)))?, 0);
/// drop(guard);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct Lock {
    shared: ShmBox<RawLock>,
}

#[cfg(not(loom))]
impl Lock {
    /// An unlocked lock in a new segment of the default backing.
    pub fn new() -> crate::Result<Lock> {
        Ok(Lock {
            shared: ShmBox::new(RawLock::new())?,
        })
    }

    /// An unlocked lock placed in `segment`.
    pub fn new_in(segment: &Segment) -> crate::Result<Lock> {
        Ok(Lock {
            shared: ShmBox::new_in(segment, RawLock::new())?,
        })
    }

    /// The handle that names this lock to another process.
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }

    /// Attaches to the lock a handle names. [`Error::Kind`] for a handle of
    /// another object, [`Error::Version`] for an incompatible layout.
    pub fn open(handle: &Handle) -> crate::Result<Lock> {
        Ok(Lock {
            shared: ShmBox::open(handle)?,
        })
    }

    /// The segment the lock lives in.
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }
}

#[cfg(not(loom))]
impl std::ops::Deref for Lock {
    type Target = RawLock;

    fn deref(&self) -> &RawLock {
        &self.shared
    }
}

/// Proof that the calling thread holds a [`RawLock`]; releases it on drop.
///
/// Not `Send`: the lock belongs to the thread that acquired it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a RawLock,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    /// Marks the protected data repaired after an `OwnerDied`; later
    /// acquisitions are clean again. Dropping the guard without calling it
    /// leaves the lock inconsistent: the next acquirer is told `OwnerDied`.
    pub fn make_consistent(&self) {
        // Relaxed: written under the lock; SYNC(lock-handoff) publishes it.
        self.lock.state.store(CONSISTENT, Ordering::Relaxed);
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &RawLock {
        self.lock
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Not the owner only if the lock was released explicitly meanwhile
        // (`RawLock::release`); then there is nothing left to release.
        let _ = self.lock.release();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn acquire_release_and_not_owner() {
        let lock = RawLock::new();
        assert_eq!(lock.release(), Err(NotOwner));
        let g = lock.acquire().unwrap();
        assert!(lock.is_locked() && lock.is_held_by_current_thread());
        assert!(matches!(lock.try_acquire(), Err(LockError::Timeout)));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(lock.release(), Err(NotOwner));
                assert_eq!(lock.make_consistent(), Err(NotOwner));
                assert!(matches!(
                    lock.acquire_timeout(Duration::from_millis(5)),
                    Err(LockError::Timeout)
                ));
            });
        });
        drop(g);
        assert!(!lock.is_locked());
        assert_eq!(lock.word.load(Ordering::Relaxed), 0, "WAITERS cleared");
        assert_eq!(lock.owner_stamp.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dead_thread_is_taken_over() {
        let lock = RawLock::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                let g = lock.acquire().unwrap();
                std::mem::forget(g); // the thread exits holding it
            });
        });
        let g = match lock.acquire_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(g)) => g,
            other => panic!("expected OwnerDied, got {other:?}"),
        };
        drop(g);
        // Not repaired: the next acquirer is told again (a try checks too).
        let g = lock.try_acquire().unwrap_err().into_guard().unwrap();
        g.make_consistent();
        drop(g);
        assert!(lock.acquire().is_ok());
    }

    #[test]
    fn a_try_recovers_from_a_dead_owner() {
        let lock = RawLock::new();
        std::thread::scope(|s| {
            s.spawn(|| lock.acquire_unguarded(None).unwrap());
        });
        // The joined thread may linger in /proc for a moment while the
        // kernel finishes its exit: a try reports Timeout until it is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match lock.acquire_unguarded(Some(Instant::now())) {
                Err(LockError::OwnerDied(())) => break,
                Err(LockError::Timeout) => assert!(Instant::now() < deadline, "never recovered"),
                Ok(()) => panic!("acquired clean from a dead owner"),
            }
            std::thread::yield_now();
        }
        lock.make_consistent().unwrap();
        lock.release().unwrap();
        assert!(lock.is_consistent());
    }

    #[test]
    fn contended_threads_exclude_each_other() {
        let lock = RawLock::new();
        let counter = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        let _g = lock.acquire().unwrap();
                        // A non-atomic read-modify-write under the lock.
                        let v = counter.load(std::sync::atomic::Ordering::Relaxed);
                        counter.store(v + 1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        });
        assert_eq!(counter.into_inner(), 40_000);
        assert_eq!(lock.word.load(Ordering::Relaxed), 0);
    }
}
