//! Start + join latency of a child that exits at once, in a small process
//! (fork costs grow with the parent's mappings and page tables, and a
//! criterion bench process is large), beside the raw baselines and
//! CPython's `multiprocessing` measured in the same run:
//!
//! - `raw fork+_exit+waitpid`: what any fork-based start costs at least.
//! - `raw vfork+_exit+waitpid`: no copy of the address space at all; what
//!   a fork would cost if this process's memory were free to copy.
//! - `raw posix_spawn+waitpid`: `posix_spawn` of this binary, which exits
//!   at the top of `main`.
//! - `multiproc fork/spawn/forkserver`: `Process::from_entry` + `start` +
//!   `join(None)` with each start method.
//! - `python fork/spawn/forkserver`: `ctx.Process(target=noop)`, `start()`,
//!   `join()`, as `py_mp_bench.py` section 1 (skipped without `python3`),
//!   with the CPU time of the Python process and its reaped children.
//!
//! The CPU figures leave out the fork servers' own share (the server is not
//! a reaped child of ours, nor its children): low for both forkservers.
//!
//! Per start: the median over ROUNDS rounds of the mean wall time (the
//! fastest round in brackets), the CPU time of this process and its
//! children, and the minor page faults of this process + of the children.
//!
//! `cargo run --release --example start_latency [-- ROUNDS [--no-python]]`;
//! `-- --once METHOD` (or `raw`: a raw fork) makes three start + join (look
//! at the second with `strace -f`, or list each page fault with its address
//! and code: `setarch -R perf record -g -e exceptions:page_fault_user -e
//! exceptions:page_fault_kernel` then `perf script`; `setarch -R` keeps the
//! layout, hence which 64 KiB windows of code a child faults on, from run
//! to run).

use std::time::{Duration, Instant};

use multiproc::process::{self, Process, StartMethod};
use multiproc::sys;

const EXIT_AT_ONCE: &str = "START_LATENCY_EXIT_AT_ONCE";

fn exit_zero(_: &[u8]) -> i32 {
    0
}

/// What one start + join cost, per start.
struct Cost {
    /// Median over the rounds of the mean wall time.
    median: Duration,
    /// The fastest round's mean wall time.
    min: Duration,
    /// CPU time (user + system) of this process and its reaped children.
    cpu: Duration,
    /// Minor page faults of this process, and of its reaped children.
    faults: (f64, f64),
}

/// `getrusage` of this process and of its reaped children: CPU time, and
/// minor faults of each.
fn usage() -> (Duration, i64, i64) {
    let get = |who| {
        // SAFETY: zeroed is a valid rusage; `u` is a valid out-pointer.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrusage(who, &mut u) }, 0);
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        (tv(u.ru_utime) + tv(u.ru_stime), u.ru_minflt)
    };
    let (cpu_self, flt_self) = get(libc::RUSAGE_SELF);
    let (cpu_children, flt_children) = get(libc::RUSAGE_CHILDREN);
    (cpu_self + cpu_children, flt_self, flt_children)
}

/// `rounds` rounds of `per_round` calls of `run`, after one warm-up call.
fn measure(rounds: usize, per_round: usize, mut run: impl FnMut()) -> Cost {
    run();
    let before = usage();
    let mut means: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..per_round {
                run();
            }
            t0.elapsed() / per_round as u32
        })
        .collect();
    let after = usage();
    let n = (rounds * per_round) as f64;
    means.sort();
    Cost {
        median: means[means.len() / 2],
        min: means[0],
        cpu: (after.0 - before.0).div_f64(n),
        faults: (
            (after.1 - before.1) as f64 / n,
            (after.2 - before.2) as f64 / n,
        ),
    }
}

fn row(name: &str, cost: Cost) {
    println!(
        "  {name:<26} {:>9.1} us [min {:>7.1}]  cpu {:>7.1} us  faults {:>5.1} + {:>5.1}",
        cost.median.as_secs_f64() * 1e6,
        cost.min.as_secs_f64() * 1e6,
        cost.cpu.as_secs_f64() * 1e6,
        cost.faults.0,
        cost.faults.1,
    );
}

fn raw_fork() {
    // SAFETY: the child only calls _exit.
    match unsafe { sys::fork() }.expect("fork") {
        sys::Forked::Child => sys::exit_immediately(0),
        sys::Forked::Parent(pid) => {
            assert_eq!(
                sys::waitpid(pid, false).expect("waitpid"),
                Some(sys::ChildStatus::Exited(0))
            );
        }
    }
}

