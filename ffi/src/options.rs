//! `cp_session_options`: the segmentation parameters of a session (`cellpose::Params`) and
//! its thread count.

use std::mem::offset_of;

use cellpose::{Diameter, Params};

use crate::status::{Failure, cp_status, guard};
use crate::versioned;

/// How a session chooses the object diameter, and so the rescaling of each frame.
pub type cp_diameter_mode = u32;
/// Rescale to the mean object size of the model's training set (reference `diameter=None`).
pub const CP_DIAMETER_MODEL_DEFAULT: cp_diameter_mode = 0;
/// Estimate the diameter of every frame with the model's size model (needs
/// `cp_model_info.has_size_model`).
pub const CP_DIAMETER_AUTO: cp_diameter_mode = 1;
/// Objects are `cp_session_options.diameter` pixels across.
pub const CP_DIAMETER_PIXELS: cp_diameter_mode = 2;

/// Parameters of a session. Fill with `cp_session_options_init(&o, sizeof o)` (reference
/// defaults), change fields, pass to `cp_session_new` or `cp_session_set_options`. Boolean
/// fields are 0 (off) or any other value (on).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct cp_session_options {
    /// `sizeof(cp_session_options)` as the caller knows it; set by `cp_session_options_init`.
    pub struct_size: usize,
    /// A `cp_diameter_mode`. Default `CP_DIAMETER_MODEL_DEFAULT`.
    pub diameter_mode: cp_diameter_mode,
    /// Object diameter in pixels for `CP_DIAMETER_PIXELS` (1..=10000); ignored otherwise.
    pub diameter: f32,
    /// Masks whose recomputed flows differ from the predicted ones by more than this are
    /// dropped; 0 disables the check. Default 0.4.
    pub flow_threshold: f32,
    /// Pixels whose cell-probability logit exceeds this take part (-50..=50). Default 0.
    pub cellprob_threshold: f32,
    /// Masks smaller than this many pixels are removed; 0 or less keeps all. Default 15.
    pub min_size: i32,
    /// Masks larger than this fraction of the frame are removed, in (0, 1]. Default 0.4.
    pub max_size_fraction: f32,
    /// Euler steps of the dynamics; 0 is the reference rule (200, scaled with the diameter).
    pub niter: u32,
    /// Overlap fraction of neighbouring tiles, 0..=0.5. Default 0.1.
    pub tile_overlap: f32,
    /// Tiles per network call, 1..=256. Default 1 (fastest in tract; the reference uses 8).
    pub batch_size: u32,
    /// Percentile mapped to 0 by normalisation. Default 1.
    pub percentile_low: f32,
    /// Percentile mapped to 1 by normalisation (> low, <= 100). Default 99.
    pub percentile_high: f32,
    /// Threads the session computes on, 1..=256 (a pool owned by the session). Labels are
    /// identical for every thread count. Default 1.
    pub threads: u32,
    /// Bilinear interpolation of the flows during the dynamics. Default on.
    pub interp: u32,
    /// Run the dynamics at the frame's own size. Default on.
    pub resample: u32,
    /// Test-time augmentation (4× the network work). Default off.
    pub augment: u32,
    /// Percentile-normalise each channel. Default on.
    pub normalize: u32,
    /// Invert intensities after normalisation (dark objects on a bright background). Default
    /// off.
    pub invert: u32,
}

/// Size of the first published `cp_session_options`; later versions only append fields.
pub(crate) const OPTIONS_V1: usize = std::mem::size_of::<cp_session_options>();
const _: () = assert!(offset_of!(cp_session_options, struct_size) == 0);

impl cp_session_options {
    /// The reference defaults, one thread.
    pub(crate) fn defaults() -> cp_session_options {
        let p = Params::default();
        cp_session_options {
            struct_size: OPTIONS_V1,
            diameter_mode: CP_DIAMETER_MODEL_DEFAULT,
            diameter: 30.0,
            flow_threshold: p.flow_threshold,
            cellprob_threshold: p.cellprob_threshold,
            min_size: p.min_size,
            max_size_fraction: p.max_size_fraction,
            niter: p.niter.unwrap_or(0),
            tile_overlap: p.tile_overlap,
            batch_size: p.batch_size as u32,
            percentile_low: p.percentiles.0,
            percentile_high: p.percentiles.1,
            threads: 1,
            interp: p.interp as u32,
            resample: p.resample as u32,
            augment: p.augment as u32,
            normalize: p.normalize as u32,
            invert: p.invert as u32,
        }
    }

