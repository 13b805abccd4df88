//! AVX-512 kernels (x86-64): f32 with FMA, int8 with VNNI `vpdpbusd`.
//!
//! Register tile: 8 output channels × 3 vectors of 16 pixels = 24 of the 32 zmm registers
//! as accumulators, 3 for the input vectors, 1 for the broadcast weight. Per input channel
//! and tap: 3 loads, 8 broadcasts, 24 FMAs (or 24 `vpdpbusd`, each four channels deep).

use std::arch::x86_64::*;

use super::{Affine, F32Block, I8Block, KernelShape, OutPlanes, Span};

const OCB: usize = 8;
const LANES: usize = 16;

pub(crate) const F32_SHAPE: KernelShape = KernelShape {
    ocb: OCB,
    lanes: LANES,
    max_spans: 3,
};

pub(crate) const I8_SHAPE: KernelShape = KernelShape {
    ocb: OCB,
    lanes: LANES,
    max_spans: 3,
};

fn lane_mask(lanes: usize) -> __mmask16 {
    if lanes >= LANES {
        0xffff
    } else {
        ((1u32 << lanes) - 1) as __mmask16
    }
}

/// Stores the first `lanes` values of `v` (plus the residual's, when there is one) at
/// `out.out + at`.
///
/// # Safety
/// AVX-512F present; `lanes` values at `at` are writable in `out.out` (readable in a
/// non-null `out.residual`).
#[inline(always)]
unsafe fn store(out: OutPlanes, at: usize, lanes: usize, v: __m512) {
    let mask = lane_mask(lanes);
    // SAFETY: forwarded; masked lanes are neither read nor written.
    unsafe {
        let v = if out.residual.is_null() {
            v
        } else {
            _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out.residual.add(at)))
        };
        _mm512_mask_storeu_ps(out.out.add(at), mask, v);
    }
}

