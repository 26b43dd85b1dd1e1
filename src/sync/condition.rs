//! A process-shared condition variable: Python's `multiprocessing.Condition`.
//!
//! A condition works with one lock (a [`RawLock`] or a [`RawRLock`]; by
//! default its own RLock, as in Python). `wait` releases the lock fully (an
//! RLock: all levels), sleeps until notified or the deadline, and
//! reacquires it (without a deadline, as Python does; a holder that died
//! is reported as `OwnerDied`, never waited on). `notify(n)` wakes at most
//! `n` of the threads waiting at that moment, oldest first.
//!
//! # Waiter slots
//!
//! Each waiter takes a slot (under the lock), records an arrival ticket
//! and its stamp, releases the lock and sleeps on the slot's own futex
//! word. A notifier (under the lock) picks the `n` oldest waiting slots and
//! moves each to NOTIFIED, waking it only if it sleeps. A waiter whose
//! deadline passes reacquires the lock and reads its slot: NOTIFIED means
//! it *was* notified (it returns `true`), so a timeout never swallows a
//! notification meant for someone else; otherwise it leaves, and later
//! notifies skip it. Late arrivals cannot take an earlier notification:
//! notifications go to slots, not to whoever looks first.
//!
//! | slot state | meaning                               | moved by                               |
//! |------------|---------------------------------------|----------------------------------------|
//! | FREE       | unused                                | its waiter, under the lock, when done  |
//! | WAITING    | registered, not asleep                | its waiter, under the lock, from FREE  |
//! | SLEEPING   | registered, asleep or about to sleep  | its waiter, CAS from WAITING, no lock  |
//! | NOTIFIED   | picked by a notify                    | a notifier, under the lock, by swap    |
//!
//! There are [`WAIT_SLOTS`] slots. Further concurrent waiters share an
//! overflow [`EventCount`]: a notify that finds fewer waiting slots than
//! `n` wakes *all* overflow waiters, so beyond `WAIT_SLOTS` waiters a
//! notify may wake more than `n` (as POSIX condition variables may).
//!
//! # Death
//!
//! A notifier that dies holding the lock is a dead lock holder: waiters
//! reacquiring get `OwnerDied`. A waiter killed while waiting leaves its
//! slot behind; the one notify that picks it is wasted (the others' waits
//! still end at their deadlines), and the slot is reclaimed, after a
//! liveness check of its stamp, when the table is full.

use std::time::{Duration, Instant};

use super::event_count::EventCount;
use super::lock::{Acquired, NotOwner, RawLock, deadline_after};
#[cfg(not(loom))]
use super::lock::{Lock, LockError, LockGuard};
use super::owner::{self, Me};
use super::rlock::RawRLock;
#[cfg(not(loom))]
use super::rlock::{RLock, RLockGuard};
use crate::error::Error;
use crate::shim::{self, AtomicU32, AtomicU64, Ordering, Wake};
#[cfg(not(loom))]
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};

/// How many waiters a condition tracks individually (see the module doc).
#[cfg(not(loom))]
pub const WAIT_SLOTS: usize = 64;
/// How many waiters a condition tracks individually (see the module doc);
/// small under loom, which explores every access of every scan.
#[cfg(loom)]
pub const WAIT_SLOTS: usize = 2;

