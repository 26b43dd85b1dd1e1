#![cfg(not(loom))]
//! Queue semantics in one process (and its threads): Python's Full/Empty,
//! timeouts, close, JoinableQueue, bad input, handles, both layouts.

use std::time::{Duration, Instant};

use multiproc::Error;
use multiproc::queue::{JoinableQueue, Queue, QueueOptions, SimpleQueue, TypedQueue};
use multiproc::shm::{Backing, SharedMemory};

fn both(capacity: usize, max: usize) -> [Queue; 2] {
    let spsc = QueueOptions {
        spsc: true,
        ..QueueOptions::new(capacity, max)
    };
    [
        Queue::new(capacity, max).unwrap(),
        Queue::with_options(spsc).unwrap(),
    ]
}

#[test]
fn put_get_in_order_and_empty() {
    for q in both(4, 16) {
        let mut buf = [0u8; 16];
        assert!(matches!(q.get_nowait(&mut buf), Err(Error::Empty)));
        for i in 0..3u8 {
            q.put(&[i; 5][..=i as usize], true, None).unwrap();
        }
        assert_eq!(q.qsize(), 3);
        for i in 0..3u8 {
            let n = q.get(&mut buf, true, None).unwrap();
            assert_eq!(&buf[..n], &[i; 5][..=i as usize]);
        }
        assert!(q.empty());
    }
}

#[test]
fn full_and_timeouts() {
    let q = Queue::new(2, 8).unwrap();
    q.put_nowait(b"a").unwrap();
    q.put_nowait(b"b").unwrap();
    assert!(q.full());
    assert!(matches!(q.put_nowait(b"c"), Err(Error::Full)));
    let start = Instant::now();
    assert!(matches!(
        q.put(b"c", true, Some(Duration::from_millis(30))),
        Err(Error::Full)
    ));
    assert!(start.elapsed() >= Duration::from_millis(30));
    let mut buf = [0u8; 8];
    q.get_nowait(&mut buf).unwrap();
    q.get_nowait(&mut buf).unwrap();
    let start = Instant::now();
    assert!(matches!(
        q.get(&mut buf, true, Some(Duration::from_millis(30))),
        Err(Error::Empty)
    ));
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn spsc_fills_up_too() {
    let q = both(2, 8).into_iter().nth(1).unwrap();
    let mut n = 0;
    while q.put_nowait(b"12345678").is_ok() {
        n += 1;
        assert!(n < 10_000, "never full");
    }
    assert!(n >= 2);
    assert!(matches!(
        q.put(b"x", true, Some(Duration::from_millis(5))),
        Err(Error::Full)
    ));
}

#[test]
fn oversize_and_small_buffer() {
    for q in both(4, 8) {
        match q.put(b"123456789", true, None) {
            Err(Error::TooLarge { len: 9, max: 8 }) => {}
            other => panic!("{other:?}"),
        }
        q.put(b"1234567", true, None).unwrap();
        let mut small = [0u8; 3];
        match q.get(&mut small, true, None) {
            Err(Error::TooLarge { len: 7, max: 3 }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(q.qsize(), 1, "the message stays queued");
        assert_eq!(q.get_vec(false, None).unwrap(), b"1234567");
    }
}

#[test]
fn close_drains_then_reports_closed() {
    for q in both(4, 8) {
        q.put(b"x", true, None).unwrap();
        q.close();
        assert!(q.is_closed());
        assert!(matches!(q.put(b"y", true, None), Err(Error::Closed)));
        assert_eq!(q.get_vec(true, None).unwrap(), b"x");
        assert!(matches!(q.get_vec(true, None), Err(Error::Closed)));
    }
}

#[test]
fn close_wakes_a_blocked_getter() {
    let q = Queue::new(2, 8).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| q.get_vec(true, Some(Duration::from_secs(20))));
        // Whether the getter is still polling, asleep or not yet started,
        // close must end its wait with Closed well before its deadline.
        q.close();
        assert!(matches!(t.join().unwrap(), Err(Error::Closed)));
    });
}

#[test]
fn joinable_queue_counts_tasks() {
    let q = JoinableQueue::new(4, 8).unwrap();
    assert!(matches!(q.task_done(), Err(Error::Value(_))));
    q.put(b"a", true, None).unwrap();
    q.put(b"b", true, None).unwrap();
    assert!(matches!(
        q.join(Some(Duration::from_millis(10))),
        Err(Error::Timeout)
    ));
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..2 {
                q.get_vec(true, None).unwrap();
                q.task_done().unwrap();
            }
        });
        q.join(Some(Duration::from_secs(20))).unwrap();
    });
    assert!(matches!(q.task_done(), Err(Error::Value(_))));
    let plain = Queue::new(1, 1).unwrap();
    assert!(matches!(plain.task_done(), Err(Error::State(_))));
}

