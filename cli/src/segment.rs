//! `cellpose segment`: every input image → label TIFF, and on request outlines, flows and
//! an object table. One failing image is reported and counted; the batch goes on.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use cellpose::{
    Diameter, DroppedMasks, ImageView, Model, Normalization, Params, ParamsError, Segmentation,
    Segmenter, VolumeMode, VolumeParams, VolumeSegmenter, outlines, render,
};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::input::{AxesFrom, ImageFile, Input, expand_inputs, reduce};
use crate::output::{
    CsvWriter, Done, LabelMeta, LabelPage, LabelTiffWriter, output_path, stem_and_dir,
    write_rgb_png, write_text,
};
use crate::roi::{RoiSetWriter, outlines_text};
use crate::volume::segment_volume_file;
use crate::{EXIT_MODEL, EXIT_SOME_FAILED, EXIT_USAGE, Fatal, model_path, one_line};

#[derive(Args)]
pub struct SegmentCommand {
    /// Image files (PNG, TIFF; multi-page TIFF = frames) or folders of them.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    args: SegmentArgs,
}

/// The options of `segment` and `watch`.
#[derive(Args)]
pub struct SegmentArgs {
    /// Folder for the results (created if missing) [default: beside each image]. Results
    /// are named after the input without its extension (`NAME_cp_masks.tif`, …). `segment`
    /// replaces a result of that name from an earlier run and refuses, before any work, two
    /// inputs that would write the same result; `watch` skips images whose results are
    /// there and refuses an image whose results would replace another's.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Model: `nuclei` or `cyto` (the shipped models: nuclei, or whole cells with an optional
    /// nucleus channel), or an ONNX file [default: $CELLPOSE_MODEL, else `nuclei`]. Shipped
    /// models are looked for in $CELLPOSE_MODEL_DIR, beside the executable, and in `models/`
    /// or `share/cellpose/models/` above it.
    #[arg(long, value_name = "NAME|FILE")]
    model: Option<PathBuf>,
    /// Typical object diameter in pixels, `auto` (also 0) to estimate it per image with the
    /// model's size model, or `model` for the model's training diameter [default: `auto`
    /// when the model has a size model, else `model`].
    #[arg(long, value_name = "D|auto|model", value_parser = parse_diameter)]
    diameter: Option<Diameter>,
    /// Channels as the reference chooses them: `C,N` where C is the channel to segment
    /// (0 = average of all colours, 1 red, 2 green, 3 blue) and N the optional nucleus
    /// channel (0 none). `gray` means 0,0.
    #[arg(long, value_name = "C,N", value_parser = parse_channels, default_value = "0,0")]
    channels: [usize; 2],
    /// Masks whose flows disagree more than this (mean squared error) are dropped; 0 keeps all.
    #[arg(long, value_name = "X", default_value_t = Params::default().flow_threshold)]
    flow_threshold: f32,
    /// Cell-probability logit above which pixels belong to cells (lower finds more).
    #[arg(long, value_name = "X", default_value_t = Params::default().cellprob_threshold, allow_hyphen_values = true)]
    cellprob_threshold: f32,
    /// Masks smaller than this many pixels are removed (0 or negative keeps all).
    #[arg(long, value_name = "N", default_value_t = Params::default().min_size, allow_hyphen_values = true)]
    min_size: i32,
    /// Masks larger than this fraction of the image (or volume) are removed, as the
    /// reference does (its rule: 0.4); raise it for objects that fill most of the frame.
    #[arg(long, value_name = "F", default_value_t = Params::default().max_size_fraction)]
    max_size_fraction: f32,
    /// Intensity percentiles mapped to 0 and 1 before the network, per channel (the
    /// reference's normalisation). When they are equal (a few objects on a flat background)
    /// the channel's maximum stands in for the upper one, with a note on standard error.
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], allow_hyphen_values = true,
          default_values_t = [Params::default().percentiles.0, Params::default().percentiles.1])]
    norm_percentile: Vec<f32>,
    /// Do not normalise intensities (for images already scaled to 0..1 like the training data).
    #[arg(long, conflicts_with = "norm_percentile")]
    no_norm: bool,
    /// Test-time augmentation: overlapping flipped tiles, averaged (slower, slightly better).
    #[arg(long)]
    tta: bool,
    /// Overlap fraction of neighbouring tiles (0 to 0.5).
    #[arg(long, value_name = "X", default_value_t = Params::default().tile_overlap)]
    tile_overlap: f32,
    /// Invert intensities after normalisation, for dark objects on a bright background
    /// (e.g. stained nuclei in bright-field histology).
    #[arg(long)]
    invert: bool,
    /// Threads for the network and the dynamics [default: all cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Also write NAME_cp_outlines.png: mask outlines in red over the image.
    #[arg(long)]
    outlines: bool,
    /// Also write NAME_cp_flows.png: the predicted flows as colour (the reference GUI's view).
    #[arg(long)]
    flows: bool,
    /// Also write NAME_cp.csv: label, area, centroid, bounding box, mean intensity per object.
    #[arg(long)]
    csv: bool,
    /// Also write NAME_rois.zip: an ImageJ ROI set (one polygon per object) for Fiji's ROI
    /// Manager.
    #[arg(long)]
    save_rois: bool,
    /// Also write NAME_cp_outlines.txt: the reference's outline text, one line `x1,y1,x2,y2,…`
    /// of boundary pixels per object (per frame for a stack).
    #[arg(long)]
    save_outlines_txt: bool,
    /// Read each multi-page TIFF as one z-stack (one page per plane) and segment it as a
    /// volume: 3D flows, or per-plane 2D joined across planes with --stitch-threshold.
    #[arg(long = "do-3d")]
    do_3d: bool,
    /// With --do-3d: Z step over XY pixel size of the stack (3D flows only) [default: 1].
    #[arg(long, value_name = "F", value_parser = parse_anisotropy, allow_hyphen_values = true)]
    anisotropy: Option<f32>,
    /// With --do-3d: segment every plane in 2D and join labels of neighbouring planes whose
    /// IoU reaches T, instead of following 3D flows; 0 means 3D flows [default: 0].
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    stitch_threshold: Option<f32>,
}