/// A process-shared condition variable, placed in shared memory. All-zero
/// bytes are a condition with no waiters and an unlocked own lock.
///
/// # Example
///
/// ```
/// use multiproc::sync::RawCondition;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::time::{Duration, Instant};
///
/// let cond = RawCondition::new();
/// let ready = AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let _g = cond.lock().acquire().unwrap();
///         ready.store(true, Ordering::Relaxed);
///         cond.notify(cond.lock(), 1).unwrap();
///     });
///     let _g = cond.lock().acquire().unwrap();
///     let deadline = Instant::now() + Duration::from_secs(10);
///     let seen = cond.wait_for(cond.lock(), || ready.load(Ordering::Relaxed), Some(deadline));
///     assert_eq!(seen, Ok(true));
/// });
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawCondition {
    /// The condition's own lock (Python's default, an RLock), used when it
    /// is made without one.
    own_lock: RawRLock,
    /// How many slots are WAITING or SLEEPING. Written under the lock.
    waiting: AtomicU32,
    /// The ticket the next waiter takes (wrapping). Written under the lock.
    next_ticket: AtomicU32,
    /// How many waiters found no free slot and wait on `overflow`. Written
    /// under the lock.
    overflow_waiting: AtomicU32,
    /// Bumped (wrapping) by a notify that reaches the overflow waiters.
    /// Written under the lock; read by overflow waiters without it.
    overflow_epoch: AtomicU32,
    /// Where overflow waiters sleep.
    overflow: EventCount,
    /// 0 when the condition works with `own_lock`; otherwise the
    /// [`ObjectKind`](crate::shm::ObjectKind) number of the separate lock
    /// object it was made for (so that `Condition::open` can insist on it).
    /// Written once by the creator before the object is published.
    external_lock: u32,
    /// The waiter slots (see the module's table).
    slots: [WaitSlot; WAIT_SLOTS],
}

/// One waiter's place in a [`RawCondition`].
#[repr(C)]
#[derive(Debug, Default)]
struct WaitSlot {
    /// FREE, WAITING, SLEEPING or NOTIFIED (module table); the futex word
    /// its waiter sleeps on.
    state: AtomicU32,
    /// The waiter's arrival ticket; older tickets are notified first.
    /// Written by the waiter under the lock, read by notifiers under it.
    ticket: AtomicU32,
    /// The waiter's stamp (`owner::Me::stamp`), to reclaim the slot of a
    /// dead waiter. Written by the waiter under the lock.
    stamp: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<WaitSlot>() == 16);
    assert!(size_of::<RawCondition>() == 48 + 16 * WAIT_SLOTS);
    assert!(align_of::<RawCondition>() == 8);
};

const FREE: u32 = 0;
const WAITING: u32 = 1;
const SLEEPING: u32 = 2;
const NOTIFIED: u32 = 3;

/// Why a wait did not simply return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The caller does not hold the condition's lock.
    NotOwner,
    /// The lock was reacquired, but a holder died meanwhile (or before):
    /// the caller holds it again, inconsistent (see [`RawLock`]).
    OwnerDied,
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::NotOwner => f.write_str("the condition's lock is not held by the caller"),
            WaitError::OwnerDied => {
                f.write_str("reacquired the condition's lock, but a previous owner died holding it")
            }
        }
    }
}

impl std::error::Error for WaitError {}

impl From<WaitError> for Error {
    fn from(e: WaitError) -> Error {
        match e {
            WaitError::NotOwner => Error::NotOwner,
            WaitError::OwnerDied => Error::OwnerDied,
        }
    }
}

impl From<NotOwner> for WaitError {
    fn from(_: NotOwner) -> WaitError {
        WaitError::NotOwner
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::RawLock {}
    impl Sealed for super::RawRLock {}
}

/// A lock a condition can work with: [`RawLock`] or [`RawRLock`].
pub trait ConditionLock: sealed::Sealed {
    /// Whether the calling thread holds it.
    fn held_by_current_thread(&self) -> bool;

    /// Releases it fully for a wait; returns the levels to restore.
    #[doc(hidden)]
    fn release_for_wait(&self) -> Result<u32, NotOwner>;

    /// Reacquires it after a wait (no deadline) and restores `levels`;
    /// `true` when a holder died (the lock is held, inconsistent).
    #[doc(hidden)]
    fn reacquire_after_wait(&self, levels: u32) -> bool;
}

impl ConditionLock for RawLock {
    fn held_by_current_thread(&self) -> bool {
        self.is_held_by_current_thread()
    }

    fn release_for_wait(&self) -> Result<u32, NotOwner> {
        self.release().map(|()| 1)
    }

