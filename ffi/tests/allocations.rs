//! How many heap allocations a frame makes once a session has seen a frame of its size,
//! through the C API (`cp_session_segment`) and through the core (`Segmenter::segment_into`).
//! The difference is what the C layer itself allocates: it must be zero. What the core and
//! tract allocate per frame is printed, so regressions show in the CI log.
//!
//! A plain `main` (harness = false): no test-harness threads allocate while counting.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use cellpose_ffi::frame::{CP_LAYOUT_PLANAR, CP_PIXEL_U8, cp_frame};
use cellpose_ffi::model::{cp_model, cp_model_free, cp_model_load};
use cellpose_ffi::session::{
    CP_LABELS_U32, cp_output, cp_session, cp_session_free, cp_session_new, cp_session_segment,
};
use cellpose_ffi::status::cp_status;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCATIONS.fetch_add(1, Relaxed);
            BYTES.fetch_add(layout.size() as u64, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            ALLOCATIONS.fetch_add(1, Relaxed);
            BYTES.fetch_add(new_size as u64, Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (count, bytes) made while `f` runs.
fn count<R>(f: impl FnOnce() -> R) -> (u64, u64, R) {
    ALLOCATIONS.store(0, Relaxed);
    BYTES.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let r = f();
    COUNTING.store(false, Relaxed);
    (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed), r)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gray_u8(name: &str) -> (u32, u32, Vec<u8>) {
    let path = root().join(format!("tests/data/{name}_img.png"));
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

fn frame(w: u32, h: u32, px: &[u8]) -> cp_frame {
    cp_frame {
        struct_size: size_of::<cp_frame>(),
        data: px.as_ptr().cast(),
        data_len: px.len(),
        row_stride: w as usize,
        width: w,
        height: h,
        pixel_type: CP_PIXEL_U8,
        channels: 1,
        layout: CP_LAYOUT_PLANAR,
    }
}

/// Allocations of frames 2 and 3 (same size as frame 1) through the C API.
fn through_c_api(frames: &[(u32, u32, Vec<u8>)]) -> Vec<(u64, u64)> {
    let path =
        std::ffi::CString::new(root().join("models/nuclei_light.onnx").to_str().unwrap()).unwrap();
    let mut model: *mut cp_model = std::ptr::null_mut();
    let mut session: *mut cp_session = std::ptr::null_mut();
    let mut labels = vec![0u32; (frames[0].0 * frames[0].1) as usize];
    let mut counts = Vec::new();
    // SAFETY: valid pointers to live locals; the handles are freed below.
    unsafe {
        assert_eq!(cp_model_load(path.as_ptr(), &mut model), cp_status::CP_OK);
        assert_eq!(
            cp_session_new(model, std::ptr::null(), &mut session),
            cp_status::CP_OK
        );
        for (w, h, px) in frames {
            let f = frame(*w, *h, px);
            let mut out = cp_output {
                struct_size: size_of::<cp_output>(),
                labels: labels.as_mut_ptr().cast(),
                labels_len: labels.len(),
                flows: std::ptr::null_mut(),
                flows_len: 0,
                cell_prob: std::ptr::null_mut(),
                cell_prob_len: 0,
                label_type: CP_LABELS_U32,
                n_objects: 0,
                diameter_used: 0.0,
            };
            let (n, bytes, status) = count(|| cp_session_segment(session, &f, &mut out));
            assert_eq!(status, cp_status::CP_OK);
            assert!(out.n_objects > 0);
            counts.push((n, bytes));
        }
        cp_session_free(session);
        cp_model_free(model);
    }
    counts
}

/// The same frames through the core's `Segmenter::segment_into`.
fn through_core(frames: &[(u32, u32, Vec<u8>)]) -> Vec<(u64, u64)> {
    let model = cellpose::Model::load(root().join("models/nuclei_light.onnx")).unwrap();
    let mut seg = cellpose::Segmenter::new(model, cellpose::Params::default()).unwrap();
    let mut out = cellpose::Segmentation::default();
    let mut counts = Vec::new();
    for (w, h, px) in frames {
        let view = cellpose::ImageView::gray_u8(*h as usize, *w as usize, px).unwrap();
        let (n, bytes, r) = count(|| seg.segment_into(&view, &mut out));
        r.unwrap();
        counts.push((n, bytes));
    }
    counts
}

fn main() {
    // Three frames of one size: the first sizes the buffers, the next two reuse them.
    let a = gray_u8("dsb_00071198d059ba7f");
    let b = gray_u8("dsb_04acab7636c4cf61");
    assert_eq!((a.0, a.1), (b.0, b.1));
    let frames = [a.clone(), b, a];
    let c_api = through_c_api(&frames);
    let core = through_core(&frames);
    for (i, (c, k)) in c_api.iter().zip(&core).enumerate() {
        println!(
            "frame {} ({}x{}): C API {} allocations ({} bytes), core {} allocations ({} bytes)",
            i + 1,
            frames[i].0,
            frames[i].1,
            c.0,
            c.1,
            k.0,
            k.1
        );
    }
    assert!(
        c_api[1].0 < c_api[0].0,
        "the second frame of a size must reuse the session's buffers"
    );
    for i in 1..3 {
        assert_eq!(
            c_api[i].0,
            core[i].0,
            "frame {}: the C layer allocates on its own (C API {} vs core {})",
            i + 1,
            c_api[i].0,
            core[i].0
        );
    }
    println!("allocations: 1 passed, 0 failed");
}
