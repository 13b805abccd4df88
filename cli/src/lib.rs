//! The `cellpose` command's PNG and TIFF readers ([`input`]), a library so that the fuzz
//! targets in `fuzz/` reach the code that parses users' files. The command itself (argument
//! parsing, segmentation runs, outputs) is the binary in `main.rs`.

pub mod input;
