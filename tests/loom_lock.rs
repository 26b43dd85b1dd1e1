//! loom models of Lock, RLock and Condition, with threads standing in for
//! processes. Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_lock`.
//!
//! Under loom, owners are loom thread numbers and are always alive (there
//! is no `/proc`), so these models check the word protocol: mutual
//! exclusion, re-entry, and that no wake-up is lost. Owner death is tested
//! with real processes in `tests/sync_lock.rs`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use multiproc::sync::{RawCondition, RawLock, RawRLock};

/// Data that only the lock holder may touch; loom reports a race if two
/// threads access it at once.
struct Guarded<L> {
    lock: L,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is accessed only while `lock` is held, which is exactly
// what the models check (loom's UnsafeCell flags any overlap).
unsafe impl<L: Sync> Sync for Guarded<L> {}

fn increment(g: &Guarded<RawLock>) {
    let _guard = g.lock.acquire().expect("nobody dies under loom");
    // SAFETY: the lock is held; loom checks no other access overlaps.
    g.value.with_mut(|v| unsafe { *v += 1 });
}

/// Two threads and the main thread increment under the lock: no access
/// overlaps and no increment is lost; the word ends unlocked.
#[test]
fn lock_excludes_three_threads() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            lock: RawLock::new(),
            value: UnsafeCell::new(0),
        });
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                thread::spawn(move || increment(&g))
            })
            .collect();
        increment(&g);
        for h in handles {
            h.join().unwrap();
        }
        assert!(!g.lock.is_locked());
        // SAFETY: every other thread has been joined.
        assert_eq!(g.value.with(|v| unsafe { *v }), 3);
    });
}

/// A thread re-enters the RLock while another contends for it: the
/// contender gets it only after the last level is released.
#[test]
fn rlock_reentry_excludes_a_contender() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            lock: RawRLock::new(),
            value: UnsafeCell::new(0),
        });
        let g2 = g.clone();
        let other = thread::spawn(move || {
            let _a = g2.lock.acquire().unwrap();
            // SAFETY: the lock is held.
            g2.value.with_mut(|v| unsafe { *v += 10 });
        });
        {
            let _a = g.lock.acquire().unwrap();
            let _b = g.lock.acquire().unwrap();
            assert_eq!(g.lock.count(), 2);
            // SAFETY: the lock is held (two levels).
            g.value.with_mut(|v| unsafe { *v += 1 });
            drop(_b);
            // Still held after releasing the inner level.
            // SAFETY: the lock is held (one level).
            g.value.with_mut(|v| unsafe { *v += 1 });
        }
        other.join().unwrap();
        // SAFETY: the other thread has been joined.
        assert_eq!(g.value.with(|v| unsafe { *v }), 12);
        assert!(!g.lock.is_locked());
    });
}

/// The waiter checks the flag under the lock and waits; the notifier sets
/// it under the lock and notifies one. Whatever the interleaving, the
/// waiter wakes (a lost wake-up would be a loom deadlock).
#[test]
fn condition_wait_sees_the_notify() {
    loom::model(|| {
        let cond = Arc::new(RawCondition::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (cond2, flag2) = (cond.clone(), flag.clone());
        let notifier = thread::spawn(move || {
            let _g = cond2.lock().acquire().unwrap();
            // Relaxed: under the lock.
            flag2.store(true, Ordering::Relaxed);
            cond2.notify(cond2.lock(), 1).unwrap();
        });
        {
            let _g = cond.lock().acquire().unwrap();
            let got = cond.wait_for(cond.lock(), || flag.load(Ordering::Relaxed), None);
            assert_eq!(got, Ok(true));
        }
        notifier.join().unwrap();
        assert_eq!(cond.waiters(), 0);
    });
}

/// Two waiters on a plain Lock, two single notifies after both
/// registered-or-not: every waiter whose predicate holds wakes.
#[test]
fn condition_two_waiters_two_notifies() {
    loom::model(|| {
        let cond = Arc::new(RawCondition::new());
        let lock = Arc::new(RawLock::new());
        let tokens = Arc::new(UnsafeCell::new(0u32));
        struct Shared(Arc<UnsafeCell<u32>>);
        // SAFETY: the counter is touched only under `lock`.
        unsafe impl Send for Shared {}
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (cond, lock, tokens) = (cond.clone(), lock.clone(), Shared(tokens.clone()));
                thread::spawn(move || {
                    let tokens = tokens;
                    let _g = lock.acquire().unwrap();
                    // SAFETY: (both closures) under the lock.
                    let ok = cond.wait_for(&*lock, || tokens.0.with(|t| unsafe { *t > 0 }), None);
                    assert_eq!(ok, Ok(true));
                    tokens.0.with_mut(|t| unsafe { *t -= 1 });
                })
            })
            .collect();
        for _ in 0..2 {
            let _g = lock.acquire().unwrap();
            // SAFETY: under the lock.
            tokens.with_mut(|t| unsafe { *t += 1 });
            cond.notify(&*lock, 1).unwrap();
        }
        for w in waiters {
            w.join().unwrap();
        }
    });
}

