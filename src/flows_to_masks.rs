//! Network outputs → label image (reference `dynamics.compute_masks` followed by
//! `utils.fill_holes_and_remove_small_masks`): dynamics of the pixels above the
//! cell-probability threshold, sinks → labels, flow-error quality control, hole filling,
//! small-mask removal. Usable on its own, e.g. on flows computed elsewhere.

use crate::dynamics::{self, FLOW_SCALE};
use crate::flows::{self, FlowScratch};
use crate::masks::{self, LabelScratch, MaskScratch};
use crate::objects;
use crate::params::Params;
use crate::scratch::reserve_total;

/// Masks the stage removed, by rule (all 0 when nothing was removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DroppedMasks {
    /// Larger than `Params::max_size_fraction` of the image (reference rule: 0.4).
    pub too_large: u32,
    /// Recomputed flows differ from the network's by more than `Params::flow_threshold`.
    pub flow_error: u32,
    /// Smaller than `Params::min_size` pixels (after hole filling).
    pub too_small: u32,
}

impl DroppedMasks {
    pub fn total(&self) -> u32 {
        self.too_large + self.flow_error + self.too_small
    }
}

/// Buffers of the mask stage, reused from frame to frame.
#[derive(Default)]
pub struct MaskFormation {
    moving_y: Vec<u32>,
    moving_x: Vec<u32>,
    moving_idx: Vec<u32>,
    end_y: Vec<u32>,
    end_x: Vec<u32>,
    masked_flow: Vec<f32>,
    mask_scratch: MaskScratch,
    flow_scratch: FlowScratch,
    drop: Vec<bool>,
    label_scratch: LabelScratch,
    diameter_counts: Vec<u64>,
    diameter_radii: Vec<f64>,
    present: Vec<bool>,
    dropped: DroppedMasks,
    /// Grid sizes (pixels) the buffers were reserved for, and the most labels they produce.
    reserved_npix: usize,
    label_bound: usize,
    pool: Option<(usize, rayon::ThreadPool)>,
}

impl MaskFormation {
    pub fn new() -> MaskFormation {
        MaskFormation::default()
    }

    /// Reserves, on the first grid of a size, room for the worst case of every buffer
    /// (every pixel moving, the most seeds a grid can hold), so that later grids of that
    /// size never allocate, whatever they contain.
    fn reserve_for(&mut self, h: usize, w: usize) {
        let npix = h * w;
        if npix <= self.reserved_npix {
            return;
        }
        self.reserved_npix = npix;
        self.label_bound = self.label_bound.max(masks::max_labels(npix));
        for v in [
            &mut self.moving_y,
            &mut self.moving_x,
            &mut self.moving_idx,
            &mut self.end_y,
            &mut self.end_x,
        ] {
            reserve_total(v, npix);
        }
        reserve_total(&mut self.drop, self.label_bound + 1);
        self.mask_scratch.reserve_for(h, w);
        self.flow_scratch.reserve_for(h, w, self.label_bound);
    }

    /// Labels (before hole filling and size filtering) from raw network flows
    /// (`2 × h × w`, dY then dX, not divided by 5) and cell-probability logits.
    /// `threads` > 1 integrates pixels in parallel; the labels do not change.
    #[allow(clippy::too_many_arguments)]
    pub fn raw_labels(
        &mut self,
        flows: &[f32],
        cell_prob: &[f32],
        h: usize,
        w: usize,
        params: &Params,
        niter: u32,
        interp: bool,
        threads: usize,
        labels: &mut [u32],
    ) {
        let mut masked = std::mem::take(&mut self.masked_flow);
        masked.clear();
        masked.extend_from_slice(flows);
        self.raw_labels_in_place(
            &mut masked,
            cell_prob,
            h,
            w,
            params,
            niter,
            interp,
            threads,
            labels,
        );
        self.masked_flow = masked;
    }

