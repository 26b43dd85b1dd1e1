//! Counting semaphores shared between processes: Python's
//! `multiprocessing.Semaphore` and `BoundedSemaphore`.
//!
//! [`RawSemaphore`] is the shared layout and its algorithm: a permit count
//! and an [`EventCount`] where acquirers sleep when the count is zero.
//! Acquire is one CAS when a permit is free; release is one CAS plus one
//! `fetch_add` on the event count, and a `FUTEX_WAKE` only when somebody
//! sleeps.
//!
//! A release wakes one sleeper. If that process is killed after the kernel
//! woke it and before it took the permit, the permit stays in the count and
//! the other sleepers sleep on until their timeout or the next release: a
//! death can delay, never lose, a permit.

#[cfg(not(loom))]
use std::ops::Deref;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shim::{AtomicU32, Ordering};
#[cfg(not(loom))]
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};
use crate::sync::EventCount;

/// A counting semaphore in shared memory. `#[repr(C)]`, 12 bytes, works at
/// any 4-aligned address in a segment; every process that maps it may call
/// every method.
///
/// # Example
///
/// ```
/// use multiproc::sync::RawSemaphore;
///
/// let sem = RawSemaphore::new(1, Some(1)).unwrap();
/// sem.acquire();
/// assert!(!sem.try_acquire());
/// sem.release().unwrap();
/// assert!(sem.release().is_err(), "a bounded semaphore refuses a release past its maximum");
/// assert_eq!(sem.value(), 1);
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawSemaphore {
    /// Permits free now: `0 ..= max`, or `0 ..= u32::MAX` when unbounded.
    /// Acquirers take one with a CAS that never goes below zero; releasers
    /// add one with a CAS that never goes past the maximum.
    count: AtomicU32,
    /// The maximum of `count`, or 0 for an unbounded semaphore. Written once
    /// by the creator before the semaphore is shared; read-only afterwards.
    max: u32,
    /// Where acquirers sleep while `count` is zero. Releasers notify one
    /// sleeper after each permit they add.
    waiters: EventCount,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RawSemaphore>() == 12);
    assert!(align_of::<RawSemaphore>() == 4);
};

impl RawSemaphore {
    /// A semaphore with `initial` permits. `max` bounds the count
    /// (Python's `BoundedSemaphore`); `None` leaves it unbounded.
    ///
    /// [`Error::Invalid`] when `max` is `Some(0)` or below `initial`.
    pub fn new(initial: u32, max: Option<u32>) -> Result<Self> {
        let max = match max {
            None => 0,
            Some(0) => {
                return Err(Error::Invalid(
                    "a bounded semaphore needs a maximum of at least 1".into(),
                ));
            }
            Some(m) if initial > m => {
                return Err(Error::Invalid(format!(
                    "initial value {initial} is above the maximum {m}"
                )));
            }
            Some(m) => m,
        };
        Ok(RawSemaphore {
            count: AtomicU32::new(initial),
            max,
            waiters: EventCount::new(),
        })
    }

    /// The maximum value, or `None` when unbounded.
    pub fn max(&self) -> Option<u32> {
        (self.max != 0).then_some(self.max)
    }

    /// The number of free permits now (a snapshot; Python's `get_value`).
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot that synchronizes with nothing.
        self.count.load(Ordering::Relaxed)
    }

    /// How many acquirers sleep in the kernel now (approximate by nature;
    /// for diagnostics and tests).
    pub fn sleepers(&self) -> u32 {
        self.waiters.sleepers()
    }

    /// Takes a permit if one is free, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        // Relaxed: only a guess for the CAS below, which checks it.
        let mut cur = self.count.load(Ordering::Relaxed);
        while cur > 0 {
            // SYNC(sem-permit): Acquire pairs with the Release CAS in
            // `release`, so what the releaser did before giving the permit
            // back is visible to the process that takes it.
            match self.count.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
        false
    }

    /// Takes a permit, waiting as long as it takes.
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            // Without a deadline the wait ends only with a permit.
            let _ = self.acquire_slow(None);
        }
    }

    /// Takes a permit, waiting at most `timeout` ([`Error::Timeout`]).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.acquire_until(deadline_after(timeout))
    }

    /// Takes a permit, waiting until one is free or `deadline` passes
    /// ([`Error::Timeout`]); `None` waits without limit.
    #[inline]
    pub fn acquire_until(&self, deadline: Option<Instant>) -> Result<()> {
        if self.try_acquire() {
            return Ok(());
        }
        self.acquire_slow(deadline)
    }

    /// Takes a permit (waiting as long as it takes) and returns a guard
    /// that gives it back when dropped.
    pub fn acquire_guard(&self) -> SemaphoreGuard<'_> {
        self.acquire();
        SemaphoreGuard { sem: self }
    }

    /// Takes a permit if one is free now, with a guard that gives it back.
    pub fn try_acquire_guard(&self) -> Option<SemaphoreGuard<'_>> {
        self.try_acquire().then_some(SemaphoreGuard { sem: self })
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Instant>) -> Result<()> {
        self.waiters
            .wait_until(deadline, || self.try_acquire().then_some(()))
            .ok_or(Error::Timeout)
    }

    /// Gives a permit back and wakes one sleeping acquirer, if any.
    ///
    /// [`Error::Value`] when the count is already at its maximum (a bounded
    /// semaphore released more often than acquired, or `u32::MAX` permits);
    /// the count is unchanged then.
    #[inline]
    pub fn release(&self) -> Result<()> {
        let limit = if self.max == 0 { u32::MAX } else { self.max };
        // Relaxed: only a guess for the CAS below, which checks it.
        let mut cur = self.count.load(Ordering::Relaxed);
        loop {
            if cur >= limit {
                return Err(Error::Value(format!(
                    "semaphore released too many times: its value is already the maximum {limit}"
                )));
            }
            // SYNC(sem-permit): Release publishes the caller's writes to the
            // acquirer whose Acquire CAS takes this permit.
            match self.count.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        // One permit, one sleeper: whoever wakes re-checks with
        // `try_acquire`; if a spinning acquirer was faster, the woken one
        // sleeps again and the permit went to somebody anyway.
        self.waiters.notify(1);
        Ok(())
    }
}

