//! The SPSC byte ring: one producer, one consumer, variable-length messages
//! stored back to back, copied in and out with no per-message atomics but
//! the two counters.
//!
//! # Layout
//!
//! One [`RingHeader`] followed (in the object's tail) by `capacity` bytes,
//! a power of two. `tail` (bytes published) and `head` (bytes consumed)
//! count up forever; the byte at counter `c` lies at `c & (capacity - 1)`.
//! Each side keeps its cached copy of the other side's counter on its *own*
//! cache line, so while there is room (or data) neither touches the other's
//! line.
//!
//! A record is an 8-byte prefix (`u32` length, `u32` reserved) and the
//! message, padded to 8 bytes. A record never wraps: when it does not fit
//! before the end, the producer writes the length [`WRAP`] there and starts
//! the record at offset 0. A message is at most `capacity / 2 - 8` bytes, so
//! a record always fits once the ring is empty.
//!
//! # Hot path
//!
//! A put that finds room (a get that finds a message) does no
//! read-modify-write and runs no CPU fence: it compares the role word with
//! the caller's cached tid, copies, stores its counter (Release) and asks
//! the other side's [`EventCount`] whether anybody sleeps, behind the light
//! half of an asymmetric fence ([`asymmetric_fence`](crate::sync::asymmetric_fence));
//! a side about to sleep pays the heavy half (`membarrier`). The other
//! side's counter is read only when the cached copy says full (empty).
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
//! A producer killed mid-write published nothing (`tail` moves last). A
//! consumer killed mid-read did not move `head`: the message is read again
//! by the next consumer (delivered at least once, never lost).

use std::ptr::NonNull;
use std::time::Instant;

use super::common::{self, Blocked, JoinState};
use crate::error::{Error, Result};
use crate::shim::{AtomicU32, AtomicU64, Ordering};
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
    /// Bytes published, in `0 ..= head + capacity`. Written by the producer.
    tail: AtomicU64,
    /// The producer's last view of `head` (can be stale, never ahead).
    /// Written and read by the producer only.
    cached_head: AtomicU64,
    /// Messages published. Written by the producer.
    sent: AtomicU64,
    _pad1: [u64; 5],
    /// Bytes consumed, in `0 ..= tail`. Written by the consumer.
    head: AtomicU64,
    /// The consumer's last view of `tail` (can be stale, never ahead).
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
pub(crate) const RING_LAYOUT_VERSION: u32 = 1;
/// The length prefix of a wrap marker.
const WRAP: u32 = u32::MAX;
/// Bytes of a record's prefix.
const PREFIX: u64 = 8;

const fn record_len(len: u64) -> u64 {
    PREFIX + len.next_multiple_of(8)
}

impl RingHeader {
    /// A header for an empty ring that holds at least `capacity` messages
    /// of `max_msg` bytes. Checks the sizes.
    pub(crate) fn new(capacity: usize, max_msg: usize, flags: u32) -> Result<RingHeader> {
        if capacity == 0 {
            return Err(Error::Invalid(
                "queue capacity 0: it must hold at least one message".into(),
            ));
        }
        if max_msg == 0 {
            return Err(Error::Invalid(
                "maximum message size 0: it must be at least 1 byte".into(),
            ));
        }
        if max_msg as u64 > super::mpmc::MAX_TAIL || max_msg >= WRAP as usize {
            return Err(Error::TooLarge {
                len: max_msg,
                max: (WRAP - 1) as usize,
            });
        }
        let rec = record_len(max_msg as u64);
        let bytes = (capacity as u64)
            .checked_mul(rec)
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

/// Where a reserved record goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    /// `tail` when reserved.
    tail: u64,
    /// Bytes skipped to the ring's start (0 when the record fits here).
    pad: u64,
    /// Room reserved for the message.
    room: usize,
}

/// A record found by the consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    /// Counter value of the record's prefix.
    start: u64,
    len: usize,
}

/// The algorithm over a header and its ring bytes, wherever they live.
#[derive(Debug)]
pub(crate) struct RawRing {
    header: NonNull<RingHeader>,
    ring: NonNull<u8>,
    mask: u64,
    max_msg: usize,
}

// SAFETY: only shared references to atomics are handed out; the ring bytes
// are written only by the producer role's holder in the free part and read
// only by the consumer role's holder in the published part.
unsafe impl Send for RawRing {}
// SAFETY: as for Send.
unsafe impl Sync for RawRing {}

