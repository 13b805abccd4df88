//! Preprocessing as the reference does it (`transforms.convert_image`, `normalize_img`,
//! `resize_image`, `get_pad_yx`): channel choice, per-channel 1st–99th percentile
//! normalisation, bilinear rescaling with OpenCV's `INTER_LINEAR` geometry, and padding to
//! multiples of 16.

use crate::params::SIZE_DIVISOR;

/// Above this many samples the reference estimates percentiles on a strided subsample
/// (`normalize99(downsample=True)`: 224³ samples) ...
const PERCENTILE_FULL_LIMIT: usize = 224 * 224 * 224;
/// ... which keeps about this many planes along Z (`nskip[0] = Lz // 50`) ...
const PERCENTILE_PLANES: usize = 50;
/// ... and about this many samples along Y and X.
const PERCENTILE_SIDE: usize = 224;
/// Below this spread the reference treats a channel as empty and sets it to 0.
const MIN_SPREAD: f64 = 1e-3;

/// The `p`-th percentile (0..=100) with numpy's default linear interpolation. `scratch` is
/// reordered.
pub fn percentile(scratch: &mut [f32], p: f64) -> f64 {
    let n = scratch.len();
    if n == 0 {
        return 0.0;
    }
    let pos = p / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, v_lo, rest) = scratch.select_nth_unstable_by(lo, f32::total_cmp);
    let v_lo = *v_lo as f64;
    if frac == 0.0 || rest.is_empty() {
        return v_lo;
    }
    let v_hi = rest.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    // numpy's lerp: a + (b - a) * t, computed as in `_lerp` for t < 0.5 and from b otherwise.
    if frac < 0.5 {
        v_lo + (v_hi - v_lo) * frac
    } else {
        v_hi - (v_hi - v_lo) * (1.0 - frac)
    }
}

/// How [`normalize_channel`] treated a channel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Normalization {
    /// Not normalised (normalisation off, or the channel is not in the image).
    #[default]
    Off,
    /// Constant, or holding NaN: left as it is (reference: `np.ptp == 0` skips it).
    Constant,
    /// The `lower` and `upper` percentiles mapped to 0 and 1 (reference `normalize99`).
    Percentiles,
    /// The two percentiles were equal (objects on under `100 − upper` % of a flat
    /// background, e.g. a few nuclei in a large field): mapped from the `lower` percentile
    /// (0) to the channel's maximum (1) instead. The reference maps such a channel to 0,
    /// which finds no objects.
    LowerToMax,
}

/// Normalises one channel in place so that the `lower` percentile maps to 0 and `upper` to
/// 1 (reference `normalize99`); a constant channel is left as it is (reference: `np.ptp ==
/// 0` skips normalisation). Where the two percentiles nearly coincide but the channel is
/// not constant, the channel's maximum stands in for the upper percentile
/// ([`Normalization::LowerToMax`]). `x` is one `height × width` plane, row-major.
pub fn normalize_channel(
    x: &mut [f32],
    width: usize,
    lower: f32,
    upper: f32,
    scratch: &mut Vec<f32>,
) -> Normalization {
    let (h, w) = match x.len().checked_div(width) {
        Some(h) => (h, width),
        None => (1, x.len()),
    };
    normalize_planes(
        x,
        [1, h, w],
        |_| 0,
        (lower, upper),
        NarrowSpread::LowerToMax,
        scratch,
    )
}

/// What [`normalize_planes`] does where the two percentiles nearly coincide (less than
/// 1e-3 apart) in a channel that is not constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NarrowSpread {
    /// Map the lower percentile to 0 and the maximum to 1 (frames: a few objects in a
    /// large flat field still segment).
    LowerToMax,
    /// Set the channel to 0, as the reference does (stacks: `normalize99` on a volume).
    Zero,
}

