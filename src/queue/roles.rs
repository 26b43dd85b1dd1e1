//! `Producer` and `Consumer`: the two roles of an SPSC queue, with
//! zero-copy reserve/commit and read/release, and batches.

use std::cell::Cell;
use std::marker::PhantomData;
use std::time::Instant;

use super::Queue;
use super::spsc::{Found, RawRing, Reservation};
use crate::error::{Error, Result};

/// The producing end of an SPSC queue, taken once with
/// [`Queue::producer`]: `Send`, not `Sync`; the role is given back when it
/// drops.
///
/// # Example
///
/// ```
/// use multiproc::queue::{Queue, QueueOptions};
///
/// let q = Queue::with_options(QueueOptions { spsc: true, ..QueueOptions::new(8, 64) })?;
/// let mut tx = q.producer()?;
/// let mut rx = q.consumer()?;
/// let mut grant = tx.reserve(5, None)?;
/// grant.bytes()[..5].copy_from_slice(b"hello");
/// grant.commit(5);
/// assert_eq!(tx.push_batch(&[b"a", b"bc"])?, 2);
/// let msg = rx.read(None)?;
/// assert_eq!(msg.bytes(), b"hello");
/// msg.release();
/// let mut seen = Vec::new();
/// rx.pop_batch(10, |m| seen.push(m.to_vec()));
/// assert_eq!(seen, [b"a".to_vec(), b"bc".to_vec()]);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Producer {
    queue: Queue,
    _not_sync: PhantomData<Cell<()>>,
}

/// The consuming end of an SPSC queue, taken once with [`Queue::consumer`]:
/// `Send`, not `Sync`; the role is given back when it drops.
#[derive(Debug)]
pub struct Consumer {
    queue: Queue,
    _not_sync: PhantomData<Cell<()>>,
}

impl Queue {
    /// Takes the producer role of an SPSC queue for the calling thread.
    /// [`Error::State`] when another live thread holds it, or for an MPMC queue.
    pub fn producer(&self) -> Result<Producer> {
        self.take(true)?;
        Ok(Producer {
            queue: self.clone(),
            _not_sync: PhantomData,
        })
    }

    /// Takes the consumer role of an SPSC queue for the calling thread.
    /// [`Error::State`] when another live thread holds it, or for an MPMC queue.
    pub fn consumer(&self) -> Result<Consumer> {
        self.take(false)?;
        Ok(Consumer {
            queue: self.clone(),
            _not_sync: PhantomData,
        })
    }

    fn take(&self, producer: bool) -> Result<()> {
        self.ring()
            .ok_or_else(|| {
                Error::State("producer/consumer roles exist only on an SPSC queue".into())
            })?
            .take_role(producer)
    }
}

fn ring(q: &Queue) -> &RawRing {
    q.ring().expect("roles are made only for SPSC queues")
}

/// Room reserved in the ring for one message; write into
/// [`bytes`](Self::bytes), then [`commit`](Self::commit). Dropped without a
/// commit, nothing is published.
#[derive(Debug)]
pub struct WriteGrant<'a> {
    ring: &'a RawRing,
    res: Reservation,
    room: usize,
}

impl WriteGrant<'_> {
    /// The reserved bytes (as long as asked for; their content is whatever
    /// the ring held).
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the reservation's `room` bytes are free ring bytes that
        // only this producer (we borrow it mutably) writes until it
        // publishes them.
        unsafe { std::slice::from_raw_parts_mut(self.ring.reserved_bytes(&self.res), self.room) }
    }

    /// Publishes the first `len` bytes (at most what was reserved) as one message.
    pub fn commit(self, len: usize) {
        let len = len.min(self.room);
        // SAFETY: the reservation is the producer's latest and unpublished.
        let w = unsafe { self.ring.write_record(&self.res, len) };
        self.ring.publish(&w, w.end(), 1);
    }
}

impl Producer {
    /// Reserves room for a message of up to `n` bytes, waiting until
    /// `deadline` ([`Error::Full`] then). [`Error::TooLarge`] over the
    /// maximum; [`Error::Closed`] after close.
    pub fn reserve(&mut self, n: usize, deadline: Option<Instant>) -> Result<WriteGrant<'_>> {
        let ring = ring(&self.queue);
        let res = ring.reserve(n, deadline)?;
        Ok(WriteGrant { ring, res, room: n })
    }

    /// Copies `msg` in as one message, waiting until `deadline`.
    pub fn push(&mut self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        ring(&self.queue).put(msg, deadline)
    }

    /// Copies as many of `msgs` as fit now (in order) and publishes them
    /// together: the first one's word, stored last, publishes them all; one
    /// wake-up. Returns how many.
    /// [`Error::TooLarge`] (nothing sent) if one is over the maximum.
    pub fn push_batch(&mut self, msgs: &[&[u8]]) -> Result<usize> {
        let ring = ring(&self.queue);
        if let Some(m) = msgs.iter().find(|m| m.len() > ring.max_msg()) {
            return Err(Error::TooLarge {
                len: m.len(),
                max: ring.max_msg(),
            });
        }
        if self.queue.is_closed() {
            return Err(Error::Closed);
        }
        Ok(ring.try_push_batch(msgs))
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        ring(&self.queue).drop_role(true);
    }
}

/// One message read in place; [`release`](Self::release) (or drop) frees it.
#[derive(Debug)]
pub struct ReadGrant<'a> {
    ring: &'a RawRing,
    found: Found,
}

impl ReadGrant<'_> {
    /// The message's bytes, in the ring.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the record is published and stays unchanged until this
        // consumer (borrowed by the grant) releases it.
        unsafe {
            std::slice::from_raw_parts(
                self.ring.found_bytes(&self.found),
                RawRing::found_len(&self.found),
            )
        }
    }

    /// Frees the message's room for the producer.
    pub fn release(self) {}
}

impl Drop for ReadGrant<'_> {
    fn drop(&mut self) {
        self.ring.release(&self.found, 1);
    }
}

impl Consumer {
    /// The oldest message, in place, waiting until `deadline`
    /// ([`Error::Empty`] then; [`Error::Closed`] once closed and drained).
    pub fn read(&mut self, deadline: Option<Instant>) -> Result<ReadGrant<'_>> {
        let ring = ring(&self.queue);
        let found = ring.peek(deadline)?;
        Ok(ReadGrant { ring, found })
    }

    /// Copies the oldest message into `buf`, waiting until `deadline`.
    pub fn pop(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> Result<usize> {
        ring(&self.queue).get(buf, deadline)
    }

    /// Hands up to `max` waiting messages to `f`, in order, in place, then
    /// frees them together: one release store, one wake-up. Does not wait.
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        ring(&self.queue).try_pop_batch(max, &mut f)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        ring(&self.queue).drop_role(false);
    }
}