    fn reacquire_after_wait(&self, _levels: u32) -> bool {
        let acquired = self.acquire_as(owner::me(), None);
        acquired != Ok(Acquired::Clean)
    }
}

impl ConditionLock for RawRLock {
    fn held_by_current_thread(&self) -> bool {
        self.is_held_by_current_thread()
    }

    fn release_for_wait(&self) -> Result<u32, NotOwner> {
        self.release_all(owner::me())
    }

    fn reacquire_after_wait(&self, levels: u32) -> bool {
        self.reacquire(owner::me(), levels) != Acquired::Clean
    }
}

impl Default for RawCondition {
    fn default() -> Self {
        RawCondition::new()
    }
}

/// Where a waiter waits.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// In slot `i`.
    Slot(usize),
    /// On the overflow event count, having seen this epoch.
    Overflow(u32),
}

impl RawCondition {
    /// A condition with no waiters and an unlocked own lock (all-zero bytes).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RawCondition {
            own_lock: RawRLock::new(),
            waiting: AtomicU32::new(0),
            next_ticket: AtomicU32::new(0),
            overflow_waiting: AtomicU32::new(0),
            overflow_epoch: AtomicU32::new(0),
            overflow: EventCount::new(),
            external_lock: 0,
            slots: [const {
                WaitSlot {
                    state: AtomicU32::new(FREE),
                    ticket: AtomicU32::new(0),
                    stamp: AtomicU64::new(0),
                }
            }; WAIT_SLOTS],
        }
    }

    /// A condition with no waiters and an unlocked own lock (all-zero bytes).
    #[cfg(loom)]
    pub fn new() -> Self {
        RawCondition {
            own_lock: RawRLock::new(),
            waiting: AtomicU32::new(0),
            next_ticket: AtomicU32::new(0),
            overflow_waiting: AtomicU32::new(0),
            overflow_epoch: AtomicU32::new(0),
            overflow: EventCount::new(),
            external_lock: 0,
            slots: std::array::from_fn(|_| WaitSlot::default()),
        }
    }

    /// The condition's own re-entrant lock (use it unless the condition
    /// was meant for another lock).
    pub fn lock(&self) -> &RawRLock {
        &self.own_lock
    }

    /// Releases `lock` (held by the caller, all levels), waits until
    /// notified or `deadline` (`None`: forever), and reacquires it.
    /// `Ok(true)` when notified, `Ok(false)` when the deadline passed.
    ///
    /// Always use the same lock with one condition.
    pub fn wait<L: ConditionLock + ?Sized>(
        &self,
        lock: &L,
        deadline: Option<Instant>,
    ) -> Result<bool, WaitError> {
        if !lock.held_by_current_thread() {
            return Err(WaitError::NotOwner);
        }
        let me = owner::me();
        let place = self.register(me);
        let levels = lock.release_for_wait()?;
        match place {
            Place::Slot(i) => self.sleep_in_slot(&self.slots[i], deadline),
            Place::Overflow(seen) => {
                self.overflow.wait_until(deadline, || {
                    // Relaxed: EventCount's notify publishes the bump.
                    (self.overflow_epoch.load(Ordering::Relaxed) != seen).then_some(())
                });
            }
        }
        let died = lock.reacquire_after_wait(levels);
        let notified = self.leave(place);
        if died {
            Err(WaitError::OwnerDied)
        } else {
            Ok(notified)
        }
    }

    /// Waits until `predicate` (called with the lock held) returns true, or
    /// the deadline passes; returns the predicate's last value (Python's
    /// `wait_for`).
    pub fn wait_for<L: ConditionLock + ?Sized>(
        &self,
        lock: &L,
        mut predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool, WaitError> {
        if !lock.held_by_current_thread() {
            return Err(WaitError::NotOwner);
        }
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait(lock, deadline)?;
        }
    }

    /// [`wait`](Self::wait) with a timeout (`None`: forever).
    pub fn wait_timeout<L: ConditionLock + ?Sized>(
        &self,
        lock: &L,
        timeout: Option<Duration>,
    ) -> Result<bool, WaitError> {
        self.wait(lock, timeout.and_then(deadline_after))
    }

    /// Wakes at most `n` of the threads waiting now, oldest first. The
    /// caller must hold `lock`.
    pub fn notify<L: ConditionLock + ?Sized>(&self, lock: &L, n: u32) -> Result<(), NotOwner> {
        if !lock.held_by_current_thread() {
            return Err(NotOwner);
        }
        let mut left = n;
        // Relaxed (this and every field access below): all are written
        // under the lock we hold (SYNC(lock-handoff) orders them), except
        // the WAITING -> SLEEPING step, which the swap below reads.
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting > 0 && left > 0 {
            left -= self.notify_oldest_slots(left.min(waiting));
        }
        if left > 0 && self.overflow_waiting.load(Ordering::Relaxed) > 0 {
            self.overflow_epoch.fetch_add(1, Ordering::Relaxed);
            self.overflow.notify_all();
        }
        Ok(())
    }

    /// Wakes every thread waiting now. The caller must hold `lock`.
    pub fn notify_all<L: ConditionLock + ?Sized>(&self, lock: &L) -> Result<(), NotOwner> {
        self.notify(lock, u32::MAX)
    }

    /// How many threads wait now (a snapshot; exact under the lock).
    pub fn waiters(&self) -> u32 {
        // Relaxed: a count written under the lock; a snapshot otherwise.
        self.waiting.load(Ordering::Relaxed) + self.overflow_waiting.load(Ordering::Relaxed)
    }

    /// Takes a slot (or an overflow place) for `me`. Under the lock.
    fn register(&self, me: Me) -> Place {
        // Relaxed (all accesses here): under the lock (SYNC(lock-handoff)).
        let free = self
            .slots
            .iter()
            .position(|s| s.state.load(Ordering::Relaxed) == FREE)
            .or_else(|| self.reclaim_dead_slot(me));
        let Some(i) = free else {
            self.overflow_waiting.fetch_add(1, Ordering::Relaxed);
            return Place::Overflow(self.overflow_epoch.load(Ordering::Relaxed));
        };
        let slot = &self.slots[i];
        let ticket = self.next_ticket.load(Ordering::Relaxed);
        self.next_ticket
            .store(ticket.wrapping_add(1), Ordering::Relaxed);
        slot.ticket.store(ticket, Ordering::Relaxed);
        slot.stamp.store(me.stamp, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        slot.state.store(WAITING, Ordering::Relaxed);
        Place::Slot(i)
    }

    /// Frees the slot of a dead waiter, if any. Under the lock; reads
    /// `/proc` for each busy slot, so only when the table is full.
    #[cold]
    fn reclaim_dead_slot(&self, me: Me) -> Option<usize> {
        self.slots.iter().position(|slot| {
            // Relaxed: under the lock (SYNC(lock-handoff)).
            let stamp = slot.stamp.load(Ordering::Relaxed);
            if !owner::owner_is_dead(owner::stamp_tid(stamp), stamp, me) {
                return false;
            }
            // Relaxed: under the lock; the dead waiter touches nothing.
            let old = slot.state.swap(FREE, Ordering::Relaxed);
            if old == WAITING || old == SLEEPING {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            true
        })
    }

    /// Sleeps on `slot` until it is NOTIFIED or the deadline passes.
    fn sleep_in_slot(&self, slot: &WaitSlot, deadline: Option<Instant>) {
        for _ in 0..shim::SPIN_ROUNDS {
            // Relaxed: only ends the sleep; the outcome is read again under
            // the lock in `leave`.
            if slot.state.load(Ordering::Relaxed) == NOTIFIED {
                return;
            }
            shim::spin_loop();
        }
        // Relaxed: tells a notifier to wake us; the notifier's swap reads it.
        if slot
            .state
            .compare_exchange(WAITING, SLEEPING, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // NOTIFIED meanwhile
        }
        loop {
            let r = shim::futex_wait(&slot.state, SLEEPING, deadline);
            // Relaxed: as above.
            if slot.state.load(Ordering::Relaxed) == NOTIFIED {
                return;
            }
            if r == Wake::TimedOut && deadline.is_some_and(|d| cfg!(loom) || Instant::now() >= d) {
                return;
            }
        }
    }

    /// Gives up the place after the wait; `true` if it was notified. Under
    /// the lock (reacquired).
    fn leave(&self, place: Place) -> bool {
        // Relaxed (all accesses here): under the lock (SYNC(lock-handoff));
        // a notifier's NOTIFIED was written under it too.
        match place {
            Place::Slot(i) => {
                let old = self.slots[i].state.swap(FREE, Ordering::Relaxed);
                if old != NOTIFIED {
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                }
                old == NOTIFIED
            }
            Place::Overflow(seen) => {
                self.overflow_waiting.fetch_sub(1, Ordering::Relaxed);
                self.overflow_epoch.load(Ordering::Relaxed) != seen
            }
        }
    }

    /// Notifies the `k` oldest waiting slots (`k <= waiting`); returns how
    /// many it notified. Under the lock.
    fn notify_oldest_slots(&self, k: u32) -> u32 {
        // Relaxed (all accesses here): under the lock (SYNC(lock-handoff)).
        let next = self.next_ticket.load(Ordering::Relaxed);
        // (age, index) of every waiting slot; older = larger age.
        let mut found = [(0u32, 0usize); WAIT_SLOTS];
        let mut len = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            let state = slot.state.load(Ordering::Relaxed);
            if state == WAITING || state == SLEEPING {
                let age = next.wrapping_sub(slot.ticket.load(Ordering::Relaxed));
                found[len] = (age, i);
                len += 1;
            }
        }
        let found = &mut found[..len];
        if (k as usize) < len {
            found.sort_unstable_by_key(|&(age, _)| std::cmp::Reverse(age));
        }
        let mut notified = 0;
        for &(_, i) in found.iter().take(k as usize) {
            let slot = &self.slots[i];
            // The swap reads a concurrent WAITING -> SLEEPING step of the
            // waiter (which holds no lock), so a sleeper is always woken.
            if slot.state.swap(NOTIFIED, Ordering::Relaxed) == SLEEPING {
                shim::futex_wake(&slot.state, 1);
            }
            notified += 1;
        }
        self.waiting.fetch_sub(notified, Ordering::Relaxed);
        notified
    }
}