    /// [`raw_labels`](Self::raw_labels) without a copy of the flows: `flows` is overwritten
    /// with the flows the dynamics follow (divided by 5 where the cell probability is above
    /// the threshold, 0 elsewhere). For callers that can make the flows again, it saves a
    /// flow image (8 bytes a pixel) at the peak of a frame.
    #[allow(clippy::too_many_arguments)]
    pub fn raw_labels_in_place(
        &mut self,
        flows: &mut [f32],
        cell_prob: &[f32],
        h: usize,
        w: usize,
        params: &Params,
        niter: u32,
        interp: bool,
        threads: usize,
        labels: &mut [u32],
    ) {
        let npix = w * h;
        assert!(flows.len() == 2 * npix && cell_prob.len() == npix && labels.len() == npix);
        let th = params.cellprob_threshold;
        self.reserve_for(h, w);
        self.dropped = DroppedMasks::default();
        self.moving_y.clear();
        self.moving_x.clear();
        self.moving_idx.clear();
        let (dy, dx) = flows.split_at_mut(npix);
        for i in 0..npix {
            if cell_prob[i] > th {
                self.moving_y.push((i / w) as u32);
                self.moving_x.push((i % w) as u32);
                self.moving_idx.push(i as u32);
                dy[i] /= FLOW_SCALE;
                dx[i] /= FLOW_SCALE;
            } else {
                dy[i] = 0.0;
                dx[i] = 0.0;
            }
        }
        let flows: &[f32] = flows;
        labels.fill(0);
        let n = self.moving_idx.len();
        if n == 0 {
            return;
        }
        self.end_y.resize(n, 0);
        self.end_x.resize(n, 0);
        let (my, mx, ey, ex) = (
            &self.moving_y,
            &self.moving_x,
            &mut self.end_y,
            &mut self.end_x,
        );
        let mut run = || dynamics::follow_flows(flows, h, w, my, mx, niter, interp, ey, ex);
        // The session's own pool (one thread included) keeps rayon off its global pool, so
        // a session uses the threads it was given and no more.
        if self.pool.as_ref().map(|p| p.0) != Some(threads) {
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .build()
                .ok()
                .map(|p| (threads, p));
        }
        match &self.pool {
            Some((_, p)) => p.install(run),
            None => run(),
        }
        self.dropped.too_large = masks::labels_from_positions(
            &mut self.end_y,
            &self.end_x,
            &self.moving_idx,
            h,
            w,
            params.max_size_fraction,
            &mut self.mask_scratch,
            labels,
        );
        if params.flow_threshold > 0.0 && labels.iter().any(|&l| l > 0) {
            // At labelled pixels (all of them moving) `flows` holds the network's flows
            // divided by 5, the values `flow_errors` would compute.
            let errors = flows::flow_errors_scaled(labels, flows, h, w, &mut self.flow_scratch);
            self.drop.clear();
            self.drop.push(false);
            self.drop
                .extend(errors.iter().map(|e| *e > params.flow_threshold as f64));
            self.dropped.flow_error = self.drop.iter().filter(|d| **d).count() as u32;
            masks::remove_labels(labels, &self.drop);
        }
    }

    /// Median object diameter of labels made by this stage (the diameter of a circle of each
    /// mask's area, median over masks), with this stage's buffers.
    pub fn median_diameter(&mut self, labels: &[u32]) -> f32 {
        let bound = self.label_bound.max(masks::max_labels(labels.len())) + 1;
        reserve_total(&mut self.diameter_counts, bound);
        reserve_total(&mut self.diameter_radii, bound);
        objects::median_diameter_with(labels, &mut self.diameter_counts, &mut self.diameter_radii)
    }

    /// Hole filling and removal of masks under `min_size` pixels on labels made by this
    /// stage (possibly resized to another grid), renumbered 1..=n; returns n. Reuses this
    /// stage's buffers.
    pub fn fill_holes_and_remove_small(
        &mut self,
        labels: &mut [u32],
        shape: [usize; 3],
        min_size: i32,
    ) -> u32 {
        let bound = self.label_bound.max(masks::max_labels(labels.len()));
        self.label_scratch.reserve_for(labels.len(), bound);
        // Masks present before, to count those the size rule removes.
        let before = if min_size > 0 {
            reserve_total(&mut self.present, bound + 1);
            self.present.clear();
            for &l in labels.iter() {
                let l = l as usize;
                if l >= self.present.len() {
                    self.present.resize(l + 1, false);
                }
                self.present[l] = true;
            }
            self.present.iter().skip(1).filter(|p| **p).count() as u32
        } else {
            0
        };
        let n = masks::fill_holes_and_remove_small_with(
            labels,
            shape,
            min_size,
            &mut self.label_scratch,
        );
        self.dropped.too_small = before.saturating_sub(n);
        n
    }

    /// The masks removed by the last [`raw_labels`](Self::raw_labels) and
    /// [`fill_holes_and_remove_small`](Self::fill_holes_and_remove_small), by rule.
    pub fn dropped(&self) -> DroppedMasks {
        self.dropped
    }

    /// The whole stage: [`raw_labels`](Self::raw_labels), then hole filling and removal of
    /// masks under `params.min_size`; returns the number of objects (labels 1..=n).
    #[allow(clippy::too_many_arguments)]
    pub fn labels(
        &mut self,
        flows: &[f32],
        cell_prob: &[f32],
        h: usize,
        w: usize,
        params: &Params,
        niter: u32,
        threads: usize,
        labels: &mut [u32],
    ) -> u32 {
        self.raw_labels(
            flows,
            cell_prob,
            h,
            w,
            params,
            niter,
            params.interp,
            threads,
            labels,
        );
        self.fill_holes_and_remove_small(labels, [1, h, w], params.min_size)
    }
}
/// Labels from 3D network outputs (reference `dynamics.compute_masks` with `do_3D=True`, which
/// has no flow-error check): voxels whose cell probability exceeds `cellprob_threshold`
/// follow the flows for `niter` steps ([`crate::dynamics::follow_flows_3d`]) and are labelled by
/// their sinks (`masks::labels_from_positions_3d`). `field` is `[dZ, dY, dX, cell
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
