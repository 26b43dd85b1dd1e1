//! An event flag shared between processes: Python's `multiprocessing.Event`.
//!
//! [`RawEvent`] is the shared layout and its algorithm: a state word (the
//! flag plus a count of how often it was set) and an [`EventCount`] where
//! waiters sleep. `set` on a set event writes nothing; `set` with nobody
//! asleep makes no syscall.
//!
//! One difference from Python, in the waiter's favour: a `wait` returns
//! `true` when the event was set at any moment during the wait, even if it
//! was cleared again before the waiter ran (Python's multiprocessing
//! version would report `false`, as if the set never happened).

#[cfg(not(loom))]
use std::ops::Deref;
use std::time::{Duration, Instant};

use super::semaphore::deadline_after;
#[cfg(not(loom))]
use crate::error::Result;
use crate::shim::{AtomicU32, Ordering};
#[cfg(not(loom))]
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};
use crate::sync::EventCount;

/// Bit 0 of [`RawEvent::state`]: the flag.
const SET: u32 = 1;
/// What one clear-to-set transition adds to [`RawEvent::state`]: bits 1..32
/// count the transitions, wrapping.
const SET_COUNT_ONE: u32 = 2;

/// An event in shared memory. `#[repr(C)]`, 8 bytes, all-zero is a clear
/// event, works at any 4-aligned address in a segment.
///
/// # The state word
///
/// | bits  | name      | written by                                   |
/// |-------|-----------|----------------------------------------------|
/// | 0     | set       | `set` (0 -> 1), `clear` (1 -> 0)             |
/// | 1..32 | set count | `set`, +1 on every 0 -> 1 transition, wraps  |
///
/// A waiter that saw the word with the flag clear is done as soon as the
/// flag is set or the set count moved. It could miss a set only if exactly
/// 2^31 sets happened between two of its looks.
///
/// # Example
///
/// ```
/// use multiproc::sync::RawEvent;
///
/// let ev = RawEvent::new();
/// assert!(!ev.is_set());
/// ev.set();
/// assert!(ev.wait_timeout(std::time::Duration::from_secs(1)));
/// ev.clear();
/// assert!(!ev.is_set());
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    /// The flag and the set count; see the table above.
    state: AtomicU32,
    /// Where waiters sleep; `set` notifies all of them.
    waiters: EventCount,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RawEvent>() == 8);
    assert!(align_of::<RawEvent>() == 4);
};

impl RawEvent {
    /// A clear event.
    pub fn new() -> Self {
        RawEvent {
            state: AtomicU32::new(0),
            waiters: EventCount::new(),
        }
    }

    /// Whether the flag is set now. Seeing it set makes everything the
    /// setter wrote before `set` visible.
    pub fn is_set(&self) -> bool {
        // SYNC(event-set): Acquire pairs with the Release in `set`.
        self.state.load(Ordering::Acquire) & SET != 0
    }

    /// How many waiters sleep in the kernel now (approximate by nature;
    /// for diagnostics and tests).
    pub fn sleepers(&self) -> u32 {
        self.waiters.sleepers()
    }

    /// Sets the flag and wakes every waiter. Does nothing (writes nothing)
    /// when it is set already; no syscall when nobody sleeps.
    pub fn set(&self) {
        // SYNC(event-set): Release publishes what the caller wrote before
        // `set` to the waiter that sees the new word with Acquire.
        let changed = self
            .state
            .fetch_update(Ordering::Release, Ordering::Relaxed, |s| {
                (s & SET == 0).then(|| s.wrapping_add(SET_COUNT_ONE) | SET)
            });
        if changed.is_ok() {
            self.waiters.notify_all();
        }
    }

    /// Clears the flag. Later waiters sleep until the next `set`.
    pub fn clear(&self) {
        // Relaxed: clearing publishes nothing; waiters learn only from
        // `set`, which is ordered by its own Release.
        self.state.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Waits as long as it takes for the event to be set.
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Waits at most `timeout` for the event to be set. Returns `true` when
    /// it was set during the wait (or already), `false` on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(deadline_after(timeout))
    }

    /// Waits until the event is set or `deadline` passes (`None`: no limit).
    /// Returns `true` when the event was set during the wait (or already),
    /// `false` on timeout.
    pub fn wait_until(&self, deadline: Option<Instant>) -> bool {
        // SYNC(event-set): Acquire, as in `is_set`.
        let start = self.state.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        let fired = || {
            // SYNC(event-set): Acquire, as in `is_set`.
            let now = self.state.load(Ordering::Acquire);
            (now & SET != 0 || now != start).then_some(())
        };
        self.waiters.wait_until(deadline, fired).is_some()
    }
}

// SAFETY: repr(C) of an AtomicU32 and an EventCount: no pointers, no
// destructor, every bit pattern a valid state (see the table).
#[cfg(not(loom))]
unsafe impl ShmSafe for RawEvent {}

// SAFETY: the only type stored as `ObjectKind::Event`; the version changes
// with the layout.
#[cfg(not(loom))]
unsafe impl ShmObject for RawEvent {
    const KIND: ObjectKind = ObjectKind::Event;
    const VERSION: u32 = 1;
}

/// Python's `multiprocessing.Event`: a [`RawEvent`] in a shared segment,
/// inherited by fork children as it is and reachable from other processes
/// through its [`Handle`]. Derefs to [`RawEvent`] for `set`, `clear`,
/// `is_set` and the waits. Clones share the event.
///
/// # Example
///
/// ```
/// use multiproc::sync::Event;
/// use std::time::Duration;
///
/// let ev = Event::new()?;
/// assert!(!ev.wait_timeout(Duration::from_millis(1)));
/// Event::open(&ev.handle())?.set();
/// assert!(ev.is_set());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct Event {
    shared: ShmBox<RawEvent>,
}

#[cfg(not(loom))]
impl Event {
    /// A clear event in a segment of its own.
    pub fn new() -> Result<Self> {
        Ok(Event {
            shared: ShmBox::new(RawEvent::new())?,
        })
    }

    /// A clear event placed in `segment`.
    pub fn new_in(segment: &Segment) -> Result<Self> {
        Ok(Event {
            shared: ShmBox::new_in(segment, RawEvent::new())?,
        })
    }

    /// The handle that names this event to another process.
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }

    /// Attaches to an event by its handle; errors as [`ShmBox::open`].
    pub fn open(handle: &Handle) -> Result<Self> {
        Ok(Event {
            shared: ShmBox::open(handle)?,
        })
    }
}

#[cfg(not(loom))]
impl Deref for Event {
    type Target = RawEvent;

    fn deref(&self) -> &RawEvent {
        &self.shared
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn set_clear_is_set() {
        let ev = RawEvent::new();
        assert!(!ev.is_set());
        ev.set();
        ev.set();
        assert!(ev.is_set());
        assert_eq!(ev.state.load(Ordering::Relaxed), SET | SET_COUNT_ONE);
        ev.clear();
        assert!(!ev.is_set());
    }

    #[test]
    fn wait_times_out_when_clear() {
        let ev = RawEvent::new();
        let start = Instant::now();
        assert!(!ev.wait_timeout(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn set_then_clear_still_wakes_a_sleeper() {
        let ev = RawEvent::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| ev.wait_timeout(Duration::from_secs(10)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while ev.waiters.sleepers() == 0 {
                assert!(Instant::now() < deadline, "waiter never went to sleep");
                std::thread::yield_now();
            }
            ev.set();
            ev.clear();
            assert!(waiter.join().unwrap(), "the set during the wait counts");
        });
    }
}
