//! Segments: one shared mapping holding several objects.

use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sys;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{named, registry};

/// The header at offset 0 of every segment. Written by the creator before
/// anybody else can see the segment; afterwards only `alloc_top` changes.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SegmentHeader {
    /// [`SEGMENT_MAGIC`] once initialized. Stored last, with Release;
    /// see SYNC(segment-published).
    magic: AtomicU64,
    /// [`SEGMENT_LAYOUT_VERSION`] of the creator's build.
    version: u32,
    /// `size_of::<SegmentHeader>()` of the creator's build.
    header_size: u32,
    /// Random identity, repeated in every handle, so a descriptor or name
    /// that now refers to another segment is detected.
    id: u64,
    /// Mapped length in bytes (the file size).
    len: u64,
    /// Next free byte offset. Only grows, by CAS, from
    /// [`FIRST_OBJECT_OFFSET`] to at most `len`.
    alloc_top: AtomicU64,
    /// The pid that created the segment (diagnostics).
    creator_pid: u32,
    _reserved: u32,
}

/// `"MPSEGv1\0"`.
const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"MPSEGv1\0");
/// The version of [`SegmentHeader`]'s layout.
pub(crate) const SEGMENT_LAYOUT_VERSION: u32 = 1;
/// Objects start on their own cache line after the header.
pub(crate) const FIRST_OBJECT_OFFSET: usize = 64;

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<SegmentHeader>() == 48);
    assert!(size_of::<SegmentHeader>() <= FIRST_OBJECT_OFFSET);
};

/// Where a segment's pages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backing {
    /// `MAP_SHARED | MAP_ANONYMOUS`: seen by fork children only.
    Anonymous,
    /// A `memfd`: seen by fork children, and by any process the descriptor
    /// is passed to (exec with the descriptor kept open, `SCM_RIGHTS`).
    Memfd,
    /// A POSIX shared memory name in `/dev/shm`: any process of the same
    /// user that knows the name. Unlinked by its creator when dropped, and
    /// swept when the creator died (see [`sweep_orphans`](super::sweep_orphans)).
    Named,
}

/// What keeps the pages alive besides the mapping.
#[derive(Debug)]
pub(crate) enum Source {
    Anonymous,
    Memfd(OwnedFd),
    /// `name` starts with `/`. `owner`: this process created it and unlinks it.
    Named {
        name: String,
        fd: OwnedFd,
        owner: bool,
    },
}

/// One mapping of a segment in this process. Shared by every [`Segment`]
/// clone; unmapped when the last goes.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    id: u64,
    source: Source,
    /// The process that made this mapping. A fork child inherits the
    /// `Mapping` but must not unlink a name it does not own.
    mapped_by: i32,
}

// SAFETY: the mapping is plain shared memory; all access to its contents
// goes through atomics or the ShmSafe rules, from any thread.
unsafe impl Send for Mapping {}
// SAFETY: as for Send: `&Mapping` only hands out the base address.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        registry::forget(self.id, self);
        // SAFETY: base/len are exactly one live mapping made in `map`, and
        // the last reference to it (this Mapping) is going away.
        let _ = unsafe { sys::munmap(self.base, self.len) };
        if let Source::Named {
            name, owner: true, ..
        } = &self.source
            && self.mapped_by == sys::getpid()
        {
            named::unlink_owned(name);
        }
    }
}

/// A shared segment: a mapping of shared pages holding several objects.
///
/// Clones share one mapping. A fork child inherits the mapping at the same
/// address; other processes attach through a [`Handle`](super::Handle).
///
/// # Example
///
/// ```
/// use multiproc::shm::{Backing, Segment, SharedMemory};
///
/// let seg = Segment::create(Backing::Memfd, 4096)?;
/// let a = SharedMemory::new_in(&seg, 100)?;
/// let b = SharedMemory::new_in(&seg, 100)?;
/// assert_ne!(a.as_ptr(), b.as_ptr());
/// assert_eq!(a.handle().to_string().split(':').nth(1), Some("memfd"));
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Segment {
    pub(crate) map: Arc<Mapping>,
}

impl Segment {
    /// A new zeroed segment of at least `capacity` bytes (rounded up to the
    /// page size), header included.
    pub fn create(backing: Backing, capacity: usize) -> Result<Segment> {
        let len = capacity
            .max(FIRST_OBJECT_OFFSET + 64)
            .checked_next_multiple_of(page_size())
            .filter(|l| *l <= isize::MAX as usize / 2)
            .ok_or(Error::TooLarge {
                len: capacity,
                max: isize::MAX as usize / 2,
            })?;
        let id = sys::getrandom_u64().map_err(|e| Error::os("getrandom", e))?;
        let source = match backing {
            Backing::Anonymous => Source::Anonymous,
            Backing::Memfd => {
                let fd = sys::memfd_create_sealable("multiproc")
                    .map_err(|e| Error::os("memfd_create", e))?;
                sys::ftruncate(fd.as_fd(), len as u64).map_err(|e| Error::os("ftruncate", e))?;
                // The size is sealed so that no process the descriptor
                // reaches can shrink the file under the others' mappings.
                sys::seal_size(fd.as_fd()).map_err(|e| Error::os("F_ADD_SEALS", e))?;
                Source::Memfd(fd)
            }
            Backing::Named => {
                let (name, fd) = named::create(len)?;
                Source::Named {
                    name,
                    fd,
                    owner: true,
                }
            }
        };
        let map = Mapping::map(source, len, id)?;
        let header = map.header_ptr();
        // SAFETY: the mapping is fresh, zeroed, at least a page long and
        // page-aligned, so it holds a SegmentHeader that nobody else can see
        // yet (it is published below).
        unsafe {
            header.write(SegmentHeader {
                magic: AtomicU64::new(0),
                version: SEGMENT_LAYOUT_VERSION,
                header_size: size_of::<SegmentHeader>() as u32,
                id,
                len: len as u64,
                alloc_top: AtomicU64::new(FIRST_OBJECT_OFFSET as u64),
                creator_pid: sys::getpid() as u32,
                _reserved: 0,
            });
            // SYNC(segment-published): pairs with the Acquire load in
            // `Mapping::check_header` of an attaching process.
            (*header).magic.store(SEGMENT_MAGIC, Ordering::Release);
        }
        let map = Arc::new(map);
        registry::remember(&map);
        Ok(Segment { map })
    }