/// A waiter that gives up on its deadline (at once, under loom) while
/// another sleeps: the sleeper still gets the lock once the holder lets go
/// (a stranded sleeper would be a loom deadlock). The shim's futex wakes
/// every sleeper, so this cannot show the one-wake hand-off; the real
/// protocol keeps WAITERS set on the way out, and a sleeper also re-checks
/// at the end of each liveness slice.
#[test]
fn a_timed_out_waiter_does_not_strand_a_sleeper() {
    loom::model(|| {
        let lock = Arc::new(RawLock::new());
        let held = lock.acquire().unwrap();
        let l2 = lock.clone();
        let sleeper = thread::spawn(move || drop(l2.acquire().unwrap()));
        let l3 = lock.clone();
        let impatient = thread::spawn(move || {
            // Either it times out or, once the lock is free, takes it.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            drop(l3.acquire_until(Some(deadline)));
        });
        drop(held);
        sleeper.join().unwrap();
        impatient.join().unwrap();
        assert!(!lock.is_locked());
    });
}

/// A waiter that timed out and left is skipped: the next notify(1) reaches
/// the waiter that still waits (were it wasted on the leaver's slot, the
/// remaining waiter would sleep forever: a loom deadlock).
#[test]
fn a_left_waiter_does_not_take_the_next_notify() {
    loom::model(|| {
        let cond = Arc::new(RawCondition::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (c1, f1) = (cond.clone(), flag.clone());
        let patient = thread::spawn(move || {
            let _g = c1.lock().acquire().unwrap();
            // Relaxed: under the lock.
            let got = c1.wait_for(c1.lock(), || f1.load(Ordering::Relaxed), None);
            assert_eq!(got, Ok(true));
        });
        let c2 = cond.clone();
        let leaver = thread::spawn(move || {
            let _g = c2.lock().acquire().unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3600);
            // Under loom the deadline passes at once; nobody notifies yet.
            assert_eq!(c2.wait(c2.lock(), Some(deadline)), Ok(false));
        });
        leaver.join().unwrap();
        {
            let _g = cond.lock().acquire().unwrap();
            flag.store(true, Ordering::Relaxed);
            cond.notify(cond.lock(), 1).unwrap();
        }
        patient.join().unwrap();
        assert_eq!(cond.waiters(), 0);
    });
}

/// A waiter holding the condition's RLock two levels deep: wait releases
/// both (else the notifier could never get in: a loom deadlock) and
/// restores both.
#[test]
fn condition_wait_releases_every_rlock_level() {
    loom::model(|| {
        let cond = Arc::new(RawCondition::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (c2, f2) = (cond.clone(), flag.clone());
        let notifier = thread::spawn(move || {
            let _g = c2.lock().acquire().unwrap();
            // Relaxed: under the lock.
            f2.store(true, Ordering::Relaxed);
            c2.notify_all(c2.lock()).unwrap();
        });
        let _outer = cond.lock().acquire().unwrap();
        let _inner = cond.lock().acquire().unwrap();
        let got = cond.wait_for(cond.lock(), || flag.load(Ordering::Relaxed), None);
        assert_eq!(got, Ok(true));
        assert_eq!(cond.lock().count(), 2);
        drop(_inner);
        drop(_outer);
        notifier.join().unwrap();
    });
}
