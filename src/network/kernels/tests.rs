//! Every kernel of every instruction set this CPU has, against a plain convolution.

use tract_linalg::multithread::Executor;

use super::Isa;
use crate::network::conv::{DirectConv, InputStage, Resample};

/// Deterministic values in [-1, 1) (a linear congruential sequence).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `conv.forward` into a new output (NaN-filled, so that a value left unwritten shows).
fn run(
    conv: &DirectConv,
    x: &[f32],
    (n, h, w): (usize, usize, usize),
    extras: (Option<&[f32]>, Option<&[f32]>),
    ex: &Executor,
) -> Vec<f32> {
    let (oh, ow) = conv.output_dims(h, w);
    let mut out = vec![f32::NAN; n * conv.output_channels() * oh * ow];
    conv.forward(x, (n, h, w), extras, &mut out, ex).unwrap();
    out
}

fn relu_stage(relu: bool) -> InputStage {
    InputStage {
        relu,
        ..InputStage::default()
    }
}

/// `torch.nn.functional.conv2d(relu?(x), w, b, padding=1)` in f64, for one image.
#[allow(clippy::too_many_arguments)]
fn reference(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    cin: usize,
    cout: usize,
    h: usize,
    wd: usize,
    relu: bool,
) -> Vec<f32> {
    reference_ks(x, w, b, (cin, cout, 3), h, wd, &relu_stage(relu))
}

/// `conv2d(stage(x), w, b, padding=ks/2)` in f64 for a `ks × ks` kernel, for one image.
fn reference_ks(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (cin, cout, ks): (usize, usize, usize),
    h: usize,
    wd: usize,
    stage: &InputStage,
) -> Vec<f32> {
    let p = (ks / 2) as isize;
    let mut out = vec![0f32; cout * h * wd];
    for o in 0..cout {
        for y in 0..h {
            for xx in 0..wd {
                let mut acc = b[o] as f64;
                for c in 0..cin {
                    for ky in 0..ks {
                        for kx in 0..ks {
                            let (iy, ix) =
                                (y as isize + ky as isize - p, xx as isize + kx as isize - p);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            let mut v = x[(c * h + iy as usize) * wd + ix as usize];
                            if let Some(s) = &stage.scale {
                                v *= s[c];
                            }
                            if let Some(s) = &stage.shift {
                                v += s[c];
                            }
                            if stage.relu {
                                v = v.max(0.0);
                            }
                            acc += v as f64 * w[((o * cin + c) * ks + ky) * ks + kx] as f64;
                        }
                    }
                }
                out[(o * h + y) * wd + xx] = acc as f32;
            }
        }
    }
    out
}

/// (cin, cout) pairs: the network's widths (2 → 16 … 128 → 128) and sizes that are not a
/// multiple of any kernel's channel block.
const CHANNELS: [(usize, usize); 7] = [
    (2, 16),
    (16, 16),
    (16, 32),
    (32, 64),
    (64, 128),
    (128, 128),
    (3, 5),
];
/// Odd sides: one pixel, just under and over a vector, two vectors and one pixel.
const SIDES: [usize; 4] = [1, 15, 17, 33];

