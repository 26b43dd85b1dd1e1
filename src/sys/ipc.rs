//! Sockets and descriptors: `socketpair(2)`, `send(2)`, `recv(2)`,
//! `close_range(2)`, `sigaction(2)` to ignore a signal, `unlink(2)`.
//!
//! The functions used after `fork` in a child of a possibly multi-threaded
//! parent (`recv`, `close_range_except`, `ignore_signal`, `unlink_path`) make
//! one syscall each and never allocate: they are async-signal-safe.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC)`: two connected
/// descriptors that keep message boundaries.
pub fn socketpair_seqpacket() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two ints.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `send(fd, buf, MSG_NOSIGNAL)`: a peer that is gone gives `EPIPE`, not `SIGPIPE`.
pub fn send_nosignal(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `recv(fd, buf, 0)`: `Ok(0)` at end of file. Retries on `EINTR`.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `close_range(0, keep - 1)` and `close_range(keep + 1, ~0)`: closes every
/// descriptor but `keep`. Falls back to `close(2)` one by one up to the
/// descriptor limit when the kernel lacks `close_range` (before 5.9).
///
/// # Safety
///
/// - Every other descriptor of the process is closed behind the back of
///   whatever owns it: call it only in a fresh fork child that will never
///   use them again.
pub unsafe fn close_range_except(keep: i32) {
    let close_range = |first: u32, last: u32| -> bool {
        // SAFETY: close_range takes plain integers; the caller accepts that
        // the descriptors in the range are closed.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) == 0 }
    };
    let keep = keep as u32;
    let low_ok = keep == 0 || close_range(0, keep - 1);
    let high_ok = close_range(keep + 1, u32::MAX);
    if low_ok && high_ok {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as i32
    } else {
        1024
    };
    for fd in (0..max).filter(|fd| *fd as u32 != keep) {
        // SAFETY: as above; EBADF for descriptors that are not open is fine.
        unsafe { libc::close(fd) };
    }
}

/// `sigaction(sig, SIG_IGN)`: the process ignores `sig` from now on.
pub fn ignore_signal(sig: i32) -> io::Result<()> {
    // SAFETY: SIG_IGN is a valid disposition for any catchable signal.
    if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unlink(path)`.
pub fn unlink_path(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    if unsafe { libc::unlink(path.as_ptr()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
