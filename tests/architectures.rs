//! The same labels on every CPU: the pipeline on a committed image against the labels an
//! x86-64 machine with AVX-512 made (`tests/fixtures/x86_64_labels/`, 16-bit PNG), so that the aarch64
//! build (NEON kernels, run under qemu by `.ci/run`) and x86-64 machines with AVX2 only are
//! held to the machine the fixtures come from.
//!
//! Both forms compute in f32 here (the fp32 file, and the int8 file with its weights
//! dequantized, `Convolution::F32`), which every instruction set supports; kernels differ
//! only in the order of their additions (and Winograd's transform on AVX-512), so a few
//! boundary pixels may change and an object may split or merge where a flow field is
//! ambiguous. The labels must be identical or agree at AP50 ≥ 0.99; the test prints which.
//!
//! To remake the fixtures (on x86-64 with AVX-512 only):
//! `CELLPOSE_WRITE_X86_64_LABELS=1 cargo test --release --test architectures`.

mod common;

use cellpose::Isa;
use cellpose::metrics::average_precision;
use cellpose::{Convolution, Diameter, ImageView, Model, Params, Segmenter};

const IMAGE: &str = "dsb_00071198d059ba7f";
/// The top-left crop segmented: one network tile at the model's diameter, so that the test
/// takes about a minute under qemu (the emulated network runs ~100× slower than natively).
const SIDE: usize = 224;

fn labels(model_file: &str) -> Vec<u32> {
    let model = Model::load(common::root().join("models").join(model_file))
        .unwrap()
        .with_convolution(Convolution::F32);
    let (w, _, img) = common::sample_gray(IMAGE);
    let crop: Vec<f32> = (0..SIDE * SIDE)
        .map(|i| img[(i / SIDE) * w + i % SIDE])
        .collect();
    // The model's own mean diameter: no rescaling, so the crop is one tile.
    let params = Params {
        diameter: Diameter::Pixels(model.info().diam_mean),
        ..Params::default()
    };
    let mut seg = Segmenter::new(model, params)
        .unwrap()
        .with_threads(2)
        .unwrap();
    let view = ImageView::planar_f32(1, SIDE, SIDE, &crop).unwrap();
    seg.segment(&view).unwrap().labels
}

#[test]
fn labels_match_the_x86_64_avx512_labels_in_f32() {
    let dir = common::root().join("tests/fixtures/x86_64_labels");
    let write = std::env::var_os("CELLPOSE_WRITE_X86_64_LABELS").is_some();
    // The int8 file in f32 would run the same kernels with other weights: the fp32 file
    // stands for both.
    for file in ["nuclei_light.onnx"] {
        let ours = labels(file);
        let path = dir.join(format!("{IMAGE}_{}.png", file.trim_end_matches(".onnx")));
        if write {
            assert!(
                cfg!(target_arch = "x86_64") && Isa::best_f32() == Isa::Avx512,
                "the fixtures come from x86-64 with AVX-512"
            );
            std::fs::create_dir_all(&dir).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let mut enc = png::Encoder::new(file, SIDE as u32, SIDE as u32);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Sixteen);
            let bytes: Vec<u8> = ours
                .iter()
                .flat_map(|&l| (l as u16).to_be_bytes())
                .collect();
            enc.write_header()
                .unwrap()
                .write_image_data(&bytes)
                .unwrap();
            continue;
        }
        let x86: Vec<u32> = common::read_png(&path)
            .data
            .iter()
            .map(|&v| v as u32)
            .collect();
        assert_eq!(ours.len(), x86.len());
        let objects = |l: &[u32]| l.iter().copied().max().unwrap_or(0);
        let differing = ours.iter().zip(&x86).filter(|(a, b)| a != b).count();
        let ap50 = average_precision(&x86, &ours, &[0.5])[0].ap;
        eprintln!(
            "{file} on {:?}: {} objects (x86-64 AVX-512: {}), {differing} of {} pixels labelled \
             differently, AP50 against x86-64 {ap50:.4}",
            Isa::best_f32(),
            objects(&ours),
            objects(&x86),
            ours.len()
        );
        assert!(objects(&x86) > 10, "{file}: the fixture has objects");
        assert!(
            differing == 0 || ap50 >= 0.99,
            "{file}: AP50 {ap50:.4} against the x86-64 labels"
        );
    }
}
