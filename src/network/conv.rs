//! The network's convolutions (3×3 with padding 1, which hold ~90 % of a Cellpose U-Net's
//! multiply-adds, and the 1×1 projections), as a tract op of ours that [`super::graph`]
//! puts in place of tract's own `Conv`.
//!
//! Why: tract lowers a convolution to im2col + matrix multiply, which on this network runs at
//! about a quarter of the CPU's peak (the im2col expansion dominates at 16 channels), and it
//! folds an int8 model back to f32. Here the convolution is direct, on a zero-padded copy of
//! the input, with a register tile of output channels × output pixels
//! ([`super::kernels`], one SIMD kernel per instruction set chosen at run time), and the
//! int8 form computes in int8 (u8 activations × i8 weights, i32 sums). f32 3×3 convolutions
//! with enough input channels go through [`super::winograd`] instead of the direct kernel,
//! from the same padded copy.
//!
//! The batch norm and ReLU in front of a convolution (the network's pre-activation blocks:
//! `conv(relu(x · scale + shift))`) are applied while the input is copied into the padded
//! buffer ([`InputStage`]), which saves tract three passes over the tensor and makes the
//! activations non-negative, as the u8 quantization needs.
//!
//! Tensors are N×C×H×W f32 in and out, as tract's `Conv` (reference: `torch.nn.Conv2d` with
//! `kernel_size=3, padding=1` or `kernel_size=1`).

use std::cell::RefCell;
use std::sync::Arc;

use rayon::prelude::*;

use super::stash::TensorStash;
use tract_core::internal::*;
use tract_linalg::multithread::Executor;

use super::kernels::{F32Block, I8Block, Isa, KernelShape, OutPlanes, Span};
use super::winograd::{INPUT_SLACK, Tiles, Winograd};

/// Output rows per unit of work: rows of one unit share their padded input rows in cache
/// across the unit's output-channel blocks, and units are spread over the executor's threads.
const ROWS_PER_UNIT: usize = 4;
/// Units of work a convolution is cut into at least (when it has that many row × channel
/// blocks): small deep layers (28 rows, 128 channels) are also split by output channels, so
/// that two or four threads finish together.
const MIN_UNITS: usize = 32;

/// Input channels from which a 3×3 f32 convolution runs in the Winograd domain. Measured on
/// AVX-512 (`cargo bench --bench compare -- conv`, 2 threads): 1.15× the direct kernel's
/// speed at 32 channels, 1.4–1.5× at 64 and 128, a tie at 16, where the transforms cost as
/// much as the multiplies they save.
pub const WINOGRAD_MIN_CHANNELS: usize = 32;

/// Largest magnitude of an int8 weight code (symmetric, as `models/quantize.py`).
const I8_MAX: f32 = 127.0;

/// What is applied to the input, per channel, before the convolution:
/// `relu((resample(x) + pre[n, c]) · scale[c] + shift[c])` (each part optional), in that
/// order and without a fused multiply-add, so the values are those tract's `MaxPool` or
/// `Resize`, `Add`, `Mul`, `Add` and `Max` would have made. `pre` is an input of the op (the
/// style features the upsampling blocks add, `N × C × 1 × 1`); the rest is fixed at load.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputStage {
    pub resample: Resample,
    pub pre_add: bool,
    pub scale: Option<Vec<f32>>,
    pub shift: Option<Vec<f32>>,
    pub relu: bool,
}

/// The change of size between the op's input and the convolution's (the U-Net's down- and
/// upsampling, read on the fly instead of written by tract as a tensor of its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resample {
    #[default]
    None,
    /// 2×2 max pooling, stride 2, no padding (`torch.nn.MaxPool2d(2)`): `⌊h / 2⌋ × ⌊w / 2⌋`.
    MaxPool2,
    /// Nearest-neighbour ×2 (`torch.nn.Upsample(scale_factor=2, mode="nearest")`): `2h × 2w`.
    Nearest2,
}

impl Resample {
    /// The convolution's input size for an op input of `height × width`.
    pub fn dims(self, height: usize, width: usize) -> (usize, usize) {
        match self {
            Resample::None => (height, width),
            Resample::MaxPool2 => (height / 2, width / 2),
            Resample::Nearest2 => (2 * height, 2 * width),
        }
    }
}

impl InputStage {
    /// Channel `c`'s pre-add, scale and shift. Missing parts are 0, 1 and 0, which give the
    /// same values (`(x + 0) · 1 + 0 = x`, up to the sign of a zero), so each row is one
    /// branch-free loop the compiler vectorises.
    fn affine(&self, pre: Option<&[f32]>, c: usize) -> (f32, f32, f32) {
        (
            pre.map_or(0.0, |p| p[c]),
            self.scale.as_ref().map_or(1.0, |v| v[c]),
            self.shift.as_ref().map_or(0.0, |v| v[c]),
        )
    }

    fn is_identity(&self) -> bool {
        !self.pre_add && self.scale.is_none() && self.shift.is_none() && !self.relu
    }
}

