//! The direct convolution inside the shipped networks, on real images: against tract's own
//! convolution (f32), and the int8 model computing in int8.

mod common;

use cellpose::metrics::average_precision;
use cellpose::{Convolution, Diameter, ImageView, Model, Params, Segmentation, Segmenter};

fn segment(model: &Model, name: &str, threads: usize) -> Segmentation {
    let (w, h, img) = common::sample_gray(name);
    // Annotated median diameters (tests/data/SOURCES.md); several tiles per image at this scale.
    let params = Params {
        diameter: Diameter::Pixels(17.95),
        ..Params::default()
    };
    let mut seg = Segmenter::new(model.clone(), params)
        .unwrap()
        .with_threads(threads)
        .unwrap();
    seg.segment(&ImageView::planar_f32(1, h, w, &img).unwrap())
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

const IMAGES: [&str; 2] = ["dsb_00071198d059ba7f", "dsb_0e4c2e2780de7ec4"];

#[test]
fn direct_convolution_flows_match_tracts_own_convolution_on_real_tiles() {
    let ours = Model::load(common::model_path()).unwrap();
    assert_eq!(ours.convolution(), Convolution::Auto);
    assert!(!ours.is_int8(), "the fp32 file has no int8 scales");
    let tract = ours.with_convolution(Convolution::Tract);
    for name in IMAGES {
        let (a, b) = (segment(&ours, name, 2), segment(&tract, name, 2));
        let flows = max_abs_diff(&a.flows, &b.flows);
        let prob = max_abs_diff(&a.cell_prob, &b.cell_prob);
        let style = max_abs_diff(&a.style, &b.style);
        eprintln!(
            "{name}: max |Δ| flows {flows:.2e}, cell probability {prob:.2e}, style {style:.2e}"
        );
        assert!(flows <= 1e-3 && prob <= 1e-3 && style <= 1e-4, "{name}");
        assert_eq!(a.n_objects, b.n_objects, "{name}");
    }
}

#[test]
fn shipped_int8_model_computes_in_int8_close_to_f32() {
    let path = common::root().join("models/nuclei_light_int8.onnx");
    let int8 = Model::load(&path).unwrap();
    assert!(
        int8.is_int8(),
        "the shipped int8 model carries its activation scales"
    );
    let f32 = int8.with_convolution(Convolution::F32);
    for name in IMAGES {
        let (q, f) = (segment(&int8, name, 2), segment(&f32, name, 2));
        let truth = common::sample_labels(name);
        let ap_q = average_precision(&truth, &q.labels, &[0.5])[0].ap;
        let ap_f = average_precision(&truth, &f.labels, &[0.5])[0].ap;
        let mean_flow = q
            .flows
            .iter()
            .zip(&f.flows)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / q.flows.len() as f64;
        eprintln!(
            "{name}: objects {} / {} (int8 / f32), AP50 {ap_q:.3} / {ap_f:.3}, mean |Δ flows| {mean_flow:.3}",
            q.n_objects, f.n_objects
        );
        if cellpose::Isa::best_i8().is_some() {
            // Computing in int8 changes the values a little, not the objects.
            assert!(mean_flow > 0.0, "{name}: int8 kernels did not run");
        }
        assert!(mean_flow < 0.05, "{name}");
        assert!((ap_q - ap_f).abs() <= 0.05, "{name}: AP50 {ap_q} vs {ap_f}");
    }
}

#[test]
fn flows_and_labels_are_identical_across_runs_and_thread_counts() {
    // IMAGES[1] (320×256, rescaled to 303×242) is four tiles: on two threads they run side
    // by side, one a thread; on one thread one after the other.
    for file in ["models/nuclei_light_int8.onnx", "models/nuclei_light.onnx"] {
        let model = Model::load(common::root().join(file)).unwrap();
        let a = segment(&model, IMAGES[1], 1);
        let b = segment(&model, IMAGES[1], 2);
        let c = segment(&model, IMAGES[1], 2);
        assert!(a.n_objects > 0);
        assert_eq!(a.labels, b.labels, "{file}");
        assert_eq!(b.labels, c.labels, "{file}");
        assert_eq!(a.flows, b.flows, "{file}");
        assert_eq!(a.style, b.style, "{file}");
    }
}