impl RawRing {
    /// # Safety
    ///
    /// - `header` points to a valid, checked [`RingHeader`], and `ring` to
    ///   its `capacity` ring bytes, 8-aligned, both alive (and not moved)
    ///   as long as the result is used.
    pub(crate) unsafe fn new(header: NonNull<RingHeader>, ring: NonNull<u8>) -> RawRing {
        // SAFETY: valid (caller's promise).
        let h = unsafe { header.as_ref() };
        RawRing {
            header,
            ring,
            mask: h.capacity - 1,
            max_msg: h.max_msg as usize,
        }
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: valid for our lifetime (constructor's contract).
        unsafe { self.header.as_ref() }
    }

    fn at(&self, counter: u64) -> *mut u8 {
        // SAFETY: masked into the ring's bytes.
        unsafe { self.ring.as_ptr().add((counter & self.mask) as usize) }
    }

    pub(crate) fn max_msg(&self) -> usize {
        self.max_msg
    }

    /// How many messages of the maximum size fit (what `capacity` means
    /// for an SPSC ring: at least what was asked for).
    pub(crate) fn capacity(&self) -> usize {
        ((self.mask + 1) / record_len(self.max_msg as u64)) as usize
    }

    /// Takes the role whose holder `word` records for the calling thread;
    /// [`Error::State`] when another live thread holds it.
    pub(crate) fn take_role(&self, producer: bool) -> Result<()> {
        let h = self.header();
        let word = if producer { &h.producer } else { &h.consumer };
        let me = common::my_tid();
        // Relaxed: the fast path only compares with our own tid, which
        // only we write.
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            if cur == me {
                return Ok(());
            }
            if cur != 0 && !common::claimant_is_dead(cur) {
                return Err(Error::State(format!(
                    "this SPSC queue's {} role is held by thread {cur}; use an MPMC queue for several",
                    if producer { "producer" } else { "consumer" }
                )));
            }
            // SYNC(role-handover): Acquire pairs with the Release in
            // `drop_role`: the previous holder's counters are visible.
            match word.compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(now) => cur = now,
            }
        }
    }

    /// Whether the calling thread holds the role already (the fast check
    /// before an operation; [`take_role`](Self::take_role) does the rest).
    #[inline]
    fn holds_role(&self, producer: bool) -> bool {
        let h = self.header();
        let word = if producer { &h.producer } else { &h.consumer };
        // Relaxed: compared with our own tid, which only we write (and
        // SYNC(role-handover) ordered when we took the role).
        word.load(Ordering::Relaxed) == common::my_tid_fast()
    }

    /// `put` when nothing stands in the way: the calling thread holds the
    /// producer role, the queue is open, `msg` fits and there is room now.
    /// Then it copies and publishes `msg` and returns true; otherwise it
    /// does nothing and returns false (the caller takes the full path,
    /// which reports why). No clock, no error value, no fence.
    #[inline]
    pub(crate) fn put_fast(&self, msg: &[u8]) -> bool {
        msg.len() <= self.max_msg
            && self.holds_role(true)
            && !self.closed()
            && self.try_push(msg).is_ok()
    }

    /// `get` when nothing stands in the way: the calling thread holds the
    /// consumer role and a message that fits `buf` is there. Then it is
    /// copied out and its length returned; otherwise nothing happens.
    #[inline]
    pub(crate) fn get_fast(&self, buf: &mut [u8]) -> Option<usize> {
        if !self.holds_role(false) {
            return None;
        }
        match self.try_pop(buf) {
            Ok(Ok(n)) => Some(n),
            _ => None,
        }
    }

    /// Gives the role back (a role handle dropped).
    pub(crate) fn drop_role(&self, producer: bool) {
        let h = self.header();
        let word = if producer { &h.producer } else { &h.consumer };
        // SYNC(role-handover): Release publishes our counters to the next taker.
        let _ = word.compare_exchange(common::my_tid(), 0, Ordering::Release, Ordering::Relaxed);
    }

    /// Producer: room for a message of `n <= max_msg` bytes, or blocked.
    pub(crate) fn try_reserve(&self, n: usize) -> std::result::Result<Reservation, Blocked> {
        self.try_reserve_after(None, n)
    }

    /// Producer: as [`try_reserve`](Self::try_reserve), but after records
    /// written up to `end` and not yet published (a batch).
    pub(crate) fn try_reserve_after(
        &self,
        end: Option<u64>,
        n: usize,
    ) -> std::result::Result<Reservation, Blocked> {
        let h = self.header();
        let cap = self.mask + 1;
        // Relaxed: only the producer writes `tail` and `cached_head`.
        let tail = end.unwrap_or_else(|| h.tail.load(Ordering::Relaxed));
        let contiguous = cap - (tail & self.mask);
        let need = record_len(n as u64);
        let pad = if need > contiguous { contiguous } else { 0 };
        let end = tail + pad + need;
        // Relaxed: our own cache, see above.
        if end - h.cached_head.load(Ordering::Relaxed) > cap {
            // SYNC(ring-freed): Acquire pairs with the consumer's Release
            // store of `head`: its reads of the bytes we reuse are done.
            let head = h.head.load(Ordering::Acquire);
            // Relaxed: our own cache.
            h.cached_head.store(head, Ordering::Relaxed);
            if end - head > cap {
                return Err(Blocked::Plain);
            }
        }
        Ok(Reservation { tail, pad, room: n })
    }

    /// Producer: where the message of a reservation goes (`room` bytes).
    pub(crate) fn reserved_bytes(&self, r: &Reservation) -> *mut u8 {
        self.at(r.tail + r.pad + PREFIX)
    }

    /// Producer: writes the record's prefix (and wrap marker) without
    /// publishing; returns the new tail.
    ///
    /// # Safety
    ///
    /// - `r` is the latest reservation of the producer role's holder (the
    ///   caller), nothing was published since, and `len <= r.room`.
    pub(crate) unsafe fn write_prefix(&self, r: &Reservation, len: usize) -> u64 {
        debug_assert!(len <= r.room);
        // SAFETY: the reserved bytes are free (not yet published, and the
        // consumer is done with them, SYNC(ring-freed)); prefixes are
        // 8-aligned inside the ring.
        unsafe {
            if r.pad > 0 {
                self.at(r.tail).cast::<u32>().write(WRAP);
            }
            self.at(r.tail + r.pad).cast::<u32>().write(len as u32);
        }
        r.tail + r.pad + record_len(len as u64)
    }

    /// Producer: publishes everything up to `new_tail` (`count` messages).
    pub(crate) fn publish(&self, new_tail: u64, count: u64) {
        let h = self.header();
        if h.flags & super::mpmc::QUEUE_FLAG_JOINABLE != 0 {
            h.join.add(count);
        }
        // Relaxed: only the producer writes `sent`; a count for qsize.
        h.sent
            .store(h.sent.load(Ordering::Relaxed) + count, Ordering::Relaxed);
        // SYNC(ring-published): Release pairs with the consumer's Acquire
        // load of `tail`: the records before it are written.
        h.tail.store(new_tail, Ordering::Release);
        common::wake(&h.not_empty);
    }

    /// Producer: reserve + copy + publish of one message.
    pub(crate) fn try_push(&self, msg: &[u8]) -> std::result::Result<(), Blocked> {
        let r = self.try_reserve(msg.len())?;
        // SAFETY: the reservation is fresh, its room is `msg.len()` bytes,
        // and `msg` is caller memory, not the ring.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), self.reserved_bytes(&r), msg.len());
            let end = self.write_prefix(&r, msg.len());
            self.publish(end, 1);
        }
        Ok(())
    }

    /// Consumer: the record at `head`, or blocked (empty).
    pub(crate) fn try_peek(&self) -> std::result::Result<Found, Blocked> {
        self.try_peek_after(None)
    }

    /// Consumer: as [`try_peek`](Self::try_peek), but the record after
    /// `last` (found and not yet released: a batch).
    pub(crate) fn try_peek_after(
        &self,
        last: Option<&Found>,
    ) -> std::result::Result<Found, Blocked> {
        let h = self.header();
        // Relaxed: only the consumer writes `head` and `cached_tail`.
        let mut head = last.map_or_else(
            || h.head.load(Ordering::Relaxed),
            |f| f.start + record_len(f.len as u64),
        );
        loop {
            // Relaxed: our own cache.
            let mut tail = h.cached_tail.load(Ordering::Relaxed);
            if head == tail {
                // SYNC(ring-published): pairs with the producer's Release.
                tail = h.tail.load(Ordering::Acquire);
                // Relaxed: our own cache.
                h.cached_tail.store(tail, Ordering::Relaxed);
                if head == tail {
                    return Err(Blocked::Plain);
                }
            }
            // SAFETY: `head < tail`: the prefix is published (SYNC above),
            // 8-aligned inside the ring.
            let len = unsafe { self.at(head).cast::<u32>().read() };
            if len == WRAP {
                head += (self.mask + 1) - (head & self.mask);
                continue;
            }
            return Ok(Found {
                start: head,
                len: (len as usize).min(self.max_msg),
            });
        }
    }

    /// Consumer: the message bytes of a found record.
    pub(crate) fn found_bytes(&self, f: &Found) -> *const u8 {
        self.at(f.start + PREFIX)
    }

    pub(crate) fn found_len(f: &Found) -> usize {
        f.len
    }

    /// Consumer: frees everything up to and including `f` (`count` messages).
    pub(crate) fn release(&self, f: &Found, count: u64) {
        let h = self.header();
        // Relaxed: only the consumer writes `received`; a count for qsize.
        h.received.store(
            h.received.load(Ordering::Relaxed) + count,
            Ordering::Relaxed,
        );
        // SYNC(ring-freed): Release pairs with the producer's Acquire load:
        // our reads of the record are done before it reuses the bytes.
        h.head
            .store(f.start + record_len(f.len as u64), Ordering::Release);
        common::wake(&h.not_full);
    }

    /// Consumer: one message into `buf`.
    fn try_pop(
        &self,
        buf: &mut [u8],
    ) -> std::result::Result<std::result::Result<usize, usize>, Blocked> {
        let f = self.try_peek()?;
        if f.len > buf.len() {
            return Ok(Err(f.len));
        }
        // SAFETY: the record is published and ours until released; `buf` is
        // caller memory of at least `f.len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.found_bytes(&f), buf.as_mut_ptr(), f.len) };
        self.release(&f, 1);
        Ok(Ok(f.len))
    }

    fn closed(&self) -> bool {
        // SeqCst: as in the MPMC queue; closing is rare.
        self.header().closed.load(Ordering::SeqCst) != 0
    }

    /// Puts `msg`, waiting until `deadline` for room. The caller holds the
    /// producer role.
    pub(crate) fn put(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        if msg.len() > self.max_msg {
            return Err(Error::TooLarge {
                len: msg.len(),
                max: self.max_msg,
            });
        }
        let h = self.header();
        if self.closed() {
            return Err(Error::Closed);
        }
        let attempt = || {
            if self.closed() {
                return Ok(Err(Error::Closed));
            }
            self.try_push(msg).map(Ok)
        };
        common::wait_loop(&h.not_full, deadline, attempt, |_, _, _| {}).unwrap_or(Err(Error::Full))
    }

    /// Takes a message into `buf`, waiting until `deadline`. The caller
    /// holds the consumer role.
    pub(crate) fn get(&self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        let h = self.header();
        let attempt = || {
            let closed = self.closed();
            match self.try_pop(buf) {
                Ok(Ok(n)) => Ok(Ok(n)),
                Ok(Err(len)) => Ok(Err(Error::TooLarge {
                    len,
                    max: buf.len(),
                })),
                Err(_) if closed => Ok(Err(Error::Closed)),
                Err(b) => Err(b),
            }
        };
        common::wait_loop(&h.not_empty, deadline, attempt, |_, _, _| {})
            .unwrap_or(Err(Error::Empty))
    }

    /// Waits for room for `n` bytes; the reservation, or Full / Closed.
    pub(crate) fn reserve(&self, n: usize, deadline: Option<Instant>) -> Result<Reservation> {
        if n > self.max_msg {
            return Err(Error::TooLarge {
                len: n,
                max: self.max_msg,
            });
        }
        let attempt = || {
            if self.closed() {
                return Ok(Err(Error::Closed));
            }
            self.try_reserve(n).map(Ok)
        };
        common::wait_loop(&self.header().not_full, deadline, attempt, |_, _, _| {})
            .unwrap_or(Err(Error::Full))
    }

    /// Waits for a record; Empty / Closed.
    pub(crate) fn peek(&self, deadline: Option<Instant>) -> Result<Found> {
        let attempt = || {
            let closed = self.closed();
            match self.try_peek() {
                Ok(f) => Ok(Ok(f)),
                Err(_) if closed => Ok(Err(Error::Closed)),
                Err(b) => Err(b),
            }
        };
        common::wait_loop(&self.header().not_empty, deadline, attempt, |_, _, _| {})
            .unwrap_or(Err(Error::Empty))
    }

    /// Messages in the ring now (approximate while the other side works).
    pub(crate) fn len(&self) -> usize {
        let h = self.header();
        // Relaxed: a snapshot; received first so the difference rarely
        // underflows, and clamp when it would.
        let received = h.received.load(Ordering::Relaxed);
        let sent = h.sent.load(Ordering::Relaxed);
        sent.saturating_sub(received) as usize
    }

    pub(crate) fn close(&self) {
        let h = self.header();
        // SeqCst: closing is rare; pairs with the SeqCst reads in put/get.
        h.closed.store(1, Ordering::SeqCst);
        common::wake(&h.not_empty);
        common::wake(&h.not_full);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed()
    }

    pub(crate) fn join_state(&self) -> Option<&JoinState> {
        let h = self.header();
        (h.flags & super::mpmc::QUEUE_FLAG_JOINABLE != 0).then_some(&h.join)
    }
}
