//! Volumes (z-stacks) with the 2D network, as the reference segments them
//! (`CellposeModel.eval` with `do_3D=True` or `stitch_threshold > 0`, cellpose 3.1.1.3).
//! The stages are the 2D pipeline's, on three axes: the stack is read and normalised by
//! `preprocess` (whole-stack percentiles), rescaled by the same [`Scale`] as a frame
//! (Z by that times the anisotropy), and labelled by `flows_to_masks`. [`VolumeMode`]
//! chooses how:
//!
//! - **3D flows** ([`VolumeMode::Flows3d`]): the network runs on every YX, ZX and ZY slice
//!   (`core.run_3D`). The two in-plane flows of each orientation are added into (dZ, dY, dX)
//!   and the three cell probabilities summed; the sums are resized back, and 3D dynamics and
//!   sinks ([`labels_from_field_3d`](crate::labels_from_field_3d)) make the labels, then
//!   holes are filled and small masks removed in 3D. Slices stream through the network
//!   straight into the sums, so no orientation's outputs are held whole.
//! - **Stitching** ([`VolumeMode::Stitched`]): every plane is segmented in 2D (after the same
//!   whole-stack normalisation, without the per-plane size filter) and labels are joined
//!   across planes by IoU (`stitch::stitch_planes`), then filled and size-filtered in 3D.
//! - **Planes** ([`VolumeMode::Planes`]): every plane is segmented on its own (per-plane
//!   normalisation and labels).

use crate::error::{Error, ImageError, ParamsError};
use crate::flows_to_masks::labels_from_field_3d;
use crate::image::{ImageView, VolumeView};
use crate::masks;
use crate::model::Model;
use crate::network::{self, IN_CHANNELS, NetworkScratch};
use crate::params::{Diameter, Params, Scale};
use crate::preprocess::{self, NarrowSpread, Normalization, ResizeScratch};
use crate::segmenter::{Segmentation, Segmenter};
use crate::stitch;

/// Parameters of volume segmentation: the 2D [`Params`], how the stack is segmented, and
/// its voxel shape.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeParams {
    /// Parameters of the 2D stages. In 3D mode `flow_threshold` is not used (the reference
    /// has no flow check in 3D), `min_size` counts voxels, and `max_size_fraction` is a
    /// fraction of the volume. `diameter` is the XY diameter in pixels.
    pub params: Params,
    /// 3D flows, stitched planes, or independent planes. Default [`VolumeMode::Flows3d`].
    pub mode: VolumeMode,
    /// Z step over XY pixel size (reference `anisotropy`): Z is rescaled by this factor
    /// before the network (3D flows only). 1.0 for isotropic stacks.
    pub anisotropy: f32,
}

impl Default for VolumeParams {
    fn default() -> Self {
        VolumeParams {
            params: Params::default(),
            mode: VolumeMode::Flows3d,
            anisotropy: 1.0,
        }
    }
}

impl VolumeParams {
    /// Checks every field.
    ///
    /// # Errors
    /// [`ParamsError`] naming the first field out of range: the 2D parameters'
    /// ([`Params::validate`]), `anisotropy` outside 0.01..=100, a stitching threshold
    /// outside (0, 1].
    pub fn validate(&self) -> Result<(), ParamsError> {
        self.params.validate()?;
        let a = self.anisotropy;
        if !(a.is_finite() && (0.01..=100.0).contains(&a)) {
            return Err(ParamsError::OutOfRange {
                name: "anisotropy",
                value: a as f64,
                expected: "a ratio of Z step to XY pixel size between 0.01 and 100",
            });
        }
        if let VolumeMode::Stitched { threshold: t } = self.mode
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(ParamsError::OutOfRange {
                name: "stitch_threshold",
                value: t as f64,
                expected: "an IoU in (0, 1] for stitching",
            });
        }
        Ok(())
    }
}

