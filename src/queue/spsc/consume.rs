//! The consumer's side of the ring: finding records by their words,
//! releasing them, and keeping its distance from a streaming producer.

use super::copy::copy_message;
use super::ring::{RawRing, Word};
use super::{PREFIX, record_len};
use crate::queue::common::{self, Blocked};
use crate::shim::{self, Ordering};

/// How far (bytes) behind a streaming producer the consumer stays: 32
/// cache lines, 28 records of 64-byte messages.
pub(super) const SLIP: u64 = 2048;
/// How many times a consumer polls `tail` while it keeps its distance.
const SLIP_POLLS: u32 = 16;

/// A record found by the consumer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    /// Counter value of the record's prefix.
    start: u64,
    len: usize,
}

impl RawRing {
    /// Consumer: the record at `head`, or blocked (empty).
    #[inline]
    pub(crate) fn try_peek(&self) -> std::result::Result<Found, Blocked> {
        self.try_peek_after(None)
    }

    /// Consumer: as [`try_peek`](Self::try_peek), but the record after
    /// `last` (found and not yet released: a batch).
    #[inline]
    pub(crate) fn try_peek_after(
        &self,
        last: Option<&Found>,
    ) -> std::result::Result<Found, Blocked> {
        let h = self.header();
        // Relaxed: only the consumer writes `head`. (8-aligned unless the
        // ring is corrupt; kept aligned then too.)
        let mut at = last.map_or_else(
            || h.head.load(Ordering::Relaxed) & !(PREFIX - 1),
            |f| f.start.wrapping_add(record_len(f.len as u64)),
        );
        if last.is_none() {
            self.keep_distance(at);
        }
        loop {
            // SYNC(ring-published): pairs with the producer's Release.
            match self.decode(at, self.word(at).load(Ordering::Acquire)) {
                Word::End => return Err(Blocked::Plain),
                Word::Wrap(next) => at = next,
                Word::Message(len) => return Ok(Found { start: at, len }),
            }
        }
    }

    /// Consumer: hands up to `max` waiting messages to `f`, in order, in
    /// place, then frees them together. Returns how many.
    pub(crate) fn try_pop_batch(&self, max: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let mut last = None;
        let mut n = 0;
        while n < max {
            let Ok(found) = self.try_peek_after(last.as_ref()) else {
                break;
            };
            // SAFETY: published and not yet released (we release after the loop).
            f(unsafe { std::slice::from_raw_parts(self.found_bytes(&found), found.len) });
            last = Some(found);
            n += 1;
        }
        if let Some(found) = last {
            self.release(&found, n as u64);
        }
        n
    }

    /// Consumer, before it reads at `at`: keeps its distance from a
    /// producer that is streaming (FastForward's "temporal slipping").
    /// Reading right behind the producer, the consumer would pull each
    /// cache line while the producer is still writing it, and both would
    /// wait for the line to come back on every message; a few lines apart,
    /// each line crosses once. So when `at` comes within [`SLIP`] bytes of
    /// where the producer was last seen, it looks at `tail` again, and
    /// while the producer is behind that mark *and still moving*, it waits
    /// a little ([`SLIP_POLLS`] polls at most). A producer that does not
    /// move between two polls (one message in flight, a round trip) is not
    /// waited for: that costs one pause. Only a heuristic: what the
    /// consumer reads is decided by the words, never by `tail`. Not under
    /// loom (its models check the protocol, not the timing).
    #[inline]
    fn keep_distance(&self, at: u64) {
        let h = self.header();
        // Relaxed: the consumer's own cache of a hint.
        if cfg!(loom) || at.saturating_add(self.slip) <= h.cached_tail.load(Ordering::Relaxed) {
            return;
        }
        self.slip(at);
    }

    #[cold]
    #[inline(never)]
    fn slip(&self, at: u64) {
        let h = self.header();
        // Relaxed (the loads of `tail`): a hint of distance, no data is
        // read because of it.
        let mut seen = h.tail.load(Ordering::Relaxed);
        for _ in 0..SLIP_POLLS {
            if at.saturating_add(self.slip) <= seen {
                break;
            }
            shim::spin_loop();
            let now = h.tail.load(Ordering::Relaxed);
            if now == seen {
                break;
            }
            seen = now;
        }
        // Relaxed: the consumer's own cache.
        h.cached_tail.store(seen, Ordering::Relaxed);
    }

    /// Consumer: the message bytes of a found record.
    #[inline]
    pub(crate) fn found_bytes(&self, f: &Found) -> *const u8 {
        self.at(f.start.wrapping_add(PREFIX))
    }

    pub(crate) fn found_len(f: &Found) -> usize {
        f.len
    }

    /// Consumer: frees everything up to and including `f` (`count` messages).
    #[inline]
    pub(crate) fn release(&self, f: &Found, count: u64) {
        let h = self.header();
        // Relaxed: only the consumer writes `received`; a count for qsize.
        h.received.store(
            h.received.load(Ordering::Relaxed).wrapping_add(count),
            Ordering::Relaxed,
        );
        // SYNC(ring-freed): Release pairs with the producer's Acquire load:
        // our reads of the record are done before it reuses the bytes.
        h.head.store(
            f.start.wrapping_add(record_len(f.len as u64)),
            Ordering::Release,
        );
        common::wake(&h.not_full);
    }

    /// Consumer: one message into `buf`.
    #[inline]
    pub(super) fn try_pop(
        &self,
        buf: &mut [u8],
    ) -> std::result::Result<std::result::Result<usize, usize>, Blocked> {
        let f = self.try_peek()?;
        if f.len > buf.len() {
            return Ok(Err(f.len));
        }
        // SAFETY: the record is published and ours until released; `buf` is
        // caller memory of at least `f.len` bytes.
        unsafe { copy_message(self.found_bytes(&f), buf.as_mut_ptr(), f.len) };
        self.release(&f, 1);
        Ok(Ok(f.len))
    }
}
