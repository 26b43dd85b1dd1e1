//! [`wait`]: block until any of several connections, listeners or
//! descriptors is ready, as Python's `multiprocessing.connection.wait`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::conn::{Connection, deadline_after};
use super::listener::Listener;
use crate::error::{Error, Result};
use crate::sys;

/// Something [`wait`] can wait on: a descriptor that becomes readable, and
/// maybe input already buffered in user space.
pub trait Waitable {
    /// The descriptor to `poll(2)` for reading; [`Error::Closed`] if closed.
    fn wait_fd(&self) -> Result<BorrowedFd<'_>>;

    /// Whether the object is ready without looking at the descriptor (a
    /// connection with received bytes in its buffer).
    fn ready_now(&self) -> bool {
        false
    }
}

impl Waitable for Connection {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        self.fileno()
    }

    fn ready_now(&self) -> bool {
        self.has_buffered_input()
    }
}

impl Waitable for Listener {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.fileno())
    }
}

/// A bare descriptor, such as a process sentinel (`Process::sentinel`,
/// readable once the process ended).
impl Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(*self)
    }
}

impl Waitable for OwnedFd {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Ok(self.as_fd())
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: without limit), and returns the indices of the ready ones in
/// order (empty on timeout). A connection is ready when a receive would not
/// block: a message arrived, or the peer closed. A listener is ready when a
/// client waits; a descriptor when it is readable.
///
/// [`Error::Closed`] if one of the connections was closed.
///
/// ```
/// use multiproc::connection::{pipe, wait};
/// use std::time::Duration;
///
/// let (_a1, a2) = pipe(true)?;
/// let (b1, mut b2) = pipe(true)?;
/// b1.send_bytes(b"b")?;
/// assert_eq!(wait(&[&a2, &b2], Some(Duration::from_secs(5)))?, [1]);
/// assert_eq!(b2.recv_bytes(None)?, b"b");
/// assert!(wait(&[&a2, &b2], Some(Duration::ZERO))?.is_empty());
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let fds = objects
        .iter()
        .map(|o| o.wait_fd())
        .collect::<Result<Vec<_>>>()?;
    let mut ready = vec![false; fds.len()];
    let already = objects.iter().any(|o| o.ready_now());
    let deadline: Option<Instant> = if already {
        Some(Instant::now())
    } else {
        deadline_after(timeout)
    };
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let n = sys::poll_many(&fds, left, &mut ready).map_err(|e| Error::os("poll", e))?;
        if n > 0 || already || left.is_some_and(|l| l.is_zero()) {
            break;
        }
    }
    Ok(objects
        .iter()
        .zip(&ready)
        .enumerate()
        .filter(|(_, (o, r))| **r || o.ready_now())
        .map(|(i, _)| i)
        .collect())
}
