//! Queue benchmarks, each beside the OS pipe in the same run, between two
//! processes pinned to different cores (the shared harness of
//! `benches/common`: the queue is one more [`Transport`]).
//!
//! - `round_trip_8B/*`: an 8-byte message there and back through two SPSC
//!   queues (one per direction), busy-polling (`put_nowait`/`get_nowait` in
//!   a loop) and with the blocking API; through two pipes.
//! - `round_trip_slow_peer_200us/*`: the same with a peer that works 200 us
//!   before it answers: the blocking queue sleeps and is woken, as the pipe.
//! - `one_way/*/<size>`: this process sends messages of 8 B .. 1 MiB as
//!   fast as it can, the peer receives them: the SPSC queue with the
//!   per-message API (`put`/`get`), the SPSC queue with batches
//!   (`push_batch`/`pop_batch` of up to [`BATCH`] messages), the pipe
//!   (`write_all`/`read_exact` of one message each). Criterion reports
//!   messages/s and bytes/s.
//! - `mpmc_2p2c/*`: two producer and two consumer processes over one MPMC
//!   queue, 64-byte messages; time per message.
//!
//! The queues of the one-way runs hold [`RING_BYTES`] (or [`MIN_MESSAGES`]
//! messages, if more): small messages stay in the cores' L2 caches, as the
//! pipe's 64 KiB buffer does; large ones have room for a few in flight.
//!
//! The measured numbers are in the README ("Numbers").
//!
//! Run: `cargo bench --bench queue` (quick:
//! `-- --warm-up-time 1 --measurement-time 3`).

mod common;

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use common::os::Pipe;
use common::peer::{Peer, Task, pin_to, pipe, two_cpus};
use common::transport::{
    Endpoint, ONE_WAY_SIZES, ROUND_TRIP_SIZE, Transport, one_way, round_trip, round_trip_slow_peer,
};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use multiproc::queue::{Queue, QueueOptions};

/// Bytes of ring in the one-way queues, or room for [`MIN_MESSAGES`] if
/// that is more.
const RING_BYTES: usize = 256 << 10;
/// Messages the one-way queues hold at least.
const MIN_MESSAGES: usize = 8;
/// Messages per `push_batch` / `pop_batch` in the batched one-way run.
const BATCH: usize = 32;

/// An SPSC queue of [`RING_BYTES`] (or [`MIN_MESSAGES`]) for `size`-byte messages.
fn spsc(size: usize) -> Queue {
    let capacity = (RING_BYTES / (size + 8)).max(MIN_MESSAGES);
    Queue::with_options(QueueOptions {
        spsc: true,
        ..QueueOptions::new(capacity, size)
    })
    .expect("make an SPSC queue")
}

/// Two SPSC queues, one per direction, used with the per-message API.
struct SpscQueues {
    /// Poll `put_nowait`/`get_nowait` in a loop instead of blocking calls.
    busy: bool,
    /// The largest message.
    size: usize,
}

/// One end of [`SpscQueues`].
struct QueueEnd {
    tx: Queue,
    rx: Queue,
    busy: bool,
}

fn queue_error(e: multiproc::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl Endpoint for QueueEnd {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if self.busy {
            loop {
                match self.tx.put_nowait(msg) {
                    Ok(()) => return Ok(()),
                    Err(multiproc::Error::Full) => std::hint::spin_loop(),
                    Err(e) => return Err(queue_error(e)),
                }
            }
        }
        self.tx.put(msg, true, None).map_err(queue_error)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = if self.busy {
            loop {
                match self.rx.get_nowait(buf) {
                    Ok(n) => break n,
                    Err(multiproc::Error::Empty) => std::hint::spin_loop(),
                    Err(e) => return Err(queue_error(e)),
                }
            }
        } else {
            self.rx.get(buf, true, None).map_err(queue_error)?
        };
        if n != buf.len() {
            return Err(io::Error::other(format!(
                "got a {n}-byte message, expected {}",
                buf.len()
            )));
        }
        Ok(())
    }
}

impl Transport for SpscQueues {
    type End = QueueEnd;

    fn name(&self) -> &'static str {
        if self.busy {
            "queue_spsc_busy_poll"
        } else {
            "queue_spsc"
        }
    }

    fn pair(&self) -> io::Result<(QueueEnd, QueueEnd)> {
        let (a, b) = (spsc(self.size), spsc(self.size));
        Ok((
            QueueEnd {
                tx: a.clone(),
                rx: b.clone(),
                busy: self.busy,
            },
            QueueEnd {
                tx: b,
                rx: a,
                busy: self.busy,
            },
        ))
    }
}

fn round_trips(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip_8B");
    g.sample_size(20);
    for busy in [true, false] {
        let queues = SpscQueues {
            busy,
            size: ROUND_TRIP_SIZE,
        };
        round_trip(&mut g, &queues);
    }
    round_trip(&mut g, &Pipe);
    g.finish();

    let mut g = c.benchmark_group("round_trip_slow_peer_200us");
    g.sample_size(20);
    let work = Duration::from_micros(200);
    let queues = SpscQueues {
        busy: false,
        size: ROUND_TRIP_SIZE,
    };
    round_trip_slow_peer(&mut g, &queues, work);
    round_trip_slow_peer(&mut g, &Pipe, work);
    g.finish();
}

