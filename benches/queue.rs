//! Queue benchmarks, each beside the OS baselines in the same run, between
//! two processes pinned to different cores:
//!
//! - `pingpong/*`: round trip of an 8-byte message (there and back) through
//!   two SPSC queues, busy-polling (`get_nowait` in a loop) and with the
//!   blocking API; through two pipes; through a Unix socketpair.
//! - `oneway/<size>/*`: a producer process streams messages of 8 B .. 1 MiB
//!   to the measuring process: SPSC queue vs pipe (both copy in and out).
//! - `mpmc_2p2c/*`: two producer and two consumer processes over one MPMC
//!   queue, 64-byte messages; time per message.
//!
//! - `pingpong_slow_peer_200us/*`: the same with a peer that works 200 us
//!   before answering: the blocking queue sleeps, as the pipe does.
//!
//! One run on the 2-vCPU build machine (other jobs around; compare within
//! the run), ratios against the pipe:
//!
//! | benchmark                        | queue      | pipe      | ratio  |
//! |----------------------------------|------------|-----------|--------|
//! | ping-pong 8 B, busy-poll         | 0.205 us   | 48.0 us   | 234x   |
//! | ping-pong 8 B, blocking API      | 0.267 us   | 48.0 us   | 180x   |
//! | ping-pong, peer slow (200 us)    | 230 us     | 255 us    | 1.1x   |
//! | one-way 8 B (per message)        | 80 ns      | 241 ns    | 3.0x   |
//! | one-way 64 B                     | 88 ns      | 243 ns    | 2.8x   |
//! | one-way 4 KiB                    | 24.8 GiB/s | 3.5 GiB/s | 7x     |
//! | one-way 64 KiB                   | 22.8 GiB/s | 1.5 GiB/s | 15x    |
//! | one-way 1 MiB                    | 19.0 GiB/s | 1.0 GiB/s | 19x    |
//! | MPMC 2 producers + 2 consumers   | 8.7 M msg/s | -        |        |
//!
//! (socketpair ping-pong: 45.2 us.)
//!
//! The two-process machinery (pinning, a child that serves requests until
//! killed) is written here; it moves to `benches/common` when that lands.
//!
//! Run: `cargo bench --bench queue`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multiproc::process::Process;
use multiproc::queue::{Queue, QueueOptions};

const LONG: Option<Duration> = Some(Duration::from_secs(120));

/// Pins the calling process to one CPU (best effort: fewer CPUs, no pin).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it; the
    // call reads it only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pipe() -> (File, File) {
    let (r, w) = multiproc::sys::pipe().expect("pipe");
    (File::from(r), File::from(w))
}

/// One end of a two-way channel: what the benchmarks are written over.
trait End: Send + 'static {
    fn send(&mut self, msg: &[u8]);
    /// Receives one message of `len` bytes into `buf`.
    fn recv(&mut self, buf: &mut [u8], len: usize);
}

impl End for Box<dyn End> {
    fn send(&mut self, msg: &[u8]) {
        (**self).send(msg)
    }
    fn recv(&mut self, buf: &mut [u8], len: usize) {
        (**self).recv(buf, len)
    }
}

/// Two SPSC queues, one per direction.
struct QueueEnd {
    tx: Queue,
    rx: Queue,
    spin: bool,
}

impl End for QueueEnd {
    fn send(&mut self, msg: &[u8]) {
        if self.spin {
            while self.tx.put_nowait(msg).is_err() {
                std::hint::spin_loop();
            }
        } else {
            self.tx.put(msg, true, LONG).expect("put");
        }
    }
    fn recv(&mut self, buf: &mut [u8], _len: usize) {
        if self.spin {
            while self.rx.get_nowait(buf).is_err() {
                std::hint::spin_loop();
            }
        } else {
            self.rx.get(buf, true, LONG).expect("get");
        }
    }
}

/// Two pipes, one per direction.
struct PipeEnd {
    w: File,
    r: File,
}

impl End for PipeEnd {
    fn send(&mut self, msg: &[u8]) {
        self.w.write_all(msg).expect("pipe write");
    }
    fn recv(&mut self, buf: &mut [u8], len: usize) {
        self.r.read_exact(&mut buf[..len]).expect("pipe read");
    }
}

/// A Unix stream socketpair.
struct SockEnd(UnixStream);

impl End for SockEnd {
    fn send(&mut self, msg: &[u8]) {
        self.0.write_all(msg).expect("socket write");
    }
    fn recv(&mut self, buf: &mut [u8], len: usize) {
        self.0.read_exact(&mut buf[..len]).expect("socket read");
    }
}

fn spsc(capacity: usize, max: usize) -> Queue {
    Queue::with_options(QueueOptions {
        spsc: true,
        ..QueueOptions::new(capacity, max)
    })
    .expect("queue")
}

/// Channel pairs: (parent end, child end).
fn queue_pair(spin: bool) -> (QueueEnd, QueueEnd) {
    let (a, b) = (spsc(64, 8), spsc(64, 8));
    (
        QueueEnd {
            tx: a.clone(),
            rx: b.clone(),
            spin,
        },
        QueueEnd { tx: b, rx: a, spin },
    )
}

fn pipe_pair() -> (PipeEnd, PipeEnd) {
    let ((r1, w1), (r2, w2)) = (pipe(), pipe());
    (PipeEnd { w: w1, r: r2 }, PipeEnd { w: w2, r: r1 })
}

fn sock_pair() -> (SockEnd, SockEnd) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    (SockEnd(a), SockEnd(b))
}

