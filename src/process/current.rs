//! [`current_process`] and [`parent_process`]: who this process is and who
//! started it, as Python's functions of the same names.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::children::{self, Parent};
use crate::sys;

/// This process, as Python's `current_process()`: a snapshot of its name,
/// pid, identity and daemon flag.
///
/// ```
/// use multiproc::process::{Process, current_process};
///
/// assert_eq!(current_process().name(), "MainProcess");
/// let child = Process::new(|| {
///     let me = current_process();
///     i32::from(me.name() == "worker" && me.pid() == multiproc::sys::getpid())
/// })
/// .with_name("worker");
/// child.start()?;
/// assert_eq!(child.join(None)?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: i32,
    identity: Vec<u32>,
    daemon: bool,
}

impl CurrentProcess {
    /// The name: `MainProcess` in the main process, else the name its
    /// `Process` had when it started.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Python's `_identity`: empty in the main process, `[2, 1]` in the
    /// first child of the second child.
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }

    /// Whether it was started as a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// This process: see [`CurrentProcess`].
pub fn current_process() -> CurrentProcess {
    let table = children::lock();
    CurrentProcess {
        name: table.my_name(),
        pid: sys::getpid(),
        identity: table.me.identity.clone(),
        daemon: table.me.daemon,
    }
}

/// The process that started this one, as Python's `parent_process()`;
/// `None` in the main process.
///
/// ```
/// use multiproc::process::{Process, parent_process};
///
/// assert!(parent_process().is_none());
/// let me = multiproc::sys::getpid();
/// let child = Process::new(move || {
///     let parent = parent_process().expect("a child has a parent");
///     i32::from(parent.pid() == me && parent.is_alive() && parent.name() == "MainProcess")
/// });
/// child.start()?;
/// assert_eq!(child.join(None)?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    pid: i32,
    name: String,
    pidfd: Option<i32>,
}

impl ParentProcess {
    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it still runs. For `fork` and `spawn` children it is the
    /// real parent (`getppid()` changes when it dies); `forkserver`
    /// children, whose real parent is the server, hold a pidfd of it.
    pub fn is_alive(&self) -> bool {
        match self.pidfd {
            Some(fd) => {
                // SAFETY: the pidfd was passed to this process at start and
                // is kept open for its whole life (never closed).
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                !sys::poll_readable(fd, Some(Duration::ZERO)).unwrap_or(true)
            }
            None => sys::getppid() == self.pid,
        }
    }
}

/// The process that started this one: see [`ParentProcess`].
pub fn parent_process() -> Option<ParentProcess> {
    let table = children::lock();
    let Parent { pid, name, pidfd } = table.me.parent.clone()?;
    Some(ParentProcess { pid, name, pidfd })
}