/// One image of the op's input: `cin × height × width` values before the stage, and the
/// image's pre-add values (`cin`).
#[derive(Clone, Copy)]
struct Source<'a> {
    data: &'a [f32],
    height: usize,
    width: usize,
    resample: Resample,
    pre: Option<&'a [f32]>,
    /// The instruction set the resampling runs with.
    isa: Isa,
}

/// One image's input and output buffers: separate, or one buffer read (into the padded copy)
/// before it is written (`input` is `None`).
struct ImageIo<'a> {
    input: Option<&'a [f32]>,
    out: &'a mut [f32],
}

impl ImageIo<'_> {
    fn input(&self) -> &[f32] {
        self.input.unwrap_or(self.out)
    }
}

/// All images of a call: see [`DirectConv::forward_in_place`].
enum Images<'a> {
    Separate(&'a [f32], &'a mut [f32]),
    InPlace(&'a mut [f32]),
}

/// One input image's size and its pre-add values.
struct ImageShape<'a> {
    height: usize,
    width: usize,
    pre: Option<&'a [f32]>,
}

/// Output pixels handled per chunk of a row when the input is resampled or quantized.
const CHUNK: usize = 64;

impl Source<'_> {
    /// Pixels `x0 .. x0 + n` (`n ≤ CHUNK`) of row `y` of channel `c` of the convolution's
    /// input before the affine stage: a slice of the data, or the resampled values in `tmp`.
    #[inline(always)]
    fn row<'t>(
        &'t self,
        c: usize,
        y: usize,
        x0: usize,
        n: usize,
        tmp: &'t mut [f32; CHUNK],
    ) -> &'t [f32] {
        let (h, w) = (self.height, self.width);
        let plane = &self.data[c * h * w..(c + 1) * h * w];
        match self.resample {
            Resample::None => &plane[y * w + x0..y * w + x0 + n],
            Resample::MaxPool2 => {
                let r0 = &plane[2 * y * w + 2 * x0..2 * y * w + 2 * (x0 + n)];
                let r1 = &plane[(2 * y + 1) * w + 2 * x0..(2 * y + 1) * w + 2 * (x0 + n)];
                self.isa.maxpool2(r0, r1, &mut tmp[..n]);
                &tmp[..n]
            }
            Resample::Nearest2 => {
                // `x0` is a multiple of CHUNK, so even: pixel x0 + i reads x0 / 2 + i / 2.
                let r = &plane[(y / 2) * w + x0 / 2..(y / 2) * w + (x0 + n).div_ceil(2)];
                self.isa.nearest2(r, &mut tmp[..n]);
                &tmp[..n]
            }
        }
    }
}

/// f32 weights packed for one instruction set.
struct PackedF32 {
    isa: Isa,
    shape: KernelShape,
    /// `[cout / ocb][cin][ks²][ocb]`, output channels padded with zeros to a multiple of `ocb`.
    weights: Vec<f32>,
    /// `[cout / ocb][ocb]`.
    bias: Vec<f32>,
}

/// int8 weights packed for one instruction set, with the calibrated input scale.
struct PackedI8 {
    isa: Isa,
    shape: KernelShape,
    /// Input channels / 4, rounded up.
    groups: usize,
    /// `[cout / ocb][groups][9][ocb][4]`.
    weights: Vec<i8>,
    /// `[cout / ocb][ocb]`: input scale × the output channel's weight scale.
    scale: Vec<f32>,
    bias: Vec<f32>,
    /// f32 activation = u8 code × `input_scale`.
    input_scale: f32,
}

/// The precision the network's direct convolution computes in (f32, or int8 with u8
/// activations, i8 weights and i32 sums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    Int8,
}

/// A stride-1 convolution, 3×3 with padding 1 or 1×1, with its weights packed once, at load
/// time.
pub struct DirectConv {
    cin: usize,
    cout: usize,
    /// Kernel side, 3 or 1; the padding is `ks / 2`.
    ks: usize,
    input: InputStage,
    f32: PackedF32,
    /// The f32 3×3 form in the Winograd domain, used instead of the direct f32 kernel when
    /// present ([`super::winograd`]).
    winograd: Option<Winograd>,
    i8: Option<PackedI8>,
}

impl std::fmt::Debug for DirectConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DirectConv({k}×{k} {}→{}, input scale {} shift {} relu {}, {:?} {} on {:?})",
            self.cin,
            self.cout,
            self.input.scale.is_some(),
            self.input.shift.is_some(),
            self.input.relu,
            self.precision(),
            self.algorithm(),
            self.isa(),
            k = self.ks
        )
    }
}

impl DirectConv {
    /// Packs `weights` (`cout × cin × ks × ks`, PyTorch/ONNX OIHW order) and `bias` (`cout`)
    /// for the f32 kernels of `isa`; `input` is applied to the input first. A 3×3 convolution
    /// with at least [`WINOGRAD_MIN_CHANNELS`] input channels runs in the Winograd domain
    /// when `isa` has SIMD Winograd kernels (measured faster there:
    /// `cargo bench --bench compare -- conv`).
    pub fn new_f32(
        weights: &[f32],
        bias: &[f32],
        dims: (usize, usize, usize),
        input: InputStage,
        isa: Isa,
    ) -> TractResult<DirectConv> {
        let (cin, _, ks) = dims;
        let winograd =
            ks == 3 && isa != Isa::Scalar && isa.has_winograd() && cin >= WINOGRAD_MIN_CHANNELS;
        DirectConv::new_f32_with(weights, bias, dims, input, isa, winograd)
    }

