//! An event count: the wait/wake protocol every blocking primitive uses.
//!
//! A waiter polls its condition briefly, then registers on a futex word and
//! sleeps until a notifier changes the word. A notifier makes a syscall only
//! when somebody is registered.
//!
//! # The word
//!
//! | bits   | name     | written by                                         |
//! |--------|----------|----------------------------------------------------|
//! | 0..10  | sleepers | a waiter about to sleep (+1) and after it woke (-1) |
//! | 10..32 | epoch    | every notify (+1, wrapping)                         |
//!
//! | state             | meaning                          | a notify does            |
//! |-------------------|----------------------------------|--------------------------|
//! | sleepers == 0     | nobody sleeps or is about to     | epoch += 1, no syscall   |
//! | sleepers > 0      | that many registered waiters     | epoch += 1, `FUTEX_WAKE` |
//! | sleepers == 1023  | full: further waiters poll (1 ms) | as above                 |
//!
//! A waiter sleeps on the exact word value it read *before* its last check
//! of the condition; any notify after that read changes the epoch, so the
//! kernel refuses the sleep (`EAGAIN`) or the notifier sees the registration
//! and wakes it. No wake-up is lost. A waiter killed while registered leaves
//! its count behind: later notifies then make one needless syscall each,
//! which costs time but never correctness.
//!
//! The epoch has 22 bits: a waiter preempted between its read and its sleep
//! for exactly 2^22 notifies (and no other) would sleep until the next one.

use std::time::{Duration, Instant};

use crate::shim::{self, AtomicU32, Ordering, Wake};

const SLEEPER_BITS: u32 = 10;
const SLEEPERS_MASK: u32 = (1 << SLEEPER_BITS) - 1;
const EPOCH_ONE: u32 = 1 << SLEEPER_BITS;
/// How often a waiter that could not register (the count is full, or no
/// barrier could be made after registering) polls.
const UNREGISTERED_POLL: Duration = Duration::from_millis(1);

/// A futex word that waiters sleep on and notifiers bump. `#[repr(C)]`, four
/// bytes, all-zero is a valid initial state, so it can live in a segment.
///
/// # Example
///
/// ```
/// use multiproc::sync::EventCount;
/// use std::sync::atomic::{AtomicBool, Ordering};
///
/// let ec = EventCount::new();
/// let flag = AtomicBool::new(false);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         flag.store(true, Ordering::Release);
///         ec.notify_all();
///     });
///     let got = ec.wait_until(None, || flag.load(Ordering::Acquire).then_some(()));
///     assert_eq!(got, Some(()));
/// });
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct EventCount {
    /// See the module's table. Starts at 0.
    word: AtomicU32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<EventCount>() == 4);
    assert!(align_of::<EventCount>() == 4);
};