/// Normalises one channel of a stack over all its planes together (reference
/// `normalize99`; on more than 224³ samples, percentiles from the subsample of
/// `downsample=True`: about 50 planes and 224 samples along Y and X). The channel has
/// `depth` planes of `height × width` (`shape = [depth, height, width]`), plane `z` starting
/// at `plane_at(z)` in `x`. A frame is a stack of one plane. Returns how the channel was
/// treated; the `Zero` rule reports [`Normalization::Percentiles`].
pub(crate) fn normalize_planes(
    x: &mut [f32],
    shape: [usize; 3],
    plane_at: impl Fn(usize) -> usize,
    (lower, upper): (f32, f32),
    narrow: NarrowSpread,
    scratch: &mut Vec<f32>,
) -> Normalization {
    let [d, h, w] = shape;
    let plane = h * w;
    let planes = || (0..d).map(|z| plane_at(z)..plane_at(z) + plane);
    let (mn, mx, whole) = planes().flat_map(|r| &x[r]).fold(
        (f32::INFINITY, f32::NEG_INFINITY, true),
        |(a, b, whole), &v| (a.min(v), b.max(v), whole && v.fract() == 0.0),
    );
    // A constant channel, or one holding NaN, is left as it is.
    if mx - mn <= 0.0 || (mx - mn).is_nan() {
        return Normalization::Constant;
    }
    scratch.clear();
    let (x01, x99) =
        if d * plane <= PERCENTILE_FULL_LIMIT && whole && mn >= 0.0 && mx < HISTOGRAM_BINS as f32 {
            // Whole numbers in 0..65536 (every u8 and u16 frame as read): the same order
            // statistics from a histogram of 256 kB instead of a copy of every sample (16 MB for
            // a 2048² frame, held by the workspace from frame to frame).
            scratch.resize(HISTOGRAM_BINS, 0.0);
            let hist: &mut [u32] = bytemuck::cast_slice_mut(&mut scratch[..]);
            for r in planes() {
                for &v in &x[r] {
                    hist[v as usize] += 1;
                }
            }
            let n = d * plane;
            (
                percentile_of_histogram(hist, n, lower as f64),
                percentile_of_histogram(hist, n, upper as f64),
            )
        } else {
            sampled_percentiles(x, shape, &plane_at, (lower, upper), scratch)
        };
    let (hi, how) = if x99 - x01 > MIN_SPREAD {
        (x99, Normalization::Percentiles)
    } else if narrow == NarrowSpread::LowerToMax {
        (mx as f64, Normalization::LowerToMax)
    } else {
        (x99, Normalization::Percentiles)
    };
    for r in planes() {
        let x = &mut x[r];
        if hi - x01 > MIN_SPREAD {
            let (lo, span) = (x01 as f32, (hi - x01) as f32);
            x.iter_mut().for_each(|v| *v = (*v - lo) / span);
        } else {
            x.fill(0.0);
        }
    }
    how
}

/// The `lower` and `upper` percentiles of the planes, from a copy of their samples (a
/// strided subsample above 224³ samples, as the reference takes it) in `scratch`.
fn sampled_percentiles(
    x: &[f32],
    [d, h, w]: [usize; 3],
    plane_at: impl Fn(usize) -> usize,
    (lower, upper): (f32, f32),
    scratch: &mut Vec<f32>,
) -> (f64, f64) {
    let plane = h * w;
    scratch.clear();
    if d * plane > PERCENTILE_FULL_LIMIT {
        let sz = (d / PERCENTILE_PLANES).max(1);
        let (sy, sx) = ((h / PERCENTILE_SIDE).max(1), (w / PERCENTILE_SIDE).max(1));
        for z in (0..d).step_by(sz) {
            let p0 = plane_at(z);
            for y in (0..h).step_by(sy) {
                scratch.extend(x[p0 + y * w..p0 + (y + 1) * w].iter().step_by(sx));
            }
        }
    } else {
        for z in 0..d {
            scratch.extend_from_slice(&x[plane_at(z)..plane_at(z) + plane]);
        }
    }
    (
        percentile(scratch, lower as f64),
        percentile(scratch, upper as f64),
    )
}