/// # Safety
/// See [`super::Isa::conv_f32`] (AVX-512F present).
pub(crate) unsafe fn conv_f32(b: &F32Block, spans: &[Span], out: OutPlanes) {
    // SAFETY: forwarded; the length selects the instantiation with that many vectors.
    unsafe {
        match (spans.len(), b.ks) {
            (0, _) => {}
            (1, 1) => f32_tile::<1, 1>(b, spans, out),
            (2, 1) => f32_tile::<2, 1>(b, spans, out),
            (_, 1) => f32_tile::<3, 1>(b, &spans[..3], out),
            (1, _) => f32_tile::<1, 3>(b, spans, out),
            (2, _) => f32_tile::<2, 3>(b, spans, out),
            (_, _) => f32_tile::<3, 3>(b, &spans[..3], out),
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn f32_tile<const NV: usize, const KS: usize>(b: &F32Block, spans: &[Span], out: OutPlanes) {
    debug_assert!(b.ks == KS && b.weights.len() >= b.cin * KS * KS * OCB && b.bias.len() >= OCB);
    let mut acc = [[_mm512_setzero_ps(); NV]; OCB];
    for (o, row) in acc.iter_mut().enumerate() {
        let bias = _mm512_set1_ps(b.bias[o]);
        for a in row.iter_mut() {
            *a = bias;
        }
    }
    let mut start = [0usize; NV];
    for (s, span) in start.iter_mut().zip(spans) {
        *s = span.input;
    }
    let input = b.input.as_ptr();
    let mut w = b.weights.as_ptr();
    for ic in 0..b.cin {
        // SAFETY (whole loop body): the caller guarantees that every full-vector read of
        // every tap of every span lies inside `b.input` (padded layout), and `w` walks the
        // `cin · KS² · OCB` packed weights, which the debug assertion above checks.
        unsafe {
            let base = input.add(ic * b.plane);
            for ky in 0..KS {
                for kx in 0..KS {
                    let tap = ky * b.pw + kx;
                    let mut v = [_mm512_setzero_ps(); NV];
                    for j in 0..NV {
                        v[j] = _mm512_loadu_ps(base.add(start[j] + tap));
                    }
                    for (o, row) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_ps(*w.add(o));
                        for j in 0..NV {
                            row[j] = _mm512_fmadd_ps(v[j], wv, row[j]);
                        }
                    }
                    w = w.add(OCB);
                }
            }
        }
    }
    for (o, row) in acc.iter().enumerate().take(out.oc_valid.min(OCB)) {
        for (j, span) in spans.iter().enumerate().take(NV) {
            // SAFETY: the caller guarantees `span.lanes` outputs at this position are ours.
            unsafe { store(out, o * out.out_plane + span.output, span.lanes, row[j]) }
        }
    }
}

/// # Safety
/// See [`super::Isa::conv_i8`] (AVX-512F, BW and VNNI present).
pub(crate) unsafe fn conv_i8(b: &I8Block, spans: &[Span], out: OutPlanes) {
    // SAFETY: forwarded; the length selects the instantiation with that many vectors.
    unsafe {
        match spans.len() {
            0 => {}
            1 => i8_tile::<1>(b, spans, out),
            2 => i8_tile::<2>(b, spans, out),
            _ => i8_tile::<3>(b, &spans[..3], out),
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn i8_tile<const NV: usize>(b: &I8Block, spans: &[Span], out: OutPlanes) {
    debug_assert!(b.weights.len() >= b.groups * 9 * OCB * 4);
    // The i32 sums are kept as `__m512` (a free cast): with `__m512i` (i64 lanes to Rust,
    // i32 to `vpdpbusd`) LLVM kept the accumulator array in memory, and the kernel ran at a
    // quarter of the instruction's throughput.
    let mut acc = [[_mm512_setzero_ps(); NV]; OCB];
    let mut start = [0usize; NV];
    for (s, span) in start.iter_mut().zip(spans) {
        *s = span.input * 4;
    }
    let input = b.input.as_ptr();
    // Four i8 weights (one output channel, four input channels) are one 32-bit lane.
    let mut w = b.weights.as_ptr() as *const i32;
    for g in 0..b.groups {
        // SAFETY (whole loop body): as in `f32_tile`, with pixels of four bytes; the weight
        // reads are unaligned 32-bit reads inside the packed weights.
        unsafe {
            let base = input.add(g * b.plane * 4);
            for ky in 0..3 {
                for kx in 0..3 {
                    let tap = (ky * b.pw + kx) * 4;
                    let mut v = [_mm512_setzero_si512(); NV];
                    for j in 0..NV {
                        v[j] = _mm512_loadu_si512(base.add(start[j] + tap) as *const __m512i);
                    }
                    for (o, row) in acc.iter_mut().enumerate() {
                        let wv = _mm512_set1_epi32(w.add(o).read_unaligned());
                        for j in 0..NV {
                            let sum = _mm512_dpbusd_epi32(_mm512_castps_si512(row[j]), v[j], wv);
                            row[j] = _mm512_castsi512_ps(sum);
                        }
                    }
                    w = w.add(OCB);
                }
            }
        }
    }
    // The sums go to the epilogue as a copy: when the epilogue indexed `acc` itself (its
    // channel count is known at run time only), LLVM kept `acc` in memory and stored it
    // after every `vpdpbusd`, which halved the kernel's speed.
    let sums = acc;
    // SAFETY: forwarded from this function's contract.
    unsafe { i8_epilogue::<NV>(b, spans, out, &sums) }
}

/// Converts the i32 sums of [`i8_tile`] to `sum · scale + bias` and stores them.
///
/// # Safety
/// As [`i8_tile`].
#[target_feature(enable = "avx512f")]
unsafe fn i8_epilogue<const NV: usize>(
    b: &I8Block,
    spans: &[Span],
    out: OutPlanes,
    sums: &[[__m512; NV]; OCB],
) {
    for (o, row) in sums.iter().enumerate().take(out.oc_valid.min(OCB)) {
        let scale = _mm512_set1_ps(b.scale[o]);
        let bias = _mm512_set1_ps(b.bias[o]);
        for (j, span) in spans.iter().enumerate().take(NV) {
            let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_castps_si512(row[j])), scale, bias);
            // SAFETY: the caller guarantees `span.lanes` outputs at this position are ours.
            unsafe { store(out, o * out.out_plane + span.output, span.lanes, y) }
        }
    }
}

/// [`super::quantize_rows_body`] sixteen pixels at a time (the same operations in the same
/// order, so the same codes; the last `n % 16` pixels go through the body itself).
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn quantize_rows(
    rows: [&[f32]; 4],
    stage: [Affine; 4],
    inv_scale: f32,
    dst: &mut [u8],
) {
    let n = dst.len() / 4;
    assert!(rows.iter().all(|r| r.len() >= n));
    let zero = _mm512_setzero_ps();
    let top = _mm512_set1_ps(255.0);
    let half = _mm512_set1_ps(0.5);
    let inv = _mm512_set1_ps(inv_scale);
    let code = |c: usize, i: usize| {
        // SAFETY: `i + 16 ≤ n ≤ rows[c].len()` (the loop bound and the assertion above).
        let x = unsafe { _mm512_loadu_ps(rows[c].as_ptr().add(i)) };
        let (p, sc, t) = stage[c];
        let x = _mm512_add_ps(x, _mm512_set1_ps(p));
        let v = _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(sc)), _mm512_set1_ps(t));
        // `max_ps(v, 0)` gives 0 for NaN, as `f32::max`; `min_ps` after it sees no NaN.
        let v = _mm512_min_ps(_mm512_mul_ps(_mm512_max_ps(v, zero), inv), top);
        _mm512_cvttps_epi32(_mm512_add_ps(v, half))
    };
    let mut i = 0;
    while i + 16 <= n {
        let packed = _mm512_or_si512(
            _mm512_or_si512(code(0, i), _mm512_slli_epi32::<8>(code(1, i))),
            _mm512_or_si512(
                _mm512_slli_epi32::<16>(code(2, i)),
                _mm512_slli_epi32::<24>(code(3, i)),
            ),
        );
        // SAFETY: bytes `4i .. 4i + 64` are inside `dst` (`i + 16 ≤ n = dst.len() / 4`).
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(4 * i) as *mut __m512i, packed) };
        i += 16;
    }
    super::quantize_rows_body(
        [&rows[0][i..], &rows[1][i..], &rows[2][i..], &rows[3][i..]],
        stage,
        inv_scale,
        &mut dst[4 * i..],
    );
}

