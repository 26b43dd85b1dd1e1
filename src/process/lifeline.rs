//! Daemon lifelines: how a daemon child dies with its parent, whatever the
//! start method and however the parent ends.
//!
//! For each daemon child the parent makes a pipe. The parent keeps the
//! write end (close-on-exec, in the child's [`ChildCell`]) and never writes
//! to it; the child keeps the read end and, first thing, asks the kernel
//! (`F_SETOWN` + `F_SETSIG(SIGKILL)` + `O_ASYNC`) to send it SIGKILL when
//! that end becomes readable, which for a pipe nobody writes means: when
//! the last write end closed. The parent's descriptors close when it exits,
//! normally or killed, so the daemon gets SIGKILL then; and when the
//! parent drops the daemon's `Process` (which kills it anyway).
//!
//! Why not `prctl(PR_SET_PDEATHSIG)`: the kernel sends that signal when the
//! *thread* that forked the child exits, not the process. A daemon started
//! from a short-lived worker thread would be killed when that thread
//! returns, while its parent lives on. A descriptor belongs to the process,
//! so the lifeline has no such trap.
//!
//! Who else could hold a write end, and keep a daemon alive:
//! - programs the parent execs: the write end is close-on-exec;
//! - fork children started by multiproc: they close every lifeline they
//!   inherit, first thing (`Children::become_child`);
//! - forkserver children: they close everything they do not need;
//! - a raw `fork()` made by other code of the parent: it holds copies until
//!   it exits or execs. Only then does the daemon outlive its parent.
//!
//! [`ChildCell`]: super::reaper::ChildCell

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sys;

/// A new lifeline: `(parent's write end, child's read end)`, both
/// close-on-exec.
pub(crate) fn new() -> Result<(OwnedFd, OwnedFd)> {
    let (read, write) = sys::pipe().map_err(|e| Error::os("pipe (daemon lifeline)", e))?;
    Ok((write, read))
}

/// In the child: arms the lifeline whose read end is descriptor `fd`.
///
/// If the parent is already gone (it died before this ran, so its close
/// raised no signal yet), the child kills itself at once. Async-signal-safe
/// (fcntl, poll, kill): it runs right after `fork`.
pub(crate) fn arm(fd: i32) {
    // SAFETY: the descriptor was inherited for this purpose and stays open
    // for the life of the process; it is only borrowed for these calls.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let armed = sys::fcntl_async_signal(fd, libc::SIGKILL).is_ok();
    // Readable: the parent closed the write end (nobody ever writes to it).
    // An error here, or a failed arming, leaves no guarantee: die rather than
    // outlive the parent unnoticed.
    if !armed || sys::poll_readable(fd, Some(Duration::ZERO)).unwrap_or(true) {
        let _ = sys::kill(sys::getpid(), libc::SIGKILL);
        sys::exit_immediately(1);
    }
}
