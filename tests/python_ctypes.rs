//! Python reaches the C ABI through `ctypes`: every script
//! `tests/python/test_*.py` runs as
//! `python3 tests/python/<script>.py /abs/path/libmultiproc.so` from the
//! repository root, within a deadline, exits 0, and leaves no process and no
//! `/dev/shm/mp-*` entry behind.
//!
//! To add a script, put `tests/python/test_NAME.py` in place and add
//! `test_NAME` to [`python_scripts!`] below; `every_script_is_listed` fails
//! for a script that is not listed. Scripts use only the standard library
//! and plain `assert`s, print what they check, and may import the helpers in
//! `tests/python/mp_ctypes.py` (other files without the `test_` prefix are
//! helpers too, not scripts).
//!
//! C helper programs (`tests/python/*.c`, such as the queue filler that
//! `test_queue.py` drains) are compiled warning-free against
//! `include/multiproc.h` and the cdylib before each script runs, into a
//! scratch directory the script finds in `$MP_C_HELPERS`.
#![cfg(not(loom))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    Library, TempDir, built_library, c_compiler, exclusive, repo_root, run_tool, run_watched,
};

fn script_path(name: &str) -> PathBuf {
    repo_root().join("tests/python").join(format!("{name}.py"))
}

/// Compiles every `tests/python/*.c` into `dir` (same name, no suffix),
/// linked with the cdylib this `cargo test` built (found through its rpath).
fn build_c_helpers(dir: &Path) {
    let library = built_library(Library::Shared);
    let library_dir = library.parent().expect("the library lives in a directory");
    let sources = std::fs::read_dir(repo_root().join("tests/python"))
        .expect("tests/python/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"));
    for source in sources {
        let stem = source.file_stem().expect("a file name").to_owned();
        let mut cmd = c_compiler(&source, &dir.join(&stem));
        cmd.arg(&library)
            .arg(format!("-Wl,-rpath,{}", library_dir.display()));
        run_tool(&mut cmd, &format!("compiling {}", source.display()));
    }
}

/// Runs `tests/python/<name>.py` against the cdylib this `cargo test` built.
fn run_script(name: &str) {
    let _one_at_a_time = exclusive();
    let scratch = TempDir::new("python");
    let helpers = scratch.path().join("c-helpers");
    std::fs::create_dir(&helpers).expect("make the C helpers' directory");
    build_c_helpers(&helpers);
    let mut cmd = Command::new("python3");
    cmd.current_dir(repo_root())
        .arg(script_path(name))
        .arg(built_library(Library::Shared))
        .env("MP_C_HELPERS", &helpers)
        // No __pycache__ left in the source tree; output as it happens.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1");
    let what = format!("tests/python/{name}.py");
    run_watched(cmd, scratch.path(), &what).assert_success(&what);
}

macro_rules! python_scripts {
    ($($name:ident),* $(,)?) => {
        /// The scripts this harness runs, by file stem.
        const LISTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                run_script(stringify!($name));
            }
        )*
    };
}

python_scripts! {
    test_queue,
    test_segment,
    test_status,
}

#[test]
fn every_script_is_listed() {
    let dir = repo_root().join("tests/python");
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .expect("tests/python/ exists")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".py").unwrap_or_default();
        if stem.starts_with("test_") && !LISTED.contains(&stem) {
            unlisted.push(stem.to_string());
        }
    }
    assert!(
        unlisted.is_empty(),
        "tests/python/ has scripts the harness does not run: {unlisted:?}; \
         add them to python_scripts! in tests/python_ctypes.rs"
    );
    for name in LISTED {
        assert!(
            script_path(name).is_file(),
            "listed but missing: tests/python/{name}.py"
        );
    }
}
