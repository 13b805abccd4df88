//! Where the shipped model is found when `--model` is not given.

use std::path::{Path, PathBuf};

/// File name of the shipped model: int8 weights, the same accuracy as the fp32 file on
/// dsb2018/test (ΔAP50 +0.0002) at a third of its size (models/README.md).
pub const SHIPPED_MODEL: &str = "nuclei_light_int8.onnx";
/// Environment variable that names a default model file.
pub const MODEL_ENV: &str = "CELLPOSE_MODEL";

/// The places searched for the shipped model, in order: `$CELLPOSE_MODEL`; beside the
/// executable and in `models/` beside it; `models/` in each folder above the executable
/// (a binary in `target/release/` of a checkout finds the repository's `models/`); and
/// `models/` under the working directory.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(MODEL_ENV) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.canonicalize().ok())
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join(SHIPPED_MODEL));
        for d in dir.ancestors() {
            out.push(d.join("models").join(SHIPPED_MODEL));
        }
    }
    out.push(Path::new("models").join(SHIPPED_MODEL));
    out.dedup();
    out
}

/// The model file to use: the one given, or the first existing candidate. The error lists
/// every place that was tried.
pub fn resolve(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{}: model file not found", p.display()))
        };
    }
    let tried = candidates();
    if let Some(p) = tried.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "{SHIPPED_MODEL}: shipped model not found (tried {}); pass --model FILE or set {MODEL_ENV}",
        list.join(", ")
    ))
}
