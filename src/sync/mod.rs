//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

mod condition;
mod event_count;
mod lock;
pub(crate) mod owner;
mod rlock;

#[cfg(not(loom))]
pub use condition::{Condition, ConditionGuard};
pub use condition::{ConditionLock, RawCondition, WAIT_SLOTS, WaitError};
pub use event_count::EventCount;
#[cfg(not(loom))]
pub use lock::Lock;
pub use lock::{LockError, LockGuard, NotOwner, RawLock};
#[cfg(not(loom))]
pub use rlock::RLock;
pub use rlock::{RLockGuard, RawRLock};
