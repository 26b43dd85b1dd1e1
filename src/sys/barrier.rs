//! `membarrier(2)`: the expensive half of an asymmetric fence between
//! processes (see `crate::sync::asymmetric_fence`).

use std::io;

use rustix::thread::{MembarrierCommand, membarrier};

/// `membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)`: from now on, every
/// thread of the calling process takes part in
/// [`membarrier_global_expedited`] calls made by any process. Registering
/// again is harmless; `exec` ends the registration.
pub fn membarrier_register_global_expedited() -> io::Result<()> {
    membarrier(MembarrierCommand::RegisterGlobalExpedited).map_err(io::Error::from)
}

/// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`: runs a full memory barrier
/// on every CPU that is running a thread of a registered process (by IPI),
/// and returns once they all have. A thread that is not running passes
/// through a barrier when it is scheduled in again.
pub fn membarrier_global_expedited() -> io::Result<()> {
    membarrier(MembarrierCommand::GlobalExpedited).map_err(io::Error::from)
}
