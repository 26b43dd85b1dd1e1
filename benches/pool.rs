//! Pool benchmarks, beside CPython's figures measured on the same machine
//! (`python3 /work/shared/peers/py_mp_bench.py`, section [5]):
//!
//! - `map_chunksize_1`: `Pool(2).map(identity, 0..20_000, chunksize 1)`,
//!   time per task (one task message and one result message per item);
//!   with windows of 1, 2, 4 (the default) and 8 tasks per worker.
//! - `map_auto_chunks`: `Pool(2).map(identity, 0..200_000)` with the
//!   default chunk size (`ceil(len / 8)`), time per item.
//! - `cpu_bound`: 16 tasks of ~2 ms of arithmetic each, sequential in this
//!   thread vs `Pool(2).map(.., chunksize 1)`: the speed-up on 2 cores.
//!
//! Pools are created and warmed up outside the timing, as in the Python
//! script. Run: `cargo bench --bench pool`.
//!
//! One run (2 vCPUs shared with other builds, load average 4 to 6; CPython
//! 3.11 measured just before):
//!
//! | benchmark                              | multiproc  | CPython   | ratio |
//! |----------------------------------------|------------|-----------|-------|
//! | chunksize 1, window 4 (default)        | 1.06 us    | 46.2 us   | 44x   |
//! | chunksize 1, windows 1 / 2 / 8         | 1.58 / 0.53 / 0.67 us | |  |
//! | default chunksize, per item            | 36 ns      | 0.339 us  | 9.3x  |
//! | CPU-bound 16 tasks, pool(2) vs 1 thread | 71.2 ms vs 93.3 ms | | 1.31x |

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::pool::Pool;
use multiproc::process::StartMethod;

fn identity(x: u64) -> u64 {
    x
}

/// About 2 ms of integer arithmetic that the optimizer cannot skip.
fn spin_2ms(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..3_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

fn pool(window: usize) -> Pool {
    let pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .window(window)
        .build()
        .expect("pool");
    pool.map(identity, 0..100u64, None).expect("warm-up");
    pool
}

fn per_item(pool: &Pool, n: u64, chunksize: Option<usize>, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = pool.map(identity, 0..n, chunksize).expect("map");
        total += t0.elapsed();
        assert_eq!(out.len() as u64, n);
    }
    total
}

fn map_chunksize_1(c: &mut Criterion) {
    const N: u64 = 20_000;
    let mut g = c.benchmark_group("pool/map_chunksize_1");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(N));
    for window in [1, 2, 4, 8] {
        let pool = pool(window);
        g.bench_function(BenchmarkId::new("window", window), |b| {
            b.iter_custom(|iters| per_item(&pool, N, Some(1), iters))
        });
    }
    g.finish();
}

fn map_auto_chunks(c: &mut Criterion) {
    const N: u64 = 200_000;
    let mut g = c.benchmark_group("pool/map_auto_chunks");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(N));
    let pool = pool(4);
    g.bench_function("default_chunksize", |b| {
        b.iter_custom(|iters| per_item(&pool, N, None, iters))
    });
    g.finish();
}

fn cpu_bound(c: &mut Criterion) {
    const TASKS: u64 = 16;
    let mut g = c.benchmark_group("pool/cpu_bound_16x2ms");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("sequential", |b| {
        b.iter(|| {
            (0..TASKS)
                .map(|s| spin_2ms(black_box(s)))
                .fold(0u64, u64::wrapping_add)
        })
    });
    let pool = pool(4);
    g.bench_function("pool_2", |b| {
        b.iter(|| {
            pool.map(spin_2ms, 0..TASKS, Some(1))
                .expect("map")
                .into_iter()
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.finish();
}

criterion_group!(benches, map_chunksize_1, map_auto_chunks, cpu_bound);
criterion_main!(benches);
