//! A reusable barrier shared between processes: Python's
//! `multiprocessing.Barrier`.
//!
//! [`RawBarrier`] is the shared layout and its algorithm: one 64-bit state
//! word changed only by CAS (so a process killed at any instruction leaves
//! it consistent) and an [`EventCount`] where waiting parties sleep.
//!
//! Semantics follow Python's: `wait` returns an arrival index in
//! `0 .. parties` (the last to arrive gets `parties - 1`); `abort` breaks the
//! barrier, and every waiter and later arrival gets [`Error::Broken`] until
//! `reset`; `reset` starts a fresh round, and parties still waiting in the
//! old one get [`Error::Broken`]. A party whose timeout passes breaks the
//! barrier for all: the others get [`Error::Broken`], the party that timed
//! out gets [`Error::Timeout`] (Python raises `BrokenBarrierError` in both
//! cases; the C convention is that running out of time is `MP_ERR_TIMEOUT`).
//!
//! A party killed while others wait leaves them waiting for it; with
//! timeouts, the first timeout breaks the barrier and nobody waits longer
//! than their own timeout.

#[cfg(not(loom))]
use std::ops::Deref;
use std::time::{Duration, Instant};

use super::semaphore::deadline_after;
use crate::error::{Error, Result};
use crate::shim::{AtomicU64, Ordering};
#[cfg(not(loom))]
use crate::shm::{Handle, ObjectKind, Segment, ShmBox, ShmObject, ShmSafe};
use crate::sync::EventCount;

/// Bits 0..24 of the state: parties that arrived in the current round.
const ARRIVED_MASK: u64 = (1 << 24) - 1;
/// Bit 24: the current round is broken (abort, or a party timed out).
const BROKEN: u64 = 1 << 24;
/// Bits 25..32: how the last rounds ended. Bit `25 + i` is 1 when the round
/// that ended `i + 1` rounds ago passed, 0 when it was reset.
const HISTORY_SHIFT: u32 = 25;
/// How many past rounds the history remembers.
const HISTORY_LEN: u32 = 7;
const HISTORY_MASK: u64 = ((1 << HISTORY_LEN) - 1) << HISTORY_SHIFT;
/// Bits 32..64: the round number, wrapping.
const GEN_SHIFT: u32 = 32;

/// The most parties a barrier can have (the arrival count has 24 bits).
pub const MAX_PARTIES: u32 = (1 << 24) - 1;

/// A barrier in shared memory. `#[repr(C)]`, 16 bytes, works at any
/// 8-aligned address in a segment.
///
/// # The state word
///
/// | bits   | name    | written by                                            |
/// |--------|---------|-------------------------------------------------------|
/// | 0..24  | arrived | each arrival (+1); the last arrival and `reset` (-> 0) |
/// | 24     | broken  | `abort` and a party timing out (-> 1); pass, `reset` (-> 0) |
/// | 25..32 | history | pass (shift in 1), `reset` (shift in 0)                |
/// | 32..64 | round   | pass and `reset` (+1, wrapping)                        |
///
/// | state                     | a party arriving                    |
/// |---------------------------|-------------------------------------|
/// | broken                    | gets `Broken` at once               |
/// | arrived + 1 < parties     | counts itself, sleeps until the round moves or breaks |
/// | arrived + 1 == parties    | ends the round (pass) and wakes all |
///
/// A waiter of round `r` that sees round `r + d` looks up history bit
/// `d - 1` to learn whether its round passed or was reset. After more than
/// 7 round ends it can no longer tell and reports `Broken`, the safe answer.
///
/// # Example
///
/// ```
/// use multiproc::sync::RawBarrier;
///
/// let barrier = RawBarrier::new(2).unwrap();
/// let indices = std::thread::scope(|s| {
///     let other = s.spawn(|| barrier.wait().unwrap());
///     let mine = barrier.wait().unwrap();
///     [mine, other.join().unwrap()]
/// });
/// assert_eq!(indices[0] + indices[1], 1, "one got 0, the other 1");
/// ```
#[repr(C)]
#[derive(Debug)]
pub struct RawBarrier {
    /// Arrivals, broken flag, history and round; see the table above.
    /// Changed only by CAS.
    state: AtomicU64,
    /// How many parties a round needs: `1 ..= MAX_PARTIES`. Written once by
    /// the creator before the barrier is shared; read-only afterwards.
    parties: u32,
    /// Where waiting parties sleep; every change of round or of the broken
    /// flag notifies all.
    waiters: EventCount,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RawBarrier>() == 16);
    assert!(align_of::<RawBarrier>() == 8);
};

