//! The network: tract runs the ONNX graph, with our convolution in it.
//!
//! The folder, in the order a tile goes through it:
//! - [`tiling`]: 224-px tiles of the padded image, tapered blending, test-time flips;
//! - this file: runs the tiles through the tract plan (reference `core.run_net`) and sums
//!   the tiles' style vectors;
//! - `graph`: the model patch applied before tract optimises the plan
//!   ([`crate::model::Model`]): every 3×3 and 1×1 convolution becomes our op, with the batch
//!   norm, ReLU, style addition, max pooling or upsampling in front of it and the residual
//!   addition after it folded in, so that tract runs no image-sized op of the U-Net itself;
//! - `conv`: that op, a direct convolution on a zero-padded copy of its input, f32 or int8
//!   (u8 activations over calibrated scales × i8 weights, i32 sums), split over the
//!   executor's threads by rows and output channels;
//! - `stash`: the images the op makes, kept per plan and reused by later layers and runs
//!   instead of being reallocated (and page-faulted in again) on every run;
//! - `winograd`: the f32 3×3 convolutions from 32 input channels on, in the Winograd domain
//!   (F(2×2, 3×3): 2.25× fewer multiplies than direct), on the same padded copy;
//! - `kernels`: its inner loops, one file per instruction set (AVX-512 with VNNI, AVX2 + FMA,
//!   NEON) beside the scalar twin they are tested against; the fastest the CPU has is chosen
//!   at run time ([`Isa::best_f32`], [`Isa::best_i8`]) and logged when a plan is built.
//!
//! [`crate::model::Convolution`] selects tract's own convolution instead (for comparison) or
//! f32 for an int8 file.

use std::sync::atomic::{AtomicUsize, Ordering};

use tract_onnx::prelude::*;

use crate::error::ModelError;
use crate::model::Model;
use tiling::{TileBlender, TileGrid};

pub(crate) mod conv;
pub(crate) mod graph;
pub(crate) mod kernels;
pub(crate) mod stash;
pub(crate) mod tiling;
pub(crate) mod winograd;

#[cfg(feature = "bench-hooks")]
pub use conv::Precision;
pub use kernels::Isa;

/// Channels of the network output: dY, dX, cell-probability logit.
pub const OUT_CHANNELS: usize = 3;
/// Channels of the network input.
pub const IN_CHANNELS: usize = 2;

/// Network runs (tract plan executions) in progress in this process.
static RUNS_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

#[cfg(feature = "bench-hooks")]
/// How many tract plan executions are running right now, in the whole process.
///
/// Allocation-counting tests and benchmarks read it from their global allocator to tell the
/// heap use of tract (which allocates its intermediate tensors on every run) from the heap use
/// of this library's own code, which must be zero per frame once a segmenter has seen a frame
/// of that size. Reading it does not allocate.
#[doc(hidden)]
pub fn runs_in_progress() -> usize {
    RUNS_IN_PROGRESS.load(Ordering::SeqCst)
}

/// Marks a tract run for [`runs_in_progress`]; the count drops again even on unwinding.
struct RunMarker;

impl RunMarker {
    fn start() -> RunMarker {
        RUNS_IN_PROGRESS.fetch_add(1, Ordering::SeqCst);
        RunMarker
    }
}