/// Bins of the histogram [`normalize_planes`] reads the percentiles of whole-number samples
/// from: every u16 value.
const HISTOGRAM_BINS: usize = 1 << 16;

/// The `p`-th percentile (0..=100) of `n` samples counted in `hist` (bin `v` holds the
/// samples of value `v`), with numpy's linear interpolation: the same value as
/// [`percentile`] on the samples themselves.
fn percentile_of_histogram(hist: &[u32], n: usize, p: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let pos = p / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    // The k-th smallest sample (0-based): the first bin whose running count passes k.
    let order_statistic = |k: usize| {
        let mut seen = 0usize;
        for (v, &c) in hist.iter().enumerate() {
            seen += c as usize;
            if seen > k {
                return v as f64;
            }
        }
        (hist.len() - 1) as f64
    };
    let v_lo = order_statistic(lo);
    if frac == 0.0 || lo + 1 >= n {
        return v_lo;
    }
    let v_hi = order_statistic(lo + 1);
    if frac < 0.5 {
        v_lo + (v_hi - v_lo) * frac
    } else {
        v_hi - (v_hi - v_lo) * (1.0 - frac)
    }
}

/// Normalises every channel of a Z×C×Y×X stack (a frame: Z = 1) with
/// [`normalize_planes`], then inverts the normalised channels when `invert` (the reference
/// inverts the channels it normalised, `cgood`). Writes how each channel was treated into
/// `how` (`nc` entries).
#[allow(clippy::too_many_arguments)]
pub(crate) fn normalize_stack(
    x: &mut [f32],
    shape: [usize; 3],
    nc: usize,
    percentiles: (f32, f32),
    invert: bool,
    narrow: NarrowSpread,
    scratch: &mut Vec<f32>,
    how: &mut [Normalization],
) {
    let [d, h, w] = shape;
    let plane = h * w;
    for (c, how) in how.iter_mut().enumerate().take(nc) {
        let at = |z: usize| (z * nc + c) * plane;
        *how = normalize_planes(x, shape, at, percentiles, narrow, scratch);
        if *how != Normalization::Constant && invert {
            for z in 0..d {
                x[at(z)..at(z) + plane]
                    .iter_mut()
                    .for_each(|v| *v = 1.0 - *v);
            }
        }
    }
}

/// Reduces an interleaved colour image (`nch` samples per pixel) to the network's two
/// planes as the reference `transforms.reshape` does for `channels = [c0, c1]`:
/// `c0 = 0` averages all colours into channel 0 (grayscale), `c0 = 1..=nch` takes that
/// colour; `c1 = 1..=nch` takes a nucleus colour into channel 1, `c1 = 0` leaves it empty.
/// `out` holds the two planes, `2 × npix`.
///
/// # Errors
/// [`crate::ParamsError::OutOfRange`] for a channel choice beyond the image's colours.
pub fn reduce_channels(
    interleaved: &[f32],
    nch: usize,
    channels: [usize; 2],
    out: &mut [f32],
) -> Result<(), crate::ParamsError> {
    let npix = out.len() / 2;
    let bad = |name, v: usize| crate::ParamsError::OutOfRange {
        name,
        value: v as f64,
        expected: "0 (gray) or a channel index 1..=number of colours",
    };
    if channels[0] > nch {
        return Err(bad("channels[0]", channels[0]));
    }
    if channels[1] > nch {
        return Err(bad("channels[1]", channels[1]));
    }
    assert_eq!(interleaved.len(), npix * nch);
    let (c0, c1) = out.split_at_mut(npix);
    for i in 0..npix {
        let px = &interleaved[i * nch..(i + 1) * nch];
        c0[i] = if nch == 1 {
            px[0]
        } else if channels[0] == 0 {
            px.iter().sum::<f32>() / nch as f32
        } else {
            px[channels[0] - 1]
        };
        c1[i] = if channels[0] != 0 && channels[1] > 0 && nch > 1 {
            px[channels[1] - 1]
        } else {
            0.0
        };
    }
    Ok(())
}

