//! `mp_segment_*`: blocks of raw shared bytes (Python's `SharedMemory`).

use std::ffi::{c_char, c_int, c_void};

use super::{MP_OK, Tagged, c_str, guard, non_null_mut, write_c_string};
use crate::error::Error;
use crate::shm::{Backing, Handle, SharedMemory, sweep_orphans};

/// Pages seen by fork children only (`MAP_SHARED | MAP_ANONYMOUS`).
pub const MP_BACKING_ANONYMOUS: c_int = 0;
/// A memfd: fork children, and processes the descriptor is passed to.
pub const MP_BACKING_MEMFD: c_int = 1;
/// A `/dev/shm` name: any process of the same user.
pub const MP_BACKING_NAMED: c_int = 2;

const TAG: u64 = u64::from_le_bytes(*b"mpSEGMNT");

/// A block of shared bytes in its own segment.
pub struct mp_segment_t(SharedMemory);

fn backing_from_c(backing: c_int) -> Result<Backing, Error> {
    match backing {
        MP_BACKING_ANONYMOUS => Ok(Backing::Anonymous),
        MP_BACKING_MEMFD => Ok(Backing::Memfd),
        MP_BACKING_NAMED => Ok(Backing::Named),
        other => Err(Error::Invalid(format!(
            "backing {other} is not MP_BACKING_ANONYMOUS (0), MP_BACKING_MEMFD (1) or MP_BACKING_NAMED (2)"
        ))),
    }
}

/// Creates a zeroed block of `len` bytes (`len` > 0) with the given backing
/// (`MP_BACKING_*`) and stores it in `*out`.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_new(
    len: usize,
    backing: c_int,
    out: *mut *mut mp_segment_t,
) -> c_int {
    guard("mp_segment_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        let mem = SharedMemory::new(len, backing_from_c(backing)?)?;
        *out = Tagged::boxed(TAG, mp_segment_t(mem)).cast();
        Ok(MP_OK)
    })
}

/// Attaches to the block named by a handle text (from `mp_segment_handle`
/// in this or another process) and stores it in `*out`.
///
/// Errors: `MP_ERR_INVALID` for text that does not parse or an offset
/// outside the segment, `MP_ERR_KIND` for a handle of another object kind,
/// `MP_ERR_VERSION` for an incompatible layout, `MP_ERR_NOT_FOUND` when the
/// segment cannot be reached.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_open(
    handle: *const c_char,
    out: *mut *mut mp_segment_t,
) -> c_int {
    guard("mp_segment_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let mem = SharedMemory::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(TAG, mp_segment_t(mem)).cast();
        Ok(MP_OK)
    })
}

/// The block's segment, or an error for NULL / a pointer that is not a
/// live `mp_segment_t`.
///
/// # Safety
///
/// - `seg` is NULL or a pointer returned by `mp_segment_new`/`mp_segment_open`.
unsafe fn segment<'a>(seg: *const mp_segment_t) -> Result<&'a SharedMemory, Error> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(seg.cast_mut().cast(), TAG, "seg") }.map(|s: &mp_segment_t| &s.0)
}

/// The first byte of the block, or NULL (with `mp_last_error` set) if `seg`
/// is not a live segment.
///
/// # Safety
///
/// - `seg` is NULL or a pointer returned by `mp_segment_new`/`mp_segment_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_data(seg: *mut mp_segment_t) -> *mut c_void {
    let mut data = std::ptr::null_mut();
    guard("mp_segment_data", || {
        // SAFETY: forwarded from the caller.
        data = unsafe { segment(seg) }?.as_ptr().cast();
        Ok(MP_OK)
    });
    data
}

/// The length of the block in bytes, or 0 (with `mp_last_error` set) if
/// `seg` is not a live segment.
///
/// # Safety
///
/// - `seg` is NULL or a pointer returned by `mp_segment_new`/`mp_segment_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_len(seg: *const mp_segment_t) -> usize {
    let mut len = 0;
    guard("mp_segment_len", || {
        // SAFETY: forwarded from the caller.
        len = unsafe { segment(seg) }?.len();
        Ok(MP_OK)
    });
    len
}

/// Writes the block's NUL-terminated handle text into `buf` (`cap` bytes).
/// `MP_ERR_TOO_LARGE` if it does not fit (128 bytes always suffice).
///
/// # Safety
///
/// - `seg` is NULL or a pointer returned by `mp_segment_new`/`mp_segment_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_handle(
    seg: *const mp_segment_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_segment_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { segment(seg) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Releases this process's reference. The memory lives on while other
/// processes map it; a named block is unlinked when its creator frees it.
/// NULL is a no-op; a pointer that is not a live segment is refused (see
/// `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `seg` is NULL or a pointer returned by `mp_segment_new`/`mp_segment_open`,
///   not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_free(seg: *mut mp_segment_t) {
    guard("mp_segment_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_segment_t>::free(seg.cast(), TAG) }?;
        Ok(MP_OK)
    });
}

/// Unlinks every named segment in `/dev/shm` whose creating process is no
/// longer alive; stores how many in `*removed` (if not NULL).
///
/// # Safety
///
/// - `removed` is NULL or valid for writing one `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_segment_sweep(removed: *mut usize) -> c_int {
    guard("mp_segment_sweep", || {
        let n = sweep_orphans()?;
        // SAFETY: NULL or writable (caller's promise).
        if let Some(out) = unsafe { removed.as_mut() } {
            *out = n;
        }
        Ok(MP_OK)
    })
}
