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

/// Aggregated Jaccard index as the reference computes it: each true object is paired with
/// at most one predicted object (pairs with the highest IoU first), and the summed
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
    let mut pairs: Vec<(f64, (u32, u32), u64)> =
        o.pairs.iter().map(|&(k, i)| (o.iou(k, i), k, i)).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let (mut used_t, mut used_p) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    let mut inter = 0u64;
    for (_, (t, p), i) in pairs {
        if !used_t.contains(&t) && !used_p.contains(&p) {
            used_t.insert(t);
            used_p.insert(p);
            inter += i;
        }
    }
    inter as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ap(t: &[u32], p: &[u32]) -> f64 {
        average_precision(t, p, &[0.5])[0].ap
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
