//! Object headers: what every shared object starts with, and the central
//! list of object kinds.

use crate::error::{Error, Result};
use std::sync::atomic::AtomicU32;

use super::ShmSafe;

/// `"MPOB"`: marks a completely initialized object header.
pub(crate) const OBJECT_MAGIC: u32 = u32::from_le_bytes(*b"MPOB");

/// Which kind of object a header describes. The numbers are stored in
/// shared memory and never change meaning.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectKind {
    /// Raw bytes ([`SharedMemory`](super::SharedMemory)).
    Bytes = 1,
    /// A typed array.
    Array = 2,
    /// A robust lock.
    Lock = 3,
    /// A re-entrant robust lock.
    RLock = 4,
    /// A (bounded) semaphore.
    Semaphore = 5,
    /// A condition variable.
    Condition = 6,
    /// An event flag.
    Event = 7,
    /// A barrier.
    Barrier = 8,
    /// A bounded MPMC queue.
    Queue = 9,
    /// A single-producer single-consumer byte ring.
    SpscRing = 10,
    /// A single typed value.
    Value = 11,
}

impl ObjectKind {
    const ALL: [ObjectKind; 11] = [
        ObjectKind::Bytes,
        ObjectKind::Array,
        ObjectKind::Lock,
        ObjectKind::RLock,
        ObjectKind::Semaphore,
        ObjectKind::Condition,
        ObjectKind::Event,
        ObjectKind::Barrier,
        ObjectKind::Queue,
        ObjectKind::SpscRing,
        ObjectKind::Value,
    ];

    /// The lower-case name used in handles and messages (`"lock"`).
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Bytes => "bytes",
            ObjectKind::Array => "array",
            ObjectKind::Lock => "lock",
            ObjectKind::RLock => "rlock",
            ObjectKind::Semaphore => "semaphore",
            ObjectKind::Condition => "condition",
            ObjectKind::Event => "event",
            ObjectKind::Barrier => "barrier",
            ObjectKind::Queue => "queue",
            ObjectKind::SpscRing => "spsc-ring",
            ObjectKind::Value => "value",
        }
    }

    /// The kind with this name.
    pub fn from_name(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind with this stored number.
    pub fn from_raw(raw: u32) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| *k as u32 == raw)
    }
}

/// A type with a fixed shared layout, a kind and a layout version.
///
/// # Safety
///
/// - `KIND` is the one kind this layout is stored under, and no other type
///   uses the same `KIND` with the same `VERSION`.
/// - `VERSION` changes whenever the layout or its meaning changes.
pub unsafe trait ShmObject: ShmSafe {
    /// The kind stored in the header.
    const KIND: ObjectKind;
    /// The layout version stored in the header.
    const VERSION: u32;
}

/// The header every shared object starts with. Written once by the creator
/// before the object is published; read-only afterwards.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ObjectHeader {
    /// [`OBJECT_MAGIC`] once the header and the object are initialized.
    /// Stored last, with Release; see SYNC(object-published).
    pub(crate) magic: AtomicU32,
    /// [`ObjectKind`] as a number.
    pub(crate) kind: u32,
    /// The object's layout version ([`ShmObject::VERSION`]).
    pub(crate) version: u32,
    /// Bytes from the header's start to the object (`T`); a multiple of
    /// `T`'s alignment, at least `size_of::<ObjectHeader>()`.
    pub(crate) payload_offset: u32,
    /// Size of `T` in bytes, as the creator's build saw it.
    pub(crate) payload_size: u64,
    /// Bytes from the header's start to the trailing region.
    pub(crate) tail_offset: u64,
    /// Length of the trailing region in bytes (0 if none).
    pub(crate) tail_len: u64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<ObjectHeader>() == 40);
    assert!(align_of::<ObjectHeader>() == 8);
};

/// Where the parts of one object lie, relative to its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectLayout {
    pub(crate) payload_offset: usize,
    pub(crate) tail_offset: usize,
    pub(crate) tail_len: usize,
    /// Header through end of tail.
    pub(crate) total: usize,
}

impl ObjectLayout {
    /// The layout of a `T` followed by `tail_len` bytes aligned to `tail_align`.
    pub(crate) fn of<T>(tail_len: usize, tail_align: usize) -> Result<ObjectLayout> {
        if !tail_align.is_power_of_two() || tail_align > 4096 {
            return Err(Error::Invalid(format!(
                "tail alignment {tail_align} is not a power of two up to 4096"
            )));
        }
        let payload_offset = size_of::<ObjectHeader>().next_multiple_of(align_of::<T>());
        let too_big = || Error::TooLarge {
            len: usize::MAX,
            max: isize::MAX as usize,
        };
        let tail_offset = (payload_offset + size_of::<T>()).next_multiple_of(tail_align);
        let total = tail_offset.checked_add(tail_len).ok_or_else(too_big)?;
        if total > isize::MAX as usize / 2 {
            return Err(too_big());
        }
        Ok(ObjectLayout {
            payload_offset,
            tail_offset,
            tail_len,
            total,
        })
    }

    /// The alignment the header must be placed at for a `T` with this tail.
    pub(crate) fn align_of<T>(tail_align: usize) -> usize {
        align_of::<ObjectHeader>()
            .max(align_of::<T>())
            .max(tail_align)
    }
}
