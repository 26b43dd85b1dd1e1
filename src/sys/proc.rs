//! Processes: `fork(2)`, `waitpid(2)`, `pidfd_open(2)`, `pidfd_send_signal(2)`, `poll(2)`,
//! `kill(2)`, `sigaction(2)`, `_exit(2)`, `fflush(3)`, `getpid(2)`, `gettid(2)`,
//! `prctl(PR_SET_PDEATHSIG)`, `/proc/PID/stat`, and the `mmap(2)` +
//! `madvise(MADV_WIPEONFORK)` page that tells cached ids they are stale.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

/// What [`fork`] returned in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// We are the parent; the child has this pid.
    Parent(i32),
    /// We are the new child.
    Child,
}

/// How a child ended, as `waitpid(2)` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildStatus {
    /// `exit(code)` or a return from its entry.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl ChildStatus {
    /// Python's `exitcode`: the exit code, or the negative signal number.
    pub fn exitcode(self) -> i32 {
        match self {
            ChildStatus::Exited(code) => code,
            ChildStatus::Signaled(sig) => -sig,
        }
    }
}

/// `fork(2)`: duplicates the calling process.
///
/// # Safety
///
/// - In the child only the calling thread exists. If the parent had other
///   threads, they may have held locks (the allocator's among them), so the
///   child must restrict itself to async-signal-safe work until it execs or
///   exits, exactly as POSIX says.
/// - The child must leave with [`exit_immediately`] (or exec), never by
///   returning into code that assumes it is the parent.
///
/// Inlined into callers in other crates too (benchmarks): each code page a
/// fork child runs first is a page fault.
#[inline]
pub unsafe fn fork() -> io::Result<Forked> {
    // Made before any fork of ours, so a child never inherits it half-done
    // (see `init_epoch`).
    init_epoch();
    // SAFETY: the caller accepts fork's rules above.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `waitpid(pid, &status, nohang ? WNOHANG : 0)`: reaps the child `pid`.
///
/// Returns `Ok(None)` when `nohang` and the child still runs. Retries on `EINTR`.
pub fn waitpid(pid: i32, nohang: bool) -> io::Result<Option<ChildStatus>> {
    let mut status = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `status` is a valid out-pointer for the call's duration.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(if libc::WIFSIGNALED(status) {
            ChildStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ChildStatus::Exited(libc::WEXITSTATUS(status))
        }));
    }
}

/// `pidfd_open(pid, 0)`: a descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid must be positive"))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(io::Error::from)
}

