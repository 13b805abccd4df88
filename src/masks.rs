//! From converged pixel positions to labels (reference `dynamics.get_masks_torch`), and the
//! clean-up of label images (`utils.fill_holes_and_remove_small_masks`).
//!
//! Every step runs in a fixed order (seeds sorted by count then position, labels renumbered
//! in order of first appearance), so labels are the same on every run and thread count.

use crate::scratch::reserve_total;

/// A histogram bin must hold more than this many pixels to seed a mask.
const SEED_MIN_COUNT: u32 = 10;
/// Bins with more than this many pixels are grown into a seed's mask.
const GROW_MIN_COUNT: u32 = 2;
/// Seed neighbourhood: an 11×11 patch, grown by five 3×3 dilations.
const PATCH: usize = 11;
const GROW_ITERS: usize = 5;
/// Local maxima are found with a 5×5 max filter.
const PEAK_KERNEL: usize = 5;

/// The most labels a `npix`-pixel grid can produce: every seed is a distinct histogram bin
/// holding more than [`SEED_MIN_COUNT`] of the at most `npix` moving pixels.
pub fn max_labels(npix: usize) -> usize {
    npix / (SEED_MIN_COUNT as usize + 1) + 1
}

/// Reusable buffers of [`labels_from_positions`].
#[derive(Default, Debug, Clone)]
pub struct MaskScratch {
    seeds: Vec<(u32, usize)>,
    counts: Vec<usize>,
    keep: Vec<bool>,
    map: Vec<u32>,
}

impl MaskScratch {
    /// Sizes every buffer for a `height × width` grid, so that no later call on a grid of
    /// that size allocates, whatever the number of objects.
    pub fn reserve_for(&mut self, height: usize, width: usize) {
        let labels = max_labels(height * width) + 1;
        reserve_total(&mut self.seeds, labels);
        reserve_total(&mut self.counts, labels);
        reserve_total(&mut self.keep, labels);
        reserve_total(&mut self.map, labels);
    }
}

/// Reusable buffers of [`fill_holes_and_remove_small_with`] and [`renumber_with`].
#[derive(Default, Debug, Clone)]
pub struct LabelScratch {
    counts: Vec<usize>,
    drop: Vec<bool>,
    map: Vec<u32>,
    boxes: Vec<[usize; 6]>,
    outside: Vec<u8>,
    stack: Vec<usize>,
}

impl LabelScratch {
    /// Sizes every buffer for label images of `npix` pixels holding labels up to
    /// `max_label`, so that no later call within those bounds allocates.
    pub fn reserve_for(&mut self, npix: usize, max_label: usize) {
        let l = max_label + 1;
        reserve_total(&mut self.counts, l);
        reserve_total(&mut self.drop, l);
        reserve_total(&mut self.map, l);
        reserve_total(&mut self.boxes, l);
        reserve_total(&mut self.outside, npix);
        reserve_total(&mut self.stack, npix);
    }
}

