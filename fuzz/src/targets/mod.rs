//! The fuzz target bodies, shared by the `cargo fuzz` targets
//! (`fuzz/fuzz_targets/*.rs`, nightly, libFuzzer) and by the bounded
//! replay in `tests/fuzz_replay.rs` (stable, part of `cargo test`).
//!
//! Each body takes arbitrary bytes and must neither panic, hang, nor touch
//! memory it does not own, whatever the bytes say. Bad input must come
//! back as an `Err`; assertions here state what must hold for any input.

pub mod c_api;
mod c_api_core;
mod c_api_expect;
mod c_api_manager;
mod c_api_net;
mod c_api_pool;
mod c_api_process;
mod c_api_shared;
mod c_api_sync;
pub mod connection;
pub mod handle;

/// A cursor over fuzz bytes; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// The next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// One of `n` choices (n >= 1).
    pub fn choose(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n
    }
}
