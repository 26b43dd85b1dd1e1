//! Message connections, as Python's `multiprocessing.connection`: [`pipe`]
//! between related processes, [`Listener`] and [`client`] between any two
//! processes over TCP or a Unix socket (with a shared-key handshake), and
//! [`wait`] over many of them.
//!
//! The bytes on the wire are CPython's: the framing of
//! `Connection.send_bytes` and the `deliver_challenge` / `answer_challenge`
//! handshake (HMAC-SHA256 as in Python 3.12+, and the HMAC-MD5 of 3.11 and
//! older), so a Rust or C process can talk to Python's `Listener`, `Client`
//! and `Connection.send_bytes` / `recv_bytes` and back.
//!
//! ```
//! use multiproc::connection::pipe;
//! use multiproc::process::Process;
//! use std::time::Duration;
//!
//! let (mut parent, mut child) = pipe(true)?;
//! let worker = Process::new(move || {
//!     let msg = child.recv_bytes(None).expect("recv");
//!     child.send_bytes(&msg.repeat(2)).expect("send");
//! });
//! worker.start()?;
//! parent.send_bytes(b"ab")?;
//! assert_eq!(parent.recv_bytes_timeout(None, Some(Duration::from_secs(30)))?, b"abab");
//! assert_eq!(worker.join(Some(Duration::from_secs(30)))?, 0);
//! # Ok::<(), multiproc::Error>(())
//! ```

mod address;
mod auth;
mod conn;
mod framing;
mod listener;
#[cfg(feature = "serde")]
mod typed;
mod wait;

pub use address::Address;
pub use conn::Connection;
pub use framing::MAX_SHORT_LEN;
pub use listener::{DEFAULT_BACKLOG, Listener, client};
pub use wait::{Waitable, wait};

use std::os::fd::AsFd;

use crate::error::{Error, Result};
use crate::sys;

/// Two connected [`Connection`]s, as Python's `Pipe(duplex)`: with
/// `duplex` both ends send and receive; without it the first end only
/// receives and the second only sends.
///
/// Both are ends of a Unix stream socket pair, inherited by `fork`
/// children. The other side sees [`Error::Eof`] only when every copy of an
/// end is closed, and a fork child holds a copy of every descriptor its
/// parent had, the parent's own end included (as in Python). So a child
/// that loops "until end of file" from its parent never ends: tell it to
/// stop with a message instead, or have it drop the parent's end (move it
/// into the child's closure and drop it there).
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = sys::socketpair_stream().map_err(|e| Error::os("socketpair", e))?;
    if !duplex {
        let shut = |fd, how| sys::shutdown(fd, how).map_err(|e| Error::os("shutdown", e));
        shut(a.as_fd(), sys::ShutdownHow::Write)?;
        shut(b.as_fd(), sys::ShutdownHow::Read)?;
    }
    Ok((
        Connection::from_fd(a, true, duplex)?,
        Connection::from_fd(b, duplex, true)?,
    ))
}
