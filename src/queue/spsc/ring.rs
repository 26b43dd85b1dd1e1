//! The ring's core and its producer's side: the roles, reserving, writing
//! and publishing records. The consumer's side is in `consume.rs`, the
//! waits around both in `blocking.rs`.

use std::ptr::NonNull;

use super::copy::copy_message;
use super::{EMPTY, PREFIX, RingHeader, WRAP, record_len};
use crate::error::{Error, Result};
use crate::queue::common::{self, Blocked};
use crate::shim::{AtomicU32, Ordering};

/// Where a reserved record goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    /// `tail` when reserved: where the word that publishes the record is.
    tail: u64,
    /// Bytes skipped to the ring's start (0 when the record fits here).
    pad: u64,
    /// Room reserved for the message.
    room: usize,
}

/// A record written and not yet published: its publishing word, where it
/// goes, and the counter after the record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    at: u64,
    word: u32,
    end: u64,
}

impl Written {
    /// The counter after the record (where the next one goes).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }
}

/// What a record's word says.
#[derive(Debug, Clone, Copy)]
pub(super) enum Word {
    /// The end marker: nothing published here yet.
    End,
    /// A wrap marker: the next record starts at this counter.
    Wrap(u64),
    /// A message of this many bytes follows the prefix.
    Message(usize),
}

