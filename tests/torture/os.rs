//! Process and leak helpers of the torture supervisor: fork a participant,
//! wait for it with a deadline, and the leak probes (`/dev/shm` names,
//! open descriptors, children left over).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::Duration;

use multiproc::sys::{self, ChildStatus, Forked};

/// Exit code of a participant whose own deadline passed (a hang).
pub const EXIT_HUNG: i32 = 2;
/// Exit code of a participant that met an unexpected error.
pub const EXIT_ERROR: i32 = 3;

/// Forks a participant running `body`; returns its pid. The child exits
/// with the body's value (101 on a panic) and never returns here.
pub fn spawn(body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs only `body` (this crate's shared objects and
    // atomics) and leaves with _exit; the test process's other thread (the
    // harness's main thread) only waits on a channel, holding no lock the
    // child needs.
    match unsafe { sys::fork() }.expect("fork") {
        Forked::Child => {
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
            sys::exit_immediately(code)
        }
        Forked::Parent(pid) => pid,
    }
}

/// Waits at most `limit` for our child `pid` to end and reaps it; `None`
/// if it still runs (then it is neither killed nor reaped).
pub fn wait_for(pid: i32, limit: Duration) -> Option<ChildStatus> {
    let Ok(pidfd) = sys::pidfd_open(pid) else {
        // Already reaped (or not ours): nothing to wait for.
        return sys::waitpid(pid, true).ok().flatten();
    };
    if !sys::poll_readable(pidfd.as_fd(), Some(limit)).expect("poll pidfd") {
        return None;
    }
    sys::waitpid(pid, false).expect("waitpid")
}

/// SIGKILLs our child `pid` and reaps it (a killed process ends at once;
/// the deadline only guards against the impossible).
pub fn kill_and_reap(pid: i32) -> ChildStatus {
    let _ = sys::kill(pid, libc::SIGKILL);
    wait_for(pid, Duration::from_secs(30)).expect("a SIGKILLed child ends")
}

/// Makes this process a child subreaper: orphans of the processes we start
/// (a killed creator's children, its tracker) become ours, so they can be
/// seen and reaped.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag, no pointers.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            io::Error::last_os_error()
        );
    });
}

/// `(pid, state)` of every process whose parent is this process, from
/// `/proc/*/stat` (state `Z` is a zombie).
pub fn children() -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue; // it ended meanwhile
        };
        // "pid (name) state ppid ...": the name may hold spaces and ')'.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut rest = stat[close + 1..].split_ascii_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if rest.next().and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            out.push((pid, state));
        }
    }
    out
}

/// Number of descriptors this process has open.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Names of the `/dev/shm` entries that start with `prefix`.
pub fn shm_names(prefix: &str) -> BTreeSet<String> {
    fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// The prefix of every `/dev/shm` name process `pid` creates
/// (`mp-<pid>-<start time>-<random>`, see `multiproc::shm`).
pub fn shm_prefix_of(pid: i32) -> String {
    format!("mp-{pid}-")
}

/// Removes the `/dev/shm` entries `names` (cleanup after a leak was counted).
pub fn remove_shm(names: &BTreeSet<String>) {
    for n in names {
        let _ = fs::remove_file(format!("/dev/shm/{n}"));
    }
}

/// A deterministic pseudo-random sequence (xorshift64*), seeded per trial.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next value, uniform enough below `n` (n >= 1).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}
