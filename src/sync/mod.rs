//! Process-shared synchronization: the wait/wake machinery every blocking
//! primitive (and the queues) builds on.

mod event_count;

pub use event_count::EventCount;
