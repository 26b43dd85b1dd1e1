//! `mp_lock_*`, `mp_rlock_*`, `mp_cond_*`: robust process-shared locks and
//! condition variables (Python's `Lock`, `RLock`, `Condition`).

use std::ffi::{c_char, c_int};

use super::{MP_OK, Tagged, c_str, deadline_from_ns, guard, non_null_mut, write_c_string};
use crate::error::{Error, Result};
use crate::shm::Handle;
use crate::sync::{Condition, Lock, LockError, RLock};

const LOCK_TAG: u64 = u64::from_le_bytes(*b"mpLOCK__");
const RLOCK_TAG: u64 = u64::from_le_bytes(*b"mpRLOCK_");
const COND_TAG: u64 = u64::from_le_bytes(*b"mpCOND__");

/// A robust process-shared lock (Python's `multiprocessing.Lock`).
pub struct mp_lock_t {
    lock: Lock,
    /// Made by an array for `mp_array_lock`: the array frees it when it is
    /// freed, and `mp_lock_free` refuses it (else the array would later
    /// free whatever object then lives at that address).
    owned_by_array: bool,
}

impl mp_lock_t {
    fn new(lock: Lock) -> mp_lock_t {
        mp_lock_t {
            lock,
            owned_by_array: false,
        }
    }
}

/// Boxes `lock` as the lock of an array (see `mp_lock_t::owned_by_array`);
/// free it with [`free_array_lock`] only.
pub(crate) fn array_lock(lock: Lock) -> *mut mp_lock_t {
    let l = mp_lock_t {
        lock,
        owned_by_array: true,
    };
    Tagged::boxed(LOCK_TAG, l).cast()
}

/// Frees a lock made by [`array_lock`].
///
/// # Safety
///
/// - `l` came from [`array_lock`] and is freed once, by its array.
pub(crate) unsafe fn free_array_lock(l: *mut mp_lock_t) -> Result<()> {
    // SAFETY: forwarded from the caller; the tag is checked first.
    unsafe { Tagged::<mp_lock_t>::free(l.cast(), LOCK_TAG) }
}

/// A robust process-shared re-entrant lock (Python's `multiprocessing.RLock`).
pub struct mp_rlock_t(RLock);

/// A process-shared condition variable (Python's `multiprocessing.Condition`).
pub struct mp_cond_t(Condition);

/// An acquisition's result as a status: `MP_ERR_OWNER_DIED` still means
/// acquired.
fn acquired(r: std::result::Result<(), LockError<()>>) -> Result<c_int> {
    r.map(|()| MP_OK).map_err(Error::from)
}

/// # Safety
///
/// - `p` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
unsafe fn lock_ref<'a>(p: *const mp_lock_t) -> Result<&'a Lock> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(p.cast::<Tagged<mp_lock_t>>(), LOCK_TAG, "lock") }.map(|l| &l.lock)
}

/// # Safety
///
/// - `p` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`.
unsafe fn rlock_ref<'a>(p: *const mp_rlock_t) -> Result<&'a RLock> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(p.cast::<Tagged<mp_rlock_t>>(), RLOCK_TAG, "rlock") }.map(|r| &r.0)
}

/// # Safety
///
/// - `p` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
unsafe fn cond_ref<'a>(p: *const mp_cond_t) -> Result<&'a Condition> {
    // SAFETY: forwarded from the caller; the tag is checked.
    unsafe { Tagged::get(p.cast::<Tagged<mp_cond_t>>(), COND_TAG, "cond") }.map(|c| &c.0)
}

/// Creates an unlocked lock in shared memory and stores it in `*out`.
/// Fork children inherit it; other processes attach with `mp_lock_open`.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_new(out: *mut *mut mp_lock_t) -> c_int {
    guard("mp_lock_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = Tagged::boxed(LOCK_TAG, mp_lock_t::new(Lock::new()?)).cast();
        Ok(MP_OK)
    })
}

/// Attaches to the lock named by a handle text (from `mp_lock_handle`).
/// `MP_ERR_INVALID` for text that does not parse, `MP_ERR_KIND` for a
/// handle of another object kind, `MP_ERR_NOT_FOUND` when the segment
/// cannot be reached.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_open(handle: *const c_char, out: *mut *mut mp_lock_t) -> c_int {
    guard("mp_lock_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let l = Lock::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(LOCK_TAG, mp_lock_t::new(l)).cast();
        Ok(MP_OK)
    })
}

