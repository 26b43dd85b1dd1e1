//! Every C program in `c-examples/` compiles warning-free against
//! `include/multiproc.h`, links with the static library this `cargo test`
//! built, runs from the repository root within a deadline, exits 0, and
//! leaves no process and no `/dev/shm/mp-*` entry behind.
//!
//! To add an example, put `c-examples/NAME.c` in place and add `NAME` to the
//! list in [`c_examples!`] below; `every_example_is_listed` fails for a
//! file that is not listed. Examples are compiled with
//! `gcc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude` (so POSIX functions
//! such as `fork` need `#define _POSIX_C_SOURCE 200809L` before the includes)
//! and get no arguments.
//!
//! Why the library is there: cargo compiles the `lib` target once with all
//! the crate types of `Cargo.toml` (`lib`, `cdylib`, `staticlib`, in one
//! rustc call, checked with `cargo test -v`) before it links any integration
//! test, so `libmultiproc.a` and `libmultiproc.so` sit next to this test
//! binary in `target/<profile>/deps/` when it runs; see
//! [`common::built_library`].
#![cfg(not(loom))]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{
    Library, TempDir, built_library, c_compiler, exclusive, repo_root, run_tool, run_watched,
};

/// What `rustc --print native-static-libs` says a static Rust library needs.
const NATIVE_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

fn source_of(name: &str) -> PathBuf {
    repo_root().join("c-examples").join(format!("{name}.c"))
}

/// Builds `c-examples/<name>.c` against the static library and runs it.
fn build_and_run(name: &str) {
    let _one_at_a_time = exclusive();
    let scratch = TempDir::new("c-example");
    let exe = scratch.path().join(name);
    let mut cmd = c_compiler(&source_of(name), &exe);
    cmd.arg(built_library(Library::Static)).args(NATIVE_LIBS);
    run_tool(&mut cmd, &format!("compiling c-examples/{name}.c"));

    let mut run = Command::new(&exe);
    run.current_dir(repo_root());
    run_watched(run, scratch.path(), &format!("c-examples/{name}"))
        .assert_success(&format!("c-examples/{name}"));
}

macro_rules! c_examples {
    ($($name:ident),* $(,)?) => {
        /// The examples this harness runs, by file stem.
        const LISTED: &[&str] = &[$(stringify!($name)),*];
        $(
            #[test]
            fn $name() {
                build_and_run(stringify!($name));
            }
        )*
    };
}

c_examples! {
    conn_client_server,
    pool_squares,
    deposit_withdraw,
    manager_dict,
    process_exitcodes,
    queue_mpmc,
    segment_fork,
    start_methods,
    status_codes,
}

#[test]
fn every_example_is_listed() {
    let dir = repo_root().join("c-examples");
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .expect("c-examples/ exists")
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "c") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if !LISTED.contains(&stem.as_str()) {
                unlisted.push(stem);
            }
        }
    }
    assert!(
        unlisted.is_empty(),
        "c-examples/ has programs the harness does not run: {unlisted:?}; \
         add them to c_examples! in tests/c_examples.rs"
    );
    for name in LISTED {
        assert!(
            source_of(name).is_file(),
            "listed but missing: c-examples/{name}.c"
        );
    }
}

/// The cdylib links too: an example built with `-lmultiproc` (found as
/// `libmultiproc.so` by the linker, found again at run time through the
/// rpath) runs, and the dynamic loader really maps that file.
#[test]
fn an_example_links_against_the_shared_library() {
    let _one_at_a_time = exclusive();
    let so = built_library(Library::Shared);
    let dir = so.parent().unwrap();
    let scratch = TempDir::new("c-example-so");
    let exe = scratch.path().join("status_codes_dynamic");
    let mut cmd = c_compiler(&source_of("status_codes"), &exe);
    cmd.arg("-L")
        .arg(dir)
        .arg(format!("-Wl,-rpath,{}", dir.display()))
        .arg("-lmultiproc");
    run_tool(
        &mut cmd,
        "linking c-examples/status_codes.c with -lmultiproc",
    );

    // glibc's loader lists the resolved libraries instead of running the
    // program when LD_TRACE_LOADED_OBJECTS is set (this is what ldd does).
    // Without cargo's LD_LIBRARY_PATH, so the program's own rpath decides.
    let trace = Command::new(&exe)
        .env_remove("LD_LIBRARY_PATH")
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the loader trace");
    let trace = String::from_utf8_lossy(&trace.stdout);
    let so_text = so.canonicalize().unwrap().display().to_string();
    assert!(
        trace
            .lines()
            .any(|l| l.contains("libmultiproc.so") && l.contains(&so_text)),
        "the program does not load {so_text}; the loader says:\n{trace}"
    );

    let mut run = Command::new(&exe);
    run.current_dir(repo_root()).env_remove("LD_LIBRARY_PATH");
    run_watched(
        run,
        scratch.path(),
        "status_codes linked with libmultiproc.so",
    )
    .assert_success("status_codes linked with libmultiproc.so");
}
