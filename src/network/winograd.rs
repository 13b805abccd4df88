//! Winograd F(2×2, 3×3) for the f32 3×3 convolutions (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016), on the padded input [`super::conv`] makes.
//!
//! Why: the direct f32 kernel already runs at 70–85 % of the CPU's FMA peak, so the only way
//! left to a faster f32 network is fewer multiplies. F(2×2, 3×3) computes each 2 × 2 block of
//! outputs from a 4 × 4 input tile with 16 multiply-adds per channel pair instead of 36
//! (2.25× fewer); the transforms in and out are additions, paid once per input channel and
//! once per output channel. F(2×2, 3×3) keeps f32 rounding close to the direct form (its
//! transforms hold only 0, ±1 and ½), unlike the larger F(4×4, 3×3).
//!
//! Work unit: a band of tile rows × a group of output-channel blocks. For each unit the input
//! transform writes `V[ξ][c][tile]` (16 positions ξ, every input channel, the band's tiles)
//! into a thread-local buffer that stays in the L2 cache, then for each block of
//! [`WINO_OCB`] output channels the product kernel writes `M[ξ][o][tile]` and the output
//! transform turns it into output rows (plus bias and residual).

use std::cell::RefCell;

use super::kernels::{Band, Isa, Piece, Pieces, WINO_BLOCK, WINO_OCB, prefetch};

/// Tiles a work unit aims for at most: 112 is a whole number of tile rows and of 16-tile
/// vectors at every level of a 224-pixel tile (tile rows of 112, 56, 28 and 14 tiles).
const UNIT_TILES: usize = 112;
/// A unit's values of one position ξ (input channels × tiles, one cache line per channel
/// and 16 tiles) stay within this many values (32 KiB), so that they stay in L1 while the
/// product kernel runs every output-channel block over them.
const V_XI_VALUES: usize = 8192;
/// Units of work a convolution is cut into at least, by splitting the output channels when
/// there are fewer bands (each split repeats the input transform).
const MIN_UNITS: usize = 12;
/// Values of slack after the padded input: the input transform reads whole vectors, whose
/// lanes past a tile row's end read on into the next row (and past the last plane, here).
pub(crate) const INPUT_SLACK: usize = 64;

/// A 3×3 convolution's weights in the Winograd domain, packed for the product kernel.
pub(crate) struct Winograd {
    pub isa: Isa,
    cin: usize,
    cout: usize,
    /// `U = G g Gᵀ`, `[cout / 8][16][cin][8]` (output channels padded with zeros).
    u: Vec<f32>,
    /// `[cout / 8][8]`.
    bias: Vec<f32>,
}

/// Tile geometry of one image: 2 × 2 output tiles, `th × tw` of them, and the padded input
/// layout the input transform reads (`rows × pw`, zero past the image, then
/// [`INPUT_SLACK`] values).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tiles {
    pub height: usize,
    pub width: usize,
    th: usize,
    tw: usize,
    /// Padded row length: `2 · tw + 2` (at least 16).
    pub pw: usize,
    /// Padded rows: `2 · th + 2`.
    pub rows: usize,
    /// Tile rows per unit.
    band: usize,
}

impl Tiles {
    /// The tiles of a `height × width` output for a convolution of `cin` input channels.
    pub fn new(height: usize, width: usize, cin: usize) -> Tiles {
        let (th, tw) = (height.div_ceil(2), width.div_ceil(2));
        let unit_tiles = (V_XI_VALUES / cin.max(1)).clamp(16, UNIT_TILES);
        Tiles {
            height,
            width,
            th,
            tw,
            pw: (2 * tw + 2).max(16),
            rows: 2 * th + 2,
            band: (unit_tiles / tw.max(1)).clamp(1, th.max(1)),
        }
    }

    fn bands(&self) -> usize {
        self.th.div_ceil(self.band)
    }

    /// Output-channel groups each band is cut into, for `blocks` blocks.
    fn channel_groups(&self, blocks: usize) -> usize {
        MIN_UNITS.div_ceil(self.bands()).clamp(1, blocks)
    }
}

/// The buffers of the unit running on one thread (reused: no allocation per layer once the
/// thread has seen the largest).
#[derive(Default)]
struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
    pieces: Vec<Piece>,
    starts: Vec<usize>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// `len` values of `buffer` (grown as needed) starting on a 64-byte boundary, so that every
/// block of the Winograd buffers is whole cache lines (a vector across two lines costs two
/// accesses).
fn aligned(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    const LINE: usize = 64 / std::mem::size_of::<f32>();
    if buffer.len() < len + LINE {
        buffer.resize(len + LINE, 0.0);
    }
    let offset = buffer.as_ptr().align_offset(64).min(LINE);
    &mut buffer[offset..offset + len]
}