/// Writes the lock's NUL-terminated handle text into `buf` (`cap` bytes);
/// `MP_ERR_TOO_LARGE` if it does not fit (128 bytes always suffice).
///
/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_handle(
    l: *const mp_lock_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_lock_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { lock_ref(l) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Acquires the lock, waiting at most `timeout_ns` (`MP_WAIT_FOREVER`: no
/// limit; 0: try once). `MP_OK`; `MP_ERR_OWNER_DIED`: acquired, but a
/// holder died holding it (repair the data, then `mp_lock_make_consistent`;
/// until then every acquirer is told); `MP_ERR_TIMEOUT`. Not re-entrant:
/// acquiring it again from the holding thread waits for the timeout.
///
/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_acquire(l: *mut mp_lock_t, timeout_ns: i64) -> c_int {
    guard("mp_lock_acquire", || {
        // SAFETY: forwarded from the caller.
        let l = unsafe { lock_ref(l) }?;
        acquired(l.acquire_unguarded(deadline_from_ns(timeout_ns)?))
    })
}

/// Releases the lock. `MP_ERR_NOT_OWNER` if the calling thread does not
/// hold it (then nothing changes).
///
/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_release(l: *mut mp_lock_t) -> c_int {
    guard("mp_lock_release", || {
        // SAFETY: forwarded from the caller.
        unsafe { lock_ref(l) }?.release()?;
        Ok(MP_OK)
    })
}

/// Marks the data repaired after `MP_ERR_OWNER_DIED`; later acquisitions
/// return `MP_OK` again. `MP_ERR_NOT_OWNER` unless the caller holds it.
///
/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_make_consistent(l: *mut mp_lock_t) -> c_int {
    guard("mp_lock_make_consistent", || {
        // SAFETY: forwarded from the caller.
        unsafe { lock_ref(l) }?.make_consistent()?;
        Ok(MP_OK)
    })
}

/// 1 if some thread (of any process) holds the lock now, 0 if not, or a
/// negative code.
///
/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_is_locked(l: *const mp_lock_t) -> c_int {
    guard("mp_lock_is_locked", || {
        // SAFETY: forwarded from the caller.
        Ok(c_int::from(unsafe { lock_ref(l) }?.is_locked()))
    })
}

/// Releases this process's reference (not the lock itself: a held lock
/// stays held). NULL is a no-op; a pointer that is not a live lock, or is
/// an array's own lock (from `mp_array_lock`: `mp_array_free` releases
/// it), is refused (see `mp_last_error`) and left alone.
///
/// # Safety
///
/// - `l` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`,
///   not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_lock_free(l: *mut mp_lock_t) {
    guard("mp_lock_free", || {
        // SAFETY: forwarded from the caller; the tag is checked.
        let lock = unsafe { Tagged::get(l.cast::<Tagged<mp_lock_t>>(), LOCK_TAG, "l") };
        if lock.is_ok_and(|lock| lock.owned_by_array) {
            return Err(Error::Invalid(
                "free of an array's own lock (from mp_array_lock): mp_array_free releases it"
                    .into(),
            ));
        }
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_lock_t>::free(l.cast(), LOCK_TAG) }?;
        Ok(MP_OK)
    });
}

/// Creates an unlocked re-entrant lock in shared memory.
///
/// # Safety
///
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_new(out: *mut *mut mp_rlock_t) -> c_int {
    guard("mp_rlock_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = Tagged::boxed(RLOCK_TAG, mp_rlock_t(RLock::new()?)).cast();
        Ok(MP_OK)
    })
}

/// Attaches to the re-entrant lock named by a handle text (from
/// `mp_rlock_handle`). Errors as `mp_lock_open`.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_open(handle: *const c_char, out: *mut *mut mp_rlock_t) -> c_int {
    guard("mp_rlock_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let r = RLock::open(&text.parse::<Handle>()?)?;
        *out = Tagged::boxed(RLOCK_TAG, mp_rlock_t(r)).cast();
        Ok(MP_OK)
    })
}

/// Writes the re-entrant lock's handle text into `buf` (`cap` bytes).
///
/// # Safety
///
/// - `r` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_handle(
    r: *const mp_rlock_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_rlock_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { rlock_ref(r) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Acquires one level, waiting at most `timeout_ns`; at once if the caller
/// holds it already. Results as `mp_lock_acquire`.
///
/// # Safety
///
/// - `r` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_acquire(r: *mut mp_rlock_t, timeout_ns: i64) -> c_int {
    guard("mp_rlock_acquire", || {
        // SAFETY: forwarded from the caller.
        let r = unsafe { rlock_ref(r) }?;
        acquired(r.acquire_unguarded(deadline_from_ns(timeout_ns)?))
    })
}

