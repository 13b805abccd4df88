//! Accuracy of a label image against ground truth (reference `metrics.average_precision`,
//! `metrics.aggregated_jaccard_index`).
//!
//! AP at an IoU threshold is TP / (TP + FP + FN) with one-to-one matching. For thresholds
//! ≥ 0.5 the reference's assignment (maximise the number of pairs above the threshold) is a
//! maximum-cardinality bipartite matching over the pairs above the threshold, computed here
//! exactly with augmenting paths.

use std::collections::HashMap;

/// Overlaps between the objects of two label images.
pub struct Overlaps {
    /// Present labels and their areas.
    pub true_area: HashMap<u32, u64>,
    pub pred_area: HashMap<u32, u64>,
    /// Pixel counts of every overlapping (true, pred) pair, sorted.
    pub pairs: Vec<((u32, u32), u64)>,
}

impl Overlaps {
    pub fn new(truth: &[u32], pred: &[u32]) -> Overlaps {
        assert_eq!(truth.len(), pred.len(), "label images differ in size");
        let mut true_area = HashMap::new();
        let mut pred_area = HashMap::new();
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
        for (&t, &p) in truth.iter().zip(pred) {
            if t != 0 {
                *true_area.entry(t).or_insert(0) += 1;
            }
            if p != 0 {
                *pred_area.entry(p).or_insert(0) += 1;
            }
            if t != 0 && p != 0 {
                *pairs.entry((t, p)).or_insert(0) += 1;
            }
        }
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort_unstable();
        Overlaps {
            true_area,
            pred_area,
            pairs,
        }
    }

    fn iou(&self, (t, p): (u32, u32), inter: u64) -> f64 {
        inter as f64 / (self.true_area[&t] + self.pred_area[&p] - inter) as f64
    }

    /// Size of a maximum one-to-one matching among pairs with IoU ≥ `threshold`.
    pub fn true_positives(&self, threshold: f64) -> usize {
        let mut adj: HashMap<u32, Vec<u32>> = HashMap::new();
        for &(tp, inter) in &self.pairs {
            if self.iou(tp, inter) >= threshold {
                adj.entry(tp.0).or_default().push(tp.1);
            }
        }
        let mut owner: HashMap<u32, u32> = HashMap::new();
        let mut keys: Vec<u32> = adj.keys().copied().collect();
        keys.sort_unstable();
        let mut count = 0;
        for t in keys {
            let mut seen = std::collections::HashSet::new();
            if augment(t, &adj, &mut owner, &mut seen) {
                count += 1;
            }
        }
        count
    }
}

fn augment(
    t: u32,
    adj: &HashMap<u32, Vec<u32>>,
    owner: &mut HashMap<u32, u32>,
    seen: &mut std::collections::HashSet<u32>,
) -> bool {
    for &p in adj.get(&t).map(|v| v.as_slice()).unwrap_or(&[]) {
        if !seen.insert(p) {
            continue;
        }
        let prev = owner.get(&p).copied();
        if prev.is_none() || augment(prev.unwrap(), adj, owner, seen) {
            owner.insert(p, t);
            return true;
        }
    }
    false
}

/// AP and counts of one image at one threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApScore {
    pub threshold: f64,
    pub ap: f64,
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
}

/// AP = TP / (TP + FP + FN) at each threshold. Two empty images score 1 (nothing to find,
/// nothing found); the reference gives NaN there.
pub fn average_precision(truth: &[u32], pred: &[u32], thresholds: &[f64]) -> Vec<ApScore> {
    let o = Overlaps::new(truth, pred);
    let (nt, np) = (o.true_area.len(), o.pred_area.len());
    thresholds
        .iter()
        .map(|&th| {
            let tp = o.true_positives(th);
            let (fp, fn_) = (np - tp, nt - tp);
            let denom = tp + fp + fn_;
            ApScore {
                threshold: th,
                ap: if denom == 0 {
                    1.0
                } else {
                    tp as f64 / denom as f64
                },
                tp,
                fp,
                fn_,
            }
        })
        .collect()
}

/// Aggregated Jaccard index as the reference computes it (`metrics.aggregated_jaccard_index`
/// with `mask_ious`): true and predicted objects are paired by the reference's optimal
/// assignment (the most pairs with IoU ≥ 0.5, then the largest summed IoU: the minimum of
/// `-(IoU ≥ 0.5) - IoU / (2 · n_min)`, scipy's `linear_sum_assignment`), and the summed
/// intersections of the pairs are divided by the union of all foreground.
pub fn aggregated_jaccard_index(truth: &[u32], pred: &[u32]) -> f64 {
    let o = Overlaps::new(truth, pred);
    let union = truth
        .iter()
        .zip(pred)
        .filter(|(t, p)| **t != 0 || **p != 0)
        .count();
    if union == 0 {
        return 1.0;
    }
    let mut ts: Vec<u32> = o.true_area.keys().copied().collect();
    let mut ps: Vec<u32> = o.pred_area.keys().copied().collect();
    ts.sort_unstable();
    ps.sort_unstable();
    if ts.is_empty() || ps.is_empty() {
        return 0.0;
    }
    let (ti, pi): (HashMap<u32, usize>, HashMap<u32, usize>) = (
        ts.iter().enumerate().map(|(i, &t)| (t, i)).collect(),
        ps.iter().enumerate().map(|(i, &p)| (p, i)).collect(),
    );
    let n_min = ts.len().min(ps.len()) as f64;
    let (rows, cols) = (ts.len(), ps.len());
    let mut cost = vec![0f64; rows * cols];
    let mut inter = vec![0u64; rows * cols];
    for &((t, p), i) in &o.pairs {
        let iou = o.iou((t, p), i);
        let at = ti[&t] * cols + pi[&p];
        cost[at] = -((iou >= 0.5) as u8 as f64) - iou / (2.0 * n_min);
        inter[at] = i;
    }
    let pairs = min_cost_assignment(&cost, rows, cols);
    let inter: u64 = pairs.iter().map(|&(r, c)| inter[r * cols + c]).sum();
    inter as f64 / union as f64
}

