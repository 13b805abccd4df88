//! The CLI's readers (`cellpose_cli::input`) on mutated PNG and TIFF files: multi-page,
//! BigTIFF, compressed, float, planar, tiled, ImageJ and OME metadata. Each input is written
//! to a file (the readers take paths, as the CLI does) and read as an image, plane by plane
//! (as time points and as Z), and as a label image.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cellpose_cli::input::{Frame, ImageFile, read_labels};
use libfuzzer_sys::fuzz_target;

/// Planes read per axis: enough to reach every page layout without reading a mutated
/// 65,535-page file whole.
const MAX_PLANES: usize = 4;

/// One file per process, rewritten for each input.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("cellpose_fuzz_{}.img", std::process::id()))
    })
}

fn check_frame(f: &Frame) {
    assert!(
        f.width > 0 && f.height > 0,
        "empty frame {}×{}",
        f.width,
        f.height
    );
    assert!((1..=4).contains(&f.colours), "{} colours", f.colours);
    assert_eq!(
        f.data.len(),
        f.width * f.height * f.colours,
        "samples of a {}×{}×{} frame",
        f.width,
        f.height,
        f.colours
    );
}

fuzz_target!(|data: &[u8]| {
    // The readers turn a panic inside the PNG or TIFF crate into an error (what they must
    // do); libFuzzer's panic hook would abort before they can. With the default hook a panic
    // that escapes the readers still aborts at the target's edge, a finding.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    let path = scratch();
    std::fs::write(path, data).expect("the scratch file is writable");
    if let Ok(mut file) = ImageFile::open(path) {
        let axes = file.axes;
        assert!(
            axes.channels >= 1 && axes.slices >= 1 && axes.frames >= 1,
            "{axes:?}"
        );
        assert!(!axes.describe().is_empty());
        for t in 0..axes.frames.min(MAX_PLANES) {
            for z in 0..axes.slices.min(MAX_PLANES) {
                if let Ok(f) = file.read_plane(z, t) {
                    check_frame(&f);
                }
            }
        }
        // The same pages as Z-planes (what `--do-3d` does with a file without axes metadata).
        file.axes = axes.as_z();
        for z in 0..file.axes.slices.min(MAX_PLANES) {
            if let Ok(f) = file.read_plane(z, 0) {
                check_frame(&f);
            }
        }
    }
    if let Ok(l) = read_labels(path) {
        assert_eq!(l.data.len(), l.width * l.height);
    }
});
