//! `cellpose`: segment microscope images with the cellpose-rs library, evaluate label images
//! against ground truth, and describe model files. This crate only parses arguments and
//! reads and writes files; every computation is the core crate's.

/// `println!` that ends the program quietly when standard output is a closed pipe
/// (`cellpose info MODEL | head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => { $crate::say_line(format_args!($($t)*)) };
}

mod eval;
mod info;
mod model_path;
mod output;
mod roi;
mod segment;
mod volume;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use cellpose_cli::input;
use clap::{Parser, Subcommand};

/// Exit status of a run where some inputs failed (each is reported on its own line).
pub const EXIT_SOME_FAILED: u8 = 1;
/// Exit status of an invalid command line or parameter value.
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the model cannot be found or loaded; nothing was processed.
pub const EXIT_MODEL: u8 = 3;

#[derive(Parser)]
#[command(
    name = "cellpose",
    version,
    about = "Cellpose cell segmentation (Stringer et al. 2021) without Python"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Segment images: files or folders of PNG and TIFF (multi-page TIFF = frames, or one
    /// z-stack with --do-3d).
    Segment(segment::SegmentCommand),
    /// Segment every image written into a folder as it arrives (an acquisition's output
    /// folder), with the options of `segment`; Ctrl-C stops after the current image.
    Watch(watch::WatchCommand),
    /// Score predicted label images against ground truth (AP at IoU 0.5/0.75/0.9, AJI).
    Eval {
        /// Folder with ground-truth label images `NAME_masks.{png,tif,tiff}`.
        gt_dir: PathBuf,
        /// Folder with predictions `NAME_img_cp_masks.tif` or `NAME_cp_masks.tif`.
        pred_dir: PathBuf,
    },
    /// Describe a model file: metadata, input and output shapes, size, SHA-256.
    Info {
        /// The ONNX model file, or a shipped model's name (`nuclei`, `cyto`).
        model: PathBuf,
    },
}

/// A failure that ends the whole command, with its exit status.
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    pub fn new(code: u8, message: impl Into<String>) -> Fatal {
        Fatal {
            code,
            message: message.into(),
        }
    }
}

/// One line of text from an error and its causes (`a: b: c`), whatever their own line breaks.
pub fn one_line(e: &anyhow::Error) -> String {
    let s = format!("{e:#}");
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes one line to standard output (see `say!`).
pub fn say_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(EXIT_SOME_FAILED.into());
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Segment(args) => segment::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Eval { gt_dir, pred_dir } => eval::run(&gt_dir, &pred_dir),
        Command::Info { model } => info::run(&model),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
