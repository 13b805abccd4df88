//! Our side of the peer benchmark (issue 5), driven by `benches/compare.sh`:
//! `cargo bench --bench compare -- COMMAND [OPTIONS]`. Each command appends JSON lines to
//! `--out`; `benches/peers.py report` turns them into the table.
//!
//! Commands:
//! - `e2e`: `Segmenter::segment_into` per image of the manifest (`--kinds full,crop512`),
//!   median of `--repeats` after one warm-up frame; with `--dump-flows DIR` also writes the
//!   flows of each image for the reference dynamics and times `MaskFormation::labels` on them.
//! - `scale`: the same on the `side` crops, for `--threads`.
//! - `network`: the network alone on `--batch`×2×`--side`×`--side` (`cellpose::bench::time_plan`);
//!   `--convolution tract` runs tract's own convolution instead of ours (engine `tract-conv`).
//! - `conv`: our 3×3 convolution alone on the U-Net's layer shapes (16 channels at 224 px …
//!   128 at 28 px), f32 and int8 (`cellpose::bench::time_convolution`), with its GFLOP/s.
//! - `flows`: flows of `--model` against `--baseline` on real images (int8 accuracy).
//! - `loop`: `--frames` frames of one image through one session: median and p99 latency,
//!   heap allocations per frame after warm-up (counting allocator), peak RSS (VmHWM).
//!
//! Timings are wall clock. Not part of `cargo test`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use cellpose::bench::ConvForm;
use cellpose::metrics::average_precision;
use cellpose::{ImageView, MaskFormation, Model, Params, Segmentation, Segmenter};

/// Counts heap allocations (alloc, alloc_zeroed, realloc) and the bytes they request.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// The part of ALLOCS made while tract ran the network (`cellpose::bench::runs_in_progress`).
static NETWORK_ALLOCS: AtomicU64 = AtomicU64::new(0);

fn count_alloc(size: usize) {
    ALLOCS.fetch_add(1, Relaxed);
    BYTES.fetch_add(size as u64, Relaxed);
    if cellpose::bench::runs_in_progress() > 0 {
        NETWORK_ALLOCS.fetch_add(1, Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_alloc(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counters() -> (u64, u64) {
    (ALLOCS.load(Relaxed), BYTES.load(Relaxed))
}

/// Peak resident set size of this process (VmHWM), KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Row {
    name: String,
    kind: String,
    w: usize,
    h: usize,
    image: PathBuf,
    masks: Option<PathBuf>,
}

fn manifest(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                name: f[0].into(),
                kind: f[1].into(),
                w: f[2].parse().unwrap(),
                h: f[3].parse().unwrap(),
                image: f[4].into(),
                masks: (f[5] != "-").then(|| f[5].into()),
            }
        })
        .collect()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_u32(path: &Path) -> Vec<u32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn write_le<T: Copy>(path: &Path, data: &[T], to_bytes: impl Fn(T) -> [u8; 4]) {
    let bytes: Vec<u8> = data.iter().flat_map(|&v| to_bytes(v)).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

/// Nearest-rank percentile of `v` (`q` in 0..=1).
fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let k = args[i]
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("expected --option, found {}", args[i]));
            let v = args.get(i + 1).cloned().unwrap_or_default();
            m.insert(k.to_string(), v);
            i += 2;
        }
        Opts(m)
    }
    fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("missing --{k}"))
    }
    fn opt(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn num(&self, k: &str, default: usize) -> usize {
        self.opt(k).map(|v| v.parse().unwrap()).unwrap_or(default)
    }
}

/// A JSON object written field by field (strings, numbers, booleans).
struct Rec(String);

impl Rec {
    fn new(kind: &str) -> Rec {
        Rec(format!("{{\"kind\":\"{kind}\""))
    }
    fn s(mut self, k: &str, v: &str) -> Rec {
        write!(self.0, ",\"{k}\":\"{}\"", v.replace('"', "'")).unwrap();
        self
    }
    fn n(mut self, k: &str, v: impl std::fmt::Display) -> Rec {
        write!(self.0, ",\"{k}\":{v}").unwrap();
        self
    }
    fn emit(mut self, out: &Path) {
        self.0.push('}');
        println!("{}", self.0);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        writeln!(f, "{}", self.0).unwrap();
    }
}

