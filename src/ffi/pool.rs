//! Pools: `mp_pool_register`, `mp_pool_new`, `mp_pool_map`,
//! `mp_pool_apply`, `mp_pool_results_*`, `mp_pool_close`, `mp_pool_join`,
//! `mp_pool_terminate`, `mp_pool_free`.

use std::ffi::{c_char, c_int};

use super::process::{MP_START_FORK, MP_START_FORKSERVER, MP_START_SPAWN};
use super::{MP_OK, Tagged, c_str, copy_out, fail_status, guard, non_null_mut};
use crate::error::{Error, Result};
use crate::pool::{self, BytesResults, Pool, PoolFn, TaskError};
use crate::process::StartMethod;

/// A pool function: reads the `in_len` bytes at `in`, writes its result (at
/// most `out_cap` bytes) at `out` and its length in `*out_len`, and returns
/// 0, or any other value to fail the task (reported as MP_ERR_VALUE).
pub type mp_pool_fn = Option<
    unsafe extern "C" fn(
        input: *const u8,
        in_len: usize,
        out: *mut u8,
        out_cap: usize,
        out_len: *mut usize,
    ) -> c_int,
>;

/// `chunksize` of `mp_pool_map` for Python's default:
/// `ceil(count / (4 * processes))`.
pub const MP_POOL_CHUNKSIZE_AUTO: usize = !0;

/// A pool of worker processes (opaque). Made by `mp_pool_new`, released by
/// `mp_pool_free`.
pub struct mp_pool_t {
    _opaque: [u8; 0],
}

/// The outcomes of a `mp_pool_map` (opaque), one per input. Released by
/// `mp_pool_results_free`.
pub struct mp_pool_results_t {
    _opaque: [u8; 0],
}

/// The type tag of a boxed `Pool` ("MPPOOL" and a version).
const TAG_POOL: u64 = 0x4D50_504F_4F4C_0001;
/// The type tag of boxed pool results ("MPPRES" and a version).
const TAG_RESULTS: u64 = 0x4D50_5052_4553_0001;

/// # Safety
///
/// - `p` is NULL or was returned by `mp_pool_new` and, if freed, its
///   memory was not reused yet.
unsafe fn pool_ref<'a>(p: *const mp_pool_t) -> Result<&'a Pool> {
    // SAFETY: forwarded from the caller; the tag is checked first.
    unsafe { Tagged::get(p.cast::<Tagged<Pool>>(), TAG_POOL, "pool") }
}

/// # Safety
///
/// - `r` is NULL or was returned by `mp_pool_map` and, if freed, its
///   memory was not reused yet.
unsafe fn results_ref<'a>(r: *const mp_pool_results_t) -> Result<&'a BytesResults> {
    // SAFETY: forwarded from the caller; the tag is checked first.
    unsafe { Tagged::get(r.cast::<Tagged<BytesResults>>(), TAG_RESULTS, "results") }
}

/// A task's error as its C status, with its message as the last error.
/// Not through [`Error`]: `Error::from(TaskError)` keeps only the statuses
/// whose variants carry no more than a text, so a refusal such as an input
/// over the message size (MP_ERR_TOO_LARGE) came out as MP_ERR_VALUE.
fn task_failure(e: TaskError) -> c_int {
    fail_status(e.status(), &e.to_string())
}

/// Registers `fn` as the pool function `name` (1 to 255 bytes of UTF-8)
/// for `mp_pool_map` and `mp_pool_apply`. Call it before `mp_init`, first
/// thing in `main`, so that spawn and forkserver workers find it too. The
/// same function again is fine; another one under a taken name is
/// MP_ERR_INVALID.
///
/// # Safety
///
/// - `name` is NULL or a NUL-terminated string (copied).
/// - `fn` is NULL or a function that follows `mp_pool_fn`'s contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_register(name: *const c_char, r#fn: mp_pool_fn) -> c_int {
    guard("mp_pool_register", || {
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { c_str(name, "name") }?;
        let f = r#fn.ok_or(Error::Null("fn"))?;
        pool::register_pool_fn(name, PoolFn::C(f))?;
        Ok(MP_OK)
    })
}

