//! [`Connection`]: messages over a stream descriptor, framed as CPython does.

use std::cell::Cell;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::framing::{self, MAX_PREFIX_LEN, Prefix};
use crate::error::{Error, Result};
use crate::sys;

/// Size of the receive buffer. A read asks for this much, so a small
/// message usually arrives with its prefix in one `read(2)`; the rest of a
/// large message is read straight into its destination.
const INBOX_CAP: usize = 8 * 1024;

/// Messages up to this size are sent from one contiguous copy (see
/// `Connection::send_small`).
const SMALL_SEND: usize = 16 * 1024;

/// `recv_bytes` allocates a message of up to this size at once. A longer one
/// grows as its bytes arrive, so a lying length prefix cannot make us
/// allocate memory the peer never sends.
const EAGER_ALLOC: usize = 64 << 20;

/// Bytes received but not yet handed out, and where the next message stands.
///
/// The next message's bytes are, in order: `partial`, then
/// `buf[start..end]`, then whatever the descriptor still holds.
#[derive(Debug, Default)]
struct Inbox {
    /// Empty until the first receive, then `INBOX_CAP` bytes (more while
    /// it holds bytes a direct read brought past the end of a message).
    buf: Vec<u8>,
    /// First buffered byte not handed out; `start <= end <= buf.len()`.
    start: usize,
    /// End of the buffered bytes.
    end: usize,
    /// The length of the message whose prefix was consumed and whose body
    /// was not handed out yet (after a timeout or a too-small buffer).
    next_len: Option<u64>,
    /// The first bytes of that message's body, kept when a receive timed
    /// out in the middle of it.
    partial: Vec<u8>,
}

impl Inbox {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Moves up to `dst.len()` buffered bytes into `dst`; returns how many.
    fn take_into(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.end - self.start);
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        n
    }

    /// Appends `bytes` after the buffered ones, growing the buffer if needed.
    fn push(&mut self, bytes: &[u8]) {
        if self.free_tail().len() < bytes.len() {
            self.buf.resize(self.end + bytes.len(), 0);
        }
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Whether nothing of the next message has been received yet.
    fn is_idle(&self) -> bool {
        self.start == self.end && self.next_len.is_none() && self.partial.is_empty()
    }

    /// The free tail of the buffer, made as large as possible.
    fn free_tail(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; INBOX_CAP];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }
}

/// A message connection, as Python's `multiprocessing.connection.Connection`:
/// whole byte messages over a socket or pipe, framed exactly as CPython
/// frames them, so the peer may be a Python process.
///
/// Made by [`pipe`](super::pipe), [`Listener::accept`](super::Listener::accept),
/// [`client`](super::client), or from a descriptor with
/// [`Connection::from_fd`].
///
/// Receiving differs from CPython in one way: a message longer than the
/// caller's limit ([`Error::TooLarge`]) is not lost and does not break the
/// connection (CPython closes it); it stays first in line for a later call
/// with room for it. Likewise a receive that times out in the middle of a
/// message keeps what arrived, and the next receive goes on from there.
///
/// ```
/// use multiproc::connection::pipe;
///
/// let (mut left, mut right) = pipe(true)?;
/// left.send_bytes(b"ping")?;
/// assert_eq!(right.recv_bytes(None)?, b"ping");
/// right.send_bytes(b"")?;
/// assert!(left.poll(Some(std::time::Duration::ZERO))?);
/// assert_eq!(left.recv_bytes(None)?, b"");
/// # Ok::<(), multiproc::Error>(())
/// ```
pub struct Connection {
    /// `None` once closed.
    fd: Option<OwnedFd>,
    readable: bool,
    writable: bool,
    /// Sockets are written with `MSG_NOSIGNAL`; other descriptors (pipes)
    /// with `writev`, which raises `SIGPIPE` if the reader is gone.
    socket: bool,
    inbox: Inbox,
    /// Where a small message is put together with its prefix before one
    /// `send(2)`; reused, so sending allocates nothing. (The `Cell` also
    /// makes a connection `!Sync`: one thread at a time uses it, as in
    /// CPython.)
    scratch: Cell<Vec<u8>>,
}