/// Labels every moving pixel by the sink its final position fell into.
///
/// `pos_y/pos_x` are the truncated final positions of the pixels `pixel_index` (row-major
/// indices) of a `height × width` image. Writes labels 1..N (0 elsewhere) into `labels`,
/// after removing masks larger than `max_size_fraction` of the image; returns how many masks
/// that rule removed. `pos_y` is overwritten (it holds each pixel's label for a while).
///
/// Reference `get_masks_torch`: a histogram of the final positions (padded by `rpad` bins),
/// seeds at bins holding more than [`SEED_MIN_COUNT`] pixels that are the maximum of their
/// 5×5 neighbourhood, each seed grown by five 3×3 dilations inside its 11×11 patch over bins
/// holding more than [`GROW_MIN_COUNT`] pixels, painted in order of count. Only `labels`
/// is image-sized here: it holds the histogram, then the seed map, then the labels. Bins
/// outside the image are always empty, so treating them as zero instead of padding gives the
/// reference's seeds and masks, and row-major order (the tie-break) is the padded one.
#[allow(clippy::too_many_arguments)]
pub fn labels_from_positions(
    pos_y: &mut [u32],
    pos_x: &[u32],
    pixel_index: &[u32],
    height: usize,
    width: usize,
    max_size_fraction: f32,
    scratch: &mut MaskScratch,
    labels: &mut [u32],
) -> u32 {
    let (h, w) = (height, width);
    assert!(labels.len() == h * w && pos_y.len() == pos_x.len());
    let MaskScratch {
        seeds,
        counts,
        keep,
        map,
    } = scratch;
    let hist = labels;
    hist.fill(0);
    for (&y, &x) in pos_y.iter().zip(pos_x) {
        hist[y as usize * w + x as usize] += 1;
    }
    // Seeds: bins above the count that no bin within ±2 exceeds, sorted by count ascending
    // (row-major position breaks ties) so larger sinks are painted last.
    let r = PEAK_KERNEL / 2;
    seeds.clear();
    for (i, &c) in hist.iter().enumerate() {
        if c <= SEED_MIN_COUNT {
            continue;
        }
        let (y, x) = (i / w, i % w);
        let (x0, x1) = (x.saturating_sub(r), (x + r).min(w - 1));
        let peak = (y.saturating_sub(r)..=(y + r).min(h - 1))
            .all(|yy| hist[yy * w + x0..=yy * w + x1].iter().all(|&v| v <= c));
        if peak {
            seeds.push((c, i));
        }
    }
    if seeds.is_empty() {
        hist.fill(0);
        return 0;
    }
    // Unstable sort: the keys are distinct (positions differ), and it does not allocate.
    seeds.sort_unstable_by_key(|&(c, i)| (c, i));
    // From here on the counts matter only as "more than GROW_MIN_COUNT" (a bin seeds may grow
    // over): such bins become UNPAINTED, the others 0, and painting a bin with seed k + 1
    // keeps it nonzero, so the histogram becomes the seed map in place.
    const UNPAINTED: u32 = u32::MAX;
    for v in hist.iter_mut() {
        *v = if *v > GROW_MIN_COUNT { UNPAINTED } else { 0 };
    }
    let seed_map = hist;
    let mut grow = [0u8; PATCH * PATCH];
    let mut next = [0u8; PATCH * PATCH];
    let mut open = [0u8; PATCH * PATCH];
    let c = PATCH / 2;
    for (k, &(_, si)) in seeds.iter().enumerate() {
        let (sy, sx) = (si / w, si % w);
        // Patch bins a seed may grow over (none outside the image).
        for py in 0..PATCH {
            for px in 0..PATCH {
                let (gy, gx) = ((sy + py).wrapping_sub(c), (sx + px).wrapping_sub(c));
                open[py * PATCH + px] = (gy < h && gx < w && seed_map[gy * w + gx] != 0) as u8;
            }
        }
        grow.fill(0);
        grow[c * PATCH + c] = 1;
        for _ in 0..GROW_ITERS {
            for py in 0..PATCH {
                for px in 0..PATCH {
                    let mut m = 0;
                    for yy in py.saturating_sub(1)..=(py + 1).min(PATCH - 1) {
                        for xx in px.saturating_sub(1)..=(px + 1).min(PATCH - 1) {
                            m |= grow[yy * PATCH + xx];
                        }
                    }
                    next[py * PATCH + px] = m & open[py * PATCH + px];
                }
            }
            grow = next;
        }
        for py in 0..PATCH {
            for px in 0..PATCH {
                if grow[py * PATCH + px] != 0 {
                    // Grown bins are open, so inside the image.
                    seed_map[(sy + py - c) * w + sx + px - c] = k as u32 + 1;
                }
            }
        }
    }
    // Each moving pixel's label, parked in its `pos_y` slot while the map is still needed.
    for (y, &x) in pos_y.iter_mut().zip(pos_x) {
        let l = seed_map[*y as usize * w + x as usize];
        *y = if l == UNPAINTED { 0 } else { l };
    }
    let labels = seed_map;
    labels.fill(0);
    for (&l, &pi) in pos_y.iter().zip(pixel_index) {
        labels[pi as usize] = l;
    }
    let nseeds = seeds.len();
    counts.clear();
    counts.resize(nseeds + 1, 0);
    for &l in labels.iter() {
        counts[l as usize] += 1;
    }
    let big = (height * width) as f64 * max_size_fraction as f64;
    keep.clear();
    keep.extend(counts.iter().map(|&c| (c as f64) <= big));
    keep[0] = true;
    let too_large = keep.iter().filter(|k| !**k).count() as u32;
    for l in labels.iter_mut() {
        if !keep[*l as usize] {
            *l = 0;
        }
    }
    renumber_with(labels, map);
    too_large
}

