//! Helpers for the crate's own unit tests.

use std::time::Duration;

use crate::sys;

/// Forks; the child runs `check` and exits 0 if it returned true, 3 if not.
/// The parent waits at most 10 s (then kills the child) and panics with
/// `what` unless the child exited 0.
///
/// # Safety
///
/// - As for [`sys::fork`]: `check` runs in a child that has only the
///   calling thread, so it must not take locks another thread might have
///   held (nor allocate, if other threads run), and must not unwind.
pub(crate) unsafe fn in_fork_child(what: &str, check: impl FnOnce() -> bool) {
    // SAFETY: forwarded from the caller; the child leaves by
    // `exit_immediately`.
    match unsafe { sys::fork() }.unwrap() {
        sys::Forked::Child => sys::exit_immediately(if check() { 0 } else { 3 }),
        sys::Forked::Parent(pid) => {
            let pidfd = sys::pidfd_open(pid).unwrap();
            let exited = sys::poll_readable(
                std::os::fd::AsFd::as_fd(&pidfd),
                Some(Duration::from_secs(10)),
            )
            .unwrap();
            if !exited {
                let _ = sys::kill(pid, libc::SIGKILL);
            }
            let status = sys::waitpid(pid, false).unwrap();
            assert!(exited, "{what}: the fork child hung");
            assert_eq!(status, Some(sys::ChildStatus::Exited(0)), "{what}");
        }
    }
}
