//! The `forkserver` start method.
//!
//! # Why a server
//!
//! `fork` copies the calling thread only. If the parent runs other threads,
//! any lock one of them held at that instant (the allocator's, stdio's, a
//! library's, yours) stays locked forever in the child, and whatever they
//! were halfway through updating stays half-updated: the child can deadlock
//! or read torn data before it runs a line of your code. POSIX allows only
//! async-signal-safe calls in such a child. A fork server avoids this: it
//! is a fresh run of this executable (started by `posix_spawn` at the first
//! forkserver `start`, so it never inherits a lock held by anyone), which
//! registers the same entry points, calls `init` and then only serves: it
//! has a single thread, so forking it is always safe, however many threads
//! the parent runs.
//!
//! # Protocol
//!
//! The parent and the server share a `SOCK_SEQPACKET` socket pair. For
//! each child the parent sends one message: `"MPFORK1"`, a count and, for
//! each descriptor to pass on, the number it must have in the child; with
//! it, by `SCM_RIGHTS`, a fresh socket for this child's status, the launch
//! payload (see `launch`) and those descriptors (stdin, stdout, stderr,
//! every memfd segment, the daemon lifeline, a pidfd of the parent). The
//! server forks; the child moves each descriptor to its number (so handle
//! texts made in the parent resolve unchanged), closes everything else and
//! runs the entry. The server answers on the status socket with `"MPOK"`,
//! the pid and (by `SCM_RIGHTS`) a pidfd of the child, and when it reaped
//! the child, with its exit code (`i32`). That socket is what the parent's
//! `join` waits on.
//!
//! The server exits once the parent closed its end of the pair (the parent
//! exited, however) and every child it forked has ended. A fork child of
//! the parent that starts forkserver children starts its own server.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

use super::StartMethod;
use super::children;
use super::launch::{Launch, LaunchSpec, Work};
use super::lifeline;
use super::reaper::ChildCell;
use super::spawn::{self, FORKSERVER_ENV};
use crate::error::{Error, Result};
use crate::shm;
use crate::sys::{self, Forked};

const REQUEST_MAGIC: &[u8] = b"MPFORK1";
const REPLY_OK: &[u8] = b"MPOK";
const REPLY_ERR: &[u8] = b"MPER";

/// The server as its parent sees it.
struct Server {
    pid: i32,
    control: OwnedFd,
    /// The process that started it: a fork child that inherited this value
    /// starts its own server.
    owner: i32,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

/// The pid of the fork server, if this process started one.
pub fn server_pid() -> Option<i32> {
    let server = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    server
        .as_ref()
        .filter(|s| s.owner == sys::getpid())
        .map(|s| s.pid)
}

impl Server {
    fn spawn() -> Result<Server> {
        let (ours, theirs) =
            sys::socketpair_seqpacket().map_err(|e| Error::os("socketpair (forkserver)", e))?;
        let env = spawn::environment(&[(FORKSERVER_ENV, theirs.as_raw_fd())])?;
        let pid = spawn::exec_self(&env, &[theirs.as_raw_fd()])?;
        Ok(Server {
            pid,
            control: ours,
            owner: sys::getpid(),
        })
    }

