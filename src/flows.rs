//! masks → flows by heat diffusion (reference `dynamics.masks_to_flows_cpu`).
//!
//! For each mask, heat is injected at the mask pixel nearest the mean position and diffused
//! (3×3 averaging, Jacobi updates) inside the mask's bounding box for `2 × (box height + box
//! width + 4)` iterations; the flow is the normalised central-difference gradient of the
//! heat. These are the network's training targets and what the flow-error quality control
//! compares predictions with. f64 throughout, as the reference.

use crate::scratch::reserve_total;

/// A label's bounding box (y0, x0, y1, x1), inclusive-exclusive, or None if it is absent.
type LabelBox = Option<(usize, usize, usize, usize)>;

/// Bounding boxes of labels 1..=max (index label-1) of a row-major label image.
fn label_boxes(labels: &[u32], width: usize, boxes: &mut Vec<LabelBox>) {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    boxes.clear();
    boxes.resize(max, None);
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (y, x) = (i / width, i % width);
        let b = &mut boxes[l as usize - 1];
        *b = Some(match *b {
            None => (y, x, y + 1, x + 1),
            Some((y0, x0, y1, x1)) => (y0.min(y), x0.min(x), y1.max(y + 1), x1.max(x + 1)),
        });
    }
}

/// Reusable buffers of [`masks_to_flows_into`] and [`flow_errors`].
#[derive(Default, Debug, Clone)]
pub struct FlowScratch {
    heat: Vec<f64>,
    next: Vec<f64>,
    ys: Vec<usize>,
    xs: Vec<usize>,
    boxes: Vec<LabelBox>,
    sums: Vec<[f64; 2]>,
    counts: Vec<usize>,
    errors: Vec<f64>,
}

impl FlowScratch {
    /// Sizes every buffer for `height × width` label images holding labels up to
    /// `max_label`, so that no later call within those bounds allocates.
    pub fn reserve_for(&mut self, height: usize, width: usize, max_label: usize) {
        let framed = (height + 2) * (width + 2);
        let npix = height * width;
        reserve_total(&mut self.heat, framed);
        reserve_total(&mut self.next, framed);
        reserve_total(&mut self.ys, npix);
        reserve_total(&mut self.xs, npix);
        reserve_total(&mut self.boxes, max_label);
        reserve_total(&mut self.sums, max_label);
        reserve_total(&mut self.counts, max_label);
        reserve_total(&mut self.errors, max_label);
    }
}

/// Unit flows (`2 × height × width`, dY plane then dX plane) of a label image; background
/// pixels get 0. Labels need not be consecutive.
pub fn masks_to_flows(labels: &[u32], height: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; 2 * height * width];
    masks_to_flows_into(labels, height, width, &mut FlowScratch::default(), &mut out);
    out
}

/// [`masks_to_flows`] into a caller buffer, reusing `scratch`.
pub fn masks_to_flows_into(
    labels: &[u32],
    height: usize,
    width: usize,
    scratch: &mut FlowScratch,
    out: &mut [f32],
) {
    assert!(labels.len() == height * width && out.len() == 2 * height * width);
    out.fill(0.0);
    let mut boxes = std::mem::take(&mut scratch.boxes);
    label_boxes(labels, width, &mut boxes);
    let (dy_out, dx_out) = out.split_at_mut(height * width);
    for (li, b) in boxes.iter().enumerate() {
        let Some((y0, x0, y1, x1)) = *b else { continue };
        let label = li as u32 + 1;
        // Box with a one-pixel frame so that every neighbour read is in bounds.
        let (ly, lx) = (y1 - y0 + 2, x1 - x0 + 2);
        scratch.ys.clear();
        scratch.xs.clear();
        for y in y0..y1 {
            for x in x0..x1 {
                if labels[y * width + x] == label {
                    scratch.ys.push(y - y0 + 1);
                    scratch.xs.push(x - x0 + 1);
                }
            }
        }
        let n = scratch.ys.len() as f64;
        let ymean = scratch.ys.iter().sum::<usize>() as f64 / n;
        let xmean = scratch.xs.iter().sum::<usize>() as f64 / n;
        // Source: the mask pixel nearest the mean (first in row-major order on ties).
        let mut best = (f64::INFINITY, 0usize);
        for k in 0..scratch.ys.len() {
            let d = (scratch.xs[k] as f64 - xmean).powi(2) + (scratch.ys[k] as f64 - ymean).powi(2);
            if d < best.0 {
                best = (d, k);
            }
        }
        let src = scratch.ys[best.1] * lx + scratch.xs[best.1];
        let niter = 2 * (ly + lx);
        scratch.heat.clear();
        scratch.heat.resize(ly * lx, 0.0);
        scratch.next.clear();
        scratch.next.resize(ly * lx, 0.0);
        for _ in 0..niter {
            scratch.heat[src] += 1.0;
            for k in 0..scratch.ys.len() {
                let i = scratch.ys[k] * lx + scratch.xs[k];
                let t = &scratch.heat;
                scratch.next[i] = 1.0 / 9.0
                    * (t[i]
                        + t[i - lx]
                        + t[i + lx]
                        + t[i - 1]
                        + t[i + 1]
                        + t[i - lx - 1]
                        + t[i - lx + 1]
                        + t[i + lx - 1]
                        + t[i + lx + 1]);
            }
            for k in 0..scratch.ys.len() {
                let i = scratch.ys[k] * lx + scratch.xs[k];
                scratch.heat[i] = scratch.next[i];
            }
        }
        let t = &scratch.heat;
        for k in 0..scratch.ys.len() {
            let (y, x) = (scratch.ys[k], scratch.xs[k]);
            let i = y * lx + x;
            let dy = t[i + lx] - t[i - lx];
            let dx = t[i + 1] - t[i - 1];
            let norm = 1e-60 + (dy * dy + dx * dx).sqrt();
            let o = (y0 + y - 1) * width + x0 + x - 1;
            dy_out[o] = (dy / norm) as f32;
            dx_out[o] = (dx / norm) as f32;
        }
    }
    scratch.boxes = boxes;
}

