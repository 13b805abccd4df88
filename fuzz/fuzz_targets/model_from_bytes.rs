//! `Model::from_bytes` on arbitrary (mutated ONNX) bytes: an error or a model; a model that
//! loads must report sane metadata and segment a small frame without panicking (an error is
//! fine: mutated weights may make the network fail).
#![no_main]

use cellpose::{ImageView, Model, Params, Segmenter};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts at the panic itself, before `Model::from_bytes` can turn
    // a panic inside tract's graph analysis into an error (what it must do). The default
    // hook lets that happen; a panic that escapes the library still aborts in libfuzzer-sys
    // (it catches the unwind at the target's edge), so it is still a finding.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let Ok(model) = Model::from_bytes(data) else {
        return;
    };
    let info = model.info();
    assert!(
        info.diam_mean.is_finite() && info.diam_mean > 0.0,
        "{info:?}"
    );
    assert!(
        info.diam_labels.is_finite() && info.diam_labels > 0.0,
        "{info:?}"
    );
    let px: Vec<u8> = (0..32 * 32).map(|i| ((i * 37) % 251) as u8).collect();
    let frame = ImageView::gray_u8(32, 32, &px).unwrap();
    let Ok(mut seg) = Segmenter::new(model, Params::default()) else {
        return;
    };
    if let Ok(out) = seg.segment(&frame) {
        assert_eq!(out.labels.len(), 32 * 32);
        common::check_labels(&out.labels, out.n_objects as u64, "mutated model");
    }
});
