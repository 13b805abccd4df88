//! Volumes (z-stacks) with the 2D network, as the reference segments them
//! (`CellposeModel.eval` with `do_3D=True` or `stitch_threshold > 0`, cellpose 3.1.1.3):
//!
//! - **3D flows** (`do_3d`): the stack is normalised as a whole, rescaled in XY by
//!   `diam_mean / diameter` and in Z by that times the anisotropy, and the network runs on
//!   every YX, ZX and ZY slice (`core.run_3D`). The two in-plane flows of each orientation
//!   are added into (dZ, dY, dX) and the three cell probabilities summed; the sums are
//!   resized back, and 3D dynamics ([`dynamics::follow_flows_3d`]) and 3D sinks
//!   ([`masks::labels_from_positions_3d`]) make the labels, then holes are filled and small
//!   masks removed in 3D. Slices stream through the network straight into the sums, so no
//!   orientation's outputs are held whole.
//! - **Stitching** (`stitch_threshold > 0`): every plane is segmented in 2D (after the same
//!   whole-stack normalisation, without the per-plane size filter) and labels are joined
//!   across planes by IoU ([`stitch::stitch_planes`]), then filled and size-filtered in 3D.
//! - Neither: every plane is segmented on its own (per-plane normalisation and labels).

use crate::dynamics::{self, FLOW_SCALE};
use crate::error::{Error, ImageError, ParamsError};
use crate::image::{ChannelLayout, ImageView, MAX_SIDE, PixelType};
use crate::masks;
use crate::model::Model;
use crate::network::{self, IN_CHANNELS, NetworkScratch};
use crate::params::{Diameter, Params, Scale};
use crate::preprocess::{self, ResizeScratch};
use crate::segmenter::{Segmentation, Segmenter};
use crate::stitch;

/// Above this many samples the reference estimates a stack's percentiles on a strided
/// subsample (`normalize99(downsample=True)`).
const PERCENTILE_FULL_LIMIT: usize = 224 * 224 * 224;
/// The subsample keeps about this many planes along Z (`nskip[0] = Lz // 50`) ...
const PERCENTILE_PLANES: usize = 50;
/// ... and about this many samples along Y and X.
const PERCENTILE_SIDE: usize = 224;
/// Below this spread the reference treats a channel as empty and sets it to 0.
const MIN_SPREAD: f64 = 1e-3;
/// Voxels are indexed with u32 in the dynamics and labels.
const MAX_VOXELS: u64 = u32::MAX as u64;

/// A borrowed z-stack: `depth` frames of `width × height`, one or two channels, u8/u16/f32.
/// Each plane is an [`ImageView`] (any channel layout and row stride) and plane `z` starts
/// `z * plane_stride` bytes into the data.
#[derive(Debug, Clone, Copy)]
pub struct VolumeView<'a> {
    data: &'a [u8],
    depth: usize,
    plane_stride: usize,
    first: ImageView<'a>,
    layout: ChannelLayout,
    row_stride: usize,
}

