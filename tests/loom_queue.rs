//! loom models of the queues: the MPMC slot protocol and the SPSC ring,
//! including the blocking paths (a full queue, an empty queue, close, join),
//! with threads standing in for processes. Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom_queue`.
//!
//! Each message's length names it (message `i` is `i + 1` bytes of `i`), so
//! a missing Acquire/Release pair would show as a wrong length or byte.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use multiproc::Error;
use multiproc::queue::model::{HeapMpmc, HeapRing};

fn msg(i: u8) -> Vec<u8> {
    vec![i; i as usize + 1]
}

fn check(buf: &[u8], n: usize) -> u8 {
    let i = buf[0];
    assert_eq!(n, i as usize + 1, "length of message {i}");
    assert!(buf[..n].iter().all(|b| *b == i), "bytes of message {i}");
    i
}

/// Two producers into one slot, one consumer: each put blocks while the
/// slot is taken; both messages arrive once.
#[test]
fn mpmc_two_producers_block_on_full() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::new(1, 4, false).unwrap());
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || q.put(&msg(p), None).unwrap())
            })
            .collect();
        let mut buf = [0u8; 4];
        let mut seen = [false; 2];
        for _ in 0..2 {
            let n = q.get(&mut buf, None).unwrap();
            let i = check(&buf, n) as usize;
            assert!(!seen[i], "message {i} twice");
            seen[i] = true;
        }
        for p in producers {
            p.join().unwrap();
        }
        assert!(q.is_empty());
    });
}

/// One producer, two consumers that block on an empty queue: each gets one.
/// (Room for both messages, so only the consumers block: the model stays
/// small enough.)
#[test]
fn mpmc_two_consumers_block_on_empty() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::new(2, 4, false).unwrap());
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut buf = [0u8; 4];
                    let n = q.get(&mut buf, None).unwrap();
                    check(&buf, n)
                })
            })
            .collect();
        q.put(&msg(0), None).unwrap();
        q.put(&msg(1), None).unwrap();
        let mut got: Vec<u8> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1]);
    });
}

/// Close while a consumer waits: it drains the message put before close,
/// then sees Closed; a put after close fails.
#[test]
fn mpmc_close_drains_then_closed() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::new(2, 4, false).unwrap());
        let consumer = {
            let q = q.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4];
                let mut got = Vec::new();
                loop {
                    match q.get(&mut buf, None) {
                        Ok(n) => got.push(check(&buf, n)),
                        Err(Error::Closed) => return got,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        };
        q.put(&msg(2), None).unwrap();
        q.close();
        assert!(matches!(q.put(&msg(3), None), Err(Error::Closed)));
        assert_eq!(consumer.join().unwrap(), [2]);
    });
}

/// A producer racing with close: if its put succeeded, the message is
/// still delivered; a consumer never reports Closed before it.
#[test]
fn mpmc_put_racing_close_is_not_lost() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::new(1, 4, false).unwrap());
        let producer = {
            let q = q.clone();
            thread::spawn(move || q.put(&msg(0), None).is_ok())
        };
        let closer = {
            let q = q.clone();
            thread::spawn(move || q.close())
        };
        let mut buf = [0u8; 4];
        let first = q.get(&mut buf, None);
        let put_ok = producer.join().unwrap();
        closer.join().unwrap();
        match first {
            Ok(n) => assert_eq!(check(&buf, n), 0),
            Err(Error::Closed) => {
                assert!(!put_ok, "a put returned Ok after a get reported Closed")
            }
            Err(e) => panic!("{e}"),
        }
    });
}

/// JoinableQueue: join returns only after the consumer's task_done.
#[test]
fn mpmc_join_waits_for_task_done() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::new(1, 4, true).unwrap());
        q.put(&msg(0), None).unwrap();
        let consumer = {
            let q = q.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4];
                let n = q.get(&mut buf, None).unwrap();
                check(&buf, n);
                q.task_done().unwrap();
            })
        };
        q.join(None).unwrap();
        assert!(matches!(q.task_done(), Err(Error::Value(_))));
        consumer.join().unwrap();
    });
}

/// SPSC ring of two records: messages of different lengths wrap around the
/// end; the producer blocks on full, the consumer on empty.
#[test]
fn spsc_wraps_and_blocks() {
    loom::model(|| {
        // Records of up to 32 bytes in a 64-byte ring.
        let q = Arc::new(HeapRing::new(1, 24).unwrap());
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                for i in [0u8, 16, 8] {
                    q.put(&msg(i), None).unwrap();
                }
            })
        };
        let mut buf = [0u8; 24];
        for i in [0u8, 16, 8] {
            let n = q.get(&mut buf, None).unwrap();
            assert_eq!(check(&buf, n), i);
        }
        producer.join().unwrap();
    });
}

