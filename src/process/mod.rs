//! Processes, as Python's `multiprocessing.Process`: start a child that runs
//! a closure or a registered entry point, join it, read its exit code,
//! terminate or kill it.
//!
//! ```
//! use multiproc::process::{Process, cpu_count};
//!
//! let workers: Vec<Process> = (0..cpu_count()?.min(4) as i32)
//!     .map(|i| Process::new(move || i))
//!     .collect();
//! for w in &workers {
//!     w.start()?;
//! }
//! for (i, w) in workers.iter().enumerate() {
//!     assert_eq!(w.join(None)?, i as i32);
//! }
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! # Exit codes
//!
//! As in Python: the code the target returned (see [`IntoExitCode`]), 1
//! after a panic, and the negative signal number when a signal ended the
//! child (-9 after [`Process::kill`], -15 after [`Process::terminate`]).
//! Built with `panic = "abort"`, a panic aborts instead: -6.
//!
//! # Start methods
//!
//! As Python's, chosen per process ([`Process::start_method`]), per
//! [`Context`] ([`get_context`]) or as the default of
//! [`Process::from_entry`] ([`set_start_method`]):
//!
//! - [`StartMethod::Fork`]: the child is a copy of the parent and runs a
//!   closure or an entry. Fastest; unsafe after the parent started threads
//!   (below).
//! - [`StartMethod::Spawn`]: a fresh run of the same executable
//!   (`posix_spawn` of `/proc/self/exe`) runs a registered entry. `main`
//!   must register its entries and call [`init`] first; the parent refuses
//!   to spawn unless it ran `init` itself (a program that does not would
//!   run its whole `main` again in the child).
//! - [`StartMethod::ForkServer`]: a server, itself a fresh run of the
//!   executable started at the first use, forks the children; safe from a
//!   multi-threaded parent. Same requirements as spawn.
//!
//! Spawn and forkserver children run registered entries only (a closure
//! cannot travel to another program: [`Error::Invalid`]). Shared objects
//! reach them by handle: put the handle texts in the argument bytes and
//! open them in the child. Every memfd segment the parent maps at `start`
//! is inherited under the same descriptor number, so a `mp1:memfd:` handle
//! text resolves unchanged; named segments resolve by name; anonymous ones
//! only in fork children. The whole [`Process`] API, the exit codes and the
//! reaping rules are the same for the three methods.
//!
//! # Daemons
//!
//! A daemon child ([`Process::daemon`]) is killed (SIGKILL) when its
//! `Process` is dropped, and when the parent process ends in any way,
//! killed included: the child holds the read end of a pipe whose only
//! write end the parent holds, armed so that the kernel sends the child
//! SIGKILL when that end closes. Unlike `prctl(PR_SET_PDEATHSIG)`, which
//! fires when the *thread* that forked the child exits, this follows the
//! parent process. The one gap: a raw `fork()` made outside multiproc
//! inherits the write end and keeps the daemon alive until it exits or
//! execs.
//!
//! # Fork and threads
//!
//! A fork child is a copy of the parent with a single thread: the one that
//! called `start`. As Python's documentation warns, forking a process that
//! already started threads is unsafe: a lock another thread held at that
//! moment (in the allocator, in a library, in your code) stays locked
//! forever in the child, and taking it there deadlocks. multiproc holds its
//! own locks (and Rust's stdout and stderr) across `fork`, so they are
//! consistent in the child, and glibc's `malloc` prepares for fork as well;
//! anything else is your responsibility. Likewise, whatever another thread
//! was in the middle of updating without a lock (a lock-free structure, say)
//! is frozen half-done in the child. If your program has threads, start
//! processes before it starts them, or make the child use only what no other
//! thread could have been touching.
//!
//! # What the child may do, and how it ends
//!
//! - Run your code on its copy of memory; use the shared objects it
//!   inherited (locks, queues, arrays made before `start`), which are the
//!   same objects in both processes; write to the descriptors it inherited;
//!   start processes of its own.
//! - It ends when the target returns: Rust's and C's stdout and stderr are
//!   flushed, then `_exit` ends it *without* running the destructors of what
//!   it inherited, so a child never closes, unlinks or frees the parent's
//!   resources. A target may also end it with `std::process::exit` (which
//!   runs the C `atexit` handlers it inherited) or
//!   [`sys::exit_immediately`](crate::sys::exit_immediately).
//! - Only what the closure captured by move is the child's own: it is
//!   dropped in the child when the target returns. The parent drops its
//!   copy of the closure when `start` returns.
//! - Under a test harness that captures output (`cargo test` without
//!   `--nocapture`), `println!` in a child goes to the child's copy of the
//!   harness's buffer and is lost; write to `std::io::stdout()` or
//!   `std::io::stderr()` directly to see it.
//!
//! # Reaping
//!
//! Every child is reaped exactly once, by `join`, [`Process::is_alive`],
//! [`Process::exitcode`], `Drop` or [`active_children`], and its pid is
//! never signalled after that (the pid may belong to another process by
//! then). A child whose `Process` was dropped while it still ran is an
//! orphan: see [`Process`]'s docs and [`active_children`]. A program that
//! reaps children itself (`waitpid(-1)`, or SIGCHLD set to `SIG_IGN`) takes
//! their exit codes away: `join` then fails with [`Error::Os`] (`ECHILD`).
//!
//! A `join` without a timeout sleeps in `waitid(WNOWAIT)`; with a timeout,
//! in `poll(2)` on the child's pidfd. On kernels without `pidfd_open`
//! (before Linux 5.3) a timed wait polls `waitpid` instead, pausing between
//! 1 and 50 ms, and forkserver is not available. A forkserver child is the
//! server's child: the server reaps it and sends its exit code to the
//! parent, whose `join` waits for that message; its pid, pidfd (the
//! sentinel) and signals work as for the other methods.

