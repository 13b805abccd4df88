//! Shared helpers of the integration tests: the shipped model and the committed images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fp32 shipped model: the parity fixtures were made from its weights (the CLI and the
/// README's run command use the int8 file, which scores the same on the test split).
pub fn model_path() -> PathBuf {
    root().join("models/nuclei_light.onnx")
}

/// A decoded PNG: width, height, samples per pixel, samples as u16 (8-bit widened).
pub struct Png {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u16>,
}

pub fn read_png(path: &Path) -> Png {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let data: Vec<u16> = match info.bit_depth {
        png::BitDepth::Sixteen => buf[..info.buffer_size()]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
        _ => buf[..info.buffer_size()]
            .iter()
            .map(|&v| v as u16)
            .collect(),
    };
    Png {
        width: info.width as usize,
        height: info.height as usize,
        channels,
        data,
    }
}

/// The image of a committed test sample as one gray u8 plane (colour averaged as the
/// reference's grayscale mode does, after rounding to u8 like an 8-bit source).
pub fn sample_gray(name: &str) -> (usize, usize, Vec<f32>) {
    let p = read_png(&root().join(format!("tests/data/{name}_img.png")));
    let n = p.width * p.height;
    let c = p.channels.min(3);
    let gray: Vec<f32> = (0..n)
        .map(|i| {
            (0..c)
                .map(|k| p.data[i * p.channels + k] as f32)
                .sum::<f32>()
                / c as f32
        })
        .collect();
    (p.width, p.height, gray)
}

pub fn sample_labels(name: &str) -> Vec<u32> {
    let p = read_png(&root().join(format!("tests/data/{name}_masks.png")));
    p.data.iter().map(|&v| v as u32).collect()
}