    /// [`DirectConv::new_f32`], with the Winograd form (3×3 only, on a set with Winograd
    /// kernels, the scalar twin included) or the direct kernel as asked.
    pub fn new_f32_with(
        weights: &[f32],
        bias: &[f32],
        (cin, cout, ks): (usize, usize, usize),
        input: InputStage,
        isa: Isa,
        winograd: bool,
    ) -> TractResult<DirectConv> {
        ensure!(cin > 0 && cout > 0, "empty convolution {cin}→{cout}");
        ensure!(
            ks == 1 || ks == 3,
            "{ks}×{ks} convolution: only 1×1 and 3×3 are direct"
        );
        let taps = ks * ks;
        ensure!(
            weights.len() == cout * cin * taps && bias.len() == cout,
            "{ks}×{ks} convolution {cin}→{cout}: {} weights and {} biases",
            weights.len(),
            bias.len()
        );
        for v in [&input.scale, &input.shift].into_iter().flatten() {
            ensure!(
                v.len() == cin,
                "input stage of {} values for {cin} channels",
                v.len()
            );
        }
        ensure!(
            !winograd || (ks == 3 && isa.has_winograd()),
            "no Winograd form for a {ks}×{ks} convolution on {isa:?}"
        );
        let shape = isa.f32_shape();
        let ocb = shape.ocb;
        let blocks = cout.div_ceil(ocb);
        let mut packed = vec![0f32; blocks * cin * taps * ocb];
        let mut pbias = vec![0f32; blocks * ocb];
        for o in 0..cout {
            let (blk, oo) = (o / ocb, o % ocb);
            pbias[o] = bias[o];
            for ic in 0..cin {
                for t in 0..taps {
                    packed[((blk * cin + ic) * taps + t) * ocb + oo] =
                        weights[(o * cin + ic) * taps + t];
                }
            }
        }
        Ok(DirectConv {
            cin,
            cout,
            ks,
            input,
            f32: PackedF32 {
                isa,
                shape,
                weights: packed,
                bias: pbias,
            },
            winograd: winograd.then(|| Winograd::new(weights, bias, (cin, cout), isa)),
            i8: None,
        })
    }

    /// Adds the int8 form (3×3 only): weights quantized per output channel (scale =
    /// max |w| / 127, as `models/quantize.py`, so an int8 model's weights come back exactly),
    /// activations as u8 codes of `input_scale`. Needs a ReLU in the input stage (u8 codes
    /// have no negative values).
    pub fn with_int8(
        mut self,
        weights: &[f32],
        input_scale: f32,
        isa: Isa,
    ) -> TractResult<DirectConv> {
        ensure!(self.ks == 3, "int8 is for 3×3 convolutions");
        ensure!(self.input.relu, "int8 needs a non-negative (ReLU) input");
        ensure!(
            input_scale.is_finite() && input_scale > 0.0,
            "int8 input scale {input_scale} is not a positive number"
        );
        let (cin, cout) = (self.cin, self.cout);
        ensure!(weights.len() == cout * cin * 9);
        let shape = isa.i8_shape();
        let ocb = shape.ocb;
        let blocks = cout.div_ceil(ocb);
        let groups = cin.div_ceil(4);
        let mut packed = vec![0i8; blocks * groups * 9 * ocb * 4];
        let mut scale = vec![0f32; blocks * ocb];
        let mut bias = vec![0f32; blocks * ocb];
        for o in 0..cout {
            let w = &weights[o * cin * 9..(o + 1) * cin * 9];
            let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let ws = if max > 0.0 { max / I8_MAX } else { 1.0 };
            let (blk, oo) = (o / ocb, o % ocb);
            scale[o] = ws * input_scale;
            // The f32 biases are packed by output channel, padded at the end only.
            bias[o] = self.f32.bias[o];
            for ic in 0..cin {
                let (g, c) = (ic / 4, ic % 4);
                for t in 0..9 {
                    let q = (w[ic * 9 + t] / ws).round().clamp(-I8_MAX, I8_MAX) as i8;
                    packed[((((blk * groups + g) * 9) + t) * ocb + oo) * 4 + c] = q;
                }
            }
        }
        self.i8 = Some(PackedI8 {
            isa,
            shape,
            groups,
            weights: packed,
            scale,
            bias,
            input_scale,
        });
        Ok(self)
    }

    /// The precision [`DirectConv::forward`] computes in.
    pub fn precision(&self) -> Precision {
        if self.i8.is_some() {
            Precision::Int8
        } else {
            Precision::F32
        }
    }

