//! Stream sockets and byte I/O for connections: `socketpair(2)`, `socket(2)`,
//! `setsockopt(SO_REUSEADDR)`, `bind(2)`, `listen(2)`, `accept4(2)`,
//! `connect(2)`, `getsockname(2)`, `shutdown(2)`, `fcntl(F_SETFL)`,
//! `fstat(2)`, `read(2)`, `readv(2)`, `writev(2)`, `sendmsg(2)` and `poll(2)` on many
//! descriptors.
//!
//! Every call that can be interrupted by a signal retries on `EINTR`, except
//! [`poll_many`], which gives the time left back to its caller.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Where a stream socket listens or connects: an IP address and port, or a
/// Unix socket path.
#[derive(Debug, Clone, Copy)]
pub enum SocketAddress<'a> {
    /// TCP over IPv4 or IPv6.
    Inet(SocketAddr),
    /// A Unix domain socket at this path.
    Unix(&'a Path),
}

fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

fn unix_addr(path: &Path) -> io::Result<SocketAddrUnix> {
    SocketAddrUnix::new(path).map_err(|e| {
        if e == Errno::NAMETOOLONG || e == Errno::INVAL {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "unix socket path {} is too long (at most 107 bytes)",
                    path.display()
                ),
            )
        } else {
            e.into()
        }
    })
}

/// `socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC)`: two connected
/// descriptors carrying a byte stream each way.
pub fn socketpair_stream() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)
}

/// `socket(family, SOCK_STREAM | SOCK_CLOEXEC)`: an unconnected stream socket
/// of the family `addr` belongs to.
pub fn socket_stream(addr: &SocketAddress<'_>) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddress::Inet(SocketAddr::V4(_)) => AddressFamily::INET,
        SocketAddress::Inet(SocketAddr::V6(_)) => AddressFamily::INET6,
        SocketAddress::Unix(_) => AddressFamily::UNIX,
    };
    rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)
        .map_err(io::Error::from)
}

/// `setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)`: a TCP port can be bound again
/// while old connections on it linger in `TIME_WAIT`.
pub fn setsockopt_reuseaddr(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::net::sockopt::set_socket_reuseaddr(fd, true).map_err(io::Error::from)
}

/// `bind(fd, addr)`.
pub fn bind(fd: BorrowedFd<'_>, addr: &SocketAddress<'_>) -> io::Result<()> {
    match addr {
        SocketAddress::Inet(a) => rustix::net::bind(fd, a).map_err(io::Error::from),
        SocketAddress::Unix(p) => rustix::net::bind(fd, &unix_addr(p)?).map_err(io::Error::from),
    }
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    rustix::net::listen(fd, backlog).map_err(io::Error::from)
}

/// `accept4(fd, SOCK_CLOEXEC)`: the next pending connection. On a
/// non-blocking listener, `WouldBlock` when none is pending.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    retry(|| rustix::net::accept_with(fd, SocketFlags::CLOEXEC))
}

/// `connect(fd, addr)`, blocking until the connection is made or refused.
pub fn connect(fd: BorrowedFd<'_>, addr: &SocketAddress<'_>) -> io::Result<()> {
    match addr {
        SocketAddress::Inet(a) => retry(|| rustix::net::connect(fd, a)),
        SocketAddress::Unix(p) => {
            let a = unix_addr(p)?;
            retry(|| rustix::net::connect(fd, &a))
        }
    }
}

/// `getsockname(fd)` of an IPv4 or IPv6 socket: the address and port it is
/// bound to (the real port after binding port 0).
pub fn getsockname_inet(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let any = rustix::net::getsockname(fd)?;
    SocketAddr::try_from(any).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "getsockname: not an IPv4 or IPv6 socket",
        )
    })
}

/// Which directions [`shutdown`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownHow {
    /// No more receiving (`SHUT_RD`).
    Read,
    /// No more sending (`SHUT_WR`): the peer reads end of file.
    Write,
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: BorrowedFd<'_>, how: ShutdownHow) -> io::Result<()> {
    let how = match how {
        ShutdownHow::Read => rustix::net::Shutdown::Read,
        ShutdownHow::Write => rustix::net::Shutdown::Write,
    };
    rustix::net::shutdown(fd, how).map_err(io::Error::from)
}

/// `fcntl(fd, F_SETFL, flags | O_NONBLOCK)` (or without it).
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    use rustix::fs::OFlags;
    let mut flags = rustix::fs::fcntl_getfl(fd)?;
    flags.set(OFlags::NONBLOCK, nonblocking);
    rustix::fs::fcntl_setfl(fd, flags).map_err(io::Error::from)
}

/// `fstat(fd)`: whether the descriptor is a socket (`S_ISSOCK`).
pub fn is_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket)
}

/// `read(fd, buf)`: `Ok(0)` at end of file (or for an empty `buf`).
/// Retries on `EINTR`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| rustix::io::read(fd, &mut *buf))
}

/// `readv(fd, bufs)`: fills `bufs` in order with what the descriptor has;
/// `Ok(0)` at end of file. Retries on `EINTR`.
pub fn readv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    retry(|| rustix::io::readv(fd, bufs))
}

/// `writev(fd, bufs)`: some prefix of the concatenation of `bufs` is written;
/// returns its length. Retries on `EINTR`. On a pipe whose reader is gone
/// this raises `SIGPIPE`; use [`sendmsg_nosignal`] on sockets.
pub fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    retry(|| rustix::io::writev(fd, bufs))
}

/// `sendmsg(fd, bufs, MSG_NOSIGNAL)`: as [`writev`] on a socket, but a peer
/// that is gone gives `EPIPE` instead of `SIGPIPE`.
pub fn sendmsg_nosignal(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags};
    retry(|| {
        rustix::net::sendmsg(
            fd,
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL,
        )
    })
}

/// `poll(fds, POLLIN, timeout)`: waits until at least one descriptor is
/// readable (data, end of file, an error or a hang-up: anything a read would
/// not block on) or the timeout passes (`None`: no limit). `ready[i]` is set
/// to whether `fds[i]` is readable; returns how many are. `Ok(0)` when the
/// time ran out, and also when a signal interrupted the wait: the caller
/// loops with the time left.
pub fn poll_many(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
    ready: &mut [bool],
) -> io::Result<usize> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    assert_eq!(fds.len(), ready.len(), "one ready flag per descriptor");
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    let n = match rustix::event::poll(&mut polls, ts.as_ref()) {
        Ok(n) => n,
        Err(Errno::INTR) => 0,
        Err(e) => return Err(e.into()),
    };
    for (flag, p) in ready.iter_mut().zip(&polls) {
        // Readable, or a read would report the condition at once.
        *flag = !p.revents().is_empty();
    }
    Ok(if n == 0 {
        0
    } else {
        ready.iter().filter(|r| **r).count()
    })
}