/// Padding (before, after) that the reference adds to a side of length `len`: up to the next
/// multiple of 16, plus 8 pixels on each side (`get_pad_yx(div=16, extra=1)`).
pub fn pad_for(len: usize) -> (usize, usize) {
    let d = SIZE_DIVISOR;
    let lpad = len.div_ceil(d) * d - len;
    (d / 2 + lpad / 2, d / 2 + lpad - lpad / 2)
}

/// Per-axis source positions of OpenCV `INTER_LINEAR` resizing: for every destination index
/// the left source index and the weight of the right neighbour.
pub fn linear_coeffs(src: usize, dst: usize, idx: &mut Vec<usize>, w: &mut Vec<f32>) {
    idx.clear();
    w.clear();
    let scale = src as f64 / dst as f64;
    for d in 0..dst {
        let f = (d as f64 + 0.5) * scale - 0.5;
        let mut s = f.floor() as isize;
        let mut t = (f - s as f64) as f32;
        if s < 0 {
            s = 0;
            t = 0.0;
        }
        if s as usize >= src - 1 {
            s = src as isize - 1;
            t = 0.0;
        }
        idx.push(s as usize);
        w.push(t);
    }
}

/// Bilinear resize of one plane (`src_h × src_w` → `dst_h × dst_w`, rows × columns), horizontal pass then
/// vertical pass in f32, as OpenCV does for float images.
#[allow(clippy::too_many_arguments)]
pub fn resize_plane(
    src: &[f32],
    src_h: usize,
    src_w: usize,
    dst: &mut [f32],
    dst_h: usize,
    dst_w: usize,
    scratch: &mut ResizeScratch,
) {
    let ResizeScratch {
        xi,
        xw,
        yi,
        yw,
        row0,
        row1,
    } = scratch;
    linear_coeffs(src_w, dst_w, xi, xw);
    linear_coeffs(src_h, dst_h, yi, yw);
    row0.resize(dst_w, 0.0);
    row1.resize(dst_w, 0.0);
    let hpass = |y: usize, row: &mut [f32]| {
        let s = &src[y * src_w..(y + 1) * src_w];
        for x in 0..dst_w {
            let (i, t) = (xi[x], xw[x]);
            let right = s[(i + 1).min(src_w - 1)];
            row[x] = s[i] * (1.0 - t) + right * t;
        }
    };
    for y in 0..dst_h {
        let (i, t) = (yi[y], yw[y]);
        hpass(i, row0);
        hpass((i + 1).min(src_h - 1), row1);
        let d = &mut dst[y * dst_w..(y + 1) * dst_w];
        for x in 0..dst_w {
            d[x] = row0[x] * (1.0 - t) + row1[x] * t;
        }
    }
}

/// Reusable buffers of [`resize_plane`].
#[derive(Debug, Default, Clone)]
pub struct ResizeScratch {
    xi: Vec<usize>,
    xw: Vec<f32>,
    yi: Vec<usize>,
    yw: Vec<f32>,
    row0: Vec<f32>,
    row1: Vec<f32>,
}

/// Nearest-neighbour resize of a label plane (OpenCV `INTER_NEAREST`: source index
/// `floor(d * src / dst)`).
pub fn resize_labels_nearest(
    src: &[u32],
    src_h: usize,
    src_w: usize,
    dst: &mut [u32],
    dst_h: usize,
    dst_w: usize,
) {
    let (sx, sy) = (src_w as f64 / dst_w as f64, src_h as f64 / dst_h as f64);
    for y in 0..dst_h {
        let ys = ((y as f64 * sy).floor() as usize).min(src_h - 1);
        for x in 0..dst_w {
            let xs = ((x as f64 * sx).floor() as usize).min(src_w - 1);
            dst[y * dst_w + x] = src[ys * src_w + xs];
        }
    }
}

