//! AVX-512 kernels (x86-64): f32 with FMA, int8 with VNNI `vpdpbusd`.
//!
//! Register tile: 8 output channels × 3 vectors of 16 pixels = 24 of the 32 zmm registers
//! as accumulators, 3 for the input vectors, 1 for the broadcast weight. Per input channel
//! and tap: 3 loads, 8 broadcasts, 24 FMAs (or 24 `vpdpbusd`, each four channels deep).

use std::arch::x86_64::*;

use super::{Affine, F32Block, I8Block, KernelShape, OutPlanes, Pieces, Span, WINO_BLOCK};

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

/// Lanes `a .. b` (empty when `b ≤ a`) of a 16-lane mask, `b ≤ 16`.
fn lanes_between(a: usize, b: usize) -> __mmask16 {
    if b <= a {
        0
    } else {
        ((1u32 << b) - (1u32 << a)) as __mmask16
    }
}

/// [`super::scalar::wino_input`] sixteen tiles a vector: the four columns of the tiles'
/// windows are the even and odd values of a row read from the tile's column `2tx` and from
/// `2tx + 2`; a vector over two tile rows is read once per row and blended.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn wino_input(
    src: &[f32],
    pw: usize,
    pieces: Pieces,
    dst: &mut [f32],
    (c, cin): (usize, usize),
) {
    super::check_wino_input(src, pw, pieces, dst, (c, cin));
    let band = pieces.band;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for k in 0..band.vectors() {
        let mut d = [[_mm512_setzero_ps(); 4]; 4];
        for p in pieces.of(k) {
            let mask = lanes_between(p.j0, p.j1);
            for (i, row) in d.iter_mut().enumerate() {
                // SAFETY: lane `j` reads columns `2 (tx + j - j0) .. + 4` of padded row
                // `2r + i`: the vector starts `2 · j0` values before the piece's first tile,
                // which is inside `src` (a piece with `j0 > 0` starts a row below the band's
                // first, and `2 · j0 < 32 ≤ 2 · pw`), and its 34 values end inside `src`
                // (checked above: the last piece ends at most 32 values past its row).
                unsafe {
                    let q = src.as_ptr().add((2 * p.r + i) * pw + 2 * p.tx - 2 * p.j0);
                    let (a, b) = (_mm512_loadu_ps(q), _mm512_loadu_ps(q.add(LANES)));
                    let (e, f) = (_mm512_loadu_ps(q.add(2)), _mm512_loadu_ps(q.add(LANES + 2)));
                    let cols = [
                        _mm512_permutex2var_ps(a, even, b),
                        _mm512_permutex2var_ps(a, odd, b),
                        _mm512_permutex2var_ps(e, even, f),
                        _mm512_permutex2var_ps(e, odd, f),
                    ];
                    for (d, col) in row.iter_mut().zip(cols) {
                        *d = if mask == 0xffff {
                            col
                        } else {
                            _mm512_mask_blend_ps(mask, *d, col)
                        };
                    }
                }
            }
        }
        let mut t = [[_mm512_setzero_ps(); 4]; 4];
        for j in 0..4 {
            t[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
            t[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
            t[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
            t[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
        }
        let block = dst.as_mut_ptr().wrapping_add((k * cin + c) * WINO_BLOCK);
        for (i, r) in t.iter().enumerate() {
            let v = [
                _mm512_sub_ps(r[0], r[2]),
                _mm512_add_ps(r[1], r[2]),
                _mm512_sub_ps(r[2], r[1]),
                _mm512_sub_ps(r[1], r[3]),
            ];
            for (j, v) in v.into_iter().enumerate() {
                // SAFETY: block `(k · cin + c)` of `dst`, `k < vectors` (checked above).
                unsafe { _mm512_storeu_ps(block.add((4 * i + j) * LANES), v) };
            }
        }
    }
}

/// Winograd products: 8 output channels × 3 vectors of 16 tiles in registers, as the
/// direct kernel's tile; per input channel 3 loads, 8 broadcasts, 24 FMAs. Position by
/// position, so that the unit's values of one position (`nvec · cin` cache lines, at most
/// 32 KiB, see [`crate::network::winograd`]) stay in L1 while every output-channel block
/// reads them.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn wino_gemm(v: &[f32], dims: (usize, usize, usize), u: &[f32], m: &mut [f32]) {
    super::check_wino_gemm(v, dims, u, m);
    let (_, cout, nvec) = dims;
    for xi in 0..16 {
        for blk in 0..cout / OCB {
            let mut at = 0;
            while at < nvec {
                // Blocks of 3 vectors, ending in 2 + 2 rather than 3 + 1: with one vector the
                // kernel has 8 accumulators for 8 broadcasts and waits on loads and latency.
                let take = match nvec - at {
                    4 => 2,
                    left => left.min(3),
                };
                // SAFETY: `at + take ≤ nvec`, `blk < cout / 8`, the rest as checked above.
                unsafe {
                    match take {
                        1 => wino_gemm_tile::<1>(v, dims, (xi, blk, at), u, m),
                        2 => wino_gemm_tile::<2>(v, dims, (xi, blk, at), u, m),
                        _ => wino_gemm_tile::<3>(v, dims, (xi, blk, at), u, m),
                    }
                }
                at += take;
            }
        }
    }
}

/// # Safety
/// AVX-512F present; the bounds of [`super::check_wino_gemm`] hold, with vectors
/// `at .. at + NV` inside `nvec` and `blk < cout / 8`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn wino_gemm_tile<const NV: usize>(
    v: &[f32],
    (cin, cout, _): (usize, usize, usize),
    (xi, blk, at): (usize, usize, usize),
    u: &[f32],
    m: &mut [f32],
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; OCB];
    let mut x = v.as_ptr().wrapping_add(at * cin * WINO_BLOCK + xi * LANES);
    let mut w = u.as_ptr().wrapping_add((blk * 16 + xi) * cin * OCB);
    for _ in 0..cin {
        // SAFETY: `x` walks blocks `(k · cin + c)` of `v` for `k` in `at .. at + NV`, and `w`
        // walks `u[blk][ξ][c][..8]`, for `c < cin`, inside the slices (checked by the caller).
        unsafe {
            let mut xv = [_mm512_setzero_ps(); NV];
            for (j, xv) in xv.iter_mut().enumerate() {
                *xv = _mm512_loadu_ps(x.add(j * cin * WINO_BLOCK));
            }
            for (o, row) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*w.add(o));
                for j in 0..NV {
                    row[j] = _mm512_fmadd_ps(xv[j], wv, row[j]);
                }
            }
            x = x.add(WINO_BLOCK);
            w = w.add(OCB);
        }
    }
    for (o, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            let at = ((at + j) * cout + blk * OCB + o) * WINO_BLOCK + xi * LANES;
            // SAFETY: block `((at + j) · cout + 8 · blk + o)` of `m` (checked by the caller).
            unsafe { _mm512_storeu_ps(m.as_mut_ptr().add(at), *a) };
        }
    }
}

