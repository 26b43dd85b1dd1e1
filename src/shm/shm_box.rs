//! `ShmBox<T>`: one typed object in a segment.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU32, Ordering};

use super::object::{OBJECT_MAGIC, ObjectHeader, ObjectKind, ObjectLayout, ShmObject};
use super::segment::FIRST_OBJECT_OFFSET;
use super::{Handle, Segment, default_backing};

/// One object of type `T` in a shared segment: an object header, the
/// `T`, and an optional trailing region of bytes (array elements, ring
/// slots). Clones refer to the same object.
///
/// It hands out only shared references: every change to a shared object
/// goes through its atomics (interior mutability), because other processes
/// may be using it at the same time.
///
/// A fork child inherits a `ShmBox` as it is; other processes get one with
/// [`ShmBox::open`] from its [`Handle`].
#[derive(Debug)]
pub struct ShmBox<T: ShmObject> {
    segment: Segment,
    /// Offset of the object header in the segment.
    offset: usize,
    /// The `T`, inside the segment's mapping.
    value: NonNull<T>,
    /// The trailing region, inside the mapping.
    tail: NonNull<u8>,
    tail_len: usize,
    _owns: PhantomData<T>,
}

// SAFETY: a ShmBox only gives `&T`; sending it to another thread is sharing
// `&T`, which is sound when `T: Sync`. The mapping itself is Send + Sync.
unsafe impl<T: ShmObject + Sync> Send for ShmBox<T> {}
// SAFETY: as for Send.
unsafe impl<T: ShmObject + Sync> Sync for ShmBox<T> {}

impl<T: ShmObject> Clone for ShmBox<T> {
    fn clone(&self) -> Self {
        ShmBox {
            segment: self.segment.clone(),
            ..*self
        }
    }
}

impl<T: ShmObject> Deref for ShmBox<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `value` points to an initialized, aligned T inside the
        // mapping that `self.segment` keeps alive; only shared references
        // are ever made to it.
        unsafe { self.value.as_ref() }
    }
}

impl<T: ShmObject> ShmBox<T> {
    /// Places `value` in a new segment of its own, of the default backing
    /// ([`set_default_backing`](super::set_default_backing); memfd unless changed).
    pub fn new(value: T) -> Result<Self> {
        Self::with_tail(value, 0, 1)
    }

    /// Places `value` in `segment`.
    pub fn new_in(segment: &Segment, value: T) -> Result<Self> {
        Self::with_tail_in(segment, value, 0, 1)
    }

    /// Places `value` followed by `tail_len` zeroed bytes aligned to
    /// `tail_align` in a new segment of its own.
    pub fn with_tail(value: T, tail_len: usize, tail_align: usize) -> Result<Self> {
        let layout = ObjectLayout::of::<T>(tail_len, tail_align)?;
        let align = ObjectLayout::align_of::<T>(tail_align);
        let capacity = FIRST_OBJECT_OFFSET
            .next_multiple_of(align)
            .checked_add(layout.total)
            .ok_or(Error::TooLarge {
                len: tail_len,
                max: isize::MAX as usize / 2,
            })?;
        let segment = Segment::create(default_backing(), capacity)?;
        Self::with_tail_in(&segment, value, tail_len, tail_align)
    }

    /// Places `value` followed by `tail_len` zeroed bytes aligned to
    /// `tail_align` in `segment`.
    pub fn with_tail_in(
        segment: &Segment,
        value: T,
        tail_len: usize,
        tail_align: usize,
    ) -> Result<Self> {
        let layout = ObjectLayout::of::<T>(tail_len, tail_align)?;
        let offset = segment.alloc(layout.total, ObjectLayout::align_of::<T>(tail_align))?;
        // SAFETY: `alloc` reserved `layout.total` bytes at `offset`, aligned
        // for the header, T and the tail, inside the mapping, for this
        // object alone; nobody can see them before the magic is published.
        unsafe {
            let base = segment.base().as_ptr().add(offset);
            base.cast::<ObjectHeader>().write(ObjectHeader {
                magic: AtomicU32::new(0),
                kind: T::KIND as u32,
                version: T::VERSION,
                payload_offset: layout.payload_offset as u32,
                payload_size: size_of::<T>() as u64,
                tail_offset: layout.tail_offset as u64,
                tail_len: layout.tail_len as u64,
            });
            base.add(layout.payload_offset).cast::<T>().write(value);
            // SYNC(object-published): pairs with the Acquire load in
            // `from_segment` of a process attaching through a handle.
            (*base.cast::<ObjectHeader>())
                .magic
                .store(OBJECT_MAGIC, Ordering::Release);
        }
        Self::from_segment(segment.clone(), offset)
    }

