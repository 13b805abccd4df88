//! The `cellpose` binary on real images from the repository: files it writes, accuracy,
//! evaluation against hand-computed and reference numbers, and errors on bad input.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use cellpose::metrics::{aggregated_jaccard_index, average_precision};
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult};
use tiff::encoder::{TiffEncoder, colortype};

/// Committed test images: (name, width, height, colours).
const SAMPLES: [(&str, usize, usize, usize); 4] = [
    ("dsb_00071198d059ba7f", 256, 256, 1),
    ("dsb_04acab7636c4cf61", 256, 256, 1),
    ("dsb_0e4c2e2780de7ec4", 320, 256, 3),
    ("dsb_e5a6c5e01e6a4ef6", 696, 520, 1),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(name: &str) -> PathBuf {
    root().join("tests/data").join(name)
}

fn model() -> PathBuf {
    root().join("models/nuclei_light.onnx")
}

/// A fresh empty folder for one test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cellpose-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cellpose(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `cellpose ARGS`, which must succeed, and returns its standard output and error.
fn succeeds(args: &[&str]) -> (String, String) {
    let o = cellpose(args);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    (out, err)
}

/// Runs `cellpose ARGS`, which must be refused as a command-line error (exit 2) with a
/// message holding `needle`.
fn refused(args: &[&str], needle: &str) {
    let o = cellpose(args);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "{err}");
}

/// Labels and sample type of every page of a TIFF.
fn read_tiff_pages(path: &Path) -> Vec<(usize, usize, ColorType, Vec<u32>)> {
    let mut dec = Decoder::new(File::open(path).unwrap()).unwrap();
    let mut pages = Vec::new();
    loop {
        let (w, h) = dec.dimensions().unwrap();
        let ct = dec.colortype().unwrap();
        let labels: Vec<u32> = match dec.read_image().unwrap() {
            DecodingResult::U16(v) => v.into_iter().map(u32::from).collect(),
            DecodingResult::U32(v) => v,
            other => panic!("unexpected sample type {other:?}"),
        };
        pages.push((w as usize, h as usize, ct, labels));
        if !dec.more_images() {
            return pages;
        }
        dec.next_image().unwrap();
    }
}

/// Gray or RGB samples of a PNG (8 or 16 bit), with width, height and samples per pixel.
fn read_png(path: &Path) -> (usize, usize, usize, Vec<u16>) {
    let mut dec = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    let buf = &buf[..info.buffer_size()];
    let v = match info.bit_depth {
        png::BitDepth::Sixteen => buf
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
        _ => buf.iter().map(|&b| b as u16).collect(),
    };
    (
        info.width as usize,
        info.height as usize,
        info.color_type.samples(),
        v,
    )
}

fn truth(name: &str) -> Vec<u32> {
    read_png(&data(&format!("{name}_masks.png")))
        .3
        .into_iter()
        .map(u32::from)
        .collect()
}

/// The committed test images segmented once, as a folder, with every optional output.
fn segmented_folder() -> &'static (PathBuf, Output) {
    static RUN: OnceLock<(PathBuf, Output)> = OnceLock::new();
    RUN.get_or_init(|| {
        let out = scratch("folder");
        let o = cellpose(&[
            "segment",
            s(&root().join("tests/data")),
            "--out",
            s(&out),
            "--model",
            s(&model()),
            "--outlines",
            "--flows",
            "--csv",
        ]);
        (out, o)
    })
}

#[test]
fn segmenting_a_folder_writes_16_bit_label_tiffs_that_match_the_ground_truth() {
    let (out, o) = segmented_folder();
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let stdout = text(&o.stdout);
    eprintln!("{stdout}");
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("segmented 4 images (4 frames)"),
        "{stdout}"
    );
    for (name, w, h, _) in SAMPLES {
        let pages = read_tiff_pages(&out.join(format!("{name}_img_cp_masks.tif")));
        assert_eq!(pages.len(), 1);
        let (pw, ph, ct, labels) = &pages[0];
        assert_eq!((*pw, *ph), (w, h));
        assert_eq!(*ct, ColorType::Gray(16));
        // Labels are 1..=n with every label present.
        let n = *labels.iter().max().unwrap();
        let mut seen = vec![false; n as usize + 1];
        labels.iter().for_each(|&l| seen[l as usize] = true);
        assert!(
            seen.iter().all(|&b| b),
            "{name}: labels are not consecutive"
        );
        let reported = stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no result line for {name}: {stdout}"));
        assert!(
            reported.contains(&format!(": {n} objects")),
            "{reported} vs {n}"
        );
        let ap = average_precision(&truth(name), labels, &[0.5])[0].ap;
        eprintln!("{name}: {n} objects, AP50 {ap:.3}");
        assert!(n > 5, "{name}: only {n} objects");
        assert!(ap > 0.4, "{name}: AP50 {ap:.3}");
    }
}

#[test]
fn csv_rows_match_the_label_image() {
    let (out, o) = segmented_folder();
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    for (name, w, _, _) in SAMPLES {
        let labels = read_tiff_pages(&out.join(format!("{name}_img_cp_masks.tif")))
            .remove(0)
            .3;
        let csv = std::fs::read_to_string(out.join(format!("{name}_img_cp.csv"))).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "frame,label,area,centroid_y,centroid_x,bbox_y0,bbox_x0,bbox_y1,bbox_x1,mean_intensity"
        );
        let rows: Vec<Vec<f64>> = lines
            .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
            .collect();
        let n = *labels.iter().max().unwrap() as usize;
        assert_eq!(rows.len(), n, "{name}: one row per object");
        for r in &rows {
            let label = r[1] as u32;
            let px: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == label).collect();
            assert_eq!(r[0], 1.0);
            assert_eq!(r[2] as usize, px.len(), "{name} label {label} area");
            let cy = px.iter().map(|&i| (i / w) as f64).sum::<f64>() / px.len() as f64;
            let cx = px.iter().map(|&i| (i % w) as f64).sum::<f64>() / px.len() as f64;
            assert!((r[3] - cy).abs() < 1e-3 && (r[4] - cx).abs() < 1e-3);
            let y0 = px.iter().map(|&i| i / w).min().unwrap() as f64;
            let x1 = px.iter().map(|&i| i % w).max().unwrap() as f64 + 1.0;
            assert_eq!((r[5], r[8]), (y0, x1));
            assert!(r[9] > 0.0 && r[9] <= 255.0, "mean intensity {}", r[9]);
        }
    }
}

#[test]
fn outline_and_flow_pictures_have_the_image_size() {
    let (out, o) = segmented_folder();
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    for (name, w, h, _) in SAMPLES {
        let (ow, oh, c, px) = read_png(&out.join(format!("{name}_img_cp_outlines.png")));
        assert_eq!((ow, oh, c), (w, h, 3));
        let red = px.chunks(3).filter(|p| p == &[255, 0, 0]).count();
        assert!(red > 100, "{name}: {red} outline pixels");
        let (fw, fh, c, px) = read_png(&out.join(format!("{name}_img_cp_flows.png")));
        assert_eq!((fw, fh, c), (w, h, 3));
        assert!(px.iter().any(|&v| v > 100), "{name}: flows picture is dark");
    }
}

#[test]
fn eval_on_the_segmented_folder_ends_with_the_summary_line() {
    let (out, o) = segmented_folder();
    assert!(o.status.success(), "stderr: {}", text(&o.stderr));
    let e = cellpose(&["eval", s(&root().join("tests/data")), s(out)]);
    assert!(e.status.success(), "stderr: {}", text(&e.stderr));
    let stdout = text(&e.stdout);
    eprintln!("{stdout}");
    let last = stdout.lines().last().unwrap();
    let fields: Vec<&str> = last.split(' ').collect();
    assert_eq!(fields.len(), 5, "{last}");
    for (f, key) in fields.iter().zip(["AP50=", "AP75=", "AP90=", "AJI="]) {
        let v: f64 = f.strip_prefix(key).expect(key).parse().unwrap();
        assert!((0.0..=1.0).contains(&v));
    }
    assert_eq!(fields[4], "n=4");
    let ap50: f64 = fields[0][5..].parse().unwrap();
    assert!(ap50 > 0.5, "{last}");
}

