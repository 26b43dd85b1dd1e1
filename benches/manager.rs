//! A manager dict proxy's set+get round trip, over the socket and over the
//! shared-memory rings, against CPython's `multiprocessing.Manager().dict()`
//! doing the same (`d[k] = v; d[k]`), measured in the same run: this bench
//! runs `benches/python/manager_dict.py` first, times ours the same way
//! (median of 5 runs of 20 000 pairs) and prints the three figures and the
//! ratios, then lets criterion time ours.
//!
//! Key `b"key"`, value 16 bytes. Both servers are fork children on a Unix
//! socket. Unpinned, and pinned (the server on one CPU, the client on the
//! other).
//!
//! Run: `cargo bench --bench manager`.
//!
//! Measured 2026-11-22 on the 2-vCPU build VM while other helpers built
//! (compare within a run):
//!
//! | run | CPython | socket | rings | socket / rings vs CPython |
//! |---|---|---|---|---|
//! | 1, unpinned (load 7) | 60.4 us | 32.8 us | 10.8 us | 1.8x / 5.6x |
//! | 1, pinned | 459 us | 235 us | 4.15 us | 2.0x / 111x |
//! | 2, unpinned (load 12) | 110 us | 25.1 us | 68.5 us | 4.4x / 1.6x |
//! | 2, pinned | 482 us | 395 us | 10.0 us | 1.2x / 48x |
//!
//! Unpinned at high load the two processes often share one CPU with
//! builds, where the queue's spinning wait does worse than a blocking read
//! (a bare SPSC queue ping-pong measured 300-400 us per round trip there).
//!
//! Over the socket each call costs two wake-ups (one `send` and one `read`
//! on each side); through the rings a prompt peer is met while it spins,
//! so a call makes no system call at all. Pinned, a cross-CPU socket
//! wake-up costs ~100 us on this VM while the rings stay in the
//! microseconds.

mod common;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use common::peer::{pin_to, two_cpus};
use criterion::{Criterion, criterion_group, criterion_main};
use multiproc::manager::{Client, DictProxy, Manager, Transport};
use multiproc::process::StartMethod;

/// Runs the CPython script; its median per pair in microseconds, if it ran.
fn python_figure(pin: bool) -> Option<f64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/python/manager_dict.py"
    );
    let extra: &[&str] = if pin { &["--pin"] } else { &[] };
    match Command::new("python3").arg(script).args(extra).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            // "python manager.dict set+get[, pinned]: MEDIAN us [...]"
            text.split(": ").nth(1)?.split(' ').next()?.parse().ok()
        }
        Ok(out) => {
            eprintln!(
                "python manager.dict bench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("python3 not available ({e}): no CPython figure");
            None
        }
    }
}

/// Median microseconds per set+get over 5 runs of 20 000 (as the script).
fn median_pair_us(d: &DictProxy) -> f64 {
    let (key, value) = (b"key".as_slice(), [b'v'; 16]);
    let iters = 20_000;
    for _ in 0..iters / 10 {
        d.set(key, &value).expect("set");
        black_box(d.get(key).expect("get"));
    }
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                d.set(key, &value).expect("set");
                black_box(d.get(key).expect("get"));
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

/// A manager (server pinned to the first of `cpus`, this process to the
/// second) and a dict for each transport; runs `f` on them, then restores
/// the CPU mask.
fn with_dicts(cpus: Option<(usize, usize)>, f: impl FnOnce(&DictProxy, &DictProxy)) {
    let before = cpus.map(|(server, _)| pin_to(server));
    let manager = Manager::start_with(StartMethod::Fork).expect("start manager");
    if let Some((_, client)) = cpus {
        pin_to(client);
    }
    let socket = Client::connect_with(manager.address(), manager.authkey(), Transport::Socket)
        .expect("socket client");
    assert_eq!(manager.transport(), Transport::SharedMemory);
    let on_socket = socket.dict().expect("dict");
    let on_rings = manager.dict().expect("dict");
    f(&on_socket, &on_rings);
    drop((on_socket, on_rings, socket));
    manager.shutdown().expect("shutdown");
    if let Some(mask) = before {
        // SAFETY: `mask` is the valid set `pin_to` read before.
        let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &mask) };
        assert_eq!(rc, 0, "restore the CPU mask");
    }
}

/// The same-run comparison: CPython, ours on the socket, ours on rings.
fn summary(cpus: Option<(usize, usize)>) {
    let python = python_figure(cpus.is_some());
    with_dicts(cpus, |on_socket, on_rings| {
        let socket = median_pair_us(on_socket);
        let rings = median_pair_us(on_rings);
        let pinned = if cpus.is_some() { ", pinned" } else { "" };
        println!("ours set+get{pinned}: socket {socket:.2} us, rings {rings:.2} us");
        if let Some(py) = python {
            println!(
                "  vs CPython {py:.1} us: socket {:.1}x, rings {:.1}x (rings vs socket {:.1}x)",
                py / socket,
                py / rings,
                socket / rings
            );
        }
    });
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn dict_set_get(c: &mut Criterion) {
    println!("load average before: {}", load_average());
    summary(None);
    let cpus = two_cpus();
    if cpus.is_some() {
        summary(cpus);
    }
    println!("load average after the summary: {}", load_average());
    for cpus in std::iter::once(None).chain(cpus.map(Some)) {
        with_dicts(cpus, |on_socket, on_rings| {
            let pinned = if cpus.is_some() { ", pinned" } else { "" };
            let (key, value) = (b"key".as_slice(), [b'v'; 16]);
            for (path, d) in [("socket", on_socket), ("rings", on_rings)] {
                c.bench_function(&format!("manager dict set+get, {path}{pinned}"), |b| {
                    b.iter(|| {
                        d.set(key, &value).expect("set");
                        black_box(d.get(key).expect("get"));
                    })
                });
            }
        });
    }
}

criterion_group!(benches, dict_set_get);
criterion_main!(benches);
