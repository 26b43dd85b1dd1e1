//! Waiting with a deadline, for tests that could otherwise hang CI.

use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::Duration;

use multiproc::sys;

/// Runs `f` in a thread; panics naming `what` if it takes longer than
/// `deadline` (the thread is left behind; the test fails anyway).
pub fn within<T: Send + 'static>(
    what: &str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(deadline)
        .unwrap_or_else(|_| panic!("{what}: no result within {deadline:?}"))
}

/// Waits until process `pid`, not necessarily our child, has ended; panics
/// if it still runs after `deadline`.
pub fn wait_gone(pid: i32, deadline: Duration) {
    let Ok(pidfd) = sys::pidfd_open(pid) else {
        return; // gone and reaped already
    };
    let ended = sys::poll_readable(pidfd.as_fd(), Some(deadline)).expect("poll pidfd");
    assert!(ended, "process {pid} still runs after {deadline:?}");
}
