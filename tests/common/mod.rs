//! Helpers for the harnesses that run programs outside Rust (C examples,
//! Python scripts) against the libraries this same `cargo test` built.
//!
//! - [`built_library`] finds `libmultiproc.a` / `libmultiproc.so` next to the
//!   running test binary.
//! - [`run_watched`] runs one program with a deadline and then checks that
//!   it left nothing behind: no process (this test process becomes a child
//!   subreaper, so orphans of the program are re-parented to it and can be
//!   seen; those that end by themselves within [`GRACE`] are fine) and no
//!   new `/dev/shm/mp-*` entry.
//!
//! Each integration test binary compiles this module on its own, so not every
//! binary uses every helper.
#![allow(dead_code)]

pub mod child;
pub mod deadline;
pub mod rng;

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, mpsc};
use std::time::{Duration, Instant};

use multiproc::sys;

/// How long one program may run before it is killed and its test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The repository root (where `Cargo.toml`, `include/`, `c-examples/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Which artifact of the crate to find.
#[derive(Debug, Clone, Copy)]
pub enum Library {
    /// `libmultiproc.a` (crate-type `staticlib`).
    Static,
    /// `libmultiproc.so` (crate-type `cdylib`).
    Shared,
}

/// The library this `cargo test` built, as an absolute path.
///
/// Cargo compiles the `lib` target once with all its crate types (`lib`,
/// `cdylib`, `staticlib`: one rustc call) before it links any integration
/// test, and leaves the outputs in `target/<profile>/deps/`, the directory of
/// the running test binary. It does NOT copy them up to `target/<profile>/`
/// for `cargo test` (only `cargo build` does), so a library found there may
/// be stale: the `deps/` copy is the one that matches this test binary.
pub fn built_library(which: Library) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let deps = exe
        .parent()
        .expect("the test binary lives in target/<profile>/deps");
    let ext = match which {
        Library::Static => "a",
        Library::Shared => "so",
    };
    let exact = deps.join(format!("libmultiproc.{ext}"));
    if exact.is_file() {
        return exact;
    }
    // Cargo leaves the metadata hash out of the names of a package with a
    // cdylib; should that change, take the newest hashed one.
    let newest = fs::read_dir(deps)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("libmultiproc-") && name.ends_with(&format!(".{ext}"))
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    match newest {
        Some(entry) => entry.path(),
        None => panic!(
            "{} not found: the crate's [lib] must keep crate-type \"{}\" in Cargo.toml, \
             and this test must run under `cargo test`",
            exact.display(),
            if ext == "a" { "staticlib" } else { "cdylib" }
        ),
    }
}

