//! The C frame API as a C caller drives it: `cp_session_options` with arbitrary values and
//! `struct_size`, `cp_session_new`, then `cp_session_segment` with an arbitrary `cp_frame`
//! descriptor (sizes, stride, pixel type, channel count and layout as raw numbers, a
//! `data_len` no larger than the buffer, as the ABI requires) and an arbitrary `cp_output`
//! (label type, buffer lengths). What must hold: no panic reaches the boundary (a
//! `CP_ERR_PANIC` is a finding), and a success wrote labels within bounds whose object
//! count matches the label image.
#![no_main]

use std::ffi::c_void;

use arbitrary::Arbitrary;
use cellpose_ffi::{frame::*, model::*, options::*, session::*, status::*};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(Arbitrary, Debug)]
struct Options {
    size_delta: i8,
    diameter_mode: u32,
    diameter: f32,
    flow_threshold: f32,
    cellprob_threshold: f32,
    min_size: i32,
    max_size_fraction: f32,
    niter: u16,
    tile_overlap: f32,
    batch_size: u8,
    percentile_low: f32,
    percentile_high: f32,
    threads: u8,
    flags: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    options: Option<Options>,
    frame_size_delta: i8,
    width: u8,
    height: u8,
    row_stride: u16,
    pixel_type: u32,
    channels: u32,
    layout: u32,
    data_len_cut: u16,
    label_type: u32,
    labels_len_cut: u8,
    want_flows: bool,
    samples: Vec<u8>,
}

static MODEL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn model() -> *mut cp_model {
    *MODEL.get_or_init(|| {
        let mut m = std::ptr::null_mut();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../models/nuclei_light_int8.onnx\0"
        );
        // SAFETY: a NUL-terminated path and a writable out pointer.
        let st = unsafe { cp_model_load(path.as_ptr().cast(), &mut m) };
        assert_eq!(st, cp_status::CP_OK);
        m as usize
    }) as *mut cp_model
}

fuzz_target!(|input: Input| {
    let mut opts = std::mem::MaybeUninit::<cp_session_options>::zeroed();
    // SAFETY: a writable struct of the size passed.
    let st = unsafe { cp_session_options_init(opts.as_mut_ptr(), size_of::<cp_session_options>()) };
    assert_eq!(st, cp_status::CP_OK);
    // SAFETY: initialised by cp_session_options_init.
    let mut opts = unsafe { opts.assume_init() };
    if let Some(o) = &input.options {
        // A smaller struct_size is an older caller (or a wrong one); larger would claim bytes
        // this struct does not have, so it is capped at the real size.
        opts.struct_size =
            (size_of::<cp_session_options>() as isize + o.size_delta.min(0) as isize) as usize;
        opts.diameter_mode = o.diameter_mode % 4;
        opts.diameter = o.diameter;
        opts.flow_threshold = o.flow_threshold;
        opts.cellprob_threshold = o.cellprob_threshold;
        opts.min_size = o.min_size;
        opts.max_size_fraction = o.max_size_fraction;
        opts.niter = o.niter as u32 % 2000;
        opts.tile_overlap = o.tile_overlap;
        opts.batch_size = o.batch_size as u32;
        opts.percentile_low = o.percentile_low;
        opts.percentile_high = o.percentile_high;
        opts.threads = o.threads as u32 % 4;
        opts.interp = (o.flags & 1) as u32;
        opts.resample = (o.flags >> 1 & 1) as u32;
        opts.augment = (o.flags >> 2 & 1) as u32;
        opts.normalize = (o.flags >> 3 & 1) as u32;
        opts.invert = (o.flags >> 4 & 1) as u32;
        if opts.diameter_mode == CP_DIAMETER_PIXELS {
            let side = input.width.max(input.height) as f32 * 17.0 / opts.diameter;
            if !(side <= common::MAX_RESCALED_SIDE) {
                return;
            }
        }
    }
    let mut session = std::ptr::null_mut();
    // SAFETY: a loaded model, initialised options, a writable out pointer.
    let st = unsafe { cp_session_new(model(), &opts, &mut session) };
    if st != cp_status::CP_OK {
        assert_ne!(st, cp_status::CP_ERR_PANIC, "cp_session_new panicked");
        assert!(session.is_null());
        return;
    }
    let buf = common::aligned_samples(&input.samples);
    let data_len = input
        .samples
        .len()
        .saturating_sub(input.data_len_cut as usize);
    let frame = cp_frame {
        struct_size: (size_of::<cp_frame>() as isize + input.frame_size_delta.min(0) as isize)
            as usize,
        data: buf.as_ptr().cast::<c_void>(),
        data_len,
        row_stride: input.row_stride as usize,
        width: input.width as u32,
        height: input.height as u32,
        pixel_type: input.pixel_type,
        channels: input.channels,
        layout: input.layout,
    };
    let npix = input.width as usize * input.height as usize;
    let mut labels = vec![0u32; npix];
    let labels_len = npix.saturating_sub(input.labels_len_cut as usize % 3);
    let mut flows = vec![0f32; if input.want_flows { 2 * npix } else { 0 }];
    let mut prob = vec![0f32; if input.want_flows { npix } else { 0 }];
    let mut out = cp_output {
        struct_size: size_of::<cp_output>(),
        labels: labels.as_mut_ptr().cast::<c_void>(),
        labels_len,
        flows: if input.want_flows {
            flows.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        flows_len: flows.len(),
        cell_prob: if input.want_flows {
            prob.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        cell_prob_len: prob.len(),
        label_type: input.label_type,
        n_objects: 0,
        diameter_used: 0.0,
    };
    // SAFETY: every pointer is valid for the length given with it.
    let st = unsafe { cp_session_segment(session, &frame, &mut out) };
    assert_ne!(
        st,
        cp_status::CP_ERR_PANIC,
        "cp_session_segment panicked: {input:?}"
    );
    if st == cp_status::CP_OK {
        let n = out.n_objects as u64;
        if input.label_type == CP_LABELS_U16 {
            // SAFETY: the buffer holds npix u32, so at least npix u16.
            let l16 = unsafe { std::slice::from_raw_parts(labels.as_ptr().cast::<u16>(), npix) };
            common::check_labels(l16, n, "C u16 labels");
        } else {
            common::check_labels(&labels, n, "C u32 labels");
        }
    }
    // SAFETY: a session from cp_session_new, freed once.
    assert_eq!(unsafe { cp_session_free(session) }, cp_status::CP_OK);
});
