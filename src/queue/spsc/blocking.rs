//! The ring's blocking operations and its state: put and get with a
//! deadline, reserve and peek for the zero-copy grants, qsize, close.

use std::time::Instant;

use super::consume::Found;
use super::ring::{RawRing, Reservation};
use crate::error::{Error, Result};
use crate::queue::common::{self, JoinState};
use crate::shim::Ordering;

impl RawRing {
    #[inline]
    pub(super) fn closed(&self) -> bool {
        // SeqCst: as in the MPMC queue; closing is rare.
        self.header().closed.load(Ordering::SeqCst) != 0
    }

    /// Puts `msg`, waiting until `deadline` for room. The caller holds the
    /// producer role.
    pub(crate) fn put(&self, msg: &[u8], deadline: Option<Instant>) -> Result<()> {
        if msg.len() > self.max_msg() {
            return Err(Error::TooLarge {
                len: msg.len(),
                max: self.max_msg(),
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
        common::wait_loop(&h.not_full, deadline, None, attempt, |_, _, _| {})
            .unwrap_or(Err(Error::Full))
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
        common::wait_loop(&h.not_empty, deadline, None, attempt, |_, _, _| {})
            .unwrap_or(Err(Error::Empty))
    }

    /// Waits for room for `n` bytes; the reservation, or Full / Closed.
    pub(crate) fn reserve(&self, n: usize, deadline: Option<Instant>) -> Result<Reservation> {
        if n > self.max_msg() {
            return Err(Error::TooLarge {
                len: n,
                max: self.max_msg(),
            });
        }
        let attempt = || {
            if self.closed() {
                return Ok(Err(Error::Closed));
            }
            self.try_reserve(n).map(Ok)
        };
        common::wait_loop(
            &self.header().not_full,
            deadline,
            None,
            attempt,
            |_, _, _| {},
        )
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
        common::wait_loop(
            &self.header().not_empty,
            deadline,
            None,
            attempt,
            |_, _, _| {},
        )
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
        (h.flags & crate::queue::mpmc::QUEUE_FLAG_JOINABLE != 0).then_some(&h.join)
    }
}
