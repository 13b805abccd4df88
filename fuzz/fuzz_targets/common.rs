//! What every target checks of a result: labels within bounds and an object count that
//! matches the label image (every label 1..=n present, none above).
#![allow(dead_code)] // each target uses part of this module

use std::sync::OnceLock;

use cellpose::Model;

/// The shipped nuclei model, loaded once per process.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/nuclei_light_int8.onnx");
        Model::load(path).expect("the shipped model loads")
    })
}

/// A randomly initialised CPnet of tiny widths (2, 4, 8, 8, 8) with a size model, int8, as
/// `fuzz/make_seeds.py` writes it into the model target's corpus: the same inputs, outputs,
/// metadata and pipeline as a shipped model, with a network pass a few times cheaper, so
/// that the frame and volume targets reach millions of executions. Its outputs are noise,
/// which drives the dynamics and mask steps through flows no trained model would give.
pub fn tiny_model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/model_from_bytes/tiny_int8.onnx");
        Model::load(path).expect("the tiny seed model loads")
    })
}

/// The shipped model for one input in `SHIPPED_ONE_IN` whose sides are at most
/// `SHIPPED_MAX_SIDE`, the tiny one otherwise.
pub fn model_for(choice: u8, side: usize) -> &'static Model {
    if uses_shipped(choice, side) { model() } else { tiny_model() }
}

/// Whether `model_for(choice, side)` is the shipped model.
pub fn uses_shipped(choice: u8, side: usize) -> bool {
    // Not residue 0: zero bytes are the commonest in fuzz inputs.
    choice % SHIPPED_ONE_IN == 3 && side <= SHIPPED_MAX_SIDE
}

/// One input in this many runs the shipped nuclei model (real flows, real cells); the others
/// the tiny model.
pub const SHIPPED_ONE_IN: u8 = 8;

/// Largest side of a frame the shipped model segments here: its network pass on a 320-px
/// input takes ~100 ms under coverage instrumentation, which held a target to 50 inputs a
/// second; small frames keep its real flows in the mix at a few milliseconds each.
pub const SHIPPED_MAX_SIDE: usize = 48;

/// Panics (a finding) unless `labels` holds exactly the labels 1..=n (and 0).
pub fn check_labels<L: Copy + Into<u64>>(labels: &[L], n: u64, what: &str) {
    let mut seen = vec![false; n as usize + 1];
    for &l in labels {
        let l: u64 = l.into();
        assert!(l <= n, "{what}: label {l} above the object count {n}");
        seen[l as usize] = true;
    }
    let missing = (1..=n as usize).filter(|&i| !seen[i]).count();
    assert_eq!(missing, 0, "{what}: {missing} of {n} labels absent from the label image");
}

/// Network input side after rescaling, capped so that one execution stays in milliseconds:
/// the target returns early above it (big rescales are covered by the unit tests). Our int8
/// kernels work in blocks of 16+ channels, so even the tiny model costs about what the
/// shipped one does per pixel: at 320 px a side the targets ran 25 inputs a second.
pub const MAX_RESCALED_SIDE: f32 = 128.0;

/// Largest side of a frame that is segmented (larger views are still built and checked).
pub const MAX_SEGMENTED_SIDE: usize = 96;
