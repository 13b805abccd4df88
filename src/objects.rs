//! Per-object summaries of a label image, for decisions during acquisition.

/// One labelled object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectSummary {
    pub label: u32,
    /// Pixels in the object.
    pub area: u64,
    /// Mean row and column of the object's pixels.
    pub centroid_y: f64,
    pub centroid_x: f64,
    /// Bounding box, inclusive top-left and exclusive bottom-right.
    pub bbox_y0: u32,
    pub bbox_x0: u32,
    pub bbox_y1: u32,
    pub bbox_x1: u32,
    /// Mean of the given intensity plane over the object (NaN when none was given).
    pub mean_intensity: f64,
}

/// Summaries of labels 1..=max present in `labels` (`height × width`, row-major), in label
/// order. `intensity`, when given, is a plane of the same size.
pub fn object_summaries(
    labels: &[u32],
    width: usize,
    intensity: Option<&[f32]>,
) -> Vec<ObjectSummary> {
    let mut out = Vec::new();
    object_summaries_into(labels, width, intensity, &mut out);
    out
}

/// [`object_summaries`] into a reused vector.
pub fn object_summaries_into(
    labels: &[u32],
    width: usize,
    intensity: Option<&[f32]>,
    out: &mut Vec<ObjectSummary>,
) {
    out.clear();
    if width == 0 {
        return;
    }
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let empty = ObjectSummary {
        label: 0,
        area: 0,
        centroid_y: 0.0,
        centroid_x: 0.0,
        bbox_y0: u32::MAX,
        bbox_x0: u32::MAX,
        bbox_y1: 0,
        bbox_x1: 0,
        mean_intensity: 0.0,
    };
    out.resize(max, empty);
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let (y, x) = ((i / width) as u32, (i % width) as u32);
        let o = &mut out[l as usize - 1];
        o.area += 1;
        o.centroid_y += y as f64;
        o.centroid_x += x as f64;
        o.bbox_y0 = o.bbox_y0.min(y);
        o.bbox_x0 = o.bbox_x0.min(x);
        o.bbox_y1 = o.bbox_y1.max(y + 1);
        o.bbox_x1 = o.bbox_x1.max(x + 1);
        if let Some(img) = intensity {
            o.mean_intensity += img[i] as f64;
        }
    }
    for (k, o) in out.iter_mut().enumerate() {
        o.label = k as u32 + 1;
        if o.area > 0 {
            let a = o.area as f64;
            o.centroid_y /= a;
            o.centroid_x /= a;
            o.mean_intensity = if intensity.is_some() {
                o.mean_intensity / a
            } else {
                f64::NAN
            };
        }
    }
    out.retain(|o| o.area > 0);
}

/// Reference `utils.diameters`: median over objects of `sqrt(area)`, divided by
/// `sqrt(pi)/2`, i.e. the diameter of a disk of the median area. 0 when there are none.
#[cfg(test)]
pub fn median_diameter(labels: &[u32]) -> f32 {
    median_diameter_with(labels, &mut Vec::new(), &mut Vec::new())
}

/// [`median_diameter`] with reusable buffers (per-label pixel counts and radii).
pub fn median_diameter_with(labels: &[u32], counts: &mut Vec<u64>, r: &mut Vec<f64>) -> f32 {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    counts.clear();
    counts.resize(max + 1, 0);
    for &l in labels {
        counts[l as usize] += 1;
    }
    r.clear();
    r.extend(
        counts[1..]
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| (c as f64).sqrt()),
    );
    if r.is_empty() {
        return 0.0;
    }
    // Unstable sort: equal radii are interchangeable, and it does not allocate.
    r.sort_unstable_by(f64::total_cmp);
    let n = r.len();
    let med = if n % 2 == 1 {
        r[n / 2]
    } else {
        0.5 * (r[n / 2 - 1] + r[n / 2])
    };
    (med / (std::f64::consts::PI.sqrt() / 2.0)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_give_area_centroid_and_box() {
        let l = vec![0, 1, 1, 0, 0, 1, 0, 3, 3];
        let s = object_summaries(&l, 3, Some(&[0.0, 2.0, 4.0, 0.0, 0.0, 6.0, 0.0, 1.0, 1.0]));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].label, s[0].area), (1, 3));
        assert!((s[0].centroid_y - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (s[0].bbox_y0, s[0].bbox_x0, s[0].bbox_y1, s[0].bbox_x1),
            (0, 1, 2, 3)
        );
        assert!((s[0].mean_intensity - 4.0).abs() < 1e-12);
        assert_eq!(s[1].label, 3);
    }

    #[test]
    fn median_diameter_of_a_square_mask() {
        let l = vec![1u32; 100];
        assert!((median_diameter(&l) - 10.0 / (std::f32::consts::PI.sqrt() / 2.0)).abs() < 1e-4);
        assert_eq!(median_diameter(&[0, 0]), 0.0);
    }
}