/// How a volume is segmented (a request in [`VolumeParams`], echoed in
/// [`VolumeSegmentation`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum VolumeMode {
    /// 3D flows and 3D dynamics (reference `do_3D=True`).
    #[default]
    Flows3d,
    /// 2D planes, labels of neighbouring planes joined where their IoU reaches `threshold`,
    /// in (0, 1] (reference `stitch_threshold`). Faster than 3D flows; for thick Z steps.
    Stitched { threshold: f32 },
    /// 2D planes, labelled independently (labels restart on every plane).
    Planes,
}

impl VolumeMode {
    /// The IoU at which [`VolumeMode::stitched`] joins labels of neighbouring planes: a
    /// nucleus's cross-sections in neighbouring planes are joined even where they shrink
    /// towards its poles, touching neighbours are not merged. The reference has no default
    /// (its `stitch_threshold = 0` means no stitching).
    pub const DEFAULT_STITCH_THRESHOLD: f32 = 0.25;

    /// Stitching at [`DEFAULT_STITCH_THRESHOLD`](Self::DEFAULT_STITCH_THRESHOLD).
    pub fn stitched() -> VolumeMode {
        VolumeMode::Stitched {
            threshold: Self::DEFAULT_STITCH_THRESHOLD,
        }
    }

    /// The mode the reference's switches select: `do_3D` wins, then stitching when
    /// `stitch_threshold > 0`, else independent planes.
    pub fn from_reference(do_3d: bool, stitch_threshold: f32) -> VolumeMode {
        if do_3d {
            VolumeMode::Flows3d
        } else if stitch_threshold > 0.0 {
            VolumeMode::Stitched {
                threshold: stitch_threshold,
            }
        } else {
            VolumeMode::Planes
        }
    }
}

/// Labels of a volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeSegmentation {
    pub depth: usize,
    pub height: usize,
    pub width: usize,
    /// Labels 0 (background) and 1..=n_objects, Z×Y×X row-major. In
    /// [`VolumeMode::Planes`] every plane has its own labels 1..=n.
    pub labels: Vec<u32>,
    /// Objects in the volume (in [`VolumeMode::Planes`], the sum over planes).
    pub n_objects: u32,
    /// XY object diameter (pixels) the stack was rescaled for.
    pub diameter_used: f32,
    pub mode: VolumeMode,
}

/// Summed network outputs of a stack in 3D mode (see [`VolumeSegmenter::flows_3d`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeFlows {
    /// (Z, Y, X) of `field`.
    pub shape: [usize; 3],
    /// `[dZ, dY, dX, cell probability]`, 4 planes of Z×Y×X: each flow is the sum of the two
    /// orientations that see that axis, the cell probability the sum of all three logits.
    pub field: Vec<f32>,
    /// XY scale factor the network ran at (`diam_mean / diameter`).
    pub rescale: f64,
    /// XY object diameter (pixels) the stack was rescaled for.
    pub diameter_used: f32,
}

/// Network runs on single slices: pad, tile, crop.
#[derive(Default)]
struct SliceNet {
    input: Vec<f32>,
    out: Vec<f32>,
    style: Vec<f32>,
    scratch: NetworkScratch,
}

impl SliceNet {
    /// Runs the network on `self.input` (`2 × h × w`, normalised and rescaled) and leaves
    /// `3 × h × w` outputs (flow along rows, flow along columns, cell probability) in
    /// `self.out`, as `core.run_net` does for one image.
    fn run(
        &mut self,
        model: &Model,
        params: &Params,
        executor: Option<&tract_linalg::multithread::Executor>,
        h: usize,
        w: usize,
    ) -> Result<(), Error> {
        network::run_padded(
            model,
            &self.input,
            network::IN_CHANNELS,
            h,
            w,
            params.augment,
            params.tile_overlap,
            params.batch_size,
            executor,
            &mut self.scratch,
            &mut self.out,
            &mut self.style,
        )?;
        Ok(())
    }
}

