//! [`Process`]: Python's `multiprocessing.Process`.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::StartMethod;
use super::children;
use super::exit::{IntoExitCode, Target};
use super::fork;
use super::reaper::ChildCell;
use super::registry;
use crate::error::{Error, Result};

/// A child process running a closure or a registered entry point, as
/// Python's `multiprocessing.Process`.
///
/// Make one with [`Process::new`] or [`Process::from_entry`], adjust it with
/// [`with_name`](Process::with_name), [`daemon`](Process::daemon) and
/// [`start_method`](Process::start_method), then [`start`](Process::start)
/// and [`join`](Process::join) it. Everything after `start` takes `&self`,
/// so one thread can join while another terminates.
///
/// Dropping a `Process` never leaves a zombie: an ended child is reaped; a
/// running daemon child is killed (SIGKILL) and reaped; a running
/// non-daemon child keeps running as an orphan and is reaped by the next
/// `start`, `join` or [`active_children`](super::active_children) after
/// it ends.
///
/// # Example
///
/// ```
/// use multiproc::process::Process;
///
/// let child = Process::new(|| 3).with_name("worker");
/// child.start()?;
/// assert_eq!(child.join(None)?, 3);
/// assert_eq!(child.exitcode(), Some(3));
/// assert!(!child.is_alive());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Process {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    method: StartMethod,
    /// Taken by the first `start`; put back if that start failed.
    target: Mutex<Option<Target>>,
    /// Set once, by the `start` that succeeded.
    child: OnceLock<Arc<ChildCell>>,
}

impl Process {
    /// A process that will run `target` and exit with the code it returns
    /// (`()` is 0, an `i32` is itself, `Err(e)` is 1 after printing `e`; see
    /// [`IntoExitCode`]). A panic in `target` exits with code 1.
    ///
    /// Its name is `Process-N` (N counts the processes made here), as Python
    /// names them; it is not a daemon and starts with [`StartMethod::Fork`].
    pub fn new<F, R>(target: F) -> Process
    where
        F: FnOnce() -> R + Send + 'static,
        R: IntoExitCode,
    {
        Self::with_target(Box::new(move || target().into_exit_code()))
    }

    /// A process that will run the entry point registered under `name`
    /// (with [`register`](super::register), or `mp_register` from C) on
    /// `arg`, and exit with the code it returns.
    ///
    /// An unregistered `name` is [`Error::NotFound`], before anything starts.
    /// See [`register`](super::register) for an example.
    pub fn from_entry(name: &str, arg: Vec<u8>) -> Result<Process> {
        let entry = registry::lookup(name)?;
        Ok(Self::with_target(Box::new(move || entry.call(&arg))))
    }

    fn with_target(target: Target) -> Process {
        let identity = children::lock().next_identity();
        Process {
            name: children::default_name(&identity),
            identity,
            daemon: false,
            method: StartMethod::Fork,
            target: Mutex::new(Some(target)),
            child: OnceLock::new(),
        }
    }

