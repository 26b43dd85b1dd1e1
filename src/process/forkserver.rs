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
//! each child the parent sends a request: a first message, `"MPFORK2"`,
//! the total number of descriptors to pass on, how many of them travel in
//! this message and, for each of those, the number it must have in the
//! child; with it, by `SCM_RIGHTS`, a fresh socket for this child's status,
//! the launch payload (see `launch`) and the first descriptors to pass on
//! (stdin, stdout, stderr, every memfd segment, the daemon lifeline, a
//! pidfd of the parent). One message carries at most `SCM_MAX_FD` (253)
//! descriptors, so when there are more, continuation messages follow
//! (`"MPMORE2"`, a count, the numbers, the descriptors) until all arrived;
//! the parent sends them all under the server's lock, so the messages of
//! two requests never interleave. The server reads the payload, looks the
//! entry up and plans the descriptor moves (see `relocation`), then forks;
//! the child moves each descriptor to its number (so handle texts made in
//! the parent resolve unchanged), closes everything else and runs the
//! entry. A payload that does not decode is answered `"MPER"` + `EINVAL`.
//! The server answers on the status socket with `"MPOK"`, the pid and (by
//! `SCM_RIGHTS`) a pidfd of the child, and when it reaped the child, with
//! its exit code (`i32`). That socket is what the parent's `join` waits
//! on.
//!
//! The server exits once the parent closed its end of the pair (the parent
//! exited, however) and every child it forked has ended. A fork child of
//! the parent that starts forkserver children starts its own server.
//!
//! # Signals
//!
//! A Ctrl-C in a terminal sends SIGINT to the whole foreground process
//! group, which includes the server. The server ignores SIGINT (as
//! CPython's does), so it keeps serving for a parent that survives the
//! Ctrl-C; each child starts with SIGINT as the server found it (its
//! default action, unless the parent ignored it), so children still end on
//! Ctrl-C as fork and spawn children do.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};

use super::StartMethod;
use super::children;
use super::launch::{Launch, LaunchSpec, Work};
use super::lifeline;
use super::reaper::ChildCell;
use super::relocation;
use super::spawn::{self, FORKSERVER_ENV};
use crate::error::{Error, Result};
use crate::shm;
use crate::sys::{self, Forked};

const REQUEST_MAGIC: &[u8] = b"MPFORK2";
const MORE_MAGIC: &[u8] = b"MPMORE2";
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

/// One message of a request: its bytes and the descriptors it carries.
type Message<'a> = (Vec<u8>, Vec<BorrowedFd<'a>>);

