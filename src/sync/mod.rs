//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

mod condition;
mod event_count;
mod lock;
mod owner;
mod rlock;

pub use condition::{ConditionLock, RawCondition, WAIT_SLOTS, WaitError};
pub use event_count::EventCount;
pub use lock::{LockError, LockGuard, NotOwner, RawLock};
pub use rlock::{RLockGuard, RawRLock};