    /// Attaches to the object a handle names (in this or another process):
    /// maps its segment if needed and checks the object header.
    ///
    /// Errors: [`Error::Kind`] for a handle of another kind of object,
    /// [`Error::Version`] for an incompatible layout, [`Error::Invalid`] for an
    /// offset outside the segment or no object there, [`Error::NotFound`]
    /// when the segment cannot be reached.
    pub fn open(handle: &Handle) -> Result<Self> {
        if handle.kind != T::KIND {
            return Err(Error::Kind {
                expected: T::KIND.name(),
                found: handle.kind.name().to_owned(),
            });
        }
        let segment = handle.attach_segment()?;
        let offset = usize::try_from(handle.offset).unwrap_or(usize::MAX);
        Self::from_segment(segment, offset)
    }

    /// Checks the header at `offset` and builds the box.
    fn from_segment(segment: Segment, offset: usize) -> Result<Self> {
        let len = segment.len();
        let header_end = offset.checked_add(size_of::<ObjectHeader>());
        if offset < FIRST_OBJECT_OFFSET
            || !offset.is_multiple_of(align_of::<ObjectHeader>())
            || header_end.is_none_or(|end| end > len)
        {
            return Err(Error::Invalid(format!(
                "object offset {offset} is outside the segment of {len} bytes or misaligned"
            )));
        }
        // SAFETY: the header's bytes lie inside the mapping (checked above),
        // aligned; all its fields are valid for any bit pattern.
        let header = unsafe { &*segment.base().as_ptr().add(offset).cast::<ObjectHeader>() };
        // SYNC(object-published): pairs with the creator's Release store.
        if header.magic.load(Ordering::Acquire) != OBJECT_MAGIC {
            return Err(Error::Invalid(format!(
                "no object at offset {offset} (bad magic in the object header)"
            )));
        }
        if header.kind != T::KIND as u32 {
            return Err(Error::Kind {
                expected: T::KIND.name(),
                found: ObjectKind::from_raw(header.kind).map_or_else(
                    || format!("unknown kind {}", header.kind),
                    |k| k.name().to_owned(),
                ),
            });
        }
        if header.version != T::VERSION {
            return Err(Error::Version {
                expected: T::VERSION,
                found: header.version,
            });
        }
        let corrupt = |what: &str| {
            Error::Invalid(format!("corrupt object header at offset {offset}: {what}"))
        };
        let expected = ObjectLayout::of::<T>(0, 1)?;
        if header.payload_offset as usize != expected.payload_offset
            || header.payload_size != size_of::<T>() as u64
        {
            return Err(corrupt(
                "payload placement differs from this build's layout",
            ));
        }
        let room = (len - offset) as u64;
        let tail_start = expected.payload_offset as u64 + size_of::<T>() as u64;
        if header.tail_offset < tail_start
            || header.tail_offset > room
            || header.tail_len > room - header.tail_offset
        {
            return Err(corrupt("trailing region outside the segment"));
        }
        // SAFETY: only pointer arithmetic: payload and tail lie inside the
        // mapping (bounds checked above). The payload's alignment is checked
        // next, before any reference to it is made.
        let (value, tail) = unsafe {
            let base = segment.base().as_ptr().add(offset);
            (
                base.add(expected.payload_offset).cast::<T>(),
                base.add(header.tail_offset as usize),
            )
        };
        if value.align_offset(align_of::<T>()) != 0 {
            return Err(corrupt("payload misaligned"));
        }
        Ok(ShmBox {
            offset,
            value: NonNull::new(value).expect("inside a mapping"),
            tail: NonNull::new(tail).expect("inside a mapping"),
            tail_len: header.tail_len as usize,
            segment,
            _owns: PhantomData,
        })
    }

    /// The trailing region (zeroed at creation), `tail_len()` bytes.
    pub fn tail(&self) -> NonNull<u8> {
        self.tail
    }

    /// Length of the trailing region in bytes.
    pub fn tail_len(&self) -> usize {
        self.tail_len
    }

    /// The handle that names this object to another process.
    pub fn handle(&self) -> Handle {
        Handle::of(&self.segment, self.offset, T::KIND)
    }

    /// The segment holding the object.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }
}