/// Per-label mean squared error between the flows of the masks and the network's flows
/// (reference `metrics.flow_error`; `net_flows` are the raw network flows, divided by 5 here).
/// Index `l-1` holds label `l`; absent labels get 0. The errors live in `scratch`.
pub fn flow_errors<'s>(
    labels: &[u32],
    net_flows: &[f32],
    height: usize,
    width: usize,
    scratch: &'s mut FlowScratch,
    mask_flows: &mut Vec<f32>,
) -> &'s [f64] {
    let npix = height * width;
    mask_flows.resize(2 * npix, 0.0);
    masks_to_flows_into(labels, height, width, scratch, mask_flows);
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let FlowScratch {
        sums,
        counts,
        errors,
        ..
    } = scratch;
    sums.clear();
    sums.resize(max, [0.0; 2]);
    counts.clear();
    counts.resize(max, 0);
    for i in 0..npix {
        let l = labels[i] as usize;
        if l == 0 {
            continue;
        }
        counts[l - 1] += 1;
        for c in 0..2 {
            let d = mask_flows[c * npix + i] as f64
                - (net_flows[c * npix + i] / crate::dynamics::FLOW_SCALE) as f64;
            sums[l - 1][c] += d * d;
        }
    }
    errors.clear();
    errors.extend((0..max).map(|l| {
        if counts[l] == 0 {
            0.0
        } else {
            sums[l][0] / counts[l] as f64 + sums[l][1] / counts[l] as f64
        }
    }));
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_of_a_disk_point_to_its_centre() {
        let (h, w) = (21, 21);
        let labels: Vec<u32> = (0..h * w)
            .map(|i| (((i / w) as i32 - 10).pow(2) + ((i % w) as i32 - 10).pow(2) <= 49) as u32)
            .collect();
        let f = masks_to_flows(&labels, h, w);
        // Left of the centre the flow points right (+x), above it points down (+y).
        assert!(f[h * w + 10 * w + 5] > 0.9);
        assert!(f[5 * w + 10] > 0.9);
        // Unit length inside, zero outside.
        let i = 7 * w + 8;
        assert!(((f[i] as f64).hypot(f[h * w + i] as f64) - 1.0).abs() < 1e-5);
        assert_eq!(f[0], 0.0);
    }

    #[test]
    fn flow_error_is_zero_for_the_masks_own_flows() {
        let (h, w) = (12, 12);
        let labels: Vec<u32> = (0..h * w)
            .map(|i| if (i % w) < 6 { 1 } else { 2 })
            .collect();
        let f = masks_to_flows(&labels, h, w);
        let net: Vec<f32> = f.iter().map(|v| v * 5.0).collect();
        let mut scratch = FlowScratch::default();
        let e = flow_errors(&labels, &net, h, w, &mut scratch, &mut Vec::new());
        assert!(e.iter().all(|v| *v < 1e-10), "{e:?}");
    }
}
