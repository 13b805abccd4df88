//! Typed errors, one enum per layer, gathered in [`Error`].

use thiserror::Error;

/// The model file is not a usable Cellpose network. Non-exhaustive (as are the other layers'
/// enums): new checks add variants without breaking callers' matches.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a valid ONNX model (truncated or corrupt file?): {0}")]
    Parse(String),
    #[error("model has {found} inputs, expected 1 (N×2×H×W image)")]
    InputCount { found: usize },
    #[error("model input has rank {found}, expected 4 (N×C×H×W)")]
    InputRank { found: usize },
    #[error("model input has {found} channels, expected {expected}")]
    InputChannels { expected: usize, found: usize },
    #[error("model has {found} outputs, expected at least 2 (flows+cell probability, style)")]
    OutputCount { found: usize },
    #[error("model output {index} is {found}, expected {expected}")]
    OutputShape {
        index: usize,
        expected: String,
        found: String,
    },
    #[error("model cannot be prepared for a {height}×{width} input: {message}")]
    Optimise {
        height: usize,
        width: usize,
        message: String,
    },
    #[error("network failed to run: {0}")]
    Run(String),
    #[error("model metadata {key}={value:?} is invalid: {reason}")]
    Metadata {
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "shipped model `{name}` ({file}) not found (tried {}); set CELLPOSE_MODEL_DIR to the \
         folder that holds it, or give the model file's path",
        tried.join(", ")
    )]
    ShippedNotFound {
        name: &'static str,
        file: &'static str,
        tried: Vec<String>,
    },
}

/// A parameter is outside the range the pipeline supports.
#[derive(Debug, Error, PartialEq)]
#[non_exhaustive]
pub enum ParamsError {
    #[error("{name} = {value} is invalid: {expected}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error("automatic diameter needs a size model, and this model has none")]
    NoSizeModel,
}

/// The frame handed in cannot be read as an image.
#[derive(Debug, Error, PartialEq, Clone)]
#[non_exhaustive]
pub enum ImageError {
    #[error(
        "image of {height}×{width} pixels (height × width) is invalid: both sides must be at least 1"
    )]
    Empty { width: usize, height: usize },
    #[error(
        "image of {height}×{width} pixels (height × width) is too large (limit {limit} pixels per side)"
    )]
    TooLarge {
        width: usize,
        height: usize,
        limit: usize,
    },
    #[error("{found} channels given, expected 1 or 2")]
    Channels { found: usize },
    #[error("row stride {stride} bytes is smaller than one row ({row_bytes} bytes)")]
    Stride { stride: usize, row_bytes: usize },
    /// A volume's planes would overlap: `plane_stride` is shorter than the bytes one plane
    /// spans (its rows and channels).
    #[error("plane_stride {plane_stride} bytes is smaller than one plane ({plane_bytes} bytes)")]
    PlaneStride {
        plane_stride: usize,
        plane_bytes: usize,
    },
    #[error("pixel buffer has {found} bytes, the image needs {needed}")]
    BufferTooSmall { needed: usize, found: usize },
    /// A stack with no planes, or more than the library's side limit.
    #[error("stack of {depth} planes is invalid: 1 to {limit} planes")]
    Depth { depth: usize, limit: usize },
    #[error("pixel buffer is not aligned for {pixel} samples")]
    Misaligned { pixel: &'static str },
    #[error("size arithmetic overflows for an image of {height}×{width} pixels (height × width)")]
    Overflow { width: usize, height: usize },
    #[error("pixel value is not finite (NaN or infinity) in an f32 image")]
    NotFinite,
    #[error("volume has {voxels} voxels, more than the {limit} supported")]
    TooManyVoxels { voxels: u64, limit: u64 },
    /// 3D flows follow positions between voxels along every axis, so each axis of the grid
    /// the dynamics run on (the stack's own size when resampling) needs two voxels (the
    /// reference divides by `size - 1` there).
    #[error(
        "3D flows need at least 2 voxels along every axis of the grid they are followed on, \
         here {depth}×{height}×{width} (Z×Y×X): segment this stack per plane or stitched"
    )]
    TooThinFor3d {
        depth: usize,
        height: usize,
        width: usize,
    },
}

/// Any error of the library.
///
/// Exhaustive, unlike the layers' enums (which gain variants as checks are added): a new
/// layer is a new kind of failure every caller (the C layer's status codes first) must map.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// The text of a caught panic's payload (`panic!` with a literal or a formatted message), for
/// the guards that turn a panic inside a dependency or the library into an error: tract's
/// graph analysis (`Model::from_bytes`), the C boundary (`CP_ERR_PANIC`), the CLI's image
/// decoders. Another payload type gives "unknown panic payload". The text comes back on one
/// line: a panic that unwraps an `anyhow` error (tract's) carries the error's causes on the
/// lines after it ("Caused by:", kept, joined with spaces) and, when `RUST_BACKTRACE` is
/// set, its backtrace (dropped).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic payload");
    let text = text.split("Stack backtrace:").next().unwrap_or("");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn a_panic_message_comes_back_on_one_line_with_its_causes_and_without_a_backtrace() {
        let payload = std::panic::catch_unwind(|| {
            panic!("unwrap on `Err`: bad axis\n\nCaused by:\n    0: rank 2\n\nStack backtrace:\n   0: x")
        })
        .unwrap_err();
        assert_eq!(
            panic_message(&*payload),
            "unwrap on `Err`: bad axis Caused by: 0: rank 2"
        );
    }

    #[test]
    fn panic_messages_are_read_from_literal_and_formatted_payloads() {
        let literal = std::panic::catch_unwind(|| panic!("a literal")).unwrap_err();
        let formatted = std::panic::catch_unwind(|| panic!("{} {}", "formatted", 2)).unwrap_err();
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&*literal), "a literal");
        assert_eq!(panic_message(&*formatted), "formatted 2");
        assert_eq!(panic_message(&*other), "unknown panic payload");
    }
}
