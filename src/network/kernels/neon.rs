//! Advanced SIMD kernel (aarch64), f32 only.
//!
//! Register tile: 8 output channels × 3 vectors of 4 pixels = 24 of the 32 q registers as
//! accumulators, 3 for the input vectors, 2 holding the tap's 8 weights (used by lane).

use std::arch::aarch64::*;

use super::{F32Block, KernelShape, OutPlanes, Span};

const OCB: usize = 8;
const LANES: usize = 4;

pub(crate) const F32_SHAPE: KernelShape = KernelShape {
    ocb: OCB,
    lanes: LANES,
    max_spans: 3,
};

/// # Safety
/// See [`super::Isa::conv_f32`] (NEON present).
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

#[target_feature(enable = "neon")]
unsafe fn f32_tile<const NV: usize, const KS: usize>(b: &F32Block, spans: &[Span], out: OutPlanes) {
    debug_assert!(b.ks == KS && b.weights.len() >= b.cin * KS * KS * OCB && b.bias.len() >= OCB);
    let mut acc = [[vdupq_n_f32(0.0); NV]; OCB];
    for (o, row) in acc.iter_mut().enumerate() {
        let bias = vdupq_n_f32(b.bias[o]);
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
                    let mut v = [vdupq_n_f32(0.0); NV];
                    for j in 0..NV {
                        v[j] = vld1q_f32(base.add(start[j] + tap));
                    }
                    let w0 = vld1q_f32(w);
                    let w1 = vld1q_f32(w.add(4));
                    for j in 0..NV {
                        acc[0][j] = vfmaq_laneq_f32::<0>(acc[0][j], v[j], w0);
                        acc[1][j] = vfmaq_laneq_f32::<1>(acc[1][j], v[j], w0);
                        acc[2][j] = vfmaq_laneq_f32::<2>(acc[2][j], v[j], w0);
                        acc[3][j] = vfmaq_laneq_f32::<3>(acc[3][j], v[j], w0);
                        acc[4][j] = vfmaq_laneq_f32::<0>(acc[4][j], v[j], w1);
                        acc[5][j] = vfmaq_laneq_f32::<1>(acc[5][j], v[j], w1);
                        acc[6][j] = vfmaq_laneq_f32::<2>(acc[6][j], v[j], w1);
                        acc[7][j] = vfmaq_laneq_f32::<3>(acc[7][j], v[j], w1);
                    }
                    w = w.add(OCB);
                }
            }
        }
    }
    for (o, row) in acc.iter().enumerate().take(out.oc_valid.min(OCB)) {
        for (j, span) in spans.iter().enumerate().take(NV) {
            // SAFETY: the caller guarantees `span.lanes` outputs at this position are ours.
            unsafe {
                let at = o * out.out_plane + span.output;
                let dst = out.out.add(at);
                let mut tmp = [0f32; LANES];
                if !out.residual.is_null() {
                    std::ptr::copy_nonoverlapping(
                        out.residual.add(at),
                        tmp.as_mut_ptr(),
                        span.lanes,
                    );
                }
                let v = if out.residual.is_null() {
                    row[j]
                } else {
                    vaddq_f32(row[j], vld1q_f32(tmp.as_ptr()))
                };
                if span.lanes >= LANES {
                    vst1q_f32(dst, v);
                } else {
                    vst1q_f32(tmp.as_mut_ptr(), v);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, span.lanes);
                }
            }
        }
    }
}
