//! The creator-killed trial: an intermediate process creates named
//! segments (a queue, a lock, a shared array), starts daemon children that
//! use them, and is SIGKILLed at a random step of that (counted in progress
//! bytes it writes to a pipe). Afterwards nothing of it may remain: its
//! `/dev/shm` names are unlinked by its tracker, its daemons die through
//! their lifelines, and every orphan that landed on this process (the
//! subreaper) ends by itself and is reaped here.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use multiproc::process::Process;
use multiproc::queue::{Queue, QueueOptions};
use multiproc::shm::{Backing, Segment, SharedMemory};
use multiproc::sync::Lock;
use multiproc::sys::ChildStatus;

use crate::os::{self, Rng};

/// Setup steps the creator reports; the kill lands after 1..=STEPS of them.
const STEPS: u64 = 6;
/// How long the creator's orphans may take to end by themselves.
const GRACE: Duration = Duration::from_secs(15);

/// What one creator-killed trial left behind.
#[derive(Debug, Default, Clone, Copy)]
pub struct Leftovers {
    /// `/dev/shm` names of the creator still there after the grace.
    pub shm: u64,
    /// Orphans that did not end within the grace (killed then).
    pub processes: u64,
}

fn creator(mut progress: File) -> i32 {
    let mut step = || progress.write_all(b"s").is_ok();
    let seg = Segment::create(Backing::Named, 64 * 1024).expect("named segment");
    step();
    let q = Queue::new_in(&seg, QueueOptions::new(4, 16)).expect("queue");
    let lock = Lock::new_in(&seg).expect("lock");
    step();
    let other = SharedMemory::new(4096, Backing::Named).expect("second named segment");
    step();
    // A daemon that puts forever (blocking while the queue is full).
    let producer = Process::new({
        let q = q.clone();
        move || {
            while q.put(b"x", true, Some(Duration::from_secs(60))).is_ok() {}
        }
    })
    .daemon(true);
    producer.start().expect("producer");
    step();
    // A daemon that holds the lock and gets forever.
    let holder = Process::new({
        let (q, lock, other) = (q.clone(), lock.clone(), other.clone());
        move || {
            let _g = lock.acquire();
            other.as_atomic_u64()[0].store(1, std::sync::atomic::Ordering::Relaxed);
            let mut b = [0u8; 16];
            while q.get(&mut b, true, Some(Duration::from_secs(60))).is_ok() {}
        }
    })
    .daemon(true);
    holder.start().expect("holder");
    step();
    step();
    // Wait to be killed (the supervisor kills after STEPS steps at the latest).
    let _keep = (q, lock, other, producer, holder);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Runs one creator-killed trial.
pub fn run(rng: &mut Rng) -> Leftovers {
    let (r, w): (OwnedFd, OwnedFd) = multiproc::sys::pipe().expect("pipe");
    let (mut progress_r, progress_w) = (File::from(r), File::from(w));
    let pid = os::spawn(move || creator(progress_w));
    let kill_after = 1 + rng.below(STEPS);
    let mut b = [0u8];
    for _ in 0..kill_after {
        if progress_r.read_exact(&mut b).is_err() {
            break; // it ended early (a setup failure: reported below)
        }
    }
    let status = os::kill_and_reap(pid);
    assert_eq!(
        status,
        ChildStatus::Signaled(libc::SIGKILL),
        "the creator failed during setup instead of being killed"
    );
    drop(progress_r);
    let prefix = os::shm_prefix_of(pid);
    let tracker = multiproc::shm::tracker_pid();
    let deadline = Instant::now() + GRACE;
    let mut out = Leftovers::default();
    // Orphans (daemons, the creator's tracker) re-parented to us: each must
    // end by itself within the grace. Ending ones re-parent nothing further
    // (they have no children), but repeat until none is left.
    loop {
        let orphans: Vec<i32> = os::children()
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| Some(*p) != tracker)
            .collect();
        if orphans.is_empty() {
            break;
        }
        for p in orphans {
            let left = deadline.saturating_duration_since(Instant::now());
            if os::wait_for(p, left).is_none() {
                out.processes += 1;
                eprintln!("creator trial: orphan {p} outlived the grace");
                os::kill_and_reap(p);
            }
        }
    }
    // The tracker unlinks the names once every holder of its socket ended.
    let mut names = os::shm_names(&prefix);
    while !names.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        names = os::shm_names(&prefix);
    }
    out.shm = names.len() as u64;
    if !names.is_empty() {
        eprintln!("creator trial: leaked {names:?}");
        os::remove_shm(&names);
    }
    out
}