/// Bilinear resize of one channel of a stack, as the reference resizes volumes: every z
/// plane in XY (OpenCV `INTER_LINEAR`, [`resize_plane`]), then along Z (the
/// reference resizes the ZX planes with X unchanged, which is the same vertical pass).
/// The planes of `from = (Z, Y, X)` start at `src_at(z)` in `src`; the planes of `to` are
/// written at `dst_at(z)` in `dst`.
pub(crate) fn resize_stack(
    src: &[f32],
    from: [usize; 3],
    src_at: impl Fn(usize) -> usize,
    dst: &mut [f32],
    to: [usize; 3],
    dst_at: impl Fn(usize) -> usize,
    scratch: &mut ResizeScratch,
) {
    let [fd, fh, fw] = from;
    let [td, th, tw] = to;
    let (fp, tp) = (fh * fw, th * tw);
    // XY pass into a Z×Y'×X' buffer (skipped when XY keeps its size).
    let mut xy = Vec::new();
    let xy_at: Box<dyn Fn(usize) -> usize> = if (fh, fw) != (th, tw) {
        xy.resize(fd * tp, 0.0);
        for z in 0..fd {
            resize_plane(
                &src[src_at(z)..src_at(z) + fp],
                fh,
                fw,
                &mut xy[z * tp..(z + 1) * tp],
                th,
                tw,
                scratch,
            );
        }
        Box::new(move |z| z * tp)
    } else {
        Box::new(&src_at)
    };
    let xy_src: &[f32] = if (fh, fw) != (th, tw) { &xy } else { src };
    // Z pass: OpenCV's vertical interpolation, row0 * (1 - t) + row1 * t.
    let (mut zi, mut zw) = (Vec::new(), Vec::new());
    linear_coeffs(fd, td, &mut zi, &mut zw);
    for z in 0..td {
        let (i, t) = (zi[z], zw[z]);
        let a = &xy_src[xy_at(i)..xy_at(i) + tp];
        let b0 = xy_at((i + 1).min(fd - 1));
        let b = &xy_src[b0..b0 + tp];
        let o = dst_at(z);
        let out = &mut dst[o..o + tp];
        if fd == td {
            out.copy_from_slice(a);
        } else {
            for k in 0..tp {
                out[k] = a[k] * (1.0 - t) + b[k] * t;
            }
        }
    }
}