    /// How [`DirectConv::forward`] convolves: `"direct"`, or `"winograd"` (f32 3×3 in the
    /// Winograd domain).
    pub fn algorithm(&self) -> &'static str {
        if self.i8.is_none() && self.winograd.is_some() {
            "winograd"
        } else {
            "direct"
        }
    }

    /// The instruction set of the kernel [`DirectConv::forward`] runs.
    pub fn isa(&self) -> Isa {
        match &self.i8 {
            Some(q) => q.isa,
            None => self.f32.isa,
        }
    }

    /// Output channels (`cout`).
    #[cfg(test)]
    pub fn output_channels(&self) -> usize {
        self.cout
    }

    /// The output size (`n × cout × height × width`) for an input of `n × cin × in_height ×
    /// in_width` (they differ when the input stage resamples).
    pub fn output_dims(&self, in_height: usize, in_width: usize) -> (usize, usize) {
        self.input.resample.dims(in_height, in_width)
    }

    /// Convolves `stage(input)` (`input`: `n × cin × in_height × in_width`) into `out`
    /// (`n × cout × height × width`, see [`DirectConv::output_dims`]), on the threads of
    /// `executor`. `pre` (`n × cin`) is the stage's pre-add when it has one; with a
    /// `residual` of the output's shape, `out` is `convolution + residual`.
    pub fn forward(
        &self,
        input: &[f32],
        (n, in_height, in_width): (usize, usize, usize),
        (pre, residual): (Option<&[f32]>, Option<&[f32]>),
        out: &mut [f32],
        executor: &Executor,
    ) -> TractResult<()> {
        self.forward_images(
            Images::Separate(input, out),
            (n, in_height, in_width),
            (pre, residual),
            executor,
        )
    }

    /// [`DirectConv::forward`] with the output written over its own input: `data` holds the
    /// `n × cin × height × width` input and receives the `n × cout × height' × width'`
    /// output, which must have the same length (`cin == cout`, no resampling). Each image is
    /// copied into the padded buffer before any of its outputs is written, so the input is
    /// no longer needed then; this saves tract an output tensor per layer (a fresh one means
    /// page faults on every run: the allocator returns freed images to the system).
    pub fn forward_in_place(
        &self,
        data: &mut [f32],
        (n, in_height, in_width): (usize, usize, usize),
        (pre, residual): (Option<&[f32]>, Option<&[f32]>),
        executor: &Executor,
    ) -> TractResult<()> {
        self.forward_images(
            Images::InPlace(data),
            (n, in_height, in_width),
            (pre, residual),
            executor,
        )
    }

    fn forward_images(
        &self,
        mut images: Images,
        (n, in_height, in_width): (usize, usize, usize),
        (pre, residual): (Option<&[f32]>, Option<&[f32]>),
        executor: &Executor,
    ) -> TractResult<()> {
        let (cin, cout) = (self.cin, self.cout);
        let (height, width) = self.output_dims(in_height, in_width);
        let (hw, in_hw) = (height * width, in_height * in_width);
        let (in_len, out_len) = match &images {
            Images::Separate(input, out) => (input.len(), out.len()),
            Images::InPlace(data) => (data.len(), data.len()),
        };
        ensure!(
            in_len == n * cin * in_hw && out_len == n * cout * hw,
            "convolution {cin}→{cout} on {n}×{in_height}×{in_width}: {in_len} inputs, {out_len} outputs{}",
            if matches!(images, Images::InPlace(_)) {
                " (in place)"
            } else {
                ""
            }
        );
        ensure!(
            pre.map(|p| p.len()) == self.input.pre_add.then_some(n * cin),
            "convolution {cin}→{cout}: {} pre-add values for a stage that {} them",
            pre.map_or(0, |p| p.len()),
            if self.input.pre_add {
                "needs"
            } else {
                "has none of"
            }
        );
        ensure!(
            residual.is_none_or(|r| r.len() == out_len),
            "convolution {cin}→{cout}: residual of {} values for {out_len} outputs",
            residual.map_or(0, |r| r.len())
        );
        if hw == 0 {
            return Ok(());
        }
        for b in 0..n {
            let image = b * cout * hw..(b + 1) * cout * hw;
            let io = match &mut images {
                Images::Separate(input, out) => ImageIo {
                    input: Some(&input[b * cin * in_hw..(b + 1) * cin * in_hw]),
                    out: &mut out[image.clone()],
                },
                // Same length, so the same range holds this image's input and output.
                Images::InPlace(data) => ImageIo {
                    input: None,
                    out: &mut data[image.clone()],
                },
            };
            let shape = ImageShape {
                height: in_height,
                width: in_width,
                pre: pre.map(|p| &p[b * cin..(b + 1) * cin]),
            };
            let res = residual.map(|r| &r[image.clone()]);
            match (&self.i8, &self.winograd) {
                (Some(q), _) => self.forward_i8(q, shape, height, width, res, io, executor),
                (None, Some(wg)) => {
                    self.forward_winograd(wg, shape, (height, width), res, io, executor)
                }
                (None, None) => self.forward_f32(shape, height, width, res, io, executor),
            }
        }
        Ok(())
    }

    /// The input image of `io` as the convolution reads it.
    fn source<'a>(&self, shape: &ImageShape<'a>, io: &'a ImageIo) -> Source<'a> {
        Source {
            data: io.input(),
            height: shape.height,
            width: shape.width,
            resample: self.input.resample,
            pre: shape.pre,
            isa: self.isa(),
        }
    }

    fn forward_f32(
        &self,
        shape: ImageShape,
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
        io: ImageIo,
        ex: &Executor,
    ) {
        let p = &self.f32;
        let geo = Geometry::new(height, width, self.ks / 2, p.shape);
        PADDED_F32.with_borrow_mut(|buffer| {
            let padded = geo.pad_f32(
                &self.source(&shape, &io),
                self.cin,
                &self.input,
                p.isa,
                buffer,
                ex,
            );
            let ocb = p.shape.ocb;
            let wlen = self.cin * self.ks * self.ks * ocb;
            self.run_blocks(&geo, ocb, (residual, io.out), ex, &|blk, spans, planes| {
                let block = F32Block {
                    input: padded,
                    plane: geo.plane,
                    pw: geo.pw,
                    cin: self.cin,
                    ks: self.ks,
                    weights: &p.weights[blk * wlen..(blk + 1) * wlen],
                    bias: &p.bias[blk * ocb..(blk + 1) * ocb],
                };
                // SAFETY: `p.isa` came from `Isa::available_f32` (see `graph`), the padded
                // buffer has `Geometry`'s layout for this kernel shape, and `run_blocks`
                // hands each unit's spans and planes to that unit only.
                unsafe { p.isa.conv_f32(&block, spans, planes) }
            });
        });
    }

    fn forward_winograd(
        &self,
        wg: &Winograd,
        shape: ImageShape,
        (height, width): (usize, usize),
        residual: Option<&[f32]>,
        io: ImageIo,
        ex: &Executor,
    ) {
        let tiles = Tiles::new(height, width, self.cin);
        let geo = Geometry::with_rows(height, width, tiles.pw, tiles.rows, INPUT_SLACK);
        PADDED_F32.with_borrow_mut(|buffer| {
            let padded = geo.pad_f32(
                &self.source(&shape, &io),
                self.cin,
                &self.input,
                wg.isa,
                buffer,
                ex,
            );
            let dst = io.out;
            let shared = SharedPlanes {
                out: dst.as_mut_ptr(),
                residual: residual.map_or(std::ptr::null(), |r| r.as_ptr()),
            };
            let planes = |o: usize, y0: usize, rows: usize| {
                let len = rows * width;
                // SAFETY: rows `y0 .. y0 + rows ≤ height` of plane `o < cout` are inside the
                // output (and the residual, which has its length), and `Winograd::run_unit`
                // asks for the rows of its own unit only, which no other unit touches.
                unsafe {
                    let (out, res) = shared.at(o * height * width + y0 * width);
                    let res = (!res.is_null()).then(|| std::slice::from_raw_parts(res, len));
                    (std::slice::from_raw_parts_mut(out, len), res)
                }
            };
            run_units(ex, wg.units(&tiles), &|unit| {
                wg.run_unit(unit, &tiles, padded, &planes)
            });
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_i8(
        &self,
        q: &PackedI8,
        shape: ImageShape,
        height: usize,
        width: usize,
        residual: Option<&[f32]>,
        io: ImageIo,
        ex: &Executor,
    ) {
        let geo = Geometry::new(height, width, 1, q.shape);
        PADDED_U8.with_borrow_mut(|buffer| {
            let stage = (q.isa, 1.0 / q.input_scale);
            let src = self.source(&shape, &io);
            let padded = geo.pad_u8(&src, (self.cin, q.groups), &self.input, stage, buffer, ex);
            let ocb = q.shape.ocb;
            let wlen = q.groups * 9 * ocb * 4;
            self.run_blocks(&geo, ocb, (residual, io.out), ex, &|blk, spans, planes| {
                let block = I8Block {
                    input: padded,
                    plane: geo.plane,
                    pw: geo.pw,
                    groups: q.groups,
                    weights: &q.weights[blk * wlen..(blk + 1) * wlen],
                    scale: &q.scale[blk * ocb..(blk + 1) * ocb],
                    bias: &q.bias[blk * ocb..(blk + 1) * ocb],
                };
                // SAFETY: as in `forward_f32`, for `Isa::available_i8` and the four-channel
                // u8 layout `pad_u8` wrote.
                unsafe { q.isa.conv_i8(&block, spans, planes) }
            });
        });
    }

    /// Cuts the output (`cout` planes of `geo`, plus the residual when there is one) into
    /// units of rows × output-channel blocks of `ocb`, spreads them over the executor's
    /// threads, and calls `kernel(block, spans, planes)` for each group of output vectors.
    fn run_blocks(
        &self,
        geo: &Geometry,
        ocb: usize,
        (residual, dst): (Option<&[f32]>, &mut [f32]),
        ex: &Executor,
        kernel: &(dyn Fn(usize, &[Span], OutPlanes) + Sync),
    ) {
        let shared = SharedPlanes {
            out: dst.as_mut_ptr(),
            residual: residual.map_or(std::ptr::null(), |r| r.as_ptr()),
        };
        let blocks = self.cout.div_ceil(ocb);
        let run_unit = |unit: usize| {
            let ((y0, y1), unit_blocks) = geo.unit(unit, blocks);
            for blk in unit_blocks {
                // SAFETY: `blk · ocb < cout`, so this is inside the output image (and the
                // residual, which has the output's length).
                let (out, residual) = unsafe { shared.at(blk * ocb * geo.hw) };
                let planes = OutPlanes {
                    out,
                    residual,
                    out_plane: geo.hw,
                    oc_valid: (self.cout - blk * ocb).min(ocb),
                };
                geo.for_span_groups(y0, y1, |spans| kernel(blk, spans, planes));
            }
        };
        run_units(ex, geo.units(blocks), &run_unit);
    }
}

thread_local! {
    /// The padded input of the convolution running on this thread (reused, so that the
    /// library allocates nothing per layer once it has seen the largest one).
    static PADDED_F32: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PADDED_U8: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The output image, written by several threads at disjoint rows, and the residual image
/// they read (null when there is none).
#[derive(Clone, Copy)]
struct SharedPlanes {
    out: *mut f32,
    residual: *const f32,
}

// SAFETY: each unit of work writes only the output rows and channels it owns
// (`Geometry::unit`), so sharing the pointers between the executor's threads creates no
// overlapping writes, and the residual is only read; the borrows they come from outlive
// `run_units`, which joins every thread before returning.
unsafe impl Send for SharedPlanes {}
unsafe impl Sync for SharedPlanes {}

impl SharedPlanes {
    /// The output and residual pointers at `offset` (a null residual stays null).
    ///
    /// # Safety
    /// `offset` is inside the output image.
    unsafe fn at(self, offset: usize) -> (*mut f32, *const f32) {
        // SAFETY: forwarded; the residual, when there is one, has the output's length.
        unsafe {
            let residual = if self.residual.is_null() {
                self.residual
            } else {
                self.residual.add(offset)
            };
            (self.out.add(offset), residual)
        }
    }
}

/// Runs `units` units of work on the executor's threads (in order on one thread otherwise).
fn run_units(ex: &Executor, units: usize, run: &(dyn Fn(usize) + Sync)) {
    match ex {
        Executor::MultiThread(pool) if units > 1 => {
            pool.install(|| (0..units).into_par_iter().for_each(run))
        }
        Executor::RayonGlobal if units > 1 => (0..units).into_par_iter().for_each(run),
        _ => (0..units).for_each(run),
    }
}

/// Runs `f(index, chunk)` on each `len`-long chunk of `data`, on the executor's threads.
fn for_planes<T: Send>(
    ex: &Executor,
    data: &mut [T],
    len: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    match ex {
        Executor::MultiThread(pool) => pool.install(|| {
            data.par_chunks_mut(len)
                .enumerate()
                .for_each(|(i, c)| f(i, c))
        }),
        Executor::RayonGlobal => data
            .par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| f(i, c)),
        _ => data.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c)),
    }
}

