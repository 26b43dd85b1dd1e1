//! Cross-process ping-pong: a round trip through two shared semaphores
//! against the same round trip through two OS pipes, in the same run.
//!
//! Each peer forks one echo child for its whole benchmark. The parent
//! signals "ping", the child answers "pong"; one iteration is one round
//! trip. Run with `cargo bench --bench semaphore`.

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use multiproc::shm::{Backing, SharedMemory};
use multiproc::sync::Semaphore;
use multiproc::sys::{self, Forked};

/// One way to bounce a signal off a child process and back.
trait PingPong {
    /// One ping and the pong that answers it.
    fn round_trip(&mut self);
}

/// Forks a child that runs `body` and exits; returns its pid.
fn fork_child(body: impl FnOnce()) -> i32 {
    // SAFETY: the bench is single-threaded; the child runs only `body`
    // (our primitives, or reads and writes on its pipes) and leaves with
    // _exit.
    match unsafe { sys::fork() }.expect("fork") {
        Forked::Child => {
            body();
            sys::exit_immediately(0)
        }
        Forked::Parent(pid) => pid,
    }
}

/// Two semaphores: the parent releases `ping` and acquires `pong`.
struct SemaphorePingPong {
    ping: Semaphore,
    pong: Semaphore,
    stop: SharedMemory,
    child: i32,
}

impl SemaphorePingPong {
    fn start() -> Self {
        let ping = Semaphore::new(0).unwrap();
        let pong = Semaphore::new(0).unwrap();
        let stop = SharedMemory::new(8, Backing::Anonymous).unwrap();
        let child = {
            let (ping, pong, stop) = (ping.clone(), pong.clone(), stop.clone());
            fork_child(move || {
                loop {
                    ping.acquire();
                    if stop.as_atomic_u32()[0].load(Ordering::Acquire) != 0 {
                        return;
                    }
                    pong.release().unwrap();
                }
            })
        };
        SemaphorePingPong {
            ping,
            pong,
            stop,
            child,
        }
    }
}

impl PingPong for SemaphorePingPong {
    fn round_trip(&mut self) {
        self.ping.release().unwrap();
        self.pong.acquire();
    }
}

impl Drop for SemaphorePingPong {
    fn drop(&mut self) {
        self.stop.as_atomic_u32()[0].store(1, Ordering::Release);
        self.ping.release().unwrap();
        sys::waitpid(self.child, false).unwrap();
    }
}

/// Two pipes: the parent writes a byte into one and reads the answer from
/// the other.
struct PipePingPong {
    ping: PipeWriter,
    pong: PipeReader,
    child: i32,
}

impl PipePingPong {
    fn start() -> Self {
        let (mut ping_r, ping_w) = std::io::pipe().unwrap();
        let (pong_r, mut pong_w) = std::io::pipe().unwrap();
        let child = fork_child(move || {
            let mut byte = [0u8];
            while ping_r.read_exact(&mut byte).is_ok() && byte[0] != 0 {
                pong_w.write_all(&byte).unwrap();
            }
        });
        PipePingPong {
            ping: ping_w,
            pong: pong_r,
            child,
        }
    }
}

impl PingPong for PipePingPong {
    fn round_trip(&mut self) {
        let mut byte = [1u8];
        self.ping.write_all(&byte).unwrap();
        self.pong.read_exact(&mut byte).unwrap();
    }
}

impl Drop for PipePingPong {
    fn drop(&mut self) {
        let _ = self.ping.write_all(&[0]);
        sys::waitpid(self.child, false).unwrap();
    }
}

fn bench_peer(c: &mut Criterion, name: &str, mut peer: impl PingPong) {
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                peer.round_trip();
            }
            start.elapsed()
        })
    });
}

fn ping_pong(c: &mut Criterion) {
    bench_peer(c, "round trip/semaphore", SemaphorePingPong::start());
    bench_peer(c, "round trip/pipe", PipePingPong::start());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = ping_pong
}
criterion_main!(benches);
