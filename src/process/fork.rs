//! The `fork` start method: the child runs the target in a copy of the
//! parent and `_exit`s with its exit code.

use std::sync::Arc;

use super::children;
use super::exit::{self, Target};
use super::reaper::ChildCell;
use crate::error::Error;
use crate::sys::{self, Forked};

/// Forks a child that runs `target` as the process `name` with `identity`;
/// in the parent returns the child's cell, already tracked in the table of
/// children. On failure nothing started and `target` comes back.
///
/// The parent drops its copy of `target` (and what it captured) before
/// returning: from then on the child's copy is the only one in use.
pub(crate) fn start(
    target: Target,
    name: &str,
    identity: &[u32],
) -> std::result::Result<Arc<ChildCell>, (Target, Error)> {
    // Held across fork so that the child finds them unlocked and
    // consistent, whatever other threads of the parent were doing: Rust's
    // stdout and stderr (the child flushes them before it exits) and the
    // table of children (the child resets its copy, and may start children
    // of its own).
    let stdout = std::io::stdout().lock();
    let stderr = std::io::stderr().lock();
    let mut table = children::lock();
    table.reap_finished();
    // Pending output would otherwise be written twice: by the parent, and
    // by the child from its copy of the buffers.
    exit::flush_std_streams();

    // SAFETY: the child never returns from this function: `run_child` ends
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
            Err((target, Error::os("fork", e)))
        }
        Ok(Forked::Child) => {
            table.become_child(identity.to_vec());
            drop(table);
            drop(stderr);
            drop(stdout);
            exit::run_child(target, name)
        }
        Ok(Forked::Parent(pid)) => {
            let child = Arc::new(ChildCell::new(pid));
            table.track(Arc::clone(&child));
            drop(table);
            drop(stderr);
            drop(stdout);
            // Dropped only now, with no lock held: its captures' destructors
            // are the caller's code and may start or reap processes.
            drop(target);
            Ok(child)
        }
    }
}
