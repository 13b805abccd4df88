//! `cellpose watch DIR`: segment every image an acquisition writes into a folder, as it
//! arrives, with the options of `segment`.
//!
//! A file is taken once it is complete: its size and modification time have not changed for
//! `--settle` seconds (a writer still adding to it is waited for; one that fails to decode
//! then is reported, and tried again if it changes later). Results are written under a
//! temporary name and renamed when complete (see `output`), so a reader of the results
//! folder never sees half a file. A restart skips images whose label file is already there
//! and newer than the image. Ctrl-C lets the image being segmented finish, then exits.
//!
//! File-system events (the `notify` crate) wake the watcher; where there are none (network
//! shares) or with `--poll`, the folder is listed at a fixed interval instead. Either way
//! the decision to take a file rests on the listing, so a missed event delays a file but
//! never loses it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use notify::Watcher;

use crate::input::is_image_name;
use crate::output::{output_path, stem_and_dir};
use crate::segment::{Run, SegmentArgs};
use crate::{EXIT_USAGE, Fatal};

#[derive(Args)]
pub struct WatchCommand {
    /// The folder the acquisition writes images into.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Also take images written into the folders inside DIR.
    #[arg(long)]
    recursive: bool,
    /// Seconds a file's size and modification time must stay unchanged before it is read.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_seconds)]
    settle: f64,
    /// List the folder every SECS seconds instead of waiting for file-system events (for
    /// network shares, where events do not arrive).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    poll: Option<f64>,
    /// Exit once no new image has arrived for SECS seconds and every image present has been
    /// segmented [default: run until Ctrl-C].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    stop_after_idle: Option<f64>,
    #[command(flatten)]
    args: SegmentArgs,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds from 0 to 86400")),
    }
}

/// What the watcher knows of one file.
struct Seen {
    /// Size and modification time at the last listing.
    state: (u64, Option<SystemTime>),
    /// When that state was first seen.
    since: Instant,
    /// The state it was segmented (or failed) in: not taken again unless it changes.
    done: Option<(u64, Option<SystemTime>)>,
}

/// The images under `dir` (in its subfolders too when `recursive`), results, annotations
/// and hidden or partial files left out.
fn list(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() && recursive => list(&p, true, out),
            Ok(t) if t.is_file() && is_image_name(&p) => out.push(p),
            _ => {}
        }
    }
}

/// Whether `path`'s label image is already there and not older than the image.
fn has_result(path: &Path, out: Option<&Path>, modified: Option<SystemTime>) -> bool {
    let Ok((stem, dir)) = stem_and_dir(path, out) else {
        return false;
    };
    let masks = output_path(&dir, stem, "cp_masks.tif", None);
    match (
        std::fs::metadata(masks).and_then(|m| m.modified()),
        modified,
    ) {
        (Ok(result), Some(image)) => result >= image,
        (Ok(_), None) => true,
        _ => false,
    }
}

pub fn run(cmd: WatchCommand) -> Result<u8, Fatal> {
    if !cmd.dir.is_dir() {
        return Err(Fatal::new(
            EXIT_USAGE,
            format!("{}: not a folder to watch", cmd.dir.display()),
        ));
    }
    let mut run = Run::start(&cmd.args)?;
    run.create_out_dir()?;
    let out = cmd.args.out.as_deref();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)) {
            eprintln!("note: Ctrl-C cannot be caught ({e}); it will stop the watch at once");
        }
    }
    // Events only wake the loop; the listing decides.
    let (tx, rx) = mpsc::channel::<()>();
    let mut interval = cmd.poll.unwrap_or(1.0).max(0.05);
    let _watcher = match cmd.poll {
        Some(_) => None,
        None => {
            let mode = if cmd.recursive {
                notify::RecursiveMode::Recursive
            } else {
                notify::RecursiveMode::NonRecursive
            };
            let watcher = notify::recommended_watcher(move |_event| {
                let _ = tx.send(());
            })
            .and_then(|mut w| w.watch(&cmd.dir, mode).map(|_| w));
            match watcher {
                Ok(w) => {
                    // With events, listings only need to catch a settling file in time.
                    interval = (cmd.settle / 4.0).clamp(0.05, 1.0);
                    Some(w)
                }
                Err(e) => {
                    eprintln!(
                        "note: no file-system events for {} ({e}); listing it every second",
                        cmd.dir.display()
                    );
                    None
                }
            }
        }
    };
    eprintln!(
        "watching {}{} with model {}: images are taken {} s after their last change; \
         Ctrl-C stops after the current image",
        cmd.dir.display(),
        if cmd.recursive {
            " and its subfolders"
        } else {
            ""
        },
        run.model_file.display(),
        cmd.settle
    );
    let settle = Duration::from_secs_f64(cmd.settle);
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    // Results written in this run, by result path: an image whose results would replace
    // another image's is refused (two wells' `A01.png` with one --out).
    let mut written: HashMap<PathBuf, PathBuf> = HashMap::new();
    let (mut skipped, mut last_change) = (0usize, Instant::now());
    let mut files = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        files.clear();
        list(&cmd.dir, cmd.recursive, &mut files);
        files.sort();
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut waiting = false;
        for p in &files {
            let Ok(meta) = std::fs::metadata(p) else {
                continue;
            };
            let state = (meta.len(), meta.modified().ok());
            let entry = seen.entry(p.clone()).or_insert_with(|| {
                last_change = now;
                // Present at the start (or after a restart) with results already there.
                let done = has_result(p, out, state.1).then(|| {
                    skipped += 1;
                    state
                });
                Seen {
                    state,
                    since: now,
                    done,
                }
            });
            if entry.state != state {
                entry.state = state;
                entry.since = now;
                last_change = now;
            }
            if entry.done == Some(state) {
                continue;
            }
            if now.duration_since(entry.since) >= settle {
                ready.push(p.clone());
            } else {
                waiting = true;
            }
        }
        // Files that went away (moved off by the acquisition software) are forgotten.
        seen.retain(|p, _| files.binary_search(p).is_ok());
        if skipped > 0 {
            eprintln!("skipped {skipped} image(s) whose results are already there");
            skipped = 0;
        }
        for p in ready {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let state = seen[&p].state;
            if let Ok((stem, dir)) = stem_and_dir(&p, out) {
                let result = output_path(&dir, stem, "cp_masks.tif", None);
                if let Some(first) = written.get(&result).filter(|f| **f != p) {
                    eprintln!(
                        "error: {}: its results would replace those of {} ({}); not segmented: \
                         rename it or watch with a different --out",
                        p.display(),
                        first.display(),
                        result.display()
                    );
                    run.failed += 1;
                    seen.get_mut(&p).expect("listed").done = Some(state);
                    continue;
                }
                written.insert(result, p.clone());
            }
            run.one(&p)();
            seen.get_mut(&p).expect("listed").done = Some(state);
            last_change = Instant::now();
        }
        if let Some(idle) = cmd.stop_after_idle
            && !waiting
            && last_change.elapsed().as_secs_f64() >= idle
            && seen.values().all(|s| s.done == Some(s.state))
        {
            break;
        }
        // Woken early by an event, or at the interval; drain the burst.
        if rx.recv_timeout(Duration::from_secs_f64(interval)).is_ok() {
            while rx.try_recv().is_ok() {}
        }
    }
    if stop.load(Ordering::SeqCst) {
        eprintln!("stopped (Ctrl-C)");
    }
    Ok(run.finish())
}
