//! Start + join latency of one child that exits at once, for each start
//! method, beside the raw baselines measured in the same run:
//!
//! - `fork_waitpid`: C-style `fork()`, `_exit(0)` in the child, `waitpid`.
//! - `posix_spawn_wait`: `posix_spawn` of this same binary (which exits at
//!   the top of `main` when it sees `BENCH_EXIT_AT_ONCE`), then `waitpid`.
//!
//! Two groups: wall time per start + join (`process_start_join`), and the
//! CPU time it costs this process and its children
//! (`process_start_join_cpu`), which other load on the machine disturbs far
//! less.
//!
//! Targets (issue 5): fork within 1.3x of `fork_waitpid`; spawn within 2x
//! of `posix_spawn_wait`; forkserver within 2x of fork; each at least 20x
//! faster than Python's same method (2.5 ms fork, 95 ms spawn, 21 ms
//! forkserver, measured on this machine).
//!
//! `harness = false` with our own `main`: spawn and forkserver run this
//! binary again, so `main` registers the entry and calls `init` first.

use std::time::Duration;

use criterion::Criterion;
use multiproc::process::{self, Process, StartMethod};
use multiproc::sys;

const EXIT_AT_ONCE: &str = "BENCH_EXIT_AT_ONCE";

fn exit_zero(_: &[u8]) -> i32 {
    0
}

/// One start + join of each kind.
fn variants() -> Vec<(String, Box<dyn Fn()>)> {
    let exe = c"/proc/self/exe";
    let argv0 = std::ffi::CString::new("process_start-baseline").unwrap();
    let env = std::ffi::CString::new(format!("{EXIT_AT_ONCE}=1")).unwrap();
    let mut all: Vec<(String, Box<dyn Fn()>)> = vec![
        (
            "fork_waitpid".into(),
            Box::new(|| {
                // SAFETY: the child only calls _exit.
                match unsafe { sys::fork() }.unwrap() {
                    sys::Forked::Child => sys::exit_immediately(0),
                    sys::Forked::Parent(pid) => {
                        assert_eq!(
                            sys::waitpid(pid, false).unwrap(),
                            Some(sys::ChildStatus::Exited(0))
                        );
                    }
                }
            }),
        ),
        (
            "posix_spawn_wait".into(),
            Box::new(move || {
                let pid =
                    sys::posix_spawn(exe, &[argv0.as_c_str()], &[env.as_c_str()], &[]).unwrap();
                assert_eq!(
                    sys::waitpid(pid, false).unwrap(),
                    Some(sys::ChildStatus::Exited(0))
                );
            }),
        ),
    ];
    for method in [
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ] {
        all.push((
            format!("multiproc_{method}"),
            Box::new(move || {
                let p = Process::from_entry("exit_zero", Vec::new())
                    .unwrap()
                    .start_method(method);
                p.start().unwrap();
                assert_eq!(p.join(None).unwrap(), 0);
            }),
        ));
    }
    all
}

/// CPU time (user + system) of this process and its reaped children:
/// what a start costs the machine, unlike wall time hardly disturbed by
/// other load. The fork server's own share is not counted (it is not our
/// reaped child), so forkserver reads low here.
fn cpu_now() -> Duration {
    sys::getrusage_cpu(false).unwrap() + sys::getrusage_cpu(true).unwrap()
}

fn start_join_cpu(c: &mut Criterion) {
    let mut group = c.benchmark_group("process_start_join_cpu");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (name, run) in variants() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let before = cpu_now();
                for _ in 0..iters {
                    run();
                }
                cpu_now() - before
            })
        });
    }
    group.finish();
}

fn start_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("process_start_join");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    for (name, run) in variants() {
        group.bench_function(name, |b| b.iter(&run));
    }
    group.finish();
}

fn main() {
    if std::env::var_os(EXIT_AT_ONCE).is_some() {
        std::process::exit(0);
    }
    process::register("exit_zero", exit_zero).unwrap();
    process::init().unwrap();
    let mut c = Criterion::default().configure_from_args();
    start_join(&mut c);
    start_join_cpu(&mut c);
    c.final_summary();
}
