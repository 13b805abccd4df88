//! The frame-by-frame API: a [`Segmenter`] owns a model handle, parameters and every buffer a
//! frame needs, and turns an [`ImageView`] into a [`Segmentation`] (reference
//! `CellposeModel.eval` for one 2D image).

use crate::error::{Error, ParamsError};
use crate::flows_to_masks::{DroppedMasks, MaskFormation};
use crate::image::ImageView;
use crate::model::Model;
use crate::network::{self, IN_CHANNELS, NetworkScratch, OUT_CHANNELS};
use crate::params::{Diameter, Params, Scale};
use crate::preprocess::{self, NarrowSpread, Normalization, ResizeScratch};

/// Result of segmenting one frame. Buffers are reused by [`Segmenter::segment_into`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Segmentation {
    pub width: usize,
    pub height: usize,
    /// Labels 0 (background) and 1..=n_objects, row-major.
    pub labels: Vec<u32>,
    pub n_objects: u32,
    /// Network flows at the image size: the dY plane then the dX plane.
    pub flows: Vec<f32>,
    /// Cell-probability logits at the image size.
    pub cell_prob: Vec<f32>,
    /// L2-normalised style vector.
    pub style: Vec<f32>,
    /// Object diameter (pixels) the image was rescaled for.
    pub diameter_used: f32,
    /// How each of the network's two input channels was normalised (the second is
    /// [`Normalization::Off`] without a nucleus channel). [`Normalization::LowerToMax`] says
    /// the percentile range was empty and the channel's maximum was used instead.
    pub normalization: [Normalization; 2],
    /// Masks removed by the size and flow-error rules (of the final pass, with automatic
    /// diameter), so that an empty or thin result can be explained.
    pub dropped: DroppedMasks,
}

/// Buffers owned by a segmenter, sized on the first frame of a size.
#[derive(Default)]
struct Workspace {
    /// Normalised channels of the frame (`channels × height × width`).
    planes: Vec<f32>,
    channels: usize,
    norm_scratch: Vec<f32>,
    resized: Vec<f32>,
    cropped: Vec<f32>,
    resize: ResizeScratch,
    net: NetworkScratch,
    masks: MaskFormation,
    small_labels: Vec<u32>,
}

/// Segments frames with one model and one parameter set. One segmenter is used by one
/// thread at a time; make one per thread to share a [`Model`].
pub struct Segmenter {
    model: Model,
    params: Params,
    threads: usize,
    executor: Option<tract_linalg::multithread::Executor>,
    ws: Workspace,
}

impl Segmenter {
    /// A segmenter with validated parameters, running the network on one thread.
    ///
    /// # Errors
    /// [`Error::Params`] as [`Params::validate`], or [`ParamsError::NoSizeModel`] for
    /// [`Diameter::Auto`] with a model that has no size model.
    pub fn new(model: Model, params: Params) -> Result<Segmenter, Error> {
        check(&model, &params)?;
        Ok(Segmenter {
            model,
            params,
            threads: 1,
            executor: None,
            ws: Workspace::default(),
        })
    }

