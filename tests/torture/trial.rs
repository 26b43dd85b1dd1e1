//! One queue-and-lock trial: producers and consumers over an MPMC queue
//! and lockers updating a lock-protected record, all in one named segment,
//! while the supervisor SIGKILLs random participants at random moments and
//! restarts them. The accounting lives in shared memory (`Ctl` words and
//! one `seen` counter per message), so it survives any kill.
//!
//! Kill moments are measured in progress, not time: the supervisor picks a
//! victim and a number of operations `k` from the seeded generator, waits
//! until the victim's operation counter moved `k` further, and kills it
//! there, at whatever instruction the signal finds it.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::Error;
use multiproc::queue::{Queue, QueueOptions};
use multiproc::shm::{Backing, Segment, SharedMemory};
use multiproc::sync::{Lock, LockError};
use multiproc::sys::ChildStatus;

use crate::os::{self, EXIT_ERROR, EXIT_HUNG, Rng};

/// Sizes of one trial.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub producers: usize,
    pub consumers: usize,
    pub lockers: usize,
    /// Messages each producer role puts (its sequence numbers 0..this).
    pub messages: u64,
    /// Critical sections each locker role completes.
    pub lock_rounds: u64,
    /// Kills per trial: 1..=this.
    pub max_kills: u64,
    /// A victim is killed after 1..=this of its operations.
    pub max_kill_ops: u64,
}

/// What a participant may block for before it reports a hang.
const PARTICIPANT_DEADLINE: Duration = Duration::from_secs(20);
/// What the supervisor waits for any one step before it counts a hang.
const SUPERVISOR_DEADLINE: Duration = Duration::from_secs(40);
/// Fields of the lock-protected record (all equal to `VERSION` when consistent).
const FIELDS: usize = 8;
const MAX_MSG: usize = 32;

// Word indices in the control block (u64 each).
const ACKED: usize = 0; // per producer role: 1 + the highest seq whose put returned Ok
const OPS: usize = 8; // per participant slot: operations done (progress)
const LOCK_DONE: usize = 24; // per locker role: critical sections completed
const BAD_MESSAGES: usize = 32; // messages with wrong bytes
const LOCK_CORRUPT: usize = 33; // clean acquisitions that found the record torn
const OWNER_DIED: usize = 34; // acquisitions that reported OwnerDied
const REPAIRED: usize = 35; // OwnerDied acquisitions that found the record torn
const VERSION: usize = 40;
const RECORD: usize = 41; // FIELDS words
const CTL_WORDS: usize = 64;

/// Per-trial totals.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub kills: u64,
    pub producer_kills: u64,
    pub consumer_kills: u64,
    pub locker_kills: u64,
    pub messages: u64,
    /// Messages whose put returned Ok that never arrived.
    pub lost: u64,
    /// In-flight puts of killed producers (may or may not have landed).
    pub uncertain: u64,
    pub uncertain_landed: u64,
    pub duplicated: u64,
    pub hangs: u64,
    pub bad_messages: u64,
    pub corrupt_queue: u64,
    pub lock_corrupt: u64,
    pub owner_died: u64,
    pub repaired: u64,
    pub failed_participants: u64,
}

/// The shared objects of a trial, inherited by every participant (fork).
struct World {
    queue: Queue,
    lock: Lock,
    ctl: SharedMemory,
    seen: SharedMemory,
}

impl World {
    fn ctl(&self, i: usize) -> &AtomicU64 {
        &self.ctl.as_atomic_u64()[i]
    }
    fn seen(&self, shape: &Shape, role: usize, seq: u64) -> &AtomicU8 {
        &self.seen.as_atomic_u8()[role * shape.messages as usize + seq as usize]
    }
}

/// The bytes of message `seq` of producer `role`: role, seq, a check word,
/// then `seq % 9` filler bytes, so a torn or misplaced copy shows.
fn message(role: usize, seq: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(MAX_MSG);
    m.extend_from_slice(&(role as u64).to_le_bytes());
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&check_word(role, seq).to_le_bytes());
    m.resize(24 + (seq % 9) as usize, seq as u8 ^ 0x5a);
    m
}

