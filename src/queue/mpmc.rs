//! The bounded MPMC queue: many producers, many consumers, messages of up
//! to a fixed size, in one shared object.
//!
//! # Layout
//!
//! One [`QueueHeader`] followed (in the object's tail) by `capacity` [`Slot`]
//! words and then `capacity` data areas of `stride` bytes each.
//!
//! # Protocol
//!
//! Positions count up forever: `tail` is the next position to fill, `head`
//! the next to empty. Position `p` uses slot `p % capacity` in lap
//! `p / capacity`. Every change of a slot is a CAS on its slot word, which
//! holds the lap, a state and the thread id of whoever claimed it:
//!
//! | word (lap, state, tid)  | meaning                                 | moved on by                                  |
//! |-------------------------|-----------------------------------------|----------------------------------------------|
//! | `(L, EMPTY, 0)`         | free for position `L*cap + i`           | a producer's CAS -> `(L, WRITING, me)`       |
//! | `(L, WRITING, t)`       | producer `t` copies its message in      | `t`: store `(L, FULL, 0)`; or `(L+1, EMPTY)` if it finds the queue closed; anyone, once `t` is dead: CAS `(L+1, EMPTY)` |
//! | `(L, FULL, 0)`          | a published message, `len` valid        | a consumer's CAS -> `(L, READING, me)`       |
//! | `(L, READING, t)`       | consumer `t` copies the message out     | `t`: store `(L+1, EMPTY)`; anyone, once `t` is dead: CAS `(L+1, EMPTY)` (the message is lost) |
//!
//! `tail` moves from `p` to `p + 1` only after slot `p` left `(L, EMPTY)`,
//! and `head` only after it left `(L, FULL)`; whoever sees that a slot has
//! moved on helps the counter forward with a CAS. So a participant killed
//! between any two instructions leaves at worst one slot in `WRITING` or
//! `READING` with its tid, which a waiter stuck behind it clears once
//! `/proc` says the thread is gone. A message whose put returned `Ok` is
//! `FULL` and is taken exactly once; only a consumer dying while it copies
//! loses that one message.
//!
//! Closing: a producer re-reads `closed` after its claim, with a SeqCst
//! fence between; a consumer that finds its slot empty reads `closed`, and
//! if set, a SeqCst fence, then the slot again. So once a consumer reported
//! [`Error::Closed`] no put can publish any more: either the consumer's
//! second slot read sees the claim, or the producer's read sees `closed`.
//! (Fences, not SeqCst accesses, so that loom checks the argument.)

use std::ptr::NonNull;
use std::time::Instant;

use super::common::{self, Blocked, JoinState};
use crate::error::{Error, Result};
use crate::shim::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sync::EventCount;

/// The shared part of an MPMC queue.
#[repr(C)]
#[derive(Debug)]
pub struct QueueHeader {
    /// Number of slots, at least 1. Written once by the creator.
    capacity: u64,
    /// Largest message in bytes, at least 1. Written once by the creator.
    max_msg: u64,
    /// Bytes per data area: `max_msg` rounded up to 8. Written once.
    stride: u64,
    /// `QUEUE_FLAG_*` bits. Written once by the creator.
    flags: u32,
    /// 1 once closed; set by `close`, never cleared.
    closed: AtomicU32,
    _pad0: [u64; 4],
    /// Next position to fill. Only grows, by CAS, by producers (and by
    /// anyone helping it past a claimed slot). Own cache line.
    tail: AtomicU64,
    _pad1: [u64; 7],
    /// Next position to empty. Only grows, by CAS, by consumers. Own line.
    head: AtomicU64,
    _pad2: [u64; 7],
    /// Notified after a message is published (or a claim cleared).
    not_empty: EventCount,
    /// Notified after a slot is freed (or a claim cleared).
    not_full: EventCount,
    /// Reserved: 0.
    _reserved: u64,
    /// The `join` counter (used when `QUEUE_FLAG_JOINABLE` is set).
    join: JoinState,
    _pad3: [u64; 4],
}

