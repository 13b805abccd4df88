//! Scalar kernels: the reference the SIMD kernels are tested against, and the fallback on
//! CPUs without them. Same loop order as the SIMD kernels (bias, then input channels, then
//! taps), plain multiply-add.

use super::{
    F32Block, I8Block, KernelShape, OutPlanes, Piece, Pieces, Span, WINO_BLOCK, WINO_LANES,
};

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

/// Winograd input transform of one channel over a band (see [`super::Isa::wino_input`]),
/// tile by tile.
pub(crate) fn wino_input(
    src: &[f32],
    pw: usize,
    pieces: Pieces,
    dst: &mut [f32],
    (c, cin): (usize, usize),
) {
    super::check_wino_input(src, pw, pieces, dst, (c, cin));
    let band = pieces.band;
    for k in 0..band.vectors() {
        let block = &mut dst[(k * cin + c) * WINO_BLOCK..][..16 * WINO_LANES];
        block.fill(0.0);
        for &Piece { r, j0, j1, tx: tx0 } in pieces.of(k) {
            for j in j0..j1 {
                let tx = tx0 + j - j0;
                let mut d = [[0f32; 4]; 4];
                for (i, row) in d.iter_mut().enumerate() {
                    row.copy_from_slice(&src[(2 * r + i) * pw + 2 * tx..][..4]);
                }
                let v = super::wino_input_tile(d);
                for (xi, value) in v.iter().flatten().enumerate() {
                    block[xi * WINO_LANES + j] = *value;
                }
            }
        }
    }
}

/// The Winograd products of a unit (see [`super::Isa::wino_gemm`]), with the AVX-512
/// kernel's summation order (channels in order).
pub(crate) fn wino_gemm(
    v: &[f32],
    (cin, cout, nvec): (usize, usize, usize),
    u: &[f32],
    m: &mut [f32],
) {
    super::check_wino_gemm(v, (cin, cout, nvec), u, m);
    let ocb = super::WINO_OCB;
    for k in 0..nvec {
        for o in 0..cout {
            let (blk, oo) = (o / ocb, o % ocb);
            for xi in 0..16 {
                let u = &u[(blk * 16 + xi) * cin * ocb..];
                for j in 0..WINO_LANES {
                    let mut acc = 0f32;
                    for c in 0..cin {
                        acc +=
                            v[(k * cin + c) * WINO_BLOCK + xi * WINO_LANES + j] * u[c * ocb + oo];
                    }
                    m[(k * cout + o) * WINO_BLOCK + xi * WINO_LANES + j] = acc;
                }
            }
        }
    }
}

/// Winograd output transform of one output channel over a band (see
/// [`super::Isa::wino_output`]), tile by tile.
pub(crate) fn wino_output(
    m: &[f32],
    (o, cout): (usize, usize),
    pieces: Pieces,
    bias: f32,
    (out, residual): (&mut [f32], Option<&[f32]>),
    (rows, width): (usize, usize),
) {
    super::check_wino_output(m, (o, cout), pieces, (out, residual), (rows, width));
    let band = pieces.band;
    for k in 0..band.vectors() {
        let block = &m[(k * cout + o) * WINO_BLOCK..][..16 * WINO_LANES];
        for &Piece { r, j0, j1, tx: tx0 } in pieces.of(k) {
            for j in j0..j1 {
                let mut mt = [[0f32; 4]; 4];
                for (xi, value) in mt.iter_mut().flatten().enumerate() {
                    *value = block[xi * WINO_LANES + j];
                }
                let y = super::wino_output_tile(mt);
                let (oy, ox) = (2 * (r - band.r0), 2 * (tx0 + j - j0));
                for (dy, row) in y.iter().enumerate() {
                    for (dx, value) in row.iter().enumerate() {
                        if oy + dy < rows && ox + dx < width {
                            let at = (oy + dy) * width + ox + dx;
                            out[at] = match residual {
                                Some(res) => (value + bias) + res[at],
                                None => value + bias,
                            };
                        }
                    }
                }
            }
        }
    }
}
