#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

// The layers of DESIGN.md, bottom up; each imports only those below it.
#[cfg(not(loom))]
pub mod array;
pub mod connection;
pub mod ffi;
#[cfg(not(loom))]
pub mod manager;
#[cfg(not(loom))]
pub mod pool;
pub mod process;
pub mod queue;
pub(crate) mod shim;
pub mod shm;
pub mod sync;
pub mod sys;

pub mod error;
#[cfg(all(test, not(loom)))]
mod test_support;

pub use error::{Error, Result, Status};
