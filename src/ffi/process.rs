//! Processes: `mp_register`, `mp_init`, `mp_process_*`, `mp_active_children`,
//! `mp_current_process_name`, `mp_parent_pid`, `mp_cpu_count`.

use std::ffi::{c_char, c_int};

use super::{MP_OK, Tagged, c_str, copy_out, guard, non_null_mut, timeout_from_ns, write_c_string};
use crate::error::{Error, Result};
use crate::process::{self, Entry, Process, StartMethod};

/// Start method `fork`: the child is a copy of the parent and runs the
/// entry there. Unsafe after the parent started threads (see the docs of
/// the Rust `process` module).
pub const MP_START_FORK: c_int = 0;
/// Start method `spawn`: a fresh run of the same executable, whose `main`
/// calls `mp_register` for its entries and then `mp_init` first thing;
/// `mp_init` runs the entry there and exits. Memfd segments reach the child
/// under the same descriptor numbers, so their handle texts work there.
pub const MP_START_SPAWN: c_int = 1;
/// Start method `forkserver`: a server process (a fresh run of the same
/// executable, started at the first use) forks the child. Safe from a
/// multi-threaded parent; needs `mp_init` as `spawn` does.
pub const MP_START_FORKSERVER: c_int = 2;

/// Flag OR-ed into the method of `mp_process_start`: the child is a daemon,
/// killed (SIGKILL) when its `mp_process_t` is freed while it runs, and
/// when this process ends in any way (killed included).
pub const MP_START_DAEMON: c_int = 0x100;

/// An entry point: runs in the child on the `arg_len` bytes at `arg` given
/// to `mp_process_start`, and returns the child's exit code (the parent
/// sees its low 8 bits).
pub type mp_entry_fn = Option<unsafe extern "C" fn(arg: *const u8, arg_len: usize) -> c_int>;

/// A started child process (opaque). Made by `mp_process_start`, released
/// by `mp_process_free`.
pub struct mp_process_t {
    _opaque: [u8; 0],
}

/// The type tag of a boxed `Process` ("MPPROC" and a version).
const TAG_PROCESS: u64 = 0x4D50_5052_4F43_0001;

/// The `Process` behind a C pointer, shared: several C threads may use one
/// `mp_process_t` at once (one joins while another kills).
///
/// # Safety
///
/// - `p` is NULL or was returned by `mp_process_start` (or another
///   `Tagged::boxed`) and, if freed, its memory was not reused yet.
unsafe fn process_ref<'a>(p: *const mp_process_t) -> Result<&'a Process> {
    // SAFETY: forwarded from the caller: NULL or a live `Tagged` box, whose
    // tag is checked before its contents are trusted.
    unsafe { Tagged::get(p.cast::<Tagged<Process>>(), TAG_PROCESS, "p") }
}

/// The start method and the daemon flag of a C `method`.
fn start_method_from_c(method: c_int) -> Result<(StartMethod, bool)> {
    let daemon = method & MP_START_DAEMON != 0;
    let kind = match method & !MP_START_DAEMON {
        MP_START_FORK => StartMethod::Fork,
        MP_START_SPAWN => StartMethod::Spawn,
        MP_START_FORKSERVER => StartMethod::ForkServer,
        _ => {
            return Err(Error::Invalid(format!(
                "method is {method}: expected MP_START_FORK (0), MP_START_SPAWN (1) or \
                 MP_START_FORKSERVER (2), optionally | MP_START_DAEMON"
            )));
        }
    };
    Ok((kind, daemon))
}

/// Registers `fn` as the entry point `name` (1 to 255 bytes of UTF-8) for
/// `mp_process_start`. Call it before `mp_init`, first thing in `main`.
/// The same function again under the same name is fine; another function
/// under a taken name is MP_ERR_INVALID.
///
/// # Safety
///
/// - `name` is NULL or a NUL-terminated string (copied; need not outlive
///   the call).
/// - `fn` is NULL or a function that follows `mp_entry_fn`'s contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_register(name: *const c_char, r#fn: mp_entry_fn) -> c_int {
    guard("mp_register", || {
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        let name = unsafe { c_str(name, "name") }?;
        let f = r#fn.ok_or(Error::Null("fn"))?;
        process::register_entry(name, Entry::C(f))?;
        Ok(MP_OK)
    })
}

