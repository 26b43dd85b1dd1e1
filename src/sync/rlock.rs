//! A process-shared, robust re-entrant lock: Python's `multiprocessing.RLock`.
//!
//! The owning thread may acquire it again; it is free once released as
//! many times as acquired. The lock word, waiting and owner-death recovery
//! are those of [`RawLock`] (see its module for the truth table); this type
//! adds only the recursion count.
//!
//! Every acquisition of an inconsistent lock, re-entrant ones included, is
//! told `OwnerDied`, so nested code learns that the data may need repair.

use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::lock::{
    Acquired, LockError, NotOwner, RawLock, TimedOut, deadline_after, to_guard_result,
};
use super::owner::{self, Me};
use crate::shim::{AtomicU32, Ordering};
#[cfg(not(loom))]
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};

/// A robust, process-shared, re-entrant lock, placed in shared memory.
/// All-zero bytes are an unlocked, consistent lock.
///
/// # Example
///
/// ```
/// use multiproc::sync::RawRLock;
///
/// let rlock = RawRLock::new();
/// let outer = rlock.acquire().unwrap();
/// let inner = rlock.acquire().unwrap(); // the owner may re-enter
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(!rlock.is_locked());
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawRLock {
    /// The underlying lock; held while `count > 0`.
    lock: RawLock,
    /// How many times the holder has acquired it and not yet released it:
    /// `1..` while held, 0 when free. Written only by the holder (set to 1
    /// by the acquisition that takes the lock, including a takeover).
    count: AtomicU32,
    /// Zero; keeps the size a multiple of the alignment.
    _reserved: u32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RawRLock>() == 24);
    assert!(align_of::<RawRLock>() == 8);
};

impl RawRLock {
    /// An unlocked, consistent re-entrant lock (the same as all-zero bytes).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        RawRLock {
            lock: RawLock::new(),
            count: AtomicU32::new(0),
            _reserved: 0,
        }
    }

    /// An unlocked, consistent re-entrant lock (the same as all-zero bytes).
    #[cfg(loom)]
    pub fn new() -> Self {
        RawRLock {
            lock: RawLock::new(),
            count: AtomicU32::new(0),
            _reserved: 0,
        }
    }

    /// Blocks until acquired (at once if the caller holds it already).
    pub fn acquire(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_until(None)
    }

    /// Acquires it if it is free, held by the caller, or held by a dead owner.
    pub fn try_acquire(&self) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_until(Some(Instant::now()))
    }

    /// Waits at most `timeout`.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Waits until `deadline` (`None`: forever).
    pub fn acquire_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<RLockGuard<'_>, LockError<RLockGuard<'_>>> {
        to_guard_result(self.acquire_as(owner::me(), deadline), || RLockGuard {
            rlock: self,
            _not_send: PhantomData,
        })
    }

    /// Python's `acquire(timeout=...)` without a guard: on `Ok(())` or
    /// `Err(LockError::OwnerDied(()))` the caller holds one more level and
    /// must [`release`](Self::release) it from the same thread.
    pub fn acquire_unguarded(&self, deadline: Option<Instant>) -> Result<(), LockError<()>> {
        to_guard_result(self.acquire_as(owner::me(), deadline), || ())
    }

    /// Releases one level (Python's `release`); the last one frees the lock.
    pub fn release(&self) -> Result<(), NotOwner> {
        let me = owner::me();
        if !self.lock.held_by(me) {
            return Err(NotOwner);
        }
        // Relaxed: the count is written only by the holder, which we are.
        let c = self.count.load(Ordering::Relaxed);
        if c > 1 {
            self.count.store(c - 1, Ordering::Relaxed);
        } else {
            // Relaxed: published by the unlock's Release (SYNC(lock-handoff)).
            self.count.store(0, Ordering::Relaxed);
            self.lock.release_held(me);
        }
        Ok(())
    }

    /// Marks the protected data repaired after an `OwnerDied`. Holder only.
    pub fn make_consistent(&self) -> Result<(), NotOwner> {
        self.lock.make_consistent()
    }

    /// The calling thread's recursion level: 0 unless it holds the lock
    /// (Python's `RLock._recursion_count()`).
    pub fn count(&self) -> u32 {
        if self.lock.held_by(owner::me()) {
            // Relaxed: our own write.
            self.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Whether some thread holds it now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// Whether the calling thread holds it.
    pub fn is_held_by_current_thread(&self) -> bool {
        self.lock.is_held_by_current_thread()
    }

    /// Whether no holder died since the last `make_consistent`.
    pub fn is_consistent(&self) -> bool {
        self.lock.is_consistent()
    }

    pub(crate) fn acquire_as(
        &self,
        me: Me,
        deadline: Option<Instant>,
    ) -> Result<Acquired, TimedOut> {
        if self.lock.held_by(me) {
            // Relaxed: the count is written only by the holder, which we are.
            let c = self.count.load(Ordering::Relaxed);
            let c = c.checked_add(1).expect("RLock recursion count overflow");
            self.count.store(c, Ordering::Relaxed);
            return Ok(self.lock.held_state());
        }
        let acquired = self.lock.acquire_as(me, deadline)?;
        // Relaxed: written under the lock (SYNC(lock-handoff)).
        self.count.store(1, Ordering::Relaxed);
        Ok(acquired)
    }

    /// Releases every level held by `me`, for a condition wait; returns how
    /// many to restore.
    pub(crate) fn release_all(&self, me: Me) -> Result<u32, NotOwner> {
        if !self.lock.held_by(me) {
            return Err(NotOwner);
        }
        // Relaxed: the holder's own value; the store is published by the
        // unlock's Release (SYNC(lock-handoff)).
        let levels = self.count.swap(0, Ordering::Relaxed);
        self.lock.release_held(me);
        Ok(levels)
    }

    /// Reacquires after a condition wait and restores `levels`.
    pub(crate) fn reacquire(&self, me: Me, levels: u32) -> Acquired {
        let acquired = match self.lock.acquire_as(me, None) {
            Ok(a) => a,
            Err(TimedOut) => unreachable!("no deadline"),
        };
        // Relaxed: written under the lock (SYNC(lock-handoff)).
        self.count.store(levels, Ordering::Relaxed);
        acquired
    }
}

// SAFETY: repr(C): a RawLock (ShmSafe, see there), an atomic count and a
// plain u32; no pointers, no destructor. Any count is handled (only the
// holder reads it, and a takeover resets it). All-zero is unlocked.
#[cfg(not(loom))]
unsafe impl ShmSafe for RawRLock {}

// SAFETY: `ObjectKind::RLock` is stored only for `RawRLock`; version 1 is
// the layout above (lock, count, reserved: 24 bytes).
#[cfg(not(loom))]
unsafe impl ShmObject for RawRLock {
    const KIND: ObjectKind = ObjectKind::RLock;
    const VERSION: u32 = 1;
}

/// Python's `multiprocessing.RLock`: a robust [`RawRLock`] in its own
/// shared object. Clones, fork children and processes that
/// [`open`](RLock::open) its [`handle`](RLock::handle) all use the same
/// lock. Everything else is [`RawRLock`]'s API (through `Deref`).
///
/// # Example
///
/// ```
/// use multiproc::sync::RLock;
///
/// let rlock = RLock::new()?;
/// let same = RLock::open(&rlock.handle())?; // as another process would
/// let _outer = rlock.acquire().unwrap();
/// let _inner = same.acquire().unwrap();
/// assert_eq!(rlock.count(), 2);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct RLock {
    shared: ShmBox<RawRLock>,
}