fn arrived(state: u64) -> u64 {
    state & ARRIVED_MASK
}

fn round(state: u64) -> u32 {
    (state >> GEN_SHIFT) as u32
}

/// The state that starts the round after `state`'s, recording whether the
/// old round `passed`.
fn next_round(state: u64, passed: bool) -> u64 {
    let history = ((state & HISTORY_MASK) << 1 | (passed as u64) << HISTORY_SHIFT) & HISTORY_MASK;
    let next = round(state).wrapping_add(1) as u64;
    next << GEN_SHIFT | history
}

/// How the round `mine` ended, seen from `state` (a later round): `true`
/// when it passed.
fn passed(state: u64, mine: u32) -> bool {
    let ago = round(state).wrapping_sub(mine);
    (1..=HISTORY_LEN).contains(&ago) && state & (1 << (HISTORY_SHIFT + ago - 1)) != 0
}

impl RawBarrier {
    /// A barrier for `parties` parties.
    ///
    /// [`Error::Invalid`] when `parties` is 0 or above [`MAX_PARTIES`].
    pub fn new(parties: u32) -> Result<Self> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::Invalid(format!(
                "a barrier needs 1 ..= {MAX_PARTIES} parties, not {parties}"
            )));
        }
        Ok(RawBarrier {
            state: AtomicU64::new(0),
            parties,
            waiters: EventCount::new(),
        })
    }

    /// How many parties a round needs.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// How many parties wait in the current round (0 when broken), a snapshot.
    pub fn n_waiting(&self) -> u32 {
        // Relaxed: a snapshot that synchronizes with nothing.
        let s = self.state.load(Ordering::Relaxed);
        if s & BROKEN != 0 {
            0
        } else {
            arrived(s) as u32
        }
    }

    /// Whether the barrier is broken (until `reset`).
    pub fn broken(&self) -> bool {
        // Relaxed: a snapshot that synchronizes with nothing.
        self.state.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Waits as long as it takes for the round to fill; see
    /// [`wait_until`](Self::wait_until).
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(None)
    }

    /// Waits at most `timeout` for the round to fill; see
    /// [`wait_until`](Self::wait_until).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(deadline_after(timeout))
    }

    /// Waits until `parties` parties have called `wait` in this round, and
    /// returns this party's arrival index (`0 .. parties`).
    ///
    /// Everything any party wrote before its `wait` is visible to every
    /// party after its `wait` returns `Ok`.
    ///
    /// Errors: [`Error::Broken`] when the barrier is or becomes broken or is
    /// reset while waiting; [`Error::Timeout`] when `deadline` passes first,
    /// which breaks the barrier for the others.
    pub fn wait_until(&self, deadline: Option<Instant>) -> Result<u32> {
        // Relaxed: only a guess for the CAS below, which checks it.
        let mut s = self.state.load(Ordering::Relaxed);
        let (mine, index) = loop {
            if s & BROKEN != 0 {
                return Err(Error::Broken);
            }
            let index = arrived(s);
            let last = index + 1 == u64::from(self.parties);
            let new = if last { next_round(s, true) } else { s + 1 };
            // SYNC(barrier-arrive): Release publishes this party's writes;
            // the chain of arrival CASes is one release sequence, so the
            // last arrival's Acquire sees every party's writes. It then
            // passes them on with SYNC(barrier-pass).
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if last => {
                    self.waiters.notify_all();
                    return Ok(index as u32);
                }
                Ok(_) => break (round(s), index as u32),
                Err(now) => s = now,
            }
        };
        let outcome = |s: u64| {
            if round(s) != mine {
                Some(if passed(s, mine) {
                    Ok(index)
                } else {
                    Err(Error::Broken)
                })
            } else if s & BROKEN != 0 {
                Some(Err(Error::Broken))
            } else {
                None
            }
        };
        // SYNC(barrier-pass): Acquire pairs with the last arrival's AcqRel
        // CAS that moved the round.
        let look = || outcome(self.state.load(Ordering::Acquire));
        match self.waiters.wait_until(deadline, look) {
            Some(result) => result,
            None => self.break_after_timeout(mine, outcome),
        }
    }

    /// Breaks round `mine` because this party's deadline passed, unless the
    /// round ended meanwhile (then its outcome stands).
    #[cold]
    fn break_after_timeout(
        &self,
        mine: u32,
        outcome: impl Fn(u64) -> Option<Result<u32>>,
    ) -> Result<u32> {
        // SYNC(barrier-pass): Acquire, as in `wait`, in case the round
        // passed just now.
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            if let Some(result) = outcome(s) {
                return result;
            }
            debug_assert_eq!(round(s), mine);
            // Success Relaxed: the broken flag publishes no data. Failure
            // Acquire: the new value may be the pass, see above.
            match self.state.compare_exchange_weak(
                s,
                s | BROKEN,
                Ordering::Relaxed,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        self.waiters.notify_all();
        Err(Error::Timeout)
    }

    /// Breaks the barrier: every waiting party and every later arrival gets
    /// [`Error::Broken`] until [`reset`](Self::reset).
    pub fn abort(&self) {
        // Relaxed: the broken flag publishes no data.
        self.state.fetch_or(BROKEN, Ordering::Relaxed);
        self.waiters.notify_all();
    }

    /// Starts a fresh, unbroken round. Parties waiting in the current round
    /// get [`Error::Broken`].
    pub fn reset(&self) {
        // Relaxed: a reset publishes no data; waiters learn their outcome
        // from the history bit it shifts in.
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            let new = next_round(s, false);
            match self
                .state
                .compare_exchange_weak(s, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => s = now,
            }
        }
        self.waiters.notify_all();
    }
}