#[test]
fn simple_and_typed_queues() {
    let q = SimpleQueue::new(2, 4).unwrap();
    q.put(b"ab").unwrap();
    assert_eq!(q.get().unwrap(), b"ab");
    assert!(q.empty());
    let t = TypedQueue::<[u32; 3]>::new(2).unwrap();
    t.put(&[1, 2, 3], true, None).unwrap();
    assert_eq!(t.get(false, None).unwrap(), [1, 2, 3]);
}

#[test]
fn bad_sizes_are_refused() {
    assert!(matches!(Queue::new(0, 8), Err(Error::Invalid(_))));
    assert!(matches!(Queue::new(8, 0), Err(Error::Invalid(_))));
    assert!(matches!(
        Queue::new(1 << 40, 1 << 20),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        Queue::new(usize::MAX, usize::MAX),
        Err(Error::TooLarge { .. })
    ));
    let spsc = |c, m| QueueOptions {
        spsc: true,
        ..QueueOptions::new(c, m)
    };
    assert!(matches!(
        Queue::with_options(spsc(0, 8)),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        Queue::with_options(spsc(8, usize::MAX)),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn handles_open_the_same_queue_and_check_kind() {
    for q in both(4, 8) {
        let again = Queue::open(&q.handle().to_string().parse().unwrap()).unwrap();
        q.put(b"via", true, None).unwrap();
        assert_eq!(again.qsize(), 1);
    }
    let mem = SharedMemory::new(64, Backing::Memfd).unwrap();
    assert!(matches!(
        Queue::open(&mem.handle()),
        Err(Error::Kind { .. })
    ));
}

#[test]
fn spsc_roles_are_single() {
    let q = Queue::with_options(QueueOptions {
        spsc: true,
        ..QueueOptions::new(4, 8)
    })
    .unwrap();
    let p = q.producer().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| assert!(matches!(q.put(b"x", true, None), Err(Error::State(_)))));
    });
    drop(p);
    std::thread::scope(|s| {
        s.spawn(|| q.put(b"x", true, None).unwrap());
    });
    assert!(matches!(
        Queue::new(1, 1).unwrap().producer(),
        Err(Error::State(_))
    ));
}

#[test]
fn threads_mpmc_exactly_once() {
    let q = Queue::new(8, 8).unwrap();
    let n = 20_000u64;
    let mut seen = vec![0u8; 2 * n as usize];
    std::thread::scope(|s| {
        for p in 0..2u64 {
            let q = &q;
            s.spawn(move || {
                for i in 0..n {
                    q.put(
                        &(p * n + i).to_le_bytes(),
                        true,
                        Some(Duration::from_secs(30)),
                    )
                    .unwrap();
                }
            });
        }
        let getters: Vec<_> = (0..2)
            .map(|_| {
                let q = &q;
                s.spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 8];
                    while got.len() < n as usize {
                        q.get(&mut buf, true, Some(Duration::from_secs(30)))
                            .unwrap();
                        got.push(u64::from_le_bytes(buf));
                    }
                    got
                })
            })
            .collect();
        for g in getters {
            for v in g.join().unwrap() {
                seen[v as usize] += 1;
            }
        }
    });
    assert!(seen.iter().all(|c| *c == 1));
}

#[cfg(feature = "serde")]
#[test]
fn serde_queue_reports_encoding_too_large_at_put() {
    use multiproc::queue::SerdeQueue;
    let q = SerdeQueue::<Vec<u32>>::new(2, 16).unwrap();
    q.put(&vec![1, 2, 3], true, None).unwrap();
    assert!(matches!(
        q.put(&vec![7; 100], true, None),
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(q.queue().qsize(), 1, "nothing sent by the failed put");
    assert_eq!(q.get(true, None).unwrap(), [1, 2, 3]);
}

#[test]
fn typed_queue_between_processes() {
    let q = TypedQueue::<[u64; 4]>::new(8).unwrap();
    let child = {
        let q = q.clone();
        multiproc::process::Process::new(move || {
            for i in 0..1000u64 {
                q.put(
                    &[i, i + 1, i + 2, i + 3],
                    true,
                    Some(Duration::from_secs(30)),
                )
                .unwrap();
            }
        })
    };
    child.start().unwrap();
    for i in 0..1000u64 {
        assert_eq!(
            q.get(true, Some(Duration::from_secs(30))).unwrap(),
            [i, i + 1, i + 2, i + 3]
        );
    }
    assert_eq!(child.join(Some(Duration::from_secs(30))).unwrap(), 0);
    let bytes = Queue::new(2, 3).unwrap();
    assert!(matches!(
        TypedQueue::<u64>::open(&bytes.handle()),
        Err(Error::Invalid(_))
    ));
}
