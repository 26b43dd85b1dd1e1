//! [`Listener`] and [`client`]: connections between unrelated processes,
//! over TCP or a Unix socket, with optional authentication by a shared key.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::address::Address;
use super::auth::{answer_challenge, deliver_challenge};
use super::conn::{Connection, deadline_after};
use crate::error::{Error, Result};
use crate::sys::{self, SocketAddress};

/// The backlog of [`Listener::new`] callers that do not choose one.
pub const DEFAULT_BACKLOG: u32 = 16;

/// A listening socket that hands out authenticated [`Connection`]s, as
/// Python's `multiprocessing.connection.Listener`.
///
/// With an `authkey`, [`accept`](Listener::accept) runs CPython's handshake
/// (it challenges the client, then answers the client's challenge), so the
/// peer may be Python's `Client(address, authkey=...)`. A client that fails
/// it (another key, garbage, a hang-up) makes that `accept` fail with a
/// specific error; the listener itself stays good for the next client.
///
/// An empty `authkey` means no authentication, as in CPython's `Listener`.
/// A Unix socket path is removed when the listener that made it is dropped.
///
/// ```
/// use multiproc::connection::{client, Listener};
/// use std::time::Duration;
///
/// let listener = Listener::new(&"tcp:127.0.0.1:0".parse()?, 4, Some(b"secret"))?;
/// let address = listener.address().clone(); // with the port the system chose
/// let peer = std::thread::spawn(move || -> multiproc::Result<Vec<u8>> {
///     let mut conn = client(&address, Some(b"secret"), Some(Duration::from_secs(10)))?;
///     conn.send_bytes(b"hello")?;
///     conn.recv_bytes(None)
/// });
/// let mut conn = listener.accept(Some(Duration::from_secs(10)))?;
/// assert_eq!(conn.recv_bytes(None)?, b"hello");
/// conn.send_bytes(b"world")?;
/// assert_eq!(peer.join().unwrap()?, b"world");
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    /// Non-blocking, so that a client that vanished between `poll` and
    /// `accept` does not block us.
    fd: OwnedFd,
    address: Address,
    authkey: Option<Vec<u8>>,
    /// The socket file this listener made, and the process that made it:
    /// only that process removes it (not a fork child dropping its copy).
    socket_file: Option<(PathBuf, i32)>,
}

impl Listener {
    /// Binds and listens at `address` with room for `backlog` pending
    /// clients. TCP port 0 lets the system choose; [`address`](Listener::address)
    /// tells which. A Unix socket path must not exist yet.
    ///
    /// Errors: [`Error::NotFound`] for a host name that does not resolve,
    /// [`Error::Invalid`] for a Unix path that is too long, [`Error::Os`]
    /// when the system refuses (address in use, no permission).
    pub fn new(address: &Address, backlog: u32, authkey: Option<&[u8]>) -> Result<Listener> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        let (fd, address, socket_file) = match address {
            Address::Tcp { host, port } => {
                let addr = *Address::resolve(host, *port)?
                    .first()
                    .expect("resolve: non-empty");
                let sa = SocketAddress::Inet(addr);
                let fd = sys::socket_stream(&sa).map_err(|e| Error::os("socket", e))?;
                sys::setsockopt_reuseaddr(fd.as_fd()).map_err(|e| Error::os("setsockopt", e))?;
                sys::bind(fd.as_fd(), &sa)
                    .map_err(|e| Error::os(format!("bind to {address}"), e))?;
                let bound =
                    sys::getsockname_inet(fd.as_fd()).map_err(|e| Error::os("getsockname", e))?;
                (fd, Address::from(bound), None)
            }
            Address::Unix(path) => {
                let sa = SocketAddress::Unix(path);
                let fd = sys::socket_stream(&sa).map_err(|e| Error::os("socket", e))?;
                sys::bind(fd.as_fd(), &sa).map_err(|e| unix_error("bind to", address, e))?;
                let owner = (path.clone(), sys::getpid());
                (fd, address.clone(), Some(owner))
            }
        };
        let listener = Listener {
            fd,
            address,
            authkey: authkey.filter(|k| !k.is_empty()).map(<[u8]>::to_vec),
            socket_file,
        };
        sys::listen(listener.fd.as_fd(), backlog).map_err(|e| Error::os("listen", e))?;
        sys::set_nonblocking(listener.fd.as_fd(), true).map_err(|e| Error::os("fcntl", e))?;
        Ok(listener)
    }

    /// Where the listener listens, with the real port for TCP.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The listening descriptor; readable when a client waits to be
    /// accepted (so a listener can be given to [`wait`](super::wait)).
    pub fn fileno(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Accepts the next client and, with an authkey, authenticates it.
    /// Waits at most `timeout` in all (`None`: without limit; note that a
    /// client that connects and then says nothing holds an unlimited
    /// `accept` up, as in CPython).
    ///
    /// Errors: [`Error::Timeout`]; for a client that fails the handshake,
    /// [`Error::Auth`] (wrong key, a garbage challenge or answer), [`Error::Eof`]
    /// or [`Error::Os`] (it hung up). That client is dropped; the listener
    /// keeps working.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Connection> {
        let deadline = deadline_after(timeout);
        let fd = self.accept_socket(deadline)?;
        let mut conn = Connection::from_fd(fd, true, true)?;
        if let Some(key) = &self.authkey {
            deliver_challenge(&mut conn, key, deadline)?;
            answer_challenge(&mut conn, key, deadline)?;
        }
        Ok(conn)
    }

    fn accept_socket(&self, deadline: Option<Instant>) -> Result<OwnedFd> {
        let mut ready = [false];
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let n = sys::poll_many(&[self.fd.as_fd()], left, &mut ready)
                .map_err(|e| Error::os("poll", e))?;
            if n == 0 {
                if left.is_some_and(|l| l.is_zero()) {
                    return Err(Error::Timeout);
                }
                continue;
            }
            match sys::accept(self.fd.as_fd()) {
                Ok(fd) => return Ok(fd),
                // Another process took it, or it hung up while queued.
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(Error::os("accept", e)),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, owner)) = &self.socket_file
            && *owner == sys::getpid()
            && let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        {
            // Gone already is fine: nothing else to do at drop.
            let _ = sys::unlink_path(&c_path);
        }
    }
}