// SAFETY: repr(C) of an AtomicU64, a u32 and an EventCount, padded to 16
// bytes: no pointers, no destructor. Every state word is a state of the
// table; a `parties` of 0 (only from corrupt bytes) makes every arrival
// count without ever passing, which waits or times out, never misbehaves.
#[cfg(not(loom))]
unsafe impl ShmSafe for RawBarrier {}

// SAFETY: the only type stored as `ObjectKind::Barrier`; the version
// changes with the layout.
#[cfg(not(loom))]
unsafe impl ShmObject for RawBarrier {
    const KIND: ObjectKind = ObjectKind::Barrier;
    const VERSION: u32 = 1;
}

/// Python's `multiprocessing.Barrier`: a [`RawBarrier`] in a shared
/// segment, inherited by fork children as it is and reachable from other
/// processes through its [`Handle`]. Derefs to [`RawBarrier`] for `wait`,
/// `abort`, `reset` and the rest. Clones share the barrier.
///
/// # Example
///
/// ```
/// use multiproc::{Error, sync::Barrier};
///
/// let barrier = Barrier::new(1)?;
/// assert_eq!(barrier.wait()?, 0, "one party: every round passes at once");
/// barrier.abort();
/// assert!(matches!(barrier.wait(), Err(Error::Broken)));
/// barrier.reset();
/// assert_eq!(Barrier::open(&barrier.handle())?.wait()?, 0);
/// assert!(matches!(Barrier::new(0), Err(Error::Invalid(_))));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[cfg(not(loom))]
#[derive(Debug, Clone)]
pub struct Barrier {
    shared: ShmBox<RawBarrier>,
}

