//! cellpose-rs: the Cellpose cell-segmentation method (Stringer et al., Nature Methods 2021)
//! as an embeddable Rust library, with no Python at run time.
//!
//! The modules follow the pipeline:
//! [`model`] (load and validate an ONNX network) → [`image`] (borrowed frames as acquisition
//! software has them) → [`preprocess`] (channels, percentile normalisation, rescaling, padding)
//! → [`network`] (224-px [`tiling`] with tapered blending and test-time flips; tract on the
//! CPU with our direct convolution, f32 or int8, SIMD kernels chosen at run time) → [`dynamics`] (Euler integration of the flows) → [`masks`] (sinks → labels, hole
//! filling, small-mask removal) with [`flows`] (masks → flows by heat diffusion) for the
//! flow-error quality control → [`segmenter`] (the frame-by-frame API).
//! [`metrics`] and [`objects`] score and summarise label images; [`size_model`] estimates the
//! cell diameter from the style vector.
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
pub mod flows;
pub mod flows_to_masks;
pub mod image;
pub mod masks;
pub mod metrics;
pub mod model;
pub mod network;
pub mod objects;
pub mod outlines;
pub mod params;
pub mod preprocess;
pub mod render;
mod scratch;
pub mod segmenter;
pub mod shipped;
pub mod size_model;
pub mod stitch;
pub use network::tiling;
pub mod volume;

pub use error::{Error, ImageError, ModelError, ParamsError};
pub use flows::masks_to_flows;
pub use flows_to_masks::{DroppedMasks, MaskFormation};
pub use image::{ChannelLayout, ImageView, PixelType};
pub use model::{Convolution, Model, ModelInfo};
pub use objects::{ObjectSummary, object_summaries};
pub use params::{Diameter, Params};
pub use preprocess::Normalization;
pub use segmenter::{Segmentation, Segmenter};
pub use shipped::ShippedModel;
pub use size_model::SizeModel;
pub use volume::{VolumeMode, VolumeParams, VolumeSegmentation, VolumeSegmenter, VolumeView};

/// Version of this crate, as written in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