impl<'a> VolumeView<'a> {
    /// A stack over raw bytes (native endianness). Every plane is checked as an
    /// [`ImageView::new`] frame of the given layout and row stride; planes must not overlap.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: &'a [u8],
        depth: usize,
        height: usize,
        width: usize,
        channels: usize,
        pixel: PixelType,
        layout: ChannelLayout,
        row_stride: usize,
        plane_stride: usize,
    ) -> Result<Self, ImageError> {
        if depth == 0 {
            return Err(ImageError::Empty {
                width,
                height: depth,
            });
        }
        if depth > MAX_SIDE {
            return Err(ImageError::TooLarge {
                width,
                height: depth,
                limit: MAX_SIDE,
            });
        }
        let first = ImageView::new(data, width, height, channels, pixel, layout, row_stride)?;
        let planes = if layout == ChannelLayout::Planar {
            channels
        } else {
            1
        };
        // Bytes one plane spans (its last row needs only the row's samples).
        let per_pixel = if layout == ChannelLayout::Planar {
            1
        } else {
            channels
        };
        let plane_bytes = row_stride * (height * planes - 1) + width * per_pixel * pixel.bytes();
        if plane_stride < plane_bytes {
            return Err(ImageError::Stride {
                stride: plane_stride,
                row_bytes: plane_bytes,
            });
        }
        let overflow = ImageError::Overflow { width, height };
        let needed = plane_stride
            .checked_mul(depth - 1)
            .and_then(|v| v.checked_add(plane_bytes))
            .ok_or(overflow)?;
        if data.len() < needed {
            return Err(ImageError::BufferTooSmall {
                needed,
                found: data.len(),
            });
        }
        if !plane_stride.is_multiple_of(pixel.bytes()) {
            return Err(ImageError::Misaligned {
                pixel: match pixel {
                    PixelType::U8 => "u8",
                    PixelType::U16 => "u16",
                    PixelType::F32 => "f32",
                },
            });
        }
        let voxels = (depth as u64) * (height as u64) * (width as u64);
        if voxels >= MAX_VOXELS {
            return Err(ImageError::TooManyVoxels {
                voxels,
                limit: MAX_VOXELS,
            });
        }
        Ok(VolumeView {
            data,
            depth,
            plane_stride,
            first,
            layout,
            row_stride,
        })
    }

    /// A tightly packed single-channel 8-bit stack (Z×Y×X).
    pub fn gray_u8(
        depth: usize,
        height: usize,
        width: usize,
        data: &'a [u8],
    ) -> Result<Self, ImageError> {
        let plane = width.saturating_mul(height);
        Self::new(
            data,
            depth,
            height,
            width,
            1,
            PixelType::U8,
            ChannelLayout::Planar,
            width,
            plane,
        )
    }

    /// A tightly packed single-channel 16-bit stack (Z×Y×X).
    pub fn gray_u16(
        depth: usize,
        height: usize,
        width: usize,
        data: &'a [u16],
    ) -> Result<Self, ImageError> {
        let plane = width.saturating_mul(height).saturating_mul(2);
        Self::new(
            bytemuck::cast_slice(data),
            depth,
            height,
            width,
            1,
            PixelType::U16,
            ChannelLayout::Planar,
            width.saturating_mul(2),
            plane,
        )
    }

    /// A tightly packed f32 stack of `channels` planes per z (Z×C×Y×X, the order of ImageJ
    /// hyperstacks).
    pub fn planar_f32(
        depth: usize,
        channels: usize,
        height: usize,
        width: usize,
        data: &'a [f32],
    ) -> Result<Self, ImageError> {
        let plane = width
            .saturating_mul(height)
            .saturating_mul(channels)
            .saturating_mul(4);
        Self::new(
            bytemuck::cast_slice(data),
            depth,
            height,
            width,
            channels,
            PixelType::F32,
            ChannelLayout::Planar,
            width.saturating_mul(4),
            plane,
        )
    }

    pub fn depth(&self) -> usize {
        self.depth
    }
    pub fn height(&self) -> usize {
        self.first.height()
    }
    pub fn width(&self) -> usize {
        self.first.width()
    }
    pub fn channels(&self) -> usize {
        self.first.channels()
    }
    pub fn pixel_type(&self) -> PixelType {
        self.first.pixel_type()
    }
    /// `(depth, height, width, channels)`.
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (self.depth(), self.height(), self.width(), self.channels())
    }

    /// Plane `z` as a frame.
    pub fn plane(&self, z: usize) -> ImageView<'a> {
        assert!(z < self.depth);
        ImageView::new(
            &self.data[z * self.plane_stride..],
            self.width(),
            self.height(),
            self.channels(),
            self.pixel_type(),
            self.layout,
            self.row_stride,
        )
        .expect("every plane was checked in new()")
    }
}