/// A child pinned to CPU 1 that echoes 8-byte messages until killed,
/// each after working (busy) for `delay`.
fn echo_child(mut end: impl End, delay: Duration) -> Process {
    let child = Process::new(move || -> i32 {
        pin(1);
        let mut buf = [0u8; 8];
        loop {
            end.recv(&mut buf, 8);
            if !delay.is_zero() {
                let start = Instant::now();
                while start.elapsed() < delay {
                    std::hint::spin_loop();
                }
            }
            end.send(&buf);
        }
    })
    .daemon(true);
    child.start().expect("start echo child");
    child
}

fn pingpong(c: &mut Criterion) {
    pingpong_with(c, "pingpong", Duration::ZERO, true);
    // The peer works 200 us before it answers: the waiter's spin window
    // runs out and it sleeps; the wake-up must cost no more than a pipe's.
    pingpong_with(
        c,
        "pingpong_slow_peer_200us",
        Duration::from_micros(200),
        false,
    );
}

fn pingpong_with(c: &mut Criterion, group: &str, delay: Duration, all: bool) {
    pin(0);
    let mut g = c.benchmark_group(group);
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let mut run = |name: &str, (mut mine, theirs): (Box<dyn End>, Box<dyn End>)| {
        let child = echo_child(theirs, delay);
        g.bench_function(name, |b| {
            let mut buf = [0u8; 8];
            b.iter(|| {
                mine.send(&[7; 8]);
                mine.recv(&mut buf, 8);
            })
        });
        child.kill().expect("kill");
        child.join(LONG).expect("join");
    };
    let boxed = |(a, b): (QueueEnd, QueueEnd)| -> (Box<dyn End>, Box<dyn End>) {
        (Box::new(a), Box::new(b))
    };
    if all {
        run("queue_busy_poll", boxed(queue_pair(true)));
    }
    run("queue_blocking", boxed(queue_pair(false)));
    let (a, b) = pipe_pair();
    run("pipe", (Box::new(a), Box::new(b)));
    if all {
        let (a, b) = sock_pair();
        run("socketpair", (Box::new(a), Box::new(b)));
    }
    g.finish();
}

/// A child pinned to CPU 1 that, for every count read from `control`,
/// sends that many `size`-byte messages through `send`.
fn producer_child(
    mut control: File,
    size: usize,
    mut send: impl FnMut(&[u8]) + Send + 'static,
) -> Process {
    let child = Process::new(move || -> i32 {
        pin(1);
        let msg = vec![0x5a; size];
        let mut n = [0u8; 8];
        loop {
            control.read_exact(&mut n).expect("control");
            for _ in 0..u64::from_le_bytes(n) {
                send(&msg);
            }
        }
    })
    .daemon(true);
    child.start().expect("start producer");
    child
}

fn oneway(c: &mut Criterion) {
    pin(0);
    let mut g = c.benchmark_group("oneway");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for size in [8usize, 64, 4 << 10, 64 << 10, 1 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0u8; size];
        // The queue: room for 64 messages, at least 8 MiB of ring for large ones.
        let q = spsc(64.max((8 << 20) / size).min(1 << 16), size);
        let (cr, mut cw) = pipe();
        let child = {
            let q = q.clone();
            producer_child(cr, size, move |m| q.put(m, true, LONG).expect("put"))
        };
        g.bench_function(BenchmarkId::new("queue_spsc", size), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                cw.write_all(&iters.to_le_bytes()).expect("control");
                for _ in 0..iters {
                    q.get(&mut buf, true, LONG).expect("get");
                }
                start.elapsed()
            })
        });
        child.kill().expect("kill");
        child.join(LONG).expect("join");

        let (mut r, w) = pipe();
        let (cr, mut cw) = pipe();
        let mut w = Some(w);
        let child = producer_child(cr, size, move |m| {
            w.as_mut().expect("pipe").write_all(m).expect("pipe write")
        });
        g.bench_function(BenchmarkId::new("pipe", size), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                cw.write_all(&iters.to_le_bytes()).expect("control");
                for _ in 0..iters {
                    r.read_exact(&mut buf).expect("pipe read");
                }
                start.elapsed()
            })
        });
        child.kill().expect("kill");
        child.join(LONG).expect("join");
    }
    g.finish();
}

fn mpmc_2p2c(c: &mut Criterion) {
    let mut g = c.benchmark_group("mpmc_2p2c");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let q = Queue::new(256, 64).expect("queue");
    let (done_r, done_w) = pipe();
    let mut done_r = done_r;
    let mut controls = Vec::new();
    let mut children = Vec::new();
    for role in 0..4 {
        let (cr, cw) = pipe();
        controls.push(cw);
        let (q, mut done_w) = (q.clone(), done_w.try_clone().expect("dup"));
        let mut cr = cr;
        let child = Process::new(move || -> i32 {
            pin(role % 2);
            let mut buf = [0u8; 64];
            let mut n = [0u8; 8];
            loop {
                cr.read_exact(&mut n).expect("control");
                for _ in 0..u64::from_le_bytes(n) {
                    if role < 2 {
                        q.put(&buf, true, LONG).expect("put");
                    } else {
                        q.get(&mut buf, true, LONG).expect("get");
                    }
                }
                if role >= 2 {
                    done_w.write_all(b"d").expect("done");
                }
            }
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
    for c in &children {
        c.kill().expect("kill");
        c.join(LONG).expect("join");
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500));
    targets = pingpong, oneway, mpmc_2p2c
}
criterion_main!(benches);