/// [`super::maxpool2_body`] sixteen outputs at a time (`maxps` is the body's `max_ps`).
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn maxpool2(r0: &[f32], r1: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    assert!(r0.len() >= 2 * n && r1.len() >= 2 * n);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: reads `2i .. 2i + 32 ≤ 2n` of both rows, writes `i .. i + 16 ≤ n` of `dst`.
        unsafe {
            let a0 = _mm512_max_ps(
                _mm512_loadu_ps(r0.as_ptr().add(2 * i)),
                _mm512_loadu_ps(r1.as_ptr().add(2 * i)),
            );
            let a1 = _mm512_max_ps(
                _mm512_loadu_ps(r0.as_ptr().add(2 * i + 16)),
                _mm512_loadu_ps(r1.as_ptr().add(2 * i + 16)),
            );
            let m = _mm512_max_ps(
                _mm512_permutex2var_ps(a0, even, a1),
                _mm512_permutex2var_ps(a0, odd, a1),
            );
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), m);
        }
        i += 16;
    }
    super::maxpool2_body(&r0[2 * i..], &r1[2 * i..], &mut dst[i..]);
}

/// [`super::nearest2_body`] thirty-two outputs at a time.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn nearest2(src: &[f32], dst: &mut [f32]) {
    let n = dst.len();
    assert!(src.len() >= n.div_ceil(2));
    let lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let hi = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: reads `i / 2 .. i / 2 + 16 ≤ n / 2` of `src`, writes `i .. i + 32 ≤ n`.
        unsafe {
            let v = _mm512_loadu_ps(src.as_ptr().add(i / 2));
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_permutexvar_ps(lo, v));
            _mm512_storeu_ps(dst.as_mut_ptr().add(i + 16), _mm512_permutexvar_ps(hi, v));
        }
        i += 32;
    }
    super::nearest2_body(&src[i / 2..], &mut dst[i..]);
}
