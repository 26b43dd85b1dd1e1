#![no_main]
//! cargo fuzz target: see `multiproc_fuzz::targets::handle::attach`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc_fuzz::targets::handle::attach(data);
});
