//! Once a segmenter has seen a frame of a size, segmenting another frame of that size makes
//! no heap allocation in this library's own code (issue 3). The network runtime (tract)
//! allocates its tensors on every run; those allocations are told apart with
//! `cellpose::bench::runs_in_progress()`, which is non-zero exactly while tract runs, and
//! are printed, not asserted.
//!
//! A plain `main` (harness = false): no test-harness threads allocate while counting.
//! `CELLPOSE_ALLOC_TRACE=1` prints a backtrace of every allocation counted as the library's,
//! to find the one that broke the test.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use cellpose::{Diameter, ImageView, Model, Params, Segmentation, Segmenter};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static TRACE: AtomicBool = AtomicBool::new(false);
static OURS: AtomicU64 = AtomicU64::new(0);
static OURS_BYTES: AtomicU64 = AtomicU64::new(0);
static NETWORK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread prints a trace, so the trace's own allocations are not traced.
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

fn record(size: usize) {
    if !COUNTING.load(Relaxed) {
        return;
    }
    if cellpose::bench::runs_in_progress() > 0 {
        NETWORK.fetch_add(1, Relaxed);
        return;
    }
    if IN_TRACE.with(|t| t.get()) {
        return;
    }
    OURS.fetch_add(1, Relaxed);
    OURS_BYTES.fetch_add(size as u64, Relaxed);
    if TRACE.load(Relaxed) {
        IN_TRACE.with(|t| t.set(true));
        eprintln!(
            "allocation of {size} bytes:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        IN_TRACE.with(|t| t.set(false));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts, and the
// counting itself does not allocate (atomics and a const-initialised thread-local).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (library allocations, library bytes, tract allocations) made while `f` runs.
fn count<R>(f: impl FnOnce() -> R) -> (u64, u64, u64, R) {
    OURS.store(0, Relaxed);
    OURS_BYTES.store(0, Relaxed);
    NETWORK.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let r = f();
    COUNTING.store(false, Relaxed);
    (
        OURS.load(Relaxed),
        OURS_BYTES.load(Relaxed),
        NETWORK.load(Relaxed),
        r,
    )
}

/// Segments `frames` in order through one segmenter; returns the library's allocations of
/// every frame after the first `warm_up` ones, with a line per frame on stdout.
fn allocations_after_warm_up(
    label: &str,
    diameter: Diameter,
    threads: usize,
    frames: &[&[u8]],
    warm_up: usize,
) -> u64 {
    let model = Model::load(common::model_path()).unwrap();
    let params = Params {
        diameter,
        ..Params::default()
    };
    let mut seg = Segmenter::new(model, params)
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let mut out = Segmentation::default();
    let mut after_warm_up = 0;
    for (i, px) in frames.iter().enumerate() {
        let view = ImageView::gray_u8(256, 256, px).unwrap();
        let (ours, bytes, network, r) = count(|| seg.segment_into(&view, &mut out));
        r.unwrap();
        assert!(out.n_objects > 0, "{label}: frame {} found nothing", i + 1);
        println!(
            "{label}, {threads} thread(s), frame {}: {} objects; library {ours} allocations \
             ({bytes} bytes), network runtime {network} allocations",
            i + 1,
            out.n_objects
        );
        if i >= warm_up {
            after_warm_up += ours;
        }
    }
    after_warm_up
}

fn gray_u8(name: &str) -> Vec<u8> {
    let p = common::read_png(&common::root().join(format!("tests/data/{name}_img.png")));
    assert_eq!((p.width, p.height, p.channels), (256, 256, 1));
    p.data.iter().map(|&v| v as u8).collect()
}

fn main() {
    TRACE.store(std::env::var_os("CELLPOSE_ALLOC_TRACE").is_some(), Relaxed);
    // Two real 256×256 frames with different object counts, alternated: the first frame
    // sizes the buffers, the later ones must reuse them whatever their content.
    let a = gray_u8("dsb_00071198d059ba7f");
    let b = gray_u8("dsb_04acab7636c4cf61");
    let frames: [&[u8]; 4] = [&a, &b, &a, &b];
    let mut failed = Vec::new();
    // With a known or default diameter every frame of a size runs at the same scale: one
    // warm-up frame. With the automatic diameter the network runs at a scale estimated from
    // each frame's content, so the claim holds once each frame's scale has been seen.
    for (label, diameter, threads, warm_up) in [
        ("known diameter", Diameter::Pixels(17.95), 1, 1),
        ("known diameter", Diameter::Pixels(30.0), 2, 1),
        ("model default diameter", Diameter::ModelDefault, 1, 1),
        ("automatic diameter", Diameter::Auto, 2, 2),
    ] {
        let n = allocations_after_warm_up(label, diameter, threads, &frames, warm_up);
        if n != 0 {
            failed.push(format!("{label}, {threads} thread(s): {n} allocations"));
        }
    }
    if !failed.is_empty() {
        eprintln!(
            "the library allocated after the first frame of a size (rerun with \
             CELLPOSE_ALLOC_TRACE=1 to see where): {failed:?}"
        );
        std::process::exit(1);
    }
    println!("library allocations after the first frame of a size: 0 (4 cases passed)");
}
