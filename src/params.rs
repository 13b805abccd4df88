//! Segmentation parameters with the reference defaults (`CellposeModel.eval` of
//! cellpose 3.1.1.3) and their validation.

use crate::error::ParamsError;
use crate::model::ModelInfo;

/// Side of the square tiles the network sees (reference `bsize`).
pub const TILE_SIZE: usize = 224;
/// Network input sides must be multiples of this (four 2× poolings).
pub const SIZE_DIVISOR: usize = 16;

/// How the cell diameter, and so the rescaling of the image, is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Diameter {
    /// Reference `diameter=None`: rescale by `diam_mean / diam_labels` of the model, i.e. to
    /// the mean object size of the model's training set.
    ModelDefault,
    /// Estimate the diameter from the style vector with the model's size model, then refine
    /// it by segmenting once (reference `SizeModel.eval`).
    Auto,
    /// The typical object diameter in pixels of the input image.
    Pixels(f32),
}

impl Diameter {
    /// The choice for frames of unknown object size with `model`: [`Diameter::Auto`] when it
    /// has a size model (the shipped nuclei model's AP50 on dsb2018/test is far higher with
    /// it, `models/README.md`), else [`Diameter::ModelDefault`]. The reference's default is
    /// always `ModelDefault` (`diameter=None`); the command line takes this one.
    pub fn default_for(model: &ModelInfo) -> Diameter {
        if model.size_model.is_some() {
            Diameter::Auto
        } else {
            Diameter::ModelDefault
        }
    }
}

/// All parameters of 2D segmentation. `Params::default()` carries the reference defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub diameter: Diameter,
    /// Masks whose recomputed flows differ from the predicted ones by more than this mean
    /// squared error are dropped. 0 turns the quality control off. Reference: 0.4.
    pub flow_threshold: f32,
    /// Pixels whose cell-probability logit exceeds this take part in the dynamics. Reference: 0.0.
    pub cellprob_threshold: f32,
    /// Masks smaller than this many pixels are removed; 0 or negative keeps them. Reference: 15.
    pub min_size: i32,
    /// Masks larger than this fraction of the image are removed. Reference: 0.4.
    pub max_size_fraction: f32,
    /// Euler steps of the dynamics; `None` is the reference rule (200 scaled by
    /// diameter / diam_mean when the outputs are resampled).
    pub niter: Option<u32>,
    /// Bilinear interpolation of the flow during the dynamics (reference `interp=True`).
    pub interp: bool,
    /// Run the dynamics at the original image size (reference `resample=True`).
    pub resample: bool,
    /// Overlap fraction of neighbouring tiles, clamped to 0.05..0.5 as the reference does.
    pub tile_overlap: f32,
    /// Test-time augmentation: half-overlapping tiles, flipped before and after the network.
    pub augment: bool,
    /// Tiles per network call. Default 1 (the reference uses 8): tract runs a batch of 2–8
    /// tiles 3.5–4× slower per tile than one tile at a time (224×224 tiles, 2 threads,
    /// `examples/time_network`: 97 ms for one tile, 2.55 s for eight), and the tiles' outputs
    /// do not depend on the batch.
    pub batch_size: usize,
    /// Percentiles that map to 0 and 1 in normalisation. Reference: (1, 99).
    pub percentiles: (f32, f32),
    /// Normalise each channel (reference `normalize=True`).
    pub normalize: bool,
    /// Invert the intensities after normalisation (dark objects on a bright background).
    pub invert: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            diameter: Diameter::ModelDefault,
            flow_threshold: 0.4,
            cellprob_threshold: 0.0,
            min_size: 15,
            max_size_fraction: 0.4,
            niter: None,
            interp: true,
            resample: true,
            tile_overlap: 0.1,
            augment: false,
            batch_size: 1,
            percentiles: (1.0, 99.0),
            normalize: true,
            invert: false,
        }
    }
}

impl Params {
    /// The reference defaults with the diameter chosen for `model` by
    /// [`Diameter::default_for`]: what the command line uses when no diameter is given.
    pub fn for_model(model: &ModelInfo) -> Params {
        Params {
            diameter: Diameter::default_for(model),
            ..Params::default()
        }
    }
}

fn check(
    ok: bool,
    name: &'static str,
    value: f64,
    expected: &'static str,
) -> Result<(), ParamsError> {
    if ok {
        Ok(())
    } else {
        Err(ParamsError::OutOfRange {
            name,
            value,
            expected,
        })
    }
}

