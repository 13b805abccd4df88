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
    inside: Vec<f64>,
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
        reserve_total(&mut self.inside, framed);
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
    let (dy_out, dx_out) = out.split_at_mut(height * width);
    for_each_mask_flow(labels, height, width, scratch, |_, o, dy, dx| {
        dy_out[o] = dy;
        dx_out[o] = dx;
    });
}

/// The flows of the masks, pixel by pixel: `visit(label, pixel index, dy, dx)` for every
/// labelled pixel, label after label, each label's pixels in row-major order. Nothing of
/// image size is written, so [`flow_errors`] needs no flow image of its own.
fn for_each_mask_flow(
    labels: &[u32],
    height: usize,
    width: usize,
    scratch: &mut FlowScratch,
    mut visit: impl FnMut(u32, usize, f32, f32),
) {
    assert!(labels.len() == height * width);
    let mut boxes = std::mem::take(&mut scratch.boxes);
    label_boxes(labels, width, &mut boxes);
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
        // `mask` (1 inside, 0 elsewhere, the frame included) lives in `next`'s twin
        // buffer `inside`; heat outside the mask stays 0, as in the reference, which
        // updates mask pixels only.
        scratch.heat.clear();
        scratch.heat.resize(ly * lx, 0.0);
        scratch.next.clear();
        scratch.next.resize(ly * lx, 0.0);
        scratch.inside.clear();
        scratch.inside.resize(ly * lx, 0.0);
        for k in 0..scratch.ys.len() {
            scratch.inside[scratch.ys[k] * lx + scratch.xs[k]] = 1.0;
        }
        diffuse(
            &mut scratch.heat,
            &mut scratch.next,
            &scratch.inside,
            (ly, lx),
            src,
            niter,
        );
        let t = &scratch.heat;
        for k in 0..scratch.ys.len() {
            let (y, x) = (scratch.ys[k], scratch.xs[k]);
            let i = y * lx + x;
            let dy = t[i + lx] - t[i - lx];
            let dx = t[i + 1] - t[i - 1];
            let norm = 1e-60 + (dy * dy + dx * dx).sqrt();
            let o = (y0 + y - 1) * width + x0 + x - 1;
            visit(label, o, (dy / norm) as f32, (dx / norm) as f32);
        }
    }
    scratch.boxes = boxes;
}

/// `niter` Jacobi steps of the heat diffusion in one framed box (`ly × lx`, a zero frame of
/// one pixel): heat is added at `src`, then every pixel inside the mask becomes the mean of
/// its 3×3 neighbourhood. The whole box is computed row by row (so that the loop is
/// vectorised) and pixels outside the mask are multiplied by 0: the sum has the
/// reference's order, so the values are the reference's to the last bit.
fn diffuse(
    heat: &mut Vec<f64>,
    next: &mut Vec<f64>,
    inside: &[f64],
    (ly, lx): (usize, usize),
    src: usize,
    niter: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { diffuse_avx512(heat, next, inside, (ly, lx), src, niter) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { diffuse_avx2(heat, next, inside, (ly, lx), src, niter) };
        }
    }
    diffuse_body(heat, next, inside, (ly, lx), src, niter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn diffuse_avx512(
    heat: &mut Vec<f64>,
    next: &mut Vec<f64>,
    inside: &[f64],
    dims: (usize, usize),
    src: usize,
    niter: usize,
) {
    diffuse_body(heat, next, inside, dims, src, niter)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn diffuse_avx2(
    heat: &mut Vec<f64>,
    next: &mut Vec<f64>,
    inside: &[f64],
    dims: (usize, usize),
    src: usize,
    niter: usize,
) {
    diffuse_body(heat, next, inside, dims, src, niter)
}

#[inline(always)]
fn diffuse_body(
    heat: &mut Vec<f64>,
    next: &mut Vec<f64>,
    inside: &[f64],
    (ly, lx): (usize, usize),
    src: usize,
    niter: usize,
) {
    for _ in 0..niter {
        heat[src] += 1.0;
        for y in 1..ly - 1 {
            let (up, mid, down) = (
                &heat[(y - 1) * lx..y * lx],
                &heat[y * lx..(y + 1) * lx],
                &heat[(y + 1) * lx..(y + 2) * lx],
            );
            let m = &inside[y * lx..(y + 1) * lx];
            let out = &mut next[y * lx..(y + 1) * lx];
            for x in 1..lx - 1 {
                let sum = mid[x]
                    + up[x]
                    + down[x]
                    + mid[x - 1]
                    + mid[x + 1]
                    + up[x - 1]
                    + up[x + 1]
                    + down[x - 1]
                    + down[x + 1];
                out[x] = m[x] * (1.0 / 9.0 * sum);
            }
        }
        std::mem::swap(heat, next);
    }
}

/// Per-label mean squared error between the flows of the masks and the network's flows
/// (reference `metrics.flow_error`; `net_flows` are the raw network flows, divided by 5 here).
/// Index `l-1` holds label `l`; absent labels get 0. The errors live in `scratch`.
#[cfg(test)]
pub fn flow_errors<'s>(
    labels: &[u32],
    net_flows: &[f32],
    height: usize,
    width: usize,
    scratch: &'s mut FlowScratch,
) -> &'s [f64] {
    let npix = height * width;
    assert!(net_flows.len() == 2 * npix);
    flow_errors_with(labels, height, width, scratch, |c, i| {
        net_flows[c * npix + i] / crate::dynamics::FLOW_SCALE
    })
}

