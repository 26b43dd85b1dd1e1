//! A producer process streams messages to its parent through a multiproc
//! SPSC queue and, for comparison, through an OS pipe. Prints messages/s,
//! GB/s and the ratio for a few message sizes.
//!
//! Run: `cargo run --release --example demo` (the README's main demo)

use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use multiproc::process::Process;
use multiproc::queue::{Queue, QueueOptions};

const LONG: Option<Duration> = Some(Duration::from_secs(120));

/// Messages/s and bytes/s of moving `count` messages of `size` bytes.
struct Rate {
    msgs_per_s: f64,
    bytes_per_s: f64,
}

fn rate(count: u64, size: usize, took: Duration) -> Rate {
    let s = took.as_secs_f64();
    Rate {
        msgs_per_s: count as f64 / s,
        bytes_per_s: (count * size as u64) as f64 / s,
    }
}

/// Bytes of ring in the queue, or room for 8 messages if that is more:
/// small messages stay in the cores' L2 caches, as the pipe's 64 KiB buffer
/// does; large ones have room for a few in flight.
const RING_BYTES: usize = 256 << 10;

fn through_queue(count: u64, size: usize) -> multiproc::Result<Rate> {
    let q = Queue::with_options(QueueOptions {
        spsc: true,
        ..QueueOptions::new((RING_BYTES / (size + 8)).max(8), size)
    })?;
    let producer = {
        let q = q.clone();
        Process::new(move || -> multiproc::Result<()> {
            let msg = vec![0x5a; size];
            for _ in 0..count {
                q.put(&msg, true, LONG)?;
            }
            Ok(())
        })
    };
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    producer.start()?;
    for _ in 0..count {
        q.get(&mut buf, true, LONG)?;
    }
    let took = start.elapsed();
    assert_eq!(producer.join(LONG)?, 0);
    Ok(rate(count, size, took))
}

fn through_pipe(count: u64, size: usize) -> multiproc::Result<Rate> {
    let (r, w) = multiproc::sys::pipe().map_err(|e| multiproc::Error::os("pipe", e))?;
    let (mut r, w) = (File::from(r), File::from(w));
    let producer = Process::new(move || -> std::io::Result<()> {
        let mut w = w;
        let msg = vec![0x5a; size];
        for _ in 0..count {
            w.write_all(&msg)?;
        }
        Ok(())
    });
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    producer.start()?;
    for _ in 0..count {
        r.read_exact(&mut buf)
            .map_err(|e| multiproc::Error::os("pipe read", e))?;
    }
    let took = start.elapsed();
    assert_eq!(producer.join(LONG)?, 0);
    Ok(rate(count, size, took))
}

fn main() -> multiproc::Result<()> {
    println!("one producer process -> this process, messages copied in and out");
    println!(
        "{:>9} | {:>14} {:>9} | {:>14} {:>9} | {:>6}",
        "size", "queue msg/s", "GB/s", "pipe msg/s", "GB/s", "ratio"
    );
    for (size, count) in [
        (8usize, 2_000_000u64),
        (64, 2_000_000),
        (4096, 200_000),
        (65536, 20_000),
        (1 << 20, 2_000),
    ] {
        let q = through_queue(count, size)?;
        let p = through_pipe(count, size)?;
        println!(
            "{:>9} | {:>14.0} {:>9.2} | {:>14.0} {:>9.2} | {:>5.1}x",
            size,
            q.msgs_per_s,
            q.bytes_per_s / 1e9,
            p.msgs_per_s,
            p.bytes_per_s / 1e9,
            q.msgs_per_s / p.msgs_per_s
        );
    }
    Ok(())
}