// SAFETY: repr(C) of an AtomicU32, a u32 and an EventCount: no pointers,
// no destructor; every bit pattern is a valid count, bound and event count
// (a count above the bound only makes releases fail).
#[cfg(not(loom))]
unsafe impl ShmSafe for RawSemaphore {}

// SAFETY: the only type stored as `ObjectKind::Semaphore`; the version
// changes with the layout.
#[cfg(not(loom))]
unsafe impl ShmObject for RawSemaphore {
    const KIND: ObjectKind = ObjectKind::Semaphore;
    const VERSION: u32 = 1;
}

/// Python's `multiprocessing.Semaphore`: a [`RawSemaphore`] in a shared
/// segment, inherited by fork children as it is and reachable from other
/// processes through its [`Handle`]. Derefs to [`RawSemaphore`] for
/// `acquire`, `release` and the rest. Clones share the semaphore.
///
/// # Example
///
/// ```
/// use multiproc::sync::Semaphore;
/// use std::time::Duration;
///
/// let sem = Semaphore::new(2)?;
/// sem.acquire();
/// sem.acquire_timeout(Duration::from_secs(1))?;
/// assert!(!sem.try_acquire());
/// sem.release()?;
/// assert_eq!(sem.value(), 1);
/// let again = Semaphore::open(&sem.handle())?;
/// assert_eq!(again.value(), 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct Semaphore {
    shared: ShmBox<RawSemaphore>,
}

#[cfg(not(loom))]
impl Semaphore {
    /// An unbounded semaphore with `initial` permits, in a segment of its own.
    pub fn new(initial: u32) -> Result<Self> {
        Self::with_max(initial, None)
    }

    /// A semaphore with `initial` permits, bounded by `max` when given (see
    /// [`RawSemaphore::new`] for the errors), in a segment of its own.
    pub fn with_max(initial: u32, max: Option<u32>) -> Result<Self> {
        let shared = ShmBox::new(RawSemaphore::new(initial, max)?)?;
        Ok(Semaphore { shared })
    }

    /// As [`with_max`](Self::with_max), placed in `segment`.
    pub fn with_max_in(segment: &Segment, initial: u32, max: Option<u32>) -> Result<Self> {
        let shared = ShmBox::new_in(segment, RawSemaphore::new(initial, max)?)?;
        Ok(Semaphore { shared })
    }

    /// The handle that names this semaphore to another process.
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }

    /// Attaches to a semaphore (bounded or not) by its handle; errors as
    /// [`ShmBox::open`].
    pub fn open(handle: &Handle) -> Result<Self> {
        Ok(Semaphore {
            shared: ShmBox::open(handle)?,
        })
    }
}

#[cfg(not(loom))]
impl Deref for Semaphore {
    type Target = RawSemaphore;

    fn deref(&self) -> &RawSemaphore {
        &self.shared
    }
}

/// Python's `multiprocessing.BoundedSemaphore`: a [`Semaphore`] whose
/// value may never exceed its initial value; a release past it is
/// [`Error::Value`] and changes nothing.
///
/// # Example
///
/// ```
/// use multiproc::{Error, sync::BoundedSemaphore};
///
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(matches!(sem.release(), Err(Error::Value(_))));
/// sem.acquire();
/// sem.release()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