/// `poll([{fd, POLLIN}], timeout)`: whether `fd` became readable within `timeout`
/// (`None` waits forever). Retries on `EINTR` with the time that is left.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let ts = left.map(|d| Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: d.subsec_nanos().into(),
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`: signals the process behind a
/// pidfd. Unlike [`kill`] it cannot hit a later process that reused the pid:
/// once the process is gone (even reaped) it fails with `ESRCH`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the syscall takes a descriptor (open for the call: borrowed),
    // a signal number, a NULL siginfo pointer and zero flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `kill(pid, sig)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sigaction(sig, {SIG_IGN or SIG_DFL})`: from now on the process ignores
/// `sig` (`ignore`) or takes its default action; returns whether it ignored
/// `sig` before. A handler installed before is replaced (and counts as not
/// ignored).
#[inline]
pub fn sigaction_ignore(sig: i32, ignore: bool) -> io::Result<bool> {
    // SAFETY: zeroed is a valid sigaction (empty mask, no flags).
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; SIG_IGN and SIG_DFL are
    // valid dispositions for any catchable signal (EINVAL otherwise).
    if unsafe { libc::sigaction(sig, &new, &mut old) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(old.sa_sigaction == libc::SIG_IGN)
}

/// `_exit(code)`: ends the process at once, running no destructors or `atexit` handlers.
///
/// Inlined, as [`fork`] is: fork children leave through it.
#[inline]
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// `fflush(NULL)` then `_exit(code)`: writes out every C stdio buffer and
/// ends the process at once, running no destructors or `atexit` handlers.
/// A failed flush is ignored: nobody is left to tell.
///
/// Inlined: a fork child leaves through it, and each code page a fork
/// child runs first costs it a page fault.
#[inline(always)]
pub fn fflush_all_and_exit(code: i32) -> ! {
    // SAFETY: fflush(NULL) flushes all open output streams and takes no
    // pointer we provide; _exit is async-signal-safe and never returns.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}

/// `getpid(2)`.
pub fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// `getppid(2)`: the parent's pid (that of the reaper it was handed to,
/// once the parent died).
pub fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// `gettid(2)`.
pub fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// `prctl(PR_SET_PDEATHSIG, sig)`: the kernel sends `sig` to this process when
/// the thread that forked it exits.
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes an integer signal number and no pointers.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Field 22 (`starttime`, in clock ticks since boot) of `/proc/PID/stat`, and
/// whether the process is a zombie or dead (state `Z` or `X`).
///
/// Together with the pid it names a process uniquely across pid reuse.
/// `Ok(None)` when no such process exists.
pub fn process_start_time(pid: i32) -> io::Result<Option<(u64, bool)>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The command name (field 2) is in parentheses and may contain spaces
    // or parentheses itself: split after its last ')'.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| io::Error::other("unparsable /proc/PID/stat"))?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().unwrap_or("?");
    // `rest` starts at field 3 (state); starttime is field 22.
    let start = fields
        .nth(18)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("no starttime in /proc/PID/stat"))?;
    Ok(Some((start, matches!(state, "Z" | "X"))))
}

/// The word that tells per-thread caches of the pid and tid (see
/// [`current_ids`]) whether they are stale: this process's *epoch*, or 0
/// until this process (a fresh fork child, or the first process) takes one.
///
/// It reads 0 in every fork child without any code running there: it sits
/// alone in a page marked `MADV_WIPEONFORK`, which a fork child gets as a
/// fresh zero page instead of a copy. (A fork child handler that bumped a
/// counter cost every fork child, made by anyone, a page fault for the
/// handler's code and one for the counter's page, ~5 us here.) On kernels
/// without `MADV_WIPEONFORK` (before 4.14) it is [`FALLBACK_EPOCH`], which a
/// `pthread_atfork` child handler zeroes. Null until [`init_epoch`] ran;
/// set once, never unmapped.
static EPOCH: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

/// The epoch word when `MADV_WIPEONFORK` is missing (see [`EPOCH`]).
static FALLBACK_EPOCH: AtomicU64 = AtomicU64::new(0);

/// The last epoch this process or one of its ancestors took. A fork child
/// inherits it, so the epoch it takes is above every epoch of its
/// ancestors, the only ones a cache it inherited can hold. Written only
/// when a process takes its epoch (once per process).
static LAST_EPOCH: AtomicU64 = AtomicU64::new(0);

extern "C" fn zero_fallback_epoch_in_child() {
    // Relaxed: read only by this (single-threaded) child after fork returns.
    FALLBACK_EPOCH.store(0, Ordering::Relaxed);
}

/// Sets [`EPOCH`] once. It runs at library load (the constructor below),
/// so that a fork made by any thread, or by C code, never copies the `Once`
/// in the middle of its initialisation into a child (where it would stay
/// "in progress" forever); `fork` and `current_ids` call it too, for
/// loaders that skip constructors.
fn init_epoch() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let word = wiped_on_fork_word().unwrap_or_else(|| {
            // SAFETY: the handler is an `extern "C" fn()` that only stores
            // to an atomic, which is async-signal-safe as fork's child
            // handlers must be.
            let rc =
                unsafe { libc::pthread_atfork(None, None, Some(zero_fallback_epoch_in_child)) };
            assert_eq!(rc, 0, "pthread_atfork failed");
            &FALLBACK_EPOCH
        });
        // SYNC(epoch-word): Release pairs with the Acquire in `current_ids`,
        // which then sees the page mapped.
        EPOCH.store(std::ptr::from_ref(word).cast_mut(), Ordering::Release);
    });
}

/// `mmap` of one private anonymous page, then `madvise(MADV_WIPEONFORK)`:
/// a zeroed word that reads 0 again in every fork child. `None` if either
/// call failed (the page is unmapped again).
fn wiped_on_fork_word() -> Option<&'static AtomicU64> {
    let len = super::page_size();
    // SAFETY: a new private anonymous mapping: no existing memory is touched.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if page == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: `page` is the mapping of `len` bytes made just above.
    if unsafe { libc::madvise(page, len, libc::MADV_WIPEONFORK) } != 0 {
        // SAFETY: the same mapping, not shared with anyone yet.
        unsafe { libc::munmap(page, len) };
        return None;
    }
    // SAFETY: page-aligned, zeroed, readable and writable, never unmapped:
    // a valid `AtomicU64` for the rest of the process's life.
    Some(unsafe { &*page.cast::<AtomicU64>() })
}

/// `pthread_atfork(prepare, parent, child)`: handlers run around every fork
/// of this process, whoever makes it. They must be async-signal-safe in the
/// sense fork needs (no allocation, no locks other than the ones they take
/// and release themselves).
pub fn register_fork_handlers(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: the handlers are plain `extern "C" fn()`s of this library,
    // which stay mapped while it is loaded (glibc drops a shared object's
    // fork handlers when it is unloaded).
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

extern "C" fn init_epoch_at_load() {
    init_epoch();
}

// SAFETY (of the link section): an `.init_array` entry is an `extern "C"
// fn()` run once by the loader before `main` (or at `dlopen`); ours only
// maps a page (or calls pthread_atfork) through a `Once`.
#[used]
#[unsafe(link_section = ".init_array")]
static INIT_EPOCH_AT_LOAD: extern "C" fn() = init_epoch_at_load;

