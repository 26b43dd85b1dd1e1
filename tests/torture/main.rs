//! Kill-torture: the promise of DESIGN.md, "a process can die at any
//! instruction", checked by numbers.
//!
//! Each trial runs producers and consumers over an MPMC queue and lockers
//! over a lock-protected record while a supervisor (this test) SIGKILLs
//! random participants at random moments and restarts them ([`trial`]);
//! every tenth trial instead kills the process that created the named
//! segments and their users ([`creator`]). After every trial: no new
//! `/dev/shm` name, no descriptor growth, no child left (zombie or not).
//!
//! Quick mode (the default, part of `cargo test`): a few dozen trials.
//! Long mode: `MULTIPROC_TORTURE_TRIALS=1000 cargo test --release --test
//! torture -- --nocapture`; `MULTIPROC_TORTURE_SEED` picks the seed.
//! The summary line is printed either way.
#![cfg(not(loom))]

mod creator;
mod os;
mod trial;

use std::time::Instant;

use os::Rng;
use trial::{Shape, Tally};

const QUICK_TRIALS: u64 = 40;
const DEFAULT_SEED: u64 = 0x7041_7475_7265_2d31;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

#[derive(Debug, Default)]
struct Totals {
    trials: u64,
    creator_trials: u64,
    sum: Tally,
    leaked_shm: u64,
    leaked_fds: u64,
    leaked_processes: u64,
}

impl Totals {
    fn add(&mut self, t: &Tally) {
        let s = &mut self.sum;
        s.kills += t.kills;
        s.producer_kills += t.producer_kills;
        s.consumer_kills += t.consumer_kills;
        s.locker_kills += t.locker_kills;
        s.messages += t.messages;
        s.lost += t.lost;
        s.uncertain += t.uncertain;
        s.uncertain_landed += t.uncertain_landed;
        s.duplicated += t.duplicated;
        s.hangs += t.hangs;
        s.bad_messages += t.bad_messages;
        s.corrupt_queue += t.corrupt_queue;
        s.lock_corrupt += t.lock_corrupt;
        s.owner_died += t.owner_died;
        s.repaired += t.repaired;
        s.failed_participants += t.failed_participants;
    }

    fn summary(&self) -> String {
        let s = &self.sum;
        format!(
            "torture: trials {} (creator killed in {}), kills {} (producers {}, consumers {}, \
             lockers {}, creators {}), messages {}, lost {} (held by killed consumers), \
             duplicated {}, hangs {}, uncertain {} ({} landed), bad messages {}, corrupt \
             queues {}, lock: owner-died {} repaired {} corrupt {}, failed participants {}, \
             leaks: shm {} fds {} processes {}",
            self.trials,
            self.creator_trials,
            s.kills + self.creator_trials,
            s.producer_kills,
            s.consumer_kills,
            s.locker_kills,
            self.creator_trials,
            s.messages,
            s.lost,
            s.duplicated,
            s.hangs,
            s.uncertain,
            s.uncertain_landed,
            s.bad_messages,
            s.corrupt_queue,
            s.owner_died,
            s.repaired,
            s.lock_corrupt,
            s.failed_participants,
            self.leaked_shm,
            self.leaked_fds,
            self.leaked_processes,
        )
    }
}

/// Leak probes around one trial: descriptors, this process's `/dev/shm`
/// names, children (other than our own segment tracker).
fn check_leaks(fds_before: usize, totals: &mut Totals, trial: u64) {
    let me = std::process::id() as i32;
    let tracker = multiproc::shm::tracker_pid();
    let names = os::shm_names(&os::shm_prefix_of(me));
    if !names.is_empty() {
        eprintln!("trial {trial}: leaked /dev/shm names {names:?}");
        totals.leaked_shm += names.len() as u64;
        os::remove_shm(&names);
    }
    let left: Vec<(i32, char)> = os::children()
        .into_iter()
        .filter(|(p, _)| Some(*p) != tracker)
        .collect();
    if !left.is_empty() {
        eprintln!("trial {trial}: children left (pid, state): {left:?}");
        totals.leaked_processes += left.len() as u64;
        for (p, _) in left {
            os::kill_and_reap(p);
        }
    }
    let fds = os::open_fds();
    if fds > fds_before {
        eprintln!("trial {trial}: descriptors {fds_before} -> {fds}");
        totals.leaked_fds += (fds - fds_before) as u64;
    }
}

#[test]
fn torture_kills_lose_nothing_and_leak_nothing() {
    let trials = env_u64("MULTIPROC_TORTURE_TRIALS").unwrap_or(QUICK_TRIALS);
    let seed = env_u64("MULTIPROC_TORTURE_SEED").unwrap_or(DEFAULT_SEED);
    let shape = Shape {
        producers: 2,
        consumers: 2,
        lockers: 2,
        messages: 4000,
        lock_rounds: 20_000,
        max_kills: 6,
        max_kill_ops: 1500,
    };
    os::become_subreaper();
    // Start this process's segment tracker before the first descriptor
    // count: it lives (with its socket) for the rest of the run.
    drop(multiproc::shm::Segment::create(multiproc::shm::Backing::Named, 4096).unwrap());
    let started = Instant::now();
    let mut totals = Totals::default();
    for trial in 0..trials {
        let mut rng = Rng::new(seed ^ trial.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let fds_before = os::open_fds();
        if trial % 10 == 5 {
            let left = creator::run(&mut rng);
            totals.creator_trials += 1;
            totals.leaked_shm += left.shm;
            totals.leaked_processes += left.processes;
        } else {
            let t = trial::run(&shape, &mut rng);
            let bad = t.hangs
                + t.duplicated
                + t.bad_messages
                + t.corrupt_queue
                + t.lock_corrupt
                + t.failed_participants
                + t.lost.saturating_sub(t.consumer_kills);
            if bad != 0 {
                eprintln!("trial {trial} (seed {seed:#x}) failed: {t:?}");
            }
            totals.add(&t);
        }
        totals.trials += 1;
        check_leaks(fds_before, &mut totals, trial);
    }
    let summary = totals.summary();
    println!("{summary} [seed {seed:#x}, {:.1?}]", started.elapsed());
    let s = &totals.sum;
    assert_eq!(s.hangs, 0, "{summary}");
    assert_eq!(s.duplicated, 0, "{summary}");
    assert!(s.lost <= s.consumer_kills, "{summary}");
    assert_eq!(
        s.bad_messages + s.corrupt_queue + s.lock_corrupt,
        0,
        "{summary}"
    );
    assert_eq!(s.failed_participants, 0, "{summary}");
    assert_eq!(
        totals.leaked_shm + totals.leaked_fds + totals.leaked_processes,
        0,
        "{summary}"
    );
    assert!(s.kills > 0, "{summary}");
}