/// The 3D counterpart of [`labels_from_positions`] (reference `get_masks_torch` on a
/// volume): a histogram of the final positions, seeds at bins holding more than
/// `SEED_MIN_COUNT` voxels that are the maximum of their 5×5×5 neighbourhood, each seed grown
/// by five 3×3×3 dilations inside its 11×11×11 patch over bins with more than
/// `GROW_MIN_COUNT` voxels, then every voxel labelled by the seed its position fell into;
/// masks above `max_size_fraction` of the volume are dropped and labels renumbered.
///
/// `ends[i]` is the truncated final (z, y, x) of the moving voxel `voxels[i]` (row-major
/// index) in a `shape = (depth, height, width)` volume. To keep memory at one volume of u32,
/// `labels` doubles as the histogram and `ends` is overwritten. The reference pads its
/// histogram by `rpad` bins; bins outside the volume are always empty, so treating them as
/// zero gives the same seeds and masks. Returns the number of labels.
pub fn labels_from_positions_3d(
    ends: &mut [[u32; 3]],
    voxels: &[u32],
    shape: [usize; 3],
    max_size_fraction: f32,
    labels: &mut [u32],
) -> u32 {
    let [d, h, w] = shape;
    let n = d * h * w;
    assert!(labels.len() == n && ends.len() == voxels.len());
    let at = |p: [u32; 3]| (p[0] as usize * h + p[1] as usize) * w + p[2] as usize;
    let hist = labels;
    hist.fill(0);
    for e in ends.iter() {
        hist[at(*e)] += 1;
    }
    // Seeds: bins above the count threshold that no neighbour within ±2 exceeds.
    let r = PEAK_KERNEL / 2;
    let mut seeds: Vec<(u32, usize)> = Vec::new();
    for (i, &c) in hist.iter().enumerate() {
        if c <= SEED_MIN_COUNT {
            continue;
        }
        let (z, y, x) = (i / (h * w), (i / w) % h, i % w);
        let peak = (z.saturating_sub(r)..=(z + r).min(d - 1)).all(|zz| {
            (y.saturating_sub(r)..=(y + r).min(h - 1)).all(|yy| {
                let row = (zz * h + yy) * w;
                hist[row + x.saturating_sub(r)..=row + (x + r).min(w - 1)]
                    .iter()
                    .all(|&v| v <= c)
            })
        });
        if peak {
            seeds.push((c, i));
        }
    }
    if seeds.is_empty() {
        hist.fill(0);
        return 0;
    }
    // Larger sinks are painted last (count ascending, position breaks ties), as the reference.
    seeds.sort_by_key(|&(c, i)| (c, i));
    // Grow every seed over the histogram before its memory is reused for the seed map.
    const P: usize = PATCH;
    let c = (P / 2) as isize;
    let mut grown: Vec<u32> = Vec::new();
    let mut bounds: Vec<usize> = Vec::with_capacity(seeds.len() + 1);
    let mut flag = [false; P * P * P];
    let mut cur = [false; P * P * P];
    let mut tmp = [false; P * P * P];
    let off = |v: usize, dv: usize, len: usize| -> Option<usize> {
        let g = v as isize + dv as isize - c;
        (g >= 0 && (g as usize) < len).then_some(g as usize)
    };
    for &(_, si) in &seeds {
        let (sz, sy, sx) = (si / (h * w), (si / w) % h, si % w);
        for pz in 0..P {
            for py in 0..P {
                for px in 0..P {
                    let f = match (off(sz, pz, d), off(sy, py, h), off(sx, px, w)) {
                        (Some(z), Some(y), Some(x)) => hist[(z * h + y) * w + x] > GROW_MIN_COUNT,
                        _ => false,
                    };
                    flag[(pz * P + py) * P + px] = f;
                }
            }
        }
        cur.fill(false);
        cur[(c as usize * P + c as usize) * P + c as usize] = true;
        for _ in 0..GROW_ITERS {
            // Separable 3×3×3 dilation clipped at the patch (max pool per axis), then the mask.
            for stride in [1, P, P * P] {
                tmp.copy_from_slice(&cur);
                for k in 0..P * P * P {
                    let pos = (k / stride) % P;
                    let mut m = tmp[k];
                    if pos > 0 {
                        m |= tmp[k - stride];
                    }
                    if pos + 1 < P {
                        m |= tmp[k + stride];
                    }
                    cur[k] = m;
                }
            }
            for k in 0..P * P * P {
                cur[k] &= flag[k];
            }
        }
        for pz in 0..P {
            for py in 0..P {
                for px in 0..P {
                    if cur[(pz * P + py) * P + px] {
                        // Grown bins have counts, so they lie inside the volume.
                        let (z, y, x) = (
                            off(sz, pz, d).unwrap(),
                            off(sy, py, h).unwrap(),
                            off(sx, px, w).unwrap(),
                        );
                        grown.push(((z * h + y) * w + x) as u32);
                    }
                }
            }
        }
        bounds.push(grown.len());
    }
    let seed_map = hist;
    seed_map.fill(0);
    let mut b0 = 0;
    for (k, &b1) in bounds.iter().enumerate() {
        for &g in &grown[b0..b1] {
            seed_map[g as usize] = k as u32 + 1;
        }
        b0 = b1;
    }
    drop(grown);
    // Label of each moving voxel, parked in its `ends` slot while the map is still needed.
    for e in ends.iter_mut() {
        e[0] = seed_map[at(*e)];
    }
    let labels = seed_map;
    labels.fill(0);
    for (e, &v) in ends.iter().zip(voxels) {
        labels[v as usize] = e[0];
    }
    let mut counts = vec![0usize; seeds.len() + 1];
    for &l in labels.iter() {
        counts[l as usize] += 1;
    }
    let big = n as f64 * max_size_fraction as f64;
    let mut drop_label: Vec<bool> = counts.iter().map(|&c| (c as f64) > big).collect();
    drop_label[0] = false;
    remove_labels(labels, &drop_label);
    renumber(labels)
}