/// The peer receives `count` messages of `size` bytes with `pop_batch`.
const SINK_BATCHED: u64 = 1;

/// One-way throughput through one SPSC queue with batches: this process
/// sends with `push_batch` (up to [`BATCH`] messages per call), the peer
/// receives with `pop_batch`; either side waits with the blocking
/// single-message call when the batch call finds no room (no message).
fn one_way_batched(g: &mut BenchmarkGroup<'_, WallTime>, size: usize) {
    let q = spsc(size);
    let rx_queue = q.clone();
    let mut peer = Peer::start(move |task: Task| {
        let mut rx = rx_queue.consumer().map_err(queue_error)?;
        let mut left = task.count;
        while left > 0 {
            let got = rx.pop_batch(left.min(BATCH as u64) as usize, |m| {
                debug_assert_eq!(m.len(), size);
            });
            if got == 0 {
                let msg = rx.read(None).map_err(queue_error)?;
                if msg.bytes().len() != size {
                    return Err(io::Error::other("a message of the wrong size"));
                }
                msg.release();
                left -= 1;
            } else {
                left -= got as u64;
            }
        }
        Ok(())
    });
    let mut tx = q.producer().expect("the producer role");
    let msg = vec![0xa5u8; size];
    let batch: Vec<&[u8]> = vec![&msg; BATCH];
    g.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: size as u64,
    });
    g.bench_function(BenchmarkId::new("queue_spsc_batch", size), |b| {
        b.iter_custom(|iters| {
            peer.begin(Task {
                kind: SINK_BATCHED,
                count: iters,
                size: size as u64,
            });
            let start = Instant::now();
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                let sent = tx.push_batch(&batch[..n]).expect("push_batch");
                if sent == 0 {
                    tx.push(&msg, None).expect("push");
                    left -= 1;
                } else {
                    left -= sent as u64;
                }
            }
            peer.finish();
            start.elapsed()
        })
    });
}

fn one_way_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_way");
    g.sample_size(10);
    for size in ONE_WAY_SIZES {
        one_way(&mut g, &SpscQueues { busy: false, size }, size);
        one_way_batched(&mut g, size);
        one_way(&mut g, &Pipe, size);
    }
    g.finish();
}

/// What the MPMC benchmark's children read as "exit now".
const STOP: u64 = u64::MAX;

/// Two producer and two consumer processes over one MPMC queue of 64-byte
/// messages; the producers on one CPU each, the consumers too.
fn mpmc_2p2c(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_2p2c");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1));
    let q = Queue::new(256, 64).expect("queue");
    let cpus = two_cpus();
    let (mut done_r, done_w) = pipe();
    let mut controls = Vec::new();
    let mut children = Vec::new();
    for role in 0..4usize {
        let (mut cr, cw) = pipe();
        controls.push(cw);
        let (q, mut done_w) = (q.clone(), done_w.try_clone().expect("dup"));
        // A daemon: it dies with this process if the benchmark panics.
        let child = multiproc::process::Process::new(move || -> i32 {
            if let Some((a, b)) = cpus {
                pin_to(if role % 2 == 0 { a } else { b });
            }
            let mut buf = [0u8; 64];
            let mut n = [0u8; 8];
            // Siblings inherit each other's control pipes, so the end of a
            // pipe never shows: STOP says it.
            while cr.read_exact(&mut n).is_ok() && u64::from_le_bytes(n) != STOP {
                for _ in 0..u64::from_le_bytes(n) {
                    if role < 2 {
                        q.put(&buf, true, None).expect("put");
                    } else {
                        q.get(&mut buf, true, None).expect("get");
                    }
                }
                if role >= 2 {
                    done_w.write_all(b"d").expect("done");
                }
            }
            0
        })
        .daemon(true);
        child.start().expect("start");
        children.push(child);
    }
    drop(done_w);
    g.bench_function("queue_mpmc", |b| {
        b.iter_custom(|iters| {
            let half = iters.div_ceil(2);
            let start = Instant::now();
            for c in &mut controls {
                c.write_all(&half.to_le_bytes()).expect("control");
            }
            let mut d = [0u8; 2];
            done_r.read_exact(&mut d).expect("done");
            start.elapsed().mul_f64(iters as f64 / (2 * half) as f64)
        })
    });
    for c in &mut controls {
        c.write_all(&STOP.to_le_bytes()).expect("control");
    }
    for c in &children {
        if c.join(Some(Duration::from_secs(60))).expect("join") != 0 {
            for c in &children {
                let _ = c.kill();
            }
            panic!("an MPMC benchmark child failed");
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = round_trips, one_way_throughput, mpmc_2p2c
}
criterion_main!(benches);
