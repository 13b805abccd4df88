//! End-to-end behaviour of the 2D pipeline on real images with the shipped model.

mod common;

use cellpose::metrics::average_precision;
use cellpose::{Diameter, ImageView, Model, Params, Segmenter};

fn segment(name: &str, params: Params, threads: usize) -> (cellpose::Segmentation, Vec<u32>) {
    let model = Model::load(common::model_path()).unwrap();
    let (w, h, img) = common::sample_gray(name);
    let mut seg = Segmenter::new(model, params)
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let view = ImageView::planar_f32(w, h, 1, &img).unwrap();
    (seg.segment(&view).unwrap(), common::sample_labels(name))
}

#[test]
fn shipped_model_finds_the_nuclei_of_a_test_image() {
    let (s, truth) = segment("dsb_00071198d059ba7f", Params::default(), 1);
    assert_eq!(s.labels.len(), 256 * 256);
    let ap = average_precision(&truth, &s.labels, &[0.5])[0];
    eprintln!(
        "objects {} ap50 {:.3} diameter {:.1}",
        s.n_objects, ap.ap, s.diameter_used
    );
    assert!(s.n_objects > 10, "found only {} objects", s.n_objects);
    assert!(ap.ap > 0.5, "AP50 {:.3}", ap.ap);
}

#[test]
fn labels_are_identical_across_runs_and_thread_counts() {
    let p = Params {
        diameter: Diameter::Pixels(24.0),
        ..Params::default()
    };
    let (a, _) = segment("dsb_e5a6c5e01e6a4ef6", p.clone(), 1);
    let (b, _) = segment("dsb_e5a6c5e01e6a4ef6", p.clone(), 2);
    let (c, _) = segment("dsb_e5a6c5e01e6a4ef6", p, 1);
    assert!(a.n_objects > 0);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.labels, c.labels);
}