/// Releases one level; the last one frees the lock. `MP_ERR_NOT_OWNER` if
/// the calling thread does not hold it.
///
/// # Safety
///
/// - `r` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_release(r: *mut mp_rlock_t) -> c_int {
    guard("mp_rlock_release", || {
        // SAFETY: forwarded from the caller.
        unsafe { rlock_ref(r) }?.release()?;
        Ok(MP_OK)
    })
}

/// Marks the data repaired after `MP_ERR_OWNER_DIED`. `MP_ERR_NOT_OWNER`
/// unless the caller holds it.
///
/// # Safety
///
/// - `r` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_make_consistent(r: *mut mp_rlock_t) -> c_int {
    guard("mp_rlock_make_consistent", || {
        // SAFETY: forwarded from the caller.
        unsafe { rlock_ref(r) }?.make_consistent()?;
        Ok(MP_OK)
    })
}

/// The calling thread's recursion level (0 unless it holds the lock), or a
/// negative code.
///
/// # Safety
///
/// - `r` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_count(r: *const mp_rlock_t) -> c_int {
    guard("mp_rlock_count", || {
        // SAFETY: forwarded from the caller.
        let count = unsafe { rlock_ref(r) }?.count();
        Ok(c_int::try_from(count).unwrap_or(c_int::MAX))
    })
}

/// Releases this process's reference (a held level stays held). NULL is a
/// no-op; a pointer that is not a live re-entrant lock is refused.
///
/// # Safety
///
/// - `r` is NULL or a pointer returned by `mp_rlock_new`/`mp_rlock_open`,
///   not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_rlock_free(r: *mut mp_rlock_t) {
    guard("mp_rlock_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_rlock_t>::free(r.cast(), RLOCK_TAG) }?;
        Ok(MP_OK)
    });
}

/// Creates a condition variable for `lock`, or, with `lock` NULL, with a
/// re-entrant lock of its own (Python's default). Take the lock with
/// `mp_cond_acquire` (either way) or `mp_lock_acquire` (a given lock).
/// The condition keeps its own reference to `lock`.
///
/// # Safety
///
/// - `lock` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_new(lock: *mut mp_lock_t, out: *mut *mut mp_cond_t) -> c_int {
    guard("mp_cond_new", || {
        // SAFETY: `out` is NULL or writable (caller's promise).
        let out = unsafe { non_null_mut(out, "out") }?;
        let c = if lock.is_null() {
            Condition::new()?
        } else {
            // SAFETY: forwarded from the caller.
            Condition::with_lock(unsafe { lock_ref(lock) }?.clone())?
        };
        *out = Tagged::boxed(COND_TAG, mp_cond_t(c)).cast();
        Ok(MP_OK)
    })
}

/// Attaches to the condition named by a handle text (from
/// `mp_cond_handle`). Pass the same lock it was made with (opened with
/// `mp_lock_open`), or NULL if it has its own; a mismatch is
/// `MP_ERR_INVALID`. Other errors as `mp_lock_open`.
///
/// # Safety
///
/// - `handle` is NULL or a NUL-terminated string.
/// - `lock` is NULL or a pointer returned by `mp_lock_new`/`mp_lock_open`.
/// - `out` is NULL or valid for writing one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_open(
    handle: *const c_char,
    lock: *mut mp_lock_t,
    out: *mut *mut mp_cond_t,
) -> c_int {
    guard("mp_cond_open", || {
        // SAFETY: forwarded from the caller's promises.
        let (text, out) = unsafe { (c_str(handle, "handle")?, non_null_mut(out, "out")?) };
        let handle = text.parse::<Handle>()?;
        let c = if lock.is_null() {
            Condition::open(&handle)?
        } else {
            // SAFETY: forwarded from the caller.
            Condition::open_with_lock(&handle, unsafe { lock_ref(lock) }?.clone())?
        };
        *out = Tagged::boxed(COND_TAG, mp_cond_t(c)).cast();
        Ok(MP_OK)
    })
}

