//! Queues between real processes (fork): many producers and consumers,
//! exactly-once delivery, close, joins, and participants killed with
//! SIGKILL at a chosen point and at random points.
#![cfg(not(loom))]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use common::rng::Rng;
use multiproc::Error;
use multiproc::process::Process;
use multiproc::queue::{JoinableQueue, Queue, QueueOptions};
use multiproc::shm::{Backing, SharedMemory};
use std::sync::atomic::Ordering;

const LONG: Duration = Duration::from_secs(60);

fn pipe() -> (File, File) {
    let (r, w): (OwnedFd, OwnedFd) = multiproc::sys::pipe().unwrap();
    (File::from(r), File::from(w))
}

/// Reads u64 acks from `r` until EOF.
fn read_acks(mut r: File) -> Vec<u64> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn many_to_many(options: QueueOptions, producers: u64, consumers: u64, per_producer: u64) {
    let q = Queue::with_options(options).unwrap();
    let total = producers * per_producer;
    let seen = SharedMemory::new(total as usize, Backing::Anonymous).unwrap();
    let workers: Vec<Process> = (0..producers)
        .map(|p| {
            let q = q.clone();
            Process::new(move || {
                for i in 0..per_producer {
                    let id = p * per_producer + i;
                    // Varying lengths: the id, then `id % 9` filler bytes.
                    let mut msg = id.to_le_bytes().to_vec();
                    msg.resize(8 + (id % 9) as usize, id as u8);
                    q.put(&msg, true, Some(LONG)).unwrap();
                }
            })
        })
        .chain((0..consumers).map(|_| {
            let (q, seen) = (q.clone(), seen.clone());
            Process::new(move || {
                let mut buf = [0u8; 32];
                loop {
                    match q.get(&mut buf, true, Some(LONG)) {
                        Ok(n) => {
                            let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
                            assert_eq!(n, 8 + (id % 9) as usize, "length of {id}");
                            assert!(buf[8..n].iter().all(|b| *b == id as u8));
                            seen.as_atomic_u8()[id as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Closed) => return 0,
                        Err(e) => panic!("get: {e}"),
                    }
                }
            })
        }))
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    for w in &workers[..producers as usize] {
        assert_eq!(w.join(Some(LONG)).unwrap(), 0, "producer failed");
    }
    q.close();
    for w in &workers[producers as usize..] {
        assert_eq!(w.join(Some(LONG)).unwrap(), 0, "consumer failed");
    }
    let counts: Vec<u8> = seen
        .as_atomic_u8()
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    for (id, c) in counts.iter().enumerate() {
        assert_eq!(*c, 1, "message {id} arrived {c} times");
    }
}

#[test]
fn mpmc_two_producers_two_consumers_exactly_once() {
    many_to_many(QueueOptions::new(16, 32), 2, 2, 20_000);
}

#[test]
fn mpmc_three_producers_one_consumer_small_queue() {
    many_to_many(QueueOptions::new(2, 32), 3, 1, 5_000);
}

#[test]
fn spsc_one_producer_one_consumer_exactly_once_in_order() {
    let options = QueueOptions {
        spsc: true,
        ..QueueOptions::new(8, 32)
    };
    many_to_many(options, 1, 1, 100_000);
    // In order: the consumer checks each id follows the previous one.
    let q = Queue::with_options(options).unwrap();
    let producer = {
        let q = q.clone();
        Process::new(move || {
            for i in 0..50_000u64 {
                q.put(&i.to_le_bytes()[..1 + (i % 8) as usize], true, Some(LONG))
                    .unwrap();
            }
        })
    };
    producer.start().unwrap();
    let mut buf = [0u8; 32];
    for i in 0..50_000u64 {
        let n = q.get(&mut buf, true, Some(LONG)).unwrap();
        assert_eq!(&buf[..n], &i.to_le_bytes()[..1 + (i % 8) as usize]);
    }
    assert_eq!(producer.join(Some(LONG)).unwrap(), 0);
}

#[test]
fn a_get_blocks_until_another_process_puts() {
    let q = Queue::new(4, 8).unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(
        q.get(&mut buf, true, Some(Duration::from_millis(20))),
        Err(Error::Empty)
    ));
    let child = {
        let q = q.clone();
        Process::new(move || q.put(b"late", true, Some(LONG)).unwrap())
    };
    child.start().unwrap();
    let n = q.get(&mut buf, true, Some(LONG)).unwrap();
    assert_eq!(&buf[..n], b"late");
    assert_eq!(child.join(Some(LONG)).unwrap(), 0);
}

