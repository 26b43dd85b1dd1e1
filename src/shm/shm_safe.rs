//! What may be placed in shared memory.

/// Types that may live in a shared segment and be seen by other processes.
///
/// # Safety
///
/// Implement it only for a type that:
/// - is `#[repr(C)]` or `#[repr(transparent)]` (or a primitive), so every
///   process built from the same code agrees on its layout;
/// - holds no pointer or reference (another process maps the segment at
///   another address), no file descriptor, no process-local handle;
/// - has no destructor (`Drop`): nobody runs it when the segment goes;
/// - is valid for every bit pattern, since another process (or a C
///   program, or a process killed mid-write) may have written any bytes;
///   so no `bool`, `char`, enums or references;
/// - is valid when all-zero if it is to be placed by zeroing.
///
/// # Example
///
/// ```
/// use multiproc::shm::ShmSafe;
/// use std::sync::atomic::AtomicU64;
///
/// #[repr(C)]
/// struct Stats {
///     hits: AtomicU64,
///     misses: AtomicU64,
/// }
/// // SAFETY: repr(C), two atomics of plain integers: no pointers, no
/// // destructor, every bit pattern valid.
/// unsafe impl ShmSafe for Stats {}
/// ```
pub unsafe trait ShmSafe: Sized + 'static {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => {
        // SAFETY: primitives and their atomics: fixed layout, no pointers, no
        // destructor, every bit pattern valid.
        $(unsafe impl ShmSafe for $t {})*
    };
}

shm_safe!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);

shm_safe!(
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
);

// SAFETY: an array of ShmSafe elements has no padding between them, no
// pointers and no destructor, and is valid whenever each element is.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

// SAFETY: EventCount is a repr(C) wrapper of one AtomicU32 whose every value
// is a valid state (see its module table).
#[cfg(not(loom))]
unsafe impl ShmSafe for crate::sync::EventCount {}