/// The error of `bind` or `connect` (`op`) on a Unix socket path: a path
/// too long is the caller's mistake, the rest is the system's answer.
fn unix_error(op: &str, address: &Address, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        Error::Invalid(format!("{address}: {e}"))
    } else {
        Error::os(format!("{op} {address}"), e)
    }
}

/// Connects to a [`Listener`] (or a Python `Listener`) at `address`, as
/// Python's `multiprocessing.connection.Client`. With an `authkey`, answers
/// the listener's challenge and then challenges it in turn (an empty key:
/// no handshake, matching [`Listener`]). The handshake
/// waits at most `timeout` (`None`: without limit); the connect itself is
/// not bounded by it.
///
/// Errors: [`Error::Auth`] when either side's check fails (another key, a
/// peer that is not a multiprocessing listener), [`Error::Timeout`],
/// [`Error::NotFound`] for a host name that does not resolve,
/// [`Error::Invalid`] for a Unix path that is too long, [`Error::Os`] when
/// the connection is refused.
///
/// ```no_run
/// use multiproc::connection::client;
///
/// let mut conn = client(&"unix:/tmp/app.sock".parse()?, Some(b"secret"), None)?;
/// conn.send_bytes(b"hello")?;
/// # Ok::<(), multiproc::Error>(())
/// ```
pub fn client(
    address: &Address,
    authkey: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<Connection> {
    let deadline = deadline_after(timeout);
    let fd = match address {
        Address::Tcp { host, port } => {
            let mut last = None;
            let mut connected = None;
            for addr in Address::resolve(host, *port)? {
                let sa = SocketAddress::Inet(addr);
                let fd = sys::socket_stream(&sa).map_err(|e| Error::os("socket", e))?;
                match sys::connect(fd.as_fd(), &sa) {
                    Ok(()) => {
                        connected = Some(fd);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match (connected, last) {
                (Some(fd), _) => fd,
                (None, Some(e)) => return Err(Error::os(format!("connect to {address}"), e)),
                (None, None) => unreachable!("resolve returns at least one address"),
            }
        }
        Address::Unix(path) => {
            let sa = SocketAddress::Unix(path);
            let fd = sys::socket_stream(&sa).map_err(|e| Error::os("socket", e))?;
            sys::connect(fd.as_fd(), &sa).map_err(|e| unix_error("connect to", address, e))?;
            fd
        }
    };
    let mut conn = Connection::from_fd(fd, true, true)?;
    if let Some(key) = authkey.filter(|k| !k.is_empty()) {
        answer_challenge(&mut conn, key, deadline)?;
        deliver_challenge(&mut conn, key, deadline)?;
    }
    Ok(conn)
}