/// The (ReLU, Winograd) combinations to test on `isa`: both f32 forms where it has both.
fn forms(isa: Isa) -> Vec<(bool, bool)> {
    let winograd: &[bool] = if isa.has_winograd() {
        &[false, true]
    } else {
        &[false]
    };
    [false, true]
        .into_iter()
        .flat_map(|relu| winograd.iter().map(move |&w| (relu, w)))
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn f32_kernels_match_a_plain_convolution_on_odd_sizes() {
    for isa in Isa::available_f32() {
        for (k, &(cin, cout)) in CHANNELS.iter().enumerate() {
            for (i, &h) in SIDES.iter().enumerate() {
                let wd = SIDES[(i + k) % SIDES.len()];
                let x = values(cin * h * wd, 1 + k as u64);
                let w = values(cout * cin * 9, 100 + k as u64);
                let b = values(cout, 200 + k as u64);
                for (relu, winograd) in forms(isa) {
                    let stage = relu_stage(relu);
                    let conv =
                        DirectConv::new_f32_with(&w, &b, (cin, cout, 3), stage, isa, winograd)
                            .unwrap();
                    let out = run(&conv, &x, (1, h, wd), (None, None), &Executor::SingleThread);
                    let want = reference(&x, &w, &b, cin, cout, h, wd, relu);
                    // f32 sums of up to 128 · 9 products of magnitude ≤ 1 (Winograd: of 16
                    // transformed products of magnitude ≤ 4 · 2.25).
                    let tol = 1e-6 * (cin * 9) as f32 + 1e-5;
                    let d = max_abs_diff(&out, &want);
                    assert!(
                        d <= tol,
                        "{isa:?} {cin}→{cout} {h}×{wd} relu {relu} winograd {winograd}: max diff {d}"
                    );
                }
            }
        }
    }
}

#[test]
fn f32_kernels_run_1x1_projections_with_a_batch_norm_in_front() {
    for isa in Isa::available_f32() {
        for (k, &(cin, cout)) in CHANNELS.iter().enumerate() {
            let (h, wd) = (SIDES[k % 4], SIDES[(k + 2) % 4]);
            let x = values(cin * h * wd, 600 + k as u64);
            let w = values(cout * cin, 700 + k as u64);
            let b = values(cout, 800 + k as u64);
            let stage = InputStage {
                scale: Some(values(cin, 900 + k as u64)),
                shift: Some(values(cin, 1000 + k as u64)),
                relu: k % 2 == 0,
                ..InputStage::default()
            };
            let conv = DirectConv::new_f32(&w, &b, (cin, cout, 1), stage.clone(), isa).unwrap();
            let out = run(
                &conv,
                &x,
                (1, h, wd),
                (None, None),
                &Executor::multithread(2),
            );
            let want = reference_ks(&x, &w, &b, (cin, cout, 1), h, wd, &stage);
            let d = max_abs_diff(&out, &want);
            assert!(
                d <= 1e-5 * cin as f32 + 1e-5,
                "{isa:?} 1×1 {cin}→{cout} {h}×{wd}: {d}"
            );
        }
    }
}

#[test]
fn f32_kernels_cover_both_sides_of_every_row() {
    // A wide image whose last vector is partial, two images in a batch, on two threads: the
    // outputs must equal the one-thread run bit for bit (threads split rows, not sums).
    let (cin, cout, h, wd) = (16, 32, 9, 70);
    let x = values(2 * cin * h * wd, 7);
    let w = values(cout * cin * 9, 8);
    let b = values(cout, 9);
    for (isa, winograd) in Isa::available_f32().into_iter().flat_map(|isa| {
        forms(isa)
            .into_iter()
            .filter(|f| f.0)
            .map(move |f| (isa, f.1))
    }) {
        let stage = relu_stage(true);
        let conv = DirectConv::new_f32_with(&w, &b, (cin, cout, 3), stage, isa, winograd).unwrap();
        let one = run(&conv, &x, (2, h, wd), (None, None), &Executor::SingleThread);
        let two = run(
            &conv,
            &x,
            (2, h, wd),
            (None, None),
            &Executor::multithread(2),
        );
        assert_eq!(
            one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            two.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{isa:?} winograd {winograd}"
        );
        for img in 0..2 {
            let want = reference(
                &x[img * cin * h * wd..(img + 1) * cin * h * wd],
                &w,
                &b,
                cin,
                cout,
                h,
                wd,
                true,
            );
            let d = max_abs_diff(&one[img * cout * h * wd..(img + 1) * cout * h * wd], &want);
            assert!(d < 1e-4, "{isa:?} winograd {winograd} image {img}: {d}");
        }
    }
}

#[test]
fn int8_kernels_match_the_scalar_int8_kernel_and_stay_near_f32() {
    let scale = 1.0 / 255.0; // inputs in [0, 1) after the ReLU
    for (k, &(cin, cout)) in CHANNELS.iter().enumerate() {
        for (i, &h) in SIDES.iter().enumerate() {
            let wd = SIDES[(i + k + 1) % SIDES.len()];
            let x = values(cin * h * wd, 300 + k as u64);
            let w = values(cout * cin * 9, 400 + k as u64);
            let b = values(cout, 500 + k as u64);
            let scalar = DirectConv::new_f32(&w, &b, (cin, cout, 3), relu_stage(true), Isa::Scalar)
                .unwrap()
                .with_int8(&w, scale, Isa::Scalar)
                .unwrap();
            let want = run(
                &scalar,
                &x,
                (1, h, wd),
                (None, None),
                &Executor::SingleThread,
            );
            // Quantization error: half a code (1/510) on each input, half a weight step
            // (max |w| / 254) on each weight, over cin · 9 products.
            let exact = reference(&x, &w, &b, cin, cout, h, wd, true);
            let bound = (cin * 9) as f32 * (0.5 / 255.0 + 0.5 / 127.0) + 1e-4;
            let d = max_abs_diff(&want, &exact);
            assert!(
                d <= bound,
                "scalar int8 {cin}→{cout} {h}×{wd}: {d} > {bound}"
            );
            for isa in Isa::available_i8() {
                let conv =
                    DirectConv::new_f32(&w, &b, (cin, cout, 3), relu_stage(true), Isa::Scalar)
                        .unwrap()
                        .with_int8(&w, scale, isa)
                        .unwrap();
                let out = run(
                    &conv,
                    &x,
                    (1, h, wd),
                    (None, None),
                    &Executor::multithread(2),
                );
                // Same integer sums; only the final multiply-add may round differently.
                let d = max_abs_diff(&out, &want);
                assert!(d <= 1e-5, "{isa:?} int8 {cin}→{cout} {h}×{wd}: {d}");
            }
        }
    }
}

#[test]
fn int8_saturates_large_activations_and_reads_nan_as_zero() {
    let (cin, cout, h, wd) = (4, 8, 5, 19);
    let mut x = vec![0.5f32; cin * h * wd];
    x[3] = 1e30; // saturates at code 255
    x[7] = f32::NAN;
    x[11] = -3.0; // the ReLU
    let w = values(cout * cin * 9, 11);
    let b = vec![0.0; cout];
    let mut clean = x.clone();
    clean[3] = 1.0;
    clean[7] = 0.0;
    clean[11] = 0.0;
    for isa in Isa::available_i8() {
        let conv = DirectConv::new_f32(&w, &b, (cin, cout, 3), relu_stage(true), Isa::Scalar)
            .unwrap()
            .with_int8(&w, 1.0 / 255.0, isa)
            .unwrap();
        let out = run(&conv, &x, (1, h, wd), (None, None), &Executor::SingleThread);
        let want = run(
            &conv,
            &clean,
            (1, h, wd),
            (None, None),
            &Executor::SingleThread,
        );
        assert_eq!(out, want, "{isa:?}");
    }
}

#[test]
fn the_dispatch_offers_the_scalar_kernels_everywhere() {
    assert_eq!(Isa::available_f32()[0], Isa::Scalar);
    assert_eq!(Isa::available_i8()[0], Isa::Scalar);
    assert!(Isa::available_f32().contains(&Isa::best_f32()));
}

#[test]
fn quantized_rows_are_the_same_codes_on_every_instruction_set() {
    let n = 37;
    let mut rows: Vec<Vec<f32>> = (0..4)
        .map(|c| values(n, 1200 + c).iter().map(|v| v * 3.0).collect())
        .collect();
    rows[1][5] = f32::NAN;
    rows[2][6] = f32::INFINITY;
    rows[3][7] = f32::NEG_INFINITY;
    rows[0][20] = 1e30;
    let stage = [
        (0.0, 1.5, 0.25),
        (0.3, 0.5, -0.1),
        (0.0, 1.0, 0.0),
        (0.0, 0.0, 0.0),
    ];
    let r = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
    let mut want = vec![0u8; 4 * n];
    Isa::Scalar.quantize_rows(r, stage, 40.0, &mut want);
    assert_eq!(want[4 * 5 + 1], 0, "NaN");
    assert_eq!(want[4 * 6 + 2], 255, "+inf saturates");
    assert_eq!(want[4 * 20], 255, "large values saturate");
    assert!(
        want.chunks(4).all(|p| p[3] == 0),
        "a zero stage gives zero codes"
    );
    for isa in Isa::available_i8().into_iter().chain(Isa::available_f32()) {
        let mut got = vec![7u8; 4 * n];
        isa.quantize_rows(r, stage, 40.0, &mut got);
        assert_eq!(got, want, "{isa:?}");
        let mut a = vec![0f32; n];
        let mut b = vec![0f32; n];
        Isa::Scalar.stage_row((0.2, 1.5, 0.25), true, &rows[0], &mut a);
        isa.stage_row((0.2, 1.5, 0.25), true, &rows[0], &mut b);
        assert_eq!(a, b, "{isa:?}");
    }
}

#[test]
fn every_kernel_adds_the_residual_connection() {
    let (cin, cout, h, wd) = (16, 24, 6, 21);
    let x = values(cin * h * wd, 1300);
    let w = values(cout * cin * 9, 1301);
    let b = values(cout, 1302);
    let r = values(cout * h * wd, 1303);
    let stage = relu_stage(true);
    let scalar =
        DirectConv::new_f32_with(&w, &b, (cin, cout, 3), stage, Isa::Scalar, false).unwrap();
    let plain = run(
        &scalar,
        &x,
        (1, h, wd),
        (None, None),
        &Executor::SingleThread,
    );
    for isa in Isa::available_f32() {
        for (_, winograd) in forms(isa).into_iter().filter(|f| f.0) {
            let stage = relu_stage(true);
            let conv =
                DirectConv::new_f32_with(&w, &b, (cin, cout, 3), stage, isa, winograd).unwrap();
            let out = run(
                &conv,
                &x,
                (1, h, wd),
                (None, Some(&r)),
                &Executor::SingleThread,
            );
            let want: Vec<f32> = plain.iter().zip(&r).map(|(a, b)| a + b).collect();
            assert!(
                max_abs_diff(&out, &want) < 1e-4,
                "{isa:?} winograd {winograd}"
            );
        }
    }
    for isa in Isa::available_i8() {
        let conv = DirectConv::new_f32(&w, &b, (cin, cout, 3), relu_stage(true), Isa::Scalar)
            .unwrap()
            .with_int8(&w, 1.0 / 255.0, isa)
            .unwrap();
        let alone = run(&conv, &x, (1, h, wd), (None, None), &Executor::SingleThread);
        let out = run(
            &conv,
            &x,
            (1, h, wd),
            (None, Some(&r)),
            &Executor::SingleThread,
        );
        let want: Vec<f32> = alone.iter().zip(&r).map(|(a, b)| a + b).collect();
        assert_eq!(out, want, "{isa:?} int8");
    }
}

/// `x` resampled as tract's `MaxPool` (2×2, stride 2) or nearest `Resize` (×2) would.
fn resample(x: &[f32], c: usize, h: usize, w: usize, how: Resample) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = how.dims(h, w);
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        for y in 0..oh {
            for xx in 0..ow {
                let at = |yy: usize, x2: usize| x[(ch * h + yy) * w + x2];
                out[(ch * oh + y) * ow + xx] = match how {
                    Resample::None => at(y, xx),
                    Resample::MaxPool2 => at(2 * y, 2 * xx)
                        .max(at(2 * y, 2 * xx + 1))
                        .max(at(2 * y + 1, 2 * xx).max(at(2 * y + 1, 2 * xx + 1))),
                    Resample::Nearest2 => at(y / 2, xx / 2),
                };
            }
        }
    }
    (out, oh, ow)
}