// SAFETY: repr(C): a RawRLock (ShmSafe), atomics, an EventCount (ShmSafe),
// a plain u32 and an array of repr(C) slots of atomics; no pointers, no
// destructor. Every bit pattern is handled: unknown slot states are neither
// FREE nor waiting (such a slot is reclaimed once its stamp's thread is
// dead), counters only bound scans, `external_lock` is only compared.
// All-zero is a condition without waiters.
#[cfg(not(loom))]
unsafe impl ShmSafe for RawCondition {}

// SAFETY: `ObjectKind::Condition` is stored only for `RawCondition`;
// version 1 is the layout above with 64 slots.
#[cfg(not(loom))]
unsafe impl ShmObject for RawCondition {
    const KIND: ObjectKind = ObjectKind::Condition;
    const VERSION: u32 = 1;
}

/// The lock a [`Condition`] works with.
#[cfg(not(loom))]
#[derive(Debug, Clone)]
enum LockInUse {
    /// The condition's own RLock (inside its shared object).
    Own,
    /// A separate [`Lock`].
    Lock(Lock),
    /// A separate [`RLock`].
    RLock(RLock),
}

/// Python's `multiprocessing.Condition`: a [`RawCondition`] in its own
/// shared object, with its own RLock (Python's default) or a separate
/// [`Lock`] or [`RLock`].
///
/// Clones and fork children use the same condition; another process gets
/// it with [`open`](Condition::open) (own lock) or
/// [`open_with_lock`](Condition::open_with_lock) /
/// [`open_with_rlock`](Condition::open_with_rlock) (separate lock, opened
/// by its own handle first).
///
/// # Example
///
/// ```
/// use multiproc::process::Process;
/// use multiproc::sync::Condition;
/// use std::time::Duration;
///
/// let cond = Condition::new()?;
/// let guard = cond.acquire().expect("nobody died holding it");
/// let child = Process::new({
///     let cond = cond.clone();
///     move || {
///         // Gets the lock once the parent waits, and notifies it.
///         let _g = cond.acquire_timeout(Duration::from_secs(30)).unwrap();
///         cond.notify(1).unwrap();
///     }
/// });
/// child.start()?;
/// assert_eq!(cond.wait(Some(Duration::from_secs(30))), Ok(true));
/// drop(guard);
/// assert_eq!(child.join(Some(Duration::from_secs(30)))?, 0);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct Condition {
    shared: ShmBox<RawCondition>,
    lock: LockInUse,
}