impl Drop for RunMarker {
    fn drop(&mut self) {
        RUNS_IN_PROGRESS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Buffers reused from frame to frame.
#[derive(Default)]
pub struct NetworkScratch {
    batch: Vec<f32>,
    blender: TileBlender,
    /// The tiling of the current image, rebuilt in place for each run.
    grid: TileGrid,
    /// Network outputs of one round of tiles run side by side (see [`run_grid`]), one a thread.
    tile_outputs: Vec<Option<TVec<TValue>>>,
}

/// Pads `img` (`channels × height × width`, normalised and rescaled; channels beyond
/// `channels`, up to the network's two, are zero: a gray image has no nucleus channel) as
/// the reference does
/// (`preprocess::pad_for`), runs the tiles over it, and writes the `3 × height × width`
/// blended outputs of the image (its padding cut off) into `out` and the normalised style
/// into `style` (reference `core.run_net` for one image).
///
/// The padding is virtual: tiles read zeros outside the image, and the blended outputs are
/// accumulated for the image's pixels only, so the memory beyond the input and `out` is the
/// network's own per tile.
#[allow(clippy::too_many_arguments)]
pub fn run_padded(
    model: &Model,
    img: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    augment: bool,
    tile_overlap: f32,
    batch_size: usize,
    executor: Option<&tract_linalg::multithread::Executor>,
    scratch: &mut NetworkScratch,
    out: &mut Vec<f32>,
    style: &mut Vec<f32>,
) -> Result<(), ModelError> {
    let (py0, py1) = crate::preprocess::pad_for(height);
    let (px0, px1) = crate::preprocess::pad_for(width);
    let (ph, pw) = (height + py0 + py1, width + px0 + px1);
    // Rebuilt in place: cheap arithmetic, and no allocation once the corner lists have held
    // the most tiles seen (a cache by shape would miss on every automatic-diameter scale).
    let mut grid = std::mem::take(&mut scratch.grid);
    // Augmentation tiles cover at least one tile: the grid's canvas is then larger than the
    // padded image, and zero there too.
    grid.rebuild(ph, pw, augment, tile_overlap);
    let image = tiling::Region {
        y0: py0,
        x0: px0,
        height,
        width,
    };
    let result = run_grid(
        model, img, channels, image, &grid, batch_size, executor, scratch, out, style,
    );
    scratch.grid = grid;
    result
}

/// The tiles of `grid` over `img` (`channels × image.height × image.width`, placed at
/// `image` in the grid's zero canvas): outputs of the `image` region into `out`, style into
/// `style`.
#[allow(clippy::too_many_arguments)]
fn run_grid(
    model: &Model,
    img: &[f32],
    channels: usize,
    image: tiling::Region,
    grid: &TileGrid,
    batch_size: usize,
    executor: Option<&tract_linalg::multithread::Executor>,
    scratch: &mut NetworkScratch,
    out: &mut Vec<f32>,
    style: &mut Vec<f32>,
) -> Result<(), ModelError> {
    let src = img;
    scratch.blender.reset(grid, OUT_CHANNELS, image, out);
    let (ly, lx) = (grid.ly, grid.lx);
    let tile_in = IN_CHANNELS * ly * lx;
    let style_len = model.info().style_size;
    style.clear();
    style.resize(style_len, 0.0);
    let ntiles = grid.len();
    // With batch 1 and a pool of threads, tiles run side by side, one a thread, each with
    // its convolutions on that thread alone: per tile that is no faster, but nothing waits
    // on the other thread (a convolution split over two threads waits at every layer). The
    // tiles that do not fill a round run one after the other, split over the threads.
    // Outputs are blended and styles summed in tile order, so the result is the same.
    let pool = match executor {
        Some(tract_linalg::multithread::Executor::MultiThread(pool)) if batch_size == 1 => {
            Some(pool)
        }
        _ => None,
    };
    let side_by_side = pool.map_or(0, |p| {
        let t = p.current_num_threads().max(1);
        if t > 1 { ntiles - ntiles % t } else { 0 }
    });
    if let Some(pool) = pool.filter(|_| side_by_side > 0) {
        // In rounds of one tile a thread: a round's outputs are blended before the next
        // round runs, so that only `threads` tile outputs are alive at a time (holding every
        // tile's output until the end cost 0.6 MB a tile, 49 MB for a 2048² frame).
        let round = pool.current_num_threads().max(1);
        let plan = model.plan(1, ly, lx)?;
        scratch.tile_outputs.clear();
        scratch.tile_outputs.resize_with(round, || None);
        for k0 in (0..side_by_side).step_by(round) {
            let _marker = RunMarker::start();
            let results: Result<(), ModelError> = pool.install(|| {
                use rayon::prelude::*;
                scratch
                    .tile_outputs
                    .par_iter_mut()
                    .enumerate()
                    .try_for_each(|(b, slot)| {
                        // The input tensor belongs to tract's run, as in the batched path.
                        let mut input = Tensor::zero::<f32>(&[1, IN_CHANNELS, ly, lx])
                            .map_err(|e| ModelError::Run(e.to_string()))?;
                        {
                            let mut view = input
                                .try_as_plain_ram_mut()
                                .map_err(|e| ModelError::Run(e.to_string()))?;
                            let buf = view
                                .as_slice_mut::<f32>()
                                .map_err(|e| ModelError::Run(e.to_string()))?;
                            grid.extract(k0 + b, src, image, channels, buf);
                        }
                        let single = tract_linalg::multithread::Executor::SingleThread;
                        let out =
                            tract_linalg::multithread::multithread_tract_scope(single, || {
                                plan.run(tvec!(input.into()))
                            })
                            .map_err(|e| ModelError::Run(format!("{e:#}")))?;
                        *slot = Some(out);
                        Ok(())
                    })
            });
            results?;
            for b in 0..round {
                let outputs = scratch.tile_outputs[b].take().expect("every tile ran");
                accumulate_tile(grid, k0 + b, 1, &outputs, style, &scratch.blender, out)?;
            }
        }
    }
    let mut k0 = side_by_side;
    while k0 < ntiles {
        let n = batch_size.min(ntiles - k0);
        scratch.batch.resize(n * tile_in, 0.0);
        for b in 0..n {
            let tile = &mut scratch.batch[b * tile_in..(b + 1) * tile_in];
            grid.extract(k0 + b, src, image, channels, tile);
        }
        // Everything from the plan lookup to the end of this batch belongs to tract: its
        // input tensor, its intermediates and its output tensors are allocated per run.
        let _marker = RunMarker::start();
        let plan = model.plan(n, ly, lx)?;
        let input = Tensor::from_shape(&[n, IN_CHANNELS, ly, lx], &scratch.batch)
            .map_err(|e| ModelError::Run(e.to_string()))?;
        let outputs = run_on(executor, || plan.run(tvec!(input.into())))
            .map_err(|e| ModelError::Run(format!("{e:#}")))?;
        accumulate_tile(grid, k0, n, &outputs, style, &scratch.blender, out)?;
        k0 += n;
    }
    let norm = style
        .iter()
        .map(|v| (*v as f64) * (*v as f64))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for v in style.iter_mut() {
            *v = (*v as f64 / norm) as f32;
        }
    }
    scratch.blender.finish(OUT_CHANNELS, out);
    Ok(())
}

/// Blends the outputs of tiles `k0 .. k0 + n` (one network run, batch `n`) into `acc`
/// with `blender`'s weights and adds their styles to `style`, in tile order.
fn accumulate_tile(
    grid: &TileGrid,
    k0: usize,
    n: usize,
    outputs: &TVec<TValue>,
    style: &mut [f32],
    blender: &TileBlender,
    acc: &mut [f32],
) -> Result<(), ModelError> {
    let (ly, lx) = (grid.ly, grid.lx);
    let tile_out = OUT_CHANNELS * ly * lx;
    let style_len = style.len();
    let y = outputs[0]
        .try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>())
        .map_err(|e| ModelError::Run(e.to_string()))?;
    let s = outputs[1]
        .try_as_plain_ram()
        .and_then(|v| v.as_slice::<f32>())
        .map_err(|e| ModelError::Run(e.to_string()))?;
    if y.len() != n * tile_out || s.len() != n * style_len {
        return Err(ModelError::Run(format!(
            "network returned {} and {} values, expected {} and {}",
            y.len(),
            s.len(),
            n * tile_out,
            n * style_len
        )));
    }
    for b in 0..n {
        blender.add(
            grid,
            k0 + b,
            &y[b * tile_out..(b + 1) * tile_out],
            OUT_CHANNELS,
            acc,
        );
    }
    // Tile styles are summed in tile order (fixed, so the result does not depend on threads).
    for b in 0..n {
        for (acc, v) in style.iter_mut().zip(&s[b * style_len..(b + 1) * style_len]) {
            *acc += *v;
        }
    }
    Ok(())
}

