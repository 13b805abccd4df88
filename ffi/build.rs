//! Gives the shared library the soname `libcellpose.so.<CELLPOSE_ABI_VERSION>`, the name it is
//! installed under by cmake/ (the ABI version is read from src/lib.rs, its one definition).

fn main() {
    println!("cargo:rerun-if-changed=src/lib.rs");
    let lib = std::fs::read_to_string("src/lib.rs").expect("src/lib.rs");
    let abi = lib
        .lines()
        .find_map(|l| l.strip_prefix("pub const CELLPOSE_ABI_VERSION: u32 = "))
        .and_then(|v| v.strip_suffix(';'))
        .expect("src/lib.rs defines `pub const CELLPOSE_ABI_VERSION: u32 = N;`");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" || os.ends_with("bsd") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcellpose.so.{abi}");
    }
}
