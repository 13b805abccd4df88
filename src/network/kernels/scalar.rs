//! Scalar kernels: the reference the SIMD kernels are tested against, and the fallback on
//! CPUs without them. Same loop order as the SIMD kernels (bias, then input channels, then
//! taps), plain multiply-add.

use super::{F32Block, I8Block, KernelShape, OutPlanes, Span};

pub(crate) const F32_SHAPE: KernelShape = KernelShape {
    ocb: 8,
    lanes: 8,
    max_spans: 3,
};

pub(crate) const I8_SHAPE: KernelShape = KernelShape {
    ocb: 8,
    lanes: 16,
    max_spans: 3,
};

/// # Safety
/// See [`super::Isa::conv_f32`].
pub(crate) unsafe fn conv_f32(b: &F32Block, spans: &[Span], out: OutPlanes) {
    let ocb = F32_SHAPE.ocb;
    for s in spans {
        for o in 0..out.oc_valid.min(ocb) {
            for l in 0..s.lanes {
                let mut acc = b.bias[o];
                for ic in 0..b.cin {
                    let plane = &b.input[ic * b.plane..(ic + 1) * b.plane];
                    let taps = b.ks * b.ks;
                    for t in 0..taps {
                        let (ky, kx) = (t / b.ks, t % b.ks);
                        let x = plane[s.input + ky * b.pw + kx + l];
                        acc += x * b.weights[(ic * taps + t) * ocb + o];
                    }
                }
                let at = o * out.out_plane + s.output + l;
                // SAFETY: the caller guarantees this output position is writable and ours, and
                // readable in a non-null residual.
                unsafe {
                    let r = if out.residual.is_null() {
                        0.0
                    } else {
                        *out.residual.add(at)
                    };
                    *out.out.add(at) = if out.residual.is_null() { acc } else { acc + r };
                }
            }
        }
    }
}

/// # Safety
/// See [`super::Isa::conv_i8`].
pub(crate) unsafe fn conv_i8(b: &I8Block, spans: &[Span], out: OutPlanes) {
    let ocb = I8_SHAPE.ocb;
    for s in spans {
        for o in 0..out.oc_valid.min(ocb) {
            for l in 0..s.lanes {
                let mut acc: i32 = 0;
                for g in 0..b.groups {
                    let plane = &b.input[g * b.plane * 4..(g + 1) * b.plane * 4];
                    for t in 0..9 {
                        let (ky, kx) = (t / 3, t % 3);
                        let px = (s.input + ky * b.pw + kx + l) * 4;
                        let w = &b.weights[((g * 9 + t) * ocb + o) * 4..][..4];
                        for c in 0..4 {
                            acc += plane[px + c] as i32 * w[c] as i32;
                        }
                    }
                }
                let v = acc as f32 * b.scale[o] + b.bias[o];
                let at = o * out.out_plane + s.output + l;
                // SAFETY: as in `conv_f32`.
                unsafe {
                    let r = if out.residual.is_null() {
                        0.0
                    } else {
                        *out.residual.add(at)
                    };
                    *out.out.add(at) = if out.residual.is_null() { v } else { v + r };
                }
            }
        }
    }
}
