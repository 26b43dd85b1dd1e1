//! `futex(2)` on a word in shared memory.
//!
//! The operations never use `FUTEX_PRIVATE_FLAG`: the waiter and the waker
//! are usually different processes mapping the same page at different
//! addresses, and only a shared futex is keyed by the physical page.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// `futex(word, FUTEX_WAIT, expected, timeout)`: sleeps while `*word == expected`.
///
/// Returns `Ok(())` when woken (possibly spuriously), and an error of kind
/// `WouldBlock` when the word did not hold `expected`, `TimedOut` when the
/// relative `timeout` elapsed, `Interrupted` on a signal. Callers re-check
/// their condition in every case.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| rustix::fs::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()).map_err(io::Error::from)
}

/// `futex(word, FUTEX_WAKE, count)`: wakes at most `count` sleepers on `word`.
///
/// Returns how many were woken.
pub fn futex_wake(word: &AtomicU32, count: u32) -> io::Result<usize> {
    futex::wake(word, futex::Flags::empty(), count).map_err(io::Error::from)
}