#[test]
fn the_input_stage_pools_upsamples_and_adds_the_style_features_before_the_batch_norm() {
    let (cin, cout) = (8, 16);
    for (how, h, w) in [
        (Resample::MaxPool2, 34, 70),
        (Resample::MaxPool2, 15, 9),
        (Resample::Nearest2, 14, 37),
        (Resample::None, 5, 17),
    ] {
        let x = values(2 * cin * h * w, 1400);
        let wts = values(cout * cin * 9, 1401);
        let b = values(cout, 1402);
        let pre = values(2 * cin, 1403);
        let stage = InputStage {
            resample: how,
            pre_add: true,
            scale: Some(values(cin, 1404)),
            shift: Some(values(cin, 1405)),
            relu: true,
        };
        for isa in Isa::available_f32() {
            let conv = DirectConv::new_f32(&wts, &b, (cin, cout, 3), stage.clone(), isa).unwrap();
            let (oh, ow) = conv.output_dims(h, w);
            let out = run(
                &conv,
                &x,
                (2, h, w),
                (Some(&pre), None),
                &Executor::multithread(2),
            );
            for img in 0..2 {
                let (mut r, rh, rw) = resample(
                    &x[img * cin * h * w..(img + 1) * cin * h * w],
                    cin,
                    h,
                    w,
                    how,
                );
                assert_eq!((rh, rw), (oh, ow));
                for (i, v) in r.iter_mut().enumerate() {
                    *v += pre[img * cin + i / (rh * rw)];
                }
                let plain = InputStage {
                    resample: Resample::None,
                    pre_add: false,
                    ..stage.clone()
                };
                let want = reference_ks(&r, &wts, &b, (cin, cout, 3), rh, rw, &plain);
                let got = &out[img * cout * oh * ow..(img + 1) * cout * oh * ow];
                let d = max_abs_diff(got, &want);
                assert!(d < 1e-4, "{isa:?} {how:?} {h}×{w} image {img}: {d}");
            }
        }
        for isa in Isa::available_i8() {
            let f =
                DirectConv::new_f32(&wts, &b, (cin, cout, 3), stage.clone(), Isa::Scalar).unwrap();
            let q = DirectConv::new_f32(&wts, &b, (cin, cout, 3), stage.clone(), Isa::Scalar)
                .unwrap()
                .with_int8(&wts, 4.0 / 255.0, isa)
                .unwrap();
            let a = run(
                &f,
                &x,
                (2, h, w),
                (Some(&pre), None),
                &Executor::SingleThread,
            );
            let c = run(
                &q,
                &x,
                (2, h, w),
                (Some(&pre), None),
                &Executor::SingleThread,
            );
            let bound = (cin * 9) as f32 * (2.0 / 255.0 + 0.5 / 127.0 * 4.0);
            assert!(max_abs_diff(&a, &c) < bound, "{isa:?} int8 {how:?}");
        }
    }
}