    /// The core's parameters (validated later by the core) and the thread count.
    pub(crate) fn to_params(self) -> Result<(Params, usize), Failure> {
        let diameter = match self.diameter_mode {
            CP_DIAMETER_MODEL_DEFAULT => Diameter::ModelDefault,
            CP_DIAMETER_AUTO => Diameter::Auto,
            CP_DIAMETER_PIXELS => Diameter::Pixels(self.diameter),
            m => {
                return Err(Failure::new(
                    cp_status::CP_ERR_UNKNOWN_ENUM,
                    format!("options->diameter_mode {m} is not a cp_diameter_mode (0, 1 or 2)"),
                ));
            }
        };
        let params = Params {
            diameter,
            flow_threshold: self.flow_threshold,
            cellprob_threshold: self.cellprob_threshold,
            min_size: self.min_size,
            max_size_fraction: self.max_size_fraction,
            niter: (self.niter != 0).then_some(self.niter),
            interp: self.interp != 0,
            resample: self.resample != 0,
            tile_overlap: self.tile_overlap,
            augment: self.augment != 0,
            batch_size: self.batch_size as usize,
            percentiles: (self.percentile_low, self.percentile_high),
            normalize: self.normalize != 0,
            invert: self.invert != 0,
        };
        params.validate().map_err(cellpose::Error::from)?;
        Ok((params, self.threads as usize))
    }

    /// Reads the caller's options; NULL means the defaults.
    ///
    /// # Safety
    /// `p` is NULL or points to `p->struct_size` readable bytes.
    pub(crate) unsafe fn read(p: *const cp_session_options) -> Result<(Params, usize), Failure> {
        if p.is_null() {
            return Self::defaults().to_params();
        }
        // SAFETY: forwarded from the caller.
        unsafe { versioned::read(p, "options", OPTIONS_V1, Self::defaults()) }?.to_params()
    }
}

/// Fills `*options` with the reference defaults (one thread) and sets
/// `options->struct_size = struct_size`. Pass `sizeof(cp_session_options)` as `struct_size`.
/// No more than `struct_size` bytes are written.
///
/// Errors: `CP_ERR_NULL_POINTER`, `CP_ERR_STRUCT_SIZE` (`struct_size` smaller than the first
/// version of the struct).
///
/// Any thread.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_options_init(
    options: *mut cp_session_options,
    struct_size: usize,
) -> cp_status {
    guard("cp_session_options_init", || {
        if options.is_null() {
            return Err(Failure::null("options"));
        }
        if struct_size < OPTIONS_V1 {
            return Err(Failure::new(
                cp_status::CP_ERR_STRUCT_SIZE,
                format!("struct_size is {struct_size}, expected at least {OPTIONS_V1}"),
            ));
        }
        // SAFETY: non-NULL with struct_size writable bytes, of which the first usize is
        // written first so that `versioned::write` sees the caller's size.
        unsafe {
            (options as *mut usize).write_unaligned(struct_size);
            versioned::write(
                options,
                "options",
                OPTIONS_V1,
                &cp_session_options::defaults(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_are_the_reference_parameters() {
        let (p, threads) = cp_session_options::defaults().to_params().unwrap();
        assert_eq!(p, Params::default());
        assert_eq!(threads, 1);
    }

    #[test]
    fn an_unknown_diameter_mode_is_rejected() {
        let o = cp_session_options {
            diameter_mode: 7,
            ..cp_session_options::defaults()
        };
        assert_eq!(
            o.to_params().unwrap_err().status,
            cp_status::CP_ERR_UNKNOWN_ENUM
        );
    }

    #[test]
    fn an_out_of_range_option_is_a_params_error_naming_the_field() {
        let o = cp_session_options {
            flow_threshold: -1.0,
            ..cp_session_options::defaults()
        };
        let e = o.to_params().unwrap_err();
        assert_eq!(e.status, cp_status::CP_ERR_PARAMS);
        assert!(e.message.contains("flow_threshold"), "{}", e.message);
    }
}
