//! The OS's own links between two processes, pipe and socketpair: round
//! trip of an 8-byte message and one-way throughput from 8 B to 1 MiB. The
//! baselines that multiproc's queues and connections are compared with.
//!
//! `cargo bench --bench transport` (quick: `-- --warm-up-time 1 --measurement-time 2`).

mod common;

use common::os::{Pipe, SocketPair};
use common::transport::{ONE_WAY_SIZES, one_way, round_trip};
use criterion::{Criterion, criterion_group, criterion_main};

fn round_trips(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip_8B");
    round_trip(&mut group, &Pipe);
    round_trip(&mut group, &SocketPair);
    group.finish();
}

fn one_way_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_way");
    for size in ONE_WAY_SIZES {
        one_way(&mut group, &Pipe, size);
        one_way(&mut group, &SocketPair, size);
    }
    group.finish();
}

criterion_group!(benches, round_trips, one_way_throughput);
criterion_main!(benches);