fn parse_diameter(s: &str) -> Result<Diameter, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Diameter::Auto);
    }
    if s.eq_ignore_ascii_case("model") {
        return Ok(Diameter::ModelDefault);
    }
    match s.parse::<f32>() {
        Ok(0.0) => Ok(Diameter::Auto),
        Ok(d) if d.is_finite() && d > 0.0 => Ok(Diameter::Pixels(d)),
        _ => Err(format!(
            "`{s}` is not a diameter: expected pixels > 0, `auto` or `model`"
        )),
    }
}

fn parse_anisotropy(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(a) if a.is_finite() && a > 0.0 => Ok(a),
        _ => Err(format!(
            "`{s}` is not an anisotropy: expected Z step / XY pixel size > 0, e.g. 2"
        )),
    }
}

fn parse_channels(s: &str) -> Result<[usize; 2], String> {
    if s.eq_ignore_ascii_case("gray") || s.eq_ignore_ascii_case("grey") {
        return Ok([0, 0]);
    }
    let bad = || {
        format!(
            "`{s}` is not a channel choice: expected C,N with C in 0..=3 (0 gray, 1 red, \
             2 green, 3 blue) and N in 0..=3 (0 none), e.g. 0,0 or 2,3"
        )
    };
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.len() > 2 {
        return Err(bad());
    }
    let mut out = [0usize; 2];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p.parse().map_err(|_| bad())?;
        if *o > 3 {
            return Err(bad());
        }
    }
    Ok(out)
}

/// `--flag` spelling of a parameter name in a core error.
fn flag_of(name: &str) -> String {
    if name.starts_with("percentiles") {
        return "--norm-percentile".into();
    }
    format!("--{}", name.replace('_', "-"))
}

/// Checks, before any work, that no two inputs would write the same result files (their
/// results are `DIR/STEM_…`: two files of one stem in different folders with one `--out`,
/// or `x.png` beside `x.tif`), so that no result replaces another written in the same run.
/// The same file named twice (a file and its folder) is segmented once.
fn one_result_per_input(items: Vec<Input>, out: Option<&Path>) -> Result<Vec<Input>, Fatal> {
    use std::collections::HashMap;
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let mut first: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut seen_inputs = std::collections::HashSet::new();
    let mut clashes = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let Ok(path) = &item else {
            kept.push(item);
            continue;
        };
        if !seen_inputs.insert(canonical(path)) {
            continue;
        }
        if let Ok((stem, dir)) = stem_and_dir(path, out) {
            let result = output_path(&canonical(&dir), stem, "cp_masks.tif", None);
            match first.get(&result) {
                Some(earlier) => clashes.push(format!(
                    "{} and {} would both write {}",
                    earlier.display(),
                    path.display(),
                    result.display()
                )),
                None => {
                    first.insert(result, path.clone());
                }
            }
        }
        kept.push(item);
    }
    if clashes.is_empty() {
        return Ok(kept);
    }
    Err(Fatal::new(
        EXIT_USAGE,
        format!(
            "nothing was segmented: results are named after the input's file name without \
             its extension, and {}; segment them in separate runs with different --out \
             folders, or rename them",
            clashes.join("; ")
        ),
    ))
}

