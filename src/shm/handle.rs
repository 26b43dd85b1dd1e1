//! Handles: the text that names a shared object to another process.
//!
//! ```text
//! mp1:anon:<creator pid>:<segment id>:<offset>:<kind>
//! mp1:memfd:<descriptor>:<segment id>:<offset>:<kind>
//! mp1:shm:<name in /dev/shm>:<segment id>:<offset>:<kind>
//! ```
//!
//! The segment id is 16 hex digits, the offset decimal, the kind a name
//! such as `lock`. The form is stable: it may travel through argv, the
//! environment, a pipe or a C string. Parsing is an input boundary: every
//! malformed text is an [`Error::Invalid`] saying what was expected.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sys;

use super::object::ObjectKind;
use super::registry;
use super::segment::{Mapping, Segment, Source};

/// Which process resource holds the segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Locator {
    /// An anonymous mapping of this creator: reachable only in the creator
    /// and its fork children.
    Anonymous {
        /// The creating process.
        creator: i32,
    },
    /// A memfd, as this descriptor number in the process that reads the handle.
    Memfd {
        /// The descriptor number.
        fd: i32,
    },
    /// A `/dev/shm` name (without the leading `/`).
    Named {
        /// The name.
        name: String,
    },
}

/// Names one object for another process: its segment, offset and kind.
///
/// # Example
///
/// ```
/// use multiproc::shm::{Backing, Handle, SharedMemory};
///
/// let mem = SharedMemory::new(64, Backing::Memfd)?;
/// let text = mem.handle().to_string();
/// let parsed: Handle = text.parse()?;
/// assert_eq!(parsed, mem.handle());
/// let again = SharedMemory::open(&parsed)?;
/// assert_eq!(again.as_ptr(), mem.as_ptr());
/// assert!("mp1:memfd:x".parse::<Handle>().is_err());
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle {
    pub(crate) locator: Locator,
    pub(crate) segment_id: u64,
    pub(crate) offset: u64,
    pub(crate) kind: ObjectKind,
}

const VERSION_TAG: &str = "mp1";
const MAX_NAME: usize = 200;

impl Handle {
    /// The kind of object this handle names.
    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    /// Where the segment lives.
    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// The byte offset of the object's header in its segment.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The same handle with the memfd descriptor renumbered, for a process
    /// that received the descriptor under another number (`SCM_RIGHTS`).
    pub fn with_fd(&self, fd: i32) -> Result<Handle> {
        match self.locator {
            Locator::Memfd { .. } => Ok(Handle {
                locator: Locator::Memfd { fd },
                ..self.clone()
            }),
            _ => Err(Error::Invalid(
                "only a memfd handle carries a descriptor".into(),
            )),
        }
    }

    /// Maps (or finds already mapped) the segment this handle names.
    pub(crate) fn attach_segment(&self) -> Result<Segment> {
        if let Some(map) = registry::lookup(self.segment_id) {
            return Ok(Segment { map });
        }
        let source = match &self.locator {
            Locator::Anonymous { creator } => {
                return Err(Error::NotFound(format!(
                    "anonymous segment {:016x} of process {creator} is reachable only in its \
                     creator and fork children; use a memfd or named segment to share it further",
                    self.segment_id
                )));
            }
            Locator::Memfd { fd } => {
                if *fd < 0 {
                    return Err(Error::Invalid(format!("descriptor {fd} is negative")));
                }
                let number = *fd;
                // SAFETY: only borrowed for the fcntl below, which fails
                // with EBADF if `fd` is not open; the dup is ours to own.
                let borrowed = unsafe { BorrowedFd::borrow_raw(number) };
                let fd = sys::dup_cloexec(borrowed).map_err(|e| {
                    Error::NotFound(format!("memfd descriptor {fd} of the handle: {e}"))
                })?;
                // A file whose size can change under our mapping could be
                // shrunk by whoever holds it, and a later access would be
                // SIGBUS: every memfd segment we create is sealed.
                if !sys::is_size_sealed(fd.as_fd()).map_err(|e| Error::os("F_GET_SEALS", e))? {
                    return Err(Error::Invalid(format!(
                        "descriptor {number} is not a multiproc segment (its size is not sealed)"
                    )));
                }
                Source::Memfd(fd)
            }
            Locator::Named { name } => {
                let path = format!("/{name}");
                let fd = sys::shm_open(&path, false).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Error::NotFound(format!("shared memory {path}"))
                    } else {
                        Error::os(format!("shm_open {path}"), e)
                    }
                })?;
                Source::Named {
                    name: path,
                    fd,
                    owner: false,
                }
            }
        };
        let fd = match &source {
            Source::Memfd(fd) | Source::Named { fd, .. } => fd.as_fd(),
            Source::Anonymous => unreachable!("returned above"),
        };
        let len = sys::fstat_size(fd).map_err(|e| Error::os("fstat", e))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= super::segment::FIRST_OBJECT_OFFSET && *l <= isize::MAX as usize / 2)
            .ok_or_else(|| Error::Invalid(format!("segment file of {len} bytes")))?;
        let map = Mapping::map(source, len, self.segment_id)?;
        map.check_header(Some(self.segment_id))?;
        let map = Arc::new(map);
        registry::remember(&map);
        Ok(Segment { map })
    }

    /// The handle of the object at `offset` of `segment`.
    pub(crate) fn of(segment: &Segment, offset: usize, kind: ObjectKind) -> Handle {
        let locator = match segment.backing() {
            super::Backing::Anonymous => Locator::Anonymous {
                creator: sys::getpid(),
            },
            super::Backing::Memfd => Locator::Memfd {
                fd: segment
                    .fd()
                    .map(|fd| std::os::fd::AsRawFd::as_raw_fd(&fd))
                    .unwrap_or(-1),
            },
            super::Backing::Named => Locator::Named {
                name: segment
                    .name()
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_owned(),
            },
        };
        Handle {
            locator,
            segment_id: segment.id(),
            offset: offset as u64,
            kind,
        }
    }
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (backing, place) = match &self.locator {
            Locator::Anonymous { creator } => ("anon", creator.to_string()),
            Locator::Memfd { fd } => ("memfd", fd.to_string()),
            Locator::Named { name } => ("shm", name.clone()),
        };
        write!(
            f,
            "{VERSION_TAG}:{backing}:{place}:{:016x}:{}:{}",
            self.segment_id,
            self.offset,
            self.kind.name()
        )
    }
}