/// One slot's state word, see the module table. All-zero is `(0, EMPTY)`.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Slot {
    /// `lap << 24 | state << 22 | tid`. Changed only by CAS, or by a store
    /// from the thread whose tid it holds.
    word: AtomicU64,
    /// Message length; written by the claiming producer before it publishes
    /// `FULL` (SYNC(slot-published)), read by consumers after.
    len: AtomicU32,
    _pad: u32,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<QueueHeader>() == 256);
    assert!(align_of::<QueueHeader>() == 8);
    assert!(std::mem::offset_of!(QueueHeader, tail) == 64);
    assert!(std::mem::offset_of!(QueueHeader, head) == 128);
    assert!(size_of::<Slot>() == 16);
};

/// The layout version of [`QueueHeader`] and [`Slot`].
pub(crate) const QUEUE_LAYOUT_VERSION: u32 = 1;
/// `put` counts messages for `task_done`/`join`.
pub(crate) const QUEUE_FLAG_JOINABLE: u32 = 1;

const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const FULL: u64 = 2;
const READING: u64 = 3;
const TID_MASK: u64 = (1 << 22) - 1;
const LAP_MASK: u64 = (1 << 40) - 1;

const fn word(lap: u64, state: u64, tid: u32) -> u64 {
    (lap & LAP_MASK) << 24 | state << 22 | (tid as u64 & TID_MASK)
}
const fn lap_of(w: u64) -> u64 {
    w >> 24
}
const fn state_of(w: u64) -> u64 {
    (w >> 22) & 3
}
const fn tid_of(w: u64) -> u32 {
    (w & TID_MASK) as u32
}
const fn next_lap(lap: u64) -> u64 {
    (lap + 1) & LAP_MASK
}

/// The error of a put or get that found its counter corrupt.
fn corrupt_counter(which: &str) -> Error {
    Error::Invalid(format!(
        "corrupt queue: its `{which}` counter is laps away from its slot (the shared header \
         was overwritten)"
    ))
}

/// Bytes of object tail needed for `capacity` slots of `stride` bytes.
pub(crate) const fn tail_bytes(capacity: u64, stride: u64) -> Option<u64> {
    capacity.checked_mul(size_of::<Slot>() as u64 + stride)
}

/// Largest capacity or message size accepted (the tail stays far below the
/// address space; the sizes stay exact in a `u64`).
pub(crate) const MAX_TAIL: u64 = 1 << 40;

impl QueueHeader {
    /// A header for an empty, open queue. Checks the sizes.
    pub(crate) fn new(capacity: usize, max_msg: usize, flags: u32) -> Result<QueueHeader> {
        super::common::check_sizes(capacity, max_msg)?;
        let stride = (max_msg as u64).min(MAX_TAIL + 1).next_multiple_of(8);
        match tail_bytes(capacity as u64, stride) {
            Some(n)
                if n <= MAX_TAIL && max_msg as u64 <= MAX_TAIL && max_msg <= u32::MAX as usize => {}
            _ => {
                return Err(Error::TooLarge {
                    len: capacity.saturating_mul(max_msg),
                    max: MAX_TAIL as usize,
                });
            }
        }
        Ok(QueueHeader {
            capacity: capacity as u64,
            max_msg: max_msg as u64,
            stride,
            flags,
            closed: AtomicU32::new(0),
            _pad0: [0; 4],
            tail: AtomicU64::new(0),
            _pad1: [0; 7],
            head: AtomicU64::new(0),
            _pad2: [0; 7],
            not_empty: EventCount::new(),
            not_full: EventCount::new(),
            _reserved: 0,
            join: JoinState::default(),
            _pad3: [0; 4],
        })
    }

    /// The tail length this header needs.
    pub(crate) fn tail_len(&self) -> usize {
        tail_bytes(self.capacity, self.stride).unwrap_or(u64::MAX) as usize
    }

    /// Checks an attached header against the object's tail length.
    pub(crate) fn check(&self, tail_len: usize) -> Result<()> {
        let ok = self.capacity >= 1
            && self.capacity <= LAP_MASK
            && self.max_msg >= 1
            && self.max_msg <= u32::MAX as u64
            && self.stride == self.max_msg.next_multiple_of(8)
            && tail_bytes(self.capacity, self.stride).is_some_and(|n| n <= tail_len as u64);
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "corrupt queue header: capacity {}, max message {}, stride {}, tail {tail_len} bytes",
                self.capacity, self.max_msg, self.stride
            )))
        }
    }
}

