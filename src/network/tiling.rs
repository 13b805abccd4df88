//! Tiles of the padded image for the network and their tapered blending
//! (`transforms.make_tiles`, `_taper_mask`, `average_tiles`, `unaugment_tiles`).

use crate::params::TILE_SIZE;

/// Width (pixels) over which a tile's weight falls off at its border, and the steepness of
/// the sigmoid (reference `_taper_mask`: 20 px margin, sig 7.5).
const TAPER_MARGIN: f64 = 20.0;
const TAPER_SIGMA: f64 = 7.5;

/// Where the tiles of one image lie.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TileGrid {
    /// Tile height and width.
    pub ly: usize,
    pub lx: usize,
    /// Top-left corners, row-major over the grid (`ny` rows of `nx`).
    pub ystarts: Vec<usize>,
    pub xstarts: Vec<usize>,
    /// Size of the (possibly zero-extended) image the tiles cover.
    pub height: usize,
    pub width: usize,
    pub augment: bool,
}

/// numpy `linspace(0, stop, n).astype(int)`, written into `v` (its capacity is reused).
fn linspace_floor_into(v: &mut Vec<usize>, stop: usize, n: usize) {
    v.clear();
    if n == 1 {
        v.push(0);
        return;
    }
    let step = stop as f64 / (n - 1) as f64;
    v.extend((0..n).map(|i| (i as f64 * step) as usize));
    v[n - 1] = stop;
}

impl TileGrid {
    /// The reference tiling of a padded `height × width` image.
    #[cfg(test)]
    pub fn new(height: usize, width: usize, augment: bool, tile_overlap: f32) -> TileGrid {
        let mut grid = TileGrid::default();
        grid.rebuild(height, width, augment, tile_overlap);
        grid
    }

    /// Recomputes the tiling for another image in place. The corner lists keep their
    /// capacity, so once they have held the most tiles a stream of frames needs, rebuilding
    /// allocates nothing (the automatic diameter runs a new scale on every frame).
    pub fn rebuild(&mut self, height: usize, width: usize, augment: bool, tile_overlap: f32) {
        let b = TILE_SIZE;
        if augment {
            // Half-overlapping tiles of full size; small images are extended with zeros.
            let (h, w) = (height.max(b), width.max(b));
            let ny = ((2.0 * h as f64 / b as f64).ceil() as usize).max(2);
            let nx = ((2.0 * w as f64 / b as f64).ceil() as usize).max(2);
            self.ly = b;
            self.lx = b;
            linspace_floor_into(&mut self.ystarts, h - b, ny);
            linspace_floor_into(&mut self.xstarts, w - b, nx);
            self.height = h;
            self.width = w;
        } else {
            let ov = tile_overlap.clamp(0.05, 0.5) as f64;
            let count = |l: usize| {
                if l <= b {
                    1
                } else {
                    ((1.0 + 2.0 * ov) * l as f64 / b as f64).ceil() as usize
                }
            };
            self.ly = height.min(b);
            self.lx = width.min(b);
            linspace_floor_into(&mut self.ystarts, height - self.ly, count(height));
            linspace_floor_into(&mut self.xstarts, width - self.lx, count(width));
            self.height = height;
            self.width = width;
        }
        self.augment = augment;
    }

    pub fn len(&self) -> usize {
        self.ystarts.len() * self.xstarts.len()
    }

    /// (row, column, y0, x0) of tile `k`.
    pub fn tile(&self, k: usize) -> (usize, usize, usize, usize) {
        let (j, i) = (k / self.xstarts.len(), k % self.xstarts.len());
        (j, i, self.ystarts[j], self.xstarts[i])
    }

    /// Flips applied to tile (j, i) under augmentation: (flip rows, flip columns).
    pub fn flips(&self, j: usize, i: usize) -> (bool, bool) {
        if !self.augment {
            return (false, false);
        }
        match (j % 2, i % 2) {
            (0, 1) => (true, false),
            (1, 0) => (false, true),
            (1, 1) => (true, true),
            _ => (false, false),
        }
    }