/// Proof that the calling thread holds (one level of) a [`Condition`]'s
/// lock; releases it on drop.
#[cfg(not(loom))]
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub enum ConditionGuard<'a> {
    /// The guard of a plain lock.
    Lock(LockGuard<'a>),
    /// The guard of a re-entrant lock (the condition's own, or separate).
    RLock(RLockGuard<'a>),
}

#[cfg(not(loom))]
impl ConditionGuard<'_> {
    /// Marks the protected data repaired after an `OwnerDied`.
    pub fn make_consistent(&self) {
        match self {
            ConditionGuard::Lock(g) => g.make_consistent(),
            ConditionGuard::RLock(g) => g.make_consistent(),
        }
    }
}

#[cfg(not(loom))]
impl Condition {
    /// A condition with its own re-entrant lock, in a new segment.
    pub fn new() -> crate::Result<Condition> {
        Ok(Condition {
            shared: ShmBox::new(RawCondition::new())?,
            lock: LockInUse::Own,
        })
    }

    /// A condition with its own re-entrant lock, placed in `segment`.
    pub fn new_in(segment: &Segment) -> crate::Result<Condition> {
        Ok(Condition {
            shared: ShmBox::new_in(segment, RawCondition::new())?,
            lock: LockInUse::Own,
        })
    }

