//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

mod event_count;
mod lock;
mod owner;
mod rlock;

pub use event_count::EventCount;
pub use lock::{LockError, LockGuard, NotOwner, RawLock};
pub use rlock::{RLockGuard, RawRLock};