    /// Copies tile `k` of the `channels` planes of `img` into `out` (`C × ly × lx`, `C` ≥
    /// `channels`; the planes past `channels` are zeroed), flipped as augmentation asks. `img` (`channels × placed.height × placed.width`) lies at
    /// (`placed.y0`, `placed.x0`) of the grid's canvas, which is zero elsewhere: the
    /// reference's padding (`pad_for`) and the zero extension of images smaller than a tile
    /// under augmentation, without a padded copy of the image.
    pub fn extract(&self, k: usize, img: &[f32], placed: Region, channels: usize, out: &mut [f32]) {
        let (j, i, y0, x0) = self.tile(k);
        let (fy, fx) = self.flips(j, i);
        let (ly, lx) = (self.ly, self.lx);
        let (ph, pw) = (placed.height, placed.width);
        // Tile columns x0 .. x0 + lx against the image's columns placed.x0 .. + pw.
        let cx0 = x0.max(placed.x0);
        let cx1 = (x0 + lx).min(placed.x0 + pw);
        for c in 0..channels {
            let plane = &img[c * ph * pw..(c + 1) * ph * pw];
            for y in 0..ly {
                let dst = &mut out[c * ly * lx + y * lx..c * ly * lx + (y + 1) * lx];
                let cy = if fy { y0 + ly - 1 - y } else { y0 + y };
                if cy < placed.y0 || cy >= placed.y0 + ph || cx0 >= cx1 {
                    dst.fill(0.0);
                    continue;
                }
                let row = &plane[(cy - placed.y0) * pw..(cy - placed.y0 + 1) * pw];
                let src = &row[cx0 - placed.x0..cx1 - placed.x0];
                // Canvas columns cx0 .. cx1 land at tile columns cx0 - x0 .. cx1 - x0, or
                // mirrored under a column flip.
                let (d0, d1) = if fx {
                    (x0 + lx - cx1, x0 + lx - cx0)
                } else {
                    (cx0 - x0, cx1 - x0)
                };
                dst[..d0].fill(0.0);
                dst[d1..].fill(0.0);
                if fx {
                    for (d, s) in dst[d0..d1].iter_mut().zip(src.iter().rev()) {
                        *d = *s;
                    }
                } else {
                    dst[d0..d1].copy_from_slice(src);
                }
            }
        }
        out[channels * ly * lx..].fill(0.0);
    }
}

/// A rectangle of the grid's canvas: where the image lies in it, or the part of the blended
/// output that is kept (the image without its padding).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub y0: usize,
    pub x0: usize,
    pub height: usize,
    pub width: usize,
}

impl Region {
    /// The whole `height × width` canvas.
    #[cfg(test)]
    pub fn whole(height: usize, width: usize) -> Region {
        Region {
            y0: 0,
            x0: 0,
            height,
            width,
        }
    }
}

/// The reference taper weights of a `ly × lx` tile (a 2D sigmoid falling off over the last
/// 20 px), in f64 as the reference computes them: row `y`, column `x` is
/// `rows[y] * columns[x]` of [`taper_profiles`].
#[cfg(test)]
pub fn taper_mask(ly: usize, lx: usize) -> Vec<f64> {
    let (mut my, mut mx) = (Vec::new(), Vec::new());
    taper_profiles(ly, lx, &mut my, &mut mx);
    my.iter()
        .flat_map(|a| mx.iter().map(move |b| a * b))
        .collect()
}

/// The two factors of the taper mask of a `ly × lx` tile (reference `_taper_mask`, an outer
/// product), written into `rows` (`ly`) and `columns` (`lx`), whose capacity is reused.
fn taper_profiles(ly: usize, lx: usize, rows: &mut Vec<f64>, columns: &mut Vec<f64>) {
    let b = TILE_SIZE.max(ly).max(lx);
    let mean = (b as f64 - 1.0) / 2.0;
    let profile = |i: usize| {
        1.0 / (1.0
            + (((i as f64 - mean).abs() - (b as f64 / 2.0 - TAPER_MARGIN)) / TAPER_SIGMA).exp())
    };
    let (y0, x0) = (b / 2 - ly / 2, b / 2 - lx / 2);
    rows.clear();
    rows.extend((0..ly).map(|y| profile(y0 + y)));
    columns.clear();
    columns.extend((0..lx).map(|x| profile(x0 + x)));
}

/// Accumulates network outputs of tiles with tapered weights (reference `average_tiles`)
/// into the caller's buffer, over the kept region of the canvas only: the padding's outputs
/// are never stored, and the sums become the averages in place.
///
/// The summed weights are not stored per pixel: every tile's mask is the outer product of
/// a row and a column profile and the tiles form a full grid, so the sum at (y, x) is the
/// sum of the row profiles covering y times the sum of the column profiles covering x.
#[derive(Debug, Default, Clone)]
pub struct TileBlender {
    region: Region,
    rows_weight: Vec<f64>,
    columns_weight: Vec<f64>,
    mask_rows: Vec<f64>,
    mask_columns: Vec<f64>,
    mask_shape: (usize, usize),
}

impl TileBlender {
    /// Prepares for `channels` maps of `keep` (a region of the grid's canvas), summed in
    /// `acc` (resized to `channels × keep.height × keep.width` and zeroed).
    pub fn reset(&mut self, grid: &TileGrid, channels: usize, keep: Region, acc: &mut Vec<f32>) {
        self.region = keep;
        acc.clear();
        acc.resize(channels * keep.height * keep.width, 0.0);
        // Rebuilt in place when the tile shape changes; no allocation once the profiles
        // have held the largest tile.
        let shape = (grid.ly, grid.lx);
        if self.mask_shape != shape {
            taper_profiles(
                grid.ly,
                grid.lx,
                &mut self.mask_rows,
                &mut self.mask_columns,
            );
            self.mask_shape = shape;
        }
        self.rows_weight.clear();
        self.rows_weight.resize(grid.height, 0.0);
        for &y0 in &grid.ystarts {
            for (y, m) in self.mask_rows.iter().enumerate() {
                self.rows_weight[y0 + y] += m;
            }
        }
        self.columns_weight.clear();
        self.columns_weight.resize(grid.width, 0.0);
        for &x0 in &grid.xstarts {
            for (x, m) in self.mask_columns.iter().enumerate() {
                self.columns_weight[x0 + x] += m;
            }
        }
    }