/// The padded layout of one image for one kernel shape.
struct Geometry {
    height: usize,
    width: usize,
    hw: usize,
    /// Zero border on each side (1 for 3×3, 0 for 1×1).
    pad: usize,
    lanes: usize,
    max_spans: usize,
    /// Vectors per output row.
    vectors: usize,
    /// Padded row length (pixels), `vectors · lanes + 2 · pad`: every full vector of every
    /// tap stays inside the plane.
    pw: usize,
    /// Padded plane length (pixels): `(height + 2 · pad) · pw`.
    plane: usize,
    /// Values after the last plane that the kernel may read (their values do not matter).
    slack: usize,
}

impl Geometry {
    fn new(height: usize, width: usize, pad: usize, shape: KernelShape) -> Geometry {
        let vectors = width.div_ceil(shape.lanes);
        let pw = vectors * shape.lanes + 2 * pad;
        Geometry {
            height,
            width,
            hw: height * width,
            pad,
            lanes: shape.lanes,
            max_spans: shape.max_spans,
            vectors,
            pw,
            plane: (height + 2 * pad) * pw,
            slack: 0,
        }
    }

    /// The padded layout of a convolution's input (border 1) with rows of `pw` values and
    /// `rows` rows: Winograd tiles read past the direct kernel's layout.
    fn with_rows(height: usize, width: usize, pw: usize, rows: usize, slack: usize) -> Geometry {
        debug_assert!(pw >= width + 2 && rows >= height + 2);
        Geometry {
            height,
            width,
            hw: height * width,
            pad: 1,
            lanes: 1,
            max_spans: 1,
            vectors: width,
            pw,
            plane: rows * pw,
            slack,
        }
    }

