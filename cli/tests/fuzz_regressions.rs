//! Files the `image_readers` fuzz target (`fuzz/`) found faults with, kept as tests of the
//! behaviour that was fixed. Each lies in `cli/tests/data/fuzz/` under the name of what it
//! exercises.

use std::path::PathBuf;
use std::process::Command;

use cellpose_cli::input::{ImageFile, read_labels};

fn fuzz_input(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(name)
}

fn refused(name: &str, needle: &str) {
    let path = fuzz_input(name);
    for err in [
        ImageFile::open(&path)
            .err()
            .expect("an image file is refused"),
        read_labels(&path).err().expect("a label image is refused"),
    ] {
        let text = format!("{err:#}");
        assert!(text.contains(needle), "{name}: {text}");
    }
}

#[test]
fn a_png_header_claiming_more_pixels_than_the_file_holds_is_refused_before_allocating() {
    // Found by fuzzing: 1264 × 4,294,901,772 pixels in a 137-byte file. The reader allocated
    // the decoded size (10 TB) and the process aborted. Sides above the library's limit are
    // refused from the header.
    refused(
        "png_header_claims_terapixels.png",
        "1264×4294901772 pixels; the library segments sides up to 65536",
    );
    // Sides within the limit, but 3.6 GB of samples in 69 bytes: more than deflate can
    // expand them to (1032:1), refused before the buffer is allocated.
    refused(
        "png_header_claims_more_than_its_bytes.png",
        "60000×60000 pixels (3600060000 bytes of samples), more than its 69 bytes can hold",
    );
}

#[test]
fn a_tiff_whose_decoder_panics_is_refused_with_an_error() {
    // Found by fuzzing: a `SampleFormat` tag with no values made the tiff crate index an
    // empty list and panic while opening the file, which ended the CLI's whole run.
    refused(
        "tiff_sample_format_without_values.tif",
        "the image decoder failed on this file",
    );
}

#[test]
fn a_damaged_png_among_good_images_fails_alone_and_the_others_are_segmented() {
    // What the fault cost a user: the whole batch. Now the damaged file is reported and the
    // run goes on (exit status 1: some inputs failed).
    let dir = std::env::temp_dir().join(format!("cellpose_cli_damaged_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        root.join("tests/data/dsb_00071198d059ba7f_img.png"),
        dir.join("a_img.png"),
    )
    .unwrap();
    std::fs::copy(
        fuzz_input("png_header_claims_terapixels.png"),
        dir.join("b_img.png"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cellpose"))
        .args(["segment", "--model"])
        .arg(root.join("models/nuclei_light_int8.onnx"))
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("b_img.png") && stderr.contains("sides up to 65536"),
        "{stderr}"
    );
    assert!(dir.join("a_img_cp_masks.tif").exists(), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
