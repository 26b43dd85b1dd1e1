//! The main demo: worker processes produce a large array of numbers, once
//! writing straight into a shared array and once sending the same bytes
//! through OS pipes into the parent's array, each timed end to end (start
//! the workers, move the data, join, verify every word). Both destination
//! arrays are allocated and touched once, before the runs, as an
//! application reuses its buffers. Prints both and the ratio.
//!
//! `cargo run --release --example demo [-- MiB [runs]]` (default 256 MiB, 5 runs).

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use multiproc::Result;
use multiproc::process::{Process, cpu_count};
use multiproc::shm::{Backing, SharedMemory};

const JOIN_DEADLINE: Duration = Duration::from_secs(120);

/// The value of word `i`: cheap to compute, impossible to get right by accident.
fn word(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555
}

/// The words worker `w` of `n` produces: a contiguous share.
fn share(w: usize, n: usize, words: usize) -> std::ops::Range<usize> {
    (words * w / n)..(words * (w + 1) / n)
}

fn verify(words: impl Iterator<Item = u64>) -> usize {
    let mut count = 0;
    for (i, got) in words.enumerate() {
        assert_eq!(got, word(i), "word {i} is wrong");
        count += 1;
    }
    count
}

/// Workers write their shares straight into one shared block.
fn through_shared_memory(mem: &SharedMemory, workers: usize) -> Result<Duration> {
    let words = mem.len() / 8;
    let start = Instant::now();
    let procs: Vec<Process> = (0..workers)
        .map(|w| {
            let mem = mem.clone();
            Process::new(move || {
                let out = mem.as_atomic_u64();
                for i in share(w, workers, words) {
                    // Relaxed: the parent reads after join, which orders it.
                    out[i].store(word(i), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        assert_eq!(p.join(Some(JOIN_DEADLINE))?, 0, "worker failed");
    }
    let n = verify(
        mem.as_atomic_u64()
            .iter()
            .map(|w| w.load(Ordering::Relaxed)),
    );
    assert_eq!(n, words);
    Ok(start.elapsed())
}

/// Workers send their shares through one OS pipe each; the parent reads
/// them into its array.
fn through_pipes(out: &mut [u8], workers: usize) -> Result<Duration> {
    let words = out.len() / 8;
    let start = Instant::now();
    let mut readers = Vec::new();
    let mut procs = Vec::new();
    for w in 0..workers {
        let (reader, writer) = std::io::pipe().map_err(|e| multiproc::Error::os("pipe", e))?;
        // The parent's copy of `writer` goes with the closure when `start`
        // returns, so the reader sees end-of-file when the child is done.
        let p = Process::new(move || {
            let mut writer = writer;
            let mut chunk = Vec::with_capacity(64 * 1024);
            for i in share(w, workers, words) {
                chunk.extend_from_slice(&word(i).to_ne_bytes());
                if chunk.len() == chunk.capacity() {
                    writer.write_all(&chunk).expect("pipe write");
                    chunk.clear();
                }
            }
            writer.write_all(&chunk).expect("pipe write");
        });
        p.start()?;
        readers.push(reader);
        procs.push(p);
    }
    // One reader thread per pipe, as the shared-memory workers also run
    // side by side; each fills its own part of `out`.
    std::thread::scope(|s| -> Result<()> {
        let mut rest = &mut *out;
        let mut jobs = Vec::new();
        for (w, mut reader) in readers.into_iter().enumerate() {
            let (mine, tail) = rest.split_at_mut(share(w, workers, words).len() * 8);
            rest = tail;
            jobs.push(s.spawn(move || reader.read_exact(mine)));
        }
        for job in jobs {
            job.join()
                .expect("reader thread")
                .map_err(|e| multiproc::Error::os("pipe read", e))?;
        }
        Ok(())
    })?;
    for p in &procs {
        assert_eq!(p.join(Some(JOIN_DEADLINE))?, 0, "worker failed");
    }
    let n = verify(
        out.chunks_exact(8)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes"))),
    );
    assert_eq!(n, words);
    Ok(start.elapsed())
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args
        .next()
        .map_or(256, |a| a.parse().expect("MiB: a number"));
    let runs: usize = args
        .next()
        .map_or(5, |a| a.parse().expect("runs: a number"));
    let words = mib * 1024 * 1024 / 8;
    let workers = cpu_count()?.clamp(1, 8);
    println!(
        "multiproc demo: {workers} worker processes produce {mib} MiB ({words} u64 words); \
         median of {runs} runs, each end to end (start, transfer, join, verify)"
    );
    let shared = SharedMemory::new(words * 8, Backing::Anonymous)?;
    let mut private = vec![0u8; words * 8];
    // Touch every page of both once, so no run pays for first faults.
    shared
        .as_atomic_u64()
        .iter()
        .for_each(|w| w.store(1, Ordering::Relaxed));
    private.iter_mut().step_by(4096).for_each(|b| *b = 1);
    let (mut shm, mut pipe) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        shm.push(through_shared_memory(&shared, workers)?);
        pipe.push(through_pipes(&mut private, workers)?);
    }
    let (shm, pipe) = (median(shm), median(pipe));
    let gbps = |d: Duration| (words * 8) as f64 / d.as_secs_f64() / 1e9;
    println!("{:<28}{:>12}{:>14}", "", "time", "throughput");
    for (name, d) in [("shared memory (multiproc)", shm), ("OS pipe", pipe)] {
        println!(
            "{name:<28}{:>9.1} ms{:>9.2} GB/s",
            d.as_secs_f64() * 1e3,
            gbps(d)
        );
    }
    println!(
        "ratio: shared memory is {:.1}x the OS pipe's throughput",
        pipe.as_secs_f64() / shm.as_secs_f64()
    );
    Ok(())
}
