#![no_main]
//! cargo fuzz target: see `multiproc_fuzz::targets::c_api::run`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc_fuzz::targets::c_api::run(data);
});
