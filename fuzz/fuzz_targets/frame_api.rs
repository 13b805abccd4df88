//! The Rust frame API: arbitrary width, height, row stride, pixel type, channels, layout,
//! sample values (NaN, infinities, extremes) and parameters through `ImageView::new` and
//! `Segmenter::segment_into`, reusing one segmenter per network (as acquisition reuses its one)
//! across inputs.
#![no_main]

use std::cell::RefCell;

use arbitrary::Arbitrary;
use cellpose::{Diameter, ImageView, Params, PixelType, Segmentation, Segmenter};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Read only by the hash that picks the network (`common::choice_of`, through `Debug`,
    /// with every other field); kept so that the committed corpus keeps its byte layout.
    #[allow(dead_code)]
    model: u8,
    width: u8,
    height: u8,
    stride_pad: u8,
    pixel: u8,
    channels: u8,
    interleaved: bool,
    diameter: Option<f32>,
    auto: bool,
    flow_threshold: f32,
    cellprob_threshold: f32,
    min_size: i16,
    niter: Option<u16>,
    tile_overlap: f32,
    /// Test-time augmentation for one input in eight: it runs at least four full 224-px
    /// tiles however small the frame (most of the time of an input that has it).
    augment: u8,
    percentiles: (f32, f32),
    normalize: bool,
    invert: bool,
    interp: bool,
    resample: bool,
    samples: Vec<u8>,
}

thread_local! {
    /// One segmenter per network (`common::NETWORKS`), each reused across the inputs it gets.
    static STATE: RefCell<[Option<(Segmenter, Segmentation)>; common::NETWORKS]> =
        const { RefCell::new([None, None, None]) };
}

fuzz_target!(|input: Input| {
    let pixel = [PixelType::U8, PixelType::U16, PixelType::F32][input.pixel as usize % 3];
    let (w, h, c) = (
        input.width as usize,
        input.height as usize,
        input.channels as usize % 4,
    );
    let network = common::network_for(&input, w.max(h), common::FRAME_UNET_ONE_IN);
    let model = common::model_of(network);
    let layout = common::layout(input.interleaved);
    let row = w * pixel.bytes() * if input.interleaved { c.max(1) } else { 1 };
    let stride = row + input.stride_pad as usize % 9;
    // Samples come from the input, aligned for their type (the C layer checks alignment).
    let buf = common::aligned_samples(&input.samples);
    let bytes: &[u8] = &bytemuck::cast_slice(&buf)[..input.samples.len()];
    let Ok(frame) = ImageView::new(bytes, h, w, c, pixel, layout, stride) else {
        return;
    };
    if w.max(h) > common::MAX_SEGMENTED_SIDE {
        return;
    }
    let diameter = match (input.auto, input.diameter) {
        (true, _) => Diameter::Auto,
        (false, Some(d)) => Diameter::Pixels(d),
        (false, None) => Diameter::ModelDefault,
    };
    if let Diameter::Pixels(d) = diameter {
        let side = w.max(h) as f32 * model.info().diam_mean / d;
        if !(side <= common::MAX_RESCALED_SIDE) {
            return;
        }
    }
    let params = Params {
        diameter,
        flow_threshold: input.flow_threshold,
        cellprob_threshold: input.cellprob_threshold,
        min_size: input.min_size as i32,
        niter: input.niter.map(|n| n as u32 % 2000),
        tile_overlap: input.tile_overlap,
        augment: input.augment % 8 == 5, // not 0: zero bytes are the commonest
        percentiles: input.percentiles,
        normalize: input.normalize,
        invert: input.invert,
        interp: input.interp,
        resample: input.resample,
        ..Params::default()
    };
    STATE.with(|s| {
        let mut states = s.borrow_mut();
        let s = &mut states[network];
        if s.is_none() {
            *s = Some((
                Segmenter::new(model.clone(), Params::default()).unwrap(),
                Segmentation::default(),
            ));
        }
        let (seg, out) = s.as_mut().unwrap();
        if seg.set_params(params).is_err() {
            return;
        }
        if seg.segment_into(&frame, out).is_ok() {
            assert_eq!((out.width, out.height), (w, h));
            assert_eq!(out.labels.len(), w * h);
            assert_eq!(out.flows.len(), 2 * w * h);
            assert_eq!(out.cell_prob.len(), w * h);
            assert!(
                out.diameter_used.is_finite() && out.diameter_used > 0.0,
                "{}",
                out.diameter_used
            );
            common::check_labels(&out.labels, out.n_objects as u64, "frame");
        }
    });
});