/// The algorithm over a header, its slots and data areas, wherever they
/// live (a segment, or heap memory in loom models).
#[derive(Debug)]
pub(crate) struct RawMpmc {
    header: NonNull<QueueHeader>,
    slots: NonNull<Slot>,
    data: NonNull<u8>,
    capacity: u64,
    stride: usize,
    max_msg: usize,
    /// This handle's memory of a claim that stopped its tries.
    watch: common::ClaimWatch,
}

// SAFETY: RawMpmc only hands out shared references to atomics, and copies
// bytes into and out of data areas it owns through the slot protocol (a slot
// claimed by CAS belongs to its claimant alone until it publishes it).
unsafe impl Send for RawMpmc {}
// SAFETY: as for Send.
unsafe impl Sync for RawMpmc {}

/// Why a put could not complete now.
#[derive(Debug)]
enum PutStop {
    Blocked(Blocked),
    Closed,
    /// `tail` is two or more laps away from its slot: not a state the
    /// protocol can reach, so the shared header was overwritten.
    Corrupt,
}

/// Why a get could not complete now.
#[derive(Debug)]
enum GetStop {
    Blocked(Blocked),
    Closed,
    TooSmall(usize),
    /// As [`PutStop::Corrupt`], for `head`.
    Corrupt,
}

impl RawMpmc {
    /// # Safety
    ///
    /// - `header` points to a valid, checked [`QueueHeader`], followed at
    ///   `tail` by `capacity` [`Slot`]s and `capacity * stride` data bytes,
    ///   all alive (and not moved) for as long as the result is used.
    /// - `tail` is aligned for [`Slot`].
    pub(crate) unsafe fn new(header: NonNull<QueueHeader>, tail: NonNull<u8>) -> RawMpmc {
        // SAFETY: the header is valid (caller's promise).
        let h = unsafe { header.as_ref() };
        let slots = tail.cast::<Slot>();
        // SAFETY: the data areas start right after the slot words, inside
        // the tail (caller's promise).
        let data = unsafe { tail.add(h.capacity as usize * size_of::<Slot>()) };
        RawMpmc {
            header,
            slots,
            data,
            capacity: h.capacity,
            stride: h.stride as usize,
            max_msg: h.max_msg as usize,
            watch: common::ClaimWatch::default(),
        }
    }

    pub(crate) fn header(&self) -> &QueueHeader {
        // SAFETY: valid for our lifetime (constructor's contract).
        unsafe { self.header.as_ref() }
    }

    fn slot(&self, i: usize) -> &Slot {
        debug_assert!((i as u64) < self.capacity);
        // SAFETY: i < capacity; the slots are valid for our lifetime.
        unsafe { self.slots.add(i).as_ref() }
    }

    fn data(&self, i: usize) -> *mut u8 {
        // SAFETY: i < capacity: the area lies inside the tail.
        unsafe { self.data.as_ptr().add(i * self.stride) }
    }

    fn locate(&self, pos: u64) -> (usize, u64) {
        (
            (pos % self.capacity) as usize,
            (pos / self.capacity) & LAP_MASK,
        )
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity as usize
    }

    pub(crate) fn max_msg(&self) -> usize {
        self.max_msg
    }