thread_local! {
    /// `(epoch, pid, tid)` of the calling thread, as last read; epoch 0:
    /// empty (no epoch is 0).
    static IDS: std::cell::Cell<(u64, i32, i32)> = const { std::cell::Cell::new((0, 0, 0)) };
}

/// The calling thread's `(pid, tid)`, cached per thread without a syscall and
/// refreshed after a `fork`, whoever made it (C code included). Inlined: the
/// queues' hot paths ask for it on every operation.
///
/// The cache holds the epoch of the process that filled it; it is good while
/// that is this process's epoch (see `EPOCH`). A fork child's epoch word
/// reads 0, so its first call takes a new epoch, above every epoch of its
/// ancestors (see `LAST_EPOCH`), and no cache it inherited can match.
#[inline]
pub fn current_ids() -> (i32, i32) {
    // SYNC(epoch-word): Acquire pairs with the Release in `init_epoch`.
    let word = EPOCH.load(Ordering::Acquire);
    IDS.with(|c| {
        let (cached, pid, tid) = c.get();
        // SAFETY: a non-null `word` was set by `init_epoch` to a word that
        // lives as long as the process (a static, or a page never unmapped).
        // Relaxed: the word is only compared: it is 0 or this process's
        // epoch, and nothing else is published with it.
        if cached != 0 && !word.is_null() && unsafe { &*word }.load(Ordering::Relaxed) == cached {
            return (pid, tid);
        }
        refresh_ids(c)
    })
}