/// Stores the lanes of `mask` of `v` (plus the residual's, when there is one) at
/// `out.out + at`.
///
/// # Safety
/// AVX-512F present; the masked lanes at `at` are writable in `out.out` (readable in a
/// non-null `out.residual`).
#[inline(always)]
unsafe fn store_mask(out: OutPlanes, at: usize, mask: __mmask16, v: __m512) {
    // SAFETY: forwarded; masked-off lanes are neither read nor written.
    unsafe {
        let v = if out.residual.is_null() {
            v
        } else {
            _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out.residual.add(at)))
        };
        _mm512_mask_storeu_ps(out.out.add(at), mask, v);
    }
}

/// [`super::scalar::wino_output`] sixteen tiles a vector: the two output columns of the
/// tiles are interleaved into 32 pixels of each output row, stored piece by piece.
///
/// # Safety
/// AVX-512F present.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn wino_output(
    m: &[f32],
    (o, cout): (usize, usize),
    pieces: Pieces,
    bias: f32,
    (out, residual): (&mut [f32], Option<&[f32]>),
    (rows, width): (usize, usize),
) {
    super::check_wino_output(m, (o, cout), pieces, (out, residual), (rows, width));
    let band = pieces.band;
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let b = _mm512_set1_ps(bias);
    let planes = OutPlanes {
        out: out.as_mut_ptr(),
        residual: residual.map_or(std::ptr::null(), |r| r.as_ptr()),
        out_plane: 0,
        oc_valid: 1,
    };
    for k in 0..band.vectors() {
        let block = m.as_ptr().wrapping_add((k * cout + o) * WINO_BLOCK);
        let mut mv = [[_mm512_setzero_ps(); 4]; 4];
        for (xi, v) in mv.iter_mut().flatten().enumerate() {
            // SAFETY: block `(k · cout + o)` of `m`, `k < vectors` (checked above).
            *v = unsafe { _mm512_loadu_ps(block.add(xi * LANES)) };
        }
        let mut y = [[_mm512_setzero_ps(); 2]; 2];
        for (dy, y) in y.iter_mut().enumerate() {
            let s: [__m512; 4] = std::array::from_fn(|j| {
                if dy == 0 {
                    _mm512_add_ps(_mm512_add_ps(mv[0][j], mv[1][j]), mv[2][j])
                } else {
                    _mm512_sub_ps(_mm512_sub_ps(mv[1][j], mv[2][j]), mv[3][j])
                }
            });
            let y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]), b);
            let y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]), b);
            *y = [
                _mm512_permutex2var_ps(y0, lo, y1),
                _mm512_permutex2var_ps(y0, hi, y1),
            ];
        }
        for p in pieces.of(k) {
            // Pixel `q` of the 32 interleaved ones is lane `q / 2`'s column `q % 2`, at output
            // column `base + q`; the piece owns `2 · j0 ≤ q < 2 · j1`, inside the width.
            let base = 2 * p.tx as isize - 2 * p.j0 as isize;
            let inside = (width as isize - base).clamp(0, 32) as usize;
            let end = (2 * p.j1).min(inside);
            let masks = [
                lanes_between(2 * p.j0, end.min(LANES)),
                lanes_between((2 * p.j0).max(LANES) - LANES, end.max(LANES) - LANES),
            ];
            let oy = 2 * (p.r - band.r0);
            for (dy, y) in y.iter().enumerate() {
                if oy + dy >= rows {
                    break;
                }
                // `base` is negative only for a piece that starts a row below the band's
                // first (j0 > 0, tx = 0): the vector then begins `2 · j0` values into the
                // row above, which the band holds (`(r - r0) · width ≥ (r - r0) · tw ≥ j0`).
                let at = ((oy + dy) * width) as isize + base;
                debug_assert!(at >= 0);
                for (h, mask) in masks.iter().enumerate() {
                    if *mask != 0 {
                        // SAFETY: the lanes of `mask` are output pixels of this piece in
                        // rows `< rows` and columns `< width`, inside `out` and `residual`
                        // (checked above).
                        unsafe { store_mask(planes, at as usize + h * LANES, *mask, y[h]) };
                    }
                }
            }
        }
    }
}
