//! loom models of the semaphore, event and barrier algorithms, with threads
//! standing in for processes. Waits use no deadline: under loom a wait with
//! one returns at once, and one without blocks until a wake, so a lost
//! wake-up is reported as a deadlock.
//!
//! Run with `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom
//! LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_sem_event_barrier`.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use multiproc::Error;
use multiproc::sync::{RawBarrier, RawEvent, RawSemaphore};

/// Two threads through a one-permit semaphore: never both inside, and both
/// get through (a release that finds the other asleep wakes it).
#[test]
fn semaphore_never_over_admits() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(1, Some(1)).unwrap());
        let inside = Arc::new(AtomicU32::new(0));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (sem, inside) = (sem.clone(), inside.clone());
                thread::spawn(move || {
                    sem.acquire();
                    // Relaxed: the semaphore orders the critical sections.
                    let before = inside.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(before, 0, "two holders of a one-permit semaphore");
                    inside.fetch_sub(1, Ordering::Relaxed);
                    sem.release().unwrap();
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 1);
    });
}

/// Two sleepers, two releases from a third thread: each release wakes
/// somebody and both acquirers finish.
#[test]
fn semaphore_loses_no_wake_up() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(0, None).unwrap());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let sem = sem.clone();
                thread::spawn(move || sem.acquire())
            })
            .collect();
        sem.release().unwrap();
        sem.release().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    });
}

/// The releaser's writes are visible to the acquirer that takes its permit.
#[test]
fn semaphore_publishes_the_releasers_writes() {
    loom::model(|| {
        let sem = Arc::new(RawSemaphore::new(0, None).unwrap());
        let data = Arc::new(loom::cell::UnsafeCell::new(0u32));
        let (sem2, data2) = (sem.clone(), data.clone());
        let producer = thread::spawn(move || {
            // SAFETY: the consumer reads only after acquiring the permit
            // released below; loom checks that claim.
            data2.with_mut(|p| unsafe { *p = 42 });
            sem2.release().unwrap();
        });
        sem.acquire();
        // SAFETY: ordered after the producer's write by the permit.
        assert_eq!(data.with(|p| unsafe { *p }), 42);
        producer.join().unwrap();
    });
}

/// Two waiters and a setter: both waiters wake and see the flag.
#[test]
fn event_set_wakes_every_waiter() {
    loom::model(|| {
        let ev = Arc::new(RawEvent::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let ev = ev.clone();
                thread::spawn(move || assert!(ev.wait_until(None)))
            })
            .collect();
        ev.set();
        for w in waiters {
            w.join().unwrap();
        }
        assert!(ev.is_set());
    });
}

/// `n` threads through an `n`-party barrier for `rounds` rounds: each round
/// hands out every index once, and nobody is left asleep.
fn barrier_rounds(n: u32, rounds: u32) {
    loom::model(move || {
        let barrier = Arc::new(RawBarrier::new(n).unwrap());
        let seen = Arc::new(AtomicU32::new(0));
        let parties: Vec<_> = (0..n)
            .map(|_| {
                let (barrier, seen) = (barrier.clone(), seen.clone());
                thread::spawn(move || {
                    for _ in 0..rounds {
                        let index = barrier.wait().unwrap();
                        assert!(index < n);
                        // Relaxed: only the total is checked, after join.
                        seen.fetch_or(1 << index, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for p in parties {
            p.join().unwrap();
        }
        assert_eq!(seen.load(Ordering::Relaxed), (1 << n) - 1);
        assert_eq!(barrier.n_waiting(), 0);
    });
}

#[test]
fn barrier_two_parties_two_rounds() {
    barrier_rounds(2, 2);
}

#[test]
fn barrier_three_parties_one_round() {
    barrier_rounds(3, 1);
}

/// What each party wrote before `wait` is visible to the other after it.
#[test]
fn barrier_publishes_every_partys_writes() {
    loom::model(|| {
        let barrier = Arc::new(RawBarrier::new(2).unwrap());
        let cells = Arc::new([
            loom::cell::UnsafeCell::new(0u32),
            loom::cell::UnsafeCell::new(0u32),
        ]);
        let (b2, cells2) = (barrier.clone(), cells.clone());
        let other = thread::spawn(move || {
            // SAFETY: cell 1 is written only here, before the barrier;
            // cell 0 is read only after it. loom checks that claim.
            cells2[1].with_mut(|p| unsafe { *p = 2 });
            b2.wait().unwrap();
            // SAFETY: as above.
            assert_eq!(cells2[0].with(|p| unsafe { *p }), 1);
        });
        // SAFETY: the mirror image of the other party's accesses.
        cells[0].with_mut(|p| unsafe { *p = 1 });
        barrier.wait().unwrap();
        // SAFETY: as above.
        assert_eq!(cells[1].with(|p| unsafe { *p }), 2);
        other.join().unwrap();
    });
}

/// A party waiting alone is released with `Broken` by an abort.
#[test]
fn barrier_abort_breaks_a_waiter() {
    loom::model(|| {
        let barrier = Arc::new(RawBarrier::new(2).unwrap());
        let b2 = barrier.clone();
        let waiter = thread::spawn(move || b2.wait());
        barrier.abort();
        assert!(matches!(waiter.join().unwrap(), Err(Error::Broken)));
        assert!(barrier.broken());
    });
}

/// A reset races with a party's arrival, and then a second party arrives
/// with a deadline that (under loom) passes at once. Every combination ends
/// without a hang, and the two parties agree: both pass with indices 0 and
/// 1, or the first is broken (by the reset or by the timeout) and the
/// second timed out.
#[test]
fn barrier_reset_and_timeout_race_an_arrival() {
    loom::model(|| {
        let barrier = Arc::new(RawBarrier::new(2).unwrap());
        let b2 = barrier.clone();
        let first = thread::spawn(move || b2.wait());
        barrier.reset();
        let second = barrier.wait_until(Some(std::time::Instant::now()));
        match (first.join().unwrap(), second) {
            (Ok(a), Ok(b)) => assert_eq!(a + b, 1),
            (Err(Error::Broken), Err(Error::Timeout)) => assert!(barrier.broken()),
            other => panic!("parties disagree: {other:?}"),
        }
    });
}
