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
    let step_interp = |py: f32, px: f32| euler_step(flow, height, width, true, (py, px));
    let step_pixel = |py: f32, px: f32| euler_step(flow, height, width, false, (py, px));
    out_y
        .par_chunks_mut(CHUNK)
        .zip(out_x.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, (oy, ox))| {
            let base = c * CHUNK;
            for k in 0..oy.len() {
                let start = (ys[base + k] as f32, xs[base + k] as f32);
                let (py, px) = if interp {
                    iterate(step_interp, start, niter)
                } else {
                    iterate(step_pixel, start, niter)
                };
                oy[k] = py as u32;
                ox[k] = px as u32;
            }
        });
}

/// One Euler step of a pixel at `pos` = (y, x) through `flow` (as [`follow_flows`] takes
/// it), clamped to the image: with `interp` the bilinearly interpolated flow (reference
/// `steps_interp`), else the flow at the rounded-down pixel (reference `steps2D`).
#[inline]
pub fn euler_step(
    flow: &[f32],
    height: usize,
    width: usize,
    interp: bool,
    (py, px): (f32, f32),
) -> (f32, f32) {
    let (dy, dx) = flow.split_at(height * width);
    let (ymax, xmax) = ((height - 1) as f32, (width - 1) as f32);
    // Positions stay in [0, size-1], so truncation is the floor.
    let (yf, xf) = (py as usize, px as usize);
    let (vy, vx) = if interp {
        // The reference subtracts int32 floors from f32 positions, which numpy promotes to
        // f64: the weights and the sum are f64, the step is f32.
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
        (lerp(dy), lerp(dx))
    } else {
        let i = yf * width + xf;
        (dy[i], dx[i])
    };
    ((py + vy).clamp(0.0, ymax), (px + vx).clamp(0.0, xmax))
}

/// `niter` applications of `step` from `start`, exactly.
///
/// Pixels near a sink soon stop moving or bounce between two positions: once a position
/// repeats (period 1 or 2) the rest of the path is known, so the loop ends there with the
/// position the remaining steps would reach. The result is bit-identical to stepping on,
/// because `step` depends on the position alone.
#[inline]
fn iterate(step: impl Fn(f32, f32) -> (f32, f32), start: (f32, f32), niter: u32) -> (f32, f32) {
    let mut before = start; // position two steps back
    let mut cur = start;
    for it in 0..niter {
        let next = step(cur.0, cur.1);
        if next == cur {
            return cur;
        }
        if it > 0 && next == before {
            // Period 2 from here on: `next` after an even number of the remaining steps.
            let remaining = niter - it - 1;
            return if remaining.is_multiple_of(2) {
                next
            } else {
                cur
            };
        }
        before = cur;
        cur = next;
    }
    cur
}

