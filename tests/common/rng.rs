//! A deterministic pseudo-random sequence for tests that choose sizes,
//! counts and kill points: the same choices on every run of a seed.

/// xorshift64; the seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    /// The next number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
