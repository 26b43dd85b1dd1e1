//! Descriptors: `pipe2(2)`, `dup2(2)`, `dup3(2)`, `close(2)` by number, and
//! flushing C stdio (`fflush(3)`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// `pipe2(O_CLOEXEC)`: a one-way pipe, `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(io::Error::from)
}

/// `dup2(fd, target)`: makes descriptor number `target` a copy of `fd`
/// (closing what `target` was before), e.g. `dup2(pipe_write, 2)` sends this
/// process's stderr into a pipe. The copy does not have `FD_CLOEXEC`.
///
/// `target` is a raw number on purpose: it usually names a descriptor nobody
/// owns as an `OwnedFd` (0, 1, 2). Replacing a descriptor some `OwnedFd`
/// still owns would make that owner close the new file later; don't.
pub fn dup2(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    loop {
        // SAFETY: dup2 takes two integers; `fd` is open for the call's
        // duration (borrowed), and the caller chose `target` knowingly.
        if unsafe { libc::dup2(fd.as_raw_fd(), target) } != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `dup3(from, to, O_CLOEXEC or 0)`: makes descriptor number `to` a copy
/// of `from`, closing what `to` was before, with close-on-exec set or not
/// in the same call. `from == to` is `EINVAL`.
///
/// # Safety
///
/// - `from` is open, and whatever `to` was (if open) is owned by nobody who
///   will use or close it again: both are raw numbers, as in a fork child
///   that lays out its descriptors before it runs anything else.
#[inline]
pub unsafe fn dup3(from: i32, to: i32, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // By `syscall(2)`, as `close` below and `close_range`: a fork child that
    // lays out its descriptors runs one function of the C library for all
    // three (each one first run there is a page fault).
    loop {
        // SAFETY: plain integers; the caller vouches for both numbers.
        if unsafe { libc::syscall(libc::SYS_dup3, from, to, flags) } != -1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `close(fd)` by number, its result ignored (as Rust's `OwnedFd` does:
/// the descriptor is gone either way on Linux).
///
/// # Safety
///
/// - Nobody owns `fd` who will use or close it again.
#[inline]
pub unsafe fn close(fd: i32) {
    // SAFETY: a plain integer; the caller vouches that nobody else owns it.
    // By `syscall(2)`: see `dup3`.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// `fcntl(fd, F_SETFD, 0)`: clears close-on-exec of descriptor number
/// `fd`, so programs this process execs inherit it.
///
/// # Safety
///
/// - `fd` is open, and whoever owns it agrees (a raw number, as in a fork
///   child that lays out its descriptors).
#[inline]
pub unsafe fn keep_on_exec(fd: i32) -> io::Result<()> {
    // SAFETY: plain integers; F_SETFD only sets the descriptor's flags. By
    // `syscall(2)`: see `dup3`.
    if unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fflush(NULL)`: writes out the buffers of every C stdio stream (`printf`
/// output of C code), e.g. before `fork` so the child does not print the
/// parent's pending output again, and before `_exit`, which would drop it.
pub fn fflush_all() -> io::Result<()> {
    // SAFETY: fflush(NULL) flushes all open output streams; it takes no
    // pointer we provide.
    if unsafe { libc::fflush(std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
