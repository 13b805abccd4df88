//! Volumes: arbitrary depth, height, width, strides (row and plane), pixel type, channels,
//! layout and samples through `VolumeView::new`, then `VolumeSegmenter::segment` in each
//! mode (3D flows, stitched, planes) with arbitrary anisotropy and stitch threshold.
#![no_main]

use arbitrary::Arbitrary;
use cellpose::{
    Diameter, Params, PixelType, VolumeMode, VolumeParams, VolumeSegmenter, VolumeView,
};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Read only by the hash that picks the network (`common::choice_of`, through `Debug`,
    /// with every other field); kept so that the committed corpus keeps its byte layout.
    #[allow(dead_code)]
    model: u8,
    depth: u8,
    height: u8,
    width: u8,
    stride_pad: u8,
    plane_pad: u8,
    pixel: u8,
    channels: u8,
    interleaved: bool,
    do_3d: bool,
    anisotropy: f32,
    stitch_threshold: f32,
    diameter: f32,
    samples: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let pixel = [PixelType::U8, PixelType::U16, PixelType::F32][input.pixel as usize % 3];
    let (d, h, w, c) = (
        input.depth as usize % 9,
        input.height as usize % 48,
        input.width as usize % 48,
        input.channels as usize % 4,
    );
    let network = common::network_for(&input, h.max(w), common::VOLUME_UNET_ONE_IN);
    let model = common::model_of(network);
    let layout = common::layout(input.interleaved);
    let row = w * pixel.bytes() * if input.interleaved { c.max(1) } else { 1 };
    let stride = row + input.stride_pad as usize % 9;
    let plane =
        stride * h * if input.interleaved { 1 } else { c.max(1) } + input.plane_pad as usize % 17;
    let buf = common::aligned_samples(&input.samples);
    let bytes: &[u8] = &bytemuck::cast_slice(&buf)[..input.samples.len()];
    let Ok(volume) = VolumeView::new(bytes, d, h, w, c, pixel, layout, stride, plane) else {
        return;
    };
    let side = w.max(h) as f32 * model.info().diam_mean / input.diameter;
    if !(side <= common::MAX_RESCALED_SIDE) || input.anisotropy.abs() > 8.0 {
        return;
    }
    let vp = VolumeParams {
        params: Params {
            diameter: Diameter::Pixels(input.diameter),
            ..Params::default()
        },
        // Any threshold but 0 asks for stitching, so invalid ones (NaN, negative, > 1) reach
        // the core's check.
        mode: match (input.do_3d, input.stitch_threshold) {
            (true, _) => VolumeMode::Flows3d,
            (false, t) if t == 0.0 => VolumeMode::Planes,
            (false, threshold) => VolumeMode::Stitched { threshold },
        },
        anisotropy: input.anisotropy,
    };
    let Ok(mut seg) = VolumeSegmenter::new(model.clone(), vp) else {
        return;
    };
    if let Ok(out) = seg.segment(&volume) {
        assert_eq!((out.depth, out.height, out.width), (d, h, w));
        assert_eq!(out.labels.len(), d * h * w);
        if out.mode == VolumeMode::Planes {
            let mut total = 0u64;
            for p in out.labels.chunks(h * w) {
                let n = p.iter().copied().max().unwrap_or(0) as u64;
                common::check_labels(p, n, "volume plane");
                total += n;
            }
            assert_eq!(
                total, out.n_objects as u64,
                "planes: object count is not the sum over planes"
            );
        } else {
            common::check_labels(&out.labels, out.n_objects as u64, "volume");
        }
    }
});