#[test]
fn resampling_rows_is_the_same_on_every_instruction_set() {
    for n in [1, 15, 16, 17, 31, 32, 33, 64] {
        let mut r0 = values(2 * n + 1, 1500 + n as u64);
        let r1 = values(2 * n + 1, 1600 + n as u64);
        r0[1] = f32::NAN;
        let mut want = vec![0f32; n];
        super::maxpool2_body(&r0, &r1, &mut want);
        let mut up = vec![0f32; n];
        super::nearest2_body(&r1, &mut up);
        assert_eq!(up[n - 1], r1[(n - 1) / 2]);
        for isa in Isa::available_f32().into_iter().chain(Isa::available_i8()) {
            let mut got = vec![f32::NAN; n];
            isa.maxpool2(&r0, &r1, &mut got);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{isa:?} maxpool {n}"
            );
            let mut got = vec![f32::NAN; n];
            isa.nearest2(&r1, &mut got);
            assert_eq!(got, up, "{isa:?} nearest {n}");
        }
    }
}

#[test]
fn winograd_kernels_are_their_scalar_twin_on_every_tile_layout() {
    // Sides around the 16-tile vector (32 pixels) and the band of tiles, odd and even, a
    // batch of two, on two threads, with every stage part: each SIMD Winograd kernel must
    // give its scalar twin's values (same additions in the same order; only the FMA of the
    // products differs), and both must stay near the plain convolution.
    for (k, &(h, wd)) in [
        (1, 1),
        (2, 3),
        (7, 31),
        (9, 32),
        (5, 33),
        (33, 65),
        (66, 17),
    ]
    .iter()
    .enumerate()
    {
        let (cin, cout) = [(16, 8), (3, 17), (32, 32), (20, 12)][k % 4];
        let x = values(2 * cin * h * wd, 1400 + k as u64);
        let w = values(cout * cin * 9, 1410 + k as u64);
        let b = values(cout, 1420 + k as u64);
        let r = values(2 * cout * h * wd, 1430 + k as u64);
        let stage = InputStage {
            scale: Some(values(cin, 1440 + k as u64)),
            shift: Some(values(cin, 1450 + k as u64)),
            relu: true,
            ..InputStage::default()
        };
        let make = |isa| {
            DirectConv::new_f32_with(&w, &b, (cin, cout, 3), stage.clone(), isa, true).unwrap()
        };
        let twin = run(
            &make(Isa::Scalar),
            &x,
            (2, h, wd),
            (None, Some(&r)),
            &Executor::SingleThread,
        );
        for img in 0..2 {
            let image = img * cin * h * wd..(img + 1) * cin * h * wd;
            let want = reference_ks(&x[image], &w, &b, (cin, cout, 3), h, wd, &stage);
            let outs = img * cout * h * wd..(img + 1) * cout * h * wd;
            let got: Vec<f32> = twin[outs.clone()]
                .iter()
                .zip(&r[outs])
                .map(|(a, b)| a - b)
                .collect();
            let d = max_abs_diff(&got, &want);
            assert!(d < 1e-4, "scalar Winograd {cin}→{cout} {h}×{wd}: {d}");
        }
        for isa in Isa::available_f32()
            .into_iter()
            .filter(|i| *i != Isa::Scalar && i.has_winograd())
        {
            let out = run(
                &make(isa),
                &x,
                (2, h, wd),
                (None, Some(&r)),
                &Executor::multithread(2),
            );
            let d = max_abs_diff(&out, &twin);
            assert!(
                d < 2e-5,
                "{isa:?} Winograd {cin}→{cout} {h}×{wd} vs its scalar twin: {d}"
            );
        }
    }
}