impl EventCount {
    /// An event count with no sleepers.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        EventCount {
            word: AtomicU32::new(0),
        }
    }

    /// An event count with no sleepers.
    #[cfg(loom)]
    pub fn new() -> Self {
        EventCount {
            word: AtomicU32::new(0),
        }
    }

    /// Waits until `ready` returns `Some`, polling briefly and then sleeping
    /// until a notify. Returns `None` when `deadline` passes first (after one
    /// last check). `None` as deadline waits forever.
    ///
    /// `ready` must read the state that notifiers change *before* they call
    /// [`notify`](Self::notify) (with any ordering: the notify publishes it).
    pub fn wait_until<T>(
        &self,
        deadline: Option<Instant>,
        ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        self.wait_until_registered(deadline, || true, ready)
    }

    /// As [`wait_until`](Self::wait_until), for a notifier that does not
    /// call [`notify`](Self::notify) unconditionally but first asks
    /// [`sleepers`](Self::sleepers) (after its state change and a store-load
    /// barrier). `registered` runs once, after this waiter counted itself as
    /// a sleeper and before the check that decides it sleeps: the waiter's
    /// half of that barrier goes there (see
    /// [`asymmetric_fence`](super::asymmetric_fence)). When it returns false
    /// (no barrier could be made), the waiter sleeps in short slices and
    /// looks again instead of trusting a notify to come.
    pub fn wait_until_registered<T>(
        &self,
        deadline: Option<Instant>,
        registered: impl FnOnce() -> bool,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        for _ in 0..shim::SPIN_ROUNDS {
            if let Some(v) = ready() {
                return Some(v);
            }
            shim::spin_loop();
        }
        let mut registered = Some(registered);
        self.wait_slow(
            deadline,
            &mut || registered.take().is_none_or(|f| f()),
            &mut ready,
        )
    }

    #[cold]
    fn wait_slow<T>(
        &self,
        deadline: Option<Instant>,
        after_register: &mut dyn FnMut() -> bool,
        ready: &mut dyn FnMut() -> Option<T>,
    ) -> Option<T> {
        for _ in 0..shim::YIELD_ROUNDS {
            if let Some(v) = ready() {
                return Some(v);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            shim::yield_now();
        }
        let registered = self.register();
        // Without a registration or a barrier, a notifier may not see us.
        let trusted = registered && after_register();
        let result = loop {
            // SYNC(ec-notify): pairs with the Release bump in `notify`; seeing
            // that bump (or a later value) makes the notifier's state visible
            // to `ready` below.
            let seen = self.word.load(Ordering::Acquire);
            if let Some(v) = ready() {
                break Some(v);
            }
            let sleep_until = if trusted {
                deadline
            } else {
                let poll = Instant::now() + UNREGISTERED_POLL;
                Some(deadline.map_or(poll, |d| d.min(poll)))
            };
            if shim::futex_wait(&self.word, seen, sleep_until) == Wake::TimedOut
                && deadline.is_some_and(|d| cfg!(loom) || Instant::now() >= d)
            {
                break ready();
            }
        };
        if registered {
            // Relaxed: the count only decides whether a notifier makes a
            // syscall; a notifier that still sees us makes one needless wake.
            self.word.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }

    /// Adds this waiter to the sleeper count; false when the count is full.
    fn register(&self) -> bool {
        // Relaxed: registration publishes nothing; the Acquire load in
        // `wait_slow` that follows it orders the condition checks.
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            if cur & SLEEPERS_MASK == SLEEPERS_MASK {
                return false;
            }
            match self.word.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Wakes at most `n` sleeping waiters. Call it after changing the state
    /// the waiters check. No syscall when nobody sleeps.
    pub fn notify(&self, n: u32) {
        // SYNC(ec-notify): Release publishes the caller's state change to the
        // waiter whose Acquire load sees this bump. Adding EPOCH_ONE leaves
        // the sleeper bits alone; the epoch wraps.
        let old = self.word.fetch_add(EPOCH_ONE, Ordering::Release);
        if old & SLEEPERS_MASK != 0 {
            shim::futex_wake(&self.word, n);
        }
    }

    /// Wakes every sleeping waiter.
    pub fn notify_all(&self) {
        self.notify(i32::MAX as u32);
    }

    /// The number of registered sleepers now (approximate by nature).
    #[inline]
    pub fn sleepers(&self) -> u32 {
        // Relaxed: a snapshot for diagnostics and tests.
        self.word.load(Ordering::Relaxed) & SLEEPERS_MASK
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn times_out_without_notify() {
        let ec = EventCount::new();
        let start = Instant::now();
        let r: Option<()> = ec.wait_until(Some(start + Duration::from_millis(20)), || None);
        assert_eq!(r, None);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(ec.sleepers(), 0, "a timed-out waiter deregisters");
    }

    #[test]
    fn wakes_a_sleeping_thread() {
        let ec = EventCount::new();
        let flag = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(10);
                ec.wait_until(Some(deadline), || flag.load(Ordering::Acquire).then_some(7))
            });
            // Let the waiter register: wait (with a deadline) until it sleeps.
            let deadline = Instant::now() + Duration::from_secs(10);
            while ec.sleepers() == 0 {
                assert!(Instant::now() < deadline, "waiter never went to sleep");
                std::thread::yield_now();
            }
            flag.store(true, Ordering::Release);
            ec.notify_all();
            assert_eq!(waiter.join().unwrap(), Some(7));
        });
        assert_eq!(ec.sleepers(), 0);
    }
}