/// Writes a label image as a one-page 16-bit TIFF.
fn write_labels(path: &Path, w: usize, labels: &[u16]) {
    let mut f = BufWriter::new(File::create(path).unwrap());
    TiffEncoder::new(&mut f)
        .unwrap()
        .write_image::<colortype::Gray16>(w as u32, (labels.len() / w) as u32, labels)
        .unwrap();
}

#[test]
fn eval_scores_hand_computed_cases() {
    let d = scratch("eval-hand");
    let (gt, pred) = (d.join("gt"), d.join("pred"));
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&pred).unwrap();
    // 8×4 images: cell 1 is the left 4×4 square, cell 2 the right one.
    let two_cells: Vec<u16> = (0..32).map(|i| if i % 8 < 4 { 1 } else { 2 }).collect();
    let perfect: Vec<u16> = two_cells.iter().map(|&l| 3 - l).collect();
    // Cell 1 split into a top and a bottom half (IoU 0.5 each), cell 2 exact.
    let split: Vec<u16> = (0..32)
        .map(|i| {
            if i % 8 >= 4 {
                1
            } else if i / 8 < 2 {
                2
            } else {
                3
            }
        })
        .collect();
    let missed: Vec<u16> = two_cells
        .iter()
        .map(|&l| if l == 1 { 1 } else { 0 })
        .collect();
    let empty = vec![0u16; 32];
    for name in ["a_perfect", "b_split", "c_missed", "d_empty", "e_missing"] {
        write_labels(&gt.join(format!("{name}_masks.tif")), 8, &two_cells);
    }
    write_labels(&pred.join("a_perfect_img_cp_masks.tif"), 8, &perfect);
    write_labels(&pred.join("b_split_cp_masks.tif"), 8, &split);
    write_labels(&pred.join("c_missed_img_cp_masks.tif"), 8, &missed);
    write_labels(&pred.join("d_empty_cp_masks.tif"), 8, &empty);
    let o = cellpose(&["eval", s(&gt), s(&pred)]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    eprintln!("{stdout}{stderr}");
    assert!(o.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "a_perfect AP50=1.000 AP75=1.000 AP90=1.000 AJI=1.000 true=2 pred=2",
            "b_split AP50=0.667 AP75=0.250 AP90=0.250 AJI=0.750 true=2 pred=3",
            "c_missed AP50=0.500 AP75=0.500 AP90=0.500 AJI=0.500 true=2 pred=1",
            "d_empty AP50=0.000 AP75=0.000 AP90=0.000 AJI=0.000 true=2 pred=0",
            "e_missing AP50=0.000 AP75=0.000 AP90=0.000 AJI=0.000 true=2 pred=0 (missing)",
            "AP50=0.433 AP75=0.350 AP90=0.350 AJI=0.450 n=5",
        ]
    );
    assert!(
        stderr.contains("e_missing_masks.tif: no prediction")
            && stderr.contains("counted as empty"),
        "{stderr}"
    );
}

/// One row of the committed reference table.
struct Reference {
    name: String,
    ap: [f64; 3],
    aji: f64,
    n_true: usize,
    n_pred: usize,
}

