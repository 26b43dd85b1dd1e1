//! `connection::pipe` against a raw Unix socketpair, in the same run,
//! between two processes (a fork child echoes or counts).
//!
//! - round trip: the parent sends a message, the child sends it back.
//! - throughput: the parent streams messages, the child acknowledges each
//!   batch with one byte.
//!
//! The raw baseline knows every message's size in advance, so it moves only
//! the payload with `write_all` / `read_exact`. Ours adds CPython's length
//! prefix (sent with the payload in one `sendmsg`) and reads it back.
//!
//! Run: `cargo bench --bench connection`.
//!
//! Measured 2026-11-21 on the 2-core build machine while other builds ran
//! (load 4-6; numbers move by 10-30% between runs, compare within a run):
//!
//! | case | raw socketpair | connection | connection_alloc |
//! |---|---|---|---|
//! | round trip 8 B | 16.3 us | 16.2 us | 17.6 us |
//! | round trip 1 KiB | 16.8 us | 18.7 us | 19.3 us |
//! | round trip 64 KiB | 40.8 us | 39.9 us | 50.4 us |
//! | stream 1 KiB / message | 2.8-3.1 us | 3.1-3.3 us | 3.4 us |
//! | stream 64 KiB / message | 15.4 us | 16.9 us | 18.8 us |
//! | stream 1 MiB / message | 234 us | 227 us | 249 us |
//!
//! On an idle machine the small round trips are ~45 us for both (the CPUs
//! sleep between messages); CPython's `Pipe` round trip is about 32 us.

use std::hint::black_box;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::connection::{Connection, pipe};
use multiproc::process::Process;

/// One end of a two-process channel with messages of sizes both sides know.
trait Transport: Send + 'static {
    fn send(&mut self, msg: &[u8]);
    /// Receives the next message into `buf`, which has its exact size.
    /// `false` when the peer is gone.
    fn recv(&mut self, buf: &mut [u8]) -> bool;
}

/// The baseline: payload bytes only, on a stream socketpair.
struct RawSocket(UnixStream);

impl Transport for RawSocket {
    fn send(&mut self, msg: &[u8]) {
        self.0.write_all(msg).expect("raw write");
    }

    fn recv(&mut self, buf: &mut [u8]) -> bool {
        self.0.read_exact(buf).is_ok()
    }
}

/// Ours, receiving into a reused buffer (`recv_bytes_into`).
struct Conn(Connection);

impl Transport for Conn {
    fn send(&mut self, msg: &[u8]) {
        self.0.send_bytes(msg).expect("send_bytes");
    }

    fn recv(&mut self, buf: &mut [u8]) -> bool {
        match self.0.recv_bytes_into(buf, 0) {
            Ok(n) => {
                assert_eq!(n, buf.len());
                true
            }
            Err(_) => false,
        }
    }
}

/// Ours, receiving a fresh `Vec` per message (`recv_bytes`), as Python does.
struct ConnAlloc(Connection);

impl Transport for ConnAlloc {
    fn send(&mut self, msg: &[u8]) {
        self.0.send_bytes(msg).expect("send_bytes");
    }

    fn recv(&mut self, buf: &mut [u8]) -> bool {
        match self.0.recv_bytes(None) {
            Ok(v) => {
                assert_eq!(v.len(), buf.len());
                // Only the 8-byte batch counts are read by the protocol.
                let head = buf.len().min(8);
                buf[..head].copy_from_slice(&v[..head]);
                black_box(v);
                true
            }
            Err(_) => false,
        }
    }
}

fn raw_pair() -> (RawSocket, RawSocket) {
    let (a, b) = UnixStream::pair().unwrap();
    (RawSocket(a), RawSocket(b))
}

fn conn_pair() -> (Conn, Conn) {
    let (a, b) = pipe(true).unwrap();
    (Conn(a), Conn(b))
}

fn conn_alloc_pair() -> (ConnAlloc, ConnAlloc) {
    let (a, b) = pipe(true).unwrap();
    (ConnAlloc(a), ConnAlloc(b))
}

/// Starts a child running `serve` on its end; the parent keeps the other.
fn with_child<T: Transport>(
    (mut parent, child_end): (T, T),
    serve: fn(T, usize),
    size: usize,
    body: impl FnOnce(&mut T),
) {
    let child = Process::new(move || serve(child_end, size));
    child.start().unwrap();
    body(&mut parent);
    // The child holds a copy of the parent's end too (fork copies every
    // descriptor), so it would never read end of file: stop it.
    child.terminate().unwrap();
    let code = child.join(Some(Duration::from_secs(60))).unwrap();
    assert!(
        code == 0 || code == -libc::SIGTERM,
        "child ended with {code}"
    );
}

/// Child of the round trip: echo every `size`-byte message.
fn echo<T: Transport>(mut end: T, size: usize) {
    let mut buf = vec![0u8; size];
    while end.recv(&mut buf) {
        end.send(&buf);
    }
}

/// Child of the throughput run: a batch is an 8-byte count, then that many
/// `size`-byte messages; one byte acknowledges the batch.
fn sink<T: Transport>(mut end: T, size: usize) {
    let mut count = [0u8; 8];
    let mut buf = vec![0u8; size];
    while end.recv(&mut count) {
        for _ in 0..u64::from_le_bytes(count) {
            assert!(end.recv(&mut buf));
        }
        end.send(&[1]);
    }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe_round_trip");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for size in [8usize, 1024, 64 * 1024] {
        group.throughput(Throughput::Bytes(2 * size as u64));
        macro_rules! bench {
            ($name:literal, $pair:expr) => {
                with_child($pair, echo, size, |parent| {
                    let msg = vec![7u8; size];
                    let mut back = vec![0u8; size];
                    group.bench_with_input(BenchmarkId::new($name, size), &size, |b, _| {
                        b.iter(|| {
                            parent.send(&msg);
                            assert!(parent.recv(&mut back));
                        })
                    });
                })
            };
        }
        bench!("raw_socketpair", raw_pair());
        bench!("connection", conn_pair());
        bench!("connection_alloc", conn_alloc_pair());
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe_throughput");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for size in [1024usize, 64 * 1024, 1 << 20] {
        group.throughput(Throughput::Bytes(size as u64));
        macro_rules! bench {
            ($name:literal, $pair:expr) => {
                with_child($pair, sink, size, |parent| {
                    let msg = vec![7u8; size];
                    let mut ack = [0u8; 1];
                    group.bench_with_input(BenchmarkId::new($name, size), &size, |b, _| {
                        b.iter_custom(|iters| {
                            let start = Instant::now();
                            parent.send(&iters.to_le_bytes());
                            for _ in 0..iters {
                                parent.send(&msg);
                            }
                            assert!(parent.recv(&mut ack));
                            start.elapsed()
                        })
                    });
                })
            };
        }
        bench!("raw_socketpair", raw_pair());
        bench!("connection", conn_pair());
        bench!("connection_alloc", conn_alloc_pair());
    }
    group.finish();
}

criterion_group!(benches, round_trip, throughput);
criterion_main!(benches);