fn check_word(role: usize, seq: u64) -> u64 {
    (seq ^ ((role as u64) << 56)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Decodes a received message; `None` when its bytes are not a message.
fn decode(shape: &Shape, m: &[u8]) -> Option<(usize, u64)> {
    if m.len() < 24 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(m[i * 8..i * 8 + 8].try_into().unwrap());
    let (role, seq) = (word(0) as usize, word(1));
    let ok = role < shape.producers && seq < shape.messages && m == message(role, seq).as_slice();
    ok.then_some((role, seq))
}

fn producer(w: &World, shape: &Shape, role: usize, slot: usize, start: u64) -> i32 {
    for seq in start..shape.messages {
        match w
            .queue
            .put(&message(role, seq), true, Some(PARTICIPANT_DEADLINE))
        {
            Ok(()) => {}
            Err(Error::Full) => return EXIT_HUNG,
            Err(_) => return EXIT_ERROR,
        }
        // Relaxed: the supervisor reads it after this process is dead
        // (waitpid orders it) or only as progress.
        w.ctl(ACKED + role).store(seq + 1, Ordering::Relaxed);
        w.ctl(OPS + slot).fetch_add(1, Ordering::Relaxed);
    }
    0
}

fn consumer(w: &World, shape: &Shape, slot: usize) -> i32 {
    let mut buf = [0u8; MAX_MSG];
    loop {
        match w.queue.get(&mut buf, true, Some(PARTICIPANT_DEADLINE)) {
            Ok(n) => match decode(shape, &buf[..n]) {
                // Relaxed: counters read after every participant ended.
                Some((role, seq)) => {
                    w.seen(shape, role, seq).fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    w.ctl(BAD_MESSAGES).fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(Error::Closed) => return 0,
            Err(Error::Empty) => return EXIT_HUNG,
            Err(_) => return EXIT_ERROR,
        }
        // Relaxed: progress only.
        w.ctl(OPS + slot).fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether the record is whole: every field equals the version.
fn record_is_consistent(w: &World) -> bool {
    // Relaxed: read under the lock, whose hand-off orders the holder's writes.
    let v = w.ctl(VERSION).load(Ordering::Relaxed);
    (0..FIELDS).all(|i| w.ctl(RECORD + i).load(Ordering::Relaxed) == v)
}

fn locker(w: &World, shape: &Shape, role: usize, slot: usize) -> i32 {
    // Relaxed: our own role's counter, written only under the lock.
    while w.ctl(LOCK_DONE + role).load(Ordering::Relaxed) < shape.lock_rounds {
        let guard = match w.lock.acquire_timeout(PARTICIPANT_DEADLINE) {
            Ok(g) => {
                if !record_is_consistent(w) {
                    w.ctl(LOCK_CORRUPT).fetch_add(1, Ordering::Relaxed);
                }
                g
            }
            Err(LockError::OwnerDied(g)) => {
                w.ctl(OWNER_DIED).fetch_add(1, Ordering::Relaxed);
                if !record_is_consistent(w) {
                    // Repair: finish the dead holder's update.
                    let v = w.ctl(VERSION).load(Ordering::Relaxed);
                    let top = (0..FIELDS)
                        .map(|i| w.ctl(RECORD + i).load(Ordering::Relaxed))
                        .max()
                        .unwrap_or(v)
                        .max(v);
                    for i in 0..FIELDS {
                        w.ctl(RECORD + i).store(top, Ordering::Relaxed);
                    }
                    w.ctl(VERSION).store(top, Ordering::Relaxed);
                    w.ctl(REPAIRED).fetch_add(1, Ordering::Relaxed);
                }
                g.make_consistent();
                g
            }
            Err(LockError::Timeout) => return EXIT_HUNG,
        };
        // The update: one field at a time, progress counted in between, so
        // kills land inside the critical section as often as outside.
        let v = w.ctl(VERSION).load(Ordering::Relaxed) + 1;
        for i in 0..FIELDS {
            w.ctl(RECORD + i).store(v, Ordering::Relaxed);
            w.ctl(OPS + slot).fetch_add(1, Ordering::Relaxed);
        }
        w.ctl(VERSION).store(v, Ordering::Relaxed);
        w.ctl(LOCK_DONE + role).fetch_add(1, Ordering::Relaxed);
        drop(guard);
        w.ctl(OPS + slot).fetch_add(1, Ordering::Relaxed);
    }
    0
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Producer,
    Consumer,
    Locker,
}

/// One participant slot and its current incarnation.
#[derive(Debug)]
struct Participant {
    kind: Kind,
    /// Role number within its kind.
    role: usize,
    /// Its slot in the `OPS` words.
    slot: usize,
    /// The running incarnation, `None` once it ended.
    pid: Option<i32>,
    /// Producers: the sequence number this incarnation started at.
    start: u64,
}

fn start(w: &World, shape: &Shape, p: &mut Participant) {
    let (kind, role, slot, first) = (p.kind, p.role, p.slot, p.start);
    p.pid = Some(os::spawn(|| match kind {
        Kind::Producer => producer(w, shape, role, slot, first),
        Kind::Consumer => consumer(w, shape, slot),
        Kind::Locker => locker(w, shape, role, slot),
    }));
}

/// Whether every producer role has put all its messages.
fn all_put(w: &World, shape: &Shape) -> bool {
    (0..shape.producers)
        // Relaxed: progress only.
        .all(|r| w.ctl(ACKED + r).load(Ordering::Relaxed) >= shape.messages)
}

/// Runs one trial with the generator `rng`; returns its tally.
pub fn run(shape: &Shape, rng: &mut Rng) -> Tally {
    let mut t = Tally::default();
    let seg = Segment::create(Backing::Named, 256 * 1024).expect("named segment");
    let w = World {
        queue: Queue::new_in(&seg, QueueOptions::new(8, MAX_MSG)).expect("queue"),
        lock: Lock::new_in(&seg).expect("lock"),
        ctl: SharedMemory::new_in(&seg, CTL_WORDS * 8).expect("control words"),
        seen: SharedMemory::new_in(&seg, shape.producers * shape.messages as usize)
            .expect("seen counters"),
    };
    let mut all: Vec<Participant> = Vec::new();
    for (kind, n) in [
        (Kind::Producer, shape.producers),
        (Kind::Consumer, shape.consumers),
        (Kind::Locker, shape.lockers),
    ] {
        for role in 0..n {
            let slot = all.len();
            all.push(Participant {
                kind,
                role,
                slot,
                pid: None,
                start: 0,
            });
        }
    }
    for p in &mut all {
        start(&w, shape, p);
    }
    let mut uncertain: Vec<(usize, u64)> = Vec::new();
    let kills = 1 + rng.below(shape.max_kills);
    for _ in 0..kills {
        // Once every message is put, only lockers still have work to be
        // interrupted in.
        let done_putting = all_put(&w, shape);
        // A kind first (each as likely), then one of its living members.
        let kinds: Vec<Kind> = [Kind::Producer, Kind::Consumer, Kind::Locker]
            .into_iter()
            .filter(|k| !done_putting || *k == Kind::Locker)
            .filter(|k| all.iter().any(|p| p.kind == *k && p.pid.is_some()))
            .collect();
        if kinds.is_empty() {
            break;
        }
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let alive: Vec<usize> = (0..all.len())
            .filter(|i| all[*i].kind == kind && all[*i].pid.is_some())
            .collect();
        let victim = alive[rng.below(alive.len() as u64) as usize];
        let k = 1 + rng.below(shape.max_kill_ops);
        let pid = all[victim].pid.unwrap();
        let ops = w.ctl(OPS + all[victim].slot);
        // Relaxed: progress counters; only how far they moved matters.
        let target = ops.load(Ordering::Relaxed) + k;
        let deadline = Instant::now() + SUPERVISOR_DEADLINE;
        let mut ended = None;
        // Once every producer is done a consumer cannot progress any more:
        // kill now rather than wait for operations that will not come.
        while ops.load(Ordering::Relaxed) < target
            && !(kind == Kind::Consumer && all_put(&w, shape))
        {
            if let Some(status) = multiproc::sys::waitpid(pid, true).expect("waitpid") {
                ended = Some(status);
                break;
            }
            if Instant::now() > deadline {
                t.hangs += 1;
                break;
            }
            // Polling a progress counter (the victim runs meanwhile), not
            // ordering anything: short naps keep this process off the cores.
            std::thread::sleep(Duration::from_micros(100));
        }
        let status = ended.unwrap_or_else(|| os::kill_and_reap(pid));
        let p = &mut all[victim];
        p.pid = None;
        match status {
            ChildStatus::Signaled(libc::SIGKILL) => {}
            ChildStatus::Exited(0) => continue, // it finished first: its role is done
            ChildStatus::Exited(EXIT_HUNG) => {
                t.hangs += 1;
                continue;
            }
            other => {
                t.failed_participants += 1;
                eprintln!("participant {:?} {} ended {other:?}", p.kind, p.role);
                continue;
            }
        }
        t.kills += 1;
        match p.kind {
            Kind::Producer => {
                t.producer_kills += 1;
                // Relaxed: the victim is dead and reaped.
                let acked = w.ctl(ACKED + p.role).load(Ordering::Relaxed);
                let in_flight = acked.max(p.start);
                if in_flight < shape.messages {
                    uncertain.push((p.role, in_flight));
                }
                p.start = in_flight + 1;
            }
            Kind::Consumer => t.consumer_kills += 1,
            Kind::Locker => t.locker_kills += 1,
        }
        start(&w, shape, p);
    }
    let verbose = std::env::var_os("MULTIPROC_TORTURE_VERBOSE").is_some();
    let t0 = Instant::now();
    // Wind down: producers finish, then close, then consumers drain and end.
    let finish = |p: &mut Participant, t: &mut Tally| {
        let Some(pid) = p.pid.take() else { return };
        let status = os::wait_for(pid, SUPERVISOR_DEADLINE).unwrap_or_else(|| {
            t.hangs += 1;
            os::kill_and_reap(pid)
        });
        match status {
            ChildStatus::Exited(0) => {}
            ChildStatus::Exited(EXIT_HUNG) => t.hangs += 1,
            other => {
                t.failed_participants += 1;
                eprintln!("participant {:?} {} ended {other:?}", p.kind, p.role);
            }
        }
    };
    for p in all.iter_mut().filter(|p| p.kind == Kind::Producer) {
        finish(p, &mut t);
    }
    let t1 = Instant::now();
    w.queue.close();
    for p in all.iter_mut().filter(|p| p.kind != Kind::Producer) {
        finish(p, &mut t);
    }
    if verbose {
        eprintln!(
            "kills done; producers ended after {:?}, the rest {:?} later",
            t1 - t0,
            t1.elapsed()
        );
    }
    // The queue is drained and whole: nothing left, and a get says Closed.
    let mut buf = [0u8; MAX_MSG];
    if w.queue.qsize() != 0 || !matches!(w.queue.get_nowait(&mut buf), Err(Error::Closed)) {
        t.corrupt_queue += 1;
    }
    // Accounting.
    for role in 0..shape.producers {
        for seq in 0..shape.messages {
            let c = u64::from(w.seen(shape, role, seq).load(Ordering::Relaxed));
            let maybe = uncertain.contains(&(role, seq));
            match c {
                0 if maybe => {}
                0 => t.lost += 1,
                _ => {
                    t.messages += 1;
                    t.duplicated += c - 1;
                    if maybe {
                        t.uncertain_landed += 1;
                    }
                }
            }
        }
    }
    t.uncertain = uncertain.len() as u64;
    // Relaxed: every participant has ended and was reaped.
    t.bad_messages = w.ctl(BAD_MESSAGES).load(Ordering::Relaxed);
    t.lock_corrupt = w.ctl(LOCK_CORRUPT).load(Ordering::Relaxed);
    t.owner_died = w.ctl(OWNER_DIED).load(Ordering::Relaxed);
    t.repaired = w.ctl(REPAIRED).load(Ordering::Relaxed);
    if w.lock.is_locked() || !record_is_consistent(&w) {
        // A dead holder not yet seen by anyone: the next acquire repairs it.
        match w.lock.try_acquire() {
            Err(LockError::OwnerDied(g)) => {
                t.owner_died += 1;
                g.make_consistent();
            }
            _ => t.lock_corrupt += 1,
        }
    }
    t
}