/// Starts a pool of `processes` workers (at least 1; see `mp_cpu_count`)
/// by `start_method` (MP_START_FORK, MP_START_SPAWN or
/// MP_START_FORKSERVER) and stores it in `*out`. MP_ERR_INVALID for 0
/// processes or another method; MP_ERR_STATE for spawn or forkserver
/// without `mp_init`. On error `*out` is left as it was.
///
/// # Safety
///
/// - `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_new(
    processes: usize,
    start_method: c_int,
    out: *mut *mut mp_pool_t,
) -> c_int {
    guard("mp_pool_new", || {
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { non_null_mut(out, "out") }?;
        let method = match start_method {
            MP_START_FORK => StartMethod::Fork,
            MP_START_SPAWN => StartMethod::Spawn,
            MP_START_FORKSERVER => StartMethod::ForkServer,
            m => {
                return Err(Error::Invalid(format!(
                    "start_method is {m}: expected MP_START_FORK (0), MP_START_SPAWN (1) \
                     or MP_START_FORKSERVER (2)"
                )));
            }
        };
        let pool = Pool::builder()
            .processes(processes)
            .start_method(method)
            .build()?;
        *out = Tagged::boxed(TAG_POOL, pool).cast::<mp_pool_t>();
        Ok(MP_OK)
    })
}

/// Runs the pool function `name` on each of the `count` inputs (input `i`:
/// `input_lens[i]` bytes at `inputs[i]`), `chunksize` inputs per task
/// (MP_POOL_CHUNKSIZE_AUTO for Python's default; 0 is MP_ERR_INVALID),
/// waits for all, and stores the outcomes in `*out` (read them with
/// `mp_pool_results_get`, free them with `mp_pool_results_free`).
///
/// A task that fails, or whose worker dies, is that input's outcome; the
/// call itself fails only when nothing could be submitted: MP_ERR_NOT_FOUND
/// for an unregistered `name`, MP_ERR_CLOSED after close or terminate,
/// MP_ERR_TOO_LARGE for an input over the pool's message size (64 KiB).
///
/// # Safety
///
/// - `pool` is NULL or live; `name` NULL or NUL-terminated; `out` NULL or
///   writable.
/// - Unless `count` is 0: `inputs` and `input_lens` point to `count`
///   entries; `inputs[i]` is readable for `input_lens[i]` bytes (NULL when
///   that is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_map(
    pool: *mut mp_pool_t,
    name: *const c_char,
    inputs: *const *const u8,
    input_lens: *const usize,
    count: usize,
    chunksize: usize,
    out: *mut *mut mp_pool_results_t,
) -> c_int {
    guard("mp_pool_map", || {
        // SAFETY: the caller promises `pool` is NULL or live.
        let pool = unsafe { pool_ref(pool) }?;
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { c_str(name, "name") }?;
        // SAFETY: the caller promises `out` is NULL or writable.
        let out = unsafe { non_null_mut(out, "out") }?;
        let mut items: Vec<&[u8]> = Vec::with_capacity(count);
        if count > 0 {
            if inputs.is_null() {
                return Err(Error::Null("inputs"));
            }
            if input_lens.is_null() {
                return Err(Error::Null("input_lens"));
            }
            for i in 0..count {
                // SAFETY: both arrays have `count` entries (caller's promise).
                let (p, len) = unsafe { (*inputs.add(i), *input_lens.add(i)) };
                if len == 0 {
                    items.push(&[]);
                } else if p.is_null() {
                    return Err(Error::Invalid(format!(
                        "inputs[{i}] is NULL with a length of {len}"
                    )));
                } else {
                    // SAFETY: `inputs[i]` is readable for `len` bytes
                    // (caller's promise) and is only read during this call.
                    items.push(unsafe { std::slice::from_raw_parts(p, len) });
                }
            }
        }
        let chunksize = (chunksize != MP_POOL_CHUNKSIZE_AUTO).then_some(chunksize);
        let results = match pool.map_bytes(name, &items, chunksize) {
            Ok(results) => results,
            Err(e) => return Ok(task_failure(e)),
        };
        *out = Tagged::boxed(TAG_RESULTS, results).cast::<mp_pool_results_t>();
        Ok(MP_OK)
    })
}

