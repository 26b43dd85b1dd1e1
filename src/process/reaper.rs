//! One started child as the parent sees it: its pid, its pidfd, and whether
//! it was reaped yet. Waiting, reaping and signalling go through here, so
//! that a pid is reaped once and never signalled after it was reaped.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// The longest pause between two `waitpid` polls when there is no pidfd.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Where a child is in its life, as far as its parent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildState {
    /// Not reaped yet: running, or a zombie waiting for `waitpid`.
    Running,
    /// Reaped by us; Python's `exitcode` (negative signal number if killed).
    Ended(i32),
    /// `waitpid` said `ECHILD`: someone else reaped it (SIGCHLD set to
    /// `SIG_IGN`, or a `waitpid(-1)` outside multiproc). The pid may be
    /// reused already, so it is never signalled again.
    Lost,
}

/// Who reaps the child and hands over its exit status.
#[derive(Debug)]
enum Reaper {
    /// It is our own child: `waitpid` (fork and spawn).
    Waitpid,
    /// The forkserver forked it and reaps it; the server sends its exit code
    /// (an `i32`, little-endian) on this socket, which also becomes
    /// readable (end of file) if the server died first.
    Server(OwnedFd),
}

/// A child started by this process.
///
/// Shared (`Arc`) by its `Process` and the table of unreaped children, so a
/// sweep of the table can reap a child whose `Process` is still alive: the
/// exit code is kept here for the `Process` to read.
#[derive(Debug)]
pub(crate) struct ChildCell {
    /// The child's pid; unique while it is not reaped.
    pid: i32,
    /// The pid of the process that forked it: the only one that may wait for
    /// or signal it (a fork child inherits copies of its parent's cells).
    parent: i32,
    /// Readable once the child ended; or the errno of `pidfd_open` (ENOSYS
    /// before Linux 5.3), in which case timed waits poll `waitpid` instead.
    /// Opened lazily, under the state lock while the child is not reaped
    /// (so the pid still names it): a plain `join` needs none, and not
    /// making one is a measurable part of a fork's cost.
    pidfd: OnceLock<std::result::Result<OwnedFd, i32>>,
    /// The sentinel handed out when it is asked for only after the child
    /// was reaped without a pidfd: the read end of a pipe whose write end is
    /// closed, readable for good, as the pidfd of an ended child is.
    ended_sentinel: OnceLock<OwnedFd>,
    /// How its exit status reaches us.
    reaper: Reaper,
    /// The write end of a daemon child's lifeline (see `lifeline`), or -1.
    /// Owned by the cell: closed once the child was reaped, when the cell
    /// drops, or in a fork child that inherited it (`close_lifeline`).
    lifeline: AtomicI32,
    /// Reaping and signalling happen under this lock, so a signal can never
    /// reach a pid after we reaped it.
    state: Mutex<ChildState>,
}

impl ChildCell {
    /// The cell of the child `pid` we just started (its pidfd is opened
    /// when first needed).
    pub(crate) fn new(pid: i32) -> ChildCell {
        ChildCell {
            pid,
            parent: sys::current_ids().0,
            pidfd: OnceLock::new(),
            ended_sentinel: OnceLock::new(),
            reaper: Reaper::Waitpid,
            lifeline: AtomicI32::new(-1),
            state: Mutex::new(ChildState::Running),
        }
    }

    /// A cell with the given pidfd (or `pidfd_open`'s errno).
    #[cfg(test)]
    pub(crate) fn with_pidfd(pid: i32, pidfd: std::result::Result<OwnedFd, i32>) -> ChildCell {
        ChildCell {
            pid,
            parent: sys::current_ids().0,
            pidfd: OnceLock::from(pidfd),
            ended_sentinel: OnceLock::new(),
            reaper: Reaper::Waitpid,
            lifeline: AtomicI32::new(-1),
            state: Mutex::new(ChildState::Running),
        }
    }

