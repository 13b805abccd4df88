//! `cellpose eval GT_DIR PRED_DIR`: AP at IoU 0.5/0.75/0.9 and aggregated Jaccard index of
//! each prediction against its ground truth, then the means over images.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use cellpose::metrics::{aggregated_jaccard_index, average_precision};

use crate::input::{Labels, read_labels};
use crate::{EXIT_SOME_FAILED, EXIT_USAGE, Fatal, one_line};

/// IoU thresholds reported, as in the Cellpose papers.
pub const THRESHOLDS: [f64; 3] = [0.5, 0.75, 0.9];
/// Ground-truth files are `NAME` + this + an extension.
const GT_SUFFIX: &str = "_masks";
const GT_EXTENSIONS: [&str; 3] = ["png", "tif", "tiff"];

/// Ground-truth files of a folder with their `NAME`, sorted by name.
fn ground_truths(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let (Some(stem), Some(ext)) = (
            p.file_stem().and_then(|s| s.to_str()),
            p.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let is_gt = GT_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(ext))
            && stem.ends_with(GT_SUFFIX)
            && !stem.ends_with("_cp_masks");
        if is_gt && p.is_file() {
            out.push((stem[..stem.len() - GT_SUFFIX.len()].to_string(), p));
        }
    }
    out.sort();
    Ok(out)
}

/// The prediction of `NAME`: `NAME_img_cp_masks.tif` (segmenting `NAME_img.png`) or
/// `NAME_cp_masks.tif`, also with `.tiff`.
fn prediction_for(dir: &Path, name: &str) -> Option<PathBuf> {
    ["_img_cp_masks", "_cp_masks"]
        .iter()
        .flat_map(|s| ["tif", "tiff"].map(|e| dir.join(format!("{name}{s}.{e}"))))
        .find(|p| p.is_file())
}

/// Scores of one image: AP at each threshold, AJI, object counts.
struct Score {
    ap: [f64; 3],
    aji: f64,
    n_true: usize,
    n_pred: usize,
}

fn score(gt: &Labels, pred: &Labels) -> Score {
    let s = average_precision(&gt.data, &pred.data, &THRESHOLDS);
    Score {
        ap: [s[0].ap, s[1].ap, s[2].ap],
        aji: aggregated_jaccard_index(&gt.data, &pred.data),
        n_true: s[0].tp + s[0].fn_,
        n_pred: s[0].tp + s[0].fp,
    }
}

fn evaluate(gt_path: &Path, pred_path: Option<&Path>) -> Result<Score> {
    let gt = read_labels(gt_path).map_err(|e| e.context(gt_path.display().to_string()))?;
    let pred = match pred_path {
        Some(p) => {
            let pred = read_labels(p).map_err(|e| e.context(p.display().to_string()))?;
            if (pred.width, pred.height) != (gt.width, gt.height) {
                bail!(
                    "{}: prediction is {}×{} pixels, ground truth {} is {}×{}",
                    p.display(),
                    pred.width,
                    pred.height,
                    gt_path.display(),
                    gt.width,
                    gt.height
                );
            }
            pred
        }
        None => Labels {
            width: gt.width,
            height: gt.height,
            data: vec![0; gt.data.len()],
        },
    };
    Ok(score(&gt, &pred))
}

pub fn run(gt_dir: &Path, pred_dir: &Path) -> Result<u8, Fatal> {
    for d in [gt_dir, pred_dir] {
        if !d.is_dir() {
            return Err(Fatal::new(
                EXIT_USAGE,
                format!("{}: not a folder", d.display()),
            ));
        }
    }
    let gts = ground_truths(gt_dir).map_err(|e| {
        Fatal::new(
            EXIT_USAGE,
            format!("{}: cannot list folder: {e}", gt_dir.display()),
        )
    })?;
    if gts.is_empty() {
        return Err(Fatal::new(
            EXIT_USAGE,
            format!(
                "{}: no ground-truth files NAME{GT_SUFFIX}.png/.tif in folder",
                gt_dir.display()
            ),
        ));
    }
    let (mut sums, mut n, mut failed, mut missing) = ([0.0f64; 4], 0usize, 0usize, 0usize);
    for (name, gt_path) in &gts {
        let pred = prediction_for(pred_dir, name);
        if pred.is_none() {
            missing += 1;
            eprintln!(
                "warning: {}: no prediction {name}_img_cp_masks.tif or {name}_cp_masks.tif in {}; counted as empty",
                gt_path.display(),
                pred_dir.display()
            );
        }
        match evaluate(gt_path, pred.as_deref()) {
            Ok(s) => {
                say!(
                    "{name} AP50={:.3} AP75={:.3} AP90={:.3} AJI={:.3} true={} pred={}{}",
                    s.ap[0],
                    s.ap[1],
                    s.ap[2],
                    s.aji,
                    s.n_true,
                    s.n_pred,
                    if pred.is_none() { " (missing)" } else { "" }
                );
                for (acc, v) in sums.iter_mut().zip(s.ap.iter().chain([&s.aji])) {
                    *acc += v;
                }
                n += 1;
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}", one_line(&e));
            }
        }
    }
    if missing > 0 || failed > 0 {
        eprintln!(
            "{missing} prediction{} missing (scored as empty), {failed} image{} not evaluated",
            if missing == 1 { "" } else { "s" },
            if failed == 1 { "" } else { "s" }
        );
    }
    if n == 0 {
        return Err(Fatal::new(EXIT_SOME_FAILED, "no image could be evaluated"));
    }
    let m = sums.map(|s| s / n as f64);
    say!(
        "AP50={:.3} AP75={:.3} AP90={:.3} AJI={:.3} n={n}",
        m[0],
        m[1],
        m[2],
        m[3]
    );
    Ok(if failed > 0 { EXIT_SOME_FAILED } else { 0 })
}
