//! Starting programs and moving descriptors: `posix_spawn(3)`, `fcntl(2)`
//! (`F_SETOWN`/`F_SETSIG`/`O_ASYNC`, `F_DUPFD_CLOEXEC`, `F_GETFD`) and
//! `close_range(2)`.
//!
//! [`fcntl_async_signal`], [`fcntl_dupfd_cloexec`], [`fd_is_open`] and
//! [`close_range`] make one or two syscalls each and never allocate: they
//! are async-signal-safe, for use right after `fork`.

use std::ffi::{CStr, c_char};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `F_SETSIG` from `<fcntl.h>` (Linux; not exported by the `libc` crate).
const F_SETSIG: i32 = 10;

/// `posix_spawn(path, argv, envp)` with `posix_spawn_file_actions_adddup2(fd,
/// fd)` for each of `keep_fds`: starts `path` in a new process (glibc uses
/// `clone(CLONE_VM | CLONE_VFORK)`, so the cost does not grow with this
/// process's memory) and returns its pid. The descriptors in `keep_fds` stay
/// open in the new program under the same numbers, even if they are
/// close-on-exec here (glibc 2.29 and later clear `FD_CLOEXEC` for a dup2 onto
/// itself); every other close-on-exec descriptor is closed by the exec.
/// An exec that fails is reported here (`ENOENT`, `EACCES`, ...).
pub fn posix_spawn(
    path: &CStr,
    argv: &[&CStr],
    envp: &[&CStr],
    keep_fds: &[i32],
) -> io::Result<i32> {
    let check = |rc: i32| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    };
    let mut argv_ptrs: Vec<*mut c_char> = argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut c_char> = envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());

    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    // SAFETY: `actions` is valid for writes; init fills it in.
    check(unsafe { libc::posix_spawn_file_actions_init(actions.as_mut_ptr()) })?;
    // SAFETY: init succeeded, so `actions` is initialized (and destroyed below).
    let actions_ptr = actions.as_mut_ptr();
    let result = (|| {
        for &fd in keep_fds {
            // SAFETY: `actions_ptr` is an initialized file-actions object.
            check(unsafe { libc::posix_spawn_file_actions_adddup2(actions_ptr, fd, fd) })?;
        }
        let mut pid = 0;
        // SAFETY: `path` is NUL-terminated; `argv_ptrs` and `envp_ptrs` are
        // NULL-terminated arrays of NUL-terminated strings that outlive the
        // call (posix_spawn does not write through them, despite the type);
        // `actions_ptr` is initialized; a NULL attribute means the defaults.
        check(unsafe {
            libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions_ptr,
                std::ptr::null(),
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            )
        })?;
        Ok(pid)
    })();
    // SAFETY: initialized above and not used afterwards.
    unsafe { libc::posix_spawn_file_actions_destroy(actions_ptr) };
    result
}

/// `fcntl(fd, F_SETOWN, getpid())`, `fcntl(fd, F_SETSIG, sig)` and
/// `fcntl(fd, F_SETFL, O_ASYNC | O_NONBLOCK)`: from now on the kernel sends
/// `sig` to this process when `fd` becomes readable or hangs up (for a pipe's
/// read end: when the last write end is closed).
///
/// The owner is a property of the open file description, so `fd` should be
/// this process's own (not shared with another process that sets it too).
pub fn fcntl_async_signal(fd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: plain integer fcntl commands on a descriptor open for the call.
    let steps = unsafe {
        [
            libc::fcntl(raw, libc::F_SETOWN, libc::getpid()),
            libc::fcntl(raw, F_SETSIG, sig),
            libc::fcntl(raw, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK),
        ]
    };
    if steps.contains(&-1) {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a close-on-exec copy of `fd` at the
/// lowest free number that is at least `min`.
pub fn fcntl_dupfd_cloexec(fd: BorrowedFd<'_>, min: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain integer fcntl command on a descriptor open for the call.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// `fcntl(fd, F_GETFD)` succeeds: whether descriptor number `fd` is open.
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the flags; EBADF for a closed number.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1
}

/// `waitid(P_PID, pid, WEXITED | WNOWAIT)`: blocks until the child `pid`
/// has exited, without reaping it (a later `waitpid` does). Retries on
/// `EINTR`.
pub fn waitid_exited_nowait(pid: i32) -> io::Result<()> {
    loop {
        // SAFETY: `info` is a valid out-pointer for the call's duration.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; plain integers otherwise.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// `getrusage(RUSAGE_SELF or RUSAGE_CHILDREN)`: user + system CPU time of
/// this process, or of its reaped children (and theirs).
pub fn getrusage_cpu(children: bool) -> io::Result<std::time::Duration> {
    // SAFETY: `usage` is a valid out-pointer; zeroed is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: as above.
    if unsafe { libc::getrusage(who, &mut usage) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| std::time::Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// `poll(fds, POLLIN, timeout)`: which of `fds` are readable (or hung up)
/// after waiting at most `timeout` (`None`: no limit) for one to be.
/// Retries on `EINTR` (with the full timeout again).
pub fn poll_readable_many(
    fds: &[BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> io::Result<Vec<bool>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let ts = timeout.map(|d| Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos().into(),
    });
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(fd, PollFlags::IN))
        .collect();
    loop {
        match rustix::event::poll(&mut polled, ts.as_ref()) {
            Ok(_) => return Ok(polled.iter().map(|p| !p.revents().is_empty()).collect()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `close_range(first, last, 0)`: closes every descriptor numbered `first`
/// to `last`. Falls back to `close(2)` one by one (up to the descriptor
/// limit) on kernels without it (before 5.9).
///
/// # Safety
///
/// - The descriptors in the range are closed behind the back of whatever
///   owns them: call it only in a fresh fork child that will never use them
///   again.
#[inline]
pub unsafe fn close_range(first: u32, last: u32) {
    if first > last {
        return;
    }
    // SAFETY: close_range takes plain integers; the caller accepts that the
    // descriptors in the range are closed.
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } == 0 {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as u32
    } else {
        1024
    };
    for fd in first..=last.min(max) {
        // SAFETY: as above; EBADF for numbers that are not open is fine.
        unsafe { libc::close(fd as i32) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn dupfd_lands_at_or_above_min() {
        let (r, _w) = crate::sys::pipe().unwrap();
        let copy = fcntl_dupfd_cloexec(r.as_fd(), 200).unwrap();
        assert!(copy.as_raw_fd() >= 200);
        assert!(fd_is_open(copy.as_raw_fd()));
        let raw = copy.as_raw_fd();
        drop(copy);
        assert!(!fd_is_open(raw));
        assert!(!fd_is_open(-1));
    }

    #[test]
    fn spawn_of_a_missing_program_fails() {
        let path = c"/nonexistent/multiproc-test";
        let err = posix_spawn(path, &[path], &[], &[]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