/// Segments z-stacks with one model and one parameter set (reference
/// `CellposeModel.eval` on a 3D input). Like [`Segmenter`], one per thread.
pub struct VolumeSegmenter {
    model: Model,
    params: VolumeParams,
    threads: usize,
    executor: Option<tract_linalg::multithread::Executor>,
    pool: Option<rayon::ThreadPool>,
    /// 2D pipeline for stitching, independent planes and the automatic diameter.
    planes: Segmenter,
    slice: SliceNet,
    resize: ResizeScratch,
}

impl VolumeSegmenter {
    /// A segmenter with validated parameters, running on one thread.
    ///
    /// # Errors
    /// [`Error::Params`] as [`VolumeParams::validate`] and [`Segmenter::new`].
    pub fn new(model: Model, params: VolumeParams) -> Result<VolumeSegmenter, Error> {
        params.validate()?;
        let planes = Segmenter::new(model.clone(), params.params.clone())?;
        Ok(VolumeSegmenter {
            model,
            params,
            threads: 1,
            executor: None,
            pool: None,
            planes,
            slice: SliceNet::default(),
            resize: ResizeScratch::default(),
        })
    }

    /// Runs the network and the dynamics on `threads` threads. Labels are identical for
    /// every thread count.
    ///
    /// # Errors
    /// [`Error::Params`] for 0 or more than 256 threads.
    pub fn with_threads(mut self, threads: usize) -> Result<VolumeSegmenter, Error> {
        self.planes = self.planes.with_threads(threads)?;
        self.threads = threads;
        self.executor =
            (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads));
        self.pool = None;
        Ok(self)
    }

    pub fn params(&self) -> &VolumeParams {
        &self.params
    }

    /// Replaces the parameters (validated first; the old ones stay on error).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn set_params(&mut self, params: VolumeParams) -> Result<(), Error> {
        params.validate()?;
        self.planes.set_params(params.params.clone())?;
        self.params = params;
        Ok(())
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Segments a stack in this segmenter's [`VolumeMode`].
    ///
    /// # Errors
    /// [`Error::Image`] for samples that are not finite or (3D flows) a grid under two
    /// voxels a side; [`Error::Params`] when the diameter and anisotropy rescale a side
    /// below two voxels; [`Error::Model`] ([`ModelError::Run`](crate::ModelError::Run)) when the network fails.
    pub fn segment(&mut self, volume: &VolumeView) -> Result<VolumeSegmentation, Error> {
        let (d, h, w) = (volume.depth(), volume.height(), volume.width());
        let mut out = VolumeSegmentation {
            depth: d,
            height: h,
            width: w,
            ..Default::default()
        };
        out.mode = self.params.mode;
        match self.params.mode {
            VolumeMode::Flows3d => self.segment_3d(volume, &mut out)?,
            VolumeMode::Stitched { threshold } => {
                self.segment_stitched(volume, threshold, &mut out)?
            }
            VolumeMode::Planes => self.segment_planes(volume, &mut out)?,
        }
        Ok(out)
    }

    /// The normalised stack and the diameter its objects are segmented at: what every
    /// volume mode starts from.
    fn prepared_stack(&mut self, volume: &VolumeView) -> Result<(Vec<f32>, f32), Error> {
        let (d, h, w, nc) = volume.shape();
        let stack = self.normalised_stack(volume)?;
        let diameter = self.volume_diameter(&stack, [d, h, w], nc)?;
        Ok((stack, diameter))
    }

    /// The stack as f32, Z×C×Y×X (C = the volume's channels), normalised over the whole
    /// stack per channel when `params.normalize` (reference `norm3D=True`), then inverted if
    /// asked.
    fn normalised_stack(&self, volume: &VolumeView) -> Result<Vec<f32>, Error> {
        let (d, h, w, nc) = volume.shape();
        let plane = h * w;
        let mut stack = vec![0.0f32; d * nc * plane];
        for z in 0..d {
            let view = volume.plane(z);
            for c in 0..nc {
                let o = (z * nc + c) * plane;
                view.channel_to_f32(c, &mut stack[o..o + plane]);
            }
        }
        if stack.iter().any(|v| !v.is_finite()) {
            return Err(ImageError::NotFinite.into());
        }
        let p = &self.params.params;
        if p.normalize {
            // The reference's `normalize99` on a volume: a narrow spread becomes 0.
            let mut how = [Normalization::Off; IN_CHANNELS];
            preprocess::normalize_stack(
                &mut stack,
                [d, h, w],
                nc,
                p.percentiles,
                p.invert,
                NarrowSpread::Zero,
                &mut Vec::new(),
                &mut how[..nc],
            );
        }
        Ok(stack)
    }

    /// XY diameter for the stack. `Auto` runs the 2D estimate (style → size model →
    /// refinement) on the middle plane of the normalised stack; the reference cannot
    /// estimate a diameter for volumes and falls back to `diam_mean` there.
    fn volume_diameter(
        &mut self,
        stack: &[f32],
        shape: [usize; 3],
        nc: usize,
    ) -> Result<f32, Error> {
        let info = self.model.info();
        Ok(match self.params.params.diameter {
            Diameter::Pixels(d) => d,
            Diameter::ModelDefault => info.diam_labels,
            Diameter::Auto => {
                let [d, h, w] = shape;
                let plane = h * w;
                let z = d / 2;
                let frame =
                    ImageView::planar_f32(nc, h, w, &stack[z * nc * plane..(z + 1) * nc * plane])?;
                let mut p = self.params.params.clone();
                p.normalize = false; // the stack is normalised already
                let mut est = Segmentation::default();
                self.planes.segment_with(&frame, &p, &mut est)?;
                est.diameter_used
            }
        })
    }

    /// The summed network outputs of a stack in 3D mode, before the dynamics: what
    /// [`segment`](Self::segment) follows in [`VolumeMode::Flows3d`] (reference `_run_net` with
    /// `do_3D=True`). At the volume's size unless `params.resample` is off, in which case
    /// at the network's (rescaled) size.
    ///
    /// # Errors
    /// As [`segment`](Self::segment).
    pub fn flows_3d(&mut self, volume: &VolumeView) -> Result<VolumeFlows, Error> {
        let (d, h, w, nc) = volume.shape();
        let (stack, diameter) = self.prepared_stack(volume)?;
        let p = self.params.params.clone();
        let diam_mean = self.model.info().diam_mean;
        let scale = Scale::for_diameter(diam_mean, diameter, p.niter, p.resample);
        let rescale = scale.rescale;
        let aniso = self.params.anisotropy as f64;
        // Reference `_run_net`: Ly' = int(Ly * rescale), Lz' = int(Lz * anisotropy * rescale).
        let resized = rescale != 1.0 || aniso != 1.0;
        let (dz, dy, dx) = if resized {
            (
                // NumPy: (int · float) is a Python float, times the float32 rescale float32.
                ((d as f64 * aniso) as f32 * rescale) as usize,
                scale.side(h),
                scale.side(w),
            )
        } else {
            (d, h, w)
        };
        if dz < 2 || dy < 2 || dx < 2 {
            return Err(ParamsError::OutOfRange {
                name: "diameter",
                value: diameter as f64,
                expected: "small enough (with the anisotropy) that the rescaled volume keeps 2 voxels per side",
            }
            .into());
        }
        // Network input: Z'×C×Y'×X'.
        let net_in = if resized {
            let mut r = vec![0.0f32; dz * nc * dy * dx];
            let (fp, tp) = (h * w, dy * dx);
            for c in 0..nc {
                preprocess::resize_stack(
                    &stack,
                    [d, h, w],
                    |z| (z * nc + c) * fp,
                    &mut r,
                    [dz, dy, dx],
                    |z| (z * nc + c) * tp,
                    &mut self.resize,
                );
            }
            drop(stack);
            r
        } else {
            stack
        };
        let shape_net = [dz, dy, dx];
        let yf = self.run_orientations(&net_in, shape_net, nc)?;
        drop(net_in);
        let resample = p.resample;
        // Flows and cell probability at the size the dynamics run at.
        let (mut field, shape_dyn) = if resample && (rescale != 1.0 || dz != d) {
            let mut f = vec![0.0f32; 4 * d * h * w];
            let (fp, tp) = (dy * dx, h * w);
            for c in 0..4 {
                preprocess::resize_stack(
                    &yf,
                    shape_net,
                    |z| (c * dz + z) * fp,
                    &mut f,
                    [d, h, w],
                    |z| (c * d + z) * tp,
                    &mut self.resize,
                );
            }
            drop(yf);
            (f, [d, h, w])
        } else {
            (yf, shape_net)
        };
        Ok(VolumeFlows {
            shape: shape_dyn,
            field: std::mem::take(&mut field),
            rescale: rescale as f64,
            diameter_used: scale.diameter(diam_mean),
        })
    }

    fn segment_3d(
        &mut self,
        volume: &VolumeView,
        out: &mut VolumeSegmentation,
    ) -> Result<(), Error> {
        let (d, h, w) = (volume.depth(), volume.height(), volume.width());
        let VolumeFlows {
            shape: shape_dyn,
            mut field,
            rescale,
            diameter_used,
        } = self.flows_3d(volume)?;
        let p = self.params.params.clone();
        let resample = p.resample;
        let niter = Scale::with_rescale(rescale as f32, p.niter, resample).niter;
        let [ld, lh, lw] = shape_dyn;
        if ld < 2 || lh < 2 || lw < 2 {
            return Err(ImageError::TooThinFor3d {
                depth: ld,
                height: lh,
                width: lw,
            }
            .into());
        }
        let n = ld * lh * lw;
        let mut labels = vec![0u32; n];
        self.masks_3d(&mut field, shape_dyn, niter, &mut labels);
        drop(field);
        let labels = if shape_dyn != [d, h, w] {
            let mut full = vec![0u32; d * h * w];
            preprocess::resize_labels_volume(&labels, shape_dyn, &mut full, [d, h, w]);
            full
        } else {
            labels
        };
        out.labels = labels;
        out.n_objects = masks::fill_holes_and_remove_small(&mut out.labels, [d, h, w], p.min_size);
        out.diameter_used = diameter_used;
        Ok(())
    }

    /// Runs the YX, ZX and ZY slices of `net_in` (Z×C×Y×X) through the network and returns
    /// the sums `[dZ, dY, dX, cell probability]` (4 planes of Z×Y×X), reference `run_3D`.
    fn run_orientations(
        &mut self,
        net_in: &[f32],
        shape: [usize; 3],
        nc: usize,
    ) -> Result<Vec<f32>, Error> {
        let [d, h, w] = shape;
        let n = d * h * w;
        let mut yf = vec![0.0f32; 4 * n];
        let at = |z: usize, c: usize, y: usize, x: usize| ((z * nc + c) * h + y) * w + x;
        let vox = |z: usize, y: usize, x: usize| (z * h + y) * w + x;
        // (slices, slice rows, slice columns, yf channel of row flow, of column flow)
        let views: [(usize, usize, usize, usize, usize); 3] =
            [(d, h, w, 1, 2), (h, d, w, 0, 2), (w, d, h, 0, 1)];
        for (view, &(ns, rows, cols, row_ch, col_ch)) in views.iter().enumerate() {
            // (slice, row, column) → (z, y, x)
            let pos = |s: usize, r: usize, c: usize| match view {
                0 => (s, r, c),
                1 => (r, s, c),
                _ => (r, c, s),
            };
            for s in 0..ns {
                let sl = &mut self.slice;
                sl.input.clear();
                sl.input.resize(IN_CHANNELS * rows * cols, 0.0);
                for c in 0..nc {
                    for r in 0..rows {
                        for q in 0..cols {
                            let (z, y, x) = pos(s, r, q);
                            sl.input[(c * rows + r) * cols + q] = net_in[at(z, c, y, x)];
                        }
                    }
                }
                sl.run(
                    &self.model,
                    &self.params.params,
                    self.executor.as_ref(),
                    rows,
                    cols,
                )?;
                let plane = rows * cols;
                for r in 0..rows {
                    for q in 0..cols {
                        let (z, y, x) = pos(s, r, q);
                        let v = vox(z, y, x);
                        let k = r * cols + q;
                        yf[3 * n + v] += sl.out[2 * plane + k];
                        yf[row_ch * n + v] += sl.out[k];
                        yf[col_ch * n + v] += sl.out[plane + k];
                    }
                }
            }
        }
        Ok(yf)
    }

    /// 3D dynamics and sinks on this segmenter's threads.
    fn masks_3d(&mut self, field: &mut [f32], shape: [usize; 3], niter: u32, labels: &mut [u32]) {
        if self.pool.is_none() {
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads.max(1))
                .build()
                .ok();
        }
        let p = &self.params.params;
        let (th, big) = (p.cellprob_threshold, p.max_size_fraction);
        let mut run = move || labels_from_field_3d(field, shape, th, big, niter, labels);
        match &self.pool {
            Some(pool) => pool.install(run),
            None => run(),
        };
    }

    fn segment_stitched(
        &mut self,
        volume: &VolumeView,
        threshold: f32,
        out: &mut VolumeSegmentation,
    ) -> Result<(), Error> {
        let (d, h, w, nc) = volume.shape();
        let (stack, diameter) = self.prepared_stack(volume)?;
        let mut p = self.params.params.clone();
        // The stack is normalised as a whole (reference norm3D); the size filter waits
        // until the planes are stitched.
        p.normalize = false;
        p.min_size = -1;
        if p.diameter == Diameter::Auto {
            p.diameter = Diameter::Pixels(diameter);
        }
        let plane = h * w;
        out.labels = vec![0u32; d * plane];
        let mut seg = Segmentation::default();
        for z in 0..d {
            let frame =
                ImageView::planar_f32(nc, h, w, &stack[z * nc * plane..(z + 1) * nc * plane])?;
            self.planes.segment_with(&frame, &p, &mut seg)?;
            out.labels[z * plane..(z + 1) * plane].copy_from_slice(&seg.labels);
        }
        drop(stack);
        stitch::stitch_planes(&mut out.labels, [d, h, w], threshold);
        out.n_objects = masks::fill_holes_and_remove_small(
            &mut out.labels,
            [d, h, w],
            self.params.params.min_size,
        );
        out.diameter_used = seg.diameter_used;
        if matches!(self.params.params.diameter, Diameter::Auto) {
            out.diameter_used = diameter;
        }
        Ok(())
    }

    fn segment_planes(
        &mut self,
        volume: &VolumeView,
        out: &mut VolumeSegmentation,
    ) -> Result<(), Error> {
        let (d, h, w) = (volume.depth(), volume.height(), volume.width());
        let plane = h * w;
        out.labels = vec![0u32; d * plane];
        let mut seg = Segmentation::default();
        let mut diams = Vec::with_capacity(d);
        for z in 0..d {
            self.planes.segment_into(&volume.plane(z), &mut seg)?;
            out.labels[z * plane..(z + 1) * plane].copy_from_slice(&seg.labels);
            out.n_objects += seg.n_objects;
            diams.push(seg.diameter_used);
        }
        diams.sort_by(f32::total_cmp);
        out.diameter_used = diams[diams.len() / 2];
        Ok(())
    }
}
