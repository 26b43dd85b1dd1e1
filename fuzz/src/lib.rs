//! Fuzz target bodies for multiproc; see `targets/mod.rs`.

pub mod targets;