/// [`flow_errors`] on flows already divided by [`crate::dynamics::FLOW_SCALE`] (the masked
/// flows the dynamics ran on: at labelled pixels they are the same f32 values).
pub(crate) fn flow_errors_scaled<'s>(
    labels: &[u32],
    scaled_flows: &[f32],
    height: usize,
    width: usize,
    scratch: &'s mut FlowScratch,
) -> &'s [f64] {
    let npix = height * width;
    assert!(scaled_flows.len() == 2 * npix);
    flow_errors_with(labels, height, width, scratch, |c, i| {
        scaled_flows[c * npix + i]
    })
}

/// [`flow_errors`] with the network's flow component `c` at pixel `i` from `net`.
fn flow_errors_with<'s>(
    labels: &[u32],
    height: usize,
    width: usize,
    scratch: &'s mut FlowScratch,
    net: impl Fn(usize, usize) -> f32,
) -> &'s [f64] {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut sums = std::mem::take(&mut scratch.sums);
    let mut counts = std::mem::take(&mut scratch.counts);
    sums.clear();
    sums.resize(max, [0.0; 2]);
    counts.clear();
    counts.resize(max, 0);
    // Each label's pixels arrive in row-major order, the order of a whole-image pass, so the
    // sums are the same to the last bit.
    for_each_mask_flow(labels, height, width, scratch, |l, i, dy, dx| {
        let l = l as usize;
        counts[l - 1] += 1;
        for (c, f) in [dy, dx].into_iter().enumerate() {
            let d = f as f64 - net(c, i) as f64;
            sums[l - 1][c] += d * d;
        }
    });
    scratch.errors.clear();
    scratch.errors.extend((0..max).map(|l| {
        if counts[l] == 0 {
            0.0
        } else {
            sums[l][0] / counts[l] as f64 + sums[l][1] / counts[l] as f64
        }
    }));
    scratch.sums = sums;
    scratch.counts = counts;
    &scratch.errors
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

    /// The reference's loop (`masks_to_flows_cpu`): mask pixels only, one at a time.
    fn diffuse_mask_pixels(
        inside: &[f64],
        (ly, lx): (usize, usize),
        src: usize,
        niter: usize,
    ) -> Vec<f64> {
        let pix: Vec<usize> = (0..ly * lx).filter(|&i| inside[i] == 1.0).collect();
        let (mut heat, mut next) = (vec![0.0f64; ly * lx], vec![0.0f64; ly * lx]);
        for _ in 0..niter {
            heat[src] += 1.0;
            for &i in &pix {
                let t = &heat;
                next[i] = 1.0 / 9.0
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
            for &i in &pix {
                heat[i] = next[i];
            }
        }
        heat
    }

    #[test]
    fn whole_box_diffusion_is_the_references_mask_pixel_loop_to_the_bit() {
        // An irregular mask (a disk with a notch and a hole) in a framed 23 × 31 box.
        let (ly, lx) = (23, 31);
        let mut inside = vec![0.0f64; ly * lx];
        for y in 1..ly - 1 {
            for x in 1..lx - 1 {
                let (dy, dx) = (y as f64 - 11.0, x as f64 - 15.0);
                let r = (dy * dy / 90.0 + dx * dx / 180.0).sqrt();
                if r < 1.0 && !(y == 11 && x > 20) && !(y == 8 && x == 12) {
                    inside[y * lx + x] = 1.0;
                }
            }
        }
        let src = 11 * lx + 15;
        let niter = 2 * (ly + lx);
        let want = diffuse_mask_pixels(&inside, (ly, lx), src, niter);
        let (mut heat, mut next) = (vec![0.0f64; ly * lx], vec![0.0f64; ly * lx]);
        diffuse(&mut heat, &mut next, &inside, (ly, lx), src, niter);
        assert_eq!(
            heat.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let mut plain = (vec![0.0f64; ly * lx], vec![0.0f64; ly * lx]);
        diffuse_body(&mut plain.0, &mut plain.1, &inside, (ly, lx), src, niter);
        assert_eq!(plain.0, want);
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
        let e = flow_errors(&labels, &net, h, w, &mut scratch);
        assert!(e.iter().all(|v| *v < 1e-10), "{e:?}");
    }
}