/// What a deadline leaves: `None` without one, else the time to its end.
fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// The deadline `timeout` from now; `None` without one.
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// An error of the peer going away, on either direction.
fn is_peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl Connection {
    /// Wraps a connected stream descriptor (a socket, a pipe end).
    /// `readable` / `writable` say which directions this end may use.
    pub fn from_fd(fd: OwnedFd, readable: bool, writable: bool) -> Result<Connection> {
        if !readable && !writable {
            return Err(Error::Invalid(
                "a connection must be readable, writable or both".into(),
            ));
        }
        let socket = sys::is_socket(fd.as_fd()).map_err(|e| Error::os("fstat", e))?;
        Ok(Connection {
            fd: Some(fd),
            readable,
            writable,
            socket,
            inbox: Inbox::default(),
            scratch: Cell::new(Vec::new()),
        })
    }

    /// Whether this end may receive.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end may send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Whether [`close`](Connection::close) was called.
    pub fn closed(&self) -> bool {
        self.fd.is_none()
    }

    /// The descriptor (Python's `fileno()`); [`Error::Closed`] after
    /// `close`. Bytes this connection already buffered are not in it, so
    /// read through the connection, not the descriptor.
    pub fn fileno(&self) -> Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd()).ok_or(Error::Closed)
    }

    /// Closes this end. The peer's receives then end with [`Error::Eof`]
    /// once it has read what was sent. Closing twice is fine.
    pub fn close(&mut self) {
        self.fd = None;
    }

    fn check_readable(&self) -> Result<BorrowedFd<'_>> {
        let fd = self.fileno()?;
        if !self.readable {
            return Err(Error::State(
                "this end of the connection is write-only".into(),
            ));
        }
        Ok(fd)
    }

    /// Whether the next receive can start without waiting: a message (or
    /// part of one, or the end of file) is there. Waits at most `timeout`
    /// for that (`None`: without limit; `Some(Duration::ZERO)`: just looks).
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let fd = self.check_readable()?;
        if self.has_buffered_input() {
            return Ok(true);
        }
        let deadline = deadline_after(timeout);
        let mut ready = [false];
        loop {
            let n = sys::poll_many(&[fd], time_left(deadline), &mut ready)
                .map_err(|e| Error::os("poll", e))?;
            if n > 0 {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    /// Whether received bytes wait in this connection's own buffer (which
    /// `poll(2)` on the descriptor cannot see).
    pub(crate) fn has_buffered_input(&self) -> bool {
        let inbox = &self.inbox;
        inbox.start < inbox.end || !inbox.partial.is_empty() || inbox.next_len == Some(0)
    }

    /// Sends `buf` as one message (Python's `send_bytes(buf)`).
    ///
    /// Blocks until the whole message is handed to the kernel. A peer that
    /// is gone gives [`Error::Eof`].
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let fd = self.fileno()?;
        if !self.writable {
            return Err(Error::State(
                "this end of the connection is read-only".into(),
            ));
        }
        let mut prefix = [0; MAX_PREFIX_LEN];
        let prefix = framing::encode_prefix(buf.len() as u64, &mut prefix);
        if self.socket && buf.len() <= SMALL_SEND {
            return self.send_small(fd, prefix, buf);
        }
        let mut parts = [IoSlice::new(prefix), IoSlice::new(buf)];
        let mut parts = &mut parts[..];
        while !parts.is_empty() {
            let sent = if self.socket {
                sys::sendmsg_nosignal(fd, parts)
            } else {
                sys::writev(fd, parts)
            };
            match sent {
                Ok(n) => IoSlice::advance_slices(&mut parts, n),
                Err(e) if is_peer_gone(&e) => return Err(Error::Eof),
                Err(e) => return Err(Error::os("send_bytes", e)),
            }
        }
        Ok(())
    }

    /// A small message on a socket: prefix and payload copied together and
    /// sent with one `send(2)`, cheaper in the kernel than a two-part
    /// `sendmsg(2)` (CPython concatenates up to the same size).
    fn send_small(&self, fd: BorrowedFd<'_>, prefix: &[u8], buf: &[u8]) -> Result<()> {
        let mut frame = self.scratch.take();
        frame.clear();
        frame.extend_from_slice(prefix);
        frame.extend_from_slice(buf);
        let mut rest = &frame[..];
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            match sys::send_nosignal(fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if is_peer_gone(&e) => break Err(Error::Eof),
                Err(e) => break Err(Error::os("send_bytes", e)),
            }
        };
        self.scratch.set(frame);
        result
    }

    /// Sends `buf[offset..offset + size]` (to the end without `size`) as one
    /// message: Python's `send_bytes(buf, offset, size)`. A range outside
    /// `buf` is an [`Error::Value`], and nothing is sent.
    pub fn send_bytes_range(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        if offset > buf.len() {
            return Err(Error::Value(format!(
                "offset {offset} is past the end of a {}-byte buffer",
                buf.len()
            )));
        }
        let size = size.unwrap_or(buf.len() - offset);
        if size > buf.len() - offset {
            return Err(Error::Value(format!(
                "offset {offset} + size {size} is past the end of a {}-byte buffer",
                buf.len()
            )));
        }
        self.send_bytes(&buf[offset..offset + size])
    }

    /// Receives the next message (Python's `recv_bytes(maxlength)`),
    /// blocking until it is complete.
    ///
    /// Errors: [`Error::Eof`] when the peer closed before another message
    /// began; [`Error::TooLarge`] when the message is longer than
    /// `maxlength` (it stays, see [`Connection`]); [`Error::Os`] with
    /// `UnexpectedEof` when the peer closed in the middle of a message;
    /// [`Error::Invalid`] when the bytes are not CPython framing.
    pub fn recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>> {
        self.recv_bytes_timeout(maxlength, None)
    }

    /// [`recv_bytes`](Connection::recv_bytes) waiting at most `timeout`
    /// ([`Error::Timeout`] then; what arrived of the message is kept).
    pub fn recv_bytes_timeout(
        &mut self,
        maxlength: Option<usize>,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>> {
        let deadline = deadline_after(timeout);
        let len = self.next_len(deadline)?;
        let len = match usize::try_from(len) {
            Ok(len) if maxlength.is_none_or(|max| len <= max) => len,
            _ => {
                return Err(Error::TooLarge {
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    max: maxlength.unwrap_or(isize::MAX as usize),
                });
            }
        };
        let mut body = std::mem::take(&mut self.inbox.partial);
        while body.len() < len {
            let filled = body.len();
            let target = len.min(filled.saturating_mul(2).max(EAGER_ALLOC));
            if body.capacity() == 0 {
                // Zeroed allocation: fresh pages for a large message, no memset.
                body = vec![0; target];
            } else {
                body.resize(target, 0);
            }
            let mut got = filled;
            let result = self.fill(&mut body[..target], &mut got, len, deadline);
            body.truncate(got);
            if let Err(e) = result {
                self.inbox.partial = body;
                return Err(e);
            }
        }
        self.inbox.next_len = None;
        Ok(body)
    }

    /// Receives the next message into `buf` from `offset` on and returns
    /// its length (Python's `recv_bytes_into(buf, offset)`). A message that
    /// does not fit gives [`Error::TooLarge`] and stays (Python raises
    /// `BufferTooShort` and drops it); an `offset` past the end of `buf` is an
    /// [`Error::Value`]. Otherwise as [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8], offset: usize) -> Result<usize> {
        self.recv_bytes_into_timeout(buf, offset, None)
    }

    /// [`recv_bytes_into`](Connection::recv_bytes_into) waiting at most
    /// `timeout` ([`Error::Timeout`] then; what arrived is kept).
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        timeout: Option<Duration>,
    ) -> Result<usize> {
        if offset > buf.len() {
            return Err(Error::Value(format!(
                "offset {offset} is past the end of a {}-byte buffer",
                buf.len()
            )));
        }
        let room = &mut buf[offset..];
        let deadline = deadline_after(timeout);
        if room.len() >= INBOX_CAP
            && self.inbox.is_idle()
            && let Some(len) = self.recv_direct(room, deadline)?
        {
            return Ok(len);
        }
        let len = self.next_len(deadline)?;
        let len = match usize::try_from(len) {
            Ok(len) if len <= room.len() => len,
            _ => {
                return Err(Error::TooLarge {
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    max: room.len(),
                });
            }
        };
        let dst = &mut room[..len];
        let mut got = self.inbox.partial.len();
        dst[..got].copy_from_slice(&self.inbox.partial);
        self.inbox.partial.clear();
        if let Err(e) = self.fill(dst, &mut got, len, deadline) {
            self.inbox.partial.extend_from_slice(&dst[..got]);
            return Err(e);
        }
        self.inbox.next_len = None;
        Ok(len)
    }

    /// Receives a message whose first bytes are not here yet straight into
    /// `room` (at least `INBOX_CAP` bytes): one `readv(2)` puts the short
    /// prefix into a small array and the body in place, so a large message
    /// takes one read and no copy. Bytes that arrive past the end of the
    /// message go to the inbox. `Ok(None)` when the normal path must go on
    /// (the bytes read are then in the inbox, `room` is left unspecified).
    fn recv_direct(&mut self, room: &mut [u8], deadline: Option<Instant>) -> Result<Option<usize>> {
        let fd = self.wait_readable(deadline)?;
        let mut head = [0u8; 4];
        let n = sys::readv(fd, &mut [IoSliceMut::new(&mut head), IoSliceMut::new(room)])
            .map_err(|e| read_error("recv_bytes", e))?;
        if n == 0 {
            return Err(Error::Eof);
        }
        let in_room = n.saturating_sub(head.len());
        let len = match framing::decode_prefix(&head[..n.min(head.len())]) {
            Prefix::Complete { len, prefix_len: 4 } => usize::try_from(len).ok(),
            _ => None,
        };
        let Some(len) = len.filter(|len| *len <= room.len()) else {
            // Short read, long prefix, bad prefix or too large: hand it
            // all to the inbox and let the normal path sort it out.
            self.inbox.push(&head[..n.min(head.len())]);
            self.inbox.push(&room[..in_room]);
            return Ok(None);
        };
        self.inbox.next_len = Some(len as u64);
        if in_room >= len {
            self.inbox.push(&room[len..in_room]);
            self.inbox.next_len = None;
            return Ok(Some(len));
        }
        let dst = &mut room[..len];
        let mut got = in_room;
        if let Err(e) = self.fill(dst, &mut got, len, deadline) {
            self.inbox.partial.extend_from_slice(&dst[..got]);
            return Err(e);
        }
        self.inbox.next_len = None;
        Ok(Some(len))
    }

    /// The length of the next message: decodes its prefix, reading as much
    /// as needed. The prefix is consumed; the length is remembered until the
    /// body is handed out.
    fn next_len(&mut self, deadline: Option<Instant>) -> Result<u64> {
        self.check_readable()?;
        if let Some(len) = self.inbox.next_len {
            return Ok(len);
        }
        loop {
            match framing::decode_prefix(self.inbox.buffered()) {
                Prefix::Complete { len, prefix_len } => {
                    self.inbox.start += prefix_len;
                    self.inbox.next_len = Some(len);
                    return Ok(len);
                }
                Prefix::Invalid(n) => {
                    return Err(Error::Invalid(format!(
                        "received message length prefix {n}: not CPython framing \
                         (expected a length >= 0, or -1 and an 8-byte length)"
                    )));
                }
                Prefix::Incomplete(need) => {
                    let have = self.inbox.end - self.inbox.start;
                    if self.read_into_inbox(deadline)? == 0 {
                        if have == 0 {
                            return Err(Error::Eof);
                        }
                        return Err(cut_short("length prefix", have, need));
                    }
                }
            }
        }
    }

    /// Fills `dst[*got..]` with the body of the current message (`len`
    /// bytes in all, `dst` holds the first `dst.len()` of them), from the
    /// inbox and then the descriptor. `*got` counts the bytes in `dst`
    /// also when an error interrupts.
    fn fill(
        &mut self,
        dst: &mut [u8],
        got: &mut usize,
        len: usize,
        deadline: Option<Instant>,
    ) -> Result<()> {
        while *got < dst.len() {
            let want = &mut dst[*got..];
            if self.inbox.start == self.inbox.end {
                if want.len() >= INBOX_CAP {
                    // Large: straight into place, no copy.
                    let fd = self.wait_readable(deadline)?;
                    let n = sys::read(fd, want).map_err(|e| read_error("recv_bytes", e))?;
                    if n == 0 {
                        return Err(cut_short("message", *got, len));
                    }
                    *got += n;
                    continue;
                }
                if self.read_into_inbox(deadline)? == 0 {
                    return Err(cut_short("message", *got, len));
                }
            }
            *got += self.inbox.take_into(want);
        }
        Ok(())
    }

    /// Reads what the descriptor has (at least one byte, or end of file:
    /// `Ok(0)`) into the inbox, waiting at most until `deadline`.
    fn read_into_inbox(&mut self, deadline: Option<Instant>) -> Result<usize> {
        self.wait_readable(deadline)?;
        let fd = self.fd.as_ref().ok_or(Error::Closed)?.as_fd();
        let tail = self.inbox.free_tail();
        let n = sys::read(fd, tail).map_err(|e| read_error("recv_bytes", e))?;
        self.inbox.end += n;
        Ok(n)
    }

    /// Returns once a read will not block, or [`Error::Timeout`] at the
    /// deadline. Without a deadline it returns at once: the read blocks.
    fn wait_readable(&self, deadline: Option<Instant>) -> Result<BorrowedFd<'_>> {
        let fd = self.fileno()?;
        let Some(deadline) = deadline else {
            return Ok(fd);
        };
        let mut ready = [false];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if sys::poll_many(&[fd], Some(left), &mut ready).map_err(|e| Error::os("poll", e))? > 0
            {
                return Ok(fd);
            }
            if left.is_zero() {
                return Err(Error::Timeout);
            }
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd)
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl AsFd for Connection {
    /// The descriptor.
    ///
    /// # Panics
    ///
    /// After [`close`](Connection::close); use
    /// [`fileno`](Connection::fileno) to get an error instead.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fileno().expect("as_fd on a closed Connection")
    }
}

/// The error for an end of file in the middle of something: CPython's
/// `OSError("got end of file during message")`.
fn cut_short(what: &str, got: usize, expected: usize) -> Error {
    Error::os(
        format!("recv_bytes: the peer closed after {got} of the {expected} bytes of a {what}"),
        io::ErrorKind::UnexpectedEof.into(),
    )
}

fn read_error(op: &str, err: io::Error) -> Error {
    if is_peer_gone(&err) {
        Error::Eof
    } else {
        Error::os(op, err)
    }
}
