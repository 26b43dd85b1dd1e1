//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

pub mod asymmetric_fence;
mod barrier;
mod condition;
mod event;
mod event_count;
mod lock;
pub(crate) mod owner;
mod rlock;
mod semaphore;

#[cfg(not(loom))]
pub use barrier::Barrier;
pub use barrier::{MAX_PARTIES, RawBarrier};
#[cfg(not(loom))]
pub use condition::{Condition, ConditionGuard};
pub use condition::{ConditionLock, RawCondition, WAIT_SLOTS, WaitError};
#[cfg(not(loom))]
pub use event::Event;
pub use event::RawEvent;
pub use event_count::EventCount;
#[cfg(not(loom))]
pub use lock::Lock;
pub use lock::{LockError, LockGuard, NotOwner, RawLock};
#[cfg(not(loom))]
pub use rlock::RLock;
pub use rlock::{RLockGuard, RawRLock};
#[cfg(not(loom))]
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use semaphore::{RawSemaphore, SemaphoreGuard};