#[cfg(feature = "bench-hooks")]
/// The form [`time_convolution`] times.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvForm {
    /// f32, the direct kernel.
    Direct,
    /// f32 in the Winograd domain (on a CPU with Winograd kernels; direct otherwise).
    Winograd,
    /// int8 (on a CPU with int8 kernels; f32 direct otherwise).
    Int8,
}

#[cfg(feature = "bench-hooks")]
/// Times our 3×3 convolution alone (`cin → cout` channels, ReLU input stage, fixed weights,
/// one `side × side` image) `repeats` times on `threads` threads in `form`, and returns the
/// wall time of each run in seconds with what ran: instruction set, precision and
/// algorithm. For benchmarks (GFLOP/s per layer shape and form).
#[doc(hidden)]
pub fn time_convolution(
    (cin, cout): (usize, usize),
    side: usize,
    form: ConvForm,
    threads: usize,
    repeats: usize,
) -> Result<(Vec<f64>, Isa, Precision, &'static str), ModelError> {
    let err = |e: TractError| ModelError::Run(format!("{e:#}"));
    let weights: Vec<f32> = (0..cout * cin * 9)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let bias = vec![0.1; cout];
    let stage = conv::InputStage {
        relu: true,
        ..Default::default()
    };
    let isa = Isa::best_f32();
    let winograd = form == ConvForm::Winograd && isa.has_winograd();
    let mut direct =
        conv::DirectConv::new_f32_with(&weights, &bias, (cin, cout, 3), stage, isa, winograd)
            .map_err(err)?;
    if form == ConvForm::Int8
        && let Some(isa) = Isa::best_i8()
    {
        direct = direct.with_int8(&weights, 1.0 / 255.0, isa).map_err(err)?;
    }
    let input: Vec<f32> = (0..cin * side * side)
        .map(|i| ((i * 104729) % 1000) as f32 / 1000.0)
        .collect();
    let mut out = vec![0f32; cout * side * side];
    let executor = if threads > 1 {
        tract_linalg::multithread::Executor::multithread(threads)
    } else {
        tract_linalg::multithread::Executor::SingleThread
    };
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = std::time::Instant::now();
        direct
            .forward(&input, (1, side, side), (None, None), &mut out, &executor)
            .map_err(err)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok((times, direct.isa(), direct.precision(), direct.algorithm()))
}

