//! The checked-in `include/cellpose.h` must be what cbindgen generates from `ffi/src` today.
//! Regenerate it with `CELLPOSE_BLESS=1 cargo test --release -p cellpose-ffi --test header`.

use std::path::Path;

#[test]
fn checked_in_header_matches_a_fresh_cbindgen_generation() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen cannot parse ffi/src")
        .write(&mut fresh);
    let fresh = String::from_utf8(fresh).unwrap();
    let path = crate_dir.join("../include/cellpose.h");
    if std::env::var_os("CELLPOSE_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/cellpose.h is stale: regenerate it with \
         `CELLPOSE_BLESS=1 cargo test --release -p cellpose-ffi --test header` and commit it"
    );
}
