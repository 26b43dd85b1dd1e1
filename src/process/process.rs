//! [`Process`]: Python's `multiprocessing.Process`.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use super::StartMethod;
use super::children;
use super::context;
use super::exit::{self, IntoExitCode};
use super::launch::{Launch, Work};
use super::reaper::ChildCell;
use super::registry;
use super::{fork, forkserver, spawn};
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
    work: Mutex<Option<Work>>,
    /// Set once, by the `start` that succeeded; emptied by `close`.
    child: OnceLock<Arc<ChildCell>>,
    /// Set by `close`.
    closed: bool,
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
        Self::with_work(
            Work::Closure(exit::target(move || target().into_exit_code())),
            StartMethod::Fork,
        )
    }

    /// A process that will run the entry point registered under `name`
    /// (with [`register`](super::register), or `mp_register` from C) on
    /// `arg`, and exit with the code it returns.
    ///
    /// It starts with the default start method
    /// ([`set_start_method`](super::set_start_method); fork unless set).
    /// An unregistered `name` is [`Error::NotFound`], before anything starts.
    /// See [`register`](super::register) for an example.
    pub fn from_entry(name: &str, arg: Vec<u8>) -> Result<Process> {
        let entry = registry::lookup(name)?;
        Ok(Self::with_work(
            Work::Entry {
                name: name.to_owned(),
                entry,
                arg,
            },
            context::default_method(),
        ))
    }

    fn with_work(work: Work, method: StartMethod) -> Process {
        let identity = children::lock().next_identity();
        Process {
            name: children::default_name(&identity),
            identity,
            daemon: false,
            method,
            work: Mutex::new(Some(work)),
            child: OnceLock::new(),
            closed: false,
        }
    }

    /// Sets the name (only a label, as in Python; any time).
    pub fn with_name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Sets whether the child is a daemon: killed (SIGKILL) and reaped when
    /// this `Process` is dropped while the child still runs, and killed
    /// (SIGKILL) by the kernel when this process ends in any way, even
    /// killed itself (see the lifeline in the [module
    /// docs](super#daemons)). A non-daemon child keeps running in both cases
    /// (see the type's docs).
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// Sets the start method. A closure ([`Process::new`]) can only be
    /// started by [`StartMethod::Fork`]; with another,
    /// [`start`](Process::start) fails with [`Error::Invalid`].
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

    /// Starts the child by its start method:
    ///
    /// - [`StartMethod::Fork`]: a copy of this process runs the target and
    ///   `_exit`s: read the [module docs](super#fork-and-threads) about fork
    ///   and threads.
    /// - [`StartMethod::Spawn`]: a fresh run of this executable, whose
    ///   `main` calls [`init`](super::init) first, runs the entry.
    /// - [`StartMethod::ForkServer`]: the fork server (started at the first
    ///   use) forks a child that runs the entry.
    ///
    /// This process drops its copy of the target (and what the closure
    /// captured) before `start` returns. Also reaps ended orphans.
    ///
    /// Errors: [`Error::State`] if started before (even if that start is still
    /// under way in another thread) or closed; [`Error::Invalid`] for a
    /// closure with another method than fork; [`Error::Os`] if the system
    /// refused (then the process can be started again).
    pub fn start(&self) -> Result<()> {
        let mut slot = self.work.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(work) = slot.take() else {
            return Err(Error::State(format!(
                "process {} was already started",
                self.name
            )));
        };
        let launch = Launch {
            name: &self.name,
            identity: &self.identity,
            daemon: self.daemon,
        };
        let started = match self.method {
            StartMethod::Fork => fork::start(work, launch),
            StartMethod::Spawn => spawn::start(work, launch),
            StartMethod::ForkServer => forkserver::start(work, launch),
        };
        match started {
            Ok(child) => {
                // The slot was full and is now empty under its lock: this is
                // the one start that succeeds, so the cell is still unset.
                let _ = self.child.set(child);
                Ok(())
            }
            Err((work, err)) => {
                *slot = Some(work);
                Err(err)
            }
        }
    }

    fn started(&self) -> Result<&ChildCell> {
        if self.closed {
            return Err(Error::State(format!("process {} was closed", self.name)));
        }
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
        let code = child.wait(timeout);
        // After the wait, when this child's code is known: the sweep then
        // makes no syscall for it.
        children::lock().reap_finished();
        code
    }

    /// Releases what this `Process` holds for its ended child (its pidfd
    /// and exit status), as Python's `close()`; afterwards every method
    /// that needs the child gives [`Error::State`]. Closing again is fine.
    ///
    /// [`Error::State`] while the child runs (join it first); a process
    /// never started can be closed.
    ///
    /// ```
    /// use multiproc::{Error, process::Process};
    ///
    /// let mut child = Process::new(|| 0);
    /// child.start()?;
    /// child.join(None)?;
    /// child.close()?;
    /// assert!(matches!(child.join(None), Err(Error::State(_))));
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        if let Some(child) = self.child.get()
            && child.is_ours()
            && matches!(child.poll(), Ok(None))
        {
            return Err(Error::State(format!(
                "process {} is still running: join it before close",
                self.name
            )));
        }
        self.child.take();
        self.closed = true;
        Ok(())
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
    /// stays open (and readable) as long as this `Process` lives. The pidfd
    /// is opened at the first call; asked for only after the child was
    /// reaped, it is a descriptor that is readable already.
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