fn reference_table() -> Vec<Reference> {
    let path = root().join("cli/tests/fixtures/reference_metrics.txt");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |i: usize| f[i].parse::<f64>().unwrap();
            Reference {
                name: f[0].to_string(),
                ap: [num(1), num(2), num(3)],
                aji: num(4),
                n_true: f[5].parse().unwrap(),
                n_pred: f[6].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn core_metrics_reproduce_the_python_reference_on_real_label_images() {
    let table = reference_table();
    assert_eq!(table.len(), 4);
    for r in &table {
        let pred = read_tiff_pages(&root().join(format!(
            "cli/tests/fixtures/reference_pred/{}_cp_masks.tif",
            r.name
        )))
        .remove(0)
        .3;
        let t = truth(&r.name);
        let ap = average_precision(&t, &pred, &[0.5, 0.75, 0.9]);
        assert_eq!(ap.len(), 3);
        for (got, want) in ap.iter().zip(r.ap) {
            assert!(
                (got.ap - want).abs() < 1e-6,
                "{} AP@{}: {} vs reference {want}",
                r.name,
                got.threshold,
                got.ap
            );
        }
        let aji = aggregated_jaccard_index(&t, &pred);
        assert!(
            (aji - r.aji).abs() < 1e-6,
            "{} AJI {aji} vs reference {}",
            r.name,
            r.aji
        );
    }
}

#[test]
fn eval_prints_the_python_reference_numbers() {
    let o = cellpose(&[
        "eval",
        s(&root().join("tests/data")),
        s(&root().join("cli/tests/fixtures/reference_pred")),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let table = reference_table();
    for r in &table {
        let want = format!(
            "{} AP50={:.3} AP75={:.3} AP90={:.3} AJI={:.3} true={} pred={}",
            r.name, r.ap[0], r.ap[1], r.ap[2], r.aji, r.n_true, r.n_pred
        );
        assert!(stdout.lines().any(|l| l == want), "{want}\n{stdout}");
    }
    let mean = |f: &dyn Fn(&Reference) -> f64| table.iter().map(f).sum::<f64>() / 4.0;
    let want = format!(
        "AP50={:.3} AP75={:.3} AP90={:.3} AJI={:.3} n=4",
        mean(&|r| r.ap[0]),
        mean(&|r| r.ap[1]),
        mean(&|r| r.ap[2]),
        mean(&|r| r.aji)
    );
    assert_eq!(stdout.lines().last().unwrap(), want);
}

#[test]
fn multi_page_tiff_frames_are_segmented_like_single_images() {
    let d = scratch("stack");
    let name = "dsb_00071198d059ba7f";
    let (w, h, _, px) = read_png(&data(&format!("{name}_img.png")));
    // 16-bit pages: the image, then its left-right mirror.
    let page1: Vec<u16> = px.iter().map(|&v| v * 257).collect();
    let page2: Vec<u16> = (0..w * h)
        .map(|i| page1[(i / w) * w + (w - 1 - i % w)])
        .collect();
    let stack = d.join("stack.tif");
    {
        let mut f = BufWriter::new(File::create(&stack).unwrap());
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        enc.write_image::<colortype::Gray16>(w as u32, h as u32, &page1)
            .unwrap();
        enc.write_image::<colortype::Gray16>(w as u32, h as u32, &page2)
            .unwrap();
    }
    let o = cellpose(&[
        "segment",
        s(&stack),
        "--model",
        s(&model()),
        "--outlines",
        "--csv",
        "--diameter",
        "18",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let pages = read_tiff_pages(&d.join("stack_cp_masks.tif"));
    assert_eq!(pages.len(), 2);
    let t = truth(name);
    let mirrored_truth: Vec<u32> = (0..w * h)
        .map(|i| t[(i / w) * w + (w - 1 - i % w)])
        .collect();
    for ((_, _, _, labels), gt) in pages.iter().zip([&t, &mirrored_truth]) {
        let ap = average_precision(gt, labels, &[0.5])[0].ap;
        assert!(ap > 0.5, "AP50 {ap:.3}");
    }
    for f in [
        "stack_cp_outlines_frame1.png",
        "stack_cp_outlines_frame2.png",
    ] {
        assert_eq!(read_png(&d.join(f)).0, w, "{f}");
    }
    let csv = std::fs::read_to_string(d.join("stack_cp.csv")).unwrap();
    let frame2_rows = csv.lines().filter(|l| l.starts_with("2,")).count();
    assert_eq!(
        frame2_rows as u32,
        *pages[1].3.iter().max().unwrap(),
        "CSV rows of frame 2"
    );
}

/// A TIFF colour type with five 8-bit samples per pixel (a z-stack saved as channels).
struct FiveBand;
impl colortype::ColorType for FiveBand {
    type Inner = u8;
    const TIFF_VALUE: tiff::tags::PhotometricInterpretation =
        tiff::tags::PhotometricInterpretation::BlackIsZero;
    const BITS_PER_SAMPLE: &'static [u16] = &[8; 5];
    const SAMPLE_FORMAT: &'static [tiff::tags::SampleFormat] = &[tiff::tags::SampleFormat::Uint; 5];
    fn horizontal_predict(row: &[u8], result: &mut Vec<u8>) {
        result.extend_from_slice(row);
    }
}

/// CRC-32 of PNG chunks (ISO 3309, reflected polynomial 0xEDB88320).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The lines of `stderr` that report `path`.
fn error_lines_for<'a>(stderr: &'a str, path: &Path) -> Vec<&'a str> {
    let prefix = format!("error: {}: ", path.display());
    stderr.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn bad_files_are_reported_one_line_each_and_do_not_stop_the_batch() {
    let d = scratch("bad");
    let good = d.join("good.png");
    std::fs::copy(data("dsb_00071198d059ba7f_img.png"), &good).unwrap();
    let unreadable = d.join("notes.png");
    std::fs::write(&unreadable, "this is not an image\n").unwrap();
    let empty = d.join("empty.tif");
    std::fs::write(&empty, b"").unwrap();
    // A valid PNG header that declares 0×256 pixels.
    let zero = d.join("zero.png");
    {
        let mut bytes = std::fs::read(&good).unwrap();
        bytes[16..20].copy_from_slice(&0u32.to_be_bytes()); // IHDR width
        let crc = crc32(&bytes[12..29]); // IHDR type and data
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&zero, bytes).unwrap();
    }
    let stack3d = d.join("zstack.tif");
    {
        let mut f = BufWriter::new(File::create(&stack3d).unwrap());
        TiffEncoder::new(&mut f)
            .unwrap()
            .write_image::<FiveBand>(16, 16, &[7u8; 16 * 16 * 5])
            .unwrap();
    }
    let missing = d.join("missing.png");
    let o = cellpose(&[
        "segment",
        s(&good),
        s(&unreadable),
        s(&empty),
        s(&zero),
        s(&stack3d),
        s(&missing),
        "--model",
        s(&model()),
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    eprintln!("{stdout}{stderr}");
    assert_eq!(o.status.code(), Some(1), "a failed file gives exit code 1");
    assert!(
        d.join("good_cp_masks.tif").is_file(),
        "the good file was done"
    );
    assert!(stdout.contains("; 5 failed"), "{stdout}");
    for (path, problem) in [
        (&unreadable, "not a PNG or TIFF file"),
        (&empty, "file is empty (0 bytes)"),
        (&zero, "image is 0×256 pixels"),
        (&stack3d, "5 samples per pixel"),
        (&missing, "no such file or folder"),
    ] {
        let lines = error_lines_for(&stderr, path);
        assert_eq!(lines.len(), 1, "{}: {stderr}", path.display());
        assert!(lines[0].contains(problem), "{}", lines[0]);
    }
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        5
    );
}

#[test]
fn a_channel_the_image_lacks_is_an_error_naming_the_file() {
    let gray = data("dsb_00071198d059ba7f_img.png");
    let o = cellpose(&[
        "segment",
        s(&gray),
        "--channels",
        "2,0",
        "--model",
        s(&model()),
        "--out",
        s(&scratch("chan")),
    ]);
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    let lines = error_lines_for(&stderr, &gray);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("colour 2") && lines[0].contains("1 colour channel"),
        "{}",
        lines[0]
    );
    // A channel number outside 0..=3 is refused before anything runs.
    let o = cellpose(&["segment", s(&gray), "--channels", "5,0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr)
            .lines()
            .next()
            .unwrap()
            .contains("--channels")
    );
}

#[test]
fn rgb_channels_choose_the_colour_to_segment_and_invert_is_applied() {
    let rgb = data("dsb_0e4c2e2780de7ec4_img.png");
    let (w, _, c, px) = read_png(&rgb);
    assert_eq!(c, 3);
    let run = |dir: &str, extra: &[&str]| {
        let d = scratch(dir);
        let mut args = vec!["segment", s(&rgb), "--channels", "3,0", "--csv"];
        args.extend_from_slice(extra);
        let (m, o) = (model(), d.to_str().unwrap().to_string());
        args.extend_from_slice(&["--model", s(&m), "--out", &o]);
        let out = cellpose(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let labels = read_tiff_pages(&d.join("dsb_0e4c2e2780de7ec4_img_cp_masks.tif"))
            .remove(0)
            .3;
        let csv = std::fs::read_to_string(d.join("dsb_0e4c2e2780de7ec4_img_cp.csv")).unwrap();
        (labels, csv)
    };
    let (labels, csv) = run("rgb", &[]);
    assert_eq!(labels.len(), 320 * 256);
    // The CSV's mean intensity is over the blue samples (colour 3) of each object.
    let mut rows = 0;
    for row in csv.lines().skip(1) {
        let f: Vec<f64> = row.split(',').map(|v| v.parse().unwrap()).collect();
        let label = f[1] as u32;
        let blue: Vec<f64> = (0..labels.len())
            .filter(|&i| labels[i] == label)
            .map(|i| px[i * 3 + 2] as f64)
            .collect();
        let mean = blue.iter().sum::<f64>() / blue.len() as f64;
        assert!(
            (f[9] - mean).abs() < 1e-3,
            "label {label}: {} vs {mean}",
            f[9]
        );
        rows += 1;
    }
    assert!(rows > 5, "{rows} objects");
    assert_eq!(w, 320);
    let (inverted, _) = run("rgb-invert", &["--invert"]);
    assert_ne!(inverted, labels, "--invert changed nothing");
}

#[test]
fn a_missing_or_corrupt_model_is_a_one_line_error_naming_it() {
    let d = scratch("model");
    let img = data("dsb_00071198d059ba7f_img.png");
    let missing = d.join("nope.onnx");
    let o = cellpose(&["segment", s(&img), "--model", s(&missing)]);
    assert_eq!(o.status.code(), Some(3));
    let stderr = text(&o.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: {}: model file not found (--model names a file, or one of the shipped \
             models: nuclei, cyto)",
            missing.display()
        )
    );
    let corrupt = d.join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07garbage").unwrap();
    for args in [
        vec!["segment", s(&img), "--model", s(&corrupt)],
        vec!["info", s(&corrupt)],
    ] {
        let o = cellpose(&args);
        assert_eq!(o.status.code(), Some(3));
        let stderr = text(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with(&format!("error: {}: ", corrupt.display())),
            "{stderr}"
        );
    }
}

#[test]
fn eval_refuses_a_3d_ground_truth_and_names_it() {
    let d = scratch("eval3d");
    let gt = d.join("gt");
    std::fs::create_dir_all(&gt).unwrap();
    let stack = gt.join("cube_masks.tif");
    {
        let mut f = BufWriter::new(File::create(&stack).unwrap());
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        for _ in 0..3 {
            enc.write_image::<colortype::Gray16>(4, 4, &[1u16; 16])
                .unwrap();
        }
    }
    write_labels(&gt.join("flat_masks.tif"), 4, &[1u16; 16]);
    write_labels(&d.join("flat_cp_masks.tif"), 4, &[1u16; 16]);
    write_labels(&d.join("cube_cp_masks.tif"), 4, &[1u16; 16]);
    let o = cellpose(&["eval", s(&gt), s(&d)]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{stdout}{stderr}");
    let lines = error_lines_for(&stderr, &stack);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("stack of 3 pages"), "{}", lines[0]);
    assert_eq!(
        stdout.lines().last().unwrap(),
        "AP50=1.000 AP75=1.000 AP90=1.000 AJI=1.000 n=1"
    );
}

/// The model a run without `--model` must find (cli/src/model_path.rs `SHIPPED_MODEL`).
const SHIPPED_INT8: &str = "nuclei_light_int8.onnx";

#[test]
fn a_run_without_options_uses_the_shipped_int8_model_with_automatic_diameter() {
    // An image of dsb2018/test; models/results/nuclei_light/rust_int8_auto_diameter.txt
    // records AP50 0.884 for it (82 annotated nuclei, 12.8 px estimated, 12.8 annotated).
    let name = "dsb_04acab7636c4cf61";
    let out = scratch("defaults");
    let o = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .env_remove("CELLPOSE_MODEL")
        .args([
            "segment",
            s(&data(&format!("{name}_img.png"))),
            "--out",
            s(&out),
        ])
        .output()
        .expect("the binary runs");
    let stderr = text(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let used = stderr
        .lines()
        .find(|l| l.starts_with("model "))
        .unwrap_or_else(|| panic!("no model line: {stderr}"));
    assert!(used.contains(SHIPPED_INT8), "{used}");
    let stdout = text(&o.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(name))
        .unwrap_or_else(|| panic!("no result line: {stdout}"));
    // Automatic diameter, not the model's 23 px: the annotated median is 12.8 px.
    let diameter: f64 = line
        .split("diameter ")
        .nth(1)
        .and_then(|r| r.split(" px").next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no diameter in {line}"));
    assert!((diameter - 12.8).abs() < 0.15 * 12.8, "{line}");
    let pages = read_tiff_pages(&out.join(format!("{name}_img_cp_masks.tif")));
    let ap = average_precision(&truth(name), &pages[0].3, &[0.5])[0].ap;
    eprintln!("{used}\n{line}\nAP50 {ap:.3}");
    assert!(ap > 0.8, "AP50 {ap:.3} with the shipped defaults");
}

#[test]
fn shipped_models_are_chosen_by_name_and_an_unknown_dir_is_reported() {
    // `--model cyto` (and `info cyto`) find models/cyto_light_int8.onnx from target/release.
    let (stdout, _) = succeeds(&["info", "cyto"]);
    assert!(stdout.contains("cyto_light_int8.onnx"), "{stdout}");
    assert!(stdout.contains("cellpose.diam_mean = 30"), "{stdout}");
    let out = scratch("cyto");
    let img = data("cells/usiigaci_set19_img.png");
    let (stdout, stderr) = succeeds(&["segment", s(&img), "--model", "cyto", "--out", s(&out)]);
    assert!(stderr.contains("cyto_light_int8.onnx"), "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("usiigaci_set19"))
        .unwrap_or("");
    let n: u32 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no object count in {stdout}"));
    assert!(
        (40..=120).contains(&n),
        "{n} cells found; 76 annotated: {line}"
    );
    // The model's folder given wrong: the shipped model is looked for elsewhere, and a
    // missing one names the places tried.
    let o = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .env("CELLPOSE_MODEL_DIR", "/nonexistent-models")
        .args(["info", "nuclei"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the checkout's models/ is searched after CELLPOSE_MODEL_DIR"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .env("CELLPOSE_MODEL", "cyto3")
        .args(["segment", s(&img), "--out", s(&out)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("cyto3: model file not found (CELLPOSE_MODEL names a file, or one of the shipped models: nuclei, cyto)"), "{stderr}");
}

#[test]
fn info_describes_the_shipped_model() {
    use sha2::Digest;
    let o = cellpose(&["info", s(&model())]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    eprintln!("{stdout}");
    let bytes = std::fs::read(model()).unwrap();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(stdout.contains(&format!("sha256      {sha}")), "{stdout}");
    assert!(stdout.contains(&format!("size        {} bytes", bytes.len())));
    let input = stdout
        .lines()
        .find(|l| l.starts_with("input "))
        .expect("an input line");
    assert!(input.contains(",2,"), "{input}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("output ")).count(),
        2
    );
    assert!(stdout.contains("cellpose.diam_mean"), "{stdout}");
}

// ---------------------------------------------------------------- volumes (--do-3d)

/// A small rendered z-stack: blurred bright ellipsoids (the "nuclei") on a noisy background,
/// sampled every `zstep` pixels along Z, with the true labels of every voxel.
struct Stack {
    depth: usize,
    height: usize,
    width: usize,
    image: Vec<u16>,
    truth: Vec<u32>,
}

/// Nuclei with semi-axes of 7–8 px (physical units) placed without overlap so that each lies
/// wholly inside the stack; blurred with a binomial kernel (5 taps in XY, 3 in Z); background
/// 40 with ±8 of noise; brightness 120–220. Deterministic for a seed.
fn render_stack(depth: usize, height: usize, width: usize, zstep: usize, seed: u64) -> Stack {
    let mut state = seed;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let extent = [(depth * zstep) as f64, height as f64, width as f64];
    let mut objects: Vec<([f64; 3], [f64; 3], f64)> = Vec::new();
    for _ in 0..400 {
        let r = [0, 1, 2].map(|_| 7.0 + (next() % 2) as f64);
        // A margin of 2 px keeps every nucleus clear of the stack's faces.
        let c: [f64; 3] = std::array::from_fn(|a| {
            r[a] + 2.0 + (next() % (extent[a] - 2.0 * r[a] - 4.0).max(1.0) as u64) as f64
        });
        let clear = objects.iter().all(|(oc, or, _)| {
            let dist = (0..3).map(|a| (c[a] - oc[a]).powi(2)).sum::<f64>().sqrt();
            dist >= r[0].max(r[1]).max(r[2]) + or[0].max(or[1]).max(or[2]) + 2.0
        });
        if clear {
            objects.push((c, r, 120.0 + (next() % 101) as f64));
        }
    }
    let n = depth * height * width;
    let mut truth = vec![0u32; n];
    let mut signal = vec![0.0f64; n];
    for (k, (c, r, bright)) in objects.iter().enumerate() {
        for z in 0..depth {
            for y in 0..height {
                for x in 0..width {
                    let p = [(z * zstep) as f64, y as f64, x as f64];
                    let q: f64 = (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum();
                    if q <= 1.0 {
                        let i = (z * height + y) * width + x;
                        truth[i] = k as u32 + 1;
                        signal[i] = *bright;
                    }
                }
            }
        }
    }
    let blur = |a: &[f64], stride: usize, len: usize, taps: &[f64]| -> Vec<f64> {
        let half = (taps.len() / 2) as isize;
        let total: f64 = taps.iter().sum();
        (0..n)
            .map(|i| {
                let p = ((i / stride) % len) as isize;
                let base = i - p as usize * stride;
                taps.iter()
                    .enumerate()
                    .map(|(t, wt)| {
                        let q = (p + t as isize - half).clamp(0, len as isize - 1) as usize;
                        wt * a[base + q * stride]
                    })
                    .sum::<f64>()
                    / total
            })
            .collect()
    };
    let xy = [1.0, 4.0, 6.0, 4.0, 1.0];
    let signal = blur(&signal, 1, width, &xy);
    let signal = blur(&signal, width, height, &xy);
    let signal = blur(&signal, width * height, depth, &[1.0, 2.0, 1.0]);
    let image = signal
        .iter()
        .map(|&v| (40.0 + v + (next() % 17) as f64 - 8.0).round() as u16)
        .collect();
    Stack {
        depth,
        height,
        width,
        image,
        truth,
    }
}

/// Writes the stack as a multi-page 16-bit TIFF, one page per plane.
fn write_stack(path: &Path, st: &Stack) {
    let mut f = BufWriter::new(File::create(path).unwrap());
    let mut enc = TiffEncoder::new(&mut f).unwrap();
    for plane in st.image.chunks_exact(st.height * st.width) {
        enc.write_image::<colortype::Gray16>(st.width as u32, st.height as u32, plane)
            .unwrap();
    }
}

/// The test stack: 22 planes of 64×64, isotropic, nuclei about 15 px across. (On a 14-plane
/// stack sampled every 2 px and run with --anisotropy 2, the shipped model's 3D masks of the
/// dimmer nuclei come out at ~0.7× their true volume, IoU ~0.4, while stitching still
/// matches them all; at this size the test keeps to the isotropic case.)
fn test_stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| render_stack(22, 64, 64, 1, 11))
}

/// For each true object, its highest IoU with any predicted object.
fn best_iou(truth: &[u32], pred: &[u32]) -> Vec<f64> {
    let nt = truth.iter().copied().max().unwrap_or(0) as usize;
    let np = pred.iter().copied().max().unwrap_or(0) as usize;
    let mut inter = vec![0usize; (nt + 1) * (np + 1)];
    for (&t, &p) in truth.iter().zip(pred) {
        inter[t as usize * (np + 1) + p as usize] += 1;
    }
    let size_t = |t: usize| (0..=np).map(|p| inter[t * (np + 1) + p]).sum::<usize>();
    let size_p = |p: usize| (0..=nt).map(|t| inter[t * (np + 1) + p]).sum::<usize>();
    (1..=nt)
        .map(|t| {
            (1..=np)
                .map(|p| {
                    let i = inter[t * (np + 1) + p];
                    i as f64 / (size_t(t) + size_p(p) - i).max(1) as f64
                })
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Runs `segment --do-3d` on the test stack with `extra` options and checks the label
/// TIFF: one 16-bit page per plane of the stack's size, labels 1..=N as the summary line
/// says, most true nuclei matched at IoU ≥ 0.5, and objects that span several planes.
fn check_volume_run(test: &str, extra: &[&str]) {
    let d = scratch(test);
    let st = test_stack();
    let stack = d.join("nuclei.tif");
    write_stack(&stack, st);
    let m = model();
    let mut args = vec![
        "segment",
        s(&stack),
        "--do-3d",
        "--model",
        s(&m),
        "--diameter",
        "15",
        "--threads",
        "2",
        "--outlines",
    ];
    args.extend_from_slice(extra);
    let t = std::time::Instant::now();
    let o = cellpose(&args);
    let secs = t.elapsed().as_secs_f64();
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    let pages = read_tiff_pages(&d.join("nuclei_cp_masks.tif"));
    assert_eq!(pages.len(), st.depth, "one label page per plane");
    for (w, h, ct, _) in &pages {
        assert_eq!((*w, *h, *ct), (st.width, st.height, ColorType::Gray(16)));
    }
    let labels: Vec<u32> = pages.iter().flat_map(|p| p.3.iter().copied()).collect();
    let n_pred = labels.iter().copied().max().unwrap_or(0) as usize;
    let n_true = st.truth.iter().copied().max().unwrap() as usize;
    let line = stdout.lines().next().unwrap();
    assert!(
        line.contains(&format!(
            ": {n_pred} objects in a {}-plane volume (",
            st.depth
        )),
        "{line}"
    );
    let scores = average_precision(&st.truth, &labels, &[0.5, 0.75]);
    let m = &scores[0];
    eprintln!(
        "{test}: {line}\n{test}: {n_pred} objects found, {n_true} true, {} matched at IoU 0.5 \
         and {} at 0.75 (AP50 {:.3}), {secs:.1} s",
        m.tp, scores[1].tp, m.ap
    );
    assert!(
        m.tp * 4 >= n_true * 3,
        "only {} of {n_true} nuclei matched at IoU 0.5; best IoU per nucleus: {:.2?}",
        m.tp,
        best_iou(&st.truth, &labels)
    );
    eprintln!(
        "{test}: best IoU per nucleus {:.2?}",
        best_iou(&st.truth, &labels)
    );
    assert!(
        n_pred <= n_true + n_true / 2 + 1,
        "{n_pred} objects for {n_true} nuclei"
    );
    // Objects are 3D: the matched nuclei span several planes under one label.
    let plane = st.width * st.height;
    let planes_of = |l: u32| {
        labels
            .chunks_exact(plane)
            .filter(|p| p.contains(&l))
            .count()
    };
    let deep = (1..=n_pred as u32).filter(|&l| planes_of(l) >= 4).count();
    assert!(
        deep * 4 >= n_pred * 3,
        "{deep} of {n_pred} objects span 4+ planes"
    );
    let digits = st.depth.to_string().len();
    for z in [1, st.depth] {
        let f = d.join(format!("nuclei_cp_outlines_frame{z:0digits$}.png"));
        assert_eq!(read_png(&f).0, st.width, "{}", f.display());
    }
}

#[test]
fn do_3d_segments_a_multi_page_tiff_as_one_volume_with_3d_flows() {
    check_volume_run("vol3d", &["--anisotropy", "1"]);
}

#[test]
fn do_3d_with_a_stitch_threshold_joins_2d_planes_into_volumes() {
    check_volume_run("volstitch", &["--stitch-threshold", "0.25"]);
}

#[test]
fn volume_options_are_refused_with_one_line_errors() {
    let d = scratch("volerr");
    let img = data("dsb_00071198d059ba7f_img.png");
    let single = d.join("single.tif");
    {
        let mut f = BufWriter::new(File::create(&single).unwrap());
        TiffEncoder::new(&mut f)
            .unwrap()
            .write_image::<colortype::Gray16>(32, 32, &[100u16; 32 * 32])
            .unwrap();
    }
    let m = model();
    // Command-line errors: exit 2, one line, nothing processed.
    for (extra, says) in [
        (
            vec!["--stitch-threshold", "0.5"],
            "--stitch-threshold applies to volumes only",
        ),
        (
            vec!["--anisotropy", "2"],
            "--anisotropy applies to volumes only",
        ),
        (
            vec!["--do-3d", "--anisotropy", "0"],
            "`0` is not an anisotropy",
        ),
        (
            vec!["--do-3d", "--anisotropy", "-1"],
            "is not an anisotropy",
        ),
        (
            vec!["--do-3d", "--anisotropy", "1000"],
            "--anisotropy: anisotropy = 1000",
        ),
        (
            vec!["--do-3d", "--stitch-threshold", "1.5"],
            "--stitch-threshold: stitch_threshold = 1.5",
        ),
        (
            vec!["--do-3d", "--flows"],
            "--flows is not available with --do-3d",
        ),
        (
            vec!["--do-3d", "--csv"],
            "--csv is not available with --do-3d",
        ),
    ] {
        let mut args = vec!["segment", s(&single), "--model", s(&m), "--out", s(&d)];
        args.extend_from_slice(&extra);
        let o = cellpose(&args);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{extra:?}: {stderr}");
        assert!(errors[0].contains(says), "{extra:?}: {}", errors[0]);
    }
    assert!(!d.join("single_cp_masks.tif").exists());
    // A file that is not a z-stack fails (exit 1) with one error line naming it.
    let not_a_stack = |file: &Path, says: &str| {
        let o = cellpose(&[
            "segment",
            s(file),
            "--do-3d",
            "--model",
            s(&m),
            "--out",
            s(&d),
        ]);
        let stderr = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        let lines = error_lines_for(&stderr, file);
        assert!(lines.len() == 1 && lines[0].contains(says), "{stderr}");
    };
    // A single image is not a z-stack.
    for file in [&single, &img] {
        not_a_stack(file, "--do-3d needs a z-stack");
    }
    // Planes of different sizes are not a z-stack either.
    let mixed = d.join("mixed.tif");
    {
        let mut f = BufWriter::new(File::create(&mixed).unwrap());
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        enc.write_image::<colortype::Gray16>(32, 32, &[100u16; 32 * 32])
            .unwrap();
        enc.write_image::<colortype::Gray16>(16, 32, &[100u16; 16 * 32])
            .unwrap();
    }
    not_a_stack(&mixed, "TIFF page 2 is 16×32");
}

// ---- Inputs of the kinds real users send (issue 22; fixtures/cases/SOURCES.md) ----

fn case(name: &str) -> PathBuf {
    root().join("cli/tests/fixtures/cases").join(name)
}

/// Runs `cellpose ARGS` and returns its exit status and the peak resident memory (kB) seen
/// in `/proc` while it ran (polled every 5 ms; the process's own high-water mark, read just
/// before it is reaped).
fn peak_rss_kb(args: &[&str]) -> (std::process::ExitStatus, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The top-left `side × side` pixels (`side` ≤ 249) of a real 256×256 nuclei image, 8-bit,
/// starting `shift` pixels to the right.
fn corner_of_real_image(side: usize, shift: usize) -> Vec<u8> {
    let (w, _, _, px) = read_png(&data("dsb_04acab7636c4cf61_img.png"));
    (0..side * side)
        .map(|i| px[(i / side) * w + i % side + shift].min(255) as u8)
        .collect()
}

/// A multi-page 8-bit TIFF of `frames` 240×240 corners of a real image (shifted a little
/// from frame to frame), with no axes metadata.
fn write_time_lapse(path: &Path, frames: usize) {
    let side = 240;
    let mut f = BufWriter::new(File::create(path).unwrap());
    let mut enc = TiffEncoder::new(&mut f).unwrap();
    for k in 0..frames {
        let page = corner_of_real_image(side, k % 7);
        enc.write_image::<colortype::Gray8>(side as u32, side as u32, &page)
            .unwrap();
    }
}

/// A 3-frame time-lapse in a fresh folder, segmented with `extra` options (diameter 18).
fn segmented_time_lapse(test: &str, extra: &[&str]) -> (PathBuf, Output) {
    let d = scratch(test);
    let stack = d.join("pages.tif");
    write_time_lapse(&stack, 3);
    let model = model();
    let mut args = vec![
        "segment",
        s(&stack),
        "--diameter",
        "18",
        "--model",
        s(&model),
    ];
    args.extend(extra);
    let o = cellpose(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    (d, o)
}

#[test]
fn a_long_time_lapse_is_segmented_frame_by_frame_in_bounded_memory() {
    let d = scratch("timelapse");
    let (short, long) = (d.join("short.tif"), d.join("long.tif"));
    write_time_lapse(&short, 6);
    write_time_lapse(&long, 60);
    let run = |input: &Path| {
        let (status, kb) = peak_rss_kb(&[
            "segment",
            s(input),
            "--model",
            s(&model()),
            "--diameter",
            "18",
            "--csv",
            "--threads",
            "1",
        ]);
        assert!(status.success(), "{}", input.display());
        kb
    };
    let (a, b) = (run(&short), run(&long));
    // Before frames were streamed, each 240×240 frame kept ~1.2 MB (its pixels, labels,
    // flows and probabilities) until the end: +60 MB for 54 more frames.
    assert!(
        (b as f64) <= 1.2 * a as f64,
        "peak RSS {b} kB for 60 frames against {a} kB for 6"
    );
    let pages = read_tiff_pages(&d.join("long_cp_masks.tif"));
    assert_eq!(pages.len(), 60);
    assert!(pages.iter().all(|p| p.3.iter().any(|&l| l > 0)));
    let csv = std::fs::read_to_string(d.join("long_cp.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("60,")));
    // Results take their names only when complete: no partial files are left.
    assert!(std::fs::read_dir(&d).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")
    }));
}

#[test]
fn imagej_hyperstack_axes_decide_channels_and_z_planes() {
    let d = scratch("hyperstack");
    let stack = case("zcyx_hyperstack.tif");
    // Z = 6 × C = 2: a 6-plane volume whose planes have two channels, not 12 planes.
    let (out, err) = succeeds(&[
        "segment",
        s(&stack),
        "--do-3d",
        "--channels",
        "1,0",
        "--out",
        s(&d),
    ]);
    assert!(out.contains("3 objects in a 6-plane volume"), "{out}");
    assert!(
        err.contains("2 channels × 6 Z-planes × 1 time point"),
        "{err}"
    );
    assert_eq!(
        read_tiff_pages(&d.join("zcyx_hyperstack_cp_masks.tif")).len(),
        6
    );
    // In 2D, the six Z-planes are the frames (each with its two channels).
    let o = cellpose(&["segment", s(&stack), "--channels", "1,0", "--out", s(&d)]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(" in 6 frames"),
        "{}",
        text(&o.stdout)
    );
    // Channel 2 is the texture: asking for colour 3 names the two channels there are.
    let o = cellpose(&["segment", s(&stack), "--channels", "3,0", "--out", s(&d)]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("2 colour channels"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn pages_without_axes_metadata_are_read_as_frames_and_the_run_says_so() {
    let (_, o) = segmented_time_lapse("assumed_axes", &[]);
    let err = text(&o.stderr);
    assert!(err.contains("3 planes with no axes metadata"), "{err}");
    assert!(err.contains("read as 3 frames"), "{err}");
}

#[test]
fn planar_tiffs_are_read_as_colours_or_as_the_planes_of_a_stack() {
    let d = scratch("planar");
    let o = cellpose(&[
        "segment",
        s(&case("rgb_planar.tif")),
        s(&case("rgb_contig.tif")),
        s(&case("zstack4_default_write.tif")),
        "--out",
        s(&d),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let planar = read_tiff_pages(&d.join("rgb_planar_cp_masks.tif"));
    let contig = read_tiff_pages(&d.join("rgb_contig_cp_masks.tif"));
    assert_eq!(
        planar, contig,
        "an RGB image gives one result whatever its sample layout"
    );
    assert!(planar[0].3.iter().any(|&l| l > 0));
    // tifffile's default for a small stack: one page of 4 planar samples (RGB + alpha).
    assert_eq!(
        read_tiff_pages(&d.join("zstack4_default_write_cp_masks.tif")).len(),
        4
    );
    assert!(
        text(&o.stderr).contains("read as planes of a stack"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn two_inputs_that_would_write_the_same_results_are_refused_before_any_work() {
    let d = scratch("same_stem");
    let o = cellpose(&[
        "segment",
        s(&case("same_stem/well1/A01.png")),
        s(&case("same_stem/well2/A01.png")),
        "--out",
        s(&d),
        "--csv",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains("would both write") && err.contains("A01_cp_masks.tif"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 0, "nothing written");
    // The same file named twice is segmented once; separate folders are fine.
    let o = cellpose(&[
        "segment",
        s(&case("same_stem/well1/A01.png")),
        s(&case("same_stem/well1")),
        "--out",
        s(&d),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("segmented 1 image"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn masks_removed_by_the_size_rule_are_counted_and_the_rule_can_be_changed() {
    let d = scratch("big_object");
    let img = case("nucleus_tight_49pct.png");
    let o = cellpose(&["segment", s(&img), "--out", s(&d)]);
    let out = text(&o.stdout);
    assert!(o.status.success());
    assert!(
        out.contains("0 objects")
            && out.contains("removed 1 larger than 40 % of the frame (--max-size-fraction)"),
        "{out}"
    );
    let o = cellpose(&[
        "segment",
        s(&img),
        "--out",
        s(&d),
        "--max-size-fraction",
        "0.9",
    ]);
    assert!(
        text(&o.stdout).contains(": 1 object,"),
        "{}",
        text(&o.stdout)
    );
    let args = [
        "segment",
        s(&img),
        "--out",
        s(&d),
        "--max-size-fraction",
        "0",
    ];
    refused(&args, "--max-size-fraction");
}

#[test]
fn a_sparse_field_is_scaled_to_its_maximum_with_a_warning_and_percentiles_are_options() {
    // A 96×96 corner of a real image (a few nuclei) in a 1000×1000 frame of its darkest
    // value: under 1 % of the pixels, so the 1st and 99th percentiles are both background.
    let d = scratch("sparse");
    let c = 96;
    let corner = corner_of_real_image(c, 0);
    let dark = *corner.iter().min().unwrap();
    let side = 1000;
    let mut field = vec![dark; side * side];
    let (y0, x0) = (600, 300);
    for y in 0..c {
        field[(y0 + y) * side + x0..(y0 + y) * side + x0 + c]
            .copy_from_slice(&corner[y * c..(y + 1) * c]);
    }
    let write = |path: &Path, w: usize, h: usize, px: &[u8]| {
        let mut f = BufWriter::new(File::create(path).unwrap());
        TiffEncoder::new(&mut f)
            .unwrap()
            .write_image::<colortype::Gray8>(w as u32, h as u32, px)
            .unwrap();
    };
    let (alone, sparse) = (d.join("corner.tif"), d.join("sparse.tif"));
    write(&alone, c, c, &corner);
    write(&sparse, side, side, &field);
    let count = |img: &Path| -> (usize, String) {
        let o = cellpose(&["segment", s(img), "--diameter", "17", "--out", s(&d)]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let stem = img.file_stem().unwrap().to_str().unwrap();
        let labels = &read_tiff_pages(&d.join(format!("{stem}_cp_masks.tif")))[0].3;
        (*labels.iter().max().unwrap() as usize, text(&o.stderr))
    };
    let (n_alone, quiet) = count(&alone);
    let (n_sparse, err) = count(&sparse);
    assert!(
        n_alone >= 2 && !quiet.contains("percentiles were equal"),
        "{n_alone}: {quiet}"
    );
    assert!(
        err.contains("percentiles were equal") && err.contains("--norm-percentile"),
        "{err}"
    );
    assert!(
        n_sparse + 1 >= n_alone,
        "{n_sparse} nuclei in the sparse field, {n_alone} alone"
    );
    // The percentiles are options, checked like the other parameters.
    let args = [
        "segment",
        s(&sparse),
        "--norm-percentile",
        "99",
        "1",
        "--out",
        s(&d),
    ];
    refused(&args, "--norm-percentile");
}

#[test]
fn eval_aji_pairs_objects_as_the_reference_does() {
    let o = cellpose(&["eval", s(&case("aji/gt")), s(&case("aji/pred"))]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // cellpose 3.1.1.3 `metrics.aggregated_jaccard_index` on these files: 0.39157.
    assert!(text(&o.stdout).contains("AJI=0.392"), "{}", text(&o.stdout));
}

#[test]
fn ome_tiff_axes_decide_channels_and_z_planes() {
    // An OME-TIFF of 2 channels × 3 Z-planes, pages in XYCZT order (channel fastest):
    // nuclei in channel 1, an empty channel 2.
    let d = scratch("ome");
    let side = 128;
    let nuclei = corner_of_real_image(side, 0);
    let empty = vec![0u8; side * side];
    let desc = format!(
        "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">\
         <Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XYCZT\" Type=\"uint8\" \
         SizeX=\"{side}\" SizeY=\"{side}\" SizeC=\"2\" SizeZ=\"3\" SizeT=\"1\"></Pixels></Image></OME>"
    );
    let path = d.join("stack.ome.tif");
    {
        let mut f = BufWriter::new(File::create(&path).unwrap());
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        for page in 0..6 {
            let mut image = enc
                .new_image::<colortype::Gray8>(side as u32, side as u32)
                .unwrap();
            if page == 0 {
                image
                    .encoder()
                    .write_tag(tiff::tags::Tag::ImageDescription, desc.as_str())
                    .unwrap();
            }
            image
                .write_data(if page % 2 == 0 { &nuclei } else { &empty })
                .unwrap();
        }
    }
    let (out, err) = succeeds(&[
        "segment",
        s(&path),
        "--channels",
        "1,0",
        "--diameter",
        "17",
        "--out",
        s(&d),
    ]);
    assert!(out.contains(" in 3 frames"), "{out}");
    assert!(
        err.contains("OME metadata: 2 channels × 3 Z-planes × 1 time point"),
        "{err}"
    );
    let pages = read_tiff_pages(&d.join("stack.ome_cp_masks.tif"));
    assert_eq!(pages.len(), 3);
    assert!(
        pages
            .iter()
            .all(|p| p.3 == pages[0].3 && p.3.iter().any(|&l| l > 0))
    );
    let o = cellpose(&[
        "segment",
        s(&path),
        "--channels",
        "1,0",
        "--diameter",
        "17",
        "--do-3d",
        "--out",
        s(&d),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("in a 3-plane volume"),
        "{}",
        text(&o.stdout)
    );
}

// ---- cellpose watch (issue 18) ----

/// A 128×128 crop of a real image as PNG bytes.
fn crop_png_bytes() -> Vec<u8> {
    let side = 128;
    let crop = corner_of_real_image(side, 0);
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, side as u32, side as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&crop).unwrap();
    }
    bytes
}

#[test]
fn watch_segments_frames_written_slowly_once_each_and_a_restart_writes_nothing_new() {
    use std::io::Write as _;
    let d = scratch("watch");
    let (inbox, out) = (d.join("inbox"), d.join("results"));
    std::fs::create_dir_all(&inbox).unwrap();
    let png_bytes = crop_png_bytes();
    // The reference: the same crop segmented by `segment`.
    let single = d.join("single.png");
    std::fs::write(&single, &png_bytes).unwrap();
    let o = cellpose(&[
        "segment",
        s(&single),
        "--diameter",
        "17",
        "--model",
        s(&model()),
    ]);
    assert!(o.status.success());
    let want = read_tiff_pages(&d.join("single_cp_masks.tif"))[0].3.clone();
    assert!(want.iter().any(|&l| l > 0));

    let watcher = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .args([
            "watch",
            s(&inbox),
            "--out",
            s(&out),
            "--diameter",
            "17",
            "--model",
            s(&model()),
            "--settle",
            "0.6",
            "--stop-after-idle",
            "3",
            "--threads",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // 20 frames, each written in three chunks 150 ms apart (a slow writer), then a broken one.
    for k in 0..20 {
        let path = inbox.join(format!("frame{k:02}.png"));
        let mut f = File::create(&path).unwrap();
        for chunk in png_bytes.chunks(png_bytes.len().div_ceil(3)) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(150));
        }
    }
    std::fs::write(
        inbox.join("broken.png"),
        b"\x89PNG\r\n\x1a\nnot really a PNG",
    )
    .unwrap();
    let o = watcher.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "one image failed: {stderr}");
    for k in 0..20 {
        let masks = out.join(format!("frame{k:02}_cp_masks.tif"));
        let pages = read_tiff_pages(&masks);
        assert_eq!(pages[0].3, want, "frame {k}: not the full image's result");
    }
    assert_eq!(stdout.matches(" objects, diameter").count(), 20, "{stdout}");
    assert!(
        stderr.contains("error: ") && stderr.contains("broken.png"),
        "{stderr}"
    );
    assert!(
        stdout.contains("segmented 20 images") && stdout.contains("1 failed"),
        "{stdout}"
    );
    // No partial results left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 20, "{names:?}");

    // A restart takes nothing new (the broken image is tried again, and fails again).
    let before: Vec<_> = (0..20)
        .map(|k| {
            std::fs::metadata(out.join(format!("frame{k:02}_cp_masks.tif")))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    let o = cellpose(&[
        "watch",
        s(&inbox),
        "--out",
        s(&out),
        "--diameter",
        "17",
        "--model",
        s(&model()),
        "--settle",
        "0.2",
        "--stop-after-idle",
        "0.5",
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(stderr.contains("skipped 20 image(s)"), "{stderr}");
    assert!(stdout.contains("segmented 0 images"), "{stdout}");
    for (k, t) in before.iter().enumerate() {
        let now = std::fs::metadata(out.join(format!("frame{k:02}_cp_masks.tif")))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(*t, now, "frame {k} rewritten");
    }
}

#[test]
fn watch_refuses_a_missing_folder() {
    let model = model();
    let args = ["watch", "/nonexistent/folder", "--model", s(&model)];
    refused(&args, "not a folder to watch");
}

#[test]
fn ctrl_c_lets_the_current_image_finish_and_stops_the_watch() {
    let d = scratch("watch_ctrl_c");
    let (inbox, out) = (d.join("inbox"), d.join("results"));
    std::fs::create_dir_all(&inbox).unwrap();
    let png_bytes = crop_png_bytes();
    for k in 0..30 {
        std::fs::write(inbox.join(format!("f{k:02}.png")), &png_bytes).unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .args([
            "watch",
            s(&inbox),
            "--out",
            s(&out),
            "--diameter",
            "17",
            "--model",
            s(&model()),
            "--settle",
            "0",
            "--threads",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first result is there, Ctrl-C (SIGINT).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !out.join("f00_cp_masks.tif").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped (Ctrl-C)"), "{stderr}");
    let done = stdout.matches(" objects, diameter").count();
    assert!(
        (1..30).contains(&done),
        "{done} images before the stop: {stdout}"
    );
    // Every result there is whole, and nothing is left half-written.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), done, "{names:?}");
    for n in &names {
        assert!(!read_tiff_pages(&out.join(n)).is_empty(), "{n}");
    }
}

// ---- ImageJ ROI sets and outline text (issue 18) ----

/// One polygon ROI read back from ImageJ's binary format (the format's public description:
/// 64-byte big-endian header, then the x offsets, then the y offsets), with its name.
fn decode_roi(b: &[u8]) -> (u8, Vec<(i64, i64)>, i32, String) {
    assert_eq!(&b[0..4], b"Iout");
    let i16_at = |at: usize| i16::from_be_bytes([b[at], b[at + 1]]) as i64;
    let i32_at = |at: usize| i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let (kind, top, left, n) = (b[6], i16_at(8), i16_at(10), i16_at(16) as usize);
    let points = (0..n)
        .map(|i| (left + i16_at(64 + 2 * i), top + i16_at(64 + 2 * n + 2 * i)))
        .collect();
    let h2 = i32_at(60) as usize;
    let (name_at, name_len) = (i32_at(h2 + 16) as usize, i32_at(h2 + 20) as usize);
    let name: Vec<u16> = (0..name_len)
        .map(|i| u16::from_be_bytes([b[name_at + 2 * i], b[name_at + 2 * i + 1]]))
        .collect();
    (kind, points, i32_at(56), String::from_utf16(&name).unwrap())
}

/// Whether pixel (x, y)'s centre is inside the polygon (even-odd rule).
fn polygon_encloses(poly: &[(i64, i64)], x: usize, y: usize) -> bool {
    let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
    let mut inside = false;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        let (ax, ay, bx, by) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
        if (ay > py) != (by > py) && px < ax + (py - ay) / (by - ay) * (bx - ax) {
            inside = !inside;
        }
    }
    inside
}

#[test]
fn roi_sets_hold_one_polygon_per_object_enclosing_its_pixels() {
    let d = scratch("rois");
    let img = data("dsb_00071198d059ba7f_img.png");
    let o = cellpose(&[
        "segment",
        s(&img),
        "--out",
        s(&d),
        "--model",
        s(&model()),
        "--save-rois",
        "--save-outlines-txt",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let pages = read_tiff_pages(&d.join("dsb_00071198d059ba7f_img_cp_masks.tif"));
    let (w, h, _, labels) = &pages[0];
    let n = *labels.iter().max().unwrap();
    assert!(n > 10);
    let mut zip =
        zip::ZipArchive::new(File::open(d.join("dsb_00071198d059ba7f_img_rois.zip")).unwrap())
            .unwrap();
    assert_eq!(zip.len(), n as usize, "one ROI per object");
    for i in 0..zip.len() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_index(i).unwrap(), &mut bytes).unwrap();
        let (kind, poly, position, name) = decode_roi(&bytes);
        assert_eq!((kind, position), (0, 0), "a polygon, no stack position");
        let label: u32 = name.parse().unwrap();
        let mut wrong = 0;
        for y in 0..*h {
            for x in 0..*w {
                wrong += (polygon_encloses(&poly, x, y) != (labels[y * w + x] == label)) as usize;
            }
        }
        assert_eq!(
            wrong, 0,
            "ROI {name} and label {label} differ at {wrong} pixels"
        );
    }
    let txt = std::fs::read_to_string(d.join("dsb_00071198d059ba7f_img_cp_outlines.txt")).unwrap();
    assert_eq!(
        txt.lines().count(),
        n as usize,
        "one outline line per object"
    );
}

#[test]
fn outline_pixels_are_the_references_outlines_list() {
    // cellpose 3.1.1.3 `utils.outlines_list` on a committed ground-truth label image.
    let want = std::fs::read_to_string(
        root().join("cli/tests/fixtures/reference_outlines_dsb_00071198d059ba7f_masks.txt"),
    )
    .unwrap();
    let (w, h, _, px) = read_png(&data("dsb_00071198d059ba7f_masks.png"));
    let labels: Vec<u32> = px.into_iter().map(u32::from).collect();
    let ours = cellpose::outlines::outline_pixels(&labels, h, w);
    let want: Vec<&str> = want.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(ours.len(), want.len());
    for (o, line) in ours.iter().zip(want) {
        let got: Vec<String> = o
            .points
            .iter()
            .flat_map(|&(x, y)| [x.to_string(), y.to_string()])
            .collect();
        assert_eq!(got.join(","), line, "label {}", o.label);
    }
}

#[test]
fn stacks_get_one_roi_set_with_frame_positions() {
    let (d, _) = segmented_time_lapse("rois_stack", &["--save-rois"]);
    let pages = read_tiff_pages(&d.join("pages_cp_masks.tif"));
    let mut zip = zip::ZipArchive::new(File::open(d.join("pages_rois.zip")).unwrap()).unwrap();
    let total: u32 = pages.iter().map(|p| *p.3.iter().max().unwrap()).sum();
    assert_eq!(zip.len() as u32, total);
    let mut per_frame = [0u32; 3];
    for i in 0..zip.len() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_index(i).unwrap(), &mut bytes).unwrap();
        let (_, _, position, name) = decode_roi(&bytes);
        assert!(
            name.starts_with(&format!("{position:03}-")),
            "{name} at {position}"
        );
        per_frame[position as usize - 1] += 1;
    }
    for (f, p) in pages.iter().enumerate() {
        assert_eq!(per_frame[f], *p.3.iter().max().unwrap(), "frame {}", f + 1);
    }
}

#[test]
fn label_images_are_ome_tiffs_with_the_inputs_axes_and_pixel_size() {
    // An ImageJ z-stack of 2 planes, 0.325 µm pixels (resolution tags in pixels per
    // micron, ImageJ's way), 1.5 µm planes.
    let d = scratch("ome_out");
    let side = 128;
    let plane = corner_of_real_image(side, 0);
    let path = d.join("calibrated.tif");
    {
        let mut f = BufWriter::new(File::create(&path).unwrap());
        let mut enc = TiffEncoder::new(&mut f).unwrap();
        for page in 0..2 {
            let mut image = enc
                .new_image::<colortype::Gray8>(side as u32, side as u32)
                .unwrap();
            let e = image.encoder();
            if page == 0 {
                e.write_tag(
                    tiff::tags::Tag::ImageDescription,
                    "ImageJ=1.54f\nimages=2\nslices=2\nunit=micron\nspacing=1.5\n",
                )
                .unwrap();
            }
            let per_um = tiff::encoder::Rational {
                n: 40_000_000,
                d: 13_000_000,
            };
            e.write_tag(tiff::tags::Tag::XResolution, per_um.clone())
                .unwrap();
            e.write_tag(tiff::tags::Tag::YResolution, per_um).unwrap();
            image.write_data(&plane).unwrap();
        }
    }
    let description = |p: &Path| {
        let mut dec = Decoder::new(File::open(p).unwrap()).unwrap();
        dec.get_tag(tiff::tags::Tag::ImageDescription)
            .unwrap()
            .into_string()
            .unwrap()
    };
    for (extra, want_axes) in [
        (None, "SizeZ=\"2\" SizeC=\"1\" SizeT=\"1\""),
        (Some("--do-3d"), "SizeZ=\"2\" SizeC=\"1\" SizeT=\"1\""),
    ] {
        let mut args = vec!["segment", s(&path), "--diameter", "17", "--out", s(&d)];
        args.extend(extra);
        let o = cellpose(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let xml = description(&d.join("calibrated_cp_masks.tif"));
        assert!(xml.contains("<OME") && xml.contains(want_axes), "{xml}");
        assert!(
            xml.contains("PhysicalSizeX=\"0.325\" PhysicalSizeY=\"0.325\" PhysicalSizeZ=\"1.5\""),
            "{xml}"
        );
    }
    // A PNG has no pixel size: the label file has the axes only.
    let o = cellpose(&[
        "segment",
        s(&data("dsb_00071198d059ba7f_img.png")),
        "--out",
        s(&d),
    ]);
    assert!(o.status.success());
    let xml = description(&d.join("dsb_00071198d059ba7f_img_cp_masks.tif"));
    assert!(
        xml.contains("SizeZ=\"1\"") && !xml.contains("PhysicalSize"),
        "{xml}"
    );
}