/// 3D dynamics as the reference runs them (`steps_interp` for three dimensions, which always
/// goes through torch's `grid_sample` with `align_corners=False` and zero padding).
///
/// Positions live in normalised grid units: a voxel index `i` along an axis of `n` voxels
/// starts at `2 i / (n - 1) - 1`, but `grid_sample` reads the field at
/// `((g + 1) n - 1) / 2`, i.e. half a voxel off at the borders, with samples outside the
/// field counting as zero. Each step adds the trilinearly sampled flow (itself scaled to
/// grid units) and clamps to `[-1, 1]`; at the end positions are mapped back by
/// `(g + 1) / 2 (n - 1)` and truncated. Every operation is f32 in the reference's order.
///
/// `flow` is `3 × depth × height × width` (dZ, dY, dX), already multiplied by the
/// cell-probability mask and divided by [`FLOW_SCALE`]; it is **rescaled in place** to grid
/// units (so a volume's flows need no second copy). `voxels` are the row-major indices of the
/// moving voxels; `out[i]` receives the truncated final (z, y, x) of `voxels[i]`.
/// Every side must be at least 2 voxels. Voxels are independent, so the result does not
/// depend on the number of threads.
pub fn follow_flows_3d(
    flow: &mut [f32],
    shape: [usize; 3],
    voxels: &[u32],
    niter: u32,
    out: &mut [[u32; 3]],
) {
    let [d, h, w] = shape;
    let n = d * h * w;
    assert!(d >= 2 && h >= 2 && w >= 2, "every side needs two voxels");
    assert!(flow.len() == 3 * n && voxels.len() == out.len());
    // Grid units per voxel along z, y, x (reference: `im[:, k] *= 2. / (size - 1)`, an f64
    // factor rounded to f32 by torch).
    for (a, len) in [d, h, w].into_iter().enumerate() {
        let s = (2.0 / (len - 1) as f64) as f32;
        flow[a * n..(a + 1) * n].iter_mut().for_each(|v| *v *= s);
    }
    let flow: &[f32] = flow;
    // Axis order below is the reference's grid order: x, y, z.
    let sizes = [w, h, d];
    let sizes_f = [w as f32, h as f32, d as f32];
    let last = [(w - 1) as f32, (h - 1) as f32, (d - 1) as f32];
    let planes = [&flow[2 * n..3 * n], &flow[n..2 * n], &flow[..n]];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        for (k, dst) in o.iter_mut().enumerate() {
            let v = voxels[c * CHUNK + k] as usize;
            let start = [(v % w) as f32, ((v / w) % h) as f32, (v / (w * h)) as f32];
            let mut g = [0.0f32; 3];
            for a in 0..3 {
                g[a] = start[a] / last[a] * 2.0 - 1.0;
            }
            for _ in 0..niter {
                let mut lo = [0i64; 3];
                let mut w0 = [0.0f32; 3];
                let mut w1 = [0.0f32; 3];
                for a in 0..3 {
                    let i = ((g[a] + 1.0) * sizes_f[a] - 1.0) / 2.0;
                    let f = i.floor();
                    lo[a] = f as i64;
                    w0[a] = (f + 1.0) - i;
                    w1[a] = i - f;
                }
                let mut acc = [0.0f32; 3];
                // Corners in torch's order: z outer, then y, then x.
                for corner in 0..8 {
                    let (bz, by, bx) = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1);
                    let (x, y, z) = (lo[0] + bx as i64, lo[1] + by as i64, lo[2] + bz as i64);
                    if x < 0
                        || y < 0
                        || z < 0
                        || x >= sizes[0] as i64
                        || y >= sizes[1] as i64
                        || z >= sizes[2] as i64
                    {
                        continue;
                    }
                    let wx = if bx == 1 { w1[0] } else { w0[0] };
                    let wy = if by == 1 { w1[1] } else { w0[1] };
                    let wz = if bz == 1 { w1[2] } else { w0[2] };
                    let weight = wx * wy * wz;
                    let at = (z as usize * h + y as usize) * w + x as usize;
                    for a in 0..3 {
                        acc[a] += planes[a][at] * weight;
                    }
                }
                for a in 0..3 {
                    g[a] = (g[a] + acc[a]).clamp(-1.0, 1.0);
                }
            }
            let p = |a: usize| ((g[a] + 1.0) * 0.5 * last[a]) as u32;
            *dst = [p(2), p(1), p(0)];
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
            .flat_map(|y| std::iter::repeat_n(y, w))
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
    fn stopping_at_a_fixed_point_or_two_cycle_gives_the_positions_of_every_step() {
        // A field with sinks, saddles and flows strong enough to overshoot, so that pixels
        // end on fixed points, on two-cycles and on longer orbits.
        let (h, w) = (40, 48);
        let mut flow = vec![0.0f32; 2 * h * w];
        for y in 0..h {
            for x in 0..w {
                let (a, b) = (y as f32 * 0.37, x as f32 * 0.23);
                flow[y * w + x] = 1.7 * (a.sin() + 0.5 * (a + b).cos());
                flow[h * w + y * w + x] = 1.7 * (b.cos() - 0.5 * (a - b).sin());
            }
        }
        let ys: Vec<u32> = (0..h as u32)
            .flat_map(|y| std::iter::repeat_n(y, w))
            .collect();
        let xs: Vec<u32> = (0..h).flat_map(|_| 0..w as u32).collect();
        for interp in [true, false] {
            for niter in [1, 2, 7, 200, 201] {
                let (mut oy, mut ox) = (vec![0; ys.len()], vec![0; ys.len()]);
                follow_flows(&flow, h, w, &ys, &xs, niter, interp, &mut oy, &mut ox);
                for i in 0..ys.len() {
                    // Every step, no shortcut.
                    let mut p = (ys[i] as f32, xs[i] as f32);
                    for _ in 0..niter {
                        p = euler_step(&flow, h, w, interp, p);
                    }
                    let (py, px) = p;
                    assert_eq!(
                        (oy[i], ox[i]),
                        (py as u32, px as u32),
                        "pixel {i}, niter {niter}, interp {interp}"
                    );
                }
            }
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