/// The number of outcomes (the `count` of the `mp_pool_map`); 0 for a
/// pointer that is not live results.
///
/// # Safety
///
/// - `results` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_results_len(results: *const mp_pool_results_t) -> usize {
    // SAFETY: the caller promises `results` is NULL or live.
    unsafe { results_ref(results) }.map_or(0, |r| r.len())
}

/// Copies the result of input `i` into `buf` (capacity `cap`) and its
/// length into `*len`; MP_ERR_TOO_LARGE (with `*len` set) when `cap` is
/// short: ask again with a larger buffer. When input `i` failed, its
/// status: MP_ERR_VALUE (the function failed or a Rust function panicked),
/// MP_ERR_OWNER_DIED (the worker died running it: WorkerLost),
/// MP_ERR_CLOSED (the pool was terminated first); `mp_last_error` says
/// more. MP_ERR_INVALID for `i` out of range.
///
/// # Safety
///
/// - `results` is NULL or live; `buf` NULL or writable for `cap` bytes;
///   `len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_results_get(
    results: *const mp_pool_results_t,
    i: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard("mp_pool_results_get", || {
        // SAFETY: the caller promises `results` is NULL or live.
        let results = unsafe { results_ref(results) }?;
        if i >= results.len() {
            return Err(Error::Invalid(format!(
                "result {i} of {} results",
                results.len()
            )));
        }
        results.with(i, |r| match r {
            // SAFETY: forwarded from the caller (buf, cap, len).
            Ok(bytes) => unsafe { copy_out(bytes, buf, "buf", cap, len) },
            Err(e) => Ok(task_failure(e.clone())),
        })
    })
}

/// Releases results from `mp_pool_map` (NULL: nothing).
///
/// # Safety
///
/// - `results` is NULL or live; not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_results_free(results: *mut mp_pool_results_t) {
    guard("mp_pool_results_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<BytesResults>::free(results.cast(), TAG_RESULTS) }?;
        Ok(MP_OK)
    });
}

/// Runs the pool function `name` on the `arg_len` bytes at `arg` in a
/// worker, waits, and copies its result into `buf` (capacity `cap`), its
/// length into `*len`. MP_ERR_TOO_LARGE (with `*len` set) when `cap` is
/// short: that result is gone, call again with a larger buffer. The task's
/// own failure as in `mp_pool_results_get`; MP_ERR_NOT_FOUND,
/// MP_ERR_CLOSED as in `mp_pool_map`.
///
/// # Safety
///
/// - `pool` NULL or live; `name` NULL or NUL-terminated; `arg` readable for
///   `arg_len` bytes (may be NULL when 0); `buf` NULL or writable for `cap`
///   bytes; `len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_apply(
    pool: *mut mp_pool_t,
    name: *const c_char,
    arg: *const u8,
    arg_len: usize,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> c_int {
    guard("mp_pool_apply", || {
        // SAFETY: the caller promises `pool` is NULL or live.
        let pool = unsafe { pool_ref(pool) }?;
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { c_str(name, "name") }?;
        let arg: &[u8] = if arg_len == 0 {
            &[]
        } else if arg.is_null() {
            return Err(Error::Null("arg"));
        } else {
            // SAFETY: readable for `arg_len` bytes (caller's promise).
            unsafe { std::slice::from_raw_parts(arg, arg_len) }
        };
        let result = match pool.apply_bytes(name, arg) {
            Ok(result) => result,
            Err(e) => return Ok(task_failure(e)),
        };
        // SAFETY: forwarded from the caller (buf, cap, len).
        unsafe { copy_out(&result, buf, "buf", cap, len) }
    })
}

/// Stops new work; submitted work finishes, then the workers exit.
///
/// # Safety
///
/// - `pool` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_close(pool: *mut mp_pool_t) -> c_int {
    guard("mp_pool_close", || {
        // SAFETY: the caller promises `pool` is NULL or live.
        unsafe { pool_ref(pool) }?.close()?;
        Ok(MP_OK)
    })
}