/// A minimum-cost one-to-one assignment of `min(rows, cols)` pairs in a dense `rows × cols`
/// cost matrix (row-major), as `(row, col)` pairs: the Hungarian method with potentials
/// (shortest augmenting paths, O(n² m)), the problem scipy's `linear_sum_assignment` solves.
fn min_cost_assignment(cost: &[f64], rows: usize, cols: usize) -> Vec<(usize, usize)> {
    // Work on n ≤ m: rows are the smaller side.
    let transposed = rows > cols;
    let (n, m) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let a = |i: usize, j: usize| {
        if transposed {
            cost[j * cols + i]
        } else {
            cost[i * cols + j]
        }
    };
    // 1-based arrays; column 0 is the virtual start of each augmenting path.
    let (mut u, mut v) = (vec![0f64; n + 1], vec![0f64; m + 1]);
    let mut owner = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        owner[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = owner[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = a(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if owner[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            owner[j0] = owner[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    (1..=m)
        .filter(|&j| owner[j] != 0)
        .map(|j| {
            let (r, c) = (owner[j] - 1, j - 1);
            if transposed { (c, r) } else { (r, c) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(t: &[u32], p: &[u32]) -> f64 {
        average_precision(t, p, &[0.5])[0].ap
    }

    #[test]
    fn the_assignment_is_the_cheapest_one_to_one_pairing() {
        // Greedy (0 then 1 → costs 1 + 100) loses to 2 + 3.
        let cost = [1.0, 2.0, 3.0, 100.0];
        let mut p = min_cost_assignment(&cost, 2, 2);
        p.sort_unstable();
        assert_eq!(p, vec![(0, 1), (1, 0)]);
        // Rectangular both ways: every row (or column) of the smaller side is paired.
        let wide = [5.0, 1.0, 4.0, 2.0, 8.0, 3.0];
        let mut p = min_cost_assignment(&wide, 2, 3);
        p.sort_unstable();
        assert_eq!(p, vec![(0, 1), (1, 0)]);
        let tall = [5.0, 2.0, 1.0, 8.0, 4.0, 3.0];
        let mut p = min_cost_assignment(&tall, 3, 2);
        p.sort_unstable();
        assert_eq!(p, vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn aji_pairs_objects_as_the_reference_does_when_every_overlap_is_under_half() {
        // Truth 1 overlaps prediction 1 by 4 px and prediction 2 by 3 px; truth 2 overlaps
        // prediction 1 by 3 px only. Highest-IoU-first pairs (1, 1) and leaves truth 2
        // alone; the optimal assignment takes (1, 2) and (2, 1): 3 + 3 px.
        let t = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 0, 0, 0];
        let p = [1, 1, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1, 1, 1, 1];
        let union = t
            .iter()
            .zip(&p)
            .filter(|(a, b)| **a != 0 || **b != 0)
            .count();
        assert_eq!(aggregated_jaccard_index(&t, &p), 6.0 / union as f64);
    }

    #[test]
    fn perfect_match_scores_one() {
        let t = [0, 1, 1, 2, 2, 0];
        let p = [0, 7, 7, 3, 3, 0];
        assert_eq!(ap(&t, &p), 1.0);
        assert_eq!(aggregated_jaccard_index(&t, &p), 1.0);
    }

    #[test]
    fn one_split_cell_costs_one_tp_and_adds_fps() {
        // true: one object of 4 px; pred: split in two halves of 2 px -> IoU 0.5 each.
        let t = [1, 1, 1, 1];
        let p = [1, 1, 2, 2];
        let s = average_precision(&t, &p, &[0.5, 0.75])[..].to_vec();
        assert_eq!((s[0].tp, s[0].fp, s[0].fn_), (1, 1, 0));
        assert!((s[0].ap - 0.5).abs() < 1e-12);
        assert_eq!((s[1].tp, s[1].fp, s[1].fn_), (0, 2, 1));
    }

    #[test]
    fn missed_cell_is_a_false_negative() {
        let t = [1, 1, 0, 2, 2];
        let p = [1, 1, 0, 0, 0];
        let s = average_precision(&t, &p, &[0.5])[0];
        assert_eq!((s.tp, s.fp, s.fn_), (1, 0, 1));
        assert!((s.ap - 0.5).abs() < 1e-12);
    }

    #[test]
    fn empty_prediction_scores_zero() {
        assert_eq!(ap(&[1, 1, 2], &[0, 0, 0]), 0.0);
        assert_eq!(aggregated_jaccard_index(&[1, 1, 2], &[0, 0, 0]), 0.0);
    }
}
