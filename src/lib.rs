//! placeholder
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
pub mod connection;
pub mod error;
pub(crate) mod shim;
pub mod sync;
pub mod sys;
pub use error::{Error, Result, Status};
pub mod ffi;
pub mod process;
pub mod shm;
