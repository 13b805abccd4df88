//! Parity with the reference implementation (cellpose 3.1.1.3 on CPU) on golden fixtures
//! made by `tests/fixtures/make_fixtures.py` from the shipped model's weights.

mod common;

use cellpose::metrics::average_precision;
use cellpose::{ImageView, MaskFormation, Model, Params, Segmenter};

struct Fixture {
    width: usize,
    height: usize,
    niter: u32,
    net: Vec<f32>,
    masks: Vec<u32>,
}

fn fixture(name: &str) -> Fixture {
    let dir = common::root().join("tests/fixtures").join(name);
    let meta = std::fs::read_to_string(dir.join("meta.txt")).unwrap();
    let get = |k: &str| {
        meta.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let net: Vec<f32> = std::fs::read(dir.join("net.f32"))
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let masks: Vec<u32> = std::fs::read(dir.join("masks.u16"))
        .unwrap()
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
        .collect();
    Fixture {
        width: get("width").parse().unwrap(),
        height: get("height").parse().unwrap(),
        niter: get("niter").parse().unwrap(),
        net,
        masks,
    }
}

const NAMES: [&str; 2] = ["dsb_00071198d059ba7f", "dsb_0e4c2e2780de7ec4"];

/// Fraction of reference masks matched one-to-one by ours at IoU ≥ `th`, and vice versa.
fn agreement(ours: &[u32], reference: &[u32], th: f64) -> (f64, usize, usize) {
    let s = average_precision(reference, ours, &[th])[0];
    (s.ap, s.tp + s.fn_, s.tp + s.fp)
}

#[test]
fn masks_from_reference_flows_match_the_reference_masks() {
    for name in NAMES {
        let f = fixture(name);
        let npix = f.width * f.height;
        let mut labels = vec![0u32; npix];
        let n = MaskFormation::new().labels(
            &f.net[..2 * npix],
            &f.net[2 * npix..],
            f.height,
            f.width,
            &Params::default(),
            f.niter,
            1,
            &mut labels,
        );
        let same = labels.iter().zip(&f.masks).filter(|(a, b)| a == b).count() as f64 / npix as f64;
        let (ap, nref, nours) = agreement(&labels, &f.masks, 0.9);
        eprintln!(
            "{name}: ours {n} objects, reference {nref}; identical pixels {:.5}; matched at IoU 0.9: {ap:.4}",
            same
        );
        assert_eq!(nours, n as usize);
        assert!(ap >= 0.95, "{name}: only {ap:.3} of masks agree at IoU 0.9");
        // What the README claims: every pixel carries the reference's label (the dynamics
        // and the flow check compute in the reference's order, on every instruction set).
        assert!(
            labels == f.masks,
            "{name}: only {same:.5} of pixels carry the reference's label"
        );
    }
}

#[test]
fn full_pipeline_on_the_image_agrees_with_the_reference() {
    let model = Model::load(common::model_path()).unwrap();
    let mut seg = Segmenter::new(model, Params::default()).unwrap();
    for name in NAMES {
        let f = fixture(name);
        let (w, h, img) = common::sample_gray(name);
        assert_eq!((w, h), (f.width, f.height));
        let s = seg
            .segment(&ImageView::planar_f32(1, h, w, &img).unwrap())
            .unwrap();
        let npix = w * h;
        let max_flow_diff = s
            .flows
            .iter()
            .zip(&f.net[..2 * npix])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let (ap, nref, nours) = agreement(&s.labels, &f.masks, 0.5);
        eprintln!(
            "{name}: ours {nours} objects, reference {nref}; max |Δflow| {max_flow_diff:.2e}; matched at IoU 0.5: {ap:.4}"
        );
        // The README's claim: within 1e-3 (the sum order of the convolutions differs from
        // PyTorch's and between instruction sets; 2–4e-5 measured on AVX-512).
        assert!(
            max_flow_diff < 1e-3,
            "{name}: network flows differ from the reference by {max_flow_diff}"
        );
        assert!(ap >= 0.95, "{name}: only {ap:.3} of masks agree at IoU 0.5");
    }
}