    /// A condition for a separate plain lock, in a new segment.
    pub fn with_lock(lock: Lock) -> crate::Result<Condition> {
        Self::with_external(LockInUse::Lock(lock), ObjectKind::Lock)
    }

    /// A condition for a separate re-entrant lock, in a new segment.
    pub fn with_rlock(rlock: RLock) -> crate::Result<Condition> {
        Self::with_external(LockInUse::RLock(rlock), ObjectKind::RLock)
    }

    fn with_external(lock: LockInUse, kind: ObjectKind) -> crate::Result<Condition> {
        let mut raw = RawCondition::new();
        raw.external_lock = kind as u32;
        Ok(Condition {
            shared: ShmBox::new(raw)?,
            lock,
        })
    }

    /// The handle that names this condition to another process (a separate
    /// lock has a handle of its own).
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }

    /// Attaches to a condition with its own lock. [`Error::Invalid`] if it
    /// was made for a separate lock (use `open_with_lock`/`open_with_rlock`).
    pub fn open(handle: &Handle) -> crate::Result<Condition> {
        Self::open_checked(handle, LockInUse::Own, 0)
    }

    /// Attaches to a condition made for the separate plain `lock`.
    /// [`Error::Invalid`] if it was made with another kind of lock.
    pub fn open_with_lock(handle: &Handle, lock: Lock) -> crate::Result<Condition> {
        Self::open_checked(handle, LockInUse::Lock(lock), ObjectKind::Lock as u32)
    }

    /// Attaches to a condition made for the separate re-entrant `rlock`.
    /// [`Error::Invalid`] if it was made with another kind of lock.
    pub fn open_with_rlock(handle: &Handle, rlock: RLock) -> crate::Result<Condition> {
        Self::open_checked(handle, LockInUse::RLock(rlock), ObjectKind::RLock as u32)
    }

    fn open_checked(handle: &Handle, lock: LockInUse, expected: u32) -> crate::Result<Condition> {
        let shared: ShmBox<RawCondition> = ShmBox::open(handle)?;
        let describe = |k: u32| match ObjectKind::from_raw(k) {
            _ if k == 0 => "its own lock".to_owned(),
            Some(kind) => format!("a separate {}", kind.name()),
            None => format!("an unknown lock kind {k}"),
        };
        if shared.external_lock != expected {
            return Err(Error::Invalid(format!(
                "the condition was made with {}, but is opened with {}",
                describe(shared.external_lock),
                describe(expected)
            )));
        }
        Ok(Condition { shared, lock })
    }

    /// The condition in shared memory.
    pub fn raw(&self) -> &RawCondition {
        &self.shared
    }

    /// The lock in use, as the raw layer sees it.
    fn lock_in_use(&self) -> &dyn ConditionLock {
        match &self.lock {
            LockInUse::Own => self.shared.lock(),
            LockInUse::Lock(l) => &**l,
            LockInUse::RLock(r) => &**r,
        }
    }

    /// Acquires the condition's lock (Python's `with cond:`).
    pub fn acquire(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.acquire_until(None)
    }

    /// Acquires the lock if free (or its holder is dead).
    pub fn try_acquire(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.acquire_until(Some(Instant::now()))
    }

    /// Waits at most `timeout` for the lock.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever) for the lock.
    pub fn acquire_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        match &self.lock {
            LockInUse::Own => self
                .shared
                .lock()
                .acquire_until(deadline)
                .map(ConditionGuard::RLock)
                .map_err(|e| e.map(ConditionGuard::RLock)),
            LockInUse::Lock(l) => l
                .acquire_until(deadline)
                .map(ConditionGuard::Lock)
                .map_err(|e| e.map(ConditionGuard::Lock)),
            LockInUse::RLock(r) => r
                .acquire_until(deadline)
                .map(ConditionGuard::RLock)
                .map_err(|e| e.map(ConditionGuard::RLock)),
        }
    }

    /// Acquires the lock without a guard (for the C API); release it with
    /// [`release`](Self::release).
    pub fn acquire_unguarded(&self, deadline: Option<Instant>) -> Result<(), LockError<()>> {
        match &self.lock {
            LockInUse::Own => self.shared.lock().acquire_unguarded(deadline),
            LockInUse::Lock(l) => l.acquire_unguarded(deadline),
            LockInUse::RLock(r) => r.acquire_unguarded(deadline),
        }
    }

    /// Releases (one level of) the lock held by the caller.
    pub fn release(&self) -> Result<(), NotOwner> {
        match &self.lock {
            LockInUse::Own => self.shared.lock().release(),
            LockInUse::Lock(l) => l.release(),
            LockInUse::RLock(r) => r.release(),
        }
    }

    /// Marks the lock's data repaired after an `OwnerDied`. Holder only.
    pub fn make_consistent(&self) -> Result<(), NotOwner> {
        match &self.lock {
            LockInUse::Own => self.shared.lock().make_consistent(),
            LockInUse::Lock(l) => l.make_consistent(),
            LockInUse::RLock(r) => r.make_consistent(),
        }
    }

    /// Releases the lock, waits until notified or `timeout` (`None`:
    /// forever), reacquires it. `Ok(true)` when notified.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool, WaitError> {
        self.shared
            .wait(self.lock_in_use(), timeout.and_then(deadline_after))
    }

    /// [`wait`](Self::wait) until `deadline` (`None`: forever).
    pub fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, WaitError> {
        self.shared.wait(self.lock_in_use(), deadline)
    }

    /// Waits until `predicate` holds (checked with the lock held) or the
    /// timeout passes; returns its last value (Python's `wait_for`).
    pub fn wait_for(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, WaitError> {
        self.shared.wait_for(
            self.lock_in_use(),
            predicate,
            timeout.and_then(deadline_after),
        )
    }

    /// Wakes at most `n` of the threads waiting now, oldest first. The
    /// caller must hold the lock.
    pub fn notify(&self, n: u32) -> Result<(), NotOwner> {
        self.shared.notify(self.lock_in_use(), n)
    }

    /// Wakes every thread waiting now. The caller must hold the lock.
    pub fn notify_all(&self) -> Result<(), NotOwner> {
        self.shared.notify_all(self.lock_in_use())
    }

    /// How many threads wait now (a snapshot).
    pub fn waiters(&self) -> u32 {
        self.shared.waiters()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn soon() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(10))
    }

    #[test]
    fn wait_and_notify_need_the_lock() {
        let cond = RawCondition::new();
        assert_eq!(cond.wait(cond.lock(), soon()), Err(WaitError::NotOwner));
        assert_eq!(cond.notify(cond.lock(), 1), Err(NotOwner));
        assert_eq!(cond.notify_all(cond.lock()), Err(NotOwner));
        let other = RawLock::new();
        assert_eq!(
            cond.wait_for(&other, || true, None),
            Err(WaitError::NotOwner)
        );
    }

    #[test]
    fn a_timed_out_wait_restores_all_levels() {
        let cond = RawCondition::new();
        let _a = cond.lock().acquire().unwrap();
        let _b = cond.lock().acquire().unwrap();
        let r = cond.wait(cond.lock(), Some(Instant::now() + Duration::from_millis(5)));
        assert_eq!(r, Ok(false));
        assert_eq!(cond.lock().count(), 2);
        assert_eq!(cond.waiters(), 0);
    }

    #[test]
    fn notify_one_wakes_the_oldest_only() {
        let cond = RawCondition::new();
        let lock = RawLock::new();
        let woken = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for expected in 1..=2u32 {
                // Start waiter `expected` only once the previous one waits,
                // so the arrival order is known.
                let deadline = Instant::now() + Duration::from_secs(10);
                while cond.waiters() + 1 < expected {
                    assert!(Instant::now() < deadline, "waiter never arrived");
                    std::thread::yield_now();
                }
                handles.push(s.spawn(|| {
                    let _g = lock.acquire().unwrap();
                    let r = cond.wait(&lock, soon());
                    woken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    r
                }));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while cond.waiters() < 2 {
                assert!(Instant::now() < deadline, "waiters never arrived");
                std::thread::yield_now();
            }
            {
                let _g = lock.acquire().unwrap();
                cond.notify(&lock, 1).unwrap();
            }
            assert_eq!(handles.remove(0).join().unwrap(), Ok(true));
            assert_eq!(woken.load(std::sync::atomic::Ordering::Relaxed), 1);
            {
                let _g = lock.acquire().unwrap();
                assert_eq!(cond.waiters(), 1);
                cond.notify_all(&lock).unwrap();
            }
            assert_eq!(handles.remove(0).join().unwrap(), Ok(true));
        });
    }

    #[test]
    fn overflow_waiters_are_woken_too() {
        let cond = RawCondition::new();
        let lock = RawLock::new();
        {
            // Fill every slot with a (fake) live waiter: ourselves.
            let _g = lock.acquire().unwrap();
            for _ in 0..WAIT_SLOTS {
                assert!(matches!(cond.register(owner::me()), Place::Slot(_)));
            }
        }
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let _g = lock.acquire().unwrap();
                cond.wait(&lock, soon())
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while cond.waiters() < WAIT_SLOTS as u32 + 1 {
                assert!(Instant::now() < deadline, "overflow waiter never arrived");
                std::thread::yield_now();
            }
            let _g = lock.acquire().unwrap();
            cond.notify(&lock, WAIT_SLOTS as u32 + 1).unwrap();
            drop(_g);
            assert_eq!(h.join().unwrap(), Ok(true));
        });
    }
}