fn segment_file(
    path: &Path,
    out_dir: Option<&Path>,
    seg: &mut Segmenter,
    args: &SegmentArgs,
) -> Result<Done> {
    let mut file = ImageFile::open(path)?;
    let axes = file.axes;
    let mut notes: Vec<String> = file.note.iter().cloned().collect();
    if axes.from == AxesFrom::Assumed {
        notes.push(format!(
            "read as {} frames (time points); --do-3d reads them as the Z-planes of one volume",
            axes.frames
        ));
    } else if axes.slices > 1 {
        notes.push(format!(
            "axes from the {} metadata: {}; each Z-plane is segmented as a 2D frame (--do-3d segments them as a volume)",
            axes.from.name(),
            axes.describe()
        ));
    }
    let (stem, dir) = stem_and_dir(path, out_dir)?;
    let n = axes.slices * axes.frames;
    let masks = output_path(&dir, stem, "cp_masks.tif", None);
    let meta = LabelMeta {
        slices: axes.slices,
        frames: axes.frames,
        physical: file.physical,
    };
    let mut labels_out = LabelTiffWriter::create(&masks, meta)?;
    let mut csv = match args.csv {
        true => Some(CsvWriter::create(&output_path(&dir, stem, "cp.csv", None))?),
        false => None,
    };
    let mut rois = match args.save_rois {
        true => Some(RoiSetWriter::create(&output_path(
            &dir, stem, "rois.zip", None,
        ))?),
        false => None,
    };
    let mut s = Segmentation::default();
    let (mut objects, mut dropped, mut flat) = (0u64, DroppedMasks::default(), 0usize);
    let mut diameters = Vec::with_capacity(n);
    // Frames are read, segmented and written one at a time: memory does not grow with
    // the number of frames.
    for i in 0..n {
        let (t, z) = (i / axes.slices, i % axes.slices);
        let in_frame = |e: anyhow::Error| {
            if n > 1 {
                e.context(format!("frame {}", i + 1))
            } else {
                e
            }
        };
        let frame = file.read_plane(z, t).map_err(in_frame)?;
        let (planes, nplanes) = reduce(&frame, args.channels).map_err(in_frame)?;
        let npix = frame.width * frame.height;
        let view = ImageView::planar_f32(
            nplanes,
            frame.height,
            frame.width,
            &planes[..nplanes * npix],
        )
        .map_err(|e| in_frame(e.into()))?;
        seg.segment_into(&view, &mut s)
            .map_err(|e| in_frame(e.into()))?;
        diameters.push(s.diameter_used);
        objects += s.n_objects as u64;
        dropped.too_large += s.dropped.too_large;
        dropped.flow_error += s.dropped.flow_error;
        dropped.too_small += s.dropped.too_small;
        flat += s.normalization.contains(&Normalization::LowerToMax) as usize;
        let frame_tag = (n > 1).then_some((i, n));
        if args.outlines {
            let mut rgb = vec![0u8; 3 * npix];
            let shown: Vec<&[f32]> = planes.chunks_exact(npix).take(nplanes).collect();
            render::image_to_rgb(&shown, frame.width, args.channels, &mut rgb);
            render::draw_outlines(&s.labels, frame.width, &mut rgb);
            let p = output_path(&dir, stem, "cp_outlines.png", frame_tag);
            write_rgb_png(&p, frame.width, frame.height, &rgb)?;
        }
        if args.flows {
            let mut rgb = vec![0u8; 3 * npix];
            render::flows_to_rgb(&s.flows, frame.width, &mut rgb);
            let p = output_path(&dir, stem, "cp_flows.png", frame_tag);
            write_rgb_png(&p, frame.width, frame.height, &rgb)?;
        }
        if let Some(csv) = &mut csv {
            let summaries =
                cellpose::object_summaries(&s.labels, frame.width, Some(&planes[..npix]));
            csv.write_frame(i + 1, &summaries)?;
        }
        if let Some(rois) = &mut rois {
            let polygons = outlines::outline_polygons(&s.labels, s.height, s.width);
            rois.add(&polygons, (n > 1).then_some(i + 1))?;
        }
        if args.save_outlines_txt {
            let pixels = outlines::outline_pixels(&s.labels, s.height, s.width);
            let p = output_path(&dir, stem, "cp_outlines.txt", frame_tag);
            write_text(&p, &outlines_text(&pixels))?;
        }
        labels_out.write_page(LabelPage {
            width: s.width,
            height: s.height,
            labels: &s.labels,
        })?;
    }
    if let Some(rois) = rois {
        rois.finish()?;
    }
    if flat > 0 {
        let (lo, hi) = seg.params().percentiles;
        notes.push(format!(
            "{}the {lo} and {hi} % intensity percentiles were equal (few objects on a flat \
             background?), so intensities were scaled from the {lo} % percentile to the \
             maximum instead; --norm-percentile LOW HIGH sets the range",
            if n > 1 {
                format!("in {flat} of {n} frames, ")
            } else {
                String::new()
            }
        ));
    }
    let masks = labels_out.finish()?;
    if let Some(csv) = csv {
        csv.finish()?;
    }
    Ok(Done {
        frames: n,
        objects,
        masks,
        diameters,
        volume: None,
        dropped,
        notes,
    })
}