/// Nearest-neighbour resize of a label volume (reference: OpenCV `INTER_NEAREST` per z plane
/// in XY, then per y plane along Z).
pub(crate) fn resize_labels_volume(src: &[u32], from: [usize; 3], dst: &mut [u32], to: [usize; 3]) {
    let [fd, fh, fw] = from;
    let [td, th, tw] = to;
    let mut xy = vec![0u32; fd * th * tw];
    for z in 0..fd {
        resize_labels_nearest(
            &src[z * fh * fw..(z + 1) * fh * fw],
            fh,
            fw,
            &mut xy[z * th * tw..(z + 1) * th * tw],
            th,
            tw,
        );
    }
    let sz = fd as f64 / td as f64;
    for z in 0..td {
        let zs = ((z as f64 * sz).floor() as usize).min(fd - 1);
        dst[z * th * tw..(z + 1) * th * tw].copy_from_slice(&xy[zs * th * tw..(zs + 1) * th * tw]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_linear_interpolation() {
        // np.percentile(np.arange(10), [1, 50, 99]) == [0.09, 4.5, 8.91]
        let mut v: Vec<f32> = (0..10).rev().map(|i| i as f32).collect();
        assert!((percentile(&mut v, 1.0) - 0.09).abs() < 1e-9);
        assert!((percentile(&mut v, 50.0) - 4.5).abs() < 1e-9);
        assert!((percentile(&mut v, 99.0) - 8.91).abs() < 1e-6);
    }

    #[test]
    fn normalisation_maps_percentiles_to_zero_and_one() {
        let mut x: Vec<f32> = (0..101).map(|i| i as f32).collect();
        let mut s = Vec::new();
        assert_eq!(
            normalize_channel(&mut x, 101, 1.0, 99.0, &mut s),
            Normalization::Percentiles
        );
        assert!((x[1] - 0.0).abs() < 1e-6 && (x[99] - 1.0).abs() < 1e-6);
        let mut flat = vec![3.0f32; 16];
        assert_eq!(
            normalize_channel(&mut flat, 4, 1.0, 99.0, &mut s),
            Normalization::Constant
        );
        assert_eq!(flat[0], 3.0);
    }

    #[test]
    fn percentiles_of_whole_numbers_from_a_histogram_equal_those_of_the_samples() {
        // u16-like samples (a pseudo-random walk, with repeats and gaps) and u8-like ones.
        let mut state = 12345u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        for (n, range) in [
            (1usize, 10u64),
            (2, 10),
            (101, 256),
            (1000, 256),
            (4099, 65536),
        ] {
            let samples: Vec<f32> = (0..n).map(|_| next(range) as f32).collect();
            let mut hist = vec![0u32; HISTOGRAM_BINS];
            samples.iter().for_each(|&v| hist[v as usize] += 1);
            for p in [0.0, 1.0, 2.5, 50.0, 50.5, 99.0, 99.9, 100.0] {
                let mut copy = samples.clone();
                let want = percentile(&mut copy, p);
                assert_eq!(percentile_of_histogram(&hist, n, p), want, "n {n}, p {p}");
            }
        }
    }

    #[test]
    fn integer_and_fractional_frames_normalise_alike() {
        // The histogram path (whole numbers) and the sorted copy (the same frame plus a
        // fraction that shifts every sample alike) give the same normalised frame.
        let frame: Vec<f32> = (0..64 * 48).map(|i| ((i * 7919) % 4001) as f32).collect();
        let mut a = frame.clone();
        let mut b: Vec<f32> = frame.iter().map(|v| v + 0.25).collect();
        let mut s = Vec::new();
        assert_eq!(
            normalize_channel(&mut a, 64, 1.0, 99.0, &mut s),
            Normalization::Percentiles
        );
        assert_eq!(
            s.len(),
            HISTOGRAM_BINS,
            "the whole-number frame took the histogram"
        );
        normalize_channel(&mut b, 64, 1.0, 99.0, &mut s);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} {y}");
        }
    }

    #[test]
    fn padding_reaches_a_multiple_of_sixteen_plus_margins() {
        assert_eq!(pad_for(256), (8, 8));
        assert_eq!(pad_for(250), (11, 11));
        assert_eq!(pad_for(251), (10, 11));
        for n in 1..100 {
            let (a, b) = pad_for(n);
            assert_eq!((n + a + b) % 16, 0);
        }
    }

    #[test]
    fn resize_to_same_size_is_identity_and_upscale_interpolates() {
        let src: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut dst = vec![0.0; 12];
        let mut s = ResizeScratch::default();
        resize_plane(&src, 3, 4, &mut dst, 3, 4, &mut s);
        assert_eq!(src, dst);
        // cv2.resize(np.array([[0, 1]], np.float32), (4, 1)) == [0, 0.25, 0.75, 1]
        let mut up = vec![0.0; 4];
        resize_plane(&[0.0, 1.0], 1, 2, &mut up, 1, 4, &mut s);
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn colour_is_averaged_for_grayscale_and_picked_for_channel_choice() {
        let rgb = [3.0, 6.0, 9.0, 0.0, 3.0, 6.0];
        let mut out = vec![0.0; 4];
        reduce_channels(&rgb, 3, [0, 0], &mut out).unwrap();
        assert_eq!(out, vec![6.0, 3.0, 0.0, 0.0]);
        reduce_channels(&rgb, 3, [2, 3], &mut out).unwrap();
        assert_eq!(out, vec![6.0, 3.0, 9.0, 6.0]);
        assert!(reduce_channels(&rgb, 3, [4, 0], &mut out).is_err());
    }
}