/// Parameters of volume segmentation: the 2D [`Params`] plus the reference's 3D switches.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeParams {
    /// Parameters of the 2D stages. In 3D mode `flow_threshold` is not used (the reference
    /// has no flow check in 3D), `min_size` counts voxels, and `max_size_fraction` is a
    /// fraction of the volume. `diameter` is the XY diameter in pixels.
    pub params: Params,
    /// Run the network on the three orientations and follow 3D flows (reference `do_3D`).
    pub do_3d: bool,
    /// Z step over XY pixel size (reference `anisotropy`): Z is rescaled by this factor
    /// before the network (3D mode only). 1.0 for isotropic stacks.
    pub anisotropy: f32,
    /// When not in 3D mode and above 0, 2D labels are joined across planes where their IoU
    /// reaches this (reference `stitch_threshold`). 0 leaves planes independent.
    pub stitch_threshold: f32,
}

impl Default for VolumeParams {
    fn default() -> Self {
        VolumeParams {
            params: Params::default(),
            do_3d: true,
            anisotropy: 1.0,
            stitch_threshold: 0.0,
        }
    }
}

impl VolumeParams {
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
        let s = self.stitch_threshold;
        if !(s.is_finite() && (0.0..=1.0).contains(&s)) {
            return Err(ParamsError::OutOfRange {
                name: "stitch_threshold",
                value: s as f64,
                expected: "an IoU in [0, 1] (0 disables stitching)",
            });
        }
        Ok(())
    }
}