/// The diameters of an image's frames: one value, or the range.
fn diameter_range(d: &[f32]) -> String {
    let (lo, hi) = d
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if d.is_empty() {
        "-".into()
    } else if format!("{lo:.1}") == format!("{hi:.1}") {
        format!("{lo:.1}")
    } else {
        format!("{lo:.1}-{hi:.1}")
    }
}

/// `"; removed …"` naming the masks the size and flow-error rules removed, with the option
/// that sets each rule, or nothing when none were removed.
fn removed(d: &DroppedMasks, params: &Params) -> String {
    let mut parts = Vec::new();
    if d.too_large > 0 {
        parts.push(format!(
            "{} larger than {} % of the frame (--max-size-fraction)",
            d.too_large,
            params.max_size_fraction * 100.0
        ));
    }
    if d.flow_error > 0 {
        parts.push(format!(
            "{} whose flows disagreed (--flow-threshold {})",
            d.flow_error, params.flow_threshold
        ));
    }
    if d.too_small > 0 {
        parts.push(format!(
            "{} under {} px (--min-size)",
            d.too_small, params.min_size
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; removed {}", parts.join(", "))
    }
}

/// What segments the inputs: the 2D pipeline frame by frame, or the volume pipeline
/// (`--do-3d`) stack by stack.
// One engine per run, so the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Engine {
    Frames(Segmenter),
    Volumes(VolumeSegmenter),
}

impl Engine {
    fn model(&self) -> &Model {
        match self {
            Engine::Frames(s) => s.model(),
            Engine::Volumes(s) => s.model(),
        }
    }

    fn params(&self) -> &Params {
        match self {
            Engine::Frames(s) => s.params(),
            Engine::Volumes(s) => &s.params().params,
        }
    }
}

/// Option combinations that make no sense, refused before anything is loaded.
fn check_volume_flags(args: &SegmentArgs) -> Result<(), Fatal> {
    let usage = |m: String| Err(Fatal::new(EXIT_USAGE, m));
    if !args.do_3d {
        if args.stitch_threshold.is_some() {
            return usage("--stitch-threshold applies to volumes only; add --do-3d".into());
        }
        if args.anisotropy.is_some() {
            return usage("--anisotropy applies to volumes only; add --do-3d".into());
        }
        return Ok(());
    }
    for (given, flag) in [
        (args.flows, "--flows"),
        (args.csv, "--csv"),
        (args.save_rois, "--save-rois"),
        (args.save_outlines_txt, "--save-outlines-txt"),
    ] {
        if given {
            return usage(format!(
                "{flag} is not available with --do-3d (volumes write labels and, with \
                 --outlines, per-plane outlines)"
            ));
        }
    }
    Ok(())
}

fn build_engine(args: &SegmentArgs) -> Result<(Engine, PathBuf), Fatal> {
    check_volume_flags(args)?;
    let model_file =
        model_path::resolve(args.model.as_deref()).map_err(|m| Fatal::new(EXIT_MODEL, m))?;
    let model = Model::load(&model_file)
        .map_err(|e| Fatal::new(EXIT_MODEL, format!("{}: {e}", model_file.display())))?;
    // Unknown sizes are the rule at a microscope: estimate them when the model can.
    let default_diameter = Diameter::default_for(model.info());
    let params = Params {
        diameter: args.diameter.unwrap_or(default_diameter),
        flow_threshold: args.flow_threshold,
        cellprob_threshold: args.cellprob_threshold,
        min_size: args.min_size,
        max_size_fraction: args.max_size_fraction,
        percentiles: match args.norm_percentile.as_slice() {
            &[lo, hi] => (lo, hi),
            _ => Params::default().percentiles,
        },
        normalize: !args.no_norm,
        augment: args.tta,
        tile_overlap: args.tile_overlap,
        invert: args.invert,
        ..Params::default()
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let usage = |e: cellpose::Error| {
        let msg = match &e {
            cellpose::Error::Params(ParamsError::OutOfRange { name, .. })
                if name.starts_with("percentiles") =>
            {
                let p = &args.norm_percentile;
                format!(
                    "--norm-percentile {} {}: expected 0 <= LOW < HIGH <= 100",
                    p[0], p[1]
                )
            }
            cellpose::Error::Params(ParamsError::OutOfRange { name, .. }) => {
                format!("{}: {e}", flag_of(name))
            }
            cellpose::Error::Params(ParamsError::NoSizeModel) => format!(
                "--diameter auto: {e} ({}); give a diameter in pixels instead",
                model_file.display()
            ),
            _ => e.to_string(),
        };
        Fatal::new(EXIT_USAGE, msg)
    };
    let engine = if args.do_3d {
        // A stitch threshold other than 0 selects per-plane 2D + stitching, as the reference's
        // `stitch_threshold` does (the core refuses one outside (0, 1]).
        let mode = match args.stitch_threshold {
            None | Some(0.0) => VolumeMode::Flows3d,
            Some(threshold) => VolumeMode::Stitched { threshold },
        };
        let vp = VolumeParams {
            params,
            mode,
            anisotropy: args.anisotropy.unwrap_or(1.0),
        };
        Engine::Volumes(
            VolumeSegmenter::new(model, vp)
                .map_err(usage)?
                .with_threads(threads)
                .map_err(usage)?,
        )
    } else {
        Engine::Frames(
            Segmenter::new(model, params)
                .map_err(usage)?
                .with_threads(threads)
                .map_err(usage)?,
        )
    };
    Ok((engine, model_file))
}

pub fn run(cmd: SegmentCommand) -> Result<u8, Fatal> {
    let args = cmd.args;
    let mut run = Run::start(&args)?;
    let items = expand_inputs(&cmd.inputs);
    let items = one_result_per_input(items, args.out.as_deref())?;
    run.create_out_dir()?;
    let pb = ProgressBar::new(items.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images, {elapsed} elapsed, {msg}")
            .expect("valid template"),
    );
    eprintln!(
        "model {} (diameter {} px), {} image{} to segment",
        run.model_file.display(),
        run.engine.model().info().diam_mean,
        items.len(),
        if items.len() == 1 { "" } else { "s" }
    );
    for item in &items {
        match item {
            Ok(p) => {
                pb.set_message(p.display().to_string());
                let report = run.one(p);
                pb.suspend(report);
            }
            Err((p, msg)) => {
                pb.suspend(|| eprintln!("error: {}: {msg}", p.display()));
                run.failed += 1;
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(run.finish())
}

/// A run of `segment` or `watch`: the engine, and the counts for the summary line.
pub(crate) struct Run<'a> {
    args: &'a SegmentArgs,
    engine: Engine,
    pub model_file: PathBuf,
    start: Instant,
    pub ok: usize,
    pub failed: usize,
    frames: usize,
    objects: u64,
    /// Seconds spent on images (a watch also waits between them).
    busy: f64,
}

impl<'a> Run<'a> {
    /// Loads the model and checks the options.
    pub fn start(args: &'a SegmentArgs) -> Result<Run<'a>, Fatal> {
        let (engine, model_file) = build_engine(args)?;
        Ok(Run {
            args,
            engine,
            model_file,
            start: Instant::now(),
            ok: 0,
            failed: 0,
            frames: 0,
            objects: 0,
            busy: 0.0,
        })
    }

    /// Creates the `--out` folder if there is one (after the checks that may refuse the
    /// run, so that a refused run leaves nothing behind).
    pub fn create_out_dir(&self) -> Result<(), Fatal> {
        if let Some(d) = &self.args.out {
            std::fs::create_dir_all(d).map_err(|e| {
                Fatal::new(
                    EXIT_SOME_FAILED,
                    format!("{}: cannot create output folder: {e}", d.display()),
                )
            })?;
        }
        Ok(())
    }

    /// Segments one image and writes its results; returns what to print about it (one line
    /// on standard output, or an error line, with notes before), for the caller to print
    /// when its progress display allows.
    pub fn one(&mut self, path: &Path) -> impl FnOnce() + use<> {
        let args = self.args;
        let t = Instant::now();
        let done = match &mut self.engine {
            Engine::Frames(seg) => segment_file(path, args.out.as_deref(), seg, args),
            Engine::Volumes(seg) => {
                segment_volume_file(path, args.out.as_deref(), seg, args.channels, args.outlines)
            }
        };
        let path = path.to_path_buf();
        self.busy += t.elapsed().as_secs_f64();
        let report: Box<dyn FnOnce()> = match done {
            Ok(d) => {
                self.ok += 1;
                self.frames += d.frames;
                self.objects += d.objects;
                let line = format!(
                    "{}: {} object{}{}, diameter {} px, {:.2} s -> {}{}",
                    path.display(),
                    d.objects,
                    if d.objects == 1 { "" } else { "s" },
                    match &d.volume {
                        Some(how) => format!(" in a {}-plane volume ({how})", d.frames),
                        None if d.frames > 1 => format!(" in {} frames", d.frames),
                        None => String::new(),
                    },
                    diameter_range(&d.diameters),
                    t.elapsed().as_secs_f64(),
                    d.masks.display(),
                    removed(&d.dropped, self.engine.params())
                );
                Box::new(move || {
                    for note in &d.notes {
                        eprintln!("note: {}: {note}", path.display());
                    }
                    say!("{line}");
                })
            }
            Err(e) => {
                self.failed += 1;
                let line = format!("error: {}: {}", path.display(), one_line(&e));
                Box::new(move || eprintln!("{line}"))
            }
        };
        report
    }

    /// Prints the summary line and returns the exit status.
    pub fn finish(self) -> u8 {
        let secs = self.start.elapsed().as_secs_f64();
        let (ok, failed) = (self.ok, self.failed);
        say!(
            "segmented {ok} image{} ({} frame{}), {} objects, {:.2} s per image, {:.1} s in all{}",
            if ok == 1 { "" } else { "s" },
            self.frames,
            if self.frames == 1 { "" } else { "s" },
            self.objects,
            if ok > 0 { self.busy / ok as f64 } else { 0.0 },
            secs,
            if failed > 0 {
                format!("; {failed} failed")
            } else {
                String::new()
            }
        );
        if failed > 0 { EXIT_SOME_FAILED } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_choices_parse_like_the_reference() {
        assert_eq!(parse_channels("0,0"), Ok([0, 0]));
        assert_eq!(parse_channels("2, 3"), Ok([2, 3]));
        assert_eq!(parse_channels("gray"), Ok([0, 0]));
        assert_eq!(parse_channels("1"), Ok([1, 0]));
        assert!(parse_channels("4,0").is_err());
        assert!(parse_channels("1,2,3").is_err());
        assert!(parse_channels("red").is_err());
    }

    #[test]
    fn diameter_zero_or_auto_means_automatic() {
        assert_eq!(parse_diameter("auto"), Ok(Diameter::Auto));
        assert_eq!(parse_diameter("0"), Ok(Diameter::Auto));
        assert_eq!(parse_diameter("17.5"), Ok(Diameter::Pixels(17.5)));
        assert_eq!(parse_diameter("model"), Ok(Diameter::ModelDefault));
        assert!(parse_diameter("-3").is_err());
        assert!(parse_diameter("big").is_err());
    }
}