impl Params {
    /// Rejects values the pipeline cannot honour, with the name of the offending field.
    ///
    /// # Errors
    /// [`ParamsError::OutOfRange`] naming the first field outside its range (a diameter
    /// that is not finite and positive, thresholds, sizes, percentiles, tile overlap,
    /// batch size).
    pub fn validate(&self) -> Result<(), ParamsError> {
        if let Diameter::Pixels(d) = self.diameter {
            check(
                d.is_finite() && (1.0..=10_000.0).contains(&d),
                "diameter",
                d as f64,
                "a diameter between 1 and 10000 pixels",
            )?;
        }
        let ft = self.flow_threshold;
        check(
            ft.is_finite() && ft >= 0.0,
            "flow_threshold",
            ft as f64,
            "a finite value >= 0 (0 disables the check)",
        )?;
        let ct = self.cellprob_threshold;
        check(
            ct.is_finite() && (-50.0..=50.0).contains(&ct),
            "cellprob_threshold",
            ct as f64,
            "a logit between -50 and 50",
        )?;
        let mf = self.max_size_fraction;
        check(
            mf.is_finite() && mf > 0.0 && mf <= 1.0,
            "max_size_fraction",
            mf as f64,
            "a fraction in (0, 1]",
        )?;
        if let Some(n) = self.niter {
            check(
                (1..=100_000).contains(&n),
                "niter",
                n as f64,
                "between 1 and 100000 steps",
            )?;
        }
        let to = self.tile_overlap;
        check(
            to.is_finite() && (0.0..=0.5).contains(&to),
            "tile_overlap",
            to as f64,
            "a fraction in [0, 0.5]",
        )?;
        check(
            (1..=256).contains(&self.batch_size),
            "batch_size",
            self.batch_size as f64,
            "between 1 and 256 tiles",
        )?;
        let (lo, hi) = self.percentiles;
        check(
            lo.is_finite() && lo >= 0.0 && lo < hi,
            "percentiles.0",
            lo as f64,
            "0 <= low < high",
        )?;
        check(
            hi.is_finite() && hi <= 100.0,
            "percentiles.1",
            hi as f64,
            "high <= 100",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_defaults_and_valid() {
        let p = Params::default();
        assert_eq!(p.flow_threshold, 0.4);
        assert_eq!(p.cellprob_threshold, 0.0);
        assert_eq!(p.min_size, 15);
        assert_eq!(p.batch_size, 1);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn invalid_values_are_rejected_with_their_name() {
        let p = Params {
            flow_threshold: f32::NAN,
            ..Params::default()
        };
        assert!(matches!(
            p.validate(),
            Err(ParamsError::OutOfRange {
                name: "flow_threshold",
                ..
            })
        ));
        let p = Params {
            diameter: Diameter::Pixels(0.0),
            ..Params::default()
        };
        assert!(matches!(
            p.validate(),
            Err(ParamsError::OutOfRange {
                name: "diameter",
                ..
            })
        ));
        let p = Params {
            batch_size: 0,
            ..Params::default()
        };
        assert!(matches!(
            p.validate(),
            Err(ParamsError::OutOfRange {
                name: "batch_size",
                ..
            })
        ));
        let p = Params {
            percentiles: (99.0, 1.0),
            ..Params::default()
        };
        assert!(p.validate().is_err());
    }
}

/// Euler steps of the reference at the network's scale (`niter=200`).
const BASE_NITER: f32 = 200.0;

/// How a frame or stack is scaled for the network, and how many steps its flows are
/// followed, once the object diameter is chosen: the rule of the reference's
/// `CellposeModel.eval`, shared by 2D and 3D. `rescale = diam_mean / diameter` scales every
/// side (Z too in 3D, times the anisotropy); `niter = 1 / rescale · 200` when the dynamics run
/// at the image's size (`resample`), 200 at the network's, unless the caller gives one;
/// truncated to an integer, and at least 1.
///
/// In f32, as the reference computes it: its `diam_mean` is the network's float32 parameter,
/// and NumPy 2 keeps `float32 / float` and `int * float32` in float32 (NEP 50). It matters at
/// the edges: 17 / 30 makes a 360-px side 204 px in f32 and 203 with the product in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale {
    /// Network size over image size, per side.
    pub rescale: f32,
    /// Euler steps of the dynamics (at least 1).
    pub niter: u32,
    /// Whether the dynamics run at the image's size (reference `resample`), which `niter`
    /// was chosen for.
    pub resample: bool,
}

impl Scale {
    /// For objects `diameter` pixels across with a network trained at `diam_mean`.
    pub fn for_diameter(
        diam_mean: f32,
        diameter: f32,
        niter: Option<u32>,
        resample: bool,
    ) -> Scale {
        Self::with_rescale(diam_mean / diameter, niter, resample)
    }

    /// For a given `rescale` (1 for the style pass of the automatic diameter).
    pub fn with_rescale(rescale: f32, niter: Option<u32>, resample: bool) -> Scale {
        let niter = niter
            .unwrap_or(if resample {
                (1.0 / rescale * BASE_NITER) as u32
            } else {
                BASE_NITER as u32
            })
            .max(1);
        Scale {
            rescale,
            niter,
            resample,
        }
    }

    /// The object diameter (pixels) this scale is for, with a network trained at `diam_mean`.
    pub fn diameter(&self, diam_mean: f32) -> f32 {
        diam_mean / self.rescale
    }

    /// `int(side · rescale)`, the reference's size of a side at the network's scale.
    pub fn side(&self, side: usize) -> usize {
        (side as f32 * self.rescale) as usize
    }
}

#[cfg(test)]
mod scale_tests {
    use super::Scale;

    #[test]
    fn scale_follows_the_reference_rule_in_f32() {
        // Values the reference (cellpose 3.1.1.3, NumPy 2) gives: diam_mean 17, diameter 30:
        // int(360 * rescale) = 204 (203 with the product in f64), niter int(1 / rescale * 200)
        // = 352; diameter 21.25: 250 steps (249 with 1 / rescale in f64 from the f32 value).
        let s = Scale::for_diameter(17.0, 30.0, None, true);
        assert_eq!((s.side(360), s.niter), (204, 352));
        let s = Scale::for_diameter(17.0, 21.25, None, true);
        assert_eq!((s.rescale, s.niter), (0.8, 250));
        assert_eq!(s.diameter(17.0), 21.25);
        assert_eq!(s.side(255), 204);
        // At the network's scale: 200 steps; a given niter wins; never 0.
        assert_eq!(Scale::for_diameter(17.0, 21.25, None, false).niter, 200);
        assert_eq!(Scale::for_diameter(17.0, 21.25, Some(7), true).niter, 7);
        assert_eq!(Scale::for_diameter(17.0, 21.25, Some(0), true).niter, 1);
    }
}