    /// Closes our end and reaps the server if it already ended.
    fn retire(self) {
        drop(self.control);
        let _ = sys::waitpid(self.pid, true);
    }
}

/// Sends a request, starting the server first if there is none (or the one
/// there was died).
fn send_request(data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    let mut server = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    if server.as_ref().is_some_and(|s| s.owner != sys::getpid()) {
        // Inherited from the parent by fork: not ours to use or reap.
        *server = None;
    }
    for attempt in 0..2 {
        let current = match server.as_mut() {
            Some(s) => s,
            None => server.insert(Server::spawn()?),
        };
        match sys::sendmsg_fds(current.control.as_fd(), data, fds) {
            Ok(_) => return Ok(()),
            Err(e) if attempt == 0 => {
                // The server died: start another once.
                let _ = e;
                if let Some(old) = server.take() {
                    old.retire();
                }
            }
            Err(e) => return Err(Error::os("sending a request to the forkserver", e)),
        }
    }
    unreachable!("the second attempt returns")
}

/// Starts a child through the fork server; on failure `work` comes back.
pub(crate) fn start(
    work: Work,
    launch: Launch<'_>,
) -> std::result::Result<Arc<ChildCell>, (Work, Error)> {
    start_child(&work, launch).map_err(|e| (work, e))
}

fn start_child(work: &Work, launch: Launch<'_>) -> Result<Arc<ChildCell>> {
    launch.check_work(work, StartMethod::ForkServer)?;
    spawn::require_init(StartMethod::ForkServer)?;
    let lifeline = launch.daemon.then(lifeline::new).transpose()?;
    let lifeline_fd = lifeline.as_ref().map_or(-1, |(_, r)| r.as_raw_fd());
    let me = sys::pidfd_open(sys::getpid()).map_err(|e| Error::os("pidfd_open(self)", e))?;
    let spec = launch.spec(
        work,
        StartMethod::ForkServer,
        lifeline_fd,
        me.as_raw_fd(),
        Vec::new(),
    )?;
    let payload = spec.to_memfd()?;
    let (status, theirs) =
        sys::socketpair_seqpacket().map_err(|e| Error::os("socketpair (forkserver)", e))?;

    // Passed on under the same numbers: stdio, memfd segments, lifeline, us.
    let mut passed: Vec<i32> = (0..3).filter(|fd| sys::fd_is_open(*fd)).collect();
    passed.extend(shm::memfd_descriptors());
    if lifeline_fd >= 0 {
        passed.push(lifeline_fd);
    }
    passed.push(me.as_raw_fd());
    // A descriptor may be two of these at once (a segment at number 0
    // when stdin was closed): pass it once.
    passed.sort_unstable();
    passed.dedup();
    if passed.len() + 2 > sys::MAX_PASSED_FDS {
        return Err(Error::TooLarge {
            len: passed.len() + 2,
            max: sys::MAX_PASSED_FDS,
        });
    }
    let mut data = REQUEST_MAGIC.to_vec();
    data.extend_from_slice(&(passed.len() as u32).to_le_bytes());
    for fd in &passed {
        data.extend_from_slice(&fd.to_le_bytes());
    }
    // SAFETY: every number in `passed` was checked open (stdio) or is held
    // by a live owner in this process (segments in the registry, the
    // lifeline and `me` above) for the duration of the send.
    let borrowed: Vec<BorrowedFd<'_>> = passed
        .iter()
        .map(|fd| unsafe { BorrowedFd::borrow_raw(*fd) })
        .collect();
    let mut fds = vec![theirs.as_fd(), payload.as_fd()];
    fds.extend(borrowed);
    send_request(&data, &fds)?;
    // Only the server holds the other end now: if it dies, we see EOF.
    drop(theirs);

    let mut reply = [0u8; 8];
    let (n, mut got) = sys::recvmsg_fds(status.as_fd(), &mut reply, 1)
        .map_err(|e| Error::os("reading the forkserver's reply", e))?;
    let value = i32::from_le_bytes([reply[4], reply[5], reply[6], reply[7]]);
    match (n, &reply[..4.min(n)]) {
        (8, REPLY_OK) if got.len() == 1 && value > 0 => {}
        (8, REPLY_ERR) => {
            return Err(Error::os(
                "fork in the forkserver",
                std::io::Error::from_raw_os_error(value),
            ));
        }
        (0, _) => {
            return Err(Error::os(
                "the forkserver ended without starting the child (does main call \
                 multiproc::process::init() first?)",
                std::io::Error::from_raw_os_error(libc::EPIPE),
            ));
        }
        _ => {
            return Err(Error::Internal(
                "malformed reply from the forkserver".into(),
            ));
        }
    }
    let pidfd = got.remove(0);
    let mut cell = ChildCell::served(value, pidfd, status);
    if let Some((write_end, _read_end)) = lifeline {
        cell = cell.with_lifeline(write_end);
    }
    let child = Arc::new(cell);
    let mut table = children::lock();
    table.reap_finished();
    table.track(Arc::clone(&child));
    Ok(child)
}

/// A child the server forked and has not reaped yet.
struct Served {
    pid: i32,
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// Runs the server on the control socket `fd` (from [`FORKSERVER_ENV`]);
/// never returns.
pub(crate) fn serve(control: OwnedFd) -> ! {
    // Each child gets the parent's stdio of the moment with its request; the
    // server lets go of the stdio it was started with, so that a pipe the
    // parent writes to (`prog | head`) sees its end when the parent exits.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = sys::dup2(null.as_fd(), fd);
        }
    }
    let mut children: Vec<Served> = Vec::new();
    let mut control = Some(control);
    loop {
        if control.is_none() && children.is_empty() {
            sys::exit_immediately(0);
        }
        let mut watched: Vec<BorrowedFd<'_>> = children.iter().map(|c| c.pidfd.as_fd()).collect();
        if let Some(c) = &control {
            watched.push(c.as_fd());
        }
        let Ok(ready) = sys::poll_readable_many(&watched, None) else {
            sys::exit_immediately(1);
        };
        drop(watched);
        if control.is_some() && ready[children.len()] {
            let open = control
                .as_ref()
                .is_some_and(|c| serve_request(c.as_fd(), &mut children));
            if !open {
                control = None;
            }
        }
        let mut i = 0;
        children.retain(|child| {
            let was_ready = ready.get(i).copied().unwrap_or(false);
            i += 1;
            if !was_ready {
                return true;
            }
            match sys::waitpid(child.pid, true) {
                Ok(Some(status)) => {
                    // A parent that is gone or dropped its end: nobody to tell.
                    let _ =
                        sys::send_nosignal(child.status.as_fd(), &status.exitcode().to_le_bytes());
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            }
        });
    }
}

/// Reads one request and forks its child. Returns false at end of file.
fn serve_request(control: BorrowedFd<'_>, children: &mut Vec<Served>) -> bool {
    let mut data = vec![0u8; REQUEST_MAGIC.len() + 4 + 4 * sys::MAX_PASSED_FDS];
    let (n, mut fds) = match sys::recvmsg_fds(control, &mut data, sys::MAX_PASSED_FDS) {
        Ok((0, fds)) if fds.is_empty() => return false,
        Ok(got) => got,
        // A malformed message is dropped (its descriptors closed).
        Err(_) => return true,
    };
    let Some(targets) = parse_request(&data[..n], fds.len()) else {
        return true;
    };
    let status = fds.remove(0);
    let payload = fds.remove(0);
    // SAFETY: the server has a single thread (it is a fresh run of the
    // program that only serves), so the child may do anything.
    match unsafe { sys::fork() } {
        Ok(Forked::Child) => {
            let payload = relocate(payload, fds, &targets);
            match LaunchSpec::from_fd(payload) {
                Ok(spec) => spec.run(),
                Err(e) => {
                    use std::io::Write;
                    let _ = writeln!(std::io::stderr(), "forkserver child: {e}");
                    sys::exit_immediately(1)
                }
            }
        }
        Ok(Forked::Parent(pid)) => match sys::pidfd_open(pid) {
            Ok(pidfd) => {
                let mut reply = REPLY_OK.to_vec();
                reply.extend_from_slice(&pid.to_le_bytes());
                let _ = sys::sendmsg_fds(status.as_fd(), &reply, &[pidfd.as_fd()]);
                children.push(Served { pid, pidfd, status });
            }
            Err(e) => {
                // Cannot watch it: take it back at once.
                let _ = sys::kill(pid, libc::SIGKILL);
                let _ = sys::waitpid(pid, false);
                reply_error(&status, e.raw_os_error().unwrap_or(libc::ENOSYS));
            }
        },
        Err(e) => reply_error(&status, e.raw_os_error().unwrap_or(libc::EAGAIN)),
    }
    true
}

fn reply_error(status: &OwnedFd, errno: i32) {
    let mut reply = REPLY_ERR.to_vec();
    reply.extend_from_slice(&errno.to_le_bytes());
    let _ = sys::send_nosignal(status.as_fd(), &reply);
}

/// The target numbers of a request carrying `fd_count` descriptors
/// (status socket and payload first), or `None` if malformed.
fn parse_request(data: &[u8], fd_count: usize) -> Option<Vec<i32>> {
    let rest = data.strip_prefix(REQUEST_MAGIC)?;
    let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let numbers = rest.get(4..)?;
    if numbers.len() != 4 * count || fd_count != count + 2 {
        return None;
    }
    let targets: Vec<i32> = numbers
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut sorted = targets.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == targets.len() && targets.iter().all(|t| (0..1 << 20).contains(t)))
        .then_some(targets)
}

