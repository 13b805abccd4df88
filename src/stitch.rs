//! Per-plane label images joined into 3D objects by overlap (reference `utils.stitch3D`).
//!
//! Planes are visited from the first to the last. A mask of plane `z + 1` takes the label of
//! the mask of plane `z` it overlaps best, when their IoU reaches the threshold and no other
//! mask of plane `z + 1` overlaps that label better; every other mask gets a new label.

use std::collections::HashMap;

/// Stitches the planes of `labels` (`shape = (depth, height, width)`, each plane labelled
/// on its own, 0 = background) in place. Returns the largest label used.
///
/// One deliberate difference from the reference: cellpose 3.1.1.3 restarts its label counter
/// when an empty plane follows the first planes before any two non-empty planes have met,
/// which gives objects on both sides of that empty plane the same labels. Here the counter
/// only grows, so labels stay distinct; every other case is the reference's rule.
pub fn stitch_planes(labels: &mut [u32], shape: [usize; 3], threshold: f32) -> u32 {
    let [d, h, w] = shape;
    let plane = h * w;
    assert_eq!(labels.len(), d * plane);
    if d == 0 {
        return 0;
    }
    let mut mmax = labels[..plane].iter().copied().max().unwrap_or(0);
    let threshold = threshold as f64;
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    let mut new_area: Vec<u64> = Vec::new();
    let mut prev_area: HashMap<u32, u64> = HashMap::new();
    for z in 1..d {
        let (done, rest) = labels.split_at_mut(z * plane);
        let prev = &done[(z - 1) * plane..];
        let cur = &mut rest[..plane];
        let n_new = cur.iter().copied().max().unwrap_or(0) as usize;
        if n_new == 0 {
            continue;
        }
        new_area.clear();
        new_area.resize(n_new + 1, 0);
        prev_area.clear();
        pairs.clear();
        for (&a, &b) in cur.iter().zip(prev) {
            new_area[a as usize] += 1;
            *prev_area.entry(b).or_insert(0) += 1;
            if a > 0 && b > 0 {
                pairs.push((a, b));
            }
        }
        pairs.sort_unstable();
        // (new label, previous label, IoU) for overlaps at or above the threshold.
        let mut cands: Vec<(u32, u32, f64)> = Vec::new();
        let mut i = 0;
        while i < pairs.len() {
            let mut j = i;
            while j < pairs.len() && pairs[j] == pairs[i] {
                j += 1;
            }
            let (a, b) = pairs[i];
            let inter = (j - i) as u64;
            let union = new_area[a as usize] + prev_area[&b] - inter;
            let iou = inter as f64 / union as f64;
            if iou >= threshold {
                cands.push((a, b, iou));
            }
            i = j;
        }
        // Only the best new mask of each previous label may take it.
        let mut col_max: HashMap<u32, f64> = HashMap::new();
        for &(_, b, iou) in &cands {
            let m = col_max.entry(b).or_insert(0.0);
            if iou > *m {
                *m = iou;
            }
        }
        // Best remaining previous label per new mask; ties go to the smaller label.
        let mut best: Vec<Option<(f64, u32)>> = vec![None; n_new + 1];
        for &(a, b, iou) in &cands {
            if iou < col_max[&b] {
                continue;
            }
            let slot = &mut best[a as usize];
            match slot {
                Some((bi, bb)) if *bi > iou || (*bi == iou && *bb < b) => {}
                _ => *slot = Some((iou, b)),
            }
        }
        let mut map = vec![0u32; n_new + 1];
        for a in 1..=n_new {
            map[a] = match best[a] {
                Some((_, b)) => b,
                None => {
                    mmax += 1;
                    mmax
                }
            };
        }
        for l in cur.iter_mut() {
            *l = map[*l as usize];
        }
    }
    mmax
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_masks_on_consecutive_planes_share_a_label() {
        // Three 4×4 planes: a square that persists, and a mask that appears on plane 2.
        let (h, w) = (4, 4);
        let mut l = vec![0u32; 3 * h * w];
        for z in 0..3 {
            for y in 0..2 {
                for x in 0..2 {
                    l[z * h * w + y * w + x] = 1;
                }
            }
        }
        l[2 * h * w + 3 * w + 3] = 2;
        let m = stitch_planes(&mut l, [3, h, w], 0.25);
        assert_eq!(m, 2);
        assert!((0..3).all(|z| l[z * h * w] == 1));
        assert_eq!(l[2 * h * w + 3 * w + 3], 2);
    }

    #[test]
    fn low_overlap_starts_a_new_object_and_labels_survive_empty_planes() {
        let (h, w) = (4, 8);
        let mut l = vec![0u32; 4 * h * w];
        // Plane 0: columns 0..4; plane 1: columns 3..8 (IoU 1/8 with plane 0).
        for y in 0..h {
            for x in 0..4 {
                l[y * w + x] = 1;
            }
            for x in 3..8 {
                l[h * w + y * w + x] = 1;
            }
            // Plane 2 empty, plane 3: columns 0..2.
            for x in 0..2 {
                l[3 * h * w + y * w + x] = 1;
            }
        }
        stitch_planes(&mut l, [4, h, w], 0.25);
        assert_eq!(l[0], 1);
        assert_eq!(l[h * w + 7], 2);
        assert_eq!(l[3 * h * w], 3, "the object after the empty plane is new");
    }
}
