//! What the parent tells a `spawn` or `forkserver` child: the entry to run,
//! its argument bytes, and who the child is. It travels in a memfd whose
//! descriptor the child inherits; the child reads it, closes it, and runs.
//!
//! ```text
//! "MPLAUNCH1"  then, little-endian, each string or byte run as u32 length + bytes:
//! entry, arg, name, identity (u32 count + u32 each), daemon (u8),
//! parent pid (i32), parent name, lifeline fd (i32, -1: none),
//! parent pidfd (i32, -1: none), inherited descriptors (u32 count + i32 each)
//! ```
//!
//! Decoding is an input boundary (a stray environment variable could point
//! anywhere): every malformed payload is an [`Error::Invalid`].

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::MutexGuard;

use super::children::Children;
use super::exit::Target;
use super::registry::{self, Entry, MAX_ENTRY_NAME};
use super::{StartMethod, children, exit, lifeline};
use crate::error::{Error, Result};
use crate::sys;

/// What a process runs: a closure (fork only) or a registered entry.
pub(crate) enum Work {
    /// A closure; only a fork child, a copy of this process, can run it.
    Closure(Target),
    /// A registered entry point and its argument bytes.
    Entry {
        /// The name it is registered under (what a spawned child looks up).
        name: String,
        /// The function, found when the `Process` was made.
        entry: Entry,
        /// The argument bytes.
        arg: Vec<u8>,
    },
}

impl Work {
    /// In a fork child: runs it and exits with its code, freeing nothing
    /// (see [`exit::run_child`]): the argument bytes of an entry are only
    /// borrowed, and a closure's box stays allocated (its captures are the
    /// child's own and are dropped when it returns). `stdout` is flushed
    /// before the exit.
    ///
    /// Inlined into the fork child's path (see [`exit::run_child`]).
    #[inline(always)]
    pub(crate) fn run_in_child(self, name: &str, stdout: &std::io::Stdout) -> ! {
        match self {
            // By reference: called by value, the box would be freed.
            Work::Closure(mut target) => exit::run_child(&mut *target, name, stdout),
            Work::Entry { entry, arg, .. } => exit::run_child(|| entry.call(&arg), name, stdout),
        }
    }
}

/// Who the new child will be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Launch<'a> {
    /// Its name.
    pub(crate) name: &'a str,
    /// Its identity.
    pub(crate) identity: &'a [u32],
    /// Whether it is a daemon.
    pub(crate) daemon: bool,
}

impl Launch<'_> {
    /// [`Error::Invalid`] for a closure, which only a fork child can run.
    pub(crate) fn check_work(&self, work: &Work, method: StartMethod) -> Result<()> {
        match work {
            Work::Entry { .. } => Ok(()),
            Work::Closure(_) => Err(Error::Invalid(format!(
                "process {}: a closure can only run in a fork child; with the {method} start \
                 method use Process::from_entry with a registered entry point",
                self.name
            ))),
        }
    }

    /// The payload for a spawn or forkserver child that runs `work`, or
    /// [`Error::Invalid`] for a closure, which a fresh program cannot run.
    pub(crate) fn spec(
        &self,
        work: &Work,
        method: StartMethod,
        lifeline_fd: i32,
        parent_pidfd: i32,
        inherited: Vec<i32>,
    ) -> Result<LaunchSpec> {
        self.check_work(work, method)?;
        let Work::Entry { name, arg, .. } = work else {
            unreachable!("checked above")
        };
        Ok(LaunchSpec {
            entry: name.clone(),
            arg: arg.clone(),
            name: self.name.to_owned(),
            identity: self.identity.to_vec(),
            daemon: self.daemon,
            parent_pid: sys::current_ids().0,
            parent_name: children::lock().my_name(),
            lifeline_fd,
            parent_pidfd,
            inherited,
        })
    }
}

const MAGIC: &[u8] = b"MPLAUNCH1";
/// At most this many inherited descriptors are listed.
const MAX_INHERITED: usize = 1 << 16;
/// No payload is larger: entry arguments are meant to be small (handles,
/// parameters), and a corrupt length must not allocate gigabytes.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;

/// Everything a started child needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchSpec {
    /// The registered entry point to run.
    pub(crate) entry: String,
    /// Its argument bytes.
    pub(crate) arg: Vec<u8>,
    /// The child's name (`current_process().name()`).
    pub(crate) name: String,
    /// The child's identity (see `Children::identity`).
    pub(crate) identity: Vec<u32>,
    /// Whether the child is a daemon.
    pub(crate) daemon: bool,
    /// The pid of the process that started it.
    pub(crate) parent_pid: i32,
    /// That process's name.
    pub(crate) parent_name: String,
    /// The read end of the daemon lifeline in the child, or -1.
    pub(crate) lifeline_fd: i32,
    /// A pidfd of the parent in the child (forkserver children, whose real
    /// parent is the server), or -1.
    pub(crate) parent_pidfd: i32,
    /// Descriptors the child inherited across exec for multiproc's use
    /// (memfd segments); the child marks them close-on-exec again so that
    /// programs it execs later do not inherit them.
    pub(crate) inherited: Vec<i32>,
}