/// Sends the messages of a request, back to back under the server's lock,
/// starting the server first if there is none (or the one there was died).
fn send_request(messages: &[Message<'_>]) -> Result<()> {
    let mut server = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    if server
        .as_ref()
        .is_some_and(|s| s.owner != sys::current_ids().0)
    {
        // Inherited from the parent by fork: not ours to use or reap.
        *server = None;
    }
    for attempt in 0..2 {
        let current = match server.as_mut() {
            Some(s) => s,
            None => server.insert(Server::spawn()?),
        };
        let sent = messages.iter().try_for_each(|(data, fds)| {
            sys::sendmsg_fds(current.control.as_fd(), data, fds).map(drop)
        });
        match sent {
            Ok(()) => return Ok(()),
            Err(e) if attempt == 0 => {
                // The server died: start another once. (A server that got
                // only part of a request died with it.)
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

/// The messages of a request passing `passed` (the numbers, each open in
/// this process) with `status` and `payload` in front.
///
/// # Safety
///
/// - Every number in `passed` must stay open until the messages are sent.
unsafe fn request<'a>(
    status: BorrowedFd<'a>,
    payload: BorrowedFd<'a>,
    passed: &[i32],
) -> Vec<Message<'a>> {
    let first = passed.len().min(sys::MAX_PASSED_FDS - 2);
    let chunks =
        std::iter::once(&passed[..first]).chain(passed[first..].chunks(sys::MAX_PASSED_FDS));
    chunks
        .enumerate()
        .map(|(i, chunk)| {
            let mut data = if i == 0 {
                let mut d = REQUEST_MAGIC.to_vec();
                d.extend_from_slice(&(passed.len() as u32).to_le_bytes());
                d
            } else {
                MORE_MAGIC.to_vec()
            };
            data.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            let mut fds = if i == 0 {
                vec![status, payload]
            } else {
                Vec::new()
            };
            for fd in chunk {
                data.extend_from_slice(&fd.to_le_bytes());
                // SAFETY: open until the messages are sent (the caller's
                // contract).
                fds.push(unsafe { BorrowedFd::borrow_raw(*fd) });
            }
            (data, fds)
        })
        .collect()
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
    let me = sys::pidfd_open(sys::current_ids().0).map_err(|e| Error::os("pidfd_open(self)", e))?;
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
    // SAFETY: every number in `passed` was checked open (stdio) or is held
    // by a live owner in this process (segments in the registry, the
    // lifeline and `me` above) until the request is sent.
    let messages = unsafe { request(theirs.as_fd(), payload.as_fd(), &passed) };
    send_request(&messages)?;
    drop(messages);
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
                "the forkserver could not start the child",
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
    // A Ctrl-C goes to the whole foreground process group, the server
    // included: it must not end the server under its parent, which decides
    // itself what a Ctrl-C means (as CPython's forkserver, it is ignored
    // here, and children start with SIGINT as the server found it).
    let sigint_was_ignored = sys::sigaction_ignore(libc::SIGINT, true).unwrap_or(false);
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
        // The children polled; a child started just below was not.
        let polled = children.len();
        if control.is_some() && ready[polled] {
            let open = control
                .as_ref()
                .is_some_and(|c| serve_request(c.as_fd(), &mut children, sigint_was_ignored));
            if !open {
                control = None;
            }
        }
        let mut i = 0;
        children.retain(|child| {
            let was_ready = i < polled && ready[i];
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
fn serve_request(
    control: BorrowedFd<'_>,
    children: &mut Vec<Served>,
    sigint_was_ignored: bool,
) -> bool {
    let mut data = vec![0u8; REQUEST_MAGIC.len() + 8 + 4 * sys::MAX_PASSED_FDS];
    let (n, mut fds) = match sys::recvmsg_fds(control, &mut data, sys::MAX_PASSED_FDS) {
        Ok((0, fds)) if fds.is_empty() => return false,
        Ok(got) => got,
        // A malformed message is dropped (its descriptors closed).
        Err(_) => return true,
    };
    let Some((total, mut targets)) = parse_first(&data[..n], fds.len()) else {
        return true;
    };
    let status = fds.remove(0);
    let payload = fds.remove(0);
    while targets.len() < total {
        let more = sys::recvmsg_fds(control, &mut data, sys::MAX_PASSED_FDS);
        let parsed = match &more {
            Ok((n, got)) if *n > 0 => parse_more(&data[..*n], got.len()),
            _ => None,
        };
        let (Some(numbers), Ok((_, got))) = (parsed, more) else {
            // Cut short (the parent died, or this server ran out of
            // descriptors: EMFILE truncates a message): nothing starts.
            reply_error(&status, libc::EMFILE);
            return true;
        };
        targets.extend(numbers);
        fds.extend(got);
    }
    if targets.len() != total || !distinct_and_in_range(&targets) {
        reply_error(&status, libc::EPROTO);
        return true;
    }
    // Everything the child needs is worked out here, before the fork: the
    // payload read and decoded, the entry looked up, the descriptor moves
    // planned. The child then only makes system calls and runs the entry
    // (each page a fork child writes first, each stretch of code it runs
    // first, is a page fault on the path the parent's `join` waits for).
    // A payload that does not decode is the parent's error to report.
    let ready = match LaunchSpec::from_fd(payload) {
        Ok(spec) => spec.ready(),
        Err(_) => {
            reply_error(&status, libc::EINVAL);
            return true;
        }
    };
    let held: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let steps = relocation::plan(&held, &targets);
    // Held across the fork, so the child finds it locked by itself.
    let table = children::lock();
    // SAFETY: the server has a single thread (it is a fresh run of the
    // program that only serves), so the child may do anything.
    match unsafe { sys::fork() } {
        Ok(Forked::Child) => {
            // SIGINT as the server found it (see `serve`).
            if !sigint_was_ignored {
                let _ = sys::sigaction_ignore(libc::SIGINT, false);
            }
            // The descriptors received stay open at their new numbers for
            // the life of the child (handle texts name them); `fds` is
            // never dropped here (the child ends in `ready.run`).
            // SAFETY: a fresh fork child of the single-threaded server,
            // before it uses any descriptor; `steps` was planned for the
            // descriptors it holds (`fds`), and it never drops or uses the
            // owners of those the steps close (`fds`, `status`, `control`,
            // the children's): it runs the entry and `_exit`s.
            if let Err(call) = unsafe { relocation::apply(&steps) } {
                relocation_failed(call);
            }
            ready.run_with(table)
        }
        Ok(Forked::Parent(pid)) => {
            drop(table);
            drop(fds);
            drop(ready);
            match sys::pidfd_open(pid) {
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
            }
        }
        Err(e) => {
            drop(table);
            reply_error(&status, e.raw_os_error().unwrap_or(libc::EAGAIN));
        }
    }
    true
}

/// In the server's child: a descriptor move failed (`call`); reported on
/// stderr (if it still goes anywhere), exit code 1.
#[cold]
#[inline(never)]
fn relocation_failed(call: &str) -> ! {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "forkserver child: {call} failed placing the descriptors passed on"
    );
    sys::exit_immediately(1)
}

fn reply_error(status: &OwnedFd, errno: i32) {
    let mut reply = REPLY_ERR.to_vec();
    reply.extend_from_slice(&errno.to_le_bytes());
    let _ = sys::send_nosignal(status.as_fd(), &reply);
}

/// The total count and the target numbers of the first message of a
/// request carrying `fd_count` descriptors (status socket and payload
/// first), or `None` if malformed.
fn parse_first(data: &[u8], fd_count: usize) -> Option<(usize, Vec<i32>)> {
    let rest = data.strip_prefix(REQUEST_MAGIC)?;
    let total = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let targets = parse_numbers(&rest[4..], fd_count.checked_sub(2)?)?;
    (targets.len() <= total).then_some((total, targets))
}

/// The target numbers of a continuation message carrying `fd_count`
/// descriptors, or `None` if malformed.
fn parse_more(data: &[u8], fd_count: usize) -> Option<Vec<i32>> {
    parse_numbers(data.strip_prefix(MORE_MAGIC)?, fd_count)
}

/// A count, then that many `i32` numbers, one per descriptor carried.
fn parse_numbers(data: &[u8], fd_count: usize) -> Option<Vec<i32>> {
    let count = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let numbers = data.get(4..)?;
    if numbers.len() != 4 * count || fd_count != count {
        return None;
    }
    Some(
        numbers
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Whether no number is there twice and each is a plausible descriptor.
fn distinct_and_in_range(targets: &[i32]) -> bool {
    let mut sorted = targets.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() == targets.len() && targets.iter().all(|t| (0..1 << 20).contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(total: usize, targets: &[i32]) -> Vec<u8> {
        let mut data = REQUEST_MAGIC.to_vec();
        data.extend_from_slice(&(total as u32).to_le_bytes());
        data.extend_from_slice(&numbers(targets));
        data
    }

    fn numbers(targets: &[i32]) -> Vec<u8> {
        let mut data = (targets.len() as u32).to_le_bytes().to_vec();
        for t in targets {
            data.extend_from_slice(&t.to_le_bytes());
        }
        data
    }

    #[test]
    fn well_formed_requests_parse() {
        assert_eq!(
            parse_first(&first(4, &[0, 1, 2, 7]), 6),
            Some((4, vec![0, 1, 2, 7]))
        );
        assert_eq!(parse_first(&first(0, &[]), 2), Some((0, vec![])));
        assert_eq!(parse_first(&first(300, &[5]), 3), Some((300, vec![5])));
        let mut more = MORE_MAGIC.to_vec();
        more.extend_from_slice(&numbers(&[8, 9]));
        assert_eq!(parse_more(&more, 2), Some(vec![8, 9]));
        assert!(distinct_and_in_range(&[0, 1, 2, 7]));
    }

    #[test]
    fn malformed_requests_are_refused() {
        // Wrong magic, truncated, descriptor count not matching, more in
        // the message than in the whole request.
        assert_eq!(
            parse_first(b"MPFORK1\x00\x00\x00\x00\x00\x00\x00\x00", 2),
            None
        );
        assert_eq!(parse_first(&first(1, &[3])[..14], 3), None);
        assert_eq!(parse_first(&first(1, &[3]), 2), None);
        assert_eq!(parse_first(&first(1, &[3]), 4), None);
        assert_eq!(parse_first(&first(1, &[3]), 1), None);
        assert_eq!(parse_first(&first(1, &[3, 4]), 4), None);
        assert_eq!(parse_more(&first(1, &[3]), 1), None);
        let mut more = MORE_MAGIC.to_vec();
        more.extend_from_slice(&numbers(&[8, 9]));
        assert_eq!(parse_more(&more, 1), None);
        // The same target twice, a negative or huge target.
        assert!(!distinct_and_in_range(&[3, 3]));
        assert!(!distinct_and_in_range(&[-1]));
        assert!(!distinct_and_in_range(&[1 << 20]));
    }

    #[test]
    fn a_payload_that_does_not_decode_is_refused_before_any_fork() {
        use std::io::Write;
        let (ours, theirs) = sys::socketpair_seqpacket().unwrap();
        let (status, status_theirs) = sys::socketpair_seqpacket().unwrap();
        let payload = sys::memfd_create("bad-payload").unwrap();
        std::fs::File::from(sys::dup_cloexec(payload.as_fd()).unwrap())
            .write_all(b"MPLAUNCH1 but then nothing sensible")
            .unwrap();
        // SAFETY: both stay open until the messages are sent.
        let messages = unsafe { request(status_theirs.as_fd(), payload.as_fd(), &[]) };
        for (data, fds) in &messages {
            sys::sendmsg_fds(ours.as_fd(), data, fds).unwrap();
        }
        drop(status_theirs);
        let mut children = Vec::new();
        assert!(serve_request(theirs.as_fd(), &mut children, false));
        assert!(children.is_empty(), "nothing was forked");
        let mut reply = [0u8; 8];
        let (n, fds) = sys::recvmsg_fds(status.as_fd(), &mut reply, 1).unwrap();
        assert_eq!((n, fds.len()), (8, 0));
        assert_eq!(&reply[..4], REPLY_ERR);
        assert_eq!(
            i32::from_le_bytes(reply[4..].try_into().unwrap()),
            libc::EINVAL
        );
    }

    #[test]
    fn requests_are_cut_into_messages_that_fit() {
        let (a, _b) = sys::socketpair_seqpacket().unwrap();
        let open: Vec<i32> = vec![a.as_raw_fd(); 600];
        // SAFETY: `a` stays open until the messages are dropped.
        let messages = unsafe { request(a.as_fd(), a.as_fd(), &open) };
        let counts: Vec<usize> = messages.iter().map(|(_, fds)| fds.len()).collect();
        assert_eq!(counts, [253, 253, 96]);
        assert_eq!(
            parse_first(&messages[0].0, 253),
            Some((600, vec![a.as_raw_fd(); 251]))
        );
        assert_eq!(parse_more(&messages[2].0, 96).map(|v| v.len()), Some(96));
        // SAFETY: as above.
        let small = unsafe { request(a.as_fd(), a.as_fd(), &[0, 1, 2]) };
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].1.len(), 5);
    }
}
