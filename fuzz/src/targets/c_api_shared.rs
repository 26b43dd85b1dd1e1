//! The manager and the pool every run of the `c_api` body shares in one
//! process, the functions registered for them, and the private directory
//! the body's Unix sockets go in.
//!
//! Both are servers in child processes, so a fuzz loop must not make one
//! per input: [`start_shared`] makes them once, while the process has no
//! other thread in the library (the fuzz target's init; the replay takes a
//! lock the other replays hold per input), and [`stop_shared`] stops them,
//! reaps their processes and removes the directory.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use multiproc::ffi::process::*;
use multiproc::ffi::*;

use super::c_api::Kind;

/// Pool functions, registered before the pool starts (its fork workers
/// inherit them). A `static`, not a `const`: a function's address may
/// differ between codegen units, and registering under a taken name
/// compares addresses.
pub(super) static POOL_FNS: [(&CStr, mp_pool_fn); 3] = [
    (c"fuzz.echo", Some(echo)),
    (c"fuzz.fail", Some(fail)),
    (c"fuzz.liar", Some(liar)),
];

/// An entry point, registered; never started (the body starts no process).
pub(super) const ENTRY: &CStr = c"fuzz.entry";
/// The function registered as [`ENTRY`].
pub(super) static ENTRY_FN: mp_entry_fn = Some(entry);

/// What the body may use; pointers as addresses so the state is `Send`.
struct Shared {
    manager: usize,
    pool: usize,
    view: View,
}

/// The shared objects as one run sees them.
#[derive(Clone, Default)]
pub(super) struct View {
    pub(super) objects: Vec<(Kind, usize)>,
    /// The manager's address text and key.
    pub(super) manager_address: Vec<u8>,
    pub(super) manager_key: Vec<u8>,
    /// A directory of this process's own for Unix socket paths.
    pub(super) dir: Option<PathBuf>,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// Copies the input to the output, as much as fits.
unsafe extern "C" fn echo(
    input: *const u8,
    in_len: usize,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> c_int {
    let n = in_len.min(out_cap);
    // SAFETY: the pool gives `in_len` readable bytes at `input`, `out_cap`
    // writable ones at `out`, and a writable `out_len`; `n` fits both.
    unsafe {
        if n > 0 {
            std::ptr::copy_nonoverlapping(input, out, n);
        }
        *out_len = n;
    }
    0
}

/// Fails every task.
unsafe extern "C" fn fail(
    _: *const u8,
    _: usize,
    _: *mut u8,
    _: usize,
    out_len: *mut usize,
) -> c_int {
    // SAFETY: the pool gives a writable `out_len`.
    unsafe { *out_len = 0 };
    7
}

/// Claims to have written more than the buffer holds (a broken C
/// function): the pool must refuse the claim, not read past its buffer.
unsafe extern "C" fn liar(
    _: *const u8,
    _: usize,
    _: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
) -> c_int {
    // SAFETY: the pool gives a writable `out_len`.
    unsafe { *out_len = out_cap.saturating_add(1) };
    0
}

/// An entry point that would exit at once.
unsafe extern "C" fn entry(_: *const u8, _: usize) -> c_int {
    0
}

/// Starts the shared manager (fork) and pool (one fork worker), once per
/// process; later calls do nothing. Call it while no other thread uses the
/// library: the servers start by `fork`.
pub fn start_shared() {
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if shared.is_some() {
        return;
    }
    // SAFETY: (whole block) C strings are NUL-terminated; out-pointers are
    // ours; the functions follow their C contracts.
    unsafe {
        for (name, f) in POOL_FNS {
            assert_eq!(mp_pool_register(name.as_ptr(), f), MP_OK);
        }
        assert_eq!(mp_register(ENTRY.as_ptr(), ENTRY_FN), MP_OK);
        let mut manager = std::ptr::null_mut();
        let status = mp_manager_start(MP_START_FORK, &mut manager);
        assert_eq!(status, MP_OK, "the shared manager did not start");
        let mut pool = std::ptr::null_mut();
        let status = mp_pool_new(1, MP_START_FORK, &mut pool);
        assert_eq!(status, MP_OK, "the shared pool did not start");

        let mut text = [0 as c_char; 512];
        assert_eq!(
            mp_manager_address(manager, text.as_mut_ptr(), text.len()),
            MP_OK
        );
        let manager_address = CStr::from_ptr(text.as_ptr()).to_bytes().to_vec();
        let mut key = [0u8; 64];
        let mut len = 0;
        assert_eq!(
            mp_manager_authkey(manager, key.as_mut_ptr(), key.len(), &mut len),
            MP_OK
        );
        let dir = std::env::temp_dir().join(format!("mp-fuzz-capi-{}", std::process::id()));
        let dir = std::fs::create_dir(&dir).ok().map(|()| dir);
        *shared = Some(Shared {
            manager: manager as usize,
            pool: pool as usize,
            view: View {
                objects: vec![
                    (Kind::Manager, manager as usize),
                    (Kind::Pool, pool as usize),
                ],
                manager_address,
                manager_key: key[..len].to_vec(),
                dir,
            },
        });
    }
}

/// Stops the shared manager and pool (terminates the pool, shuts the
/// manager down, reaps both) and removes the socket directory; nothing if
/// they were not started.
pub fn stop_shared() {
    let Some(shared) = SHARED.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        return;
    };
    // SAFETY: both pointers came from their constructors and are freed
    // once, here (the body never frees them).
    unsafe {
        mp_pool_free(shared.pool as *mut mp_pool_t);
        mp_manager_free(shared.manager as *mut mp_manager_t);
    }
    if let Some(dir) = shared.view.dir {
        // Every run's listeners removed their sockets: the directory is
        // empty, or remove_dir says so.
        std::fs::remove_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (a socket left behind?)", dir.display()));
    }
}

/// `stop_shared` for `atexit` (the libFuzzer target's; the replay stops
/// explicitly).
#[allow(dead_code)]
pub extern "C" fn stop_shared_at_exit() {
    stop_shared();
}

/// The shared objects for a new run (none before [`start_shared`]).
pub(super) fn view() -> View {
    SHARED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|s| s.view.clone())
        .unwrap_or_default()
}

/// `text` as a C string (NULs dropped).
pub(super) fn c_string(mut text: Vec<u8>) -> CString {
    text.retain(|b| *b != 0);
    CString::new(text).expect("NULs removed")
}

/// Objects as C pointers.
pub(super) fn pointers(objects: &[(Kind, usize)]) -> Vec<(Kind, *mut c_void)> {
    objects
        .iter()
        .map(|(k, p)| (*k, *p as *mut c_void))
        .collect()
}
