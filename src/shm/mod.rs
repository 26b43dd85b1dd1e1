//! Shared-memory segments, the objects inside them, and handles.
//!
//! - [`Segment`]: one shared mapping ([`Backing::Anonymous`] for fork
//!   children, [`Backing::Memfd`] for children started by exec or a server,
//!   [`Backing::Named`] for unrelated processes), holding several objects
//!   placed by a bump allocator with alignment.
//! - Every object starts with a header (magic, kind, layout version, sizes)
//!   checked when another process attaches.
//! - [`ShmBox<T>`]: one typed object; [`SharedMemory`]: raw bytes.
//! - [`Handle`]: the stable text that names an object to another process.
//! - [`ShmSafe`]: what may be placed in a segment.
//!
//! Cleanup: anonymous and memfd segments vanish with their last mapping.
//! A named segment is unlinked by its creator when dropped; if the creator
//! is killed, its tracker process unlinks it, and [`sweep_orphans`] removes
//! whatever a killed tracker left.

mod handle;
mod named;
mod object;
mod registry;
mod segment;
mod shared_memory;
mod shm_box;
mod shm_safe;
mod tracker;

pub use handle::{Handle, Locator};
pub use named::sweep_orphans;
pub use object::{ObjectKind, ShmObject};
pub use segment::{Backing, Segment};
pub use shared_memory::SharedMemory;
pub use shm_box::ShmBox;
pub use shm_safe::ShmSafe;
pub use tracker::tracker_pid;

pub(crate) use registry::memfd_descriptors;

use std::sync::atomic::{AtomicU8, Ordering};

static DEFAULT_BACKING: AtomicU8 = AtomicU8::new(1);

/// The backing used by objects created without a segment
/// ([`ShmBox::new`], and the `new()` of every primitive).
pub fn default_backing() -> Backing {
    // Relaxed: a setting read on its own; no other memory depends on it.
    match DEFAULT_BACKING.load(Ordering::Relaxed) {
        0 => Backing::Anonymous,
        2 => Backing::Named,
        _ => Backing::Memfd,
    }
}

/// Sets the backing for objects created without a segment. Memfd, the
/// default, reaches fork children and children that are handed the
/// descriptor; anonymous reaches fork children only and needs no descriptor;
/// named reaches any process of the same user.
pub fn set_default_backing(backing: Backing) {
    let raw = match backing {
        Backing::Anonymous => 0,
        Backing::Memfd => 1,
        Backing::Named => 2,
    };
    // Relaxed: see `default_backing`.
    DEFAULT_BACKING.store(raw, Ordering::Relaxed);
}

#[cfg(all(test, not(loom)))]
mod tests;
