//! Copying messages in and out of the ring.

/// Copies `len` bytes from `src` to `dst`: inline for messages of up to 64
/// bytes (a call to `memcpy` and its dispatch cost as much as the copy),
/// by `memcpy` beyond.
///
/// # Safety
///
/// - `src` is valid for reads and `dst` for writes of `len` bytes, and the
///   two do not overlap.
#[inline(always)]
pub(super) unsafe fn copy_message(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's promise; each access below lies inside
    // `0..len` (the second of a pair may overlap the first, which copies
    // the same bytes again); reads and writes are unaligned ones.
    unsafe {
        if len > 64 {
            std::ptr::copy_nonoverlapping(src, dst, len);
        } else if len > 32 {
            // The first 32 bytes and the last 32 (overlapping).
            let (a, b) = (
                src.cast::<[u128; 2]>().read_unaligned(),
                src.add(len - 32).cast::<[u128; 2]>().read_unaligned(),
            );
            dst.cast::<[u128; 2]>().write_unaligned(a);
            dst.add(len - 32).cast::<[u128; 2]>().write_unaligned(b);
        } else if len >= 16 {
            let (a, b) = (
                src.cast::<u128>().read_unaligned(),
                src.add(len - 16).cast::<u128>().read_unaligned(),
            );
            dst.cast::<u128>().write_unaligned(a);
            dst.add(len - 16).cast::<u128>().write_unaligned(b);
        } else if len >= 8 {
            let (a, b) = (
                src.cast::<u64>().read_unaligned(),
                src.add(len - 8).cast::<u64>().read_unaligned(),
            );
            dst.cast::<u64>().write_unaligned(a);
            dst.add(len - 8).cast::<u64>().write_unaligned(b);
        } else if len >= 4 {
            let (a, b) = (
                src.cast::<u32>().read_unaligned(),
                src.add(len - 4).cast::<u32>().read_unaligned(),
            );
            dst.cast::<u32>().write_unaligned(a);
            dst.add(len - 4).cast::<u32>().write_unaligned(b);
        } else {
            for i in 0..len {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}