#[cfg(not(loom))]
impl Barrier {
    /// A barrier for `parties` parties in a segment of its own;
    /// [`Error::Invalid`] for 0 parties or more than [`MAX_PARTIES`].
    pub fn new(parties: u32) -> Result<Self> {
        Ok(Barrier {
            shared: ShmBox::new(RawBarrier::new(parties)?)?,
        })
    }

    /// As [`new`](Self::new), placed in `segment`.
    pub fn new_in(segment: &Segment, parties: u32) -> Result<Self> {
        Ok(Barrier {
            shared: ShmBox::new_in(segment, RawBarrier::new(parties)?)?,
        })
    }

    /// The handle that names this barrier to another process.
    pub fn handle(&self) -> Handle {
        self.shared.handle()
    }

    /// Attaches to a barrier by its handle; errors as [`ShmBox::open`].
    pub fn open(handle: &Handle) -> Result<Self> {
        Ok(Barrier {
            shared: ShmBox::open(handle)?,
        })
    }
}

#[cfg(not(loom))]
impl Deref for Barrier {
    type Target = RawBarrier;

    fn deref(&self) -> &RawBarrier {
        &self.shared
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn zero_or_too_many_parties_is_invalid() {
        assert!(matches!(RawBarrier::new(0), Err(Error::Invalid(_))));
        assert!(matches!(
            RawBarrier::new(MAX_PARTIES + 1),
            Err(Error::Invalid(_))
        ));
        assert_eq!(RawBarrier::new(MAX_PARTIES).unwrap().parties(), MAX_PARTIES);
    }

    #[test]
    fn one_party_passes_at_once_every_round() {
        let b = RawBarrier::new(1).unwrap();
        for _ in 0..20 {
            assert_eq!(b.wait().unwrap(), 0);
        }
        assert_eq!(round(b.state.load(Ordering::Relaxed)), 20);
    }

    #[test]
    fn history_tells_pass_from_reset() {
        let s = next_round(0, true); // round 0 passed
        let s = next_round(s, false); // round 1 reset
        let s = next_round(s, true); // round 2 passed
        assert_eq!(round(s), 3);
        assert!(passed(s, 0));
        assert!(!passed(s, 1));
        assert!(passed(s, 2));
        assert!(!passed(s, 3), "the current round has not ended");
        let mut far = s;
        for _ in 0..HISTORY_LEN {
            far = next_round(far, true);
        }
        assert!(!passed(far, 0), "too long ago: reported as broken");
        assert!(passed(far, 3));
    }

    #[test]
    fn round_number_wraps() {
        let s = (u32::MAX as u64) << GEN_SHIFT;
        let s = next_round(s, true);
        assert_eq!(round(s), 0);
        assert!(passed(s, u32::MAX));
    }

    #[test]
    fn timeout_breaks_it_for_everyone() {
        let b = RawBarrier::new(3).unwrap();
        std::thread::scope(|s| {
            let patient = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while b.n_waiting() == 0 {
                assert!(Instant::now() < deadline, "first party never arrived");
                std::thread::yield_now();
            }
            let r = b.wait_timeout(Duration::from_millis(10));
            assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
            let r = patient.join().unwrap();
            assert!(matches!(r, Err(Error::Broken)), "{r:?}");
        });
        assert!(b.broken());
        assert_eq!(b.n_waiting(), 0);
        assert!(matches!(b.wait(), Err(Error::Broken)));
        b.reset();
        assert!(!b.broken());
    }

    #[test]
    fn reset_breaks_the_waiters_of_the_round() {
        let b = RawBarrier::new(2).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| b.wait_timeout(Duration::from_secs(10)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while b.n_waiting() == 0 {
                assert!(Instant::now() < deadline, "party never arrived");
                std::thread::yield_now();
            }
            b.reset();
            let r = waiter.join().unwrap();
            assert!(matches!(r, Err(Error::Broken)), "{r:?}");
        });
        assert!(!b.broken());
        assert_eq!(b.n_waiting(), 0);
    }
}
