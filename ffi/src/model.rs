//! `cp_model`: a loaded, validated Cellpose network, shared by any number of sessions.

use std::ffi::{CStr, CString, c_char};
use std::mem::offset_of;

use cellpose::Model;

use crate::status::{Failure, clear_out, cp_status, guard};
use crate::versioned;

/// A loaded Cellpose network (opaque). Create with `cp_model_load` or
/// `cp_model_load_from_memory`, release with `cp_model_free`. Immutable once loaded: any
/// number of threads may use one model at the same time (to create sessions, to read its
/// info).
pub struct cp_model {
    pub(crate) model: Model,
    version: CString,
    channels: CString,
}

impl cp_model {
    fn new(model: Model) -> cp_model {
        let info = model.info();
        let text = |s: &str| CString::new(s.replace('\0', " ")).expect("NULs were replaced");
        let (version, channels) = (text(&info.version), text(&info.channels));
        log::info!(
            "model loaded: version {:?}, diam_mean {}, diam_labels {}, size model {}",
            info.version,
            info.diam_mean,
            info.diam_labels,
            info.size_model.is_some()
        );
        cp_model {
            model,
            version,
            channels,
        }
    }
}

/// What a model says about itself. Set `struct_size = sizeof(cp_model_info)` before calling
/// `cp_model_get_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cp_model_info {
    /// Size of this struct as the caller knows it: `sizeof(cp_model_info)`.
    pub struct_size: usize,
    /// Version string of the weights. Owned by the model; valid until `cp_model_free`.
    pub version: *const c_char,
    /// What the input channels mean. Owned by the model; valid until `cp_model_free`.
    pub channels: *const c_char,
    /// Object diameter (pixels) training rescaled every image to.
    pub diam_mean: f32,
    /// Mean object diameter of the training images before rescaling: the diameter
    /// `CP_DIAMETER_MODEL_DEFAULT` assumes.
    pub diam_labels: f32,
    /// Length of the style vector.
    pub style_size: u32,
    /// 1 when the model carries a size model (so `CP_DIAMETER_AUTO` is available), else 0.
    pub has_size_model: u32,
}

const MODEL_INFO_V1: usize = std::mem::size_of::<cp_model_info>();

fn publish(out: *mut *mut cp_model, model: Model) {
    let raw = Box::into_raw(Box::new(cp_model::new(model)));
    // SAFETY: `out` was checked non-NULL by the caller of `publish`.
    unsafe { *out = raw };
}

/// Loads a model from an ONNX file. `path` is a NUL-terminated file name (bytes as the OS
/// takes them). On success `*out` owns a new model that the caller must release with
/// `cp_model_free`; on failure `*out` is set to NULL.
///
/// Errors: `CP_ERR_NULL_POINTER` (`path` or `out` NULL), `CP_ERR_IO` (cannot read the file),
/// `CP_ERR_MODEL` (not a valid Cellpose network).
///
/// Any thread. Loading parses and checks the whole network (tens of milliseconds to seconds).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_model_load(path: *const c_char, out: *mut *mut cp_model) -> cp_status {
    guard("cp_model_load", || {
        // SAFETY: `out` is NULL or writable by the caller's promise.
        unsafe { clear_out(out) }?;
        if path.is_null() {
            return Err(Failure::null("path"));
        }
        // SAFETY: non-NULL and NUL-terminated by the caller's promise.
        let path = unsafe { CStr::from_ptr(path) };
        #[cfg(unix)]
        let path = std::path::Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path.to_bytes()),
        );
        #[cfg(not(unix))]
        let path =
            std::path::Path::new(path.to_str().map_err(|_| {
                Failure::new(cp_status::CP_ERR_INVALID_ARGUMENT, "path is not UTF-8")
            })?);
        publish(out, Model::load(path)?);
        Ok(())
    })
}

