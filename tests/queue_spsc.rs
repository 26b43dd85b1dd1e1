//! The SPSC ring between real processes: a producer process killed with
//! SIGKILL at random points and replaced, batches and zero-copy grants of
//! varying sizes wrapping a small ring many times. Each message carries its
//! number and a length and filler derived from it, so a lost, repeated,
//! reordered or torn message shows.
#![cfg(not(loom))]

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::rng::Rng;
use multiproc::Error;
use multiproc::process::Process;
use multiproc::queue::{Queue, QueueOptions};

const LONG: Duration = Duration::from_secs(60);
const MAX: usize = 40;

fn spsc(capacity: usize) -> Queue {
    Queue::with_options(QueueOptions {
        spsc: true,
        ..QueueOptions::new(capacity, MAX)
    })
    .unwrap()
}

/// Message `id`: its number, then `id % 33` bytes of `id as u8`.
fn message(id: u64) -> Vec<u8> {
    let mut m = id.to_le_bytes().to_vec();
    m.resize(8 + (id % 33) as usize, id as u8);
    m
}

/// The number of a received message, after checking its bytes.
fn number(bytes: &[u8]) -> u64 {
    let id = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes at least"));
    assert_eq!(bytes, message(id), "message {id} torn");
    id
}

fn pipe() -> (File, File) {
    let (r, w): (OwnedFd, OwnedFd) = multiproc::sys::pipe().unwrap();
    (File::from(r), File::from(w))
}

/// Producer processes are killed while putting at random points; the next
/// one takes the role over. Across all of them the consumer (this
/// process) receives consecutive numbers: every message whose put
/// returned Ok, once, in order; at most the put in flight at the kill
/// arrives too.
#[test]
fn producers_killed_at_random_points_are_replaced_and_nothing_is_lost_or_repeated() {
    let q = spsc(6);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut buf = [0u8; MAX];
    let mut next = 0u64;
    for round in 0..30 {
        let (mut acks, ack_w) = pipe();
        let first = next;
        let producer = {
            let q = q.clone();
            Process::new(move || -> i32 {
                let mut ack_w = ack_w;
                for id in first.. {
                    q.put(&message(id), true, Some(LONG)).unwrap();
                    ack_w.write_all(&id.to_le_bytes()).unwrap();
                }
                unreachable!()
            })
        };
        producer.start().unwrap();
        // Take a random number of messages while it runs, then kill it
        // wherever it is (in a put, blocked on a full ring, acking).
        for _ in 0..rng.below(300) {
            let n = q.get(&mut buf, true, Some(LONG)).unwrap();
            assert_eq!(number(&buf[..n]), next, "round {round}");
            next += 1;
        }
        producer.kill().unwrap();
        assert_eq!(producer.join(Some(LONG)).unwrap(), -9, "round {round}");
        drop(producer);
        // EOF comes once every holder of the write end is gone (other
        // tests' fork children inherit it for their lifetime): bounded.
        let acked = common::deadline::within("reading the acks", LONG, move || {
            let mut acked = Vec::new();
            acks.read_to_end(&mut acked).unwrap();
            acked
        });
        // Whatever it published is there now; nothing more comes.
        loop {
            match q.get_nowait(&mut buf) {
                Ok(n) => {
                    assert_eq!(number(&buf[..n]), next, "round {round}");
                    next += 1;
                }
                Err(Error::Empty) => break,
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        if let Some(last) = acked.chunks_exact(8).last() {
            let last = u64::from_le_bytes(last.try_into().unwrap());
            assert!(
                last < next,
                "round {round}: message {last} was acknowledged, {next} received"
            );
        }
    }
    // A last producer, not killed, still fits its messages in after all
    // those deaths.
    let producer = {
        let q = q.clone();
        Process::new(move || {
            for id in next..next + 1000 {
                q.put(&message(id), true, Some(LONG)).unwrap();
            }
        })
    };
    producer.start().unwrap();
    for _ in 0..1000 {
        let n = q.get(&mut buf, true, Some(LONG)).unwrap();
        assert_eq!(number(&buf[..n]), next);
        next += 1;
    }
    assert_eq!(producer.join(Some(LONG)).unwrap(), 0);
}

/// A producer process mixing `push_batch`, `reserve`/`commit` (committing
/// less than it reserved) and `push`; this process mixing `pop_batch`,
/// `read` grants and `pop`. All in order and intact across many wraps of a
/// small ring.
#[test]
fn batches_and_grants_of_varying_sizes_wrap_in_order() {
    const COUNT: u64 = 30_000;
    let q = spsc(8);
    let producer = {
        let q = q.clone();
        Process::new(move || {
            let mut tx = q.producer().unwrap();
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let mut id = 0;
            while id < COUNT {
                match rng.below(3) {
                    0 => {
                        let k = (1 + rng.below(6)).min(COUNT - id);
                        let msgs: Vec<Vec<u8>> = (id..id + k).map(message).collect();
                        let refs: Vec<&[u8]> = msgs.iter().map(|m| &m[..]).collect();
                        match tx.push_batch(&refs).unwrap() {
                            0 => tx.push(&msgs[0], Some(std::time::Instant::now() + LONG)),
                            sent => {
                                id += sent as u64 - 1;
                                Ok(())
                            }
                        }
                        .unwrap();
                    }
                    1 => {
                        let m = message(id);
                        let deadline = Some(std::time::Instant::now() + LONG);
                        let mut grant = tx.reserve(MAX, deadline).unwrap();
                        grant.bytes()[..m.len()].copy_from_slice(&m);
                        grant.commit(m.len());
                    }
                    _ => tx
                        .push(&message(id), Some(std::time::Instant::now() + LONG))
                        .unwrap(),
                }
                id += 1;
            }
        })
    };
    producer.start().unwrap();
    let mut rx = q.consumer().unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next = 0;
    let mut buf = [0u8; MAX];
    while next < COUNT {
        let deadline = Some(std::time::Instant::now() + LONG);
        match rng.below(3) {
            0 => {
                let got = rx.pop_batch(1 + rng.below(8) as usize, |m| {
                    assert_eq!(number(m), next);
                    next += 1;
                });
                if got == 0 {
                    let grant = rx.read(deadline).unwrap();
                    assert_eq!(number(grant.bytes()), next);
                    next += 1;
                }
            }
            1 => {
                let grant = rx.read(deadline).unwrap();
                assert_eq!(number(grant.bytes()), next);
                grant.release();
                next += 1;
            }
            _ => {
                let n = rx.pop(&mut buf, deadline).unwrap();
                assert_eq!(number(&buf[..n]), next);
                next += 1;
            }
        }
    }
    assert_eq!(producer.join(Some(LONG)).unwrap(), 0);
    assert!(matches!(
        rx.pop(&mut buf, multiproc::queue::try_once()),
        Err(Error::Empty)
    ));
}