/// A fresh directory under the system temp dir, removed with everything in
/// it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes `<tmp>/multiproc-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness of the number matters, no data is published.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("multiproc-{label}-{}-{n}", std::process::id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Programs run one at a time, so that the leftovers seen after one belong
/// to it. Held across the build and the run of each program.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock does not spoil the others.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a helper command (a compiler) to completion and panics with its
/// output if it fails.
pub fn run_tool(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n$ {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a watched program ended.
pub struct Outcome {
    /// Its exit status, once it ended (after a kill at the deadline, too).
    pub status: ExitStatus,
    /// True when it was killed at the deadline.
    pub timed_out: bool,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl Outcome {
    /// Panics, showing the output, unless the program exited with 0 in time.
    pub fn assert_success(&self, what: &str) {
        assert!(
            !self.timed_out && self.status.success(),
            "{what} {}\n--- stdout\n{}\n--- stderr\n{}",
            if self.timed_out {
                format!("was killed after the {DEADLINE:?} deadline")
            } else {
                format!("failed: {}", self.status)
            },
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `cmd` in its own process group with stdout/stderr going to files in
/// `scratch`; kills the whole group at [`DEADLINE`]. Then fails the test if
/// the program left a process or a `/dev/shm/mp-*` entry behind (after
/// removing them, so the test itself leaves nothing). The caller holds
/// [`exclusive`].
pub fn run_watched(mut cmd: Command, scratch: &Path, what: &str) -> Outcome {
    become_subreaper();
    let shm_before = shm_entries();
    let out_path = scratch.join("stdout.txt");
    let err_path = scratch.join("stderr.txt");
    let create = |p: &Path| File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    cmd.stdin(Stdio::null())
        .stdout(create(&out_path))
        .stderr(create(&err_path))
        .process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // If this test process dies, the program dies with it.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(status);
    });
    let (status, timed_out) = match rx.recv_timeout(DEADLINE) {
        Ok(status) => (status, false),
        Err(_) => {
            // SAFETY: kill has no memory-safety preconditions; -pid names the
            // program's own process group (process_group(0) above).
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let status = rx.recv().expect("the waiter thread reports the exit");
            (status, true)
        }
    };
    let status = status.unwrap_or_else(|e| panic!("{what}: waitpid: {e}"));
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let outcome = Outcome {
        status,
        timed_out,
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    let leftovers = reap_adopted_children();
    let leaked_shm = new_unheld_shm_entries(&shm_before);
    for name in &leaked_shm {
        let _ = fs::remove_file(Path::new("/dev/shm").join(name));
    }
    if leftovers.is_empty() && leaked_shm.is_empty() {
        return outcome;
    }
    outcome.assert_success(what);
    panic!(
        "{what} exited 0 but left things behind (now cleaned up):\n\
         processes (pid, name, state): {leftovers:?}\n/dev/shm entries: {leaked_shm:?}\n\
         --- stdout\n{}\n--- stderr\n{}",
        outcome.stdout, outcome.stderr
    );
}

/// Makes this process a child subreaper (`PR_SET_CHILD_SUBREAPER`): when a
/// program we run exits, its still-living children become ours instead of
/// init's, so [`reap_adopted_children`] can see them.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            io::Error::last_os_error()
        );
    });
}

/// How long a process the program started may outlive it: helpers that end
/// by themselves once their creator is gone (multiproc's segment tracker
/// unlinks the names of a dead creator, then exits) get this long to do so.
pub const GRACE: Duration = Duration::from_secs(5);

/// Reaps every child of this process. Under [`exclusive`], after the program
/// was waited for, any child is one it left behind (re-parented to us, the
/// subreaper). Those that end by themselves within [`GRACE`] are fine; the
/// rest are killed, reaped and returned as `(pid, name, state)`.
fn reap_adopted_children() -> Vec<(i32, String, char)> {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + GRACE;
    let mut leaked = Vec::new();
    // An orphan that ends re-parents its own children to us: repeat until none.
    for _ in 0..1000 {
        let children = children_of(me);
        if children.is_empty() {
            break;
        }
        for (pid, name, state) in children {
            let left = deadline.saturating_duration_since(Instant::now());
            if !ends_within(pid, left) {
                // A leak: it outlived the grace.
                let _ = sys::kill(pid, libc::SIGKILL);
                leaked.push((pid, name, state));
            }
            // Our own child, so its pid cannot be reused before this reaps it.
            let _ = sys::waitpid(pid, false);
        }
    }
    leaked
}

/// Whether the process `pid` (a child of ours) ends within `limit`; it
/// blocks on a pidfd, which becomes readable when the process exits.
fn ends_within(pid: i32, limit: Duration) -> bool {
    match sys::pidfd_open(pid) {
        Ok(fd) => sys::poll_readable(fd.as_fd(), Some(limit)).unwrap_or(false),
        // Already reaped by someone else: gone.
        Err(_) => true,
    }
}

/// `(pid, name, state)` of the processes whose parent is `parent`, from `/proc/*/stat`.
fn children_of(parent: i32) -> Vec<(i32, String, char)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue; // it ended meanwhile
        };
        // "pid (name) state ppid ...": the name may hold spaces and ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 1..].split_ascii_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if rest.next().and_then(|p| p.parse::<i32>().ok()) == Some(parent) {
            out.push((pid, stat[open + 1..close].to_string(), state));
        }
    }
    out
}

/// Names of the `/dev/shm` entries that start with `mp-` (multiproc's prefix).
pub fn shm_entries() -> BTreeSet<String> {
    fs::read_dir("/dev/shm")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mp-"))
        .collect()
}

/// The `mp-*` entries that appeared since `before`, still exist, and that no
/// living process has open or mapped. Entries some process still holds belong
/// to a run in progress (another test binary on this machine), not to a leak.
fn new_unheld_shm_entries(before: &BTreeSet<String>) -> Vec<String> {
    let new: Vec<String> = shm_entries().difference(before).cloned().collect();
    if new.is_empty() {
        return new;
    }
    let held = shm_entries_held_by_live_processes();
    new.into_iter()
        .filter(|n| !held.contains(n) && Path::new("/dev/shm").join(n).exists())
        .collect()
}

/// `mp-*` names under `/dev/shm` that appear in some process's open
/// descriptors or memory maps (processes we may not inspect are skipped).
fn shm_entries_held_by_live_processes() -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    let mut note = |text: &str| {
        if let Some(i) = text.find("/dev/shm/mp-") {
            let name = &text[i + "/dev/shm/".len()..];
            let name = name.split(' ').next().unwrap_or(name);
            held.insert(name.to_string());
        }
    };
    for proc_dir in fs::read_dir("/proc").expect("/proc").flatten() {
        let dir = proc_dir.path();
        if let Ok(fds) = fs::read_dir(dir.join("fd")) {
            for fd in fds.flatten() {
                if let Ok(target) = fs::read_link(fd.path()) {
                    note(&target.to_string_lossy());
                }
            }
        }
        if let Ok(maps) = fs::read_to_string(dir.join("maps")) {
            maps.lines().for_each(&mut note);
        }
    }
    held
}

/// `$CC` (or gcc) compiling `source` (relative to the repository root or
/// absolute) into `output` with the project's strict flags and the
/// generated header on the include path; the caller adds the library.
pub fn c_compiler(source: &Path, output: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CC").unwrap_or_else(|| "gcc".into()));
    cmd.current_dir(repo_root())
        .args([
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Iinclude",
            "-o",
        ])
        .arg(output)
        .arg(source);
    cmd
}