/// Renumbers labels to 1..N in order of first appearance in row-major order (as
/// `fastremap.renumber`); returns N.
pub fn renumber(labels: &mut [u32]) -> u32 {
    renumber_with(labels, &mut Vec::new())
}

/// [`renumber`] with a reusable map buffer.
pub fn renumber_with(labels: &mut [u32], map: &mut Vec<u32>) -> u32 {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    map.clear();
    map.resize(max + 1, 0);
    let mut n = 0;
    for l in labels.iter_mut() {
        if *l == 0 {
            continue;
        }
        let m = &mut map[*l as usize];
        if *m == 0 {
            n += 1;
            *m = n;
        }
        *l = *m;
    }
    n
}

/// Zeroes every label whose `drop[label]` is true.
pub fn remove_labels(labels: &mut [u32], drop: &[bool]) {
    for l in labels.iter_mut() {
        if drop.get(*l as usize).copied().unwrap_or(false) {
            *l = 0;
        }
    }
}

fn remove_small(labels: &mut [u32], min_size: i32, counts: &mut Vec<usize>, drop: &mut Vec<bool>) {
    if min_size <= 0 {
        return;
    }
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    counts.clear();
    counts.resize(max + 1, 0);
    for &l in labels.iter() {
        counts[l as usize] += 1;
    }
    drop.clear();
    drop.extend(
        counts
            .iter()
            .enumerate()
            .map(|(l, &c)| l > 0 && (c as i64) < min_size as i64),
    );
    remove_labels(labels, drop);
}

/// Fills holes in every mask and removes masks under `min_size` pixels (reference
/// `fill_holes_and_remove_small_masks`), then renumbers 1..N; returns N. A hole is a
/// region of the mask's bounding box not 4-connected to the box border through pixels of
/// other labels or background; it takes the mask's label. `shape` is (depth, height,
/// width); depth 1 for 2D.
pub fn fill_holes_and_remove_small(labels: &mut [u32], shape: [usize; 3], min_size: i32) -> u32 {
    fill_holes_and_remove_small_with(labels, shape, min_size, &mut LabelScratch::default())
}

