//! What a child does with its target: run it, turn the result into an exit
//! code, report a panic or an error on stderr, flush, and `_exit`.

use std::any::Any;
use std::fmt::Display;
use std::io::{Stdout, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::sys;

/// A target's return value that becomes the child's exit code.
///
/// | returned            | exit code                                  |
/// |---------------------|--------------------------------------------|
/// | `()`                | 0                                          |
/// | `i32`               | that number                                |
/// | `Ok(r)`             | `r`'s code (`Result<(), E>`: 0)            |
/// | `Err(e)`            | 1, after writing `Error: {e}` on stderr    |
///
/// As with `_exit(2)`, the parent sees only the low 8 bits of the code:
/// 256 reads back as 0 and -1 as 255. A target that panics exits with 1.
///
/// # Example
///
/// ```
/// use multiproc::process::Process;
///
/// let child = Process::new(|| -> Result<(), String> { Err("no input".into()) });
/// child.start()?;
/// assert_eq!(child.join(None)?, 1); // and "Error: no input" on its stderr
/// # Ok::<(), multiproc::Error>(())
/// ```
pub trait IntoExitCode {
    /// The exit code; may write a report on stderr first.
    fn into_exit_code(self) -> i32;
}

impl IntoExitCode for () {
    fn into_exit_code(self) -> i32 {
        0
    }
}

impl IntoExitCode for i32 {
    fn into_exit_code(self) -> i32 {
        self
    }
}

impl<R: IntoExitCode, E: Display> IntoExitCode for Result<R, E> {
    fn into_exit_code(self) -> i32 {
        match self {
            Ok(r) => r.into_exit_code(),
            Err(e) => {
                // Straight to descriptor 2, not `eprintln!`: a test harness
                // captures `eprintln!` into a buffer this child never hands back.
                let _ = writeln!(std::io::stderr(), "Error: {e}");
                1
            }
        }
    }
}

/// The boxed target of a process: runs in the child, returns the exit code.
///
/// `FnMut` over an `Option` of the user's `FnOnce` (see [`target`]) rather
/// than a `Box<dyn FnOnce>`: calling that consumes the box and frees it in
/// the child, and in a fork child every allocator call writes to pages the
/// child then has to copy (a page fault each, on the path `join` waits for).
pub(crate) type Target = Box<dyn FnMut() -> i32 + Send + 'static>;

/// Boxes `f` as a [`Target`]; it runs once (a second call, which nothing
/// makes, would panic).
pub(crate) fn target(f: impl FnOnce() -> i32 + Send + 'static) -> Target {
    let mut f = Some(f);
    Box::new(move || f.take().expect("a process target runs once")())
}

/// Runs `target` in a freshly started child and ends the child with its
/// exit code. Never returns into the caller's code, and runs none of the
/// destructors the child inherited from the parent: `target` itself (and
/// whatever the caller still holds) is never dropped, so the child frees
/// nothing it did not allocate itself.
///
/// `stdout` is a handle the caller took already (a fork child takes it in
/// the parent, before the fork), flushed here before `_exit`.
///
/// A panic in `target` is reported by the panic hook as usual (the default
/// hook prints the message; a test harness's hook may capture it instead),
/// then here on stderr as `Process NAME (pid PID) panicked: MESSAGE`, as
/// Python prints `Process NAME:` and the traceback; the exit code is 1.
///
/// Inlined into the fork child's path: in a fork child each code page
/// first run is a page fault (fork copies no page table entries of the
/// program's code), so the path from `fork` to `_exit` is kept in one
/// function, with the panic report out of line as it is rarely run.
#[inline(always)]
pub(crate) fn run_child(target: impl FnOnce() -> i32, name: &str, stdout: &Stdout) -> ! {
    let code = match catch_unwind(AssertUnwindSafe(target)) {
        Ok(code) => code,
        Err(payload) => report_panic(payload, name),
    };
    // As `flush_std_streams`, with the handle taken already and the C
    // flush inlined. Rust's stderr has no buffer (its `flush` does nothing):
    // not called, as each function a fork child runs first costs it a page
    // fault.
    // The result is forgotten, not dropped: the process ends right below,
    // and dropping it would call a function out of line.
    let mut stdout = stdout;
    std::mem::forget(stdout.flush());
    sys::fflush_all_and_exit(code)
}

/// The report of a target's panic on stderr; the exit code it gives (1).
#[cold]
#[inline(never)]
fn report_panic(payload: Box<dyn Any + Send>, name: &str) -> i32 {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic payload that is not a string");
    let _ = writeln!(
        std::io::stderr(),
        "Process {name} (pid {}) panicked: {message}",
        sys::getpid()
    );
    // Dropping the payload could panic again; the process ends right after
    // this, so it is simply not dropped.
    std::mem::forget(payload);
    1
}

/// Writes out what Rust's stdout and C's stdio buffers hold. Called before
/// `fork` (so a child does not repeat the parent's pending output) and
/// before `_exit` (which would drop it). Errors are ignored: there is nobody
/// left to tell about a closed stdout.
pub(crate) fn flush_std_streams() {
    // Rust's stderr has no buffer: its `flush` does nothing.
    let _ = std::io::stdout().flush();
    let _ = sys::fflush_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_return_values() {
        assert_eq!(().into_exit_code(), 0);
        assert_eq!(3.into_exit_code(), 3);
        assert_eq!(Ok::<(), String>(()).into_exit_code(), 0);
        assert_eq!(Ok::<i32, String>(4).into_exit_code(), 4);
        // `Err` writes on stderr: tested in a child, in tests/process_fork.rs.
    }
}
