//! The `fork` start method: the child runs the target in a copy of the
//! parent and `_exit`s with its exit code.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::children::{self, Me, Parent};
use super::exit;
use super::launch::{Launch, Work};
use super::lifeline;
use super::reaper::ChildCell;
use crate::error::Error;
use crate::sys::{self, Forked};

/// Forks a child that runs `work` as `launch` describes; in the parent
/// returns the child's cell, already tracked in the table of children. On
/// failure nothing started and `work` comes back.
///
/// The parent drops its copy of `work` (and what it captured) before
/// returning: from then on the child's copy is the only one in use.
pub(crate) fn start(
    work: Work,
    launch: Launch<'_>,
) -> std::result::Result<Arc<ChildCell>, (Work, Error)> {
    let lifeline = match launch.daemon.then(lifeline::new).transpose() {
        Ok(l) => l,
        Err(e) => return Err((work, e)),
    };
    // Held across fork so that the child finds them unlocked and
    // consistent, whatever other threads of the parent were doing: Rust's
    // stdout and stderr (the child flushes them before it exits) and the
    // table of children (the child resets its copy, and may start children
    // of its own).
    let stdout = std::io::stdout().lock();
    let stderr = std::io::stderr().lock();
    let mut table = children::lock();
    table.reap_finished();
    // Built here, not in the child: a fork child that allocates less
    // touches fewer pages (each first touch is a page fault there).
    let me = Me {
        identity: launch.identity.to_vec(),
        name: launch.name.to_owned(),
        daemon: launch.daemon,
        parent: Some(Parent {
            pid: sys::current_ids().0,
            name: table.my_name(),
            pidfd: None,
        }),
    };
    // Pending output would otherwise be written twice: by the parent, and
    // by the child from its copy of the buffers.
    exit::flush_std_streams();

    // SAFETY: the child never returns from this function: `run_in_child` ends
    // it with `_exit`, so it runs none of the parent's destructors. The
    // locks it could need (stdout, stderr, the table) are held by this
    // thread, hence by the child's only thread. What other threads of the
    // parent held is documented as the caller's concern: fork after
    // starting threads is unsafe in the sense Python's docs describe
    // (module docs of `process`).
    match unsafe { sys::fork() } {
        Err(e) => {
            drop(table);
            drop(stderr);
            drop(stdout);
            Err((work, Error::os("fork", e)))
        }
        Ok(Forked::Child) => {
            if let Some((write_end, read_end)) = lifeline {
                drop(write_end);
                lifeline::arm(read_end.as_raw_fd());
                // Kept open for the life of the child.
                std::mem::forget(read_end);
            }
            table.become_child(me);
            drop(table);
            drop(stderr);
            drop(stdout);
            work.run_in_child(launch.name)
        }
        Ok(Forked::Parent(pid)) => {
            let mut cell = ChildCell::new(pid);
            if let Some((write_end, read_end)) = lifeline {
                drop::<OwnedFd>(read_end);
                cell = cell.with_lifeline(write_end);
            }
            let child = Arc::new(cell);
            table.track(Arc::clone(&child));
            drop(table);
            drop(stderr);
            drop(stdout);
            // Dropped only now, with no lock held: its captures' destructors
            // are the caller's code and may start or reap processes.
            drop(work);
            drop(me);
            Ok(child)
        }
    }
}