/// SPSC batch: two messages published by one word (the first's, stored
/// last), then a third whose end marker lands at the next lap's start. A
/// consumer that sees the first message sees the second at once.
#[test]
fn spsc_batch_is_published_together() {
    loom::model(|| {
        // Records of up to 24 bytes in a 64-byte ring: 16 + 24 bytes of
        // the batch, the marker after them, then 24 more for the third.
        let q = Arc::new(HeapRing::new(1, 16).unwrap());
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                assert_eq!(q.put_batch(&[&msg(7), &msg(15)]), 2);
                q.put(&msg(15), None).unwrap();
            })
        };
        let mut buf = [0u8; 16];
        let n = q.get(&mut buf, None).unwrap();
        assert_eq!(check(&buf, n), 7);
        let mut second = None;
        assert_eq!(
            q.get_batch(1, |m| second = Some(check(m, m.len()))),
            1,
            "the batch's second message is visible with its first"
        );
        assert_eq!(second, Some(15));
        let n = q.get(&mut buf, None).unwrap();
        assert_eq!(check(&buf, n), 15);
        producer.join().unwrap();
    });
}

/// SPSC close: the consumer drains, then sees Closed.
#[test]
fn spsc_close_drains() {
    loom::model(|| {
        let q = Arc::new(HeapRing::new(1, 8).unwrap());
        let producer = {
            let q = q.clone();
            thread::spawn(move || {
                q.put(&msg(1), None).unwrap();
                q.close();
            })
        };
        let mut buf = [0u8; 8];
        let n = q.get(&mut buf, None).unwrap();
        assert_eq!(check(&buf, n), 1);
        assert!(matches!(q.get(&mut buf, None), Err(Error::Closed)));
        producer.join().unwrap();
    });
}

/// Four threads: two producers and two consumers (the main thread is one
/// of them), one message each way; every message arrives exactly once.
#[test]
fn mpmc_two_by_two() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::new(2, 4, false).unwrap());
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || q.put(&msg(p), None).unwrap())
            })
            .collect();
        let other = {
            let q = q.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4];
                let n = q.get(&mut buf, None).unwrap();
                check(&buf, n)
            })
        };
        let mut buf = [0u8; 4];
        let n = q.get(&mut buf, None).unwrap();
        let mine = check(&buf, n);
        let theirs = other.join().unwrap();
        assert_ne!(mine, theirs);
        for p in producers {
            p.join().unwrap();
        }
    });
}

/// The queues' wake-up protocol on its own: the notifier stores, runs the
/// light half of the asymmetric fence and notifies only if it sees a
/// sleeper; the waiter runs the heavy half after registering. No wake-up
/// is lost.
#[test]
fn asymmetric_fence_wakes_a_registered_waiter() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use multiproc::sync::{EventCount, asymmetric_fence};
    loom::model(|| {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let notifier = {
            let (ec, flag) = (ec.clone(), flag.clone());
            thread::spawn(move || {
                flag.store(true, Ordering::Relaxed);
                asymmetric_fence::light();
                if ec.sleepers() > 0 {
                    ec.notify_all();
                }
            })
        };
        let got = ec.wait_until_registered(None, asymmetric_fence::heavy, || {
            flag.load(Ordering::Relaxed).then_some(())
        });
        assert_eq!(got, Some(()));
        notifier.join().unwrap();
    });
}

/// The same protocol without the notifier's half of the fence: its load of
/// the sleeper count may miss the waiter's registration while the waiter's
/// check misses its store (store buffering), and loom finds the lost
/// wake-up. This keeps the model above meaningful.
#[test]
#[should_panic(expected = "deadlock")]
fn asymmetric_fence_without_the_light_half_loses_a_wake_up() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use multiproc::sync::{EventCount, asymmetric_fence};
    loom::model(|| {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let notifier = {
            let (ec, flag) = (ec.clone(), flag.clone());
            thread::spawn(move || {
                flag.store(true, Ordering::Relaxed);
                if ec.sleepers() > 0 {
                    ec.notify_all();
                }
            })
        };
        ec.wait_until_registered(None, asymmetric_fence::heavy, || {
            flag.load(Ordering::Relaxed).then_some(())
        });
        notifier.join().unwrap();
    });
}
