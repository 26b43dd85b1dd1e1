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
//! The rounds of every method are interleaved (round 1 of each, then round
//! 2 of each, ...), and the ratios printed are medians of the per-round
//! ratios: each compares two measurements taken seconds apart, so a
//! change in the host's load between minutes does not tilt them.
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

/// One way to start + join a child, measured in rounds of `per_round`
/// calls.
struct Bench<'a> {
    name: &'static str,
    per_round: usize,
    run: Box<dyn Fn() + 'a>,
    /// Each round's mean wall time per call, in round order.
    means: Vec<Duration>,
    cpu: Duration,
    faults: (i64, i64),
}

impl<'a> Bench<'a> {
    fn new(name: &'static str, per_round: usize, run: impl Fn() + 'a) -> Self {
        Bench {
            name,
            per_round,
            run: Box::new(run),
            means: Vec::new(),
            cpu: Duration::ZERO,
            faults: (0, 0),
        }
    }

    fn cost(&self) -> Cost {
        let mut sorted = self.means.clone();
        sorted.sort();
        let n = (self.means.len() * self.per_round) as f64;
        Cost {
            median: sorted[sorted.len() / 2],
            min: sorted[0],
            cpu: self.cpu.div_f64(n),
            faults: (self.faults.0 as f64 / n, self.faults.1 as f64 / n),
        }
    }
}

/// `rounds` rounds; in each, every bench in turn runs its `per_round`
/// calls (after one warm-up call each). Interleaved so that a change in
/// the host's load between minutes shows in every bench alike, and each
/// round gives a ratio of two benches measured seconds apart.
fn measure(rounds: usize, benches: &mut [Bench<'_>]) {
    for b in benches.iter() {
        (b.run)();
    }
    for _ in 0..rounds {
        for b in benches.iter_mut() {
            let before = usage();
            let t0 = Instant::now();
            for _ in 0..b.per_round {
                (b.run)();
            }
            b.means.push(t0.elapsed() / b.per_round as u32);
            let after = usage();
            b.cpu += after.0 - before.0;
            b.faults.0 += after.1 - before.1;
            b.faults.1 += after.2 - before.2;
        }
    }
}

/// The median over the rounds of `a`'s time over `b`'s in the same round.
fn ratio(a: &Bench<'_>, b: &Bench<'_>) -> f64 {
    let mut r: Vec<f64> = a
        .means
        .iter()
        .zip(&b.means)
        .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
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
    let exe = c"/proc/self/exe";
    let argv0 = c"start_latency-baseline";
    let env = std::ffi::CString::new(format!("{EXIT_AT_ONCE}=1")).expect("no NUL");
    let raw_spawn = || {
        let pid = sys::posix_spawn(exe, &[argv0], &[env.as_c_str()], &[]).expect("spawn");
        assert_eq!(
            sys::waitpid(pid, false).expect("waitpid"),
            Some(sys::ChildStatus::Exited(0))
        );
    };
    let mut benches = [
        Bench::new("raw vfork+_exit+waitpid", 100, raw_vfork),
        Bench::new("raw fork+_exit+waitpid", 100, raw_fork),
        Bench::new("multiproc fork", 100, ours(StartMethod::Fork)),
        Bench::new("raw posix_spawn+waitpid", 10, raw_spawn),
        Bench::new("multiproc spawn", 10, ours(StartMethod::Spawn)),
        Bench::new("multiproc forkserver", 100, ours(StartMethod::ForkServer)),
    ];
    measure(rounds, &mut benches);
    for b in &benches {
        row(b.name, b.cost());
    }
    let [_, raw_f, fork, raw_s, spawn, server] = &benches;
    println!(
        "  ratios (median of per-round ratios): fork / raw fork {:.2}x, spawn / posix_spawn \
         {:.2}x, forkserver / fork {:.2}x",
        ratio(fork, raw_f),
        ratio(spawn, raw_s),
        ratio(server, fork),
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
            .stderr(std::process::Stdio::inherit())
            .output();
        let _ = std::fs::remove_file(&script);
        match ran {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                print!("{text}");
                let python_median = |method: &str| -> Option<f64> {
                    let line = text.lines().find(|l| l.trim_start().starts_with(method))?;
                    line.trim_start()[method.len()..]
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                };
                let ratios: Vec<String> =
                    [("fork", fork), ("spawn", spawn), ("forkserver", server)]
                        .iter()
                        .filter_map(|(method, ours)| {
                            let python = python_median(&format!("python {method} "))?;
                            let ours = ours.cost().median.as_secs_f64() * 1e6;
                            Some(format!("{method} {:.1}x", python / ours))
                        })
                        .collect();
                println!("  CPython / multiproc (medians): {}", ratios.join(", "));
            }
            Ok(out) => println!("  python3: {}", out.status),
            Err(e) => println!("  python3 not run: {e}"),
        }
    }
    Ok(())
}