#[test]
fn joinable_queue_across_processes() {
    let q = JoinableQueue::new(4, 8).unwrap();
    let worker = {
        let q = q.clone();
        Process::new(move || {
            for _ in 0..10 {
                q.get_vec(true, Some(LONG)).unwrap();
                q.task_done().unwrap();
            }
        })
    };
    worker.start().unwrap();
    for i in 0..10u8 {
        q.put(&[i], true, Some(LONG)).unwrap();
    }
    q.join(Some(LONG)).unwrap();
    assert_eq!(q.unfinished_tasks(), 0);
    assert_eq!(worker.join(Some(LONG)).unwrap(), 0);
}

/// A producer stopped right after claiming a slot (the test hook), then
/// killed: while it lives, the message behind its claim waits; once it is
/// dead, a consumer steps over the claim and gets the message.
#[test]
fn producer_killed_after_its_claim_does_not_block_consumers() {
    for kill in [true, false] {
        let q = Queue::new(4, 8).unwrap();
        let (mut claimed_r, mut claimed_w) = pipe();
        let (hold_r, hold_w) = pipe();
        let child = {
            let q = q.clone();
            Process::new(move || {
                assert!(q.claim_slot_and_stop());
                claimed_w.write_all(b"c").unwrap();
                if kill {
                    // Block until killed.
                    let _ = (&hold_r).read(&mut [0u8]);
                }
                // Otherwise: exit with the claim held, as a crash would.
                0
            })
        };
        child.start().unwrap();
        let mut c = [0u8];
        claimed_r.read_exact(&mut c).unwrap();
        q.put(b"after", true, Some(LONG)).unwrap();
        let mut buf = [0u8; 8];
        if kill {
            // Alive claimant: the message behind it is not reachable yet.
            assert!(matches!(
                q.get(&mut buf, true, Some(Duration::from_millis(30))),
                Err(Error::Empty)
            ));
            child.kill().unwrap();
        }
        let start = Instant::now();
        let n = q
            .get(&mut buf, true, Some(Duration::from_secs(20)))
            .unwrap();
        assert_eq!(&buf[..n], b"after");
        assert!(start.elapsed() < Duration::from_secs(20));
        assert!(q.empty());
        child.join(Some(LONG)).unwrap();
        drop(hold_w);
    }
}

