//! Flow dynamics: every pixel above the cell-probability threshold follows the predicted
//! flow with Euler steps (reference `dynamics.follow_flows` / `steps_interp`, CPU path).
//!
//! Each step adds the bilinearly interpolated flow at the current position and clamps the
//! position to the image, in f32 with the reference's order of operations. Pixels are
//! independent, so they are integrated in parallel chunks; the result does not depend on the
//! number of threads.

use rayon::prelude::*;

/// The reference divides the network flows by this before integrating (`dP / 5`): training
/// targets are unit flows scaled by 5.
pub const FLOW_SCALE: f32 = 5.0;
/// Pixels per parallel work item.
const CHUNK: usize = 4096;

/// Final positions of the pixels `(ys[i], xs[i])` after `niter` steps through `flow`
/// (`2 × height × width`: dY plane then dX plane, already masked and divided by
/// [`FLOW_SCALE`]). Writes truncated integer positions into `out_y`/`out_x`.
#[allow(clippy::too_many_arguments)]
pub fn follow_flows(
    flow: &[f32],
    height: usize,
    width: usize,
    ys: &[u32],
    xs: &[u32],
    niter: u32,
    interp: bool,
    out_y: &mut [u32],
    out_x: &mut [u32],
) {
    let n = ys.len();
    assert!(
        xs.len() == n && out_y.len() == n && out_x.len() == n && flow.len() == 2 * height * width
    );
    let (dy, dx) = flow.split_at(height * width);
    let (ymax, xmax) = ((height - 1) as f32, (width - 1) as f32);
    out_y
        .par_chunks_mut(CHUNK)
        .zip(out_x.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, (oy, ox))| {
            let base = c * CHUNK;
            for k in 0..oy.len() {
                let mut py = ys[base + k] as f32;
                let mut px = xs[base + k] as f32;
                if interp {
                    for _ in 0..niter {
                        // Positions stay in [0, size-1], so truncation is the floor.
                        let (yf, xf) = (py as usize, px as usize);
                        // The reference subtracts int32 floors from f32 positions, which numpy
                        // promotes to f64: the weights and the sum are f64, the step is f32.
                        let (fy, fx) = (py as f64 - yf as f64, px as f64 - xf as f64);
                        let yf1 = (yf + 1).min(height - 1);
                        let xf1 = (xf + 1).min(width - 1);
                        let i00 = yf * width + xf;
                        let i01 = yf * width + xf1;
                        let i10 = yf1 * width + xf;
                        let i11 = yf1 * width + xf1;
                        let lerp = |p: &[f32]| -> f32 {
                            (p[i00] as f64 * (1.0 - fy) * (1.0 - fx)
                                + p[i01] as f64 * (1.0 - fy) * fx
                                + p[i10] as f64 * fy * (1.0 - fx)
                                + p[i11] as f64 * fy * fx) as f32
                        };
                        let (vy, vx) = (lerp(dy), lerp(dx));
                        py = (py + vy).clamp(0.0, ymax);
                        px = (px + vx).clamp(0.0, xmax);
                    }
                } else {
                    // Reference steps2D: the flow at the rounded-down pixel, positions clamped.
                    for _ in 0..niter {
                        let i = (py as usize) * width + px as usize;
                        py = (py + dy[i]).clamp(0.0, ymax);
                        px = (px + dx[i]).clamp(0.0, xmax);
                    }
                }
                oy[k] = py as u32;
                ox[k] = px as u32;
            }
        });
}

/// 3D dynamics (reference `steps3D` semantics with trilinear interpolation of
/// `3 × depth × height × width` flows dZ, dY, dX). Writes truncated positions.
#[allow(clippy::too_many_arguments)]
pub fn follow_flows_3d(
    flow: &[f32],
    shape: [usize; 3],
    pts: &[[u32; 3]],
    niter: u32,
    out: &mut [[u32; 3]],
) {
    let [d, h, w] = shape;
    let plane = d * h * w;
    assert!(flow.len() == 3 * plane && pts.len() == out.len());
    let maxs = [(d - 1) as f32, (h - 1) as f32, (w - 1) as f32];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        for (k, dst) in o.iter_mut().enumerate() {
            let p0 = pts[c * CHUNK + k];
            let mut p = [p0[0] as f32, p0[1] as f32, p0[2] as f32];
            for _ in 0..niter {
                let f = [p[0] as usize, p[1] as usize, p[2] as usize];
                let t = [p[0] - f[0] as f32, p[1] - f[1] as f32, p[2] - f[2] as f32];
                let f1 = [
                    (f[0] + 1).min(d - 1),
                    (f[1] + 1).min(h - 1),
                    (f[2] + 1).min(w - 1),
                ];
                let mut v = [0.0f32; 3];
                for (corner, wgt) in (0..8).map(|b| {
                    let z = if b & 4 != 0 { f1[0] } else { f[0] };
                    let y = if b & 2 != 0 { f1[1] } else { f[1] };
                    let x = if b & 1 != 0 { f1[2] } else { f[2] };
                    let wz = if b & 4 != 0 { t[0] } else { 1.0 - t[0] };
                    let wy = if b & 2 != 0 { t[1] } else { 1.0 - t[1] };
                    let wx = if b & 1 != 0 { t[2] } else { 1.0 - t[2] };
                    ((z * h + y) * w + x, wz * wy * wx)
                }) {
                    for a in 0..3 {
                        v[a] += flow[a * plane + corner] * wgt;
                    }
                }
                for a in 0..3 {
                    p[a] = (p[a] + v[a]).clamp(0.0, maxs[a]);
                }
            }
            *dst = [p[0] as u32, p[1] as u32, p[2] as u32];
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_flow_to_the_sink_of_a_radial_field() {
        // Unit flow towards (8, 8) everywhere, scaled as the network's (÷5 already applied).
        let (h, w) = (17, 17);
        let mut flow = vec![0.0f32; 2 * h * w];
        for y in 0..h {
            for x in 0..w {
                let (vy, vx) = (8.0 - y as f32, 8.0 - x as f32);
                let n = (vy * vy + vx * vx).sqrt().max(1e-6);
                flow[y * w + x] = vy / n;
                flow[h * w + y * w + x] = vx / n;
            }
        }
        let ys: Vec<u32> = (0..h as u32)
            .flat_map(|y| std::iter::repeat(y).take(w))
            .collect();
        let xs: Vec<u32> = (0..h).flat_map(|_| 0..w as u32).collect();
        let (mut oy, mut ox) = (vec![0; ys.len()], vec![0; ys.len()]);
        follow_flows(&flow, h, w, &ys, &xs, 200, true, &mut oy, &mut ox);
        for i in 0..ys.len() {
            assert!(
                (oy[i] as i32 - 8).abs() <= 1 && (ox[i] as i32 - 8).abs() <= 1,
                "pixel {i} ended at {},{}",
                oy[i],
                ox[i]
            );
        }
    }

    #[test]
    fn positions_are_clamped_to_the_image() {
        let (h, w) = (4, 4);
        let mut flow = vec![0.0f32; 2 * h * w];
        flow[..h * w].fill(-3.0); // strong flow upwards
        let (mut oy, mut ox) = (vec![0; 1], vec![0; 1]);
        follow_flows(&flow, h, w, &[3], &[2], 10, true, &mut oy, &mut ox);
        assert_eq!((oy[0], ox[0]), (0, 2));
    }
}