// `process::process` holds the type `Process`, as in Python's module layout.
#[allow(clippy::module_inception)]
mod process;

mod children;
mod context;
mod current;
mod exit;
mod fork;
mod forkserver;
mod launch;
mod lifeline;
mod reaper;
mod registry;
mod relocation;
mod spawn;
#[cfg(feature = "serde")]
mod typed;

pub use children::active_children;
pub use context::{Context, get_context, get_start_method, set_start_method};
pub use current::{CurrentProcess, ParentProcess, current_process, parent_process};
pub use exit::IntoExitCode;
pub use forkserver::server_pid as forkserver_pid;
pub use process::Process;
pub use registry::{MAX_ENTRY_NAME, register};
#[cfg(feature = "serde")]
pub use typed::decode_arg;

pub(crate) use registry::{Entry, register_entry};

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// How a child is started, as Python's start methods
/// (`multiprocessing.get_context(...)`); see the [module
/// docs](self#start-methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// The child is a copy of the parent and runs the target there.
    #[default]
    Fork,
    /// The child is a fresh run of the same executable, which runs the
    /// registered entry point named by the parent.
    Spawn,
    /// A server process, a fresh run of the same executable started at the
    /// first use, forks the children.
    ForkServer,
}

impl StartMethod {
    /// Python's name for it: `"fork"`, `"spawn"` or `"forkserver"`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    /// Parses Python's names: `"fork"`, `"spawn"`, `"forkserver"`.
    fn from_str(s: &str) -> Result<StartMethod> {
        match s {
            "fork" => Ok(StartMethod::Fork),
            "spawn" => Ok(StartMethod::Spawn),
            "forkserver" => Ok(StartMethod::ForkServer),
            _ => Err(Error::Invalid(format!(
                "start method {s:?}: expected \"fork\", \"spawn\" or \"forkserver\""
            ))),
        }
    }
}

/// How many CPUs this process may run on: Rust's
/// [`std::thread::available_parallelism`].
///
/// Unlike Python's `os.cpu_count()` (every CPU of the machine) it respects
/// the affinity mask (`taskset`, `sched_setaffinity`) and cgroup CPU quotas
/// of containers, so it is the number of workers that can actually run at
/// once. It equals Python's `len(os.sched_getaffinity(0))` unless a cgroup
/// quota is lower.
///
/// ```
/// assert!(multiproc::process::cpu_count()? >= 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn cpu_count() -> Result<usize> {
    std::thread::available_parallelism()
        .map(usize::from)
        .map_err(|e| Error::os("available_parallelism", e))
}

/// Set by [`init`].
static INIT_RAN: AtomicBool = AtomicBool::new(false);

/// Call first thing in `main`, after registering entry points.
///
/// In the main process it records that it ran (the `spawn` and
/// `forkserver` start methods require it: they run this program again) and
/// returns. In a child started by `spawn` it runs the entry point the parent
/// named, with its argument bytes, and exits with its code: it never
/// returns there. In the fork server it serves, and never returns either.
/// The environment variables multiproc uses to tell them apart
/// (`MULTIPROC_LAUNCH_FD`, `MULTIPROC_FORKSERVER_FD`) are removed first.
///
/// A malformed launch payload (e.g. the variable set by hand) is reported
/// on stderr and ends the process with exit code 1, rather than letting a
/// would-be child run the parent's `main`.
///
/// ```
/// multiproc::process::init()?;
/// assert!(multiproc::process::init_ran());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn init() -> Result<()> {
    // Relaxed: a flag with no data published behind it.
    INIT_RAN.store(true, Ordering::Relaxed);
    if let Some(fd) = take_fd_variable(spawn::LAUNCH_ENV) {
        match launch::LaunchSpec::from_fd(fd) {
            Ok(spec) => spec.run(),
            Err(e) => {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "multiproc::process::init: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Some(fd) = take_fd_variable(spawn::FORKSERVER_ENV) {
        forkserver::serve(fd);
    }
    Ok(())
}

/// Removes the variable `name` and returns the descriptor it names, if it
/// is set. A value that is not an open descriptor ends the process (exit
/// code 1, message on stderr): see [`init`].
fn take_fd_variable(name: &str) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let value = std::env::var_os(name)?;
    // SAFETY: `init` is documented to run first thing in `main`, before the
    // program starts threads, so nothing reads the environment concurrently.
    unsafe { std::env::remove_var(name) };
    let fd = value
        .to_str()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd > 2 && crate::sys::fd_is_open(*fd));
    let Some(fd) = fd else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "multiproc::process::init: {name}={value:?} is not an open descriptor"
        );
        std::process::exit(1);
    };
    // SAFETY: the descriptor was passed to this process for multiproc
    // alone (its number in a variable only multiproc sets), and it is open.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether [`init`] (or C's `mp_init`) ran in this process.
pub fn init_ran() -> bool {
    // Relaxed: see `init`.
    INIT_RAN.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_method_names_round_trip() {
        for m in [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ] {
            assert_eq!(m.name().parse::<StartMethod>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
        }
        assert!(matches!(
            "threads".parse::<StartMethod>(),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn cpu_count_is_positive() {
        assert!(cpu_count().unwrap() >= 1);
    }
}