/// Call first in `main`, after `mp_register`, with `main`'s arguments.
/// In the main process it checks them, records that it ran (spawn and
/// forkserver require it) and returns MP_OK. In a child started by
/// MP_START_SPAWN it runs the entry point the parent named and exits with
/// its code; in the fork server it serves and exits: it does not return
/// there.
///
/// MP_ERR_INVALID for a negative `argc` or a NULL among `argv[0..argc]`;
/// MP_ERR_NULL for a NULL `argv` with `argc > 0`.
///
/// # Safety
///
/// - `argv` is NULL or points to `argc` readable `char *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_init(argc: c_int, argv: *mut *mut c_char) -> c_int {
    guard("mp_init", || {
        let argc = usize::try_from(argc)
            .map_err(|_| Error::Invalid(format!("argc is {argc}: expected 0 or more")))?;
        if argc > 0 {
            if argv.is_null() {
                return Err(Error::Null("argv"));
            }
            for i in 0..argc {
                // SAFETY: the caller promises `argv` has `argc` entries.
                if unsafe { *argv.add(i) }.is_null() {
                    return Err(Error::Invalid(format!(
                        "argv[{i}] is NULL, but argc is {argc}"
                    )));
                }
            }
        }
        process::init()?;
        Ok(MP_OK)
    })
}

/// Starts a child that runs the entry point registered as `entry` on a copy
/// of the `arg_len` bytes at `arg` (`arg` may be NULL when `arg_len` is 0),
/// and stores the new process in `*out`. Its name is Python's default,
/// `Process-N` (see `mp_process_start_named`).
///
/// `method` is MP_START_FORK, MP_START_SPAWN or MP_START_FORKSERVER,
/// optionally `| MP_START_DAEMON` (any other number: MP_ERR_INVALID).
/// MP_ERR_NOT_FOUND for an unregistered `entry`: nothing starts.
/// MP_ERR_STATE for spawn or forkserver when `mp_init` did not run. On
/// error `*out` is left as it was.
///
/// # Safety
///
/// - `entry` is NULL or a NUL-terminated string.
/// - `arg` is NULL or readable for `arg_len` bytes.
/// - `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_start(
    method: c_int,
    entry: *const c_char,
    arg: *const u8,
    arg_len: usize,
    out: *mut *mut mp_process_t,
) -> c_int {
    guard("mp_process_start", || {
        // SAFETY: forwarded from the caller's promises; no name.
        unsafe { start(method, entry, arg, arg_len, std::ptr::null(), out) }
    })
}

/// As `mp_process_start`, with the child's name (Python's `name=`): what
/// `mp_process_name` gives, and `mp_current_process_name` in the child.
/// NULL `name`: the default, `Process-N`. A name is UTF-8 without NUL
/// (MP_ERR_INVALID otherwise).
///
/// # Safety
///
/// - `entry` is NULL or a NUL-terminated string; so is `name`.
/// - `arg` is NULL or readable for `arg_len` bytes.
/// - `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_start_named(
    method: c_int,
    entry: *const c_char,
    arg: *const u8,
    arg_len: usize,
    name: *const c_char,
    out: *mut *mut mp_process_t,
) -> c_int {
    guard("mp_process_start_named", || {
        // SAFETY: forwarded from the caller's promises.
        unsafe { start(method, entry, arg, arg_len, name, out) }
    })
}

/// The body of `mp_process_start` and `mp_process_start_named`.
///
/// # Safety
///
/// - As `mp_process_start_named`.
unsafe fn start(
    method: c_int,
    entry: *const c_char,
    arg: *const u8,
    arg_len: usize,
    name: *const c_char,
    out: *mut *mut mp_process_t,
) -> Result<c_int> {
    // SAFETY: the caller promises `out` is NULL or writable.
    let out = unsafe { non_null_mut(out, "out") }?;
    // SAFETY: the caller promises `entry` is NULL or NUL-terminated.
    let entry = unsafe { c_str(entry, "entry") }?;
    let name = if name.is_null() {
        None
    } else {
        // SAFETY: the caller promises `name` is NULL or NUL-terminated.
        Some(unsafe { c_str(name, "name") }?)
    };
    let (method, daemon) = start_method_from_c(method)?;
    let arg = match (arg.is_null(), arg_len) {
        (true, 0) => Vec::new(),
        (true, _) => return Err(Error::Null("arg")),
        (false, len) if len > isize::MAX as usize => {
            return Err(Error::Invalid(format!(
                "arg_len {len} is larger than any object can be"
            )));
        }
        // SAFETY: the caller promises `arg` is readable for `arg_len`
        // bytes, which is at most isize::MAX.
        (false, len) => unsafe { std::slice::from_raw_parts(arg, len) }.to_vec(),
    };
    let mut process = Process::from_entry(entry, arg)?
        .start_method(method)
        .daemon(daemon);
    if let Some(name) = name {
        process = process.with_name(name);
    }
    process.start()?;
    *out = Tagged::boxed(TAG_PROCESS, process).cast::<mp_process_t>();
    Ok(MP_OK)
}