    /// Runs the network's matrix products and the dynamics on `threads` threads (a pool
    /// owned by this segmenter). Results are identical for every thread count.
    ///
    /// # Errors
    /// [`Error::Params`] for 0 or more than 256 threads.
    pub fn with_threads(mut self, threads: usize) -> Result<Segmenter, Error> {
        if threads == 0 || threads > 256 {
            return Err(ParamsError::OutOfRange {
                name: "threads",
                value: threads as f64,
                expected: "between 1 and 256",
            }
            .into());
        }
        self.threads = threads;
        self.executor =
            (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads));
        Ok(self)
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Replaces the parameters (validated first; the old ones stay on error).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn set_params(&mut self, params: Params) -> Result<(), Error> {
        check(&self.model, &params)?;
        self.params = params;
        Ok(())
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Segments one frame into a new [`Segmentation`].
    ///
    /// # Errors
    /// As [`segment_into`](Self::segment_into).
    pub fn segment(&mut self, image: &ImageView) -> Result<Segmentation, Error> {
        let mut out = Segmentation::default();
        self.segment_into(image, &mut out)?;
        Ok(out)
    }

    /// Segments one frame into `out`, reusing its buffers.
    ///
    /// # Errors
    /// [`Error::Image`] for samples that are not finite; [`Error::Params`] when the
    /// diameter rescales the frame below one pixel; [`Error::Model`] ([`ModelError::Run`](crate::ModelError::Run)) when the network fails.
    pub fn segment_into(&mut self, image: &ImageView, out: &mut Segmentation) -> Result<(), Error> {
        // Params hold no heap data: the copy keeps a steady-state frame allocation-free.
        let params = self.params.clone();
        self.segment_frame(image, &params, out)
    }

    /// Segments one frame with `params` instead of this segmenter's own (which stay as they
    /// are): what a caller that varies one setting per frame, or the volume pipeline's
    /// diameter estimate, needs without a set-and-restore.
    ///
    /// # Errors
    /// [`Error::Params`] when `params` are invalid (as [`set_params`](Self::set_params)
    /// checks them), otherwise as [`segment_into`](Self::segment_into).
    pub fn segment_with(
        &mut self,
        image: &ImageView,
        params: &Params,
        out: &mut Segmentation,
    ) -> Result<(), Error> {
        check(&self.model, params)?;
        self.segment_frame(image, params, out)
    }

    fn segment_frame(
        &mut self,
        image: &ImageView,
        params: &Params,
        out: &mut Segmentation,
    ) -> Result<(), Error> {
        let (w, h) = (image.width(), image.height());
        let npix = w * h;
        // Channels → normalised planes, one a channel of the image: the network's second
        // input (the nucleus channel) is zero without one and is never stored.
        let ws = &mut self.ws;
        let nch = image.channels();
        ws.channels = nch;
        ws.planes.clear();
        ws.planes.resize(nch * npix, 0.0);
        for c in 0..nch {
            image.channel_to_f32(c, &mut ws.planes[c * npix..(c + 1) * npix]);
        }
        if ws.planes.iter().any(|v| !v.is_finite()) {
            return Err(crate::ImageError::NotFinite.into());
        }
        out.normalization = [Normalization::Off; IN_CHANNELS];
        if params.normalize {
            preprocess::normalize_stack(
                &mut ws.planes,
                [1, h, w],
                nch,
                params.percentiles,
                params.invert,
                NarrowSpread::LowerToMax,
                &mut ws.norm_scratch,
                &mut out.normalization[..nch],
            );
        }
        let info = self.model.info();
        let (diam_mean, diam_labels) = (info.diam_mean, info.diam_labels);
        let niter = params.niter;
        let interp = params.interp;
        match params.diameter {
            Diameter::Pixels(d) => self.run_at(
                params,
                h,
                w,
                Scale::for_diameter(diam_mean, d, niter, true),
                interp,
                out,
            )?,
            Diameter::ModelDefault => {
                let scale = Scale::for_diameter(diam_mean, diam_labels, niter, true);
                self.run_at(params, h, w, scale, interp, out)?
            }
            Diameter::Auto => {
                // Reference SizeModel.eval: style at scale 1 → regression estimate → one
                // segmentation at that scale (no resampling, no interpolation) → median
                // diameter of its masks.
                self.run_network(params, h, w, Scale::with_rescale(1.0, niter, false), out)?;
                let d_style = match &self.model.info().size_model {
                    Some(sm) => sm.estimate(&out.style),
                    None => return Err(ParamsError::NoSizeModel.into()),
                };
                let first = Scale::for_diameter(diam_mean, d_style, niter, false);
                self.run_at(params, h, w, first, false, out)?;
                let d = self.ws.masks.median_diameter(&out.labels);
                let d = if d > 0.0 && d.is_finite() {
                    d
                } else {
                    diam_mean
                };
                log::debug!("auto diameter: style {d_style:.2} px, refined {d:.2} px");
                let scale = Scale::for_diameter(diam_mean, d, niter, true);
                self.run_at(params, h, w, scale, interp, out)?;
            }
        }
        Ok(())
    }

    /// Network at `scale`, then dynamics and masks (at image size when `scale.resample`).
    fn run_at(
        &mut self,
        params: &Params,
        h: usize,
        w: usize,
        scale: Scale,
        interp: bool,
        out: &mut Segmentation,
    ) -> Result<(), Error> {
        let (rh, rw) = self.run_network(params, h, w, scale, out)?;
        let niter = scale.niter;
        let ws = &mut self.ws;
        if scale.resample || (rw, rh) == (w, h) {
            // The dynamics run on `out.flows` itself (no second flow image at the peak of a
            // frame); the flows are then made again from the network's outputs.
            ws.masks.raw_labels_in_place(
                &mut out.flows,
                &out.cell_prob,
                h,
                w,
                params,
                niter,
                interp,
                self.threads,
                &mut out.labels,
            );
            image_outputs(&ws.cropped, (rh, rw), 0..2, out, &mut ws.resize);
        } else {
            // Dynamics at the network's scale, on its outputs (not needed after); labels
            // resized to the image (nearest).
            let npix = rw * rh;
            let (flows, prob) = ws.cropped[..3 * npix].split_at_mut(2 * npix);
            ws.small_labels.resize(npix, 0);
            ws.masks.raw_labels_in_place(
                flows,
                prob,
                rh,
                rw,
                params,
                niter,
                interp,
                self.threads,
                &mut ws.small_labels,
            );
            out.labels.resize(w * h, 0);
            preprocess::resize_labels_nearest(&ws.small_labels, rh, rw, &mut out.labels, h, w);
        }
        out.n_objects =
            ws.masks
                .fill_holes_and_remove_small(&mut out.labels, [1, h, w], params.min_size);
        out.dropped = ws.masks.dropped();
        out.diameter_used = scale.diameter(self.model.info().diam_mean);
        Ok(())
    }

    /// Resizes the normalised planes by `rescale`, pads, runs the tiled network, crops, and
    /// writes flows and cell probability at image size into `out` (the network-scale crop
    /// stays in the workspace). Returns the network-scale size.
    fn run_network(
        &mut self,
        params: &Params,
        h: usize,
        w: usize,
        scale: Scale,
        out: &mut Segmentation,
    ) -> Result<(usize, usize), Error> {
        let ws = &mut self.ws;
        let npix = w * h;
        // Reference: Lyr = int(Ly * rsz).
        let (rw, rh) = if scale.rescale != 1.0 {
            (scale.side(w), scale.side(h))
        } else {
            (w, h)
        };
        if rw == 0 || rh == 0 {
            return Err(ParamsError::OutOfRange {
                name: "diameter",
                value: scale.diameter(self.model.info().diam_mean) as f64,
                expected: "small enough that the rescaled image keeps at least one pixel",
            }
            .into());
        }
        let nch = ws.channels;
        let src: &[f32] = if (rw, rh) != (w, h) {
            ws.resized.resize(nch * rw * rh, 0.0);
            for c in 0..nch {
                preprocess::resize_plane(
                    &ws.planes[c * npix..(c + 1) * npix],
                    h,
                    w,
                    &mut ws.resized[c * rw * rh..(c + 1) * rw * rh],
                    rh,
                    rw,
                    &mut ws.resize,
                );
            }
            &ws.resized
        } else {
            &ws.planes
        };
        network::run_padded(
            &self.model,
            src,
            nch,
            rh,
            rw,
            params.augment,
            params.tile_overlap,
            params.batch_size,
            self.executor.as_ref(),
            &mut ws.net,
            &mut ws.cropped,
            &mut out.style,
        )?;
        out.width = w;
        out.height = h;
        out.flows.resize(2 * npix, 0.0);
        out.cell_prob.resize(npix, 0.0);
        out.labels.resize(npix, 0);
        image_outputs(&ws.cropped, (rh, rw), 0..OUT_CHANNELS, out, &mut ws.resize);
        Ok((rh, rw))
    }
}

/// Parameters valid for `model`: in range, and an automatic diameter only with a size model.
fn check(model: &Model, params: &Params) -> Result<(), Error> {
    params.validate()?;
    if params.diameter == Diameter::Auto && model.info().size_model.is_none() {
        return Err(ParamsError::NoSizeModel.into());
    }
    Ok(())
}

/// Writes the network's output channels `channels` (of `cropped`, `3 × rh × rw`: dY, dX,
/// cell probability) at the image's size into `out.flows` / `out.cell_prob` (already sized),
/// resized when the network ran at another scale.
fn image_outputs(
    cropped: &[f32],
    (rh, rw): (usize, usize),
    channels: std::ops::Range<usize>,
    out: &mut Segmentation,
    resize: &mut ResizeScratch,
) {
    let (w, h) = (out.width, out.height);
    let (npix, rnp) = (w * h, rw * rh);
    for c in channels {
        let dst = if c < 2 {
            &mut out.flows[c * npix..(c + 1) * npix]
        } else {
            &mut out.cell_prob[..]
        };
        let src = &cropped[c * rnp..(c + 1) * rnp];
        if (rw, rh) != (w, h) {
            preprocess::resize_plane(src, rh, rw, dst, h, w, resize);
        } else {
            dst.copy_from_slice(src);
        }
    }
}
