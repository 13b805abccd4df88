//! Times the network alone in tract on one input size: `cargo run --release --example
//! time_network -- MODEL [SIDE] [BATCH] [THREADS] [REPEATS] [auto|f32|tract]`. Prints the
//! median time; the last argument picks the 3×3 convolution (`Model::with_convolution`).
use cellpose::{Convolution, Model};
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let model = Model::load(&a[1]).expect("model");
    let side: usize = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(224);
    let batch: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(1);
    let threads: usize = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(1);
    let reps: usize = a.get(5).map(|s| s.parse().unwrap()).unwrap_or(10);
    let model = match a.get(6).map(String::as_str) {
        None | Some("auto") => model,
        Some("f32") => model.with_convolution(Convolution::F32),
        Some("tract") => model.with_convolution(Convolution::Tract),
        Some(other) => panic!("unknown convolution {other}: auto, f32 or tract"),
    };
    let t = Instant::now();
    let mut times =
        cellpose::bench::time_plan(&model, batch, side, side, threads, reps).expect("run");
    eprintln!("plan + runs: {:.2}s", t.elapsed().as_secs_f64());
    times.sort_by(f64::total_cmp);
    println!(
        "{} {:?} side={side} batch={batch} threads={threads} median_ms={:.2} min_ms={:.2}",
        a[1],
        model.convolution(),
        times[times.len() / 2] * 1e3,
        times[0] * 1e3
    );
}
