//! The SPSC byte ring: one producer, one consumer, variable-length messages
//! stored back to back, copied in and out. A message is published by one
//! Release store of its length word and found by one Acquire load of it:
//! the consumer never reads the producer's counter, so while the ring is
//! neither full nor empty the only cache lines that move between the two
//! cores are the ones holding the messages (FastForward-style, with
//! variable-length records).
//!
//! # Layout
//!
//! One [`RingHeader`] followed (in the object's tail) by `capacity` bytes,
//! a power of two. `tail` (bytes written) and `head` (bytes consumed)
//! count up forever; the byte at counter `c` lies at `c & (capacity - 1)`.
//! Each side keeps its own counters on its *own* cache line.
//!
//! A record is an 8-byte prefix and the message, padded to 8 bytes. The
//! prefix's first `u32` is the record's *word*:
//!
//! | word            | meaning                                              |
//! |-----------------|------------------------------------------------------|
//! | `0` ([`EMPTY`]) | nothing published here yet: the consumer stops       |
//! | `1 ..= 2^32-2`  | a message of `word - 1` bytes follows                |
//! | [`WRAP`]        | the next record starts at the ring's beginning       |
//!
//! A record never wraps: when it does not fit before the end, the word
//! there is [`WRAP`] and the record starts at offset 0. A message is at most
//! `capacity / 2 - 8` bytes, so a record always fits once the ring is empty.
//!
//! # The end marker
//!
//! The ring keeps one invariant: **the word right after the last published
//! record is [`EMPTY`]**. A producer writes a record's message, its own
//! word's neighbours (a [`WRAP`] before it, if it wrapped) and the [`EMPTY`]
//! word after it, and only then stores the word that publishes it (Release).
//! So the word at the consumer's `head` is either [`EMPTY`] or published
//! for this lap, never a stale byte of an older message: the producer
//! reserves room for the record *and* the 8 bytes after it. A batch
//! publishes with its first word, stored last.
//!
//! # Hot path
//!
//! A put that finds room (a get that finds a message) does no
//! read-modify-write and runs no CPU fence: it compares the role word with
//! the caller's cached tid, copies, stores the word (Release) and asks the
//! other side's [`EventCount`] whether anybody sleeps, behind the light
//! half of an asymmetric fence ([`asymmetric_fence`](crate::sync::asymmetric_fence));
//! a side about to sleep pays the heavy half (`membarrier`). The producer
//! reads `head` only when its cached copy says full. The consumer reads
//! `tail` only as a hint, about once per 2 KiB: when it comes that close
//! to a producer that is still writing, it lets it get ahead for a few
//! polls, so that each cache line crosses between the cores once instead
//! of bouncing while both work on it (`keep_distance` in `consume.rs`).
//! Messages of up to 64 bytes are copied inline.
//!
//! # Roles
//!
//! Exactly one thread may produce and one consume at a time. The header
//! records the tid of each role's holder (`producer`, `consumer`); taking a
//! role is a CAS from 0, or from a holder that `/proc` says is dead. A role
//! taken by a handle ([`Producer`](super::Producer)) is given back when it
//! drops; one taken by the Queue façade stays with its thread.
//!
//! # Death
//!
//! A producer killed mid-write published nothing (the word is stored
//! last); one killed after its word but before it stored `tail` published
//! a record `tail` does not count. Every reservation therefore checks that
//! the word at `tail` is the end marker, and if not, first walks `tail`
//! over the published words (a producer never overwrites a published
//! record, whoever held the role before, even a dead thread whose tid the
//! caller now has). A consumer killed mid-read did not move `head`: the
//! message is read again by the next consumer (delivered at least once,
//! never lost).

mod blocking;
mod consume;
mod copy;
mod ring;
#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(not(loom))]
pub(crate) use consume::Found;
pub(crate) use ring::RawRing;
#[cfg(not(loom))]
pub(crate) use ring::Reservation;

use super::common::JoinState;
use crate::error::{Error, Result};
use crate::shim::{AtomicU32, AtomicU64};
use crate::sync::EventCount;

