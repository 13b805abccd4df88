//! Inputs the fuzz targets (`fuzz/`) found faults with, kept as tests of the behaviour that
//! was fixed. Each file lies in `tests/data/fuzz/` under the name of what it exercises.

use cellpose::{Model, ModelError};

fn fuzz_input(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/fuzz/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_model_whose_reduce_axis_lies_beyond_its_rank_is_refused_without_a_panic() {
    // A mutated CPnet file (`model_from_bytes` target): tract's graph analysis unwraps an
    // axis error inside `Reduce` and panicked through `Model::from_bytes`.
    let bytes = fuzz_input("model_reduce_axis_beyond_rank.onnx");
    let err = Model::from_bytes(&bytes)
        .err()
        .expect("the file must be refused");
    let text = err.to_string();
    assert!(
        matches!(err, ModelError::Parse(_) | ModelError::Optimise { .. }),
        "{err:?}"
    );
    assert!(text.contains("could not analyse"), "{text}");
}
