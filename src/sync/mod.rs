//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

mod barrier;
mod event;
mod event_count;
mod semaphore;

#[cfg(not(loom))]
pub use barrier::Barrier;
pub use barrier::{MAX_PARTIES, RawBarrier};
#[cfg(not(loom))]
pub use event::Event;
pub use event::RawEvent;
pub use event_count::EventCount;
#[cfg(not(loom))]
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use semaphore::{RawSemaphore, SemaphoreGuard};