/// The algorithm over a header and its ring bytes, wherever they live.
#[derive(Debug)]
pub(crate) struct RawRing {
    header: NonNull<RingHeader>,
    ring: NonNull<u8>,
    mask: u64,
    pub(super) max_msg: usize,
    /// The consumer's distance from a streaming producer: [`SLIP`] bytes,
    /// or a quarter of the ring if that is less.
    pub(super) slip: u64,
    /// Under loom the words live beside the ring (one per 8 ring bytes), as
    /// loom atomics, so that the model checks their orderings; the message
    /// bytes stay in the ring. Both sides must then share this `RawRing`.
    #[cfg(loom)]
    words: Box<[AtomicU32]>,
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
            slip: super::consume::SLIP.min(h.capacity / 4),
            #[cfg(loom)]
            words: (0..h.capacity / PREFIX)
                .map(|_| AtomicU32::new(EMPTY))
                .collect(),
        }
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: valid for our lifetime (constructor's contract).
        unsafe { self.header.as_ref() }
    }

    #[inline]
    pub(super) fn at(&self, counter: u64) -> *mut u8 {
        // SAFETY: masked into the ring's bytes.
        unsafe { self.ring.as_ptr().add((counter & self.mask) as usize) }
    }

    /// The word of the record prefix at `counter` (8-aligned).
    #[inline]
    pub(super) fn word(&self, counter: u64) -> &AtomicU32 {
        debug_assert!(counter.is_multiple_of(PREFIX));
        #[cfg(not(loom))]
        // SAFETY: `at` is inside the ring, 8-aligned (ring 8-aligned,
        // counter a multiple of 8), lives as long as `self`; `AtomicU32`
        // has `u32`'s layout. The bytes are plain memory also written by
        // copies of messages, but never at the same time as an atomic
        // access: a word is accessed atomically only while it is the end
        // marker or a published prefix, which no copy touches (the end
        // marker invariant and SYNC(ring-freed) order them).
        unsafe {
            &*self.at(counter).cast::<AtomicU32>()
        }
        #[cfg(loom)]
        {
            &self.words[((counter & self.mask) / PREFIX) as usize]
        }
    }

    pub(crate) fn max_msg(&self) -> usize {
        self.max_msg
    }

    /// How many messages of the maximum size fit (what `capacity` means
    /// for an SPSC ring: at least what was asked for).
    pub(crate) fn capacity(&self) -> usize {
        ((self.mask + 1 - PREFIX) / record_len(self.max_msg as u64)) as usize
    }

    /// What the word `word`, read at `counter`, says is there. A word
    /// that makes no sense (only a corrupt ring has one: a wrap marker at
    /// the ring's start, a length over the maximum) reads as a message of
    /// its clamped length, so a walk over a corrupt ring still moves on.
    #[inline]
    pub(super) fn decode(&self, counter: u64, word: u32) -> Word {
        match word {
            EMPTY => Word::End,
            WRAP if counter & self.mask != 0 => {
                Word::Wrap(counter.wrapping_add((self.mask + 1) - (counter & self.mask)))
            }
            WRAP => Word::Message(0),
            // Clamped to the ring's end too: only a corrupt word is longer.
            w => Word::Message(
                ((w - 1) as usize)
                    .min(self.max_msg)
                    .min((self.mask + 1 - (counter & self.mask) - PREFIX) as usize),
            ),
        }
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

    /// Producer: moves `tail` past records published after the last `tail`
    /// store, which a producer killed between its word and its `tail`
    /// store leaves behind. It stops at the end marker, which that producer
    /// wrote before it published anything after it; at most a ring's worth.
    /// Returns the new `tail`.
    #[cold]
    #[inline(never)]
    fn recover_tail(&self, mut tail: u64) -> u64 {
        let h = self.header();
        // SYNC(ring-freed): pairs with the consumer's Release of `head`.
        let head = h.head.load(Ordering::Acquire);
        while tail.wrapping_sub(head) < self.mask + 1 {
            // SYNC(ring-published): pairs with the dead producer's Release.
            match self.decode(tail, self.word(tail).load(Ordering::Acquire)) {
                Word::End => break,
                Word::Wrap(next) => tail = next,
                Word::Message(len) => tail = tail.wrapping_add(record_len(len as u64)),
            }
        }
        // Relaxed: producer-only.
        h.tail.store(tail, Ordering::Relaxed);
        tail
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
    #[inline]
    pub(crate) fn try_reserve(&self, n: usize) -> std::result::Result<Reservation, Blocked> {
        self.try_reserve_after(None, n)
    }

    /// Producer: as [`try_reserve`](Self::try_reserve), but after records
    /// written up to `end` and not yet published (a batch). The room
    /// includes the 8 bytes after the record, for the end marker.
    #[inline]
    pub(crate) fn try_reserve_after(
        &self,
        end: Option<u64>,
        n: usize,
    ) -> std::result::Result<Reservation, Blocked> {
        let h = self.header();
        let cap = self.mask + 1;
        let tail = match end {
            Some(end) => end,
            None => {
                // Relaxed: only the producer writes `tail`. (8-aligned
                // unless the ring is corrupt; kept aligned then too.)
                let tail = h.tail.load(Ordering::Relaxed) & !(PREFIX - 1);
                // The word at `tail` is the end marker, unless a producer
                // died after publishing there and before storing `tail`
                // (whoever takes over, even a thread that got the dead
                // one's tid). SYNC(ring-published): pairs with its Release.
                if self.word(tail).load(Ordering::Acquire) == EMPTY {
                    tail
                } else {
                    self.recover_tail(tail)
                }
            }
        };
        let contiguous = cap - (tail & self.mask);
        let need = record_len(n as u64);
        let pad = if need > contiguous { contiguous } else { 0 };
        let end = tail.wrapping_add(pad + need + PREFIX);
        // Relaxed: our own cache, see above.
        if end.wrapping_sub(h.cached_head.load(Ordering::Relaxed)) > cap {
            // SYNC(ring-freed): Acquire pairs with the consumer's Release
            // store of `head`: its reads of the bytes we reuse are done.
            let head = h.head.load(Ordering::Acquire);
            // Relaxed: our own cache.
            h.cached_head.store(head, Ordering::Relaxed);
            if end.wrapping_sub(head) > cap {
                return Err(Blocked::Plain);
            }
        }
        Ok(Reservation { tail, pad, room: n })
    }

    /// Producer: where the message of a reservation goes (`room` bytes).
    #[inline]
    pub(crate) fn reserved_bytes(&self, r: &Reservation) -> *mut u8 {
        self.at(r.tail.wrapping_add(r.pad + PREFIX))
    }

    /// Producer: writes a reserved record's words, once its message is in
    /// place: the end marker after it, its length word (after a wrap
    /// marker) — all but the word at `r.tail`, which publishes it and which
    /// the caller passes to [`publish`](Self::publish) (or, for a later
    /// record of a batch, to [`store_word`](Self::store_word)).
    ///
    /// # Safety
    ///
    /// - `r` is the latest reservation of the producer role's holder (the
    ///   caller), nothing was published since, and `len <= r.room`.
    #[inline]
    pub(crate) unsafe fn write_record(&self, r: &Reservation, len: usize) -> Written {
        debug_assert!(len <= r.room);
        let end = r.tail.wrapping_add(r.pad + record_len(len as u64));
        let len_word = len as u32 + 1;
        // Relaxed (the words below): they become visible with the
        // Release store of the publishing word, SYNC(ring-published). The
        // bytes are free: reserved, SYNC(ring-freed).
        self.word(end).store(EMPTY, Ordering::Relaxed);
        if r.pad > 0 {
            self.word(r.tail.wrapping_add(r.pad))
                .store(len_word, Ordering::Relaxed);
        }
        Written {
            at: r.tail,
            word: if r.pad > 0 { WRAP } else { len_word },
            end,
        }
    }

    /// Producer: stores the publishing word of a record of a batch after
    /// its first, which publishes them all.
    pub(crate) fn store_word(&self, w: &Written) {
        // Relaxed: published by the batch's first word, whose Release
        // store (in `publish`) comes after this one.
        self.word(w.at).store(w.word, Ordering::Relaxed);
    }

    /// Producer: publishes `first` and the records written after it (of a
    /// batch) up to `end`: `count` messages.
    #[inline]
    pub(crate) fn publish(&self, first: &Written, end: u64, count: u64) {
        let h = self.header();
        if h.flags & crate::queue::mpmc::QUEUE_FLAG_JOINABLE != 0 {
            h.join.add(count);
        }
        // Relaxed: only the producer writes `sent`; a count for qsize.
        h.sent.store(
            h.sent.load(Ordering::Relaxed).wrapping_add(count),
            Ordering::Relaxed,
        );
        // SYNC(ring-published): Release pairs with the consumer's Acquire
        // load of the word: the record (and those after it) are written.
        self.word(first.at).store(first.word, Ordering::Release);
        // Relaxed: only producers read `tail` (a successor after a death
        // recovers what this store missed).
        h.tail.store(end, Ordering::Relaxed);
        common::wake(&h.not_empty);
    }

    /// Producer: reserve + copy + publish of one message.
    #[inline]
    pub(crate) fn try_push(&self, msg: &[u8]) -> std::result::Result<(), Blocked> {
        let r = self.try_reserve(msg.len())?;
        // SAFETY: the reservation is fresh, its room is `msg.len()` bytes,
        // and `msg` is caller memory, not the ring.
        unsafe {
            copy_message(msg.as_ptr(), self.reserved_bytes(&r), msg.len());
            let w = self.write_record(&r, msg.len());
            self.publish(&w, w.end, 1);
        }
        Ok(())
    }

    /// Producer: copies as many of `msgs` (each at most `max_msg` bytes)
    /// as fit now, in order, and publishes them together: the first one's
    /// word, stored last, publishes them all. Returns how many.
    pub(crate) fn try_push_batch(&self, msgs: &[&[u8]]) -> usize {
        let mut sent = 0;
        let mut first = None;
        let mut end = None;
        for m in msgs {
            let Ok(res) = self.try_reserve_after(end, m.len()) else {
                break;
            };
            // SAFETY: a fresh reservation of `m.len()` bytes past our
            // unpublished records; `m` is caller memory.
            let w = unsafe {
                std::ptr::copy_nonoverlapping(m.as_ptr(), self.reserved_bytes(&res), m.len());
                self.write_record(&res, m.len())
            };
            if first.is_none() {
                first = Some(w);
            } else {
                self.store_word(&w);
            }
            end = Some(w.end);
            sent += 1;
        }
        if let (Some(first), Some(end)) = (first, end) {
            self.publish(&first, end, sent as u64);
        }
        sent
    }
}
