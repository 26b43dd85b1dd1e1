//! The one switch between real and loom-modelled concurrency.
//!
//! `sync` and `queue` take their atomics, `UnsafeCell`, spin hint and futex
//! wait/wake from here and nowhere else. Built with `--cfg loom`, the same
//! algorithm code runs over loom's atomics with threads standing in for
//! processes, and the futex is modelled by a loom `Mutex` + `Condvar`: a wait
//! really blocks until a wake, so a lost wake-up shows up as a loom deadlock
//! instead of passing unnoticed.

use std::time::Instant;

// Not every primitive is used by every layer yet; the shim offers the set.
#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence,
};

/// How many rounds a waiter polls with a `PAUSE` before it yields. Under
/// loom there is no point polling: every interleaving of one check is
/// already explored.
pub(crate) const SPIN_ROUNDS: u32 = if cfg!(loom) { 1 } else { 100 };

/// How many rounds a waiter then polls with `sched_yield` before it sleeps.
/// A peer on the same core gets to run at once (a spin would only delay
/// it); alone on its core a yield returns at once and acts as a slower spin.
pub(crate) const YIELD_ROUNDS: u32 = if cfg!(loom) { 0 } else { 8 };

/// Gives the core to another runnable thread, if any (`sched_yield`).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// A hint inside a spin loop (`PAUSE`); under loom, a yield so the model
/// scheduler can run the thread we are waiting for.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Why a [`futex_wait`] returned. Either way the caller re-checks its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, interrupted, or the word no longer held the expected value.
    Woken,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, until a [`futex_wake`] or the deadline.
///
/// Under loom a wait with a deadline does not block: it models the deadline
/// having passed. A wait without one blocks until a wake.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    let timeout = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Wake::TimedOut,
        },
    };
    match crate::sys::futex_wait(word, expected, timeout) {
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Wake::TimedOut,
        // Woken, EAGAIN (value changed) or EINTR: the caller re-checks.
        _ => Wake::Woken,
    }
}

/// Wakes at most `count` sleepers on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) {
    // A failure here (EFAULT, EINVAL) would mean `word` is not a mapped,
    // aligned u32, which the `&AtomicU32` rules out; nothing to report.
    let _ = crate::sys::futex_wake(word, count);
}

#[cfg(loom)]
mod model {
    use loom::sync::{Condvar, Mutex};

    /// All modelled futexes share one bucket. Waking everybody is allowed by
    /// futex semantics (waiters must tolerate spurious wake-ups).
    pub(super) struct Bucket {
        pub(super) lock: Mutex<()>,
        pub(super) sleepers: Condvar,
    }

    loom::lazy_static! {
        pub(super) static ref BUCKET: Bucket = Bucket { lock: Mutex::new(()), sleepers: Condvar::new() };
    }
}

#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    if deadline.is_some() {
        return Wake::TimedOut;
    }
    let guard = model::BUCKET.lock.lock().unwrap();
    // The kernel compares the word under the bucket lock; so do we.
    if word.load(Ordering::Relaxed) != expected {
        return Wake::Woken;
    }
    drop(model::BUCKET.sleepers.wait(guard).unwrap());
    Wake::Woken
}

#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32, _count: u32) {
    let _guard = model::BUCKET.lock.lock().unwrap();
    model::BUCKET.sleepers.notify_all();
}

/// `UnsafeCell` with loom's `with`/`with_mut` access, so loom can check
/// that no access races with another.
#[cfg(not(loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
#[allow(dead_code)]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the value.
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the value.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::cell::UnsafeCell;
