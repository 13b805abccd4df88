//! cellpose-rs: the Cellpose cell-segmentation method (Stringer et al., Nature Methods 2021)
//! as an embeddable Rust library, with no Python at run time.
//!
//! The pipeline, one module a stage (private; what a caller needs is re-exported here):
//! `model` (load and validate an ONNX network: [`Model`]) → `image` (borrowed frames and
//! stacks as acquisition software has them: [`ImageView`], [`VolumeView`]) → `preprocess`
//! (channels, percentile normalisation, rescaling, padding) → `network` (224-px tiles with
//! tapered blending and test-time flips; tract on the CPU with our direct convolution, f32 or
//! int8, SIMD kernels chosen at run time: [`Isa`]) → [`dynamics`] (Euler integration of the
//! flows) → `masks` and `flows_to_masks` (sinks → labels, hole filling, small-mask removal,
//! the flow-error check with `flows`, masks → flows by heat diffusion: [`MaskFormation`]) →
//! `segmenter` and `volume` (the frame-by-frame and z-stack APIs: [`Segmenter`],
//! [`VolumeSegmenter`]). [`metrics`], [`outlines`] and [`render`] score, trace and draw label
//! images; [`object_summaries`] summarises them; [`SizeModel`] estimates the cell diameter
//! from the style vector. With the `bench-hooks` feature, `bench` exposes the network's
//! timing hooks to the peer benchmark (`benches/compare.sh`); they are not part of the API.
//!
//! Sizes are passed in memory order, as NumPy and the reference hold arrays: (height,
//! width) for frames, (depth, height, width) for stacks, channels first where planes are
//! stacked (C×Y×X, Z×C×Y×X).
//!
//! ```no_run
//! use cellpose::{Model, Params, Segmenter, ImageView};
//! let model = Model::load("models/nuclei_light_int8.onnx")?;
//! let mut seg = Segmenter::new(model, Params::default())?;
//! let pixels = vec![0u8; 256 * 256];
//! let frame = ImageView::gray_u8(256, 256, &pixels)?;
//! let result = seg.segment(&frame)?;
//! println!("{} objects", result.n_objects);
//! # Ok::<(), cellpose::Error>(())
//! ```

pub mod dynamics;
pub mod error;
mod flows;
mod flows_to_masks;
mod image;
mod masks;
pub mod metrics;
mod model;
mod network;
mod objects;
pub mod outlines;
mod params;
mod preprocess;
pub mod render;
mod scratch;
mod segmenter;
mod shipped;
mod size_model;
mod stitch;
mod volume;

pub use error::{Error, ImageError, ModelError, ParamsError};
pub use flows::masks_to_flows;
pub use flows_to_masks::{DroppedMasks, MaskFormation, labels_from_field_3d};
pub use image::{ChannelLayout, ImageView, MAX_SIDE, PixelType, VolumeView};
pub use model::{Convolution, Model, ModelInfo};
pub use network::Isa;
pub use objects::{ObjectSummary, object_summaries, object_summaries_into};
pub use params::{Diameter, Params};
pub use preprocess::{Normalization, reduce_channels};
pub use segmenter::{Segmentation, Segmenter};
pub use shipped::ShippedModel;
pub use size_model::SizeModel;
pub use volume::{VolumeFlows, VolumeMode, VolumeParams, VolumeSegmentation, VolumeSegmenter};

/// The network's timing hooks for the peer benchmark and the allocation test (feature
/// `bench-hooks`): not part of the library's API, and free to change.
#[cfg(feature = "bench-hooks")]
pub mod bench {
    pub use crate::network::{ConvForm, Precision, runs_in_progress, time_convolution, time_plan};
}

/// Version of this crate, as written in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