/// Runs `run` (a tract plan execution) with `executor`'s threads for the ops that split
/// their work (our convolution, tract's matrix products), or on this thread alone.
///
/// With a pool, the run itself goes onto one of the pool's threads: every convolution then
/// splits its rows from inside the pool, where the running thread takes its own share and
/// wakes one other thread; from outside, each of the ~40 layers would inject its work, wake
/// every pool thread and put this one to sleep until they finish (two thread switches per
/// layer, which cost int8 layers of 0.3–0.6 ms a large part of their time).
fn run_on<R: Send>(
    executor: Option<&tract_linalg::multithread::Executor>,
    run: impl FnOnce() -> R + Send,
) -> R {
    use tract_linalg::multithread::{Executor, multithread_tract_scope};
    match executor {
        Some(ex @ Executor::MultiThread(pool)) => {
            pool.install(|| multithread_tract_scope(ex.clone(), run))
        }
        Some(ex) => multithread_tract_scope(ex.clone(), run),
        None => run(),
    }
}

#[cfg(feature = "bench-hooks")]
/// Runs the network `repeats` times on a `batch × 2 × height × width` input of a fixed
/// pattern and returns the wall time of each run in seconds (the plan is optimised before
/// the first timed run). For benchmarks.
pub fn time_plan(
    model: &Model,
    batch: usize,
    height: usize,
    width: usize,
    threads: usize,
    repeats: usize,
) -> Result<Vec<f64>, ModelError> {
    let plan = model.plan(batch, height, width)?;
    let n = batch * IN_CHANNELS * height * width;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let input = Tensor::from_shape(&[batch, IN_CHANNELS, height, width], &data)
        .map_err(|e| ModelError::Run(e.to_string()))?;
    let executor = (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads));
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = std::time::Instant::now();
        run_on(executor.as_ref(), || plan.run(tvec!(input.clone().into())))
            .map_err(|e| ModelError::Run(format!("{e:#}")))?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(times)
}
