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
/// `count` is clamped to `i32::MAX`: the kernel reads it as a signed `int`,
/// so `u32::MAX` would arrive as -1 and wake a single sleeper instead of all.
///
/// Returns how many were woken.
pub fn futex_wake(word: &AtomicU32, count: u32) -> io::Result<usize> {
    let count = count.min(i32::MAX as u32);
    futex::wake(word, futex::Flags::empty(), count).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Barrier};

    /// Two sleepers, one wake with `u32::MAX`: both must wake (the kernel
    /// would read an unclamped `u32::MAX` as -1 and wake only one).
    #[test]
    fn wake_u32_max_wakes_every_sleeper() {
        let word = Arc::new(AtomicU32::new(0));
        let ready = Arc::new(Barrier::new(3));
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let (word, ready) = (Arc::clone(&word), Arc::clone(&ready));
                std::thread::spawn(move || {
                    ready.wait();
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    while word.load(Ordering::SeqCst) == 0 {
                        let left = deadline
                            .checked_duration_since(std::time::Instant::now())
                            .expect("never woken");
                        let _ = futex_wait(&word, 0, Some(left));
                    }
                })
            })
            .collect();
        ready.wait();
        // The word stays 0, so woken sleepers go back to sleep; once both
        // sleep at the same time, one call must wake both.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if futex_wake(&word, u32::MAX).unwrap() == 2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "a wake with u32::MAX never woke both sleepers"
            );
            std::thread::yield_now();
        }
        word.store(1, Ordering::SeqCst);
        futex_wake(&word, u32::MAX).unwrap();
        for s in sleepers {
            s.join().unwrap();
        }
    }
}
