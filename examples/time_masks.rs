//! Times the mask stage (dynamics + mask formation) on the network flows of one real image:
//! `cargo run --release --example time_masks -- MODEL IMAGE.png [DIAMETER] [THREADS] [REPEATS]`.
//!
//! Prints the median time of `MaskFormation::labels` (the whole stage), of
//! `dynamics::follow_flows` alone, and of the same Euler integration without the exact
//! fixed-point / two-cycle shortcut of `follow_flows`, so the shortcut's gain is measured on
//! real flows in one run.
use cellpose::dynamics::{FLOW_SCALE, euler_step, follow_flows};
use cellpose::{Diameter, ImageView, MaskFormation, Model, Params, Segmenter};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// Every one of `niter` bilinear Euler steps, as the reference takes them.
fn every_step(flow: &[f32], h: usize, w: usize, ys: &[u32], xs: &[u32], niter: u32) -> usize {
    let mut checksum = 0;
    for (&y, &x) in ys.iter().zip(xs) {
        let mut p = (y as f32, x as f32);
        for _ in 0..niter {
            p = euler_step(flow, h, w, true, p);
        }
        checksum += p.0 as usize + p.1 as usize;
    }
    checksum
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: time_masks MODEL IMAGE.png [DIAMETER] [THREADS] [REPEATS]");
        std::process::exit(2);
    }
    let model = Model::load(&a[1]).expect("model");
    let diameter: f32 = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(17.0);
    let threads: usize = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(1);
    let repeats: usize = a.get(5).map(|s| s.parse().unwrap()).unwrap_or(10);
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&a[2]).expect("image"),
    ));
    let mut reader = dec.read_info().expect("png");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("png");
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Grayscale, png::BitDepth::Eight),
        "8-bit gray PNG expected"
    );
    let (w, h) = (info.width as usize, info.height as usize);
    let params = Params {
        diameter: Diameter::Pixels(diameter),
        ..Params::default()
    };
    let mut seg = Segmenter::new(model, params.clone())
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let view = ImageView::gray_u8(h, w, &buf[..w * h]).unwrap();
    let s = seg.segment(&view).expect("segment");
    let niter = (200.0 * diameter / seg.model().info().diam_mean) as u32;

    let mut mf = MaskFormation::new();
    let mut labels = vec![0u32; w * h];
    let t_stage = time(repeats, || {
        mf.labels(
            &s.flows,
            &s.cell_prob,
            h,
            w,
            &params,
            niter,
            threads,
            &mut labels,
        );
    });
    // The dynamics' inputs as the stage builds them.
    let npix = w * h;
    let (mut ys, mut xs) = (Vec::new(), Vec::new());
    let mut masked = vec![0.0f32; 2 * npix];
    for i in 0..npix {
        if s.cell_prob[i] > params.cellprob_threshold {
            ys.push((i / w) as u32);
            xs.push((i % w) as u32);
            masked[i] = s.flows[i] / FLOW_SCALE;
            masked[npix + i] = s.flows[npix + i] / FLOW_SCALE;
        }
    }
    let (mut oy, mut ox) = (vec![0; ys.len()], vec![0; ys.len()]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t_dyn = time(repeats, || {
        pool.install(|| follow_flows(&masked, h, w, &ys, &xs, niter, true, &mut oy, &mut ox))
    });
    let shortcut_sum: usize = oy
        .iter()
        .zip(&ox)
        .map(|(y, x)| *y as usize + *x as usize)
        .sum();
    let mut plain_sum = 0;
    let t_plain = time(repeats.min(3), || {
        plain_sum = every_step(&masked, h, w, &ys, &xs, niter);
    });
    assert_eq!(
        shortcut_sum, plain_sum,
        "the shortcut changed an end position"
    );
    println!(
        "{} {w}x{h} objects={} moving_pixels={} niter={niter} threads={threads}: mask stage \
         {:.2} ms, follow_flows {:.2} ms, every step (1 thread) {:.2} ms",
        a[2],
        s.n_objects,
        ys.len(),
        t_stage * 1e3,
        t_dyn * 1e3,
        t_plain * 1e3
    );
}