/// As above, with a consumer that only ever polls (`get` without
/// blocking): it too gets past the dead producer's claim, once the claim
/// has stood in its way for the claimant-poll interval.
#[test]
fn a_polling_consumer_gets_past_a_dead_producers_claim() {
    let q = Queue::new(4, 8).unwrap();
    let (mut claimed_r, mut claimed_w) = pipe();
    let child = {
        let q = q.clone();
        Process::new(move || {
            assert!(q.claim_slot_and_stop());
            claimed_w.write_all(b"c").unwrap();
            // Exit with the claim held, as a crash would.
            0
        })
    };
    child.start().unwrap();
    let mut c = [0u8];
    claimed_r.read_exact(&mut c).unwrap();
    assert_eq!(child.join(Some(LONG)).unwrap(), 0);
    q.put(b"after", true, Some(LONG)).unwrap();
    let mut buf = [0u8; 8];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut empty = 0u64;
    let n = loop {
        match q.get(&mut buf, false, None) {
            Ok(n) => break n,
            Err(Error::Empty) => empty += 1,
            Err(e) => panic!("get_nowait: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "still Empty after 20 s of polling ({empty} tries): the dead claim was never cleared"
        );
        std::thread::yield_now();
    };
    assert_eq!(&buf[..n], b"after");
    assert!(q.empty());
}

/// Producers killed at random points: a consumer never blocks past its
/// deadline, every message whose put returned Ok (and was acknowledged) is
/// delivered, none twice.
#[test]
fn producers_killed_at_random_points_lose_no_committed_message() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let q = Queue::new(32, 16).unwrap();
    let mut next_id = 0u64;
    for round in 0..25 {
        let (mut ack_r, ack_w) = pipe();
        let base = next_id;
        next_id += 1_000_000;
        let child = {
            let q = q.clone();
            Process::new(move || -> i32 {
                let mut ack_w = ack_w;
                for i in 0.. {
                    let id = base + i;
                    q.put(&id.to_le_bytes(), true, None).unwrap();
                    ack_w.write_all(&id.to_le_bytes()).unwrap();
                }
                unreachable!()
            })
        };
        child.start().unwrap();
        // Let it put a random number of messages (up to a full queue),
        // counted by its acks, then kill it wherever it is.
        let want = rng.below(32);
        let mut acked = Vec::new();
        let mut b = [0u8; 8];
        while (acked.len() as u64) < want {
            ack_r.read_exact(&mut b).unwrap();
            acked.push(u64::from_le_bytes(b));
        }
        child.kill().unwrap();
        assert_eq!(child.join(Some(LONG)).unwrap(), -9);
        drop(child);
        acked.extend(read_acks(ack_r));
        // Drain: each get may have to step over the dead child's claim.
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match q.get(&mut b, true, Some(Duration::from_millis(50))) {
                Ok(_) => got.push(u64::from_le_bytes(b)),
                Err(Error::Empty) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: drain did not end"
            );
        }
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "round {round}: a message twice");
        for a in &acked {
            assert!(
                got.contains(a),
                "round {round}: acknowledged message {a} lost"
            );
        }
        assert!(got.iter().all(|g| *g >= base && *g < base + 1_000_000));
    }
}

/// Consumers killed at random points: each kill loses at most the one
/// message it was taking; nothing arrives twice; the queue keeps working.
#[test]
fn consumers_killed_at_random_points_lose_at_most_one_message_each() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let q = Queue::new(64, 8).unwrap();
    for round in 0..20u64 {
        let ids: Vec<u64> = (0..64).map(|i| round * 1000 + i).collect();
        for id in &ids {
            q.put(&id.to_le_bytes(), true, Some(LONG)).unwrap();
        }
        let (mut ack_r, ack_w) = pipe();
        let child = {
            let q = q.clone();
            Process::new(move || -> i32 {
                let mut ack_w = ack_w;
                let mut b = [0u8; 8];
                loop {
                    q.get(&mut b, true, None).unwrap();
                    ack_w.write_all(&b).unwrap();
                }
            })
        };
        child.start().unwrap();
        let want = rng.below(40);
        let mut got = Vec::new();
        let mut b = [0u8; 8];
        while (got.len() as u64) < want {
            ack_r.read_exact(&mut b).unwrap();
            got.push(u64::from_le_bytes(b));
        }
        child.kill().unwrap();
        assert_eq!(child.join(Some(LONG)).unwrap(), -9);
        drop(child);
        got.extend(read_acks(ack_r));
        loop {
            match q.get(&mut b, true, Some(Duration::from_millis(50))) {
                Ok(_) => got.push(u64::from_le_bytes(b)),
                Err(Error::Empty) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), got.len(), "round {round}: a message twice");
        assert!(
            got.len() >= ids.len() - 1,
            "round {round}: lost {} messages",
            ids.len() - got.len()
        );
        assert!(got.iter().all(|g| ids.contains(g)));
    }
}