    /// The cell of a child the forkserver forked for us: `pidfd` came from
    /// the server, the exit code will come on `status`.
    pub(crate) fn served(pid: i32, pidfd: OwnedFd, status: OwnedFd) -> ChildCell {
        ChildCell {
            pid,
            parent: sys::current_ids().0,
            pidfd: OnceLock::from(Ok(pidfd)),
            ended_sentinel: OnceLock::new(),
            reaper: Reaper::Server(status),
            lifeline: AtomicI32::new(-1),
            state: Mutex::new(ChildState::Running),
        }
    }

    /// Gives the cell the write end of the child's daemon lifeline.
    pub(crate) fn with_lifeline(self, write_end: OwnedFd) -> ChildCell {
        // Relaxed: the cell is not shared yet.
        self.lifeline
            .store(write_end.into_raw_fd(), Ordering::Relaxed);
        self
    }

    /// Closes the lifeline's write end if the cell has one. Async-signal-
    /// safe (one atomic swap, one close): it also runs in fork children.
    ///
    /// A cell without one is only read: in a fork child, that costs no copy
    /// of the page it is on.
    pub(crate) fn close_lifeline(&self) {
        // Relaxed: -1 is final (no one stores a descriptor after the cell
        // is shared), so seeing it means there is nothing to close.
        if self.lifeline.load(Ordering::Relaxed) < 0 {
            return;
        }
        // Relaxed: the swap alone decides who closes it (exactly one caller
        // gets the number); no other memory is published with it.
        let fd = self.lifeline.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: the cell owned this descriptor, and the swap took it
            // out so nobody else closes it.
            drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        }
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether this process is the child's parent (and not a fork child
    /// that inherited a copy of the cell).
    pub(crate) fn is_ours(&self) -> bool {
        sys::current_ids().0 == self.parent
    }

