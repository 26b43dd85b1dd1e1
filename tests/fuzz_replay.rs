//! The bounded fuzz run on stable: each `cargo fuzz` target body
//! (`fuzz/src/targets/`) runs over the committed corpus
//! (`fuzz/corpus/<target>/`) and then over inputs from a seeded generator,
//! for at most a few seconds per target. The long runs are `cargo +nightly
//! fuzz run <target>` (see README, "Reliability").
#![cfg(not(loom))]

#[path = "../fuzz/src/targets/mod.rs"]
mod targets;

use std::path::Path;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Held for reading by every replay while it runs one input, and for
/// writing while the c_api replay starts its manager and pool by `fork`:
/// then no other thread is inside the library (a lock it held would stay
/// held in the child).
static NOT_FORKING: RwLock<()> = RwLock::new(());

/// Generated inputs per target at most, and the time they may take.
const GENERATED: u64 = 10_000;
const BUDGET: Duration = Duration::from_secs(4);

/// xorshift64*: the same inputs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Random bytes, mostly short, sometimes starting with a `prefix`.
    fn input(&mut self, prefixes: &[&[u8]]) -> Vec<u8> {
        let len = match self.next() % 4 {
            0 => self.next() % 16,
            1 | 2 => self.next() % 256,
            _ => self.next() % 2048,
        } as usize;
        let mut out = Vec::with_capacity(len + 64);
        if !prefixes.is_empty() && self.next().is_multiple_of(2) {
            out.extend_from_slice(prefixes[(self.next() % prefixes.len() as u64) as usize]);
        }
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len.max(out.len().min(len + 64)));
        out
    }
}

/// Runs `body` over the corpus of `target`, then over generated inputs.
fn replay(target: &str, seed: u64, prefixes: &[&[u8]], body: fn(&[u8])) {
    let started = Instant::now();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut corpus: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    corpus.sort();
    let run = |data: &[u8]| {
        let _guard = NOT_FORKING.read().unwrap_or_else(PoisonError::into_inner);
        body(data);
    };
    for path in &corpus {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // FUZZ_TRACE=1 names each corpus file first: the last one named
        // before a failure is the input to look at.
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!("TRACE {}", path.display());
        }
        run(&data);
    }
    let mut rng = Rng(seed);
    let mut generated = 0;
    while generated < GENERATED && started.elapsed() < BUDGET {
        run(&rng.input(prefixes));
        generated += 1;
    }
    println!(
        "{target}: {} corpus files + {generated} generated inputs in {:.1?}",
        corpus.len(),
        started.elapsed()
    );
}

#[test]
fn handle_attach() {
    // A length byte, then handle-looking text.
    let prefixes: &[&[u8]] = &[
        b"\x26mp1:memfd:3:0123456789abcdef:64:queue",
        b"\x24mp1:anon:1:00000000deadbeef:64:lock",
        b"\x1fmp1:shm:mp-fuzz-x:0000000000000001:64:event",
    ];
    replay(
        "handle_attach",
        0x68616e646c65,
        prefixes,
        targets::handle::attach,
    );
}

#[test]
fn connection_framing() {
    let prefixes: &[&[u8]] = &[
        b"\x00\x10\x00\x00\x00\x00\x05hello",
        b"\x01\x04\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x08",
        b"\x02\x02\x00\x00\x00\x00\x03abc",
    ];
    replay(
        "connection_framing",
        0x6672616d65,
        prefixes,
        targets::connection::framing,
    );
}

#[test]
fn auth_handshake() {
    let prefixes: &[&[u8]] = &[
        b"\x00\x03key\x00\x00\x00\x2a#CHALLENGE#",
        b"\x01\x03key\x00\x00\x00\x2a#CHALLENGE#{sha256}",
        b"\x01\x03key\x00\x00\x00\x09#WELCOME#",
    ];
    replay(
        "auth_handshake",
        0x61757468,
        prefixes,
        targets::connection::auth_handshake,
    );
}

#[test]
fn c_api() {
    {
        let _forking = NOT_FORKING.write().unwrap_or_else(PoisonError::into_inner);
        targets::c_api::start_shared();
    }
    // Stops the manager and pool even when the replay fails.
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            targets::c_api::stop_shared();
        }
    }
    let stop = Stop;
    replay("c_api", 0x63617069, &[], targets::c_api::run);
    drop(stop);
    // The manager's server and the pool's worker are reaped.
    let mut count = usize::MAX;
    // SAFETY: NULL pids with cap 0 asks the count only; `count` is ours.
    let status =
        unsafe { multiproc::ffi::process::mp_active_children(std::ptr::null_mut(), 0, &mut count) };
    assert_eq!((status, count), (multiproc::ffi::MP_OK, 0), "children left");
}