    /// Sets the name (only a label, as in Python; any time).
    pub fn with_name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Sets whether the child is a daemon: killed (SIGKILL) and reaped when
    /// this `Process` is dropped while the child still runs. A non-daemon
    /// child keeps running then (see the type's docs). Unlike Python there is
    /// no interpreter exit to kill daemons at: a `Process` that is never
    /// dropped (leaked, or alive at `std::process::exit`) leaves its child
    /// running.
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// Sets the start method. Only [`StartMethod::Fork`] is available yet:
    /// with another, [`start`](Process::start) fails with [`Error::Invalid`].
    pub fn start_method(mut self, method: StartMethod) -> Process {
        self.method = method;
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// The start method.
    pub fn method(&self) -> StartMethod {
        self.method
    }

    /// Starts the child.
    ///
    /// With [`StartMethod::Fork`], the child is a copy of this process
    /// that runs the target and `_exit`s: read the [module
    /// docs](super#fork-and-threads) about fork and threads. This process
    /// drops its copy of the target (and what the closure captured) before
    /// `start` returns. Also reaps ended orphans.
    ///
    /// Errors: [`Error::State`] if started before (even if that start is still
    /// under way in another thread); [`Error::Invalid`] for a start method
    /// not available yet; [`Error::Os`] if `fork` failed, in which case the
    /// process can be started again.
    pub fn start(&self) -> Result<()> {
        if self.method != StartMethod::Fork {
            return Err(Error::Invalid(format!(
                "start method {} is not available yet",
                self.method.name()
            )));
        }
        let mut slot = self.target.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(target) = slot.take() else {
            return Err(Error::State(format!(
                "process {} was already started",
                self.name
            )));
        };
        match fork::start(target, &self.name, &self.identity) {
            Ok(child) => {
                // The slot was full and is now empty under its lock: this is
                // the one start that succeeds, so the cell is still unset.
                let _ = self.child.set(child);
                Ok(())
            }
            Err((target, err)) => {
                *slot = Some(target);
                Err(err)
            }
        }
    }

    fn started(&self) -> Result<&ChildCell> {
        self.child
            .get()
            .map(|c| &**c)
            .ok_or_else(|| Error::State(format!("process {} was not started", self.name)))
    }

    /// Waits for the child to end and returns its exit code (negative signal
    /// number if a signal killed it), or [`Error::Timeout`] if it still runs
    /// when `timeout` passed (`None`: no limit; `Some(Duration::ZERO)`: check
    /// once).
    ///
    /// Sleeps on the child's pidfd, then reaps it. Joining again returns the
    /// same code at once. Also reaps ended orphans. Before `start`:
    /// [`Error::State`].
    ///
    /// # Example
    ///
    /// ```
    /// use multiproc::{Error, process::Process};
    /// use std::{fs::File, io::{Read, Write}, time::Duration};
    ///
    /// let (r, w) = multiproc::sys::pipe()?;
    /// let (mut r, mut w) = (File::from(r), File::from(w));
    /// let child = Process::new(move || {
    ///     let mut byte = [0u8];
    ///     r.read_exact(&mut byte).map(|()| i32::from(byte[0]))
    /// });
    /// child.start()?;
    /// let early = child.join(Some(Duration::from_millis(10)));
    /// assert!(matches!(early, Err(Error::Timeout)));
    /// w.write_all(&[42])?;
    /// assert_eq!(child.join(None)?, 42);
    /// assert_eq!(child.join(None)?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self, timeout: Option<Duration>) -> Result<i32> {
        let child = self.started()?;
        children::lock().reap_finished();
        child.wait(timeout)
    }

    /// The child's pid once started (also after it ended), else `None`.
    pub fn pid(&self) -> Option<i32> {
        self.child.get().map(|c| c.pid())
    }

    /// Whether the child was started and has not ended. Reaps it if it
    /// ended.
    pub fn is_alive(&self) -> bool {
        self.started()
            .is_ok_and(|child| matches!(child.poll(), Ok(None)))
    }

    /// The exit code once the child ended (negative signal number if a
    /// signal killed it, as in Python); `None` before start and while it
    /// runs. Reaps it if it ended.
    pub fn exitcode(&self) -> Option<i32> {
        self.started().ok()?.poll().ok().flatten()
    }

    /// Sends SIGTERM, as Python's `terminate()`. Once the child was reaped
    /// it is a no-op (its pid may belong to another process by then).
    /// Before `start`: [`Error::State`].
    pub fn terminate(&self) -> Result<()> {
        self.started()?.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL, as Python's `kill()`; the exit code becomes -9. Once
    /// the child was reaped it is a no-op. Before `start`: [`Error::State`].
    ///
    /// # Example
    ///
    /// ```
    /// use multiproc::process::Process;
    ///
    /// let (r, _w) = multiproc::sys::pipe()?; // never written: the child blocks
    /// let child = Process::new(move || {
    ///     let _ = std::io::Read::read(&mut std::fs::File::from(r), &mut [0u8]);
    /// });
    /// child.start()?;
    /// child.kill()?;
    /// assert_eq!(child.join(None)?, -9);
    /// child.kill()?; // reaped: nothing is signalled
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.started()?.signal(libc::SIGKILL)
    }

    /// The child's pidfd, Python's `sentinel`: it becomes readable when the
    /// child ends, so it can be polled together with other descriptors. It
    /// stays open (and readable) as long as this `Process` lives.
    ///
    /// Before `start`: [`Error::State`]; [`Error::Os`] if the kernel has no
    /// `pidfd_open` (before Linux 5.3).
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        self.started()?.pidfd()
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let Some(child) = self.child.get() else {
            return;
        };
        // A copy inherited by a fork child is not ours to reap or kill.
        if !child.is_ours() {
            return;
        }
        // Reaps it if it ended. A running non-daemon child stays in the
        // table of children, as an orphan reaped by a later sweep.
        if let Ok(None) = child.poll()
            && self.daemon
        {
            let _ = child.signal(libc::SIGKILL);
            let _ = child.wait(None);
        }
    }
}