    /// Output-channel groups a row chunk is cut into, for `blocks` channel blocks.
    fn channel_groups(&self, blocks: usize) -> usize {
        MIN_UNITS
            .div_ceil(self.height.div_ceil(ROWS_PER_UNIT))
            .clamp(1, blocks)
    }

    /// Units of work for `blocks` output-channel blocks.
    fn units(&self, blocks: usize) -> usize {
        self.height.div_ceil(ROWS_PER_UNIT) * self.channel_groups(blocks)
    }

    /// The output rows and channel blocks of unit `unit`: units are disjoint and cover every
    /// row of every block.
    fn unit(&self, unit: usize, blocks: usize) -> ((usize, usize), std::ops::Range<usize>) {
        let groups = self.channel_groups(blocks);
        let (chunk, group) = (unit / groups, unit % groups);
        let y0 = chunk * ROWS_PER_UNIT;
        let per = blocks.div_ceil(groups);
        let b0 = (group * per).min(blocks);
        (
            (y0, (y0 + ROWS_PER_UNIT).min(self.height)),
            b0..(b0 + per).min(blocks),
        )
    }

    /// Calls `f` with the output vectors of rows `y0..y1` in groups of at most `max_spans`
    /// (a group may run from the end of one row into the next).
    fn for_span_groups(&self, y0: usize, y1: usize, mut f: impl FnMut(&[Span])) {
        let mut group = [Span::default(); 4];
        let max = self.max_spans.min(group.len());
        let mut len = 0;
        for y in y0..y1 {
            for v in 0..self.vectors {
                let x = v * self.lanes;
                group[len] = Span {
                    input: y * self.pw + x,
                    output: y * self.width + x,
                    lanes: self.lanes.min(self.width - x),
                };
                len += 1;
                if len == max {
                    f(&group[..len]);
                    len = 0;
                }
            }
        }
        if len > 0 {
            f(&group[..len]);
        }
    }

