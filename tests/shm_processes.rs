//! Segments across real processes: fork children writing into every
//! backing, and the cleanup of named segments whose creator was SIGKILLed.
#![cfg(not(loom))]

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use multiproc::shm::{Backing, SharedMemory, sweep_orphans, tracker_pid};
use multiproc::sys::{self, ChildStatus, Forked};

const DEADLINE: Duration = Duration::from_secs(20);

/// Tests that watch /dev/shm names run one at a time: a sweep started by
/// another test's child could remove a name one of them still expects.
static NAMES: Mutex<()> = Mutex::new(());

/// Forks; the child runs `child` and exits with its code.
fn fork_child(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `child` (test code that uses our own API
    // and the pipes it was given) and leaves with _exit.
    match unsafe { sys::fork() }.expect("fork") {
        Forked::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child)).unwrap_or(101);
            sys::exit_immediately(code)
        }
        Forked::Parent(pid) => pid,
    }
}

/// Waits for `pid` to end, at most DEADLINE, and returns its status.
fn wait_child(pid: i32) -> ChildStatus {
    let pidfd = sys::pidfd_open(pid).expect("pidfd_open");
    let ended = sys::poll_readable(pidfd.as_fd(), Some(DEADLINE)).expect("poll");
    if !ended {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::waitpid(pid, false);
        panic!("child {pid} still running after {DEADLINE:?}");
    }
    sys::waitpid(pid, false).expect("waitpid").expect("reaped")
}

/// Reads one line from `r`, failing after DEADLINE.
fn read_line(r: &mut std::io::PipeReader) -> String {
    let ready = sys::poll_readable(r.as_fd(), Some(DEADLINE)).expect("poll");
    assert!(ready, "no message from the child within {DEADLINE:?}");
    let mut buf = [0u8; 512];
    let n = r.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
}

#[test]
fn fork_children_write_into_every_backing() {
    let _names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    for backing in [Backing::Anonymous, Backing::Memfd, Backing::Named] {
        let mem = SharedMemory::new(8 * 1024, backing).unwrap();
        let words = mem.as_atomic_u64();
        let children: Vec<i32> = (0..2u64)
            .map(|k| {
                let mem = mem.clone();
                fork_child(move || {
                    let words = mem.as_atomic_u64();
                    for i in (k as usize..words.len()).step_by(2) {
                        words[i].store(i as u64 * 3 + 1, Ordering::Relaxed);
                    }
                    0
                })
            })
            .collect();
        for pid in children {
            assert_eq!(wait_child(pid), ChildStatus::Exited(0), "{backing:?}");
        }
        for (i, w) in words.iter().enumerate() {
            assert_eq!(
                w.load(Ordering::Relaxed),
                i as u64 * 3 + 1,
                "{backing:?} word {i}"
            );
        }
    }
}

#[test]
fn a_child_dropping_a_named_segment_does_not_unlink_it() {
    let _names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let mem = SharedMemory::new(64, Backing::Named).unwrap();
    let path = format!("/dev/shm{}", mem.segment().name().unwrap());
    let copy = mem.clone();
    let pid = fork_child(move || {
        drop(copy);
        0
    });
    assert_eq!(wait_child(pid), ChildStatus::Exited(0));
    assert!(
        Path::new(&path).exists(),
        "the child must not unlink its parent's name"
    );
    drop(mem);
    assert!(!Path::new(&path).exists());
}

/// A child that is SIGKILLed and reaped when the test ends early.
struct Creator {
    pid: i32,
    reaped: bool,
}

impl Creator {
    fn kill_and_reap(&mut self) -> ChildStatus {
        sys::kill(self.pid, libc::SIGKILL).unwrap();
        self.reaped = true;
        wait_child(self.pid)
    }
}

impl Drop for Creator {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::waitpid(self.pid, false);
        }
    }
}

/// Starts a child that creates a named segment, reports its name and its
/// tracker's pid, and then blocks until killed.
fn start_creator() -> (Creator, String, i32) {
    let (mut report_r, report_w) = std::io::pipe().unwrap();
    let (mut block_r, block_w) = std::io::pipe().unwrap();
    let pid = fork_child(move || {
        let mut report_w = report_w;
        let mem = SharedMemory::new(4096, Backing::Named).unwrap();
        let tracker = tracker_pid().expect("a tracker started with the named segment");
        // One write, so the parent reads the whole line at once.
        let line = format!("{} {tracker}\n", mem.segment().name().unwrap());
        report_w.write_all(line.as_bytes()).unwrap();
        // Block until killed: nobody writes to this pipe.
        let mut byte = [0u8];
        let _ = block_r.read(&mut byte);
        0
    });
    drop(block_w);
    let creator = Creator { pid, reaped: false };
    let line = read_line(&mut report_r);
    let (name, tracker) = line.split_once(' ').expect("name and tracker pid");
    (creator, format!("/dev/shm{name}"), tracker.parse().unwrap())
}

#[test]
fn tracker_unlinks_the_segments_of_a_killed_creator() {
    let _names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let (mut creator, path, tracker) = start_creator();
    let tracker_fd = sys::pidfd_open(tracker).expect("tracker alive");
    assert!(Path::new(&path).exists());
    assert_eq!(
        creator.kill_and_reap(),
        ChildStatus::Signaled(libc::SIGKILL)
    );
    let done = sys::poll_readable(tracker_fd.as_fd(), Some(DEADLINE)).unwrap();
    assert!(
        done,
        "the tracker did not exit within {DEADLINE:?} of its creator's death"
    );
    assert!(!Path::new(&path).exists(), "{path} left behind");
}

#[test]
fn sweep_removes_what_a_killed_tracker_left() {
    let _names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let (mut creator, path, tracker) = start_creator();
    let tracker_fd = sys::pidfd_open(tracker).expect("tracker alive");
    sys::kill(tracker, libc::SIGKILL).unwrap();
    assert!(sys::poll_readable(tracker_fd.as_fd(), Some(DEADLINE)).unwrap());
    assert_eq!(
        creator.kill_and_reap(),
        ChildStatus::Signaled(libc::SIGKILL)
    );
    assert!(Path::new(&path).exists(), "nobody cleaned it yet");
    let removed = sweep_orphans().unwrap();
    assert!(removed >= 1);
    assert!(!Path::new(&path).exists(), "{path} survived the sweep");
}