/// [`fill_holes_and_remove_small`] with reusable buffers.
pub fn fill_holes_and_remove_small_with(
    labels: &mut [u32],
    shape: [usize; 3],
    min_size: i32,
    scratch: &mut LabelScratch,
) -> u32 {
    let LabelScratch {
        counts,
        drop,
        map,
        boxes,
        outside,
        stack,
    } = scratch;
    remove_small(labels, min_size, counts, drop);
    renumber_with(labels, map);
    let [d, h, w] = shape;
    // Bounding boxes per label.
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    boxes.clear();
    boxes.resize(max, [usize::MAX, usize::MAX, usize::MAX, 0, 0, 0]);
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (z, y, x) = (i / (h * w), (i / w) % h, i % w);
        let b = &mut boxes[l as usize - 1];
        b[0] = b[0].min(z);
        b[1] = b[1].min(y);
        b[2] = b[2].min(x);
        b[3] = b[3].max(z + 1);
        b[4] = b[4].max(y + 1);
        b[5] = b[5].max(x + 1);
    }
    for (li, b) in boxes.iter().enumerate() {
        if b[0] == usize::MAX {
            continue;
        }
        let label = li as u32 + 1;
        let (bd, bh, bw) = (b[3] - b[0], b[4] - b[1], b[5] - b[2]);
        if bh < 3 || bw < 3 {
            continue; // too thin to enclose a hole
        }
        let at = |z: usize, y: usize, x: usize| ((b[0] + z) * h + b[1] + y) * w + b[2] + x;
        outside.clear();
        outside.resize(bd * bh * bw, 0);
        stack.clear();
        for z in 0..bd {
            for y in 0..bh {
                for x in 0..bw {
                    let border = y == 0
                        || x == 0
                        || y == bh - 1
                        || x == bw - 1
                        || (d > 1 && (z == 0 || z == bd - 1));
                    if border && labels[at(z, y, x)] != label {
                        let k = (z * bh + y) * bw + x;
                        outside[k] = 1;
                        stack.push(k);
                    }
                }
            }
        }
        while let Some(k) = stack.pop() {
            let (z, y, x) = (k / (bh * bw), (k / bw) % bh, k % bw);
            let mut visit = |zz: usize, yy: usize, xx: usize| {
                let kk = (zz * bh + yy) * bw + xx;
                if outside[kk] == 0 && labels[at(zz, yy, xx)] != label {
                    outside[kk] = 1;
                    stack.push(kk);
                }
            };
            if y > 0 {
                visit(z, y - 1, x);
            }
            if y + 1 < bh {
                visit(z, y + 1, x);
            }
            if x > 0 {
                visit(z, y, x - 1);
            }
            if x + 1 < bw {
                visit(z, y, x + 1);
            }
            if z > 0 {
                visit(z - 1, y, x);
            }
            if z + 1 < bd {
                visit(z + 1, y, x);
            }
        }
        for z in 0..bd {
            for y in 0..bh {
                for x in 0..bw {
                    if outside[(z * bh + y) * bw + x] == 0 {
                        labels[at(z, y, x)] = label;
                    }
                }
            }
        }
    }
    remove_small(labels, min_size, counts, drop);
    renumber_with(labels, map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_converging_to_two_sinks_get_two_labels() {
        let (h, w) = (20, 20);
        // 15 pixels end at (5,5), 15 at (14,14).
        let idx: Vec<u32> = (0..30).collect();
        let py: Vec<u32> = (0..30).map(|i| if i < 15 { 5 } else { 14 }).collect();
        let px = py.clone();
        let mut labels = vec![0; h * w];
        let mut py = py;
        labels_from_positions(
            &mut py,
            &px,
            &idx,
            h,
            w,
            0.4,
            &mut MaskScratch::default(),
            &mut labels,
        );
        assert!(labels[..15].iter().all(|&l| l == 1));
        assert!(labels[15..30].iter().all(|&l| l == 2));
        assert!(labels[30..].iter().all(|&l| l == 0));
    }

    #[test]
    fn sinks_with_too_few_pixels_make_no_mask() {
        let mut labels = vec![0; 100];
        let idx: Vec<u32> = (0..10).collect();
        labels_from_positions(
            &mut [3; 10],
            &[3; 10],
            &idx,
            10,
            10,
            0.4,
            &mut MaskScratch::default(),
            &mut labels,
        );
        assert!(labels.iter().all(|&l| l == 0));
    }

    #[test]
    fn renumbering_follows_first_appearance() {
        let mut l = vec![5, 0, 3, 7, 3, 5];
        assert_eq!(renumber(&mut l), 3);
        assert_eq!(l, vec![1, 0, 2, 3, 2, 1]);
    }

    #[test]
    fn holes_are_filled_and_small_masks_removed() {
        let (h, w) = (9, 9);
        let mut l = vec![0u32; h * w];
        for y in 1..8 {
            for x in 1..8 {
                l[y * w + x] = 2; // ring with a hole at the centre
            }
        }
        l[4 * w + 4] = 0;
        l[0] = 7; // one-pixel mask
        let n = fill_holes_and_remove_small(&mut l, [1, h, w], 15);
        assert_eq!(n, 1);
        assert_eq!(l[4 * w + 4], 1);
        assert_eq!(l[0], 0);
    }
}