/// How a volume was segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VolumeMode {
    /// 3D flows and 3D dynamics.
    #[default]
    Flows3d,
    /// 2D planes joined by IoU.
    Stitched,
    /// 2D planes, labelled independently (labels restart on every plane).
    Planes,
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
    pub fn set_params(&mut self, params: VolumeParams) -> Result<(), Error> {
        params.validate()?;
        self.planes.set_params(params.params.clone())?;
        self.params = params;
        Ok(())
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Segments a stack.
    pub fn segment(&mut self, volume: &VolumeView) -> Result<VolumeSegmentation, Error> {
        let (d, h, w) = (volume.depth(), volume.height(), volume.width());
        let mut out = VolumeSegmentation {
            depth: d,
            height: h,
            width: w,
            ..Default::default()
        };
        if self.params.do_3d {
            out.mode = VolumeMode::Flows3d;
            self.segment_3d(volume, &mut out)?;
        } else if self.params.stitch_threshold > 0.0 {
            out.mode = VolumeMode::Stitched;
            self.segment_stitched(volume, &mut out)?;
        } else {
            out.mode = VolumeMode::Planes;
            self.segment_planes(volume, &mut out)?;
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
            let mut scratch = Vec::new();
            for c in 0..nc {
                let good = normalize_stack_channel(
                    &mut stack,
                    [d, h, w],
                    nc,
                    c,
                    p.percentiles,
                    &mut scratch,
                );
                if good && p.invert {
                    for z in 0..d {
                        let o = (z * nc + c) * plane;
                        stack[o..o + plane].iter_mut().for_each(|v| *v = 1.0 - *v);
                    }
                }
            }
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
                    ImageView::planar_f32(w, h, nc, &stack[z * nc * plane..(z + 1) * nc * plane])?;
                let mut p = self.params.params.clone();
                p.normalize = false; // the stack is normalised already
                self.planes.set_params(p)?;
                let est = self.planes.segment(&frame);
                self.planes.set_params(self.params.params.clone())?;
                est?.diameter_used
            }
        })
    }

    /// The summed network outputs of a stack in 3D mode, before the dynamics: what
    /// [`segment`](Self::segment) follows when `do_3d` is set (reference `_run_net` with
    /// `do_3D=True`). At the volume's size unless `params.resample` is off, in which case
    /// at the network's (rescaled) size.
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
                resize_stack(
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
                resize_stack(
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
            resize_labels_volume(&labels, shape_dyn, &mut full, [d, h, w]);
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
        self.planes.set_params(p)?;
        let plane = h * w;
        out.labels = vec![0u32; d * plane];
        let mut seg = Segmentation::default();
        let mut result = Ok(());
        for z in 0..d {
            let frame =
                ImageView::planar_f32(w, h, nc, &stack[z * nc * plane..(z + 1) * nc * plane])?;
            if let Err(e) = self.planes.segment_into(&frame, &mut seg) {
                result = Err(e);
                break;
            }
            out.labels[z * plane..(z + 1) * plane].copy_from_slice(&seg.labels);
        }
        self.planes.set_params(self.params.params.clone())?;
        result?;
        drop(stack);
        stitch::stitch_planes(&mut out.labels, [d, h, w], self.params.stitch_threshold);
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

/// Labels from 3D network outputs (reference `dynamics.compute_masks` with `do_3D=True`, which
/// has no flow-error check): voxels whose cell probability exceeds `cellprob_threshold`
/// follow the flows for `niter` steps ([`dynamics::follow_flows_3d`]) and are labelled by
/// their sinks ([`masks::labels_from_positions_3d`]). `field` is `[dZ, dY, dX, cell
/// probability]`, `4 × depth × height × width`, as the network sums them; its flow planes are
/// overwritten. Runs on the current rayon pool. Returns the number of labels (before hole
/// filling and size filtering).
pub fn labels_from_field_3d(
    field: &mut [f32],
    shape: [usize; 3],
    cellprob_threshold: f32,
    max_size_fraction: f32,
    niter: u32,
    labels: &mut [u32],
) -> u32 {
    let n = shape[0] * shape[1] * shape[2];
    assert!(field.len() == 4 * n && labels.len() == n);
    let (flow, prob) = field.split_at_mut(3 * n);
    let th = cellprob_threshold;
    let voxels: Vec<u32> = (0..n as u32).filter(|&i| prob[i as usize] > th).collect();
    labels.fill(0);
    if voxels.is_empty() {
        return 0;
    }
    // Reference: dP * (cellprob > threshold) / 5.
    for a in 0..3 {
        for (v, &p) in flow[a * n..(a + 1) * n].iter_mut().zip(prob.iter()) {
            *v = if p > th { *v / FLOW_SCALE } else { 0.0 };
        }
    }
    let mut ends = vec![[0u32; 3]; voxels.len()];
    dynamics::follow_flows_3d(flow, shape, &voxels, niter, &mut ends);
    masks::labels_from_positions_3d(&mut ends, &voxels, shape, max_size_fraction, labels)
}

/// Normalises channel `c` of a Z×C×Y×X stack over the whole stack (reference
/// `normalize99(downsample=True)` on a 3D array): the lower percentile maps to 0, the upper
/// to 1; a constant channel is left as it is (returns false) and a channel whose percentiles
/// nearly coincide becomes 0.
fn normalize_stack_channel(
    stack: &mut [f32],
    shape: [usize; 3],
    nc: usize,
    c: usize,
    (lower, upper): (f32, f32),
    scratch: &mut Vec<f32>,
) -> bool {
    let [d, h, w] = shape;
    let plane = h * w;
    let ranges: Vec<std::ops::Range<usize>> = (0..d)
        .map(|z| (z * nc + c) * plane..(z * nc + c + 1) * plane)
        .collect();
    let (mn, mx) = ranges
        .iter()
        .flat_map(|r| &stack[r.clone()])
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if mx <= mn {
        return false;
    }
    scratch.clear();
    if d * plane > PERCENTILE_FULL_LIMIT {
        let sz = (d / PERCENTILE_PLANES).max(1);
        let (sy, sx) = ((h / PERCENTILE_SIDE).max(1), (w / PERCENTILE_SIDE).max(1));
        for z in (0..d).step_by(sz) {
            let p0 = ranges[z].start;
            for y in (0..h).step_by(sy) {
                scratch.extend(stack[p0 + y * w..p0 + (y + 1) * w].iter().step_by(sx));
            }
        }
    } else {
        for r in &ranges {
            scratch.extend_from_slice(&stack[r.clone()]);
        }
    }
    let x01 = preprocess::percentile(scratch, lower as f64);
    let x99 = preprocess::percentile(scratch, upper as f64);
    for r in ranges {
        let x = &mut stack[r];
        if x99 - x01 > MIN_SPREAD {
            let (lo, span) = (x01 as f32, (x99 - x01) as f32);
            x.iter_mut().for_each(|v| *v = (*v - lo) / span);
        } else {
            x.fill(0.0);
        }
    }
    true
}

/// Bilinear resize of one channel of a stack, as the reference resizes volumes: every z
/// plane in XY (OpenCV `INTER_LINEAR`, [`preprocess::resize_plane`]), then along Z (the
/// reference resizes the ZX planes with X unchanged, which is the same vertical pass).
/// The planes of `from = (Z, Y, X)` start at `src_at(z)` in `src`; the planes of `to` are
/// written at `dst_at(z)` in `dst`.
fn resize_stack(
    src: &[f32],
    from: [usize; 3],
    src_at: impl Fn(usize) -> usize,
    dst: &mut [f32],
    to: [usize; 3],
    dst_at: impl Fn(usize) -> usize,
    scratch: &mut ResizeScratch,
) {
    let [fd, fh, fw] = from;
    let [td, th, tw] = to;
    let (fp, tp) = (fh * fw, th * tw);
    // XY pass into a Z×Y'×X' buffer (skipped when XY keeps its size).
    let mut xy = Vec::new();
    let xy_at: Box<dyn Fn(usize) -> usize> = if (fh, fw) != (th, tw) {
        xy.resize(fd * tp, 0.0);
        for z in 0..fd {
            preprocess::resize_plane(
                &src[src_at(z)..src_at(z) + fp],
                fw,
                fh,
                &mut xy[z * tp..(z + 1) * tp],
                tw,
                th,
                scratch,
            );
        }
        Box::new(move |z| z * tp)
    } else {
        Box::new(&src_at)
    };
    let xy_src: &[f32] = if (fh, fw) != (th, tw) { &xy } else { src };
    // Z pass: OpenCV's vertical interpolation, row0 * (1 - t) + row1 * t.
    let (mut zi, mut zw) = (Vec::new(), Vec::new());
    preprocess::linear_coeffs(fd, td, &mut zi, &mut zw);
    for z in 0..td {
        let (i, t) = (zi[z], zw[z]);
        let a = &xy_src[xy_at(i)..xy_at(i) + tp];
        let b0 = xy_at((i + 1).min(fd - 1));
        let b = &xy_src[b0..b0 + tp];
        let o = dst_at(z);
        let out = &mut dst[o..o + tp];
        if fd == td {
            out.copy_from_slice(a);
        } else {
            for k in 0..tp {
                out[k] = a[k] * (1.0 - t) + b[k] * t;
            }
        }
    }
}

/// Nearest-neighbour resize of a label volume (reference: OpenCV `INTER_NEAREST` per z plane
/// in XY, then per y plane along Z).
fn resize_labels_volume(src: &[u32], from: [usize; 3], dst: &mut [u32], to: [usize; 3]) {
    let [fd, fh, fw] = from;
    let [td, th, tw] = to;
    let mut xy = vec![0u32; fd * th * tw];
    for z in 0..fd {
        preprocess::resize_labels_nearest(
            &src[z * fh * fw..(z + 1) * fh * fw],
            fw,
            fh,
            &mut xy[z * th * tw..(z + 1) * th * tw],
            tw,
            th,
        );
    }
    let sz = fd as f64 / td as f64;
    for z in 0..td {
        let zs = ((z as f64 * sz).floor() as usize).min(fd - 1);
        dst[z * th * tw..(z + 1) * th * tw].copy_from_slice(&xy[zs * th * tw..(zs + 1) * th * tw]);
    }
}
