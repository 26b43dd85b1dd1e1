//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

mod barrier;
mod event;
mod event_count;
mod semaphore;

pub use barrier::{MAX_PARTIES, RawBarrier};
pub use event::RawEvent;
pub use event_count::EventCount;
pub use semaphore::{RawSemaphore, SemaphoreGuard};
