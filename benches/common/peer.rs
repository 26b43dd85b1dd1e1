//! A peer process for two-process benchmarks: forked from the benchmark,
//! pinned to the other core, serving [`Task`]s that the benchmark hands it
//! over a control pipe, and always reaped.

use std::fs::File;
use std::io::{self, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use multiproc::sys::{self, ChildStatus, Forked};

/// One job for the peer. What `kind` means is up to the benchmark that
/// starts the peer; `count` and `size` are its parameters (how many
/// operations, how many bytes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    /// Which operation; each benchmark defines its own numbers.
    pub kind: u64,
    /// How many times to do it.
    pub count: u64,
    /// Bytes per operation, where that means something.
    pub size: u64,
}

impl Task {
    const WIRE_LEN: usize = 24;

    fn to_bytes(self) -> [u8; Self::WIRE_LEN] {
        let mut out = [0; Self::WIRE_LEN];
        out[..8].copy_from_slice(&self.kind.to_le_bytes());
        out[8..16].copy_from_slice(&self.count.to_le_bytes());
        out[16..].copy_from_slice(&self.size.to_le_bytes());
        out
    }

    fn from_bytes(b: &[u8; Self::WIRE_LEN]) -> Task {
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Task {
            kind: word(0),
            count: word(8),
            size: word(16),
        }
    }
}

/// The peer sends this when it took a task and is about to start it.
const READY: u8 = b'r';
/// The peer sends this when it finished a task.
const DONE: u8 = b'd';

/// A forked peer process. Dropping it ends and reaps the process: politely
/// (end of the control pipe) when it is idle, with `SIGKILL` when a task is
/// in flight (the benchmark panicked midway), so no process is ever left.
pub struct Peer {
    pid: i32,
    /// Tasks to the peer; `None` once closed.
    tasks: Option<File>,
    /// `READY` / `DONE` bytes from the peer.
    replies: File,
    /// True between [`Peer::begin`] and [`Peer::finish`].
    busy: bool,
    /// This process's CPU mask before it was pinned, restored on drop.
    saved_affinity: Option<libc::cpu_set_t>,
}

impl Peer {
    /// Forks a peer that runs `serve(task)` for each task it is given.
    ///
    /// When the machine allows two CPUs, this process is pinned to the first
    /// and the peer to the second, so each side has a core of its own.
    /// `serve` runs only in the peer; the benchmark's copy is dropped right
    /// after the fork, so whatever it owns (the peer's end of a pipe) is
    /// closed here. `serve` should not allocate: it runs in a child of a
    /// process that may have threads.
    pub fn start<F>(serve: F) -> Peer
    where
        F: FnMut(Task) -> io::Result<()>,
    {
        let (task_rx, task_tx) = pipe();
        let (reply_rx, reply_tx) = pipe();
        let cpus = two_cpus();
        let saved_affinity = cpus.map(|(mine, _)| pin_to(mine));
        // SAFETY: the child only reads and writes pipes, runs `serve` (which
        // the caller keeps free of locks and allocation), and leaves with
        // `exit_immediately`, never returning into the benchmark.
        match unsafe { sys::fork() }.expect("fork the benchmark peer") {
            Forked::Child => {
                drop((task_tx, reply_rx));
                let code = match catch_unwind(AssertUnwindSafe(|| {
                    peer_main(task_rx, reply_tx, cpus.map(|(_, peer)| peer), serve)
                })) {
                    Ok(Ok(())) => 0,
                    Ok(Err(e)) => {
                        eprintln!("benchmark peer: {e}");
                        1
                    }
                    Err(_) => 2,
                };
                sys::exit_immediately(code)
            }
            Forked::Parent(pid) => {
                drop((task_rx, reply_tx, serve));
                Peer {
                    pid,
                    tasks: Some(task_tx),
                    replies: reply_rx,
                    busy: false,
                    saved_affinity,
                }
            }
        }
    }