/// Writes the child's name, NUL-terminated, into `buf` (`cap` bytes);
/// MP_ERR_TOO_LARGE when it does not fit.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
/// - `buf` is NULL or writable for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_name(
    p: *const mp_process_t,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard("mp_process_name", || {
        // SAFETY: the caller promises `p` is NULL or live.
        let process = unsafe { process_ref(p) }?;
        // SAFETY: the caller promises `buf` is NULL or writable for `cap`.
        unsafe { write_c_string(process.name(), buf, cap) }
    })
}

/// Waits for the child to end (at most `timeout_ns`; MP_WAIT_FOREVER: no
/// limit; 0: check once) and stores its exit code in `*exitcode` (may be
/// NULL): the code it returned, or minus the signal that killed it.
/// MP_ERR_TIMEOUT if it still runs. Joining again gives the same code.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
/// - `exitcode` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_join(
    p: *mut mp_process_t,
    timeout_ns: i64,
    exitcode: *mut c_int,
) -> c_int {
    guard("mp_process_join", || {
        // SAFETY: the caller promises `p` is NULL or live.
        let process = unsafe { process_ref(p) }?;
        let timeout = timeout_from_ns(timeout_ns)?;
        let code = process.join(timeout)?;
        // SAFETY: the caller promises `exitcode` is NULL or writable.
        if let Some(out) = unsafe { exitcode.as_mut() } {
            *out = code;
        }
        Ok(MP_OK)
    })
}

/// The child's pid (positive), or a negative MP_ERR_* code.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_pid(p: *const mp_process_t) -> c_int {
    guard("mp_process_pid", || {
        // SAFETY: the caller promises `p` is NULL or live.
        let process = unsafe { process_ref(p) }?;
        process
            .pid()
            .ok_or_else(|| Error::Internal("a started process without a pid".into()))
    })
}

/// 1 while the child runs, 0 once it ended (it is reaped then), or a
/// negative MP_ERR_* code.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_is_alive(p: *mut mp_process_t) -> c_int {
    guard("mp_process_is_alive", || {
        // SAFETY: the caller promises `p` is NULL or live.
        let process = unsafe { process_ref(p) }?;
        Ok(process.is_alive().into())
    })
}

/// Sends SIGTERM to the child (exit code -15 unless it handles it). Once
/// the child was reaped, does nothing and returns MP_OK.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_terminate(p: *mut mp_process_t) -> c_int {
    guard("mp_process_terminate", || {
        // SAFETY: the caller promises `p` is NULL or live.
        unsafe { process_ref(p) }?.terminate()?;
        Ok(MP_OK)
    })
}

/// Sends SIGKILL to the child (exit code -9). Once the child was reaped,
/// does nothing and returns MP_OK.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_kill(p: *mut mp_process_t) -> c_int {
    guard("mp_process_kill", || {
        // SAFETY: the caller promises `p` is NULL or live.
        unsafe { process_ref(p) }?.kill()?;
        Ok(MP_OK)
    })
}

/// Stores the exit code of an ended child in `*code` (reaping it if
/// needed); MP_ERR_STATE while it runs.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
/// - `code` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_exitcode(p: *mut mp_process_t, code: *mut c_int) -> c_int {
    guard("mp_process_exitcode", || {
        // SAFETY: the caller promises `p` is NULL or live.
        let process = unsafe { process_ref(p) }?;
        // SAFETY: the caller promises `code` is NULL or writable.
        let out = unsafe { non_null_mut(code, "code") }?;
        *out = process
            .exitcode()
            .ok_or_else(|| Error::State(format!("process {} is still running", process.name())))?;
        Ok(MP_OK)
    })
}

