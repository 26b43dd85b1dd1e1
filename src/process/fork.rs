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
    // of its own). The child flushes stdout through `out`, taken here.
    let out = std::io::stdout();
    let stdout = out.lock();
    let stderr = std::io::stderr().lock();
    let mut table = children::lock();
    table.reap_finished();
    // Everything either side needs is allocated here, before the fork:
    // after it, each page either side writes first is a page fault (fork
    // makes the parent's memory copy-on-write on both sides), and the
    // allocator writes several. `me` is the child's; the cell and the
    // table's room for it are the parent's.
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
    let mut cell = Arc::<ChildCell>::new_uninit();
    table.reserve_one();
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
    let forked = unsafe { sys::fork() };
    // Each side updates its copy of the table under the locks.
    let mut me = Some(me);
    let child = match forked {
        Err(_) => None,
        Ok(Forked::Child) => {
            if let Some((write_end, read_end)) = lifeline {
                arm_lifeline_in_child(write_end, read_end);
            }
            if let Some(me) = me.take() {
                table.become_child(me);
            }
            None
        }
        Ok(Forked::Parent(pid)) => {
            let mut child = ChildCell::new(pid);
            if let Some((write_end, read_end)) = lifeline {
                drop::<OwnedFd>(read_end);
                child = child.with_lifeline(write_end);
            }
            Arc::get_mut(&mut cell)
                .expect("made above and not shared")
                .write(child);
            // SAFETY: initialised just above.
            let child = unsafe { cell.assume_init() };
            table.track(Arc::clone(&child));
            Some(child)
        }
    };
    // Released in one place for every outcome: one copy of the unlocking
    // code, inlined here, so that the child runs no separate function for it
    // (each code page a fork child runs first is a page fault; so is the
    // rest of its path to `_exit`, `run_in_child`, inlined here too).
    drop(table);
    drop(stderr);
    drop(stdout);
    // A match on `forked` alone: matching a tuple of it and `child` made
    // the compiler load a constant from read-only data on the child's path,
    // another page the child faulted on (fork copies no page table entries
    // for the program's read-only data either).
    match forked {
        Err(e) => Err((work, Error::os("fork", e))),
        Ok(Forked::Child) => work.run_in_child(launch.name, &out),
        Ok(Forked::Parent(_)) => {
            // Dropped only now, with no lock held: its captures' destructors
            // are the caller's code and may start or reap processes.
            drop(work);
            drop(me);
            Ok(child.expect("the parent's arm above made it"))
        }
    }
}

/// In a daemon's fork child: closes the lifeline's write end and arms the
/// read end, which stays open for the life of the child.
#[cold]
#[inline(never)]
fn arm_lifeline_in_child(write_end: OwnedFd, read_end: OwnedFd) {
    drop(write_end);
    lifeline::arm(read_end.as_raw_fd());
    std::mem::forget(read_end);
}
