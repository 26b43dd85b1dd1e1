#![no_main]
//! cargo fuzz target: see `multiproc_fuzz::targets::connection::auth_handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    multiproc_fuzz::targets::connection::auth_handshake(data);
});
