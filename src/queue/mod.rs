//! Queues in shared memory, as Python's `multiprocessing.Queue`,
//! `SimpleQueue` and `JoinableQueue`, for byte messages up to a size fixed
//! at creation.
//!
//! - [`Queue`]: put/get with `block` and `timeout`, `Full`/`Empty`,
//!   approximate `qsize`, `close`; over either layout:
//!   - the bounded MPMC queue (`mpmc.rs`): per-slot state words, any number
//!     of producers and consumers in any processes, robust against a
//!     participant killed at any instruction;
//!   - the SPSC byte ring (`spsc/`, [`QueueOptions::spsc`]): one producer
//!     and one consumer thread, variable-length records back to back,
//!     zero-copy [`Producer::reserve`] / [`Consumer::read`] and batches.
//! - [`JoinableQueue`] (`task_done`, `join`), [`SimpleQueue`].
//! - [`TypedQueue<T>`](TypedQueue): values of a [`ShmSafe`](crate::shm::ShmSafe)
//!   type by their bytes; with the `serde` feature, `SerdeQueue<T>` for
//!   any serializable type (postcard).
//!
//! Waiting spins briefly, then sleeps on a futex word in the segment
//! ([`EventCount`](crate::sync::EventCount)); a put or get makes no syscall
//! when nobody sleeps.

// The façade is not built under loom; the models use a part of the core.
#![cfg_attr(loom, allow(dead_code))]

mod common;
#[cfg(loom)]
#[doc(hidden)]
pub mod model;
mod mpmc;
#[cfg(not(loom))]
mod python;
#[cfg(not(loom))]
mod roles;
#[cfg(all(not(loom), feature = "serde"))]
mod serde_queue;
mod spsc;
#[cfg(not(loom))]
mod typed;

#[cfg(not(loom))]
pub use python::{JoinableQueue, Queue, QueueOptions, SimpleQueue};
#[cfg(not(loom))]
pub use roles::{Consumer, Producer, ReadGrant, WriteGrant};
#[cfg(all(not(loom), feature = "serde"))]
pub use serde_queue::SerdeQueue;
#[cfg(not(loom))]
pub use typed::TypedQueue;

pub use common::try_once;
pub use mpmc::{QueueHeader, Slot};
pub use spsc::RingHeader;
