//! Two-process benchmark machinery, shared by the benches in `benches/`.
//!
//! - [`peer::Peer`]: a forked peer process pinned to the other core, serving
//!   tasks the benchmark hands it, always reaped (also when a benchmark
//!   panics; and it dies with the benchmark through a parent-death signal).
//! - [`transport::Transport`]: a way to move bytes between two processes;
//!   [`transport::round_trip`] and [`transport::one_way`] measure any of them
//!   with criterion's `iter_custom`.
//! - [`os`]: the OS pipe and socketpair, the baselines to put beside
//!   multiproc's own transports in the same run.
//!
//! Each bench compiles this module on its own and uses part of it.
#![allow(dead_code)]

pub mod os;
pub mod peer;
pub mod transport;
