//! Descriptor passing over Unix sockets: `sendmsg(2)` and `recvmsg(2)` with
//! `SCM_RIGHTS`, and a non-blocking `recv(2)`.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_PASSED_FDS: usize = 253;

/// `sendmsg(sock, data, SCM_RIGHTS(fds), MSG_NOSIGNAL)`: sends `data` with
/// copies of `fds`, which arrive in the receiver as new descriptors.
/// Retries on `EINTR`.
pub fn sendmsg_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors, at most {MAX_PASSED_FDS} fit in one message",
                fds.len()
            ),
        ));
    }
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "SCM_RIGHTS does not fit its control buffer",
        ));
    }
    loop {
        match rustix::net::sendmsg(
            sock,
            &[IoSlice::new(data)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `recvmsg(sock, buf, MSG_CMSG_CLOEXEC)`: receives one message and up to
/// `max_fds` descriptors passed with it (close-on-exec, owned by the
/// caller). `Ok((0, []))` at end of file. A message whose data or
/// descriptors did not fit is an error (the descriptors that did arrive are
/// closed). Retries on `EINTR`.
pub fn recvmsg_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let max_fds = max_fds.min(MAX_PASSED_FDS);
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(max_fds))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(passed) = message {
            fds.extend(passed);
        }
    }
    if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        return Err(io::Error::other(format!(
            "more than {max_fds} descriptors were passed; the rest were lost"
        )));
    }
    if msg.flags.contains(ReturnFlags::TRUNC) {
        return Err(io::Error::other(format!(
            "message longer than the {} bytes expected",
            buf.len()
        )));
    }
    Ok((msg.bytes, fds))
}

/// `recv(fd, buf, MSG_DONTWAIT)`: what is there now; `WouldBlock` if
/// nothing is, `Ok(0)` at end of file. Retries on `EINTR`.
pub fn recv_dontwait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::net::recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn descriptors_travel_with_the_message() {
        let (a, b) = crate::sys::socketpair_seqpacket().unwrap();
        let (r, w) = crate::sys::pipe().unwrap();
        sendmsg_fds(a.as_fd(), b"hi", &[r.as_fd(), w.as_fd()]).unwrap();
        let mut buf = [0u8; 8];
        let (n, fds) = recvmsg_fds(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(fds.len(), 2);
        // The received write end feeds the original read end.
        std::io::Write::write_all(&mut std::fs::File::from(fds[1].try_clone().unwrap()), b"x")
            .unwrap();
        let mut byte = [0u8];
        std::io::Read::read_exact(&mut std::fs::File::from(r), &mut byte).unwrap();
        assert_eq!(&byte, b"x");
        assert_eq!(
            recv_dontwait(b.as_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(a);
        assert_eq!(recvmsg_fds(b.as_fd(), &mut buf, 1).unwrap().0, 0);
    }

    #[test]
    fn too_many_descriptors_is_an_error() {
        let (a, b) = crate::sys::socketpair_seqpacket().unwrap();
        let (r, w) = crate::sys::pipe().unwrap();
        sendmsg_fds(a.as_fd(), b"x", &[r.as_fd(), w.as_fd()]).unwrap();
        let mut buf = [0u8; 8];
        assert!(recvmsg_fds(b.as_fd(), &mut buf, 1).is_err());
    }
}
