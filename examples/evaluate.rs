//! Accuracy of the Rust pipeline on a dsb2018-layout folder (`NAME_img.png`,
//! `NAME_masks.png`, `../manifest_<split>.csv`): AP at IoU 0.5/0.75/0.9 averaged over
//! images, per modality too, and for `--diameter auto` the estimated diameter against the
//! ground-truth median diameter.
//!
//! cargo run --release --example evaluate -- MODEL DIR [default|true|auto] [THREADS] [tta|plain] [auto|f32|tract]
//!
//! `tta` turns on test-time augmentation (`Params::augment`: flipped, overlapping tiles); the
//! last argument picks the code of the convolutions (`Model::with_convolution`: `tract` is
//! tract's own, the comparison for the direct convolution; `f32` runs an int8 file in f32).
use cellpose::metrics::average_precision;
use cellpose::{Convolution, Diameter, ImageView, Model, Params, Segmenter};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn read_png(path: &Path) -> (usize, usize, usize, Vec<u16>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let data = match info.bit_depth {
        png::BitDepth::Sixteen => buf[..info.buffer_size()]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
        _ => buf[..info.buffer_size()]
            .iter()
            .map(|&v| v as u16)
            .collect(),
    };
    (
        info.width as usize,
        info.height as usize,
        info.color_type.samples(),
        data,
    )
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let model = Model::load(&a[1]).expect("model");
    let dir = Path::new(&a[2]);
    let mode = a.get(3).map(String::as_str).unwrap_or("default");
    let threads: usize = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(1);
    let augment = a.get(5).map(String::as_str) == Some("tta");
    let model = match a.get(6).map(String::as_str) {
        None | Some("auto") => model,
        Some("f32") => model.with_convolution(Convolution::F32),
        Some("tract") => model.with_convolution(Convolution::Tract),
        Some(other) => panic!("unknown convolution {other}: auto, f32 or tract"),
    };
    eprintln!(
        "convolution {:?}, int8 model {}",
        model.convolution(),
        model.is_int8()
    );
    let split = dir.file_name().unwrap().to_str().unwrap();
    let manifest =
        std::fs::read_to_string(dir.parent().unwrap().join(format!("manifest_{split}.csv")))
            .unwrap();
    let mut rows: Vec<(String, String, f32)> = manifest
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].to_string(), f[6].parse().unwrap())
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seg = Segmenter::new(model, Params::default())
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let mut per_mod: BTreeMap<String, Vec<[f64; 3]>> = BTreeMap::new();
    let mut diam_err: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut all = Vec::new();
    let t0 = Instant::now();
    for (name, modality, gt_diam) in &rows {
        let (w, h, c, px) = read_png(&dir.join(format!("{name}_img.png")));
        let cc = c.min(3);
        let gray: Vec<f32> = (0..w * h)
            .map(|i| (0..cc).map(|k| px[i * c + k] as f32).sum::<f32>() / cc as f32)
            .collect();
        let (_, _, _, truth) = read_png(&dir.join(format!("{name}_masks.png")));
        let truth: Vec<u32> = truth.iter().map(|&v| v as u32).collect();
        let diameter = match mode {
            "true" => Diameter::Pixels(*gt_diam),
            "auto" => Diameter::Auto,
            _ => Diameter::ModelDefault,
        };
        seg.set_params(Params {
            diameter,
            augment,
            ..Params::default()
        })
        .unwrap();
        let s = seg
            .segment(&ImageView::planar_f32(1, h, w, &gray).unwrap())
            .unwrap();
        let ap = average_precision(&truth, &s.labels, &[0.5, 0.75, 0.9]);
        let v = [ap[0].ap, ap[1].ap, ap[2].ap];
        println!(
            "{name} {modality} n_true={} n_pred={} AP50={:.3} AP75={:.3} AP90={:.3} diameter_used={:.1} gt_diameter={gt_diam:.1}",
            ap[0].tp + ap[0].fn_,
            s.n_objects,
            v[0],
            v[1],
            v[2],
            s.diameter_used
        );
        per_mod.entry(modality.clone()).or_default().push(v);
        diam_err
            .entry(modality.clone())
            .or_default()
            .push(((s.diameter_used - gt_diam) / gt_diam).abs() as f64);
        all.push(v);
    }
    let secs = t0.elapsed().as_secs_f64();
    let mean = |v: &[[f64; 3]], k: usize| v.iter().map(|x| x[k]).sum::<f64>() / v.len() as f64;
    for (m, v) in &per_mod {
        let mut e = diam_err[m].clone();
        e.sort_by(f64::total_cmp);
        println!(
            "modality {m}: n={} AP50={:.4} AP75={:.4} AP90={:.4} median_rel_diameter_error={:.3}",
            v.len(),
            mean(v, 0),
            mean(v, 1),
            mean(v, 2),
            e[e.len() / 2]
        );
    }
    println!(
        "mode={mode} augment={augment} threads={threads} seconds_per_image={:.3}",
        secs / all.len() as f64
    );
    println!(
        "AP50={:.4} AP75={:.4} AP90={:.4} n={}",
        mean(&all, 0),
        mean(&all, 1),
        mean(&all, 2),
        all.len()
    );
}