fn bad(text: &str, what: &str) -> Error {
    let shown: String = text.chars().take(80).collect();
    Error::Invalid(format!(
        "handle {shown:?}: {what} (expected mp1:<anon|memfd|shm>:<place>:<16 hex id>:<offset>:<kind>)"
    ))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl FromStr for Handle {
    type Err = Error;

    fn from_str(text: &str) -> Result<Handle> {
        let fields: Vec<&str> = text.split(':').collect();
        let [tag, backing, place, id, offset, kind] = fields[..] else {
            return Err(bad(text, "not six ':'-separated fields"));
        };
        if tag != VERSION_TAG {
            return Err(bad(text, "unknown handle version tag"));
        }
        let locator = match backing {
            "anon" => Locator::Anonymous {
                creator: place
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(text, "creator pid is not a positive number"))?,
            },
            "memfd" => Locator::Memfd {
                fd: place
                    .parse()
                    .ok()
                    .filter(|fd| *fd >= 0)
                    .ok_or_else(|| bad(text, "descriptor is not a non-negative number"))?,
            },
            "shm" if valid_name(place) => Locator::Named {
                name: place.to_owned(),
            },
            "shm" => {
                return Err(bad(
                    text,
                    "shared memory name has characters outside [A-Za-z0-9._-]",
                ));
            }
            _ => return Err(bad(text, "backing is not anon, memfd or shm")),
        };
        if id.len() != 16 {
            return Err(bad(text, "segment id is not 16 hex digits"));
        }
        let segment_id = u64::from_str_radix(id, 16)
            .map_err(|_| bad(text, "segment id is not 16 hex digits"))?;
        let offset = offset
            .parse()
            .map_err(|_| bad(text, "offset is not a decimal number"))?;
        let kind = ObjectKind::from_name(kind).ok_or_else(|| bad(text, "unknown object kind"))?;
        Ok(Handle {
            locator,
            segment_id,
            offset,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for text in [
            "mp1:anon:123:00000000deadbeef:64:lock",
            "mp1:memfd:7:0123456789abcdef:128:queue",
            "mp1:shm:mp-1-2-0011223344556677:0123456789abcdef:64:bytes",
        ] {
            let h: Handle = text.parse().unwrap();
            assert_eq!(h.to_string(), text);
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (text, why) in [
            ("", "six"),
            ("mp1:memfd:7:0123456789abcdef:128", "six"),
            ("mp2:memfd:7:0123456789abcdef:128:lock", "version"),
            ("mp1:disk:7:0123456789abcdef:128:lock", "backing"),
            ("mp1:memfd:-3:0123456789abcdef:128:lock", "descriptor"),
            ("mp1:memfd:x:0123456789abcdef:128:lock", "descriptor"),
            ("mp1:anon:0:0123456789abcdef:128:lock", "pid"),
            ("mp1:shm:../etc:0123456789abcdef:128:lock", "name"),
            ("mp1:shm::0123456789abcdef:128:lock", "name"),
            ("mp1:memfd:7:0123:128:lock", "16 hex"),
            ("mp1:memfd:7:0123456789abcdeg:128:lock", "16 hex"),
            ("mp1:memfd:7:0123456789abcdef:-1:lock", "offset"),
            ("mp1:memfd:7:0123456789abcdef:64:spoon", "kind"),
        ] {
            let err = text.parse::<Handle>().unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{text}: {err}");
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }
}