    /// One attempt to put `msg` (already checked against `max_msg`).
    fn try_put(&self, msg: &[u8]) -> std::result::Result<(), PutStop> {
        let h = self.header();
        // Relaxed: an early exit only; the check after the claim decides.
        if h.closed.load(Ordering::Relaxed) != 0 {
            return Err(PutStop::Closed);
        }
        let me = common::my_tid();
        loop {
            // Relaxed: `tail` is a hint; the slot word's CAS decides.
            let pos = h.tail.load(Ordering::Relaxed);
            let (i, lap) = self.locate(pos);
            let slot = self.slot(i);
            // SYNC(slot-freed): Acquire pairs with the consumer's Release
            // store of `(L+1, EMPTY)`, so its copy-out is done before we write.
            let w = slot.word.load(Ordering::Acquire);
            let wl = lap_of(w);
            if wl == lap {
                if state_of(w) != EMPTY {
                    // Claimed for `pos` already: help `tail` on.
                    // Relaxed: a hint, as above.
                    let _ =
                        h.tail
                            .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                    continue;
                }
                // Acquire: SYNC(slot-freed), as the load above.
                if slot
                    .word
                    .compare_exchange(
                        w,
                        word(lap, WRITING, me),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
                // Relaxed: a hint, as above.
                let _ = h
                    .tail
                    .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                // SYNC(close-fence): the claim before the fence, `closed`
                // after it; pairs with the consumer's fence (module docs).
                fence(Ordering::SeqCst);
                // Relaxed: ordered by the fence.
                if h.closed.load(Ordering::Relaxed) != 0 {
                    // Give the slot up: consumers step over it.
                    // SYNC(slot-freed): Release, as a consumer's free.
                    slot.word
                        .store(word(next_lap(lap), EMPTY, 0), Ordering::Release);
                    common::wake(&h.not_empty);
                    common::wake(&h.not_full);
                    return Err(PutStop::Closed);
                }
                if h.flags & QUEUE_FLAG_JOINABLE != 0 {
                    h.join.add(1);
                }
                // SAFETY: the slot is ours (claimed by CAS) until we publish
                // it; its data area holds `stride >= msg.len()` bytes and
                // cannot overlap `msg`, which is caller memory.
                unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.data(i), msg.len()) };
                // Relaxed: published by the Release store below.
                slot.len.store(msg.len() as u32, Ordering::Relaxed);
                // SYNC(slot-published): Release pairs with the consumer's
                // Acquire load of `(L, FULL)`: data and len are visible.
                slot.word.store(word(lap, FULL, 0), Ordering::Release);
                common::wake(&h.not_empty);
                return Ok(());
            } else if wl == lap.wrapping_sub(1) & LAP_MASK {
                // The message of the previous lap is still there.
                return Err(PutStop::Blocked(match state_of(w) {
                    WRITING | READING => Blocked::Claim {
                        slot: i,
                        word: w,
                        tid: tid_of(w),
                    },
                    _ => Blocked::Plain,
                }));
            } else if wl == next_lap(lap) {
                // The slot moved past `pos` (it was cleared after its
                // producer died before moving `tail`, or our `pos` is old).
                // Relaxed: a hint, as above.
                let _ = h
                    .tail
                    .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
            } else if self.counter_is_corrupt(&h.tail, pos, slot, w) {
                return Err(PutStop::Corrupt);
            }
        }
    }

    /// One attempt to take a message into `buf`.
    fn try_get(&self, buf: &mut [u8]) -> std::result::Result<usize, GetStop> {
        let h = self.header();
        let me = common::my_tid();
        loop {
            // Relaxed: `head` is a hint; the slot word's CAS decides.
            let pos = h.head.load(Ordering::Relaxed);
            let (i, lap) = self.locate(pos);
            let slot = self.slot(i);
            // SYNC(slot-published): Acquire pairs with the producer's
            // Release store of `(L, FULL)`.
            let w = slot.word.load(Ordering::Acquire);
            let wl = lap_of(w);
            // Nothing at `pos` now: Closed if closed and still nothing
            // after the fence (module docs), else wait.
            let stop_empty = || {
                // Relaxed: ordered by the fence that follows.
                if h.closed.load(Ordering::Relaxed) == 0 {
                    return GetStop::Blocked(Blocked::Plain);
                }
                // SYNC(close-fence): `closed` before, the slot after; pairs
                // with the producer's fence.
                fence(Ordering::SeqCst);
                // Relaxed: ordered by the fence; only compared.
                if slot.word.load(Ordering::Relaxed) == w {
                    GetStop::Closed
                } else {
                    GetStop::Blocked(Blocked::Plain)
                }
            };
            if wl == lap {
                match state_of(w) {
                    EMPTY => return Err(stop_empty()),
                    WRITING => {
                        return Err(GetStop::Blocked(Blocked::Claim {
                            slot: i,
                            word: w,
                            tid: tid_of(w),
                        }));
                    }
                    READING => {
                        // Taken by another consumer: help `head` on.
                        // Relaxed: a hint.
                        let _ = h.head.compare_exchange(
                            pos,
                            pos + 1,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        continue;
                    }
                    _ => {}
                }
                // FULL. Relaxed: ordered by the Acquire load of `w`.
                let len = (slot.len.load(Ordering::Relaxed) as usize).min(self.max_msg);
                if len > buf.len() {
                    // Relaxed re-read: only to see whether `len` belonged
                    // to `w`'s message; the CAS below is not attempted.
                    if slot.word.load(Ordering::Relaxed) == w {
                        return Err(GetStop::TooSmall(len));
                    }
                    continue;
                }
                // Acquire: as the load above (the message we take is `w`'s).
                if slot
                    .word
                    .compare_exchange(
                        w,
                        word(lap, READING, me),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
                // Relaxed: a hint.
                let _ = h
                    .head
                    .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                // SAFETY: the slot is ours (claimed by CAS) until we free it;
                // `len <= max_msg <= stride` and `len <= buf.len()`.
                unsafe { std::ptr::copy_nonoverlapping(self.data(i), buf.as_mut_ptr(), len) };
                // SYNC(slot-freed): Release pairs with the producer's Acquire
                // load: our copy-out is done before it writes again.
                slot.word
                    .store(word(next_lap(lap), EMPTY, 0), Ordering::Release);
                common::wake(&h.not_full);
                return Ok(len);
            } else if wl == lap.wrapping_sub(1) & LAP_MASK {
                // Still the previous lap's message being read: nothing for
                // `pos` yet.
                return Err(stop_empty());
            } else if wl == next_lap(lap) {
                // Moved past `pos`: help `head` on. Relaxed: a hint.
                let _ = h
                    .head
                    .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
            } else if self.counter_is_corrupt(&h.head, pos, slot, w) {
                return Err(GetStop::Corrupt);
            }
        }
    }

    /// Whether `counter` (`tail` or `head`), read as `pos`, is corrupt: its
    /// slot's word `w` is two or more laps away from `pos`'s lap. The
    /// protocol keeps a slot within one lap of a counter that points at
    /// it (a counter passes a position only after its slot moved on, and
    /// a slot moves on only after a counter reached it), so that distance
    /// is only possible when `pos` is old: both are read again, and if
    /// neither moved, the shared header was overwritten. Without this, a
    /// put or get would walk the counter forward one position per loop for
    /// up to 2^40 laps, ignoring its deadline.
    fn counter_is_corrupt(&self, counter: &AtomicU64, pos: u64, slot: &Slot, w: u64) -> bool {
        // SeqCst: the re-reads come after the first ones in the single
        // order, so an old `pos` shows as a changed counter.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence; only compared.
        counter.load(Ordering::Relaxed) == pos && slot.word.load(Ordering::Relaxed) == w
    }

    /// Clears slot `i` from word `w` if its claimant died meanwhile.
    fn skip_dead(&self, i: usize, w: u64) {
        let slot = self.slot(i);
        // AcqRel: Acquire so whatever the dead claimant did is before us;
        // Release (SYNC(slot-freed)) as any free of the slot.
        if slot
            .word
            .compare_exchange(
                w,
                word(next_lap(lap_of(w)), EMPTY, 0),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let h = self.header();
            common::wake(&h.not_empty);
            common::wake(&h.not_full);
        }
    }

    /// Puts `msg`, waiting until `deadline` for room.
    pub(crate) fn put(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        if msg.len() > self.max_msg {
            return Err(Error::TooLarge {
                len: msg.len(),
                max: self.max_msg,
            });
        }
        let h = self.header();
        let attempt = || match self.try_put(msg) {
            Ok(()) => Ok(Ok(())),
            Err(PutStop::Closed) => Ok(Err(Error::Closed)),
            Err(PutStop::Corrupt) => Ok(Err(corrupt_counter("tail"))),
            Err(PutStop::Blocked(b)) => Err(b),
        };
        common::wait_loop(
            &h.not_full,
            deadline,
            Some(&self.watch),
            attempt,
            |i, w, _| self.skip_dead(i, w),
        )
        .unwrap_or(Err(Error::Full))
    }

    /// Takes a message into `buf`, waiting until `deadline` for one.
    pub(crate) fn get(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        let h = self.header();
        let attempt = || match self.try_get(buf) {
            Ok(n) => Ok(Ok(n)),
            Err(GetStop::Closed) => Ok(Err(Error::Closed)),
            Err(GetStop::Corrupt) => Ok(Err(corrupt_counter("head"))),
            Err(GetStop::TooSmall(len)) => Ok(Err(Error::TooLarge {
                len,
                max: buf.len(),
            })),
            Err(GetStop::Blocked(b)) => Err(b),
        };
        common::wait_loop(
            &h.not_empty,
            deadline,
            Some(&self.watch),
            attempt,
            |i, w, _| self.skip_dead(i, w),
        )
        .unwrap_or(Err(Error::Empty))
    }

    /// Messages in the queue now: approximate while others put and get.
    pub(crate) fn len(&self) -> usize {
        let h = self.header();
        // Relaxed: a snapshot. `head` can pass a lagging `tail` for a moment
        // (a slot cleared after its producer died): clamp.
        let head = h.head.load(Ordering::Relaxed);
        let tail = h.tail.load(Ordering::Relaxed);
        tail.saturating_sub(head).min(self.capacity) as usize
    }

    pub(crate) fn close(&self) {
        let h = self.header();
        // SeqCst, then a fence: see the module docs on closing.
        h.closed.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        common::wake(&h.not_empty);
        common::wake(&h.not_full);
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Relaxed: a snapshot.
        self.header().closed.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn join_state(&self) -> Option<&JoinState> {
        let h = self.header();
        (h.flags & QUEUE_FLAG_JOINABLE != 0).then_some(&h.join)
    }

    /// Test hook: claims the next free slot as a producer would and stops,
    /// as if killed right after its claim. Returns false if the queue is full.
    pub(crate) fn claim_and_stop(&self) -> bool {
        let h = self.header();
        let me = common::my_tid();
        loop {
            // Relaxed: as in `try_put`.
            let pos = h.tail.load(Ordering::Relaxed);
            let (i, lap) = self.locate(pos);
            let slot = self.slot(i);
            // Acquire: as in `try_put`.
            let w = slot.word.load(Ordering::Acquire);
            if lap_of(w) != lap {
                return false;
            }
            if state_of(w) != EMPTY {
                // Relaxed: a hint, as in `try_put`.
                let _ = h
                    .tail
                    .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                continue;
            }
            if slot
                .word
                .compare_exchange(
                    w,
                    word(lap, WRITING, me),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                // Relaxed: a hint, as in `try_put`.
                let _ = h
                    .tail
                    .compare_exchange(pos, pos + 1, Ordering::Relaxed, Ordering::Relaxed);
                return true;
            }
        }
    }
}

/// The algorithm alone, over heap memory (no segment, no syscall on the
/// paths taken): small enough for Miri (`scripts/sanitizers miri`).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::alloc::{Layout, alloc_zeroed, dealloc};
    use std::time::Duration;

    /// A queue whose header and tail live in heap allocations.
    struct HeapQueue {
        raw: RawMpmc,
        header: *mut QueueHeader,
        tail: *mut u8,
        layout: Layout,
    }

    // SAFETY: as RawMpmc; the allocations are freed only in Drop.
    unsafe impl Sync for HeapQueue {}

    impl HeapQueue {
        fn new(capacity: usize, max_msg: usize) -> HeapQueue {
            let header = Box::into_raw(Box::new(QueueHeader::new(capacity, max_msg, 0).unwrap()));
            // SAFETY: just allocated, valid.
            let len = unsafe { &*header }.tail_len();
            let layout = Layout::from_size_align(len.max(64), 64).unwrap();
            // SAFETY: a non-zero size.
            let tail = unsafe { alloc_zeroed(layout) };
            // SAFETY: the header is checked by `new`; the zeroed tail holds
            // `capacity` empty slots and the data areas, 64-aligned, alive
            // until Drop.
            let raw =
                unsafe { RawMpmc::new(NonNull::new(header).unwrap(), NonNull::new(tail).unwrap()) };
            HeapQueue {
                raw,
                header,
                tail,
                layout,
            }
        }
    }

    impl Drop for HeapQueue {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with these layouts, freed once.
            unsafe {
                dealloc(self.tail, self.layout);
                drop(Box::from_raw(self.header));
            }
        }
    }

    const NOW: Option<Instant> = None;

    #[test]
    fn positions_wrap_through_many_laps_in_order() {
        let q = HeapQueue::new(3, 9);
        let mut buf = [0u8; 9];
        for i in 0..50u8 {
            let msg = [i; 9];
            let len = 1 + usize::from(i) % 9;
            q.raw.put(&msg[..len], NOW).unwrap();
            if i % 2 == 0 {
                q.raw.put(&msg[..len], NOW).unwrap();
                assert_eq!(q.raw.get(&mut buf, NOW).unwrap(), len);
            }
            assert_eq!(q.raw.get(&mut buf, NOW).unwrap(), len);
            assert!(buf[..len].iter().all(|b| *b == i));
        }
        assert_eq!(q.raw.len(), 0);
    }

    /// Regression: a `tail` or `head` overwritten with garbage made a put
    /// or get (even a try-once) loop for up to 2^40 laps; now both fail
    /// with `Invalid` and the queue works again once the counter is right.
    #[test]
    fn overwritten_counters_are_errors_not_endless_loops() {
        let q = HeapQueue::new(4, 8);
        let once = crate::queue::try_once();
        let mut buf = [0u8; 8];
        // SAFETY: the header lives until `q` drops.
        let h = unsafe { &*q.header };
        for garbage in [(1u64 << 36) + 5, 4 * 7 + 1, u64::MAX / 3] {
            h.tail.store(garbage, Ordering::Relaxed);
            assert!(matches!(q.raw.put(b"x", once), Err(Error::Invalid(m)) if m.contains("tail")));
            h.tail.store(0, Ordering::Relaxed);
            h.head.store(garbage, Ordering::Relaxed);
            assert!(
                matches!(q.raw.get(&mut buf, once), Err(Error::Invalid(m)) if m.contains("head"))
            );
            h.head.store(0, Ordering::Relaxed);
        }
        q.raw.put(b"ok", once).unwrap();
        assert_eq!(q.raw.get(&mut buf, once).unwrap(), 2);
    }

    #[test]
    fn full_empty_too_large_and_closed() {
        let q = HeapQueue::new(2, 4);
        let once = crate::queue::try_once();
        q.raw.put(b"a", once).unwrap();
        q.raw.put(b"bb", once).unwrap();
        assert!(matches!(q.raw.put(b"c", once), Err(Error::Full)));
        assert!(matches!(
            q.raw.put(b"12345", once),
            Err(Error::TooLarge { .. })
        ));
        let mut small = [0u8; 1];
        let mut buf = [0u8; 4];
        assert_eq!(q.raw.get(&mut small, once).unwrap(), 1);
        assert!(matches!(
            q.raw.get(&mut small, once),
            Err(Error::TooLarge { len: 2, .. })
        ));
        q.raw.close();
        assert!(matches!(q.raw.put(b"d", once), Err(Error::Closed)));
        assert_eq!(q.raw.get(&mut buf, once).unwrap(), 2);
        assert!(matches!(q.raw.get(&mut buf, once), Err(Error::Closed)));
    }

    // Not under Miri: a waiter stuck behind a claim asks /proc whether the
    // claimant's thread lives, and Miri's thread ids are not the kernel's,
    // so a live claimant would read as dead.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn two_producers_two_consumers_exactly_once() {
        let q = HeapQueue::new(2, 8);
        let per = 5_000u64;
        let deadline = || Some(Instant::now() + Duration::from_secs(30));
        let seen: Vec<std::sync::atomic::AtomicU8> = (0..2 * per)
            .map(|_| std::sync::atomic::AtomicU8::new(0))
            .collect();
        std::thread::scope(|s| {
            for p in 0..2 {
                let q = &q;
                s.spawn(move || {
                    for i in 0..per {
                        q.raw.put(&(p * per + i).to_le_bytes(), deadline()).unwrap();
                    }
                });
            }
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let (q, seen) = (&q, &seen);
                    s.spawn(move || {
                        let mut buf = [0u8; 8];
                        loop {
                            match q.raw.get(&mut buf, deadline()) {
                                Ok(8) => {
                                    let id = u64::from_le_bytes(buf) as usize;
                                    // Relaxed: read after the scope joins.
                                    seen[id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                Err(Error::Closed) => return,
                                other => panic!("get: {other:?}"),
                            }
                        }
                    })
                })
                .collect();
            // Close once both producers are done: every message was put.
            while seen
                .iter()
                .map(|c| u64::from(c.load(std::sync::atomic::Ordering::Relaxed)))
                .sum::<u64>()
                < 2 * per
            {
                std::thread::yield_now();
            }
            q.raw.close();
            for c in consumers {
                c.join().unwrap();
            }
        });
        assert!(
            seen.iter()
                .all(|c| c.load(std::sync::atomic::Ordering::Relaxed) == 1)
        );
    }
}