    /// The pidfd (opened now if needed), or `None` once the child was
    /// reaped without one. Call with the state lock held: while the child
    /// is not reaped its pid cannot name another process.
    fn pidfd_locked(&self, state: &ChildState) -> Option<&std::result::Result<OwnedFd, i32>> {
        if *state == ChildState::Running {
            Some(self.pidfd.get_or_init(|| {
                sys::pidfd_open(self.pid).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOSYS))
            }))
        } else {
            self.pidfd.get()
        }
    }

    /// A descriptor that is readable once the child ended (Python's
    /// `sentinel`): its pidfd, or, if it was reaped before anyone asked,
    /// one that is readable already.
    pub(crate) fn pidfd(&self) -> Result<BorrowedFd<'_>> {
        let state = self.lock()?;
        match self.pidfd_locked(&state) {
            Some(Ok(fd)) => Ok(fd.as_fd()),
            Some(Err(errno)) => Err(Error::os(
                format!("pidfd_open({})", self.pid),
                io::Error::from_raw_os_error(*errno),
            )),
            None => {
                if self.ended_sentinel.get().is_none() {
                    let (read, write) = sys::pipe().map_err(|e| Error::os("pipe (sentinel)", e))?;
                    drop(write);
                    let _ = self.ended_sentinel.set(read);
                }
                Ok(self
                    .ended_sentinel
                    .get()
                    .expect("set just above, under the state lock")
                    .as_fd())
            }
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, ChildState>> {
        if !self.is_ours() {
            return Err(Error::State(format!(
                "process {} was started by pid {}: only that process can wait for or signal it",
                self.pid, self.parent
            )));
        }
        // Every update of the state is a single assignment, so a panic
        // elsewhere while the lock was held cannot have left it torn.
        Ok(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The exit code if the child ended (reaping it if it is a zombie), or
    /// `None` while it runs. Never blocks.
    pub(crate) fn poll(&self) -> Result<Option<i32>> {
        let mut state = self.lock()?;
        self.poll_locked(&mut state, false)
    }

    /// `exited`: the pidfd said the child exited, so a blocking `waitpid`
    /// returns at once (no `yield` loop while the kernel finishes the exit;
    /// holding the state lock that briefly is fine).
    fn poll_locked(&self, state: &mut ChildState, exited: bool) -> Result<Option<i32>> {
        match *state {
            ChildState::Ended(code) => return Ok(Some(code)),
            ChildState::Lost => return Err(self.lost()),
            ChildState::Running => {}
        }
        let ended = match &self.reaper {
            Reaper::Waitpid => match sys::waitpid(self.pid, !exited) {
                Ok(None) => return Ok(None),
                Ok(Some(status)) => status.exitcode(),
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    *state = ChildState::Lost;
                    return Err(self.lost());
                }
                Err(e) => return Err(Error::os(format!("waitpid({})", self.pid), e)),
            },
            Reaper::Server(status) => {
                let mut code = [0u8; 4];
                match sys::recv_dontwait(status.as_fd(), &mut code) {
                    Ok(4) => i32::from_le_bytes(code),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Ok(_) => {
                        *state = ChildState::Lost;
                        return Err(self.lost());
                    }
                    Err(e) => {
                        return Err(Error::os(format!("exit status of {}", self.pid), e));
                    }
                }
            }
        };
        *state = ChildState::Ended(ended);
        self.close_lifeline();
        Ok(Some(ended))
    }

    fn lost(&self) -> Error {
        if let Reaper::Server(_) = self.reaper {
            return Error::os(
                format!(
                    "the forkserver ended before it reported the exit of {}; its exit code is lost",
                    self.pid
                ),
                io::Error::from_raw_os_error(libc::ECHILD),
            );
        }
        Error::os(
            format!(
                "waitpid({}): the child was reaped outside multiproc (SIGCHLD set to \
                 SIG_IGN, or a waitpid(-1) elsewhere); its exit code is lost",
                self.pid
            ),
            io::Error::from_raw_os_error(libc::ECHILD),
        )
    }

    /// Waits until the child ends and returns its exit code, or
    /// [`Error::Timeout`] once `timeout` passed (`None`: no limit;
    /// `Some(ZERO)`: check once).
    ///
    /// Without a timeout, a child of ours is waited for in `waitid(WNOWAIT)`;
    /// with one, it sleeps in `poll(2)` on the pidfd (the forkserver's
    /// status socket for a served child); without a pidfd it polls `waitpid`
    /// with a pause that doubles from 1 ms up to 50 ms.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Result<i32> {
        if timeout.is_none() && matches!(self.reaper, Reaper::Waitpid) {
            return self.wait_exited();
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut backoff = Duration::from_millis(1);
        let mut saw_readable = false;
        loop {
            let polled = if saw_readable {
                let mut state = self.lock()?;
                self.poll_locked(&mut state, true)?
            } else {
                self.poll()?
            };
            if let Some(code) = polled {
                return Ok(code);
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Err(Error::Timeout),
                },
            };
            let ready_fd = match &self.reaper {
                Reaper::Server(status) => Ok(status.as_fd()),
                Reaper::Waitpid => {
                    let state = self.lock()?;
                    match self.pidfd_locked(&state) {
                        Some(Ok(fd)) => Ok(fd.as_fd()),
                        Some(Err(e)) => Err(*e),
                        // Reaped by another thread meanwhile: the next poll
                        // returns its code.
                        None => continue,
                    }
                }
            };
            match ready_fd {
                Ok(fd) => {
                    saw_readable = sys::poll_readable(fd, left)
                        .map_err(|e| Error::os(format!("poll(pidfd of {})", self.pid), e))?;
                }
                Err(_) => {
                    std::thread::sleep(left.map_or(backoff, |l| l.min(backoff)));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// `wait(None)` for a child of ours: sleeps in `waitid(WNOWAIT)` until
    /// it is a zombie (one wake-up, as a plain `waitpid` has), without
    /// reaping it and without the state lock, so another thread can still
    /// signal it meanwhile; then reaps it under the lock. An error of
    /// `waitid` (ECHILD: reaped elsewhere) is found out by that reap too.
    /// Two syscalls when the child has yet to end, none once it was reaped.
    fn wait_exited(&self) -> Result<i32> {
        loop {
            match *self.lock()? {
                ChildState::Ended(code) => return Ok(code),
                ChildState::Lost => return Err(self.lost()),
                ChildState::Running => {}
            }
            let _ = sys::waitid_exited_nowait(self.pid);
            if let Some(code) = self.poll()? {
                return Ok(code);
            }
        }
    }

    /// Sends `sig` if the child was not reaped yet; after that, a no-op.
    pub(crate) fn signal(&self, sig: i32) -> Result<()> {
        let mut state = self.lock()?;
        // Reap first if it already ended: then there is nothing to signal,
        // and a child reaped behind our back is found out before its pid
        // (maybe reused) is signalled.
        if self.poll_locked(&mut state, false)?.is_some() {
            return Ok(());
        }
        let sent = match self.pidfd.get() {
            Some(Ok(fd)) => sys::pidfd_send_signal(fd.as_fd(), sig),
            // The state lock is held and the child is not reaped (the poll
            // just said so), so the pid still names our child.
            _ => sys::kill(self.pid, sig),
        };
        match sent {
            Ok(()) => Ok(()),
            // It ended between the poll and the signal: nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(Error::os(format!("signal {sig} to {}", self.pid), e)),
        }
    }
}

impl Drop for ChildCell {
    fn drop(&mut self) {
        self.close_lifeline();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Forks a child that waits for one byte on a pipe, then exits with it.
    fn child_exiting_with_byte() -> (i32, std::fs::File) {
        let (r, w) = sys::pipe().unwrap();
        // SAFETY: the child only reads a pipe and `_exit`s: no locks, no
        // allocation.
        match unsafe { sys::fork() }.unwrap() {
            sys::Forked::Child => {
                let mut byte = [0u8];
                let code = match std::fs::File::from(r).read(&mut byte) {
                    Ok(1) => byte[0].into(),
                    _ => 99,
                };
                sys::exit_immediately(code);
            }
            sys::Forked::Parent(pid) => (pid, std::fs::File::from(w)),
        }
    }

    fn exercise(cell: &ChildCell, mut release: std::fs::File) {
        assert!(matches!(cell.poll(), Ok(None)));
        assert!(matches!(
            cell.wait(Some(Duration::ZERO)),
            Err(Error::Timeout)
        ));
        assert!(matches!(
            cell.wait(Some(Duration::from_millis(5))),
            Err(Error::Timeout)
        ));
        release.write_all(&[5]).unwrap();
        assert_eq!(cell.wait(Some(Duration::from_secs(30))).unwrap(), 5);
        // Cached: no second waitpid, signals are no-ops.
        assert_eq!(cell.wait(Some(Duration::ZERO)).unwrap(), 5);
        cell.signal(libc::SIGKILL).unwrap();
        assert_eq!(cell.poll().unwrap(), Some(5));
        let err = sys::waitpid(cell.pid(), true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ECHILD));
    }

    #[test]
    fn waits_on_the_pidfd() {
        let (pid, release) = child_exiting_with_byte();
        let cell = ChildCell::new(pid);
        assert!(cell.pidfd().is_ok());
        exercise(&cell, release);
    }

    #[test]
    fn waits_by_polling_without_a_pidfd() {
        let (pid, release) = child_exiting_with_byte();
        let cell = ChildCell::with_pidfd(pid, Err(libc::ENOSYS));
        assert!(matches!(cell.pidfd(), Err(Error::Os { .. })));
        exercise(&cell, release);
    }

    #[test]
    fn kill_without_a_pidfd_gives_minus_nine() {
        let (pid, _release) = child_exiting_with_byte();
        let cell = ChildCell::with_pidfd(pid, Err(libc::ENOSYS));
        cell.signal(libc::SIGKILL).unwrap();
        assert_eq!(cell.wait(Some(Duration::from_secs(30))).unwrap(), -9);
    }

    #[test]
    fn a_child_reaped_elsewhere_is_lost_and_never_signalled() {
        let (pid, mut release) = child_exiting_with_byte();
        let cell = ChildCell::new(pid);
        release.write_all(&[0]).unwrap();
        // Someone else reaps it behind the cell's back.
        assert!(sys::waitpid(pid, false).unwrap().is_some());
        assert!(matches!(cell.poll(), Err(Error::Os { .. })));
        assert!(matches!(cell.signal(libc::SIGKILL), Err(Error::Os { .. })));
        assert!(matches!(cell.wait(None), Err(Error::Os { .. })));
    }
}
