//! Cross-process ping-pong: a round trip signalled through two shared
//! semaphores, beside the same round trip through two OS pipes (and a
//! socketpair), in the same run, with the peer pinned to the other core
//! (see `common`). Run with `cargo bench --bench semaphore`.
//!
//! The semaphore link carries the 8-byte message in a shared slot per
//! direction: the sender writes the slot and releases the receiver's
//! semaphore; the receiver acquires it and reads the slot. With one
//! message in flight at a time, as in a round trip, that is all the
//! synchronization a slot needs (the semaphore orders the slot's bytes).

mod common;

use std::io;

use common::os::{Pipe, SocketPair};
use common::transport::{Endpoint, ROUND_TRIP_SIZE, Transport, round_trip};
use criterion::{Criterion, criterion_group, criterion_main};
use multiproc::array::Array;
use multiproc::sync::Semaphore;

/// Two semaphores and two 8-byte slots, one of each per direction.
struct SemaphoreLink;

/// One end: signals and fills `out`, waits on and reads `inbox`.
struct SemaphoreEnd {
    out_signal: Semaphore,
    out_slot: Array<u8>,
    in_signal: Semaphore,
    in_slot: Array<u8>,
}

fn to_io(e: multiproc::Error) -> io::Error {
    io::Error::other(e.to_string())
}

impl Endpoint for SemaphoreEnd {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.out_slot.copy_from_slice(0, msg).map_err(to_io)?;
        self.out_signal.release().map_err(to_io)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.in_signal.acquire();
        self.in_slot.copy_to_slice(0, buf).map_err(to_io)
    }
}

impl Transport for SemaphoreLink {
    type End = SemaphoreEnd;

    fn name(&self) -> &'static str {
        "semaphore"
    }

    fn pair(&self) -> io::Result<(SemaphoreEnd, SemaphoreEnd)> {
        let direction = || -> multiproc::Result<(Semaphore, Array<u8>)> {
            Ok((Semaphore::new(0)?, Array::new(ROUND_TRIP_SIZE)?))
        };
        let (a_to_b, a_to_b_slot) = direction().map_err(to_io)?;
        let (b_to_a, b_to_a_slot) = direction().map_err(to_io)?;
        Ok((
            SemaphoreEnd {
                out_signal: a_to_b.clone(),
                out_slot: a_to_b_slot.clone(),
                in_signal: b_to_a.clone(),
                in_slot: b_to_a_slot.clone(),
            },
            SemaphoreEnd {
                out_signal: b_to_a,
                out_slot: b_to_a_slot,
                in_signal: a_to_b,
                in_slot: a_to_b_slot,
            },
        ))
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip_8B");
    round_trip(&mut group, &SemaphoreLink);
    round_trip(&mut group, &Pipe);
    round_trip(&mut group, &SocketPair);
    group.finish();
}

criterion_group!(benches, ping_pong);
criterion_main!(benches);