impl LaunchSpec {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let bytes = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        bytes(&mut out, self.entry.as_bytes());
        bytes(&mut out, &self.arg);
        bytes(&mut out, self.name.as_bytes());
        out.extend_from_slice(&(self.identity.len() as u32).to_le_bytes());
        for n in &self.identity {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.push(self.daemon.into());
        out.extend_from_slice(&self.parent_pid.to_le_bytes());
        bytes(&mut out, self.parent_name.as_bytes());
        out.extend_from_slice(&self.lifeline_fd.to_le_bytes());
        out.extend_from_slice(&self.parent_pidfd.to_le_bytes());
        out.extend_from_slice(&(self.inherited.len() as u32).to_le_bytes());
        for fd in &self.inherited {
            out.extend_from_slice(&fd.to_le_bytes());
        }
        out
    }

    pub(crate) fn decode(data: &[u8]) -> Result<LaunchSpec> {
        let rest = data
            .strip_prefix(MAGIC)
            .ok_or_else(|| Error::Invalid("launch payload does not start with MPLAUNCH1".into()))?;
        let mut r = Reader { rest };
        let entry = r.string("entry")?;
        if entry.is_empty() || entry.len() > MAX_ENTRY_NAME {
            return Err(Error::Invalid(format!(
                "launch payload: entry name of {} bytes",
                entry.len()
            )));
        }
        let arg = r.bytes("arg")?.to_vec();
        let name = r.string("name")?;
        let count = r.u32("identity length")? as usize;
        if count > 1024 {
            return Err(Error::Invalid(format!(
                "launch payload: identity of {count} numbers"
            )));
        }
        let identity = (0..count)
            .map(|_| r.u32("identity"))
            .collect::<Result<Vec<u32>>>()?;
        let daemon = match r.take(1, "daemon")?[0] {
            0 => false,
            1 => true,
            b => return Err(Error::Invalid(format!("launch payload: daemon flag {b}"))),
        };
        let parent_pid = r.u32("parent pid")? as i32;
        let parent_name = r.string("parent name")?;
        let lifeline_fd = r.u32("lifeline")? as i32;
        let parent_pidfd = r.u32("parent pidfd")? as i32;
        let count = r.u32("inherited count")? as usize;
        if count > MAX_INHERITED {
            return Err(Error::Invalid(format!(
                "launch payload: {count} inherited descriptors"
            )));
        }
        let inherited = (0..count)
            .map(|_| r.u32("inherited").map(|fd| fd as i32))
            .collect::<Result<Vec<i32>>>()?;
        if !r.rest.is_empty() {
            return Err(Error::Invalid(format!(
                "launch payload: {} bytes after the last field",
                r.rest.len()
            )));
        }
        Ok(LaunchSpec {
            entry,
            arg,
            name,
            identity,
            daemon,
            parent_pid,
            parent_name,
            lifeline_fd,
            parent_pidfd,
            inherited,
        })
    }

