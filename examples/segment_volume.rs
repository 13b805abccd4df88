//! Segments a synthetic z-stack (bright blurred spheres on noise) in 3D and prints the time
//! and object count; for measuring time and peak memory (`/usr/bin/time -v`).
//!
//!     cargo run --release --example segment_volume -- 64 256 256 [threads] [stitch]

use std::time::Instant;

use cellpose::{Diameter, Model, Params, VolumeMode, VolumeParams, VolumeSegmenter, VolumeView};

fn main() -> Result<(), cellpose::Error> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (d, h, w) = (args[0], args[1], args[2]);
    let threads = args.get(3).copied().unwrap_or(2);
    let stitch = args.get(4).copied().unwrap_or(0) == 1;
    // Spheres of radius 8 on a 24-voxel grid, soft edges, hashed noise.
    let mut data = vec![0u16; d * h * w];
    for z in 0..d {
        for y in 0..h {
            for x in 0..w {
                let c = |v: usize| (v % 24) as f32 - 12.0;
                let r = (c(z).powi(2) + c(y).powi(2) + c(x).powi(2)).sqrt();
                let fg = 200.0 / (1.0 + ((r - 8.0) * 1.5).exp());
                let i = (z * h + y) * w + x;
                let noise = ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as f32;
                data[i] = (40.0 + fg + noise) as u16;
            }
        }
    }
    let view = VolumeView::gray_u16(d, h, w, &data)?;
    let params = VolumeParams {
        params: Params {
            diameter: Diameter::Pixels(17.0),
            ..Params::default()
        },
        mode: if stitch {
            VolumeMode::stitched()
        } else {
            VolumeMode::Flows3d
        },
        ..VolumeParams::default()
    };
    let model = Model::load("models/nuclei_light.onnx")?;
    let mut seg = VolumeSegmenter::new(model, params)?.with_threads(threads)?;
    let t = Instant::now();
    let out = seg.segment(&view)?;
    println!(
        "{d}x{h}x{w} {}: {} objects in {:.1} s on {threads} threads",
        if stitch { "stitched" } else { "3D" },
        out.n_objects,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