fn raw_vfork() {
    // SAFETY: the child shares our memory and stack until it exits; it only
    // calls _exit (async-signal-safe, never returns), so it writes nothing
    // the parent relies on. The parent is suspended meanwhile.
    #[allow(deprecated)]
    let pid = unsafe { libc::vfork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe { libc::_exit(0) };
    }
    assert!(pid > 0, "vfork failed");
    assert_eq!(
        sys::waitpid(pid, false).expect("waitpid"),
        Some(sys::ChildStatus::Exited(0))
    );
}

fn ours(method: StartMethod) -> impl Fn() {
    move || {
        let p = Process::from_entry("exit_zero", Vec::new())
            .expect("registered")
            .start_method(method);
        p.start().expect("start");
        assert_eq!(p.join(None).expect("join"), 0);
    }
}

/// `py_mp_bench.py` section 1, reduced to what is printed here.
const PYTHON: &str = r#"
import multiprocessing as mp, resource, statistics, sys, time
def noop():
    pass
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
if __name__ == "__main__":
    rounds = int(sys.argv[1])
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        p = ctx.Process(target=noop); p.start(); p.join()
        n = 20 if method == "fork" else 5
        vals = []
        cpu0 = cpu()
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                p = ctx.Process(target=noop); p.start(); p.join()
                assert p.exitcode == 0
            vals.append((time.perf_counter() - t0) / n)
        used = (cpu() - cpu0) / (rounds * n)
        print(f"  {'python ' + method:<26} {statistics.median(vals) * 1e6:>9.1f} us [min {min(vals) * 1e6:>7.1f}]  cpu {used * 1e6:>7.1f} us")
"#;

fn status_line(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map_or_else(String::new, |l| {
            l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
        })
}

fn main() -> multiproc::Result<()> {
    if std::env::var_os(EXIT_AT_ONCE).is_some() {
        sys::exit_immediately(0);
    }
    process::register("exit_zero", exit_zero)?;
    process::init()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--once METHOD`: three starts + joins, to look at with strace or perf.
    if let Some(i) = args.iter().position(|a| a == "--once") {
        let run: Box<dyn Fn()> = match args.get(i + 1).map_or("fork", String::as_str) {
            "raw" => Box::new(raw_fork),
            method => Box::new(ours(method.parse()?)),
        };
        // A warm-up start first, so the one looked at is a steady-state one.
        for _ in 0..3 {
            run();
        }
        return Ok(());
    }
    let rounds: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(15)
        .max(1);
    let python = !args.iter().any(|a| a == "--no-python");

    let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
    println!(
        "start + join of a child that exits at once; median of {rounds} rounds (this process: \
         VmRSS {}, VmPTE {}, {maps} mappings)",
        status_line("VmRSS"),
        status_line("VmPTE"),
    );
    row("raw vfork+_exit+waitpid", measure(rounds, 200, raw_vfork));
    row("raw fork+_exit+waitpid", measure(rounds, 200, raw_fork));
    row(
        "multiproc fork",
        measure(rounds, 200, ours(StartMethod::Fork)),
    );
    let exe = c"/proc/self/exe";
    let argv0 = c"start_latency-baseline";
    let env = std::ffi::CString::new(format!("{EXIT_AT_ONCE}=1")).expect("no NUL");
    row(
        "raw posix_spawn+waitpid",
        measure(rounds, 20, || {
            let pid = sys::posix_spawn(exe, &[argv0], &[env.as_c_str()], &[]).expect("spawn");
            assert_eq!(
                sys::waitpid(pid, false).expect("waitpid"),
                Some(sys::ChildStatus::Exited(0))
            );
        }),
    );
    row(
        "multiproc spawn",
        measure(rounds, 20, ours(StartMethod::Spawn)),
    );
    row(
        "multiproc forkserver",
        measure(rounds, 200, ours(StartMethod::ForkServer)),
    );
    if python {
        // A file, not `-c`: spawn and forkserver children import the main
        // module by its path to find `noop`.
        let script = std::env::temp_dir().join(format!("start_latency_{}.py", sys::getpid()));
        std::fs::write(&script, PYTHON)
            .map_err(|e| multiproc::Error::os("writing the script", e))?;
        let ran = std::process::Command::new("python3")
            .arg(&script)
            .arg(rounds.to_string())
            .status();
        let _ = std::fs::remove_file(&script);
        match ran {
            Ok(s) if s.success() => {}
            Ok(s) => println!("  python3: {s}"),
            Err(e) => println!("  python3 not run: {e}"),
        }
    }
    Ok(())
}
