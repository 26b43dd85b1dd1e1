#![no_main]
//! cargo fuzz target: see `multiproc_fuzz::targets::c_api::run`. The
//! shared manager and pool start once, before the first input (no other
//! thread yet), and stop at exit.

libfuzzer_sys::fuzz_target!(
    init: {
        multiproc_fuzz::targets::c_api::start_shared();
        // SAFETY: registers a plain `extern "C" fn()`; it runs once at exit.
        let status = unsafe { libc::atexit(multiproc_fuzz::targets::c_api::stop_shared_at_exit) };
        assert_eq!(status, 0, "atexit");
    },
    |data: &[u8]| {
        multiproc_fuzz::targets::c_api::run(data);
    }
);
