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
    let view = ImageView::planar_f32(1, h, w, &img).unwrap();
    (seg.segment(&view).unwrap(), common::sample_labels(name))
}

#[test]
fn shipped_model_finds_the_nuclei_of_a_test_image() {
    // Annotated median diameter of this image: 17.95 px (tests/data/SOURCES.md).
    let p = Params {
        diameter: Diameter::Pixels(17.95),
        ..Params::default()
    };
    let (s, truth) = segment("dsb_00071198d059ba7f", p, 1);
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

#[test]
fn automatic_diameter_is_reported_and_near_the_annotated_size() {
    let model = Model::load(common::model_path()).unwrap();
    if model.info().size_model.is_none() {
        panic!("the shipped model must carry a size model");
    }
    let (s, truth) = segment(
        "dsb_e5a6c5e01e6a4ef6",
        Params {
            diameter: Diameter::Auto,
            ..Params::default()
        },
        1,
    );
    // Annotated median diameter of this image: 23.77 px (tests/data/SOURCES.md).
    eprintln!(
        "auto diameter {:.2} px, {} objects",
        s.diameter_used, s.n_objects
    );
    assert!(
        (s.diameter_used - 23.77).abs() / 23.77 < 0.35,
        "auto diameter {}",
        s.diameter_used
    );
    let ap = average_precision(&truth, &s.labels, &[0.5])[0];
    assert!(ap.ap > 0.5, "AP50 with auto diameter {:.3}", ap.ap);
}

/// The shipped whole-cell model on a committed usiigaci test image (phase contrast, 16-bit;
/// MIT notice in tests/data/cells/LICENSE-usiigaci), found by name as the CLI's `--model cyto`,
/// with automatic diameter as the CLI's default.
#[test]
fn shipped_cyto_model_segments_whole_cells_in_phase_contrast() {
    let model = cellpose::ShippedModel::Cyto.load().unwrap();
    assert_eq!(model.info().diam_mean, 30.0);
    assert!(model.info().size_model.is_some());
    let p = common::read_png(&common::root().join("tests/data/cells/usiigaci_set19_img.png"));
    assert_eq!((p.width, p.height, p.channels), (512, 511, 1));
    let truth: Vec<u32> =
        common::read_png(&common::root().join("tests/data/cells/usiigaci_set19_masks.png"))
            .data
            .iter()
            .map(|&v| v as u32)
            .collect();
    let mut seg = Segmenter::new(
        model,
        Params {
            diameter: Diameter::Auto,
            ..Params::default()
        },
    )
    .unwrap()
    .with_threads(2)
    .unwrap();
    let s = seg
        .segment(&ImageView::gray_u16(p.height, p.width, &p.data).unwrap())
        .unwrap();
    let ap = average_precision(&truth, &s.labels, &[0.5, 0.75]);
    eprintln!(
        "cyto: {} cells (76 annotated), diameter {:.1} px (annotated median 22.55), AP50 {:.3}, AP75 {:.3}",
        s.n_objects, s.diameter_used, ap[0].ap, ap[1].ap
    );
    // models/results/cyto_light/rust_int8_auto_usiigaci_test.txt: AP50 0.678, 75 cells,
    // 20.1 px for this image (the hardest third of the test split; the mean is 0.765).
    assert!(ap[0].ap > 0.6, "AP50 {:.3}", ap[0].ap);
    assert!((50..=100).contains(&s.n_objects), "{} cells", s.n_objects);
    assert!(
        (s.diameter_used - 22.55).abs() / 22.55 < 0.35,
        "diameter {}",
        s.diameter_used
    );
}

#[test]
fn returned_flows_and_probabilities_are_the_networks_whatever_moved() {
    // The dynamics run on the segmentation's own flow buffer (masked and divided by 5 where
    // pixels move) and the flows are then made again: every pixel moving and none moving
    // must return the same network outputs, at the network's scale (the model's `diam_mean`)
    // and rescaled (flows resized to the image). (Automatic diameter is left out: there the
    // threshold changes the masks the diameter is measured on, hence the scale.)
    let diam_mean = Model::load(common::model_path()).unwrap().info().diam_mean;
    for diameter in [Diameter::Pixels(diam_mean), Diameter::Pixels(24.0)] {
        let run = |cellprob_threshold: f32| {
            let p = Params {
                diameter,
                cellprob_threshold,
                ..Params::default()
            };
            segment("dsb_e5a6c5e01e6a4ef6", p, 1).0
        };
        let (all, none) = (run(-50.0), run(50.0));
        assert!(all.n_objects > 0 && none.n_objects == 0, "{diameter:?}");
        assert!(all.flows.iter().any(|v| v.abs() > 1.0), "{diameter:?}");
        assert!(all.flows == none.flows, "flows differ, {diameter:?}");
        assert!(
            all.cell_prob == none.cell_prob,
            "probabilities differ, {diameter:?}"
        );
    }
}
