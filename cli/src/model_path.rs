//! Which model file `--model` names: a shipped model by name (`nuclei`, `cyto`), a file, or,
//! when it is not given, `$CELLPOSE_MODEL` and then the shipped nuclei model.

use std::path::{Path, PathBuf};

use cellpose::ShippedModel;

/// Environment variable that names a default model (a file, or a shipped model's name).
pub const MODEL_ENV: &str = "CELLPOSE_MODEL";

/// The model file to use. `given` is `--model`: a shipped model's name selects that model
/// (found as `cellpose::ShippedModel` describes; a file literally called `cyto` is given as
/// `./cyto`), anything else is a file. Without it, `$CELLPOSE_MODEL` the same way, then the
/// shipped nuclei model. The error says what was tried.
pub fn resolve(given: Option<&Path>) -> Result<PathBuf, String> {
    let (value, from) = match (given, std::env::var_os(MODEL_ENV)) {
        (Some(p), _) => (p.to_path_buf(), "--model"),
        (None, Some(v)) => (PathBuf::from(v), MODEL_ENV),
        (None, None) => {
            return ShippedModel::Nuclei
                .find()
                .map_err(|e| format!("{e}; or pass --model FILE"));
        }
    };
    if let Some(m) = value.to_str().and_then(ShippedModel::from_name) {
        return m.find().map_err(|e| e.to_string());
    }
    if value.is_file() {
        Ok(value)
    } else {
        let names: Vec<&str> = ShippedModel::ALL.iter().map(|m| m.name()).collect();
        Err(format!(
            "{}: model file not found ({from} names a file, or one of the shipped models: {})",
            value.display(),
            names.join(", ")
        ))
    }
}
