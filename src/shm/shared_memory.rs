//! `SharedMemory`: a block of raw shared bytes (Python's
//! `multiprocessing.shared_memory.SharedMemory`).

use std::ptr::NonNull;

use crate::error::{Error, Result};
use std::sync::atomic::AtomicU64;

use super::object::{ObjectKind, ShmObject};
use super::{Backing, Handle, Segment, ShmBox, ShmSafe};

/// The fixed part of a bytes object; the bytes are its trailing region.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct BytesHead {
    /// The usable length the creator asked for (the tail may be longer).
    len: u64,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<BytesHead>() == 8);

// SAFETY: repr(C), one u64: no pointers, no destructor, any bit pattern.
unsafe impl ShmSafe for BytesHead {}
// SAFETY: the only type stored under ObjectKind::Bytes, version 1.
unsafe impl ShmObject for BytesHead {
    const KIND: ObjectKind = ObjectKind::Bytes;
    const VERSION: u32 = 1;
}

/// Alignment of the bytes: a cache line, so typed views of any primitive fit.
const BYTES_ALIGN: usize = 64;

/// A block of shared bytes, zeroed at creation.
///
/// # Example
///
/// A fork child writes, the parent reads:
///
/// ```
/// use multiproc::shm::{Backing, SharedMemory};
/// use std::sync::atomic::Ordering;
///
/// let mem = SharedMemory::new(4096, Backing::Anonymous)?;
/// mem.as_atomic_u64()[3].store(42, Ordering::Relaxed);
/// assert_eq!(mem.as_atomic_u64()[3].load(Ordering::Relaxed), 42);
/// assert_eq!(mem.len(), 4096);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SharedMemory {
    obj: ShmBox<BytesHead>,
}

impl SharedMemory {
    /// A new zeroed block of `len` bytes in a segment of its own.
    pub fn new(len: usize, backing: Backing) -> Result<Self> {
        check_len(len)?;
        let segment = Segment::create(backing, super::segment::FIRST_OBJECT_OFFSET * 2 + len)?;
        Self::new_in(&segment, len)
    }

    /// A new zeroed block of `len` bytes inside `segment`.
    pub fn new_in(segment: &Segment, len: usize) -> Result<Self> {
        check_len(len)?;
        let obj = ShmBox::with_tail_in(segment, BytesHead { len: len as u64 }, len, BYTES_ALIGN)?;
        Ok(SharedMemory { obj })
    }

    /// Attaches to the block a handle names.
    pub fn open(handle: &Handle) -> Result<Self> {
        let obj = ShmBox::<BytesHead>::open(handle)?;
        if obj.len > obj.tail_len() as u64 {
            return Err(Error::Invalid(format!(
                "corrupt bytes object: length {} beyond its region of {}",
                obj.len,
                obj.tail_len()
            )));
        }
        Ok(SharedMemory { obj })
    }

    /// The handle that names this block to another process.
    pub fn handle(&self) -> Handle {
        self.obj.handle()
    }

    /// The segment holding the block.
    pub fn segment(&self) -> &Segment {
        self.obj.segment()
    }

    /// The first byte. Valid while `self` (or a clone) lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.obj.tail().as_ptr()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.obj.len as usize
    }

    /// Always false: a block has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block as 64-bit atomics (`len() / 8` of them). Relaxed loads and
    /// stores compile to plain moves.
    pub fn as_atomic_u64(&self) -> &[AtomicU64] {
        self.atomic_view()
    }

    /// The block as 32-bit atomics (`len() / 4` of them).
    pub fn as_atomic_u32(&self) -> &[std::sync::atomic::AtomicU32] {
        self.atomic_view()
    }

    /// The block as byte atomics.
    pub fn as_atomic_u8(&self) -> &[std::sync::atomic::AtomicU8] {
        self.atomic_view()
    }

    fn atomic_view<A: ShmSafe + Sync>(&self) -> &[A] {
        let ptr: NonNull<A> = self.obj.tail().cast();
        debug_assert_eq!(ptr.as_ptr().align_offset(align_of::<A>()), 0);
        // SAFETY: the region is `len()` bytes inside the live mapping,
        // aligned to 64 (BYTES_ALIGN) which covers every atomic's alignment;
        // atomics are valid for any bit pattern and only ever shared.
        unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.len() / size_of::<A>()) }
    }

    /// Maps the pages holding bytes `range` into this process now, in one
    /// system call (`MADV_POPULATE_WRITE`), instead of taking one page fault
    /// per 4 KiB page at first touch. A fork child inherits the block but
    /// not its page-table entries: a worker about to write a large part
    /// calls this for that part first. The contents are unchanged. A no-op
    /// on kernels before 5.14.
    ///
    /// # Example
    ///
    /// ```
    /// use multiproc::shm::{Backing, SharedMemory};
    ///
    /// let mem = SharedMemory::new(1 << 20, Backing::Anonymous)?;
    /// mem.prefault(0..mem.len())?;
    /// assert!(mem.prefault(0..mem.len() + 1).is_err());
    /// # Ok::<(), multiproc::Error>(())
    /// ```
    pub fn prefault(&self, range: std::ops::Range<usize>) -> Result<()> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::Invalid(format!(
                "range {range:?} is outside the block of {} bytes",
                self.len()
            )));
        }
        if range.is_empty() {
            return Ok(());
        }
        let page = crate::sys::page_size();
        let base = self.as_ptr() as usize;
        let first = (base + range.start) / page * page;
        let last = (base + range.end).next_multiple_of(page);
        let ptr = NonNull::new(first as *mut u8).expect("inside a mapping");
        // SAFETY: the pages from `first` to `last` hold only bytes of this
        // block's segment mapping (segments are whole pages, the block lies
        // inside), which is live and writable while `self` is.
        match unsafe { crate::sys::madvise_populate_write(ptr, last - first) } {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(Error::os("madvise(MADV_POPULATE_WRITE)", e)),
        }
    }

    /// The bytes as a slice.
    ///
    /// # Safety
    ///
    /// - No process (or thread) writes the block while the slice is alive;
    ///   otherwise this is a data race.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: in bounds of the live mapping; the caller rules out writers.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The bytes as a mutable slice.
    ///
    /// # Safety
    ///
    /// - Nobody else (no other process, thread or slice) reads or writes
    ///   the block while the slice is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: in bounds of the live mapping; the caller promises
        // exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }
}

fn check_len(len: usize) -> Result<()> {
    if len == 0 {
        return Err(Error::Invalid(
            "shared memory length must be positive".into(),
        ));
    }
    Ok(())
}
