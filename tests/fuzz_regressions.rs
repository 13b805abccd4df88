//! Inputs the fuzz targets (`fuzz/`) found faults with, kept as tests of the behaviour that
//! was fixed. Each file lies in `tests/data/fuzz/` under the name of what it exercises; the
//! edited seed models are written by `fuzz/make_regression_models.py`.

use cellpose::{Model, ModelError};

fn fuzz_input(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/fuzz/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The error `Model::from_bytes` refuses fuzz input `name` with, and its text.
fn refused_model(name: &str) -> (ModelError, String) {
    let Err(err) = Model::from_bytes(&fuzz_input(name)) else {
        panic!("{name} must be refused");
    };
    let text = err.to_string();
    (err, text)
}

/// The message `Model::from_bytes` refuses `name` with: a parse or analysis error (what a
/// panic inside tract, caught, becomes), on one short line.
fn refused_in_one_line(name: &str) -> String {
    let (err, text) = refused_model(name);
    assert!(
        matches!(err, ModelError::Parse(_) | ModelError::Optimise { .. }),
        "{name}: {err:?}"
    );
    assert!(text.len() < 400 && !text.contains('\n'), "{name}: {text}");
    text
}

#[test]
fn a_model_whose_reduce_axis_lies_beyond_its_rank_is_refused_without_a_panic() {
    // A mutated CPnet file (`model_from_bytes` target): tract's graph analysis unwraps an
    // axis error inside `Reduce` and panicked through `Model::from_bytes`.
    let text = refused_in_one_line("model_reduce_axis_beyond_rank.onnx");
    assert!(text.contains("could not analyse"), "{text}");
}

#[test]
fn a_model_whose_output_names_no_tensor_is_refused_without_a_panic() {
    // Found by the `model_from_bytes` target as a panic caught inside tract-onnx's graph
    // building (`no entry found for key`, an output naming a tensor no node makes); made
    // from the fp32 tiny seed (`tiny.onnx`) with its first output renamed, by
    // `fuzz/make_regression_models.py`.
    refused_in_one_line("model_output_names_no_tensor.onnx");
}

#[test]
fn a_model_whose_convolution_has_too_few_pads_is_refused_without_a_panic() {
    // `model_from_bytes` on the minimal seed network: a `Conv` with three `pads` values for
    // two spatial axes made tract's padding arithmetic index past the list (a panic inside
    // its graph analysis, caught). Made from the minimal seed with `pads` = [1, 1, 1]
    // (`fuzz/make_regression_models.py`).
    refused_in_one_line("model_conv_pads_too_few.onnx");
}

#[test]
fn a_model_with_a_string_tensor_in_raw_bytes_is_refused_without_a_panic() {
    // `model_from_bytes` on the minimal seed network: an initializer of type STRING stored
    // as raw bytes reaches tract-onnx's `unimplemented!` for raw tensor loading. Made from
    // the minimal seed with its bias retyped as STRING and given 12 zero bytes of raw data
    // (`fuzz/make_regression_models.py`).
    refused_in_one_line("model_string_tensor_as_raw_bytes.onnx");
}

#[test]
fn a_stack_of_one_plane_in_3d_flows_mode_is_refused_without_a_panic() {
    // `volume_api` target: a stack of one plane, stretched along Z for the network by its
    // anisotropy, reached the 3D dynamics at its own size (resampled back), which need two
    // voxels along every axis, and panicked.
    use cellpose::{Error, ImageError, Params, VolumeParams, VolumeSegmenter, VolumeView};
    let model = Model::load(format!(
        "{}/models/nuclei_light_int8.onnx",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let vp = VolumeParams {
        mode: cellpose::VolumeMode::Flows3d,
        anisotropy: 4.0,
        // Every voxel moves, so that the dynamics run whatever the network predicts.
        params: Params {
            cellprob_threshold: -50.0,
            ..Params::default()
        },
    };
    let mut seg = VolumeSegmenter::new(model, vp).unwrap();
    let px: Vec<u16> = (0..48 * 40).map(|i| ((i * 37) % 4001) as u16).collect();
    let view = VolumeView::gray_u16(1, 48, 40, &px).unwrap();
    match seg.segment(&view) {
        Err(Error::Image(ImageError::TooThinFor3d { depth: 1, .. })) => {}
        other => panic!("expected TooThinFor3d, got {other:?}"),
    }
}

#[test]
fn a_model_whose_output_shape_stays_symbolic_is_refused_in_one_short_line() {
    // A mutated CPnet (`model_from_bytes` target, reported as a slow input): its output shape
    // cannot be made concrete and printed as a 371,000-character expression in the error.
    let (err, text) = refused_model("model_output_shape_not_concrete.onnx");
    assert!(matches!(err, ModelError::OutputShape { .. }), "{err:?}");
    assert!(
        text.len() < 400 && text.contains("more characters"),
        "{} characters: {}",
        text.len(),
        &text[..200]
    );
}