/// Loads a model shipped with the library by name: `"nuclei"` (the default model of the CLI)
/// or `"cyto"` (whole cells, with an optional nucleus channel). The file is looked for in the
/// folder named by the environment variable `CELLPOSE_MODEL_DIR`, beside the executable, and
/// in `models/` and `share/cellpose/models/` of the executable's folder and every folder
/// above it (where the CMake package installs them: `${CELLPOSE_MODEL_DIR}` in CMake). On
/// success `*out` owns a new model to release with `cp_model_free`; on failure `*out` is NULL.
///
/// Errors: `CP_ERR_NULL_POINTER` (`name` or `out` NULL), `CP_ERR_INVALID_ARGUMENT` (not a
/// shipped model's name), `CP_ERR_IO` (no folder holds the file; the message lists each place
/// tried), `CP_ERR_MODEL` (the file found is not a valid Cellpose network).
///
/// Any thread.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_model_load_shipped(
    name: *const c_char,
    out: *mut *mut cp_model,
) -> cp_status {
    guard("cp_model_load_shipped", || {
        // SAFETY: `out` is NULL or writable by the caller's promise.
        unsafe { clear_out(out) }?;
        if name.is_null() {
            return Err(Failure::null("name"));
        }
        // SAFETY: non-NULL and NUL-terminated by the caller's promise.
        let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
        let Some(which) = cellpose::ShippedModel::from_name(&name) else {
            let names: Vec<&str> = cellpose::ShippedModel::ALL
                .iter()
                .map(|m| m.name())
                .collect();
            return Err(Failure::new(
                cp_status::CP_ERR_INVALID_ARGUMENT,
                format!(
                    "`{name}` is not a shipped model (expected one of: {})",
                    names.join(", ")
                ),
            ));
        };
        publish(out, which.load()?);
        Ok(())
    })
}

/// Loads a model from the bytes of an ONNX file held in memory (`len` bytes at `data`). The
/// bytes are parsed during the call and not kept: the caller may free them afterwards. On
/// success `*out` owns a new model to release with `cp_model_free`; on failure `*out` is NULL.
///
/// Errors: `CP_ERR_NULL_POINTER` (`data` or `out` NULL), `CP_ERR_INVALID_ARGUMENT` (`len` 0
/// or larger than the address space allows), `CP_ERR_MODEL` (not a valid Cellpose network).
///
/// Any thread.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_model_load_from_memory(
    data: *const u8,
    len: usize,
    out: *mut *mut cp_model,
) -> cp_status {
    guard("cp_model_load_from_memory", || {
        // SAFETY: `out` is NULL or writable by the caller's promise.
        unsafe { clear_out(out) }?;
        if data.is_null() {
            return Err(Failure::null("data"));
        }
        if len == 0 || len > isize::MAX as usize {
            return Err(Failure::new(
                cp_status::CP_ERR_INVALID_ARGUMENT,
                format!("len is {len}, expected 1..=PTRDIFF_MAX bytes"),
            ));
        }
        // SAFETY: non-NULL, `len` readable bytes by the caller's promise, len <= isize::MAX.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        publish(out, Model::from_bytes(bytes)?);
        Ok(())
    })
}

/// Fills `*info` with what the model says about itself, writing no further than
/// `info->struct_size` bytes. The strings in it belong to the model.
///
/// Errors: `CP_ERR_NULL_POINTER`, `CP_ERR_STRUCT_SIZE` (`info->struct_size` too small).
///
/// Any thread, concurrently with any other use of the model.
///
/// # Safety
/// `model` is NULL or a live model from this library; `info` is NULL or points to
/// `info->struct_size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_model_get_info(
    model: *const cp_model,
    info: *mut cp_model_info,
) -> cp_status {
    guard("cp_model_get_info", || {
        // SAFETY: a live model by the caller's promise.
        let m = unsafe { versioned::arg_ref(model, "model") }?;
        let i = m.model.info();
        let value = cp_model_info {
            struct_size: MODEL_INFO_V1,
            version: m.version.as_ptr(),
            channels: m.channels.as_ptr(),
            diam_mean: i.diam_mean,
            diam_labels: i.diam_labels,
            style_size: u32::try_from(i.style_size).unwrap_or(u32::MAX),
            has_size_model: i.size_model.is_some() as u32,
        };
        // SAFETY: `info` points to struct_size writable bytes by the caller's promise.
        unsafe { versioned::write(info, "info", MODEL_INFO_V1, &value) }
    })
}

/// Releases a model. Sessions created from it keep their own reference and stay usable.
/// NULL is accepted and does nothing. Returns `CP_OK`.
///
/// Takes ownership: `model` must not be used afterwards. Any thread, once no other thread
/// uses this handle.
///
/// # Safety
/// `model` is NULL or a live model from this library, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_model_free(model: *mut cp_model) -> cp_status {
    guard("cp_model_free", || {
        if !model.is_null() {
            // SAFETY: created by Box::into_raw in `publish` and not freed before.
            drop(unsafe { Box::from_raw(model) });
        }
        Ok(())
    })
}

const _: () = assert!(offset_of!(cp_model_info, struct_size) == 0);
