//! `libcellpose`: the C ABI of cellpose-rs, a thin mirror of the Rust API of the `cellpose`
//! crate. One module per C concept:
//!
//! - [`status`]: `cp_status`, the thread-local last error and the panic boundary that every
//!   exported body runs inside;
//! - [`model`]: `cp_model` (load from a path or from memory, info, free);
//! - [`options`]: `cp_session_options`, the segmentation parameters;
//! - [`frame`]: `cp_frame`, a borrowed frame as acquisition software holds it;
//! - [`session`]: `cp_session` (segment frames into caller buffers, per-object summaries);
//! - [`volume`]: `cp_volume` and `cp_session_segment_volume` (z-stacks: 3D flows or
//!   per-plane stitching);
//! - [`logging`]: the optional C log callback behind the `log` crate.
//!
//! The header `include/cellpose.h` is generated from these modules by cbindgen
//! (`ffi/cbindgen.toml`); `tests/header.rs` fails when the checked-in header is stale.
#![allow(non_camel_case_types)]

pub mod frame;
pub mod logging;
pub mod model;
pub mod options;
pub mod session;
pub mod status;
mod versioned;
pub mod volume;

use std::ffi::c_char;

/// Version of the C ABI. It changes only when a change would break a program compiled
/// against an older header (a removed or changed function, a field moved); adding functions,
/// enum values or trailing struct fields keeps it. The shared library's soname is
/// `libcellpose.so.<CELLPOSE_ABI_VERSION>`.
pub const CELLPOSE_ABI_VERSION: u32 = 1;

/// NUL-terminated version of the library, e.g. "0.1.0".
const VERSION: &std::ffi::CStr = c"0.1.0";

/// The library version as a static NUL-terminated string ("major.minor.patch").
///
/// Never fails; the string is owned by the library and valid for the life of the process.
/// Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cp_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The ABI version the library was built with. A program compiled against this header should
/// check `cp_abi_version() == CELLPOSE_ABI_VERSION` once at start-up.
///
/// Never fails. Any thread.
#[unsafe(no_mangle)]
pub extern "C" fn cp_abi_version() -> u32 {
    CELLPOSE_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_string_matches_the_crate_version() {
        assert_eq!(VERSION.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        assert_eq!(VERSION.to_str().unwrap(), cellpose::VERSION);
    }
}
