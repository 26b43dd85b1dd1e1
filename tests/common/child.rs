//! Fork children for the process tests: a body runs in the child, which
//! exits with its return value; the parent waits with a deadline, and a
//! child the test did not wait for (a failed assertion) is killed and
//! reaped when its handle drops, so no test leaves a process behind.

use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use multiproc::sys::{self, ChildStatus, Forked};

/// The longest a test waits for a child to end.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// A forked child; killed and reaped on drop if not waited for.
#[derive(Debug)]
pub struct Child {
    /// The child's pid.
    pub pid: i32,
    reaped: bool,
}

/// Forks; the child runs `body` and exits with its return value (101 when
/// it panics).
pub fn fork_child(body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child runs only `body` (test code using this crate's
    // shared objects, pipes and sockets) and leaves with _exit, never
    // returning into the test harness.
    match unsafe { sys::fork() }.expect("fork") {
        Forked::Child => {
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
            sys::exit_immediately(code)
        }
        Forked::Parent(pid) => Child { pid, reaped: false },
    }
}

impl Child {
    /// Waits for the child to end (at most [`CHILD_DEADLINE`]) and returns
    /// how it ended.
    pub fn wait(mut self) -> ChildStatus {
        let pidfd = sys::pidfd_open(self.pid).expect("pidfd_open");
        let ended = sys::poll_readable(pidfd.as_fd(), Some(CHILD_DEADLINE)).expect("poll");
        assert!(
            ended,
            "child {} still running after {CHILD_DEADLINE:?}",
            self.pid
        );
        self.reaped = true;
        sys::waitpid(self.pid, false)
            .expect("waitpid")
            .expect("reaped")
    }

    /// Waits and returns the exit code (negative: the signal that killed it).
    pub fn join(self) -> i32 {
        self.wait().exitcode()
    }

    /// Waits and checks that the child exited with 0.
    pub fn expect_success(self) {
        let pid = self.pid;
        assert_eq!(self.wait(), ChildStatus::Exited(0), "child {pid}");
    }

    /// Sends SIGKILL (wait for it afterwards).
    pub fn kill(&self) {
        sys::kill(self.pid, libc::SIGKILL).expect("kill");
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid, false);
        }
    }
}
