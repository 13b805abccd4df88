//! AVX2 + FMA kernel (x86-64 without AVX-512), f32 only.
//!
//! Register tile: 4 output channels × 2 vectors of 8 pixels = 8 of the 16 ymm registers as
//! accumulators, 2 for the input vectors, 1 for the broadcast weight. (3 vectors fill all 16
//! registers and LLVM spills in the loop: 73 against 85 GFLOP/s on one core, measured.)

use std::arch::x86_64::*;

use super::{F32Block, KernelShape, OutPlanes, Span};

const OCB: usize = 4;
const LANES: usize = 8;

pub(crate) const F32_SHAPE: KernelShape = KernelShape {
    ocb: OCB,
    lanes: LANES,
    max_spans: 2,
};

/// # Safety
/// See [`super::Isa::conv_f32`] (AVX2 and FMA present).
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

#[target_feature(enable = "avx2,fma")]
unsafe fn f32_tile<const NV: usize, const KS: usize>(b: &F32Block, spans: &[Span], out: OutPlanes) {
    debug_assert!(b.ks == KS && b.weights.len() >= b.cin * KS * KS * OCB && b.bias.len() >= OCB);
    let mut acc = [[_mm256_setzero_ps(); NV]; OCB];
    for (o, row) in acc.iter_mut().enumerate() {
        let bias = _mm256_set1_ps(b.bias[o]);
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
                    let mut v = [_mm256_setzero_ps(); NV];
                    for j in 0..NV {
                        v[j] = _mm256_loadu_ps(base.add(start[j] + tap));
                    }
                    for (o, row) in acc.iter_mut().enumerate() {
                        let wv = _mm256_broadcast_ss(&*w.add(o));
                        for j in 0..NV {
                            row[j] = _mm256_fmadd_ps(v[j], wv, row[j]);
                        }
                    }
                    w = w.add(OCB);
                }
            }
        }
    }
    let index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (o, row) in acc.iter().enumerate().take(out.oc_valid.min(OCB)) {
        for (j, span) in spans.iter().enumerate().take(NV) {
            // SAFETY: the caller guarantees `span.lanes` outputs at this position are ours.
            unsafe {
                let at = o * out.out_plane + span.output;
                let dst = out.out.add(at);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(span.lanes as i32), index);
                let v = if out.residual.is_null() {
                    row[j]
                } else {
                    _mm256_add_ps(row[j], _mm256_maskload_ps(out.residual.add(at), mask))
                };
                if span.lanes >= LANES {
                    _mm256_storeu_ps(dst, v);
                } else {
                    _mm256_maskstore_ps(dst, mask, v);
                }
            }
        }
    }
}
