//! How a client's frames travel: over its socket, or (a local client,
//! after the upgrade) through two shared-memory rings beside the socket.
//!
//! # Why two transports
//!
//! Over a socket every call costs two wake-ups (the server's `read` returns
//! when the request lands, then the client's when the reply does), and on
//! this kind of machine those wake-ups are most of a call's time. A client
//! on the same machine therefore moves its frames into two SPSC byte rings
//! (one for requests, one for replies) in a memfd segment it shares with the
//! server: a waiting side spins briefly, then sleeps on a futex in the ring,
//! so a peer that answers promptly costs no system call at all.
//!
//! # The upgrade
//!
//! After the authkey handshake on a Unix socket, the client creates the
//! segment and its two rings and sends [`control::UPGRADE`] with the rings'
//! handles. The server answers "send the descriptor" (nothing else is in
//! flight on the socket then), the client sends one byte carrying the
//! memfd by `SCM_RIGHTS`, the server attaches the rings, takes its roles
//! (request consumer, reply producer) and answers the same request again,
//! on the socket: "attached". From then on both sides use the rings. A TCP
//! client, or a server that refuses, stays on the socket.
//!
//! # On the rings
//!
//! - A frame longer than a ring message (or an empty one) goes over the
//!   socket, announced by an empty [`MARKER`] message in the ring so that
//!   order is kept; both directions.
//! - Waits run in [`SLICE`]s. Between slices the socket is checked: the
//!   peer writes to it only after a marker, so a readable socket with an
//!   empty ring means the peer hung up (the kernel closes a dead process's
//!   socket): [`Error::Eof`]. A killed server or client is noticed within a
//!   slice.
//! - A fork child never uses its parent's rings: its client reconnects and
//!   upgrades its own ([`Client`](super::Client)).
//!
//! [`control::UPGRADE`]: super::protocol::control::UPGRADE

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::queue::{Consumer, Producer, Queue, QueueOptions, try_once};
use crate::shm::{Backing, Handle, Locator, Segment};
use crate::sys;

use super::protocol::MAX_FRAME;

/// How a [`Client`](super::Client) talks to its server.
///
/// ```
/// use multiproc::manager::{Client, Manager, Transport};
///
/// let mgr = Manager::start()?;
/// // The manager's own client is local: it moved to shared memory.
/// assert_eq!(mgr.transport(), Transport::SharedMemory);
/// let plain = Client::connect_with(mgr.address(), mgr.authkey(), Transport::Socket)?;
/// assert_eq!(plain.transport(), Transport::Socket);
/// let d = plain.dict()?;
/// d.set(b"k", b"v")?;
/// assert_eq!(d.get(b"k")?, Some(b"v".to_vec()));
/// mgr.shutdown()?;
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// Every frame over the connection's socket: one wake-up each way per
    /// call. What TCP clients always use.
    Socket,
    /// On a Unix socket: frames through two shared-memory rings after the
    /// upgrade (the socket stays open, for large frames and to notice a
    /// dead peer). Over TCP, or when the server refuses, the socket.
    #[default]
    SharedMemory,
}

/// The largest frame a ring message carries: a ring of 128 KiB then holds
/// two, which is all one call in flight needs.
pub(crate) const RING_FRAME: usize = 64 * 1024 - 16;

/// The ring message that says "the next frame comes over the socket".
pub(crate) const MARKER: &[u8] = b"";

/// How long a wait on a ring lasts before the socket is checked.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// How long the server waits for the descriptor during an upgrade.
pub(crate) const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);

/// One side's ends of the two rings.
struct Rings {
    send: Producer,
    recv: Consumer,
    /// The largest frame `send` carries (the peer's ring may differ).
    send_max: usize,
}

/// A connection, possibly upgraded to rings: sends and receives whole
/// frames, in order, over whichever path carries them.
pub(crate) struct Channel {
    conn: Connection,
    rings: Option<Rings>,
}

impl Channel {
    /// A channel on the socket alone.
    pub(crate) fn socket(conn: Connection) -> Channel {
        Channel { conn, rings: None }
    }

