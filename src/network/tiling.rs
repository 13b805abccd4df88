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

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Copies tile `k` of the `channels` planes of `img` (`height × width`, already zero
    /// extended to the grid size) into `out` (`channels × ly × lx`), flipped as augmentation
    /// asks.
    pub fn extract(&self, k: usize, img: &[f32], channels: usize, out: &mut [f32]) {
        let (j, i, y0, x0) = self.tile(k);
        let (fy, fx) = self.flips(j, i);
        let (ly, lx, w, h) = (self.ly, self.lx, self.width, self.height);
        for c in 0..channels {
            for y in 0..ly {
                let sy = if fy { y0 + ly - 1 - y } else { y0 + y };
                let src = &img[c * h * w + sy * w + x0..c * h * w + sy * w + x0 + lx];
                let dst = &mut out[c * ly * lx + y * lx..c * ly * lx + (y + 1) * lx];
                if fx {
                    for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                        *d = *s;
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

/// The reference taper weights of a `ly × lx` tile (a 2D sigmoid falling off over the last
/// 20 px), in f64 as the reference computes them.
pub fn taper_mask(ly: usize, lx: usize) -> Vec<f64> {
    let mut out = Vec::new();
    taper_mask_into(ly, lx, &mut out);
    out
}

/// [`taper_mask`] written into `out`, whose capacity is reused.
fn taper_mask_into(ly: usize, lx: usize, out: &mut Vec<f64>) {
    let b = TILE_SIZE.max(ly).max(lx);
    let mean = (b as f64 - 1.0) / 2.0;
    let profile = |i: usize| {
        1.0 / (1.0
            + (((i as f64 - mean).abs() - (b as f64 / 2.0 - TAPER_MARGIN)) / TAPER_SIGMA).exp())
    };
    let (y0, x0) = (b / 2 - ly / 2, b / 2 - lx / 2);
    out.clear();
    for y in 0..ly {
        let my = profile(y0 + y);
        out.extend((0..lx).map(|x| my * profile(x0 + x)));
    }
}

/// Accumulates network outputs of tiles into a whole-image map with tapered weights.
#[derive(Debug, Default, Clone)]
pub struct TileBlender {
    acc: Vec<f32>,
    weight: Vec<f64>,
    mask: Vec<f64>,
    mask_shape: (usize, usize),
}

impl TileBlender {
    /// Prepares for `channels` maps of the grid's size.
    pub fn reset(&mut self, grid: &TileGrid, channels: usize) {
        self.acc.clear();
        self.acc.resize(channels * grid.height * grid.width, 0.0);
        self.weight.clear();
        self.weight.resize(grid.height * grid.width, 0.0);
        // Rebuilt in place when the tile shape changes (one exponential a pixel, small next
        // to a network pass per tile); no allocation once the mask has held the largest tile.
        let shape = (grid.ly, grid.lx);
        if self.mask_shape != shape {
            taper_mask_into(grid.ly, grid.lx, &mut self.mask);
            self.mask_shape = shape;
        }
    }

    /// Adds tile `k`'s output (`channels × ly × lx`), undoing augmentation flips and the
    /// sign of the flow components they reversed (channel 0 is dY, channel 1 is dX).
    pub fn add(&mut self, grid: &TileGrid, k: usize, tile: &[f32], channels: usize) {
        let (j, i, y0, x0) = grid.tile(k);
        let (fy, fx) = grid.flips(j, i);
        let (ly, lx, w, h) = (grid.ly, grid.lx, grid.width, grid.height);
        for c in 0..channels {
            let sign = if (c == 0 && fy) || (c == 1 && fx) {
                -1.0f32
            } else {
                1.0
            };
            for y in 0..ly {
                let sy = if fy { ly - 1 - y } else { y };
                for x in 0..lx {
                    let sx = if fx { lx - 1 - x } else { x };
                    let v = tile[c * ly * lx + sy * lx + sx] * sign;
                    let m = self.mask[y * lx + x];
                    let a = &mut self.acc[c * h * w + (y0 + y) * w + x0 + x];
                    *a = (*a as f64 + v as f64 * m) as f32;
                }
            }
        }
        for y in 0..ly {
            for x in 0..lx {
                self.weight[(y0 + y) * w + x0 + x] += self.mask[y * lx + x];
            }
        }
    }

    /// Normalises by the summed weights and copies the top-left `height × width` region of
    /// each channel into `out` (`channels × height × width`).
    pub fn finish(
        &self,
        grid: &TileGrid,
        channels: usize,
        height: usize,
        width: usize,
        out: &mut [f32],
    ) {
        let (gh, gw) = (grid.height, grid.width);
        for c in 0..channels {
            for y in 0..height {
                for x in 0..width {
                    let v = self.acc[c * gh * gw + y * gw + x] as f64 / self.weight[y * gw + x];
                    out[c * height * width + y * width + x] = v as f32;
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
        bl.reset(&g, 3);
        let mut tile = vec![0.0; 3 * 224 * 224];
        for k in 0..g.len() {
            g.extract(k, &img, 3, &mut tile);
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
            bl.add(&g, k, &tile, 3);
        }
        let mut out = vec![0.0; 3 * h * w];
        bl.finish(&g, 3, h, w, &mut out);
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
