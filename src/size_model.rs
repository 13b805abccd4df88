//! Automatic diameter: the reference style-vector regression (`models.SizeModel`).
//!
//! `log(d) = A · (style − smean) + log(diam_mean) + ymean`, clamped below at 5 pixels. The
//! refinement pass (segment once at the estimate, take the median mask diameter) lives in
//! the segmenter, which owns the pipeline.
//!
//! Stored in the ONNX `metadata_props` as `cellpose.size_model.A` and
//! `cellpose.size_model.smean` (comma-separated floats, one per style value) and
//! `cellpose.size_model.ymean` (one float), so one file carries network and size model.

use crate::error::ModelError;

/// Smallest diameter the reference size model returns.
const MIN_DIAMETER: f32 = 5.0;

#[derive(Debug, Clone, PartialEq)]
pub struct SizeModel {
    a: Vec<f32>,
    smean: Vec<f32>,
    ymean: f32,
    diam_mean: f32,
}

fn floats(key: &str, v: &str) -> Result<Vec<f32>, ModelError> {
    v.split(',')
        .map(|s| s.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| ModelError::Metadata {
            key: key.into(),
            value: v.chars().take(40).collect(),
            reason: "expected comma-separated finite numbers".into(),
        })
}

impl SizeModel {
    pub fn new(a: Vec<f32>, smean: Vec<f32>, ymean: f32, diam_mean: f32) -> Option<SizeModel> {
        (a.len() == smean.len() && !a.is_empty() && ymean.is_finite() && diam_mean > 0.0).then_some(
            SizeModel {
                a,
                smean,
                ymean,
                diam_mean,
            },
        )
    }

    /// Reads the size model from metadata; `Ok(None)` when the file has none.
    ///
    /// # Errors
    /// [`ModelError::Metadata`] when its values are missing, unparsable, not finite, or of
    /// a length other than the style's.
    pub fn from_metadata(
        meta: &[(String, String)],
        diam_mean: f32,
    ) -> Result<Option<SizeModel>, ModelError> {
        let get = |k: &str| {
            meta.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let (ka, ks, ky) = (
            "cellpose.size_model.A",
            "cellpose.size_model.smean",
            "cellpose.size_model.ymean",
        );
        let (Some(a), Some(s), Some(y)) = (get(ka), get(ks), get(ky)) else {
            return Ok(None);
        };
        let a = floats(ka, a)?;
        let smean = floats(ks, s)?;
        let ymean = floats(ky, y)?;
        if a.len() != smean.len() || ymean.len() != 1 {
            return Err(ModelError::Metadata {
                key: ka.into(),
                value: format!("{} values", a.len()),
                reason: format!("smean has {} values and ymean {}", smean.len(), ymean.len()),
            });
        }
        Ok(SizeModel::new(a, smean, ymean[0], diam_mean))
    }

    pub fn style_size(&self) -> usize {
        self.a.len()
    }

    /// Diameter (pixels of the input image) predicted from a normalised style vector.
    pub fn estimate(&self, style: &[f32]) -> f32 {
        let dot: f64 = self
            .a
            .iter()
            .zip(&self.smean)
            .zip(style)
            .map(|((a, m), s)| *a as f64 * (*s as f64 - *m as f64))
            .sum();
        let d = (dot + (self.diam_mean as f64).ln() + self.ymean as f64).exp() as f32;
        if d.is_finite() {
            d.max(MIN_DIAMETER)
        } else {
            self.diam_mean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_at_the_mean_predicts_diam_mean_times_exp_ymean() {
        let m = SizeModel::new(vec![0.5, -0.2], vec![0.1, 0.3], 0.2, 17.0).unwrap();
        let d = m.estimate(&[0.1, 0.3]);
        assert!((d - 17.0 * 0.2f32.exp()).abs() < 1e-4);
    }

    #[test]
    fn estimate_is_clamped_at_five_pixels() {
        let m = SizeModel::new(vec![100.0], vec![0.0], 0.0, 17.0).unwrap();
        assert_eq!(m.estimate(&[-1.0]), 5.0);
    }

    #[test]
    fn metadata_round_trip_and_malformed_values() {
        let meta = vec![
            ("cellpose.size_model.A".to_string(), "1,2".to_string()),
            (
                "cellpose.size_model.smean".to_string(),
                "0.5,0.25".to_string(),
            ),
            ("cellpose.size_model.ymean".to_string(), "-0.1".to_string()),
        ];
        let m = SizeModel::from_metadata(&meta, 17.0).unwrap().unwrap();
        assert_eq!(m.style_size(), 2);
        let mut bad = meta.clone();
        bad[0].1 = "1,x".into();
        assert!(SizeModel::from_metadata(&bad, 17.0).is_err());
        assert!(
            SizeModel::from_metadata(&meta[..2], 17.0)
                .unwrap()
                .is_none()
        );
    }
}
