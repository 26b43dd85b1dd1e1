//! The process-global table of this process's children: every child it
//! started and has not reaped yet, and the counter that names new processes.
//!
//! A child whose [`Process`] was dropped while it still ran (a non-daemon
//! one) stays in the table as an *orphan*; every later `start`, `join` and
//! [`active_children`] reaps, without blocking, whatever in the table has
//! ended. So no zombie outlives the next of those calls.
//!
//! [`Process`]: super::Process

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::reaper::ChildCell;

/// The table; one per process. A started child resets its copy at once
/// (see [`Children::become_child`]).
#[derive(Debug)]
pub(crate) struct Children {
    /// Children started here and not known to be reaped, orphans included.
    unreaped: Vec<Arc<ChildCell>>,
    /// Who this process is.
    pub(crate) me: Me,
    /// How many `Process` objects this process made; numbers the next one.
    created: u32,
}

/// Who this process is: what `current_process()` and `parent_process()`
/// report.
#[derive(Debug)]
pub(crate) struct Me {
    /// Python's `_identity`: empty in the main process, `[2]` in the child
    /// started by the second `Process` made there, `[2, 1]` in that child's
    /// first child. Names are `Process-2:1`.
    pub(crate) identity: Vec<u32>,
    /// The name; empty in the main process, which is called `MainProcess`.
    pub(crate) name: String,
    /// Whether this process was started as a daemon.
    pub(crate) daemon: bool,
    /// The process that started this one; `None` in the main process.
    pub(crate) parent: Option<Parent>,
}

/// The process that started this one.
#[derive(Debug, Clone)]
pub(crate) struct Parent {
    /// Its pid.
    pub(crate) pid: i32,
    /// Its name.
    pub(crate) name: String,
    /// A pidfd of it, kept open for the life of this process, when it is not
    /// our real parent (forkserver children); `None`: it is `getppid()`'s.
    pub(crate) pidfd: Option<i32>,
}

static CHILDREN: Mutex<Children> = Mutex::new(Children {
    unreaped: Vec::new(),
    me: Me {
        identity: Vec::new(),
        name: String::new(),
        daemon: false,
        parent: None,
    },
    created: 0,
});

/// Locks the table.
///
/// Lock order: the table before any child's state lock, never the other
/// way round. `start` holds it across `fork`, so a fork child always finds
/// it unlocked (by itself) and consistent.
pub(crate) fn lock() -> MutexGuard<'static, Children> {
    // Each update is a push, a retain or a whole assignment: a panic while
    // the lock was held cannot leave the table torn.
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Children {
    /// The identity of the next `Process` made here; counts it.
    pub(crate) fn next_identity(&mut self) -> Vec<u32> {
        self.created += 1;
        let mut identity = self.me.identity.clone();
        identity.push(self.created);
        identity
    }

    /// Makes room for one more child, so that the [`track`] after a fork
    /// does not allocate.
    ///
    /// [`track`]: Children::track
    pub(crate) fn reserve_one(&mut self) {
        self.unreaped.reserve(1);
    }

    /// Tracks a child just started.
    pub(crate) fn track(&mut self, child: Arc<ChildCell>) {
        self.unreaped.push(child);
    }

    /// Reaps, without blocking, every tracked child that ended (the exit
    /// code stays in its cell for its `Process`) and forgets it.
    pub(crate) fn reap_finished(&mut self) {
        // An error (reaped by someone else) also means there is nothing
        // left to reap.
        self.unreaped
            .retain(|child| matches!(child.poll(), Ok(None)));
    }

    /// The pids of the tracked children (call [`reap_finished`] first for
    /// only the live ones).
    ///
    /// [`reap_finished`]: Children::reap_finished
    pub(crate) fn pids(&self) -> Vec<i32> {
        self.unreaped.iter().map(|c| c.pid()).collect()
    }

    /// In a child, first thing: the parent's children are not ours (their
    /// cells refuse to wait or signal from here anyway, and the lifelines of
    /// its daemon children are closed here so that only the parent holds
    /// them), and this process is now `me`, with no `Process` made yet.
    ///
    /// In a fork child this runs right after `fork` with the table lock
    /// held since before it. Inlined there: in a fork child every code page
    /// first run is a page fault (fork does not copy the page table entries
    /// of the program's code), and this keeps it on pages the child runs
    /// anyway.
    ///
    /// The parent's cells are only read (a cell without a lifeline), not
    /// dropped, and the parent's `Me` is not freed: each write to a page the
    /// parent wrote before the fork is a page fault in a fork child, and
    /// the child is about to run its target and exit anyway.
    #[inline(always)]
    pub(crate) fn become_child(&mut self, me: Me) {
        for child in &self.unreaped {
            child.close_lifeline();
        }
        std::mem::forget(std::mem::take(&mut self.unreaped));
        std::mem::forget(std::mem::replace(&mut self.me, me));
        self.created = 0;
    }

    /// The name of this process: `MainProcess` in the main one.
    pub(crate) fn my_name(&self) -> String {
        if self.me.name.is_empty() && self.me.parent.is_none() {
            "MainProcess".into()
        } else {
            self.me.name.clone()
        }
    }
}

/// The name Python gives a process with this identity: `Process-2:1`.
pub(crate) fn default_name(identity: &[u32]) -> String {
    let numbers: Vec<String> = identity.iter().map(u32::to_string).collect();
    format!("Process-{}", numbers.join(":"))
}

/// The pids of the children this process started that are still running,
/// orphans included (children whose `Process` was dropped while they ran).
///
/// Like Python's `active_children()`, it first reaps every child that has
/// ended, so it also serves to collect orphans.
///
/// # Example
///
/// ```
/// use multiproc::process::{Process, active_children};
/// use std::{fs::File, io::{Read, Write}};
///
/// let (r, w) = multiproc::sys::pipe()?;
/// let (mut r, mut w) = (File::from(r), File::from(w));
/// let child = Process::new(move || {
///     let _ = r.read(&mut [0u8]); // blocks until the parent writes
/// });
/// child.start()?;
/// assert!(active_children().contains(&child.pid().unwrap()));
/// w.write_all(b"x")?;
/// child.join(None)?;
/// assert!(!active_children().contains(&child.pid().unwrap()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn active_children() -> Vec<i32> {
    let mut children = lock();
    children.reap_finished();
    children.pids()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_python() {
        assert_eq!(default_name(&[1]), "Process-1");
        assert_eq!(default_name(&[2, 1]), "Process-2:1");
    }

    #[test]
    fn identities_extend_the_current_one() {
        let mut table = Children {
            unreaped: Vec::new(),
            me: Me {
                identity: vec![3],
                name: "Process-3".into(),
                daemon: false,
                parent: None,
            },
            created: 0,
        };
        assert_eq!(table.next_identity(), vec![3, 1]);
        assert_eq!(table.next_identity(), vec![3, 2]);
        table.become_child(Me {
            identity: vec![3, 2],
            name: "Process-3:2".into(),
            daemon: false,
            parent: None,
        });
        assert_eq!(table.next_identity(), vec![3, 2, 1]);
    }
}