/// The rare part of [`current_ids`]: a first call in this thread, or in a
/// new process (a fork child).
#[cold]
#[inline(never)]
fn refresh_ids(cache: &std::cell::Cell<(u64, i32, i32)>) -> (i32, i32) {
    // SYNC(epoch-word): as in `current_ids`.
    let mut word = EPOCH.load(Ordering::Acquire);
    if word.is_null() {
        init_epoch();
        // SYNC(epoch-word): as above.
        word = EPOCH.load(Ordering::Acquire);
    }
    // SAFETY: as in `current_ids`; `init_epoch` has set it now.
    let word = unsafe { &*word };
    // Relaxed: as in `current_ids`.
    let epoch = word.load(Ordering::Relaxed);
    let epoch = if epoch != 0 {
        epoch
    } else {
        // Relaxed: the counter only has to grow, and two threads taking
        // an epoch at once get different numbers (one read-modify-write).
        let fresh = LAST_EPOCH.fetch_add(1, Ordering::Relaxed) + 1;
        // Relaxed: the compare-exchange alone decides which thread's
        // number becomes the epoch; the loser uses the winner's.
        match word.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => fresh,
            Err(theirs) => theirs,
        }
    };
    let ids = (getpid(), gettid());
    cache.set((epoch, ids.0, ids.1));
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_refreshed_in_a_fork_child() {
        let (pid, tid) = current_ids();
        assert_eq!((pid, tid), (getpid(), gettid()));
        // SAFETY: the child only calls current_ids (no locks taken on the
        // cached path after fork; getpid/gettid are syscalls) and _exits.
        match unsafe { fork() }.unwrap() {
            Forked::Child => {
                let (cpid, ctid) = current_ids();
                let ok = cpid == getpid() && ctid == gettid() && cpid != pid;
                exit_immediately(if ok { 0 } else { 3 });
            }
            Forked::Parent(child) => {
                assert_eq!(waitpid(child, false).unwrap(), Some(ChildStatus::Exited(0)));
            }
        }
    }

    #[test]
    fn ids_are_fresh_in_a_grandchild_of_a_child_that_never_asked() {
        let _ = current_ids();
        // SAFETY: C's fork, not ours, as any C code could call it. Both
        // children only make syscalls and call `current_ids` (whose `Once`
        // completed above, so it takes no lock) before `_exit`.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", io::Error::last_os_error()),
            0 => {
                // This child never calls current_ids: its cache still holds
                // the parent's ids when it forks the grandchild.
                // SAFETY: as above.
                let code = match unsafe { libc::fork() } {
                    -1 => 4,
                    0 => {
                        let (pid, tid) = current_ids();
                        let again = current_ids();
                        let ok = pid == getpid() && tid == gettid() && again == (pid, tid);
                        exit_immediately(if ok { 0 } else { 3 });
                    }
                    grandchild => match waitpid(grandchild, false) {
                        Ok(Some(ChildStatus::Exited(code))) => code,
                        _ => 5,
                    },
                };
                exit_immediately(code);
            }
            child => {
                assert_eq!(waitpid(child, false).unwrap(), Some(ChildStatus::Exited(0)));
            }
        }
    }

    #[test]
    fn sigaction_ignore_reports_the_previous_disposition() {
        // SAFETY: the child only makes these syscalls and `_exit`s.
        match unsafe { fork() }.unwrap() {
            Forked::Child => {
                let steps = [
                    sigaction_ignore(libc::SIGUSR2, true).ok() == Some(false),
                    sigaction_ignore(libc::SIGUSR2, true).ok() == Some(true),
                    // Ignored: it does nothing.
                    kill(getpid(), libc::SIGUSR2).is_ok(),
                    sigaction_ignore(libc::SIGUSR2, false).ok() == Some(true),
                    sigaction_ignore(libc::SIGKILL, true).is_err(),
                ];
                let ok = steps.iter().all(|s| *s);
                // Default again: it ends the process.
                let _ = kill(getpid(), libc::SIGUSR2);
                exit_immediately(if ok { 0 } else { 3 });
            }
            Forked::Parent(child) => {
                assert_eq!(
                    waitpid(child, false).unwrap(),
                    Some(ChildStatus::Signaled(libc::SIGUSR2))
                );
            }
        }
    }

    #[test]
    fn start_time_names_a_live_process() {
        let (start, dead) = process_start_time(getpid()).unwrap().unwrap();
        assert!(start > 0);
        assert!(!dead);
        assert_eq!(process_start_time(i32::MAX).unwrap(), None);
    }
}
