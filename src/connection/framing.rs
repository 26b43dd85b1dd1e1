//! CPython's message framing on a byte stream.
//!
//! Every message is a length prefix followed by that many bytes:
//!
//! | message length `n`        | prefix                                         |
//! |---------------------------|------------------------------------------------|
//! | `n <= 0x7fff_ffff`        | `n` as a 4-byte big-endian signed integer      |
//! | `n > 0x7fff_ffff` (2 GiB) | `-1` as 4 bytes, then `n` as 8 bytes big-endian |
//!
//! This is `Connection._send_bytes` / `_recv_bytes` of
//! `Lib/multiprocessing/connection.py`, so either end may be Python.

/// The longest message whose length fits the short, 4-byte prefix.
pub const MAX_SHORT_LEN: u64 = 0x7fff_ffff;

/// The longest prefix: the `-1` marker and an 8-byte length.
pub const MAX_PREFIX_LEN: usize = 12;

/// The short prefix's value that announces an 8-byte length after it.
const LONG_MARKER: i32 = -1;

/// Writes the prefix for a message of `len` bytes into `out` and returns
/// it (4 or 12 bytes).
pub fn encode_prefix(len: u64, out: &mut [u8; MAX_PREFIX_LEN]) -> &[u8] {
    if len > MAX_SHORT_LEN {
        out[..4].copy_from_slice(&LONG_MARKER.to_be_bytes());
        out[4..].copy_from_slice(&len.to_be_bytes());
        &out[..]
    } else {
        // In range for i32 by the branch above.
        out[..4].copy_from_slice(&(len as i32).to_be_bytes());
        &out[..4]
    }
}

/// What the bytes at the start of a stream say about the next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// The prefix is not complete yet: at least this many bytes are needed.
    Incomplete(usize),
    /// A message of `len` bytes follows the `prefix_len` bytes of prefix.
    Complete {
        /// The message length.
        len: u64,
        /// How many bytes the prefix took (4 or 12).
        prefix_len: usize,
    },
    /// A negative length other than the `-1` marker: not CPython framing.
    Invalid(i32),
}

/// Decodes the prefix at the start of `bytes`.
pub fn decode_prefix(bytes: &[u8]) -> Prefix {
    let Some(short) = bytes.first_chunk::<4>() else {
        return Prefix::Incomplete(4);
    };
    match i32::from_be_bytes(*short) {
        n if n >= 0 => Prefix::Complete {
            len: n as u64,
            prefix_len: 4,
        },
        LONG_MARKER => match bytes[4..].first_chunk::<8>() {
            Some(long) => Prefix::Complete {
                len: u64::from_be_bytes(*long),
                prefix_len: MAX_PREFIX_LEN,
            },
            None => Prefix::Incomplete(MAX_PREFIX_LEN),
        },
        n => Prefix::Invalid(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(len: u64) -> Vec<u8> {
        let mut out = [0; MAX_PREFIX_LEN];
        let prefix = encode_prefix(len, &mut out).to_vec();
        assert_eq!(
            decode_prefix(&prefix),
            Prefix::Complete {
                len,
                prefix_len: prefix.len()
            }
        );
        prefix
    }

    #[test]
    fn short_prefixes_are_four_big_endian_bytes() {
        assert_eq!(round_trip(0), [0, 0, 0, 0]);
        assert_eq!(round_trip(1), [0, 0, 0, 1]);
        assert_eq!(round_trip(0x0102_0304), [1, 2, 3, 4]);
        assert_eq!(round_trip(MAX_SHORT_LEN), [0x7f, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn long_prefixes_are_minus_one_then_eight_bytes() {
        assert_eq!(
            round_trip(MAX_SHORT_LEN + 1),
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
        );
        assert_eq!(round_trip(u64::MAX).len(), MAX_PREFIX_LEN);
    }

    #[test]
    fn partial_and_invalid_prefixes() {
        assert_eq!(decode_prefix(&[]), Prefix::Incomplete(4));
        assert_eq!(decode_prefix(&[0, 0, 1]), Prefix::Incomplete(4));
        assert_eq!(
            decode_prefix(&[0xff, 0xff, 0xff, 0xff, 0, 0]),
            Prefix::Incomplete(MAX_PREFIX_LEN)
        );
        assert_eq!(
            decode_prefix(&[0xff, 0xff, 0xff, 0xfe]),
            Prefix::Invalid(-2)
        );
        // Bytes after the prefix are the message's, not the prefix's.
        assert_eq!(
            decode_prefix(&[0, 0, 0, 2, 9, 9]),
            Prefix::Complete {
                len: 2,
                prefix_len: 4
            }
        );
    }
}