#[test]
fn winograd_is_chosen_for_simd_3x3_from_thirty_two_channels() {
    let w = values(32 * 32 * 9, 1500);
    let b = values(32, 1501);
    for isa in Isa::available_f32() {
        for cin in [16, 31, 32] {
            let conv =
                DirectConv::new_f32(&w[..32 * cin * 9], &b, (cin, 32, 3), relu_stage(true), isa)
                    .unwrap();
            let want = if isa != Isa::Scalar && isa.has_winograd() && cin >= 32 {
                "winograd"
            } else {
                "direct"
            };
            assert_eq!(conv.algorithm(), want, "{isa:?} {cin} channels");
        }
        let one =
            DirectConv::new_f32(&w[..32 * 32], &b, (32, 32, 1), relu_stage(true), isa).unwrap();
        assert_eq!(one.algorithm(), "direct", "{isa:?} 1×1");
        assert!(
            DirectConv::new_f32_with(&w[..32 * 32], &b, (32, 32, 1), relu_stage(true), isa, true)
                .is_err()
        );
    }
}

#[test]
fn writing_over_the_input_gives_the_separate_output_in_every_form() {
    // The op writes a layer's output over its input when nothing else reads the input
    // (same shape: cin == cout, no resampling): every form (direct, Winograd, int8, 1×1)
    // must pad each image before writing any of its outputs, with or without a residual,
    // for a batch of two on two threads.
    let (c, h, wd) = (32, 17, 33);
    let x: Vec<f32> = values(2 * c * h * wd, 1700)
        .iter()
        .map(|v| v.abs())
        .collect();
    let r = values(2 * c * h * wd, 1701);
    let b = values(c, 1702);
    let ex = Executor::multithread(2);
    for ks in [1, 3] {
        let w = values(c * c * ks * ks, 1703 + ks as u64);
        for isa in Isa::available_f32() {
            let mut convs = vec![
                DirectConv::new_f32_with(&w, &b, (c, c, ks), relu_stage(true), isa, false).unwrap(),
            ];
            if ks == 3 && isa.has_winograd() {
                convs.push(
                    DirectConv::new_f32_with(&w, &b, (c, c, 3), relu_stage(true), isa, true)
                        .unwrap(),
                );
            }
            if ks == 3
                && let Some(i8isa) = Isa::available_i8().into_iter().next()
            {
                convs.push(
                    DirectConv::new_f32(&w, &b, (c, c, 3), relu_stage(true), isa)
                        .unwrap()
                        .with_int8(&w, 1.0 / 255.0, i8isa)
                        .unwrap(),
                );
            }
            for conv in &convs {
                for residual in [None, Some(r.as_slice())] {
                    let want = run(conv, &x, (2, h, wd), (None, residual), &ex);
                    let mut data = x.clone();
                    conv.forward_in_place(&mut data, (2, h, wd), (None, residual), &ex)
                        .unwrap();
                    assert_eq!(
                        data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "{isa:?} {ks}×{ks} {} {}, residual {}",
                        conv.algorithm(),
                        conv.precision() as u8,
                        residual.is_some()
                    );
                }
            }
        }
    }
    // A resampling or channel-changing layer cannot write over its input.
    let w = values(16 * c * 9, 1710);
    let conv =
        DirectConv::new_f32(&w, &b[..16], (c, 16, 3), relu_stage(true), Isa::Scalar).unwrap();
    let mut data = x.clone();
    assert!(
        conv.forward_in_place(&mut data, (2, h, wd), (None, None), &ex)
            .is_err()
    );
}