/// In the server's new child: gives each of `fds` the number in
/// `targets`, closes every other descriptor, and returns the payload.
fn relocate(payload: OwnedFd, fds: Vec<OwnedFd>, targets: &[i32]) -> OwnedFd {
    let die = |what: &str| -> ! {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "forkserver child: {what}");
        sys::exit_immediately(1)
    };
    // Above every target and every descriptor we hold now.
    let high = targets
        .iter()
        .copied()
        .chain(fds.iter().map(|f| f.as_raw_fd()))
        .chain([payload.as_raw_fd()])
        .max()
        .unwrap_or(0)
        + 1;
    let moved: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| sys::fcntl_dupfd_cloexec(fd.as_fd(), high).unwrap_or_else(|_| die("dup")))
        .collect();
    let moved_payload =
        sys::fcntl_dupfd_cloexec(payload.as_fd(), high).unwrap_or_else(|_| die("dup"));
    // The originals are closed by the close_range below, so their owners
    // must never close them again (the numbers get reused).
    std::mem::forget(fds);
    std::mem::forget(payload);
    let payload = moved_payload;
    let mut keep: Vec<i32> = moved.iter().map(|f| f.as_raw_fd()).collect();
    keep.push(payload.as_raw_fd());
    keep.sort_unstable();
    // Close everything but `keep`: the server's sockets, pidfds and the
    // originals (the `OwnedFd`s for those are forgotten, never dropped).
    let mut next = 0u32;
    for &fd in &keep {
        // SAFETY: a fresh fork child of the single-threaded server; the
        // descriptors closed here are never used again (see below).
        unsafe { sys::close_range(next, fd as u32 - 1) };
        next = fd as u32 + 1;
    }
    // SAFETY: as above.
    unsafe { sys::close_range(next, u32::MAX) };
    for (fd, &target) in moved.iter().zip(targets) {
        if sys::dup2(fd.as_fd(), target).is_err() {
            die("dup2");
        }
        if target > 2 {
            // SAFETY: `target` was just made a copy of `fd`; borrowed for
            // the call.
            let _ = sys::set_cloexec(unsafe { BorrowedFd::borrow_raw(target) }, true);
        }
    }
    drop(moved);
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(targets: &[i32]) -> Vec<u8> {
        let mut data = REQUEST_MAGIC.to_vec();
        data.extend_from_slice(&(targets.len() as u32).to_le_bytes());
        for t in targets {
            data.extend_from_slice(&t.to_le_bytes());
        }
        data
    }

    #[test]
    fn well_formed_requests_parse() {
        assert_eq!(
            parse_request(&request(&[0, 1, 2, 7]), 6),
            Some(vec![0, 1, 2, 7])
        );
        assert_eq!(parse_request(&request(&[]), 2), Some(vec![]));
    }

    #[test]
    fn malformed_requests_are_refused() {
        // Wrong magic, truncated, descriptor count not matching.
        assert_eq!(parse_request(b"MPFORK2\x00\x00\x00\x00", 2), None);
        assert_eq!(parse_request(&request(&[3])[..10], 3), None);
        assert_eq!(parse_request(&request(&[3]), 2), None);
        assert_eq!(parse_request(&request(&[3]), 4), None);
        // The same target twice, a negative or huge target.
        assert_eq!(parse_request(&request(&[3, 3]), 4), None);
        assert_eq!(parse_request(&request(&[-1]), 3), None);
        assert_eq!(parse_request(&request(&[1 << 20]), 3), None);
    }
}
