//! Moving bytes between two processes, measured the same way for every way
//! of doing it: an OS pipe, a socketpair, a multiproc queue... are each just
//! an implementation of [`Transport`].

use std::io;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Throughput};

use super::peer::{Peer, Task};

/// One end of a two-way link between two processes.
pub trait Endpoint {
    /// Sends all of `msg` (blocking while the link is full).
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives exactly `buf.len()` bytes that the other end sent.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

/// A way to link two processes: makes a connected pair of ends before the
/// fork; the benchmark keeps the first, the forked peer the second. What one
/// end sends, the other receives, in both directions.
pub trait Transport {
    /// The type of both ends.
    type End: Endpoint;
    /// The name reports show (`pipe`, `socketpair`, ...).
    fn name(&self) -> &'static str;
    /// A connected pair.
    fn pair(&self) -> io::Result<(Self::End, Self::End)>;
}

/// The peer echoes `count` messages of `size` bytes back.
const ECHO: u64 = 1;
/// The peer receives `count` messages of `size` bytes.
const SINK: u64 = 2;

/// The message of the round-trip measurement, bytes.
pub const ROUND_TRIP_SIZE: usize = 8;
/// The message sizes of the one-way measurement, bytes.
pub const ONE_WAY_SIZES: [usize; 5] = [8, 64, 4096, 64 << 10, 1 << 20];

/// Forks a peer that serves [`ECHO`] and [`SINK`] on its end of `transport`;
/// before each echo it works (spins) for `work`.
fn start_peer<T: Transport>(transport: &T, max_size: usize, work: Duration) -> (T::End, Peer) {
    let (mine, mut theirs) = transport
        .pair()
        .unwrap_or_else(|e| panic!("{}: make a pair: {e}", transport.name()));
    // Allocated before the fork: the peer does not allocate.
    let mut buf = vec![0u8; max_size];
    let peer = Peer::start(move |task: Task| {
        let msg = &mut buf[..task.size as usize];
        for _ in 0..task.count {
            theirs.recv(msg)?;
            if task.kind == ECHO {
                if !work.is_zero() {
                    let start = Instant::now();
                    while start.elapsed() < work {
                        std::hint::spin_loop();
                    }
                }
                theirs.send(msg)?;
            }
        }
        Ok(())
    });
    (mine, peer)
}

/// Round trip of an 8-byte message: this process sends, the peer sends it
/// back. One criterion iteration is one round trip.
pub fn round_trip<T: Transport>(group: &mut BenchmarkGroup<'_, WallTime>, transport: &T) {
    round_trip_slow_peer(group, transport, Duration::ZERO);
}

/// As [`round_trip`], with a peer that works for `work` before it answers
/// each message: the waiting side cannot catch the answer by polling a
/// little while, it has to sleep and be woken.
pub fn round_trip_slow_peer<T: Transport>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    transport: &T,
    work: Duration,
) {
    let (mut end, mut peer) = start_peer(transport, ROUND_TRIP_SIZE, work);
    let name = transport.name();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter_custom(|iters| {
            let mut msg = [0x5au8; ROUND_TRIP_SIZE];
            peer.begin(Task {
                kind: ECHO,
                count: iters,
                size: ROUND_TRIP_SIZE as u64,
            });
            let start = Instant::now();
            for i in 0..iters {
                msg[0] = i as u8;
                end.send(&msg)
                    .unwrap_or_else(|e| panic!("{name}: send: {e}"));
                end.recv(&mut msg)
                    .unwrap_or_else(|e| panic!("{name}: recv: {e}"));
                assert_eq!(msg[0], i as u8, "{name}: the echo is not what was sent");
            }
            let elapsed = start.elapsed();
            peer.finish();
            elapsed
        })
    });
}

/// One-way throughput of `size`-byte messages: this process sends as fast
/// as it can, the peer receives; the clock stops when the peer has them
/// all. One criterion iteration is one message.
pub fn one_way<T: Transport>(group: &mut BenchmarkGroup<'_, WallTime>, transport: &T, size: usize) {
    let (mut end, mut peer) = start_peer(transport, size, Duration::ZERO);
    let name = transport.name();
    let msg = vec![0xa5u8; size];
    group.throughput(Throughput::ElementsAndBytes {
        elements: 1,
        bytes: size as u64,
    });
    group.bench_function(BenchmarkId::new(name, size), |b| {
        b.iter_custom(|iters| {
            peer.begin(Task {
                kind: SINK,
                count: iters,
                size: size as u64,
            });
            let start = Instant::now();
            for _ in 0..iters {
                end.send(&msg)
                    .unwrap_or_else(|e| panic!("{name}: send: {e}"));
            }
            peer.finish();
            start.elapsed()
        })
    });
}