    /// Writes one padded plane row by row: `row(y, dst)` fills the `width` (× `depth`) data
    /// values of image row `y`; the borders are zeroed.
    #[inline(always)]
    fn fill_plane<T: Copy + Default>(
        &self,
        plane: &mut [T],
        depth: usize,
        mut row: impl FnMut(usize, &mut [T]),
    ) {
        let (p, pw) = (self.pad, self.pw * depth);
        let zero = T::default();
        plane[..p * pw].fill(zero);
        plane[(self.height + p) * pw..].fill(zero);
        for y in 0..self.height {
            let r = &mut plane[(y + p) * pw..(y + p + 1) * pw];
            r[..p * depth].fill(zero);
            r[(p + self.width) * depth..].fill(zero);
            row(y, &mut r[p * depth..(p + self.width) * depth]);
        }
    }

    /// Copies `stage(src)` into the padded planes (`cin` planes of this layout) held in
    /// `buffer`, grown as needed, and returns them.
    fn pad_f32<'a>(
        &self,
        src: &Source,
        cin: usize,
        stage: &InputStage,
        isa: Isa,
        buffer: &'a mut Vec<f32>,
        ex: &Executor,
    ) -> &'a [f32] {
        let w = self.width;
        if buffer.len() < cin * self.plane + self.slack {
            buffer.resize(cin * self.plane + self.slack, 0.0);
        }
        let padded = &mut buffer[..cin * self.plane];
        for_planes(ex, padded, self.plane, &|c, plane| {
            let (pre, s, t) = stage.affine(src.pre, c);
            let mut tmp = [0f32; CHUNK];
            self.fill_plane(plane, 1, |y, dst| {
                for x0 in (0..w).step_by(CHUNK) {
                    let n = (w - x0).min(CHUNK);
                    let row = src.row(c, y, x0, n, &mut tmp);
                    let d = &mut dst[x0..x0 + n];
                    if stage.is_identity() {
                        d.copy_from_slice(row);
                    } else {
                        isa.stage_row((pre, s, t), stage.relu, row, d);
                    }
                }
            });
        });
        &buffer[..cin * self.plane + self.slack]
    }

    /// Quantizes `stage(src)` (non-negative after the stage's ReLU) to u8 codes
    /// `round(x · inv_scale)` (saturating at 255, NaN to 0) into the padded planes held in
    /// `buffer`: `groups` planes of this layout, each pixel four consecutive channels, zero
    /// channels past `cin`.
    fn pad_u8<'a>(
        &self,
        src: &Source,
        (cin, groups): (usize, usize),
        stage: &InputStage,
        (isa, inv_scale): (Isa, f32),
        buffer: &'a mut Vec<u8>,
        ex: &Executor,
    ) -> &'a [u8] {
        let w = self.width;
        let len = groups * self.plane * 4;
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        let padded = &mut buffer[..len];
        for_planes(ex, padded, self.plane * 4, &|g, plane| {
            // Channels past `cin` read channel 4g through a stage that zeroes it.
            let channel = |c: usize| if 4 * g + c < cin { 4 * g + c } else { 4 * g };
            let affine = |c: usize| {
                if 4 * g + c < cin {
                    stage.affine(src.pre, 4 * g + c)
                } else {
                    (0.0, 0.0, 0.0)
                }
            };
            let stages = [affine(0), affine(1), affine(2), affine(3)];
            let mut tmp = [[0f32; CHUNK]; 4];
            self.fill_plane(plane, 4, |y, dst| {
                for x0 in (0..w).step_by(CHUNK) {
                    let n = (w - x0).min(CHUNK);
                    let [t0, t1, t2, t3] = &mut tmp;
                    let rows = [
                        src.row(channel(0), y, x0, n, t0),
                        src.row(channel(1), y, x0, n, t1),
                        src.row(channel(2), y, x0, n, t2),
                        src.row(channel(3), y, x0, n, t3),
                    ];
                    isa.quantize_rows(rows, stages, inv_scale, &mut dst[4 * x0..4 * (x0 + n)]);
                }
            });
        });
        padded
    }
}