impl Winograd {
    /// Transforms `weights` (`cout × cin × 3 × 3`, OIHW) and packs them with `bias` (`cout`)
    /// for `isa`'s kernels. The transform runs in f64, so `U` is the exact value rounded once.
    pub fn new(weights: &[f32], bias: &[f32], (cin, cout): (usize, usize), isa: Isa) -> Winograd {
        assert!(isa.has_winograd());
        assert!(weights.len() == cout * cin * 9 && bias.len() == cout);
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let blocks = cout.div_ceil(WINO_OCB);
        let mut u = vec![0f32; blocks * 16 * cin * WINO_OCB];
        let mut pbias = vec![0f32; blocks * WINO_OCB];
        for o in 0..cout {
            let (blk, oo) = (o / WINO_OCB, o % WINO_OCB);
            pbias[o] = bias[o];
            for c in 0..cin {
                let g = &weights[(o * cin + c) * 9..][..9];
                for (i, gi) in G.iter().enumerate() {
                    for (j, gj) in G.iter().enumerate() {
                        let mut acc = 0f64;
                        for (ky, row) in g.chunks_exact(3).enumerate() {
                            for (kx, w) in row.iter().enumerate() {
                                acc += gi[ky] * *w as f64 * gj[kx];
                            }
                        }
                        let xi = 4 * i + j;
                        u[((blk * 16 + xi) * cin + c) * WINO_OCB + oo] = acc as f32;
                    }
                }
            }
        }
        Winograd {
            isa,
            cin,
            cout,
            u,
            bias: pbias,
        }
    }

    /// Units of work for one image of `tiles` (see [`Winograd::run_unit`]).
    pub fn units(&self, tiles: &Tiles) -> usize {
        tiles.bands() * tiles.channel_groups(self.cout.div_ceil(WINO_OCB))
    }

    /// Computes unit `unit` of one image: `padded` holds `cin` planes of `tiles.rows ×
    /// tiles.pw` values (the convolution's input, zero-padded by 1 on the top and left and
    /// by at least 1 on the bottom and right) and [`INPUT_SLACK`] values after them.
    /// `planes(o, y0, rows)` gives rows `y0 .. y0 + rows` of output channel `o` (and of the
    /// residual when there is one), which this unit alone writes.
    pub fn run_unit<'o>(
        &self,
        unit: usize,
        tiles: &Tiles,
        padded: &[f32],
        planes: &dyn Fn(usize, usize, usize) -> (&'o mut [f32], Option<&'o [f32]>),
    ) {
        let blocks = self.cout.div_ceil(WINO_OCB);
        let groups = tiles.channel_groups(blocks);
        let (band, group) = (unit / groups, unit % groups);
        let r0 = band * tiles.band;
        let band = Band {
            r0,
            rows: tiles.band.min(tiles.th - r0),
            tw: tiles.tw,
        };
        // Blocks are shared out evenly (sizes differ by one at most).
        let (b0, b1) = (group * blocks / groups, (group + 1) * blocks / groups);
        let (cin, cout, isa) = (self.cin, (b1 - b0) * WINO_OCB, self.isa);
        let nvec = band.vectors();
        let plane = tiles.rows * tiles.pw;
        debug_assert!(padded.len() >= cin * plane + INPUT_SLACK);
        BUFFERS.with_borrow_mut(|b| {
            band.pieces(&mut b.pieces, &mut b.starts);
            let pieces = Pieces {
                band,
                list: &b.pieces,
                starts: &b.starts,
            };
            let v = aligned(&mut b.v, nvec * cin * WINO_BLOCK);
            // The padded rows the band reads in one plane.
            let reads = 2 * r0 * tiles.pw..(2 * (r0 + band.rows) + 2) * tiles.pw;
            for c in 0..cin {
                if c + 1 < cin {
                    prefetch(&padded[(c + 1) * plane..][reads.clone()]);
                }
                isa.wino_input(&padded[c * plane..], tiles.pw, pieces, v, (c, cin));
            }
            let m = aligned(&mut b.m, nvec * cout * WINO_BLOCK);
            let u = &self.u[b0 * 16 * cin * WINO_OCB..b1 * 16 * cin * WINO_OCB];
            isa.wino_gemm(v, (cin, cout, nvec), u, m);
            let rows = (tiles.height - 2 * r0).min(2 * band.rows);
            let end = (b1 * WINO_OCB).min(self.cout);
            for o in b0 * WINO_OCB..end {
                if o + 1 < end {
                    let (out, residual) = planes(o + 1, 2 * r0, rows);
                    prefetch(out);
                    prefetch(residual.unwrap_or_default());
                }
                isa.wino_output(
                    m,
                    (o - b0 * WINO_OCB, cout),
                    pieces,
                    self.bias[o],
                    planes(o, 2 * r0, rows),
                    (rows, tiles.width),
                );
            }
        });
    }
}