#[cfg(not(loom))]
impl RLock {
    /// An unlocked re-entrant lock in a new segment of the default backing.
    pub fn new() -> crate::Result<RLock> {
        Ok(RLock {
            shared: ShmBox::new(RawRLock::new())?,
        })
    }

    /// An unlocked re-entrant lock placed in `segment`.
    pub fn new_in(segment: &Segment) -> crate::Result<RLock> {
        Ok(RLock {
            shared: ShmBox::new_in(segment, RawRLock::new())?,
        })
    }

    /// The handle that names this lock to another process.
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }

    /// Attaches to the re-entrant lock a handle names.
    /// [`Error::Kind`](crate::Error::Kind) for a handle of another object.
    pub fn open(handle: &Handle) -> crate::Result<RLock> {
        Ok(RLock {
            shared: ShmBox::open(handle)?,
        })
    }

    /// The segment the lock lives in.
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }
}

#[cfg(not(loom))]
impl std::ops::Deref for RLock {
    type Target = RawRLock;

    fn deref(&self) -> &RawRLock {
        &self.shared
    }
}

/// Proof that the calling thread holds one level of a [`RawRLock`];
/// releases that level on drop. Not `Send`.
#[must_use = "the level is released when the guard is dropped"]
pub struct RLockGuard<'a> {
    rlock: &'a RawRLock,
    _not_send: PhantomData<*const ()>,
}

impl RLockGuard<'_> {
    /// Marks the protected data repaired after an `OwnerDied`. Dropping
    /// every guard without calling it leaves the lock inconsistent: the
    /// next acquirer is told `OwnerDied`.
    pub fn make_consistent(&self) {
        // We hold the lock, so this cannot fail.
        let _ = self.rlock.make_consistent();
    }

    /// The lock this guard holds a level of.
    pub fn rlock(&self) -> &RawRLock {
        self.rlock
    }
}

impl std::fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RLockGuard").finish_non_exhaustive()
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Not the owner only if levels were released explicitly meanwhile.
        let _ = self.rlock.release();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn reentry_counts_levels() {
        let r = RawRLock::new();
        assert_eq!(r.release(), Err(NotOwner));
        let a = r.acquire().unwrap();
        let b = r.try_acquire().unwrap();
        let c = r.acquire_timeout(Duration::from_millis(1)).unwrap();
        assert_eq!(r.count(), 3);
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(r.count(), 0);
                assert_eq!(r.release(), Err(NotOwner));
                assert!(matches!(r.try_acquire(), Err(LockError::Timeout)));
            });
        });
        drop(c);
        drop(b);
        assert!(r.is_locked());
        drop(a);
        assert!(!r.is_locked());
        assert_eq!(r.count(), 0);
    }

    #[test]
    fn a_dead_owner_three_levels_deep_is_taken_over() {
        let r = RawRLock::new();
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..3 {
                    r.acquire_unguarded(None).unwrap();
                }
            });
        });
        let g = r
            .acquire_timeout(Duration::from_secs(10))
            .unwrap_err()
            .into_guard()
            .expect("OwnerDied");
        assert_eq!(r.count(), 1, "a takeover starts at one level");
        // Re-entry while inconsistent is told too.
        let inner = r.acquire().unwrap_err().into_guard().unwrap();
        inner.make_consistent();
        drop(inner);
        assert!(r.is_consistent());
        drop(g);
        assert!(!r.is_locked());
    }

    #[test]
    fn release_all_and_reacquire_restore_the_levels() {
        let r = RawRLock::new();
        let me = owner::me();
        r.acquire_unguarded(None).unwrap();
        r.acquire_unguarded(None).unwrap();
        assert_eq!(r.release_all(me), Ok(2));
        assert!(!r.is_locked());
        assert_eq!(r.reacquire(me, 2), Acquired::Clean);
        assert_eq!(r.count(), 2);
        r.release().unwrap();
        r.release().unwrap();
        assert_eq!(r.release(), Err(NotOwner));
    }
}