/// The shared part of an SPSC ring.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    /// Ring bytes: a power of two, at least 64. Written once by the creator.
    capacity: u64,
    /// Largest message: at most `capacity / 2 - 8`. Written once.
    max_msg: u64,
    /// `QUEUE_FLAG_*` bits. Written once.
    flags: u32,
    /// 1 once closed; set by `close`, never cleared.
    closed: AtomicU32,
    /// Tid of the producer role's holder, 0 if none. CAS by a taker.
    producer: AtomicU32,
    /// Tid of the consumer role's holder, 0 if none. CAS by a taker.
    consumer: AtomicU32,
    _pad0: [u64; 4],
    /// Bytes written and published, in `head ..= head + capacity`: where
    /// the next record goes. Written by the producer after the word that
    /// publishes (it lags behind the words if a producer died in between;
    /// the next reservation catches it up). Read by producers, and by the
    /// consumer as a hint of distance only.
    tail: AtomicU64,
    /// The producer's last view of `head` (can be stale, never ahead).
    /// Written and read by the producer only.
    cached_head: AtomicU64,
    /// Messages published. Written by the producer.
    sent: AtomicU64,
    _pad1: [u64; 5],
    /// Bytes consumed, in `0 ..= tail`. Written by the consumer.
    head: AtomicU64,
    /// The consumer's last view of `tail`: only a hint of how far ahead
    /// the producer is (see `keep_distance`), never trusted for data.
    /// Written and read by the consumer only.
    cached_tail: AtomicU64,
    /// Messages consumed. Written by the consumer.
    received: AtomicU64,
    _pad2: [u64; 5],
    /// Notified after the producer published.
    not_empty: EventCount,
    /// Notified after the consumer freed room.
    not_full: EventCount,
    /// The `join` counter (used when `QUEUE_FLAG_JOINABLE` is set).
    join: JoinState,
    _pad3: [u64; 5],
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<RingHeader>() == 256);
    assert!(align_of::<RingHeader>() == 8);
    assert!(std::mem::offset_of!(RingHeader, tail) == 64);
    assert!(std::mem::offset_of!(RingHeader, head) == 128);
};

/// The layout version of [`RingHeader`] and its records.
/// 2: records published by their word, with the end marker (1 published
/// by `tail`).
pub(crate) const RING_LAYOUT_VERSION: u32 = 2;
/// The word of the end marker: nothing published here yet.
const EMPTY: u32 = 0;
/// The word of a wrap marker: the next record is at the ring's start.
const WRAP: u32 = u32::MAX;
/// The largest message length a word can carry (`word - 1`).
const MAX_WORD_LEN: u64 = WRAP as u64 - 2;
/// Bytes of a record's prefix.
const PREFIX: u64 = 8;

const fn record_len(len: u64) -> u64 {
    PREFIX + len.next_multiple_of(8)
}

impl RingHeader {
    /// A header for an empty ring that holds at least `capacity` messages
    /// of `max_msg` bytes. Checks the sizes.
    pub(crate) fn new(capacity: usize, max_msg: usize, flags: u32) -> Result<RingHeader> {
        crate::queue::common::check_sizes(capacity, max_msg)?;
        if max_msg as u64 > super::mpmc::MAX_TAIL || max_msg as u64 > MAX_WORD_LEN {
            return Err(Error::TooLarge {
                len: max_msg,
                max: MAX_WORD_LEN.min(super::mpmc::MAX_TAIL) as usize,
            });
        }
        let rec = record_len(max_msg as u64);
        // `capacity` records and the end marker after them.
        let bytes = (capacity as u64)
            .checked_mul(rec)
            .and_then(|b| b.checked_add(PREFIX))
            .map(|b| b.max(2 * rec).max(64))
            .and_then(u64::checked_next_power_of_two)
            .filter(|b| *b <= super::mpmc::MAX_TAIL)
            .ok_or(Error::TooLarge {
                len: capacity.saturating_mul(max_msg),
                max: super::mpmc::MAX_TAIL as usize,
            })?;
        Ok(RingHeader {
            capacity: bytes,
            max_msg: max_msg as u64,
            flags,
            closed: AtomicU32::new(0),
            producer: AtomicU32::new(0),
            consumer: AtomicU32::new(0),
            _pad0: [0; 4],
            tail: AtomicU64::new(0),
            cached_head: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            _pad1: [0; 5],
            head: AtomicU64::new(0),
            cached_tail: AtomicU64::new(0),
            received: AtomicU64::new(0),
            _pad2: [0; 5],
            not_empty: EventCount::new(),
            not_full: EventCount::new(),
            join: JoinState::default(),
            _pad3: [0; 5],
        })
    }

    /// The tail length (ring bytes) this header needs.
    pub(crate) fn tail_len(&self) -> usize {
        self.capacity as usize
    }

    /// Checks an attached header against the object's tail length.
    pub(crate) fn check(&self, tail_len: usize) -> Result<()> {
        let ok = self.capacity.is_power_of_two()
            && self.capacity >= 64
            && self.capacity <= tail_len as u64
            && self.max_msg >= 1
            && self.max_msg <= MAX_WORD_LEN
            && record_len(self.max_msg) <= self.capacity / 2;
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "corrupt ring header: capacity {}, max message {}, tail {tail_len} bytes",
                self.capacity, self.max_msg
            )))
        }
    }
}
