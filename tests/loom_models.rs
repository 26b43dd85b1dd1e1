//! loom models of the shared-memory algorithms, with threads standing in for
//! processes. Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_models`
//! (the test script does, with a CI-sized `LOOM_MAX_PREEMPTIONS`).
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::thread;
use multiproc::sync::EventCount;

/// One waiter, one notifier: the waiter always wakes with the flag seen.
#[test]
fn event_count_wakes_the_waiter() {
    loom::model(|| {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (ec2, flag2) = (ec.clone(), flag.clone());
        let notifier = thread::spawn(move || {
            flag2.store(true, Ordering::Relaxed);
            ec2.notify_all();
        });
        let got = ec.wait_until(None, || flag.load(Ordering::Relaxed).then_some(()));
        assert_eq!(got, Some(()));
        notifier.join().unwrap();
        assert_eq!(ec.sleepers(), 0);
    });
}

/// Two waiters, two single notifies: each notify hands over one token and
/// both waiters finish (no wake-up is lost when waking one at a time).
#[test]
fn event_count_notify_one_at_a_time() {
    loom::model(|| {
        let ec = Arc::new(EventCount::new());
        let tokens = Arc::new(AtomicU32::new(0));
        let take = |tokens: &AtomicU32| {
            let mut cur = tokens.load(Ordering::Relaxed);
            while cur > 0 {
                match tokens.compare_exchange(cur, cur - 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return Some(()),
                    Err(now) => cur = now,
                }
            }
            None
        };
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (ec, tokens) = (ec.clone(), tokens.clone());
                thread::spawn(move || ec.wait_until(None, || take(&tokens)))
            })
            .collect();
        for _ in 0..2 {
            tokens.fetch_add(1, Ordering::Relaxed);
            ec.notify(1);
        }
        for w in waiters {
            assert_eq!(w.join().unwrap(), Some(()));
        }
    });
}

/// The shim's futex really blocks: a notifier that forgets to notify leaves
/// the waiter asleep, and loom reports the lost wake-up as a deadlock.
#[test]
#[should_panic(expected = "deadlock")]
fn lost_wake_up_is_reported_as_deadlock() {
    loom::model(|| {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let flag2 = flag.clone();
        let setter = thread::spawn(move || flag2.store(true, Ordering::Relaxed));
        ec.wait_until(None, || flag.load(Ordering::Relaxed).then_some(()));
        setter.join().unwrap();
    });
}
