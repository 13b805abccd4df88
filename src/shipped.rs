//! The models shipped with the library, found on disk by name (`nuclei`, `cyto`), as the
//! reference selects its built-in models with `model_type="nuclei"` / `"cyto3"`.
//!
//! The files are not compiled into the library (2 MB each; most programs use one), so they
//! are looked for in a fixed order of folders ([`ShippedModel::search_dirs`]): the folder
//! named by `$CELLPOSE_MODEL_DIR`; beside the running executable and in `models/` and
//! `share/cellpose/models/` of that folder and of every folder above it (a program installed
//! in `PREFIX/bin` finds the models the CMake package installs in
//! `PREFIX/share/cellpose/models`; a binary in `target/release/` of a checkout finds the
//! repository's `models/`); and `models/` under the working directory.

use std::path::{Path, PathBuf};

use crate::error::ModelError;
use crate::model::Model;

/// Environment variable naming a folder that holds the shipped model files.
pub const MODEL_DIR_ENV: &str = "CELLPOSE_MODEL_DIR";

/// A model shipped with the library (`models/README.md` is the card of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShippedModel {
    /// Nuclei (fluorescence, brightfield, histology), trained on dsb2018; objects of ~17 px
    /// after rescaling (`diam_mean`), size model for automatic diameter. The default.
    Nuclei,
    /// Whole cells (cytoplasm; phase contrast, and nuclei images), trained on usiigaci and
    /// dsb2018; `diam_mean` 30 as the reference's cyto models, size model.
    Cyto,
}

impl ShippedModel {
    /// Every shipped model, the default first.
    pub const ALL: [ShippedModel; 2] = [ShippedModel::Nuclei, ShippedModel::Cyto];

    /// The model a name selects: `nuclei` or `cyto` (ASCII case ignored); `None` for any
    /// other name.
    pub fn from_name(name: &str) -> Option<ShippedModel> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    /// The name that selects this model.
    pub fn name(self) -> &'static str {
        match self {
            ShippedModel::Nuclei => "nuclei",
            ShippedModel::Cyto => "cyto",
        }
    }

    /// File name of the model: the int8 file (a third of the fp32 file's size; the model
    /// cards in `models/README.md` give its accuracy beside the fp32 file's).
    pub fn file_name(self) -> &'static str {
        match self {
            ShippedModel::Nuclei => "nuclei_light_int8.onnx",
            ShippedModel::Cyto => "cyto_light_int8.onnx",
        }
    }

    /// The folders searched, in order (see the module documentation).
    pub fn search_dirs() -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(d) = std::env::var_os(MODEL_DIR_ENV) {
            out.push(PathBuf::from(d));
        }
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            out.push(dir.clone());
            for d in dir.ancestors() {
                out.push(d.join("models"));
                out.push(d.join("share").join("cellpose").join("models"));
            }
        }
        out.push(PathBuf::from("models"));
        let mut seen = std::collections::HashSet::new();
        out.retain(|d| seen.insert(d.clone()));
        out
    }

    /// The first file of this model in [`Self::search_dirs`].
    ///
    /// # Errors
    /// [`ModelError::ShippedNotFound`], listing every place tried.
    pub fn find(self) -> Result<PathBuf, ModelError> {
        let tried: Vec<PathBuf> = Self::search_dirs()
            .into_iter()
            .map(|d| d.join(self.file_name()))
            .collect();
        match tried.iter().find(|p| p.is_file()) {
            Some(p) => Ok(p.clone()),
            None => Err(ModelError::ShippedNotFound {
                name: self.name(),
                file: self.file_name(),
                tried: tried.iter().map(|p| p.display().to_string()).collect(),
            }),
        }
    }

    /// Finds and loads this model.
    ///
    /// # Errors
    /// [`ModelError::ShippedNotFound`] when no folder holds the file, else those of
    /// [`Model::load`].
    pub fn load(self) -> Result<Model, ModelError> {
        Model::load(self.find()?)
    }
}

impl std::fmt::Display for ShippedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_the_models_and_nothing_else() {
        assert_eq!(ShippedModel::from_name("cyto"), Some(ShippedModel::Cyto));
        assert_eq!(
            ShippedModel::from_name("Nuclei"),
            Some(ShippedModel::Nuclei)
        );
        assert_eq!(ShippedModel::from_name("cyto3"), None);
        assert_eq!(ShippedModel::from_name("models/cyto_light_int8.onnx"), None);
        for m in ShippedModel::ALL {
            assert_eq!(ShippedModel::from_name(m.name()), Some(m));
        }
    }

    #[test]
    fn the_repository_models_folder_is_searched() {
        // Test binaries live in target/<profile>/deps/ of the checkout: an ancestor's models/.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let dirs = ShippedModel::search_dirs();
        assert!(
            dirs.iter()
                .any(|d| d.canonicalize().ok() == root.canonicalize().ok()),
            "{dirs:?}"
        );
        let found = ShippedModel::Nuclei.find().unwrap();
        assert_eq!(found.file_name().unwrap(), ShippedModel::Nuclei.file_name());
    }

    #[test]
    fn a_missing_model_names_every_place_tried() {
        let e = ModelError::ShippedNotFound {
            name: "cyto",
            file: "cyto_light_int8.onnx",
            tried: vec![
                "/a/cyto_light_int8.onnx".into(),
                "/b/cyto_light_int8.onnx".into(),
            ],
        };
        let m = e.to_string();
        assert!(
            m.contains("/a/cyto_light_int8.onnx") && m.contains("/b/"),
            "{m}"
        );
        assert!(m.contains(MODEL_DIR_ENV), "{m}");
    }
}