/// The tract op around a [`DirectConv`]: inputs the N×C×H×W f32 data, then the stage's
/// pre-add (N×C×1×1) when it has one, then the tensor the convolution is added to (a
/// residual connection) when `residual`; one output.
#[derive(Debug, Clone)]
pub struct DirectConvOp {
    pub conv: Arc<DirectConv>,
    pub residual: bool,
    /// The plan's recycled images: outputs come from it, inputs read for the last time go
    /// back to it.
    pub stash: Arc<TensorStash>,
}

impl PartialEq for DirectConvOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.conv, &other.conv) && self.residual == other.residual
    }
}

impl Eq for DirectConvOp {}

impl Op for DirectConvOp {
    fn name(&self) -> StaticName {
        "CellposeDirectConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}, residual {}", self.conv, self.residual)])
    }

    op_as_typed_op!();
}

/// An f32 input's values.
fn slice(t: &TValue) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

impl DirectConvOp {
    /// The pre-add values and the residual among the inputs after the data input.
    #[allow(clippy::type_complexity)]
    fn extras<'a>(
        &self,
        rest: &'a [TValue],
    ) -> TractResult<(Option<&'a [f32]>, Option<&'a [f32]>)> {
        let pre = match self.conv.input.pre_add {
            true => Some(slice(&rest[0])?),
            false => None,
        };
        let residual = match self.residual {
            true => Some(slice(&rest[rest.len() - 1])?),
            false => None,
        };
        Ok((pre, residual))
    }
}

impl EvalOp for DirectConvOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let conv = &self.conv;
        let shape = inputs[0].shape().to_vec();
        ensure!(
            shape.len() == 4 && shape[1] == conv.cin,
            "convolution {}→{} given an input of shape {shape:?}",
            conv.cin,
            conv.cout
        );
        let expected = 1 + conv.input.pre_add as usize + self.residual as usize;
        ensure!(
            inputs.len() == expected,
            "convolution given {} inputs, expected {expected}",
            inputs.len()
        );
        let (n, hs, ws) = (shape[0], shape[2], shape[3]);
        let (h, w) = conv.output_dims(hs, ws);
        let out_shape = [n, conv.cout, h, w];
        let ex = tract_linalg::multithread::current_tract_executor();
        // When this op holds the only reference to its input (tract has flushed it: no
        // other node reads it) and the output has the input's shape, the output is written
        // over it; otherwise into a tensor from the stash.
        if shape == out_shape && inputs[0].is_exclusive() {
            let mut data = Arc::try_unwrap(inputs.remove(0).into_arc_tensor())
                .map_err(|_| format_err!("convolution input shared after all"))?;
            {
                let extras = self.extras(&inputs)?;
                let mut view = data.try_as_plain_ram_mut()?;
                let buf = view.as_slice_mut::<f32>()?;
                conv.forward_in_place(buf, (n, hs, ws), extras, &ex)?;
            }
            inputs.into_iter().for_each(|v| self.stash.put(v));
            return Ok(tvec!(data.into_tvalue()));
        }
        let src = slice(&inputs[0])?;
        let extras = self.extras(&inputs[1..])?;
        // `forward` writes every value of the output (every output channel of every row of
        // every image), as `take` asks.
        let mut out = self.stash.take(&out_shape)?;
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let dst = view.as_slice_mut::<f32>()?;
            conv.forward(src, (n, hs, ws), extras, dst, &ex)?;
        }
        inputs.into_iter().for_each(|v| self.stash.put(v));
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DirectConvOp {
    as_op!();

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let s = &inputs[0].shape;
        ensure!(s.rank() == 4, "convolution on a rank-{} input", s.rank());
        let (h, w) = match self.conv.input.resample {
            Resample::None => (s[2].clone(), s[3].clone()),
            Resample::MaxPool2 => (s[2].clone() / 2, s[3].clone() / 2),
            Resample::Nearest2 => (s[2].clone() * 2, s[3].clone() * 2),
        };
        Ok(tvec!(f32::fact([
            s[0].clone(),
            self.conv.cout.to_dim(),
            h,
            w
        ])))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let out = self.output_facts(inputs)?;
        let s = &out[0].shape;
        let points = s[0].clone() * s[2].clone() * s[3].clone();
        let c = &self.conv;
        let dt = match c.precision() {
            Precision::F32 => f32::datum_type(),
            Precision::Int8 => i8::datum_type(),
        };
        Ok(tvec!((
            Cost::FMA(dt),
            points * (c.cin * c.cout * c.ks * c.ks)
        )))
    }
}