/// Writes the condition's handle text into `buf` (`cap` bytes). A separate
/// lock has its own handle (`mp_lock_handle`).
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
/// - `buf` is NULL or valid for writing `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_handle(
    c: *const mp_cond_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_cond_handle", || {
        // SAFETY: forwarded from the caller.
        let text = unsafe { cond_ref(c) }?.handle().to_string();
        // SAFETY: forwarded from the caller.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Acquires (one level of) the condition's lock. Results as
/// `mp_lock_acquire`.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_acquire(c: *mut mp_cond_t, timeout_ns: i64) -> c_int {
    guard("mp_cond_acquire", || {
        // SAFETY: forwarded from the caller.
        let c = unsafe { cond_ref(c) }?;
        acquired(c.acquire_unguarded(deadline_from_ns(timeout_ns)?))
    })
}

/// Releases (one level of) the condition's lock. `MP_ERR_NOT_OWNER` if
/// the caller does not hold it.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_release(c: *mut mp_cond_t) -> c_int {
    guard("mp_cond_release", || {
        // SAFETY: forwarded from the caller.
        unsafe { cond_ref(c) }?.release()?;
        Ok(MP_OK)
    })
}

/// Marks the data behind the condition's lock repaired after
/// `MP_ERR_OWNER_DIED`. `MP_ERR_NOT_OWNER` unless the caller holds it.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_make_consistent(c: *mut mp_cond_t) -> c_int {
    guard("mp_cond_make_consistent", || {
        // SAFETY: forwarded from the caller.
        unsafe { cond_ref(c) }?.make_consistent()?;
        Ok(MP_OK)
    })
}

/// Releases the lock (all levels), waits until notified or `timeout_ns`
/// passes, and reacquires the lock (without a limit). `MP_OK`: notified;
/// `MP_ERR_TIMEOUT`: not notified in time; `MP_ERR_OWNER_DIED`: the lock
/// was reacquired from a holder that died (repair, then
/// `mp_cond_make_consistent`); `MP_ERR_NOT_OWNER`: the caller did not hold
/// the lock (nothing happened). The caller holds the lock on return in
/// every case but `MP_ERR_NOT_OWNER` and bad arguments.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_wait(c: *mut mp_cond_t, timeout_ns: i64) -> c_int {
    guard("mp_cond_wait", || {
        // SAFETY: forwarded from the caller.
        let c = unsafe { cond_ref(c) }?;
        match c.wait_until(deadline_from_ns(timeout_ns)?)? {
            true => Ok(MP_OK),
            false => Err(Error::Timeout),
        }
    })
}

/// Wakes at most `n` of the threads waiting now, oldest first.
/// `MP_ERR_NOT_OWNER` if the caller does not hold the lock.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_notify(c: *mut mp_cond_t, n: u32) -> c_int {
    guard("mp_cond_notify", || {
        // SAFETY: forwarded from the caller.
        unsafe { cond_ref(c) }?.notify(n)?;
        Ok(MP_OK)
    })
}

/// Wakes every thread waiting now. `MP_ERR_NOT_OWNER` if the caller does
/// not hold the lock.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_notify_all(c: *mut mp_cond_t) -> c_int {
    guard("mp_cond_notify_all", || {
        // SAFETY: forwarded from the caller.
        unsafe { cond_ref(c) }?.notify_all()?;
        Ok(MP_OK)
    })
}