    /// The mapped length in bytes.
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Always false: a segment holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Where the pages come from.
    pub fn backing(&self) -> Backing {
        match self.map.source {
            Source::Anonymous => Backing::Anonymous,
            Source::Memfd(_) => Backing::Memfd,
            Source::Named { .. } => Backing::Named,
        }
    }

    /// The random identity stored in the segment header.
    pub fn id(&self) -> u64 {
        self.map.id
    }

    /// The `/dev/shm` name of a [`Backing::Named`] segment.
    pub fn name(&self) -> Option<&str> {
        match &self.map.source {
            Source::Named { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The descriptor of a memfd or named segment (for passing to a child).
    pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.map.source {
            Source::Anonymous => None,
            Source::Memfd(fd) | Source::Named { fd, .. } => Some(fd.as_fd()),
        }
    }

    /// The start of the mapping in this process.
    pub fn base(&self) -> NonNull<u8> {
        self.map.base
    }

    /// Reserves `size` bytes aligned to `align` and returns their offset.
    /// The bytes are zero (segments start zeroed and are never reused).
    pub(crate) fn alloc(&self, size: usize, align: usize) -> Result<usize> {
        let header = self.map.header();
        // Relaxed: the allocator only hands out disjoint ranges; nothing is
        // published through alloc_top (objects are published by their magic).
        let mut top = header.alloc_top.load(Ordering::Relaxed);
        loop {
            let start = (top as usize).next_multiple_of(align);
            let end = start.checked_add(size).filter(|e| *e <= self.map.len);
            let Some(end) = end else {
                return Err(Error::TooLarge {
                    len: size,
                    max: self.map.len.saturating_sub(start),
                });
            };
            match header.alloc_top.compare_exchange_weak(
                top,
                end as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(start),
                Err(now) => top = now,
            }
        }
    }

    /// Bytes still free (approximate when others allocate concurrently).
    pub fn free_bytes(&self) -> usize {
        // Relaxed: a snapshot.
        let top = self.map.header().alloc_top.load(Ordering::Relaxed) as usize;
        self.map.len.saturating_sub(top)
    }
}

impl Mapping {
    /// Maps `len` bytes of `source` (which must be at least that long).
    pub(crate) fn map(source: Source, len: usize, id: u64) -> Result<Mapping> {
        let fd = match &source {
            Source::Anonymous => None,
            Source::Memfd(fd) | Source::Named { fd, .. } => Some(fd.as_fd()),
        };
        // SAFETY: the Mapping we return owns the range and unmaps it once,
        // in Drop, with the same length.
        let base = unsafe { sys::mmap_shared(fd, len) }.map_err(|e| Error::os("mmap", e))?;
        Ok(Mapping {
            base,
            len,
            id,
            source,
            mapped_by: sys::getpid(),
        })
    }

    /// The memfd descriptor number, if this mapping is a memfd's.
    pub(crate) fn memfd_raw(&self) -> Option<i32> {
        match &self.source {
            Source::Memfd(fd) => Some(std::os::fd::AsRawFd::as_raw_fd(fd)),
            _ => None,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn header_ptr(&self) -> *mut SegmentHeader {
        self.base.as_ptr().cast()
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: every Mapping handed out by `Segment` has a published,
        // checked header at offset 0 (see `create` and `check_header`).
        unsafe { &*self.header_ptr() }
    }

    /// Checks the header of a segment made elsewhere: magic, version, size,
    /// length and, when given, the id a handle expects.
    pub(crate) fn check_header(&self, expect_id: Option<u64>) -> Result<()> {
        if self.len < FIRST_OBJECT_OFFSET {
            return Err(Error::Invalid(format!(
                "segment of {} bytes is too short for a header",
                self.len
            )));
        }
        // SAFETY: the mapping is at least FIRST_OBJECT_OFFSET bytes, page
        // aligned, so the header's bytes are readable; every field is valid
        // for any bit pattern (integers and atomics).
        let h = unsafe { &*self.header_ptr() };
        // SYNC(segment-published): pairs with the creator's Release store.
        if h.magic.load(Ordering::Acquire) != SEGMENT_MAGIC {
            return Err(Error::Invalid(
                "not a multiproc segment (bad magic in the segment header)".into(),
            ));
        }
        if h.version != SEGMENT_LAYOUT_VERSION
            || h.header_size as usize != size_of::<SegmentHeader>()
        {
            return Err(Error::Version {
                expected: SEGMENT_LAYOUT_VERSION,
                found: h.version,
            });
        }
        if h.len != self.len as u64 {
            return Err(Error::Invalid(format!(
                "segment header says {} bytes but {} are mapped",
                h.len, self.len
            )));
        }
        if let Some(id) = expect_id
            && id != h.id
        {
            return Err(Error::NotFound(format!(
                "segment {id:016x}: the descriptor or name now refers to segment {:016x}",
                h.id
            )));
        }
        Ok(())
    }
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    sys::page_size()
}