fn segmenter(model: &Model, threads: usize) -> Segmenter {
    Segmenter::new(model.clone(), Params::default())
        .and_then(|s| s.with_threads(threads))
        .expect("segmenter")
}

/// Euler steps the pipeline uses for the model's default diameter (see segmenter.rs).
fn default_niter(model: &Model) -> u32 {
    let info = model.info();
    let rescale = info.diam_mean / info.diam_labels;
    ((200.0 / rescale) as u32).max(1)
}

fn time_frames(
    seg: &mut Segmenter,
    view: &ImageView,
    out: &mut Segmentation,
    repeats: usize,
) -> Vec<f64> {
    seg.segment_into(view, out).expect("segment"); // warm-up: plans, buffers
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            seg.segment_into(view, out).expect("segment");
            t.elapsed().as_secs_f64()
        })
        .collect()
}

fn cmd_e2e(o: &Opts, kind_tag: &str) {
    let out = PathBuf::from(o.get("out"));
    let label = o.get("label");
    let threads = o.num("threads", 2);
    let repeats = o.num("repeats", 3);
    let kinds: Vec<&str> = o.get("kinds").split(',').collect();
    let model = Model::load(o.get("model")).expect("model");
    let mut seg = segmenter(&model, threads);
    let mut res = Segmentation::default();
    let dump = o.opt("dump-flows").map(PathBuf::from);
    let niter = default_niter(&model);
    let params = Params::default();
    let mut mf = MaskFormation::new();
    for row in manifest(Path::new(o.get("manifest"))) {
        if !kinds.contains(&row.kind.as_str()) {
            continue;
        }
        let img = read_f32(&row.image);
        let view = ImageView::planar_f32(1, row.h, row.w, &img).expect("image");
        let reps = if row.w * row.h >= 1024 * 1024 {
            1
        } else {
            repeats
        };
        let times = time_frames(&mut seg, &view, &mut res, reps);
        let secs = median(&times);
        let mut rec = if kind_tag == "scale" {
            Rec::new("scale")
                .s("model", label)
                .n("side", row.w)
                .n("threads", threads)
        } else {
            Rec::new("e2e")
                .s("engine", &format!("ours-{label}"))
                .s("name", &row.name)
                .s("set", &row.kind)
                .n("w", row.w)
                .n("h", row.h)
                .n("threads", threads)
        };
        rec = rec.n("seconds", secs).n("n_objects", res.n_objects);
        if let Some(mp) = &row.masks {
            let truth = read_u32(mp);
            let ap = average_precision(&truth, &res.labels, &[0.5]);
            rec = rec.n("ap50", ap[0].ap);
        }
        rec.emit(&out);
        // Dynamics + masks alone on this frame's flows (image size), and the flows for the
        // reference to run on.
        if let Some(dir) = &dump {
            std::fs::create_dir_all(dir).unwrap();
            let (w, h) = (row.w, row.h);
            let mut labels = vec![0u32; w * h];
            mf.labels(
                &res.flows,
                &res.cell_prob,
                h,
                w,
                &params,
                niter,
                threads,
                &mut labels,
            );
            let dreps = if w * h >= 1024 * 1024 {
                1
            } else {
                repeats.max(3)
            };
            let (a0, b0) = counters();
            let times: Vec<f64> = (0..dreps)
                .map(|_| {
                    let t = Instant::now();
                    mf.labels(
                        &res.flows,
                        &res.cell_prob,
                        h,
                        w,
                        &params,
                        niter,
                        threads,
                        &mut labels,
                    );
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let (a1, b1) = counters();
            let mut planes = res.flows.clone();
            planes.extend_from_slice(&res.cell_prob);
            let base = dir.join(&row.name);
            write_le(&base.with_extension("f32"), &planes, f32::to_le_bytes);
            write_le(
                &base.with_extension("labels.u32"),
                &labels,
                u32::to_le_bytes,
            );
            std::fs::write(
                base.with_extension("json"),
                format!(
                    "{{\"name\":\"{}\",\"w\":{w},\"h\":{h},\"niter\":{niter}}}",
                    row.name
                ),
            )
            .unwrap();
            Rec::new("dynamics")
                .s("engine", "ours")
                .s("name", &row.name)
                .n("w", w)
                .n("h", h)
                .n("niter", niter)
                .n("threads", threads)
                .n("seconds", median(&times))
                .n("n_objects", labels.iter().max().copied().unwrap_or(0))
                .n("allocs_per_call", (a1 - a0) as f64 / dreps as f64)
                .n("bytes_per_call", (b1 - b0) as f64 / dreps as f64)
                .emit(&out);
        }
    }
}

fn cmd_network(o: &Opts) {
    let out = PathBuf::from(o.get("out"));
    let model = Model::load(o.get("model")).expect("model");
    let (model, engine) = match o.opt("convolution") {
        Some("tract") => (
            model.with_convolution(cellpose::Convolution::Tract),
            "tract-conv",
        ),
        _ => (model, "ours"),
    };
    let (batch, side, threads) = (o.num("batch", 1), o.num("side", 224), o.num("threads", 2));
    let repeats = o.num("repeats", 10);
    // time_plan optimises the plan, then times every run: drop the first as warm-up.
    let times = cellpose::bench::time_plan(&model, batch, side, side, threads, repeats + 1)
        .expect("network");
    Rec::new("network")
        .s("engine", engine)
        .s("precision", o.get("label"))
        .s("model", o.get("model"))
        .n("batch", batch)
        .n("side", side)
        .n("threads", threads)
        .n("seconds", median(&times[1..]))
        .n(
            "min_seconds",
            times[1..].iter().copied().fold(f64::INFINITY, f64::min),
        )
        .emit(&out);
}

fn cmd_conv(o: &Opts) {
    let out = PathBuf::from(o.get("out"));
    let threads = o.num("threads", 2);
    let repeats = o.num("repeats", 10);
    // The light U-Net's 3×3 layers at a 224-px tile: channels double as the side halves.
    for (channels, side) in [(16, 224), (32, 112), (64, 56), (128, 28)] {
        for form in [ConvForm::Direct, ConvForm::Winograd, ConvForm::Int8] {
            let (times, isa, precision, algorithm) = cellpose::bench::time_convolution(
                (channels, channels),
                side,
                form,
                threads,
                repeats + 1,
            )
            .expect("convolution");
            let seconds = median(&times[1..]);
            let flops = 2.0 * (channels * channels * 9 * side * side) as f64;
            let int8 = precision == cellpose::bench::Precision::Int8;
            Rec::new("conv")
                .s("precision", if int8 { "int8" } else { "fp32" })
                .s("kernel", &format!("{isa:?} {precision:?} {algorithm}"))
                .n("channels", channels)
                .n("side", side)
                .n("threads", threads)
                .n("seconds", seconds)
                .n("gflops", flops / seconds / 1e9)
                .emit(&out);
        }
    }
}

fn cmd_loop(o: &Opts) {
    let out = PathBuf::from(o.get("out"));
    let frames = o.num("frames", 500);
    let warmup = o.num("warmup", 2);
    let threads = o.num("threads", 2);
    let name = o.get("name");
    let row = manifest(Path::new(o.get("manifest")))
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no image {name} in the manifest"));
    let img = read_f32(&row.image);
    let model = Model::load(o.get("model")).expect("model");
    let mut seg = segmenter(&model, threads);
    let view = ImageView::planar_f32(1, row.h, row.w, &img).expect("image");
    let mut res = Segmentation::default();
    for _ in 0..warmup {
        seg.segment_into(&view, &mut res).expect("segment");
    }
    let mut times = Vec::with_capacity(frames);
    let n0 = NETWORK_ALLOCS.load(Relaxed);
    let (a0, b0) = counters();
    for _ in 0..frames {
        let t = Instant::now();
        seg.segment_into(&view, &mut res).expect("segment");
        times.push(t.elapsed().as_secs_f64());
    }
    let (a1, b1) = counters();
    let n1 = NETWORK_ALLOCS.load(Relaxed);
    // Where the allocations are: the mask stage alone on the same flows.
    let mut mf = MaskFormation::new();
    let mut labels = vec![0u32; row.w * row.h];
    let params = Params::default();
    let niter = default_niter(&model);
    mf.labels(
        &res.flows,
        &res.cell_prob,
        row.h,
        row.w,
        &params,
        niter,
        threads,
        &mut labels,
    );
    let (c0, _) = counters();
    for _ in 0..10 {
        mf.labels(
            &res.flows,
            &res.cell_prob,
            row.h,
            row.w,
            &params,
            niter,
            threads,
            &mut labels,
        );
    }
    let (c1, _) = counters();
    Rec::new("loop")
        .s("model", o.get("label"))
        .s("name", &row.name)
        .n("w", row.w)
        .n("h", row.h)
        .n("frames", frames)
        .n("warmup", warmup)
        .n("threads", threads)
        .n("median", median(&times))
        .n("p99", percentile(&times, 0.99))
        .n("max", times.iter().copied().fold(0.0, f64::max))
        .n("allocs_per_frame", (a1 - a0) as f64 / frames as f64)
        .n(
            "library_allocs_per_frame",
            ((a1 - a0) - (n1 - n0)) as f64 / frames as f64,
        )
        .n("bytes_per_frame", (b1 - b0) as f64 / frames as f64)
        .n("mask_stage_allocs_per_call", (c1 - c0) as f64 / 10.0)
        .n("peak_rss_kib", peak_rss_kib())
        .emit(&out);
}

/// Flows of `--model` against those of `--baseline` on the manifest's `--kinds` images, both
/// through our whole pipeline: max and mean absolute difference of dY/dX and of the
/// cell-probability logit, and the object counts (for the int8-form comparison).
fn cmd_flows(o: &Opts) {
    let out = PathBuf::from(o.get("out"));
    let kinds: Vec<&str> = o.get("kinds").split(',').collect();
    let threads = o.num("threads", 2);
    let base = Model::load(o.get("baseline")).expect("baseline model");
    let model = Model::load(o.get("model")).expect("model");
    let (mut sb, mut sm) = (segmenter(&base, threads), segmenter(&model, threads));
    let (mut fmax, mut pmax, mut fsum, mut psum, mut n) = (0f32, 0f32, 0f64, 0f64, 0usize);
    let (mut objects_base, mut objects_model) = (0u32, 0u32);
    for row in manifest(Path::new(o.get("manifest"))) {
        if !kinds.contains(&row.kind.as_str()) {
            continue;
        }
        let img = read_f32(&row.image);
        let view = ImageView::planar_f32(1, row.h, row.w, &img).expect("image");
        let a = sb.segment(&view).expect("segment");
        let b = sm.segment(&view).expect("segment");
        for (x, y) in a.flows.iter().zip(&b.flows) {
            fmax = fmax.max((x - y).abs());
            fsum += (x - y).abs() as f64;
        }
        for (x, y) in a.cell_prob.iter().zip(&b.cell_prob) {
            pmax = pmax.max((x - y).abs());
            psum += (x - y).abs() as f64;
        }
        n += a.cell_prob.len();
        objects_base += a.n_objects;
        objects_model += b.n_objects;
    }
    Rec::new("flows_diff")
        .s("model", o.get("model"))
        .s("baseline", o.get("baseline"))
        .n("max_abs_flow", fmax)
        .n("mean_abs_flow", fsum / (2 * n.max(1)) as f64)
        .n("max_abs_cellprob", pmax)
        .n("mean_abs_cellprob", psum / n.max(1) as f64)
        .n("objects_baseline", objects_base)
        .n("objects_model", objects_model)
        .emit(&out);
}

fn main() {
    // `cargo bench` passes `--bench` to harness-less targets: ignore it.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let Some(cmd) = args.first() else {
        eprintln!(
            "usage: cargo bench --bench compare -- e2e|scale|network|conv|loop|flows --out F.jsonl --option value …"
        );
        std::process::exit(2);
    };
    let o = Opts::parse(&args[1..]);
    match cmd.as_str() {
        "e2e" => cmd_e2e(&o, "e2e"),
        "scale" => cmd_e2e(&o, "scale"),
        "network" => cmd_network(&o),
        "conv" => cmd_conv(&o),
        "loop" => cmd_loop(&o),
        "flows" => cmd_flows(&o),
        other => {
            eprintln!("unknown command {other}");
            std::process::exit(2);
        }
    }
}