/// Kills the workers now; unfinished tasks fail with MP_ERR_CLOSED.
///
/// # Safety
///
/// - `pool` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_terminate(pool: *mut mp_pool_t) -> c_int {
    guard("mp_pool_terminate", || {
        // SAFETY: the caller promises `pool` is NULL or live.
        unsafe { pool_ref(pool) }?.terminate()?;
        Ok(MP_OK)
    })
}

/// Waits for the workers to exit, after `mp_pool_close` or
/// `mp_pool_terminate` (MP_ERR_STATE before).
///
/// # Safety
///
/// - `pool` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_join(pool: *mut mp_pool_t) -> c_int {
    guard("mp_pool_join", || {
        // SAFETY: the caller promises `pool` is NULL or live.
        unsafe { pool_ref(pool) }?.join()?;
        Ok(MP_OK)
    })
}

/// Terminates the pool (if it still runs), joins it and releases it (NULL:
/// nothing). Results from `mp_pool_map` stay readable.
///
/// # Safety
///
/// - `pool` is NULL or live; not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_pool_free(pool: *mut mp_pool_t) {
    guard("mp_pool_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<Pool>::free(pool.cast(), TAG_POOL) }?;
        Ok(MP_OK)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi::MP_ERR_TOO_LARGE;
    use std::ptr::null_mut;

    unsafe extern "C" fn echo(
        input: *const u8,
        in_len: usize,
        out: *mut u8,
        out_cap: usize,
        out_len: *mut usize,
    ) -> c_int {
        let n = in_len.min(out_cap);
        // SAFETY: the pool's contract for `mp_pool_fn`; `n` fits both.
        unsafe {
            std::ptr::copy_nonoverlapping(input, out, n);
            *out_len = n;
        }
        0
    }

    /// Found while widening the c_api fuzz target: a process count whose
    /// sizes overflow wrapped (in release) into a record block too small for
    /// the workers' slots, which were then written past its end as the
    /// workers started. Refused now, before anything starts.
    #[test]
    fn a_pool_too_large_to_size_is_refused_before_anything_starts() {
        for processes in [usize::MAX, 1 << 61, u32::MAX as usize + 1] {
            let mut pool = null_mut();
            // SAFETY: `pool` is a writable out-pointer.
            let status = unsafe { mp_pool_new(processes, MP_START_FORK, &mut pool) };
            assert_eq!(status, crate::ffi::MP_ERR_INVALID, "{processes} processes");
            assert!(pool.is_null(), "*out written on failure");
        }
    }

    /// Found by the c_api fuzz target: the refusal of an input over the
    /// pool's message size came out as MP_ERR_VALUE, not MP_ERR_TOO_LARGE.
    #[test]
    fn an_input_over_the_message_size_is_too_large() {
        let name = c"ffi.pool.tests.echo";
        let big = vec![7u8; 70 * 1024];
        let (mut buf, mut len) = ([0u8; 8], 0usize);
        // SAFETY: (whole block) C strings, buffers and out-pointers are ours
        // with the sizes given; the pool is freed once.
        unsafe {
            assert_eq!(mp_pool_register(name.as_ptr(), Some(echo)), MP_OK);
            let mut pool = null_mut();
            assert_eq!(mp_pool_new(1, MP_START_FORK, &mut pool), MP_OK);
            let status = mp_pool_apply(
                pool,
                name.as_ptr(),
                big.as_ptr(),
                big.len(),
                buf.as_mut_ptr(),
                buf.len(),
                &mut len,
            );
            assert_eq!(status, MP_ERR_TOO_LARGE);
            let (inputs, lens) = ([big.as_ptr()], [big.len()]);
            let mut results = null_mut();
            let status = mp_pool_map(
                pool,
                name.as_ptr(),
                inputs.as_ptr(),
                lens.as_ptr(),
                1,
                MP_POOL_CHUNKSIZE_AUTO,
                &mut results,
            );
            assert_eq!(status, MP_ERR_TOO_LARGE);
            assert!(results.is_null());
            // A small input still goes through.
            let status = mp_pool_apply(
                pool,
                name.as_ptr(),
                big.as_ptr(),
                3,
                buf.as_mut_ptr(),
                8,
                &mut len,
            );
            assert_eq!((status, len, &buf[..3]), (MP_OK, 3, &[7u8, 7, 7][..]));
            mp_pool_free(pool);
        }
    }
}