/// Releases this process's reference to the condition (and its own
/// reference to a separate lock). NULL is a no-op; a pointer that is not a
/// live condition is refused.
///
/// # Safety
///
/// - `c` is NULL or a pointer returned by `mp_cond_new`/`mp_cond_open`,
///   not used again afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_cond_free(c: *mut mp_cond_t) {
    guard("mp_cond_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<mp_cond_t>::free(c.cast(), COND_TAG) }?;
        Ok(MP_OK)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::*;
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    fn last_error() -> String {
        // SAFETY: mp_last_error never returns NULL.
        unsafe { CStr::from_ptr(mp_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn lock_round_trip_and_ownership() {
        let mut l = null_mut();
        // SAFETY: (whole test) pointers come from mp_lock_new / are NULL.
        unsafe {
            assert_eq!(mp_lock_new(&mut l), MP_OK);
            assert_eq!(mp_lock_is_locked(l), 0);
            assert_eq!(mp_lock_release(l), MP_ERR_NOT_OWNER);
            assert_eq!(mp_lock_make_consistent(l), MP_ERR_NOT_OWNER);
            assert_eq!(mp_lock_acquire(l, MP_WAIT_FOREVER), MP_OK);
            assert_eq!(mp_lock_is_locked(l), 1);
            assert_eq!(mp_lock_acquire(l, 0), MP_ERR_TIMEOUT);
            assert_eq!(mp_lock_acquire(l, 1_000_000), MP_ERR_TIMEOUT);
            assert_eq!(mp_lock_acquire(l, -2), MP_ERR_INVALID);
            assert!(last_error().contains("timeout_ns is -2"));
            let addr = l as usize;
            std::thread::spawn(move || {
                let l = addr as *mut mp_lock_t;
                assert_eq!(mp_lock_release(l), MP_ERR_NOT_OWNER);
            })
            .join()
            .unwrap();
            assert_eq!(mp_lock_release(l), MP_OK);
            mp_lock_free(l);
        }
    }

    #[test]
    fn null_freed_and_foreign_pointers_are_refused() {
        // SAFETY: (whole test) every pointer is NULL, live, or freed-and-
        // still-allocated-by-us (the tag check's contract).
        unsafe {
            assert_eq!(mp_lock_new(null_mut()), MP_ERR_NULL);
            assert_eq!(mp_lock_acquire(null_mut(), 0), MP_ERR_NULL);
            assert_eq!(mp_lock_release(null_mut()), MP_ERR_NULL);
            assert_eq!(mp_rlock_acquire(null_mut(), 0), MP_ERR_NULL);
            assert_eq!(mp_cond_wait(null_mut(), 0), MP_ERR_NULL);
            assert_eq!(mp_cond_notify(null_mut(), 1), MP_ERR_NULL);
            mp_lock_free(null_mut());
            mp_cond_free(null_mut());

            // A rlock passed where a lock is expected: refused by its tag.
            let mut r = null_mut();
            assert_eq!(mp_rlock_new(&mut r), MP_OK);
            assert_eq!(mp_lock_acquire(r.cast(), 0), MP_ERR_INVALID);
            assert_eq!(mp_cond_new(r.cast(), &mut null_mut()), MP_ERR_INVALID);

            mp_rlock_free(r);

            // A freed lock: its address left the live set, so it is refused
            // without being read. (A later object at the same address would
            // be live again; glibc's per-thread cache keeps this thread's
            // freed block from another thread here.)
            let mut l = null_mut();
            assert_eq!(mp_lock_new(&mut l), MP_OK);
            mp_lock_free(l);
            assert_eq!(mp_lock_acquire(l, 0), MP_ERR_INVALID);
            assert!(last_error().contains("freed"), "{}", last_error());
            assert_eq!(mp_lock_release(l), MP_ERR_INVALID);
            mp_lock_free(l); // a double free is refused, not performed
            assert!(last_error().contains("not a live object"));
            // A pointer to memory that was never an object, not even mapped.
            let bogus = 0x10usize as *mut mp_lock_t;
            assert_eq!(mp_lock_acquire(bogus, 0), MP_ERR_INVALID);
            mp_lock_free(bogus);
            assert!(
                last_error().contains("never made by it"),
                "{}",
                last_error()
            );

            let mut h = [0 as c_char; 8];
            assert_eq!(mp_lock_handle(null(), h.as_mut_ptr(), h.len()), MP_ERR_NULL);
            assert_eq!(mp_lock_open(null(), &mut null_mut()), MP_ERR_NULL);
            assert_eq!(
                mp_lock_open(c"not a handle".as_ptr(), &mut null_mut()),
                MP_ERR_INVALID
            );
        }
    }

    /// Found while widening the c_api fuzz target (it frees arrays' locks
    /// now): `mp_lock_free` freed an array's own
    /// lock, and `mp_array_free` later freed whatever object then lived at
    /// that address (here: the next lock made).
    #[test]
    fn an_arrays_own_lock_is_freed_by_the_array_only() {
        // SAFETY: (whole test) pointers come from the constructors.
        unsafe {
            let mut a = null_mut();
            assert_eq!(mp_array_new(b'i' as c_char, 4, 1, &mut a), MP_OK);
            let l = mp_array_lock(a);
            assert!(!l.is_null());
            mp_lock_free(l);
            assert!(
                last_error().contains("array's own lock"),
                "{}",
                last_error()
            );
            assert_eq!(mp_lock_acquire(l, 0), MP_OK, "still the array's lock");
            assert_eq!(mp_lock_release(l), MP_OK);
            let mut other = null_mut();
            assert_eq!(mp_lock_new(&mut other), MP_OK);
            mp_array_free(a);
            assert_eq!(mp_lock_acquire(other, 0), MP_OK, "{}", last_error());
            assert_eq!(mp_lock_release(other), MP_OK);
            mp_lock_free(other);
            assert_eq!(mp_lock_acquire(other, 0), MP_ERR_INVALID);
        }
    }

    #[test]
    fn rlock_levels_and_handles() {
        // SAFETY: (whole test) pointers come from the constructors.
        unsafe {
            let mut r = null_mut();
            assert_eq!(mp_rlock_new(&mut r), MP_OK);
            assert_eq!(mp_rlock_count(r), 0);
            for level in 1..=3 {
                assert_eq!(mp_rlock_acquire(r, 0), MP_OK);
                assert_eq!(mp_rlock_count(r), level);
            }
            let mut text = [0 as c_char; 128];
            assert_eq!(mp_rlock_handle(r, text.as_mut_ptr(), 4), MP_ERR_TOO_LARGE);
            assert_eq!(mp_rlock_handle(r, text.as_mut_ptr(), text.len()), MP_OK);
            let mut same = null_mut();
            assert_eq!(mp_rlock_open(text.as_ptr(), &mut same), MP_OK);
            assert_eq!(mp_rlock_count(same), 3, "the same lock");
            let mut wrong = null_mut();
            assert_eq!(mp_lock_open(text.as_ptr(), &mut wrong), MP_ERR_KIND);
            for _ in 0..3 {
                assert_eq!(mp_rlock_release(same), MP_OK);
            }
            assert_eq!(mp_rlock_release(r), MP_ERR_NOT_OWNER);
            assert_eq!(mp_rlock_make_consistent(r), MP_ERR_NOT_OWNER);
            mp_rlock_free(same);
            mp_rlock_free(r);
        }
    }

    #[test]
    fn condition_needs_its_lock_and_times_out_holding_it() {
        // SAFETY: (whole test) pointers come from the constructors.
        unsafe {
            let mut own = null_mut();
            assert_eq!(mp_cond_new(null_mut(), &mut own), MP_OK);
            assert_eq!(mp_cond_wait(own, 0), MP_ERR_NOT_OWNER);
            assert_eq!(mp_cond_notify(own, 1), MP_ERR_NOT_OWNER);
            assert_eq!(mp_cond_notify_all(own), MP_ERR_NOT_OWNER);
            assert_eq!(mp_cond_release(own), MP_ERR_NOT_OWNER);
            assert_eq!(mp_cond_acquire(own, MP_WAIT_FOREVER), MP_OK);
            assert_eq!(mp_cond_acquire(own, 0), MP_OK, "its own lock is re-entrant");
            assert_eq!(mp_cond_wait(own, 1_000_000), MP_ERR_TIMEOUT);
            assert_eq!(mp_cond_notify(own, 1), MP_OK, "still held after the wait");
            assert_eq!(mp_cond_release(own), MP_OK);
            assert_eq!(mp_cond_release(own), MP_OK);
            assert_eq!(mp_cond_release(own), MP_ERR_NOT_OWNER);

            // With a separate lock: opening needs that lock.
            let mut l = null_mut();
            assert_eq!(mp_lock_new(&mut l), MP_OK);
            let mut c = null_mut();
            assert_eq!(mp_cond_new(l, &mut c), MP_OK);
            let mut text = [0 as c_char; 128];
            assert_eq!(mp_cond_handle(c, text.as_mut_ptr(), text.len()), MP_OK);
            let mut opened = null_mut();
            assert_eq!(
                mp_cond_open(text.as_ptr(), null_mut(), &mut opened),
                MP_ERR_INVALID
            );
            assert!(last_error().contains("separate lock"), "{}", last_error());
            assert_eq!(mp_cond_open(text.as_ptr(), l, &mut opened), MP_OK);
            assert_eq!(mp_lock_acquire(l, 0), MP_OK);
            assert_eq!(mp_cond_wait(opened, 0), MP_ERR_TIMEOUT);
            assert_eq!(mp_lock_is_locked(l), 1);
            assert_eq!(mp_cond_notify_all(c), MP_OK);
            assert_eq!(mp_lock_release(l), MP_OK);
            mp_cond_free(opened);
            mp_cond_free(c);
            mp_lock_free(l);
            mp_cond_free(own);
        }
    }
}
