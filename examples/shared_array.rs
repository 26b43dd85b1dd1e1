//! Worker processes produce a large array of numbers, once writing straight
//! into a shared array (allocated and touched once, before the runs, as an
//! application reuses its buffers) and once streaming the same bytes
//! through one OS pipe each to the parent, which checks them as they
//! arrive. Each run is timed end to end: start the workers, move the data,
//! join, check every word. Prints both and the ratio.
//!
//! The work per word (compute it, check it) is the same on both sides, so
//! the ratio shows what the transfer costs on top of it.
//!
//! `cargo run --release --example shared_array [-- MiB [runs]]` (default 256 MiB, 5 runs).

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

/// Workers write their shares straight into one shared block.
fn through_shared_memory(mem: &SharedMemory, workers: usize) -> Result<Duration> {
    let words = mem.len() / 8;
    let start = Instant::now();
    let procs: Vec<Process> = (0..workers)
        .map(|w| {
            let mem = mem.clone();
            Process::new(move || {
                // One call maps this worker's pages instead of a fault each.
                let mine = share(w, workers, words);
                mem.prefault(mine.start * 8..mine.end * 8)
                    .expect("prefault");
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
    // The parent checks every word, one thread per share, as the pipe
    // version does.
    let cells = mem.as_atomic_u64();
    std::thread::scope(|s| {
        for w in 0..workers {
            s.spawn(move || {
                for i in share(w, workers, words) {
                    assert_eq!(
                        cells[i].load(Ordering::Relaxed),
                        word(i),
                        "word {i} is wrong"
                    );
                }
            });
        }
    });
    Ok(start.elapsed())
}

/// Workers send their shares through one OS pipe each; the parent reads
/// each pipe in 1 MiB chunks and checks every word as it arrives, as a
/// stream consumer does.
fn through_pipes(words: usize, workers: usize) -> Result<Duration> {
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
    // One reader thread per pipe, as the workers also run side by side.
    let received: usize = std::thread::scope(|s| {
        let jobs: Vec<_> = readers
            .into_iter()
            .enumerate()
            .map(|(w, mut reader)| {
                s.spawn(move || {
                    let mut next = share(w, workers, words).start;
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = reader.read(&mut buf).expect("pipe read");
                        if n == 0 {
                            return next - share(w, workers, words).start;
                        }
                        // A read may end inside a word: complete it.
                        let mut n = n;
                        if n % 8 != 0 {
                            let rest = 8 - n % 8;
                            reader
                                .read_exact(&mut buf[n..n + rest])
                                .expect("the rest of a word");
                            n += rest;
                        }
                        for b in buf[..n].chunks_exact(8) {
                            let got = u64::from_ne_bytes(b.try_into().expect("8 bytes"));
                            assert_eq!(got, word(next), "word {next} is wrong");
                            next += 1;
                        }
                    }
                })
            })
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("reader thread"))
            .sum()
    });
    for p in &procs {
        assert_eq!(p.join(Some(JOIN_DEADLINE))?, 0, "worker failed");
    }
    assert_eq!(received, words);
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
    // Touch every page once, so no run pays for first faults.
    shared
        .as_atomic_u64()
        .iter()
        .for_each(|w| w.store(1, Ordering::Relaxed));
    let (mut shm, mut pipe) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        shm.push(through_shared_memory(&shared, workers)?);
        pipe.push(through_pipes(words, workers)?);
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
