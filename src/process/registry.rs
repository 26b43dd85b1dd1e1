//! Entry points registered by name: what [`Process::from_entry`] and the C
//! `mp_process_start` run in a child.
//!
//! The registry is process-global and looked up by name, so that a `spawn`
//! child (a fresh run of the same executable) can find the same function
//! from the name alone once it registered its entries at start-up.
//!
//! [`Process::from_entry`]: super::Process::from_entry

use std::collections::BTreeMap;
use std::ffi::c_int;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};

/// The longest entry name accepted, in bytes.
pub const MAX_ENTRY_NAME: usize = 255;

/// A registered entry point: a Rust function or a C function pointer.
///
/// Both take the argument bytes given at start and return the exit code.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Entry {
    /// Registered from Rust with [`register`].
    Rust(fn(&[u8]) -> i32),
    /// Registered from C with `mp_register` (C's `mp_entry_fn`).
    C(unsafe extern "C" fn(arg: *const u8, arg_len: usize) -> c_int),
}

impl Entry {
    /// Runs the entry on `arg` and returns its exit code.
    #[inline]
    pub(crate) fn call(self, arg: &[u8]) -> i32 {
        match self {
            Entry::Rust(f) => f(arg),
            // SAFETY: a C entry's contract (`mp_entry_fn`, documented in
            // the header) is to read at most `arg_len` bytes from `arg` and
            // return an exit code; `arg` is a live slice of that length.
            Entry::C(f) => unsafe { f(arg.as_ptr(), arg.len()) },
        }
    }

    /// Whether both are the very same function.
    fn same_as(self, other: Entry) -> bool {
        match (self, other) {
            (Entry::Rust(a), Entry::Rust(b)) => std::ptr::fn_addr_eq(a, b),
            (Entry::C(a), Entry::C(b)) => std::ptr::fn_addr_eq(a, b),
            _ => false,
        }
    }
}

static ENTRIES: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

fn entries() -> MutexGuard<'static, BTreeMap<String, Entry>> {
    // A panic while holding the lock cannot leave the map half-updated
    // (insert and get are the only operations), so a poisoned map is fine.
    ENTRIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `entry` under `name` so that [`Process::from_entry`] (and the C
/// `mp_process_start`) can run it in a child.
///
/// `name` is 1 to [`MAX_ENTRY_NAME`] bytes without NUL (it will travel to
/// `spawn` children as text). Registering the same function under the same
/// name again is fine; another function under a taken name is
/// [`Error::Invalid`] and keeps the first.
///
/// Register entries first thing in `main`, before starting processes: a
/// `spawn` or `forkserver` child looks the name up after running
/// the same registrations.
///
/// # Example
///
/// ```
/// use multiproc::process::{self, Process};
///
/// fn exit_with_first_byte(arg: &[u8]) -> i32 {
///     arg.first().copied().unwrap_or(0).into()
/// }
///
/// process::register("exit_with_first_byte", exit_with_first_byte)?;
/// let child = Process::from_entry("exit_with_first_byte", vec![7])?;
/// child.start()?;
/// assert_eq!(child.join(None)?, 7);
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// [`Process::from_entry`]: super::Process::from_entry
pub fn register(name: &str, entry: fn(&[u8]) -> i32) -> Result<()> {
    register_entry(name, Entry::Rust(entry))
}

/// Registers each function under its own name, as [`register`] does;
/// evaluates to `Result<()>` (the first error stops it).
///
/// ```
/// fn ping(_: &[u8]) -> i32 { 0 }
/// fn pong(_: &[u8]) -> i32 { 1 }
///
/// multiproc::register_entries!(ping, pong)?;
/// multiproc::process::init()?;
/// let child = multiproc::process::Process::from_entry("pong", Vec::new())?;
/// child.start()?;
/// assert_eq!(child.join(None)?, 1);
/// # Ok::<(), multiproc::Error>(())
/// ```
#[macro_export]
macro_rules! register_entries {
    ($($entry:ident),+ $(,)?) => {
        (|| -> $crate::Result<()> {
            $( $crate::process::register(stringify!($entry), $entry)?; )+
            Ok(())
        })()
    };
}

/// [`register`] for either kind of entry (the C API registers C functions).
pub(crate) fn register_entry(name: &str, entry: Entry) -> Result<()> {
    check_name(name)?;
    let mut entries = entries();
    match entries.get(name) {
        Some(old) if old.same_as(entry) => Ok(()),
        Some(_) => Err(Error::Invalid(format!(
            "entry name {name:?} is already registered with another function"
        ))),
        None => {
            entries.insert(name.to_owned(), entry);
            Ok(())
        }
    }
}

/// The entry registered under `name`, or [`Error::NotFound`].
pub(crate) fn lookup(name: &str) -> Result<Entry> {
    entries().get(name).copied().ok_or_else(|| {
        Error::NotFound(format!(
            "no entry point registered under {name:?} (register it first with \
             process::register / mp_register)"
        ))
    })
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Invalid("entry name must not be empty".into()));
    }
    if name.len() > MAX_ENTRY_NAME {
        return Err(Error::Invalid(format!(
            "entry name is {} bytes, at most {MAX_ENTRY_NAME} are allowed",
            name.len()
        )));
    }
    if name.contains('\0') {
        return Err(Error::Invalid("entry name must not contain NUL".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three(_: &[u8]) -> i32 {
        3
    }

    fn length(arg: &[u8]) -> i32 {
        arg.len() as i32
    }

    unsafe extern "C" fn c_length(_arg: *const u8, len: usize) -> c_int {
        len as c_int
    }

    #[test]
    fn lookup_finds_what_was_registered() {
        register("registry-test-three", three).unwrap();
        assert_eq!(lookup("registry-test-three").unwrap().call(b""), 3);
        register_entry("registry-test-c", Entry::C(c_length)).unwrap();
        assert_eq!(lookup("registry-test-c").unwrap().call(b"abcd"), 4);
    }

    #[test]
    fn same_function_again_is_fine_another_is_refused() {
        register("registry-test-twice", length).unwrap();
        register("registry-test-twice", length).unwrap();
        let err = register("registry-test-twice", three).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        // The first registration is kept.
        assert_eq!(lookup("registry-test-twice").unwrap().call(b"xy"), 2);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "nul\0inside"] {
            let err = register(name, three).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{name:?}: {err}");
        }
        let long = "x".repeat(MAX_ENTRY_NAME + 1);
        assert!(matches!(register(&long, three), Err(Error::Invalid(_))));
        register(&"y".repeat(MAX_ENTRY_NAME), three).unwrap();
    }

    #[test]
    fn unknown_name_is_not_found() {
        let err = lookup("registry-test-never-registered").unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
    }
}