#[cfg(not(loom))]
impl BoundedSemaphore {
    /// A semaphore with `initial` permits and `initial` as its maximum, in
    /// a segment of its own. [`Error::Invalid`] when `initial` is 0 (it
    /// could never be acquired).
    pub fn new(initial: u32) -> Result<Self> {
        Ok(BoundedSemaphore {
            sem: Semaphore::with_max(initial, Some(initial))?,
        })
    }

    /// The handle that names this semaphore to another process.
    pub fn handle(&self) -> Handle {
        self.sem.handle()
    }

    /// Attaches to a bounded semaphore by its handle; [`Error::Kind`] for
    /// an unbounded one, other errors as [`ShmBox::open`].
    pub fn open(handle: &Handle) -> Result<Self> {
        let sem = Semaphore::open(handle)?;
        if sem.max().is_none() {
            return Err(Error::Kind {
                expected: "bounded semaphore",
                found: "unbounded semaphore".into(),
            });
        }
        Ok(BoundedSemaphore { sem })
    }
}

#[cfg(not(loom))]
impl Deref for BoundedSemaphore {
    type Target = RawSemaphore;

    fn deref(&self) -> &RawSemaphore {
        &self.sem
    }
}

#[cfg(not(loom))]
impl From<BoundedSemaphore> for Semaphore {
    fn from(b: BoundedSemaphore) -> Semaphore {
        b.sem
    }
}

/// A permit of a [`RawSemaphore`], released when dropped.
#[must_use = "dropping the guard releases the permit at once"]
#[derive(Debug)]
pub struct SemaphoreGuard<'a> {
    sem: &'a RawSemaphore,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Only a bounded semaphore released behind the guard's back (more
        // releases than acquisitions) can refuse; the permit is then
        // already counted, so there is nothing to give back.
        let _ = self.sem.release();
    }
}

/// The deadline `timeout` from now; `None` (no limit) when that is past
/// the end of time.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_permits() {
        let sem = RawSemaphore::new(2, None).unwrap();
        assert_eq!(sem.max(), None);
        assert!(sem.try_acquire());
        assert!(sem.try_acquire());
        assert!(!sem.try_acquire());
        assert_eq!(sem.value(), 0);
        sem.release().unwrap();
        assert_eq!(sem.value(), 1);
    }

    #[test]
    fn times_out_when_empty() {
        let sem = RawSemaphore::new(0, None).unwrap();
        let start = Instant::now();
        let r = sem.acquire_timeout(Duration::from_millis(20));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn bounded_release_past_max_is_a_value_error() {
        let sem = RawSemaphore::new(1, Some(2)).unwrap();
        sem.release().unwrap();
        let err = sem.release().unwrap_err();
        assert!(matches!(err, Error::Value(_)), "{err:?}");
        assert!(err.to_string().contains("maximum 2"), "{err}");
        assert_eq!(sem.value(), 2, "a refused release changes nothing");
    }

    #[test]
    fn unbounded_release_past_u32_max_is_a_value_error() {
        let sem = RawSemaphore::new(u32::MAX, None).unwrap();
        assert!(matches!(sem.release(), Err(Error::Value(_))));
        assert_eq!(sem.value(), u32::MAX);
    }

    #[test]
    fn bad_bounds_are_invalid() {
        assert!(matches!(
            RawSemaphore::new(0, Some(0)),
            Err(Error::Invalid(_))
        ));
        let err = RawSemaphore::new(3, Some(2)).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)));
        assert!(err.to_string().contains("above the maximum 2"), "{err}");
    }

    #[test]
    fn release_wakes_a_sleeping_thread() {
        let sem = RawSemaphore::new(0, None).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| sem.acquire_timeout(Duration::from_secs(10)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while sem.waiters.sleepers() == 0 {
                assert!(Instant::now() < deadline, "acquirer never went to sleep");
                std::thread::yield_now();
            }
            sem.release().unwrap();
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(sem.value(), 0);
    }

    #[test]
    fn guard_gives_the_permit_back() {
        let sem = RawSemaphore::new(1, Some(1)).unwrap();
        {
            let _g = sem.acquire_guard();
            assert_eq!(sem.value(), 0);
            assert!(sem.try_acquire_guard().is_none());
        }
        assert_eq!(sem.value(), 1);
        drop(sem.try_acquire_guard().unwrap());
        assert_eq!(sem.value(), 1);
    }

    #[test]
    fn huge_timeout_means_no_deadline() {
        assert_eq!(deadline_after(Duration::MAX), None);
        assert!(deadline_after(Duration::from_secs(1)).is_some());
    }
}