    /// Hands `task` to the peer and returns once the peer has taken it, so
    /// a timer started now does not count the peer's wake-up for the task.
    pub fn begin(&mut self, task: Task) {
        assert!(!self.busy, "Peer::begin while a task is in flight");
        let tasks = self.tasks.as_mut().expect("the task pipe is open");
        tasks
            .write_all(&task.to_bytes())
            .unwrap_or_else(|e| panic!("send {task:?} to the peer: {e}"));
        self.busy = true;
        self.expect_reply(READY);
    }

    /// Waits until the peer finished the task of the last [`Peer::begin`].
    pub fn finish(&mut self) {
        assert!(self.busy, "Peer::finish without a task");
        self.expect_reply(DONE);
        self.busy = false;
    }

    fn expect_reply(&mut self, want: u8) {
        let mut got = [0u8];
        match self.replies.read_exact(&mut got) {
            Ok(()) if got[0] == want => {}
            Ok(()) => panic!("benchmark peer sent {:?}, expected {:?}", got[0], want),
            Err(e) => {
                // The peer is gone: say how it ended.
                let status = sys::waitpid(self.pid, false);
                self.pid = 0;
                panic!("benchmark peer died ({status:?}) while we waited for it: {e}");
            }
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.pid > 0 {
            if self.busy {
                // It may be blocked in the middle of a task forever.
                let _ = sys::kill(self.pid, libc::SIGKILL);
            }
            self.tasks = None; // end of tasks: an idle peer exits
            let status = sys::waitpid(self.pid, false);
            let clean = self.busy || matches!(status, Ok(Some(ChildStatus::Exited(0))));
            if !clean && !std::thread::panicking() {
                panic!("benchmark peer ended badly: {status:?}");
            }
        }
        if let Some(mask) = self.saved_affinity.take() {
            set_affinity(&mask);
        }
    }
}

fn peer_main<F>(task_rx: File, reply_tx: File, cpu: Option<usize>, mut serve: F) -> io::Result<()>
where
    F: FnMut(Task) -> io::Result<()>,
{
    let (mut task_rx, mut reply_tx) = (task_rx, reply_tx);
    // If the benchmark dies (even by SIGKILL), so does the peer.
    sys::set_parent_death_signal(libc::SIGKILL)?;
    if let Some(cpu) = cpu {
        pin_to(cpu);
    }
    let mut buf = [0u8; Task::WIRE_LEN];
    loop {
        match task_rx.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        reply_tx.write_all(&[READY])?;
        serve(Task::from_bytes(&buf))?;
        reply_tx.write_all(&[DONE])?;
    }
}

/// A pipe as (read end, write end), close-on-exec.
pub fn pipe() -> (File, File) {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe2");
    (File::from(r), File::from(w))
}

/// The first two CPUs this process may run on, if there are two.
pub fn two_cpus() -> Option<(usize, usize)> {
    let mask = affinity();
    let mut allowed = (0..libc::CPU_SETSIZE as usize).filter(|&cpu| {
        // SAFETY: `cpu` < CPU_SETSIZE, the size of the set.
        unsafe { libc::CPU_ISSET(cpu, &mask) }
    });
    Some((allowed.next()?, allowed.next()?))
}

/// Pins the calling process to `cpu`; returns the mask it had before.
pub fn pin_to(cpu: usize) -> libc::cpu_set_t {
    let before = affinity();
    // SAFETY: cpu_set_t is plain bits; all zeroes is the empty set.
    let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` comes from `two_cpus`, so it is < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut only) };
    set_affinity(&only);
    before
}

fn affinity() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain bits; all zeroes is the empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `mask` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut mask) };
    assert_eq!(rc, 0, "sched_getaffinity: {}", io::Error::last_os_error());
    mask
}

fn set_affinity(mask: &libc::cpu_set_t) {
    // SAFETY: `mask` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), mask) };
    assert_eq!(rc, 0, "sched_setaffinity: {}", io::Error::last_os_error());
}