    /// The payload in a fresh memfd (close-on-exec; the starter passes it on).
    pub(crate) fn to_memfd(&self) -> Result<OwnedFd> {
        let data = self.encode();
        if data.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge {
                len: data.len(),
                max: MAX_PAYLOAD,
            });
        }
        let fd = sys::memfd_create("multiproc-launch").map_err(|e| Error::os("memfd_create", e))?;
        let mut file = File::from(fd);
        file.write_all(&data)
            .map_err(|e| Error::os("writing the launch payload", e))?;
        Ok(OwnedFd::from(file))
    }

    /// Reads the payload from the start of `fd` (which is then closed):
    /// `fstat` for its size, then one `pread`.
    pub(crate) fn from_fd(fd: OwnedFd) -> Result<LaunchSpec> {
        use std::os::unix::fs::FileExt;
        let len =
            sys::fstat_size(fd.as_fd()).map_err(|e| Error::os("fstat of the launch payload", e))?;
        if len > MAX_PAYLOAD as u64 {
            return Err(Error::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_PAYLOAD,
            });
        }
        let mut data = vec![0u8; len as usize];
        File::from(fd)
            .read_exact_at(&mut data, 0)
            .map_err(|e| Error::os("reading the launch payload", e))?;
        LaunchSpec::decode(&data)
    }

    /// Becomes the process described, runs the entry and exits with its code.
    ///
    /// An entry that is not registered in this run of the program (the
    /// parent checked its own registry, so the child's registrations differ)
    /// is reported on stderr and exits with code 1, as an uncaught
    /// exception does in Python.
    pub(crate) fn run(self) -> ! {
        self.ready().run()
    }

    /// Everything [`Ready::run`] needs, allocated and looked up now: a
    /// forkserver makes it before it forks, so that its child runs no
    /// allocator and no lookup (each a page fault or several in a fork
    /// child).
    pub(crate) fn ready(self) -> Ready {
        let entry = registry::lookup(&self.entry);
        Ready {
            me: children::Me {
                identity: self.identity,
                name: self.name.clone(),
                daemon: self.daemon,
                parent: Some(children::Parent {
                    pid: self.parent_pid,
                    name: self.parent_name,
                    pidfd: (self.parent_pidfd >= 0).then_some(self.parent_pidfd),
                }),
            },
            entry,
            arg: self.arg,
            name: self.name,
            lifeline_fd: self.lifeline_fd,
            inherited: self.inherited,
            stdout: std::io::stdout(),
        }
    }
}

/// A [`LaunchSpec`] ready to run (see [`LaunchSpec::ready`]).
pub(crate) struct Ready {
    me: children::Me,
    entry: Result<Entry>,
    arg: Vec<u8>,
    name: String,
    lifeline_fd: i32,
    inherited: Vec<i32>,
    stdout: std::io::Stdout,
}

impl Ready {
    /// Becomes the process described, runs the entry and exits with its
    /// code (see [`LaunchSpec::run`]). Inlined into a forkserver child's
    /// path, as `fork::start` inlines its child's.
    #[inline(always)]
    pub(crate) fn run(self) -> ! {
        self.run_with(children::lock())
    }

    /// [`Ready::run`] with the table of children locked already: a
    /// forkserver holds the lock across its fork, so that its child does
    /// not run the locking code (a page fault in a fork child).
    #[inline(always)]
    pub(crate) fn run_with(self, mut table: MutexGuard<'static, Children>) -> ! {
        if self.lifeline_fd >= 0 {
            lifeline::arm(self.lifeline_fd);
        }
        for &fd in &self.inherited {
            if fd > 2 && sys::fd_is_open(fd) {
                // SAFETY: open (checked just above), passed to this process
                // for multiproc; borrowed for the call only.
                let _ = sys::set_cloexec(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, true);
            }
        }
        table.become_child(self.me);
        drop(table);
        match self.entry {
            Ok(entry) => exit::run_child(|| entry.call(&self.arg), &self.name, &self.stdout),
            Err(e) => not_registered(&self.name, &e),
        }
    }
}

/// The report of an entry this run of the program does not have; exits
/// with code 1.
#[cold]
#[inline(never)]
fn not_registered(name: &str, e: &Error) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "Process {name} (pid {}): {e}",
        sys::getpid()
    );
    sys::exit_immediately(1)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(Error::Invalid(format!(
                "launch payload ends inside the field {what}"
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8]> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::Invalid(format!("launch payload: {what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LaunchSpec {
        LaunchSpec {
            entry: "work".into(),
            arg: vec![0, 1, 255],
            name: "Process-3".into(),
            identity: vec![3],
            daemon: true,
            parent_pid: 77,
            parent_name: "MainProcess".into(),
            lifeline_fd: 9,
            parent_pidfd: -1,
            inherited: vec![5, 6],
        }
    }

    #[test]
    fn round_trips_through_a_memfd() {
        let spec = sample();
        let fd = spec.to_memfd().unwrap();
        assert_eq!(LaunchSpec::from_fd(fd).unwrap(), spec);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let data = sample().encode();
        for len in 0..data.len() {
            let err = LaunchSpec::decode(&data[..len]).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{len}: {err}");
        }
        let mut long = data.clone();
        long.push(0);
        assert!(matches!(LaunchSpec::decode(&long), Err(Error::Invalid(_))));
    }

    #[test]
    fn bad_fields_are_errors() {
        let mut spec = sample();
        spec.entry = String::new();
        assert!(LaunchSpec::decode(&spec.encode()).is_err());
        let mut data = sample().encode();
        // The daemon flag sits right before the parent pid.
        let flag_at = data.len() - (4 + 8) - 4 - 4 - (4 + 11) - 4 - 1;
        data[flag_at] = 7;
        assert!(LaunchSpec::decode(&data).is_err());
    }
}
