//! `include/multiproc.h` is what cbindgen makes of the code now.
//!
//! After changing `src/ffi/`, regenerate with
//! `MULTIPROC_BLESS=1 cargo test --test header_up_to_date` and commit the header.
#![cfg(not(loom))]

use std::path::Path;

#[test]
fn committed_header_matches_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not read src/ffi")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("header is UTF-8");
    let path = root.join("include/multiproc.h");
    if std::env::var_os("MULTIPROC_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/multiproc.h is stale: run `MULTIPROC_BLESS=1 cargo test --test header_up_to_date` and commit it"
    );
}
