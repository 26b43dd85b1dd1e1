//! Descriptors: `pipe2(2)`, `dup2(2)`, and flushing C stdio (`fflush(3)`).

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