/// Stores in `*fd` the child's pidfd (Python's `sentinel`), which becomes
/// readable when the child ends: poll it with other descriptors. It belongs
/// to `p` (do not close it) and stays valid until `mp_process_free`.
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start` not freed yet.
/// - `fd` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_sentinel(p: *mut mp_process_t, fd: *mut c_int) -> c_int {
    use std::os::fd::AsRawFd;
    guard("mp_process_sentinel", || {
        // SAFETY: the caller promises `p` is NULL or live.
        let process = unsafe { process_ref(p) }?;
        // SAFETY: the caller promises `fd` is NULL or writable.
        let out = unsafe { non_null_mut(fd, "fd") }?;
        *out = process.sentinel()?.as_raw_fd();
        Ok(MP_OK)
    })
}

/// Releases `p` (NULL: nothing). An ended child is reaped; a child still
/// running keeps running and is reaped by a later `mp_process_start` or
/// `mp_process_join` after it ends (kill and join it first to wait for it).
/// A pointer that is not a live process is refused (see `mp_last_error`).
///
/// # Safety
///
/// - `p` is NULL or a process from `mp_process_start`; not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_process_free(p: *mut mp_process_t) {
    guard("mp_process_free", || {
        // SAFETY: forwarded from the caller; the tag is checked first.
        unsafe { Tagged::<Process>::free(p.cast(), TAG_PROCESS) }?;
        Ok(MP_OK)
    });
}

/// Writes this process's name, NUL-terminated, into `buf` (`cap` bytes):
/// `MainProcess` in a process multiproc did not start, the name given at
/// start in a child (Python's `current_process().name`).
/// MP_ERR_TOO_LARGE when it does not fit.
///
/// # Safety
///
/// - `buf` is NULL or writable for `cap` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_current_process_name(buf: *mut c_char, cap: usize) -> c_int {
    guard("mp_current_process_name", || {
        let me = process::current_process();
        // SAFETY: the caller promises `buf` is NULL or writable for `cap`.
        unsafe { write_c_string(me.name(), buf, cap) }
    })
}

/// Reaps every child of this process that has ended (Python's
/// `active_children()`), then stores in `*count` how many still run and
/// their pids in `pids[0..*count]`. MP_ERR_TOO_LARGE when `cap` is short
/// (`*count` says how many there are; `pids` may be NULL with `cap` 0 to
/// ask just that).
///
/// # Safety
///
/// - `pids` is NULL or writable for `cap` ints.
/// - `count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mp_active_children(
    pids: *mut c_int,
    cap: usize,
    count: *mut usize,
) -> c_int {
    guard("mp_active_children", || {
        let running = process::active_children();
        // SAFETY: the caller promises `pids` is NULL or writable for `cap`
        // ints, `count` NULL or writable.
        unsafe { copy_out(&running, pids, "pids", cap, count) }
    })
}

/// The pid of the process that started this one (Python's
/// `parent_process().pid`), or 0 in a process multiproc did not start.
#[unsafe(no_mangle)]
pub extern "C" fn mp_parent_pid() -> c_int {
    guard("mp_parent_pid", || {
        Ok(process::parent_process().map_or(0, |p| p.pid()))
    })
}

/// How many CPUs this process may run on (affinity and cgroup quota
/// respected, unlike Python's `os.cpu_count()`), or a negative MP_ERR_* code.
#[unsafe(no_mangle)]
pub extern "C" fn mp_cpu_count() -> c_int {
    guard("mp_cpu_count", || {
        Ok(process::cpu_count()?.min(c_int::MAX as usize) as c_int)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_methods_from_c() {
        assert_eq!(start_method_from_c(0).unwrap(), (StartMethod::Fork, false));
        assert_eq!(start_method_from_c(1).unwrap(), (StartMethod::Spawn, false));
        assert_eq!(
            start_method_from_c(2).unwrap(),
            (StartMethod::ForkServer, false)
        );
        assert_eq!(
            start_method_from_c(2 | MP_START_DAEMON).unwrap(),
            (StartMethod::ForkServer, true)
        );
        assert!(matches!(start_method_from_c(3), Err(Error::Invalid(_))));
        assert!(matches!(start_method_from_c(-1), Err(Error::Invalid(_))));
        assert!(matches!(
            start_method_from_c(3 | MP_START_DAEMON),
            Err(Error::Invalid(_))
        ));
    }
}