    /// Adds tile `k`'s output (`channels × ly × lx`), undoing augmentation flips and the
    /// sign of the flow components they reversed (channel 0 is dY, channel 1 is dX), to
    /// `acc`.
    pub fn add(&self, grid: &TileGrid, k: usize, tile: &[f32], channels: usize, acc: &mut [f32]) {
        let (j, i, y0, x0) = grid.tile(k);
        let (fy, fx) = grid.flips(j, i);
        let (ly, lx) = (grid.ly, grid.lx);
        let r = self.region;
        // The tile's part inside the kept region, in tile coordinates.
        let (ty0, ty1) = (
            r.y0.max(y0) - y0,
            (r.y0 + r.height).min(y0 + ly).saturating_sub(y0),
        );
        let (tx0, tx1) = (
            r.x0.max(x0) - x0,
            (r.x0 + r.width).min(x0 + lx).saturating_sub(x0),
        );
        if ty0 >= ty1 || tx0 >= tx1 {
            return;
        }
        for c in 0..channels {
            let sign = if (c == 0 && fy) || (c == 1 && fx) {
                -1.0f32
            } else {
                1.0
            };
            for y in ty0..ty1 {
                let sy = if fy { ly - 1 - y } else { y };
                let my = self.mask_rows[y];
                let dst = c * r.height * r.width + (y0 + y - r.y0) * r.width;
                for x in tx0..tx1 {
                    let sx = if fx { lx - 1 - x } else { x };
                    let v = tile[c * ly * lx + sy * lx + sx] * sign;
                    let m = my * self.mask_columns[x];
                    let a = &mut acc[dst + x0 + x - r.x0];
                    *a = (*a as f64 + v as f64 * m) as f32;
                }
            }
        }
    }

    /// Divides the sums in `acc` by the summed weights: `acc` then holds the blended
    /// `channels × height × width` outputs of the kept region.
    pub fn finish(&self, channels: usize, acc: &mut [f32]) {
        let r = self.region;
        for c in 0..channels {
            for y in 0..r.height {
                let wy = self.rows_weight[r.y0 + y];
                let row = &mut acc[c * r.height * r.width + y * r.width..][..r.width];
                for (x, v) in row.iter_mut().enumerate() {
                    let wsum = wy * self.columns_weight[r.x0 + x];
                    *v = (*v as f64 / wsum) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_image_is_one_tile_and_large_images_overlap() {
        let g = TileGrid::new(240, 224, false, 0.1);
        assert_eq!((g.len(), g.ly, g.lx), (2, 224, 224));
        let g = TileGrid::new(64, 96, false, 0.1);
        assert_eq!((g.len(), g.ly, g.lx), (1, 64, 96));
        // 528: ceil(1.2 * 528 / 224) = 3 tiles at 0, 152, 304
        let g = TileGrid::new(528, 528, false, 0.1);
        assert_eq!(g.ystarts, vec![0, 152, 304]);
    }

    #[test]
    fn augmented_tiles_half_overlap_and_unflip_to_the_original() {
        let g = TileGrid::new(240, 240, true, 0.1);
        assert_eq!(g.ystarts, vec![0, 8, 16]);
        // A flow field that is constant per channel survives flip + un-flip with its sign.
        let (h, w) = (g.height, g.width);
        let img: Vec<f32> = (0..3 * h * w)
            .map(|i| [1.0, -2.0, 0.5][i / (h * w)])
            .collect();
        let mut bl = TileBlender::default();
        let whole = Region::whole(h, w);
        let mut out = Vec::new();
        bl.reset(&g, 3, whole, &mut out);
        let mut tile = vec![0.0; 3 * 224 * 224];
        for k in 0..g.len() {
            g.extract(k, &img, whole, 3, &mut tile);
            // what a flip-equivariant network does to flows: reverse the flipped component
            let (fy, fx) = g.flips(g.tile(k).0, g.tile(k).1);
            for v in &mut tile[..224 * 224] {
                if fy {
                    *v = -*v;
                }
            }
            for v in &mut tile[224 * 224..2 * 224 * 224] {
                if fx {
                    *v = -*v;
                }
            }
            bl.add(&g, k, &tile, 3, &mut out);
        }
        bl.finish(3, &mut out);
        for c in 0..3 {
            assert!((out[c * h * w + 17 * w + 100] - [1.0, -2.0, 0.5][c]).abs() < 1e-5);
        }
    }

    #[test]
    fn taper_is_one_inside_and_small_at_the_border() {
        let m = taper_mask(224, 224);
        assert!(m[112 * 224 + 112] > 0.99);
        assert!(m[0] < 0.1);
    }
}