    /// The socket connection.
    pub(crate) fn conn(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Which path frames take now.
    pub(crate) fn transport(&self) -> Transport {
        if self.rings.is_some() {
            Transport::SharedMemory
        } else {
            Transport::Socket
        }
    }

    /// Sends one frame.
    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<()> {
        let Some(rings) = &mut self.rings else {
            return self.conn.send_bytes(frame);
        };
        let by_socket = frame.is_empty() || frame.len() > rings.send_max;
        let in_ring = if by_socket { MARKER } else { frame };
        loop {
            match rings.send.push(in_ring, Some(Instant::now() + SLICE)) {
                Ok(()) => break,
                // The peer takes nothing: gone, or stuck. A live peer that
                // is merely slow has not written to the socket.
                Err(Error::Full) => check_peer(&self.conn)?,
                Err(e) => return Err(e),
            }
        }
        if by_socket {
            self.conn.send_bytes(frame)?;
        }
        Ok(())
    }

    /// Receives one frame (of at most `max` bytes: [`Error::TooLarge`]
    /// otherwise, as the connection reports it) and hands it to `f`.
    pub(crate) fn recv_with<R>(&mut self, max: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let Some(rings) = &mut self.rings else {
            let frame = self.conn.recv_bytes(Some(max))?;
            return Ok(f(&frame));
        };
        let mut deadline = Some(Instant::now() + SLICE);
        loop {
            match rings.recv.read(deadline) {
                Ok(grant) if grant.bytes().is_empty() => {
                    grant.release();
                    break;
                }
                Ok(grant) if grant.bytes().len() > max => {
                    return Err(Error::TooLarge {
                        len: grant.bytes().len(),
                        max,
                    });
                }
                Ok(grant) => return Ok(f(grant.bytes())),
                Err(Error::Empty) if deadline == try_once() => return Err(Error::Eof),
                Err(Error::Empty) => {
                    // Readable with an empty ring: the marker may have
                    // landed just after the slice ended; look once more,
                    // and if still nothing, the peer hung up.
                    deadline = match check_peer(&self.conn) {
                        Ok(()) => Some(Instant::now() + SLICE),
                        Err(_) => try_once(),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        let frame = self.conn.recv_bytes(Some(max))?;
        Ok(f(&frame))
    }

    /// Client: moves this channel onto rings in a new memfd segment (see
    /// the module doc). `request` encodes the upgrade request carrying the
    /// two handles; `check_reply` decodes each of the server's answers.
    /// `Ok(Err(refused))`: the server refused at once (a TCP connection, an
    /// older server) and goes on serving this client on the socket. `Err`:
    /// the upgrade failed midway and the connection is lost.
    pub(crate) fn upgrade(
        &mut self,
        request: impl FnOnce(&[&[u8]]) -> Result<Vec<u8>>,
        mut check_reply: impl FnMut(&[u8]) -> Result<Result<()>>,
    ) -> Result<Result<()>> {
        let options = QueueOptions {
            spsc: true,
            ..QueueOptions::new(2, RING_FRAME)
        };
        // Header, two ring headers and two 128 KiB rings, with room to align.
        let segment = Segment::create(Backing::Memfd, 2 * (128 << 10) + 4096)?;
        let requests = Queue::new_in(&segment, options)?;
        let replies = Queue::new_in(&segment, options)?;
        let rings = Rings {
            send: requests.producer()?,
            recv: replies.consumer()?,
            send_max: requests.max_msg_size(),
        };
        let handles = [requests.handle().to_string(), replies.handle().to_string()];
        let frame = request(&[handles[0].as_bytes(), handles[1].as_bytes()])?;
        self.conn.send_bytes(&frame)?;
        let go_on = self.conn.recv_bytes(Some(MAX_FRAME))?;
        if let Err(refused) = check_reply(&go_on)? {
            return Ok(Err(refused));
        }
        let memfd = segment
            .fd()
            .ok_or_else(|| Error::Internal("a memfd segment without a descriptor".into()))?;
        sys::sendmsg_fds(self.conn.fileno()?, b"F", &[memfd])
            .map_err(|e| Error::os("sendmsg (the ring descriptor)", e))?;
        let attached = self.conn.recv_bytes(Some(MAX_FRAME))?;
        check_reply(&attached)??;
        self.rings = Some(rings);
        Ok(Ok(()))
    }

    /// Server, after answering "send the descriptor" on the socket:
    /// receives the memfd and attaches the two rings `handles` name
    /// (requests, replies). The caller answers on the socket, then frames
    /// move to the rings. Errors leave the channel on the socket.
    pub(crate) fn accept_upgrade(&mut self, handles: &[&[u8]]) -> Result<()> {
        if self.rings.is_some() {
            return Err(Error::State("this client is upgraded already".into()));
        }
        let [requests, replies] = handles else {
            return Err(Error::Invalid(
                "upgrade takes two ring handles (requests, replies)".into(),
            ));
        };
        let fd = self.conn.fileno()?;
        if !sys::poll_readable(fd, Some(UPGRADE_TIMEOUT)).map_err(|e| Error::os("poll", e))? {
            return Err(Error::Timeout);
        }
        let mut byte = [0u8; 1];
        let (n, fds) =
            sys::recvmsg_fds(fd, &mut byte, 1).map_err(|e| Error::os("recvmsg (upgrade)", e))?;
        let [memfd] = fds.as_slice() else {
            return Err(if n == 0 {
                Error::Eof
            } else {
                Error::Invalid("the upgrade byte came without one descriptor".into())
            });
        };
        let open = |text: &[u8]| -> Result<Queue> {
            let handle: Handle = std::str::from_utf8(text)
                .map_err(|_| Error::Invalid("a ring handle is not UTF-8".into()))?
                .parse()?;
            if !matches!(handle.locator(), Locator::Memfd { .. }) {
                return Err(Error::Invalid(
                    "a ring handle must name the passed memfd".into(),
                ));
            }
            let queue = Queue::open(&handle.with_fd(memfd.as_fd().as_raw_fd())?)?;
            if !queue.is_spsc() {
                return Err(Error::Invalid("a ring handle names an MPMC queue".into()));
            }
            Ok(queue)
        };
        let (requests, replies) = (open(requests)?, open(replies)?);
        self.rings = Some(Rings {
            send: replies.producer()?,
            recv: requests.consumer()?,
            send_max: replies.max_msg_size(),
        });
        Ok(())
    }
}

/// Between two slices of a ring wait: [`Error::Eof`] if the socket is
/// readable, which (with nothing in the ring) means the peer hung up.
fn check_peer(conn: &Connection) -> Result<()> {
    if conn.poll(Some(Duration::ZERO))? {
        Err(Error::Eof)
    } else {
        Ok(())
    }
}
