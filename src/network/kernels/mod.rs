//! Inner loops of the direct convolution ([`super::conv`]), one file per instruction set,
//! each with the scalar twin in [`scalar`] that the tests pin it against.
//!
//! Every kernel computes a block of `ocb` output channels for up to `max_spans` output
//! vectors at once (a register tile: `ocb × spans` accumulators). A vector is `lanes`
//! consecutive output pixels of one row, described by a [`Span`]. The input is the
//! zero-padded copy the driver makes: `cin` planes of `(height + 2) × pw` values, so the
//! 3×3 window of output pixel `(y, x)` starts at padded `(y, x)` and the nine taps are the
//! offsets `ky · pw + kx`. The driver pads rows so that a full vector read from any span
//! stays inside the buffer; lanes past `Span::lanes` read padding and are not stored.
//!
//! Two precisions:
//! - **f32**: weights packed `[cin][ks²][ocb]`, accumulation in f32 (FMA), bias added first.
//!   The f32 kernels also run 1×1 convolutions (`ks = 1`: one tap, an unpadded input).
//! - **Winograd f32** ([`crate::network::winograd`]): input transform, product and output
//!   transform kernels over vectors of 16 tiles, in the blocked layout of [`WINO_BLOCK`].
//! - **int8**: input u8 (post-ReLU activations over a calibrated scale, zero point 0) laid out
//!   in groups of four channels, `[cin / 4][plane][4]`, so one 32-bit lane holds one pixel's
//!   four channels; weights i8 packed `[cin / 4][9][ocb][4]`; i32 accumulation (VNNI
//!   `vpdpbusd`: four u8 × i8 products a lane an instruction), then `acc · scale[o] + bias[o]`.

pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

/// One output vector of a kernel call: where its 3×3 windows start in a padded input plane
/// (pixels), where it is written in an output plane (pixels), and how many of its lanes are
/// output pixels (the rest are past the row's end and are not stored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub input: usize,
    pub output: usize,
    pub lanes: usize,
}

/// An f32 kernel call's input and weights.
pub(crate) struct F32Block<'a> {
    /// `cin` padded planes of `plane` values, rows of `pw` values.
    pub input: &'a [f32],
    pub plane: usize,
    pub pw: usize,
    pub cin: usize,
    /// Kernel side: 3 (taps at `ky · pw + kx`, `ky, kx < 3`) or 1 (one tap at offset 0).
    pub ks: usize,
    /// This block's weights, `[cin][ks²][ocb]` (taps in row-major `ky, kx` order).
    pub weights: &'a [f32],
    /// `ocb` biases.
    pub bias: &'a [f32],
}

/// An int8 kernel call's input and weights.
pub(crate) struct I8Block<'a> {
    /// `groups` padded planes of `plane` pixels, each pixel four u8 channels, rows of `pw` pixels.
    pub input: &'a [u8],
    pub plane: usize,
    pub pw: usize,
    /// Input channels / 4, rounded up (the missing channels are zeros in input and weights).
    pub groups: usize,
    /// This block's weights, `[groups][9][ocb][4]`.
    pub weights: &'a [i8],
    /// `ocb` factors from the i32 sum to the output: input scale × weight scale of the channel.
    pub scale: &'a [f32],
    /// `ocb` biases.
    pub bias: &'a [f32],
}

/// Where a kernel call writes: `oc_valid` output planes of `out_plane` values, the first at
/// `out`; spans' `output` offsets are within a plane. When `residual` is not null, it has
/// the layout of `out` and each output is `convolution + residual` (the residual connection
/// of the network's blocks, which tract would otherwise add in a pass of its own).
#[derive(Clone, Copy)]
pub(crate) struct OutPlanes {
    pub out: *mut f32,
    pub residual: *const f32,
    pub out_plane: usize,
    pub oc_valid: usize,
}

/// An instruction set with convolution kernels (each precision has its own register tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust loops: the reference every other kernel is tested against, and the
    /// fallback on any CPU.
    Scalar,
    /// x86-64 AVX2 + FMA (256-bit, 16 registers). f32 only.
    Avx2,
    /// x86-64 AVX-512F (512-bit, 32 registers); int8 needs AVX-512 VNNI and BW too.
    Avx512,
    /// aarch64 Advanced SIMD (128-bit, 32 registers). f32 only.
    Neon,
}

/// Register tile of a kernel: output channels per call, pixels per vector, vectors per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KernelShape {
    pub ocb: usize,
    pub lanes: usize,
    pub max_spans: usize,
}

impl Isa {
    /// Every instruction set this CPU runs f32 kernels for, the scalar one first.
    pub fn available_f32() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                v.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                v.push(Isa::Neon);
            }
        }
        v
    }

    /// Every instruction set this CPU runs int8 kernels for, the scalar one first.
    pub fn available_i8() -> Vec<Isa> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// The fastest f32 kernel set of this CPU (the last of [`Isa::available_f32`]).
    pub fn best_f32() -> Isa {
        *Isa::available_f32().last().unwrap_or(&Isa::Scalar)
    }

    /// The int8 kernel set of this CPU, when it has one faster than f32: the scalar int8
    /// kernel is a test reference, not a fallback (f32 SIMD beats it).
    pub fn best_i8() -> Option<Isa> {
        Isa::available_i8()
            .last()
            .copied()
            .filter(|isa| *isa != Isa::Scalar)
    }

    pub(crate) fn f32_shape(self) -> KernelShape {
        match self {
            Isa::Scalar => scalar::F32_SHAPE,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => avx2::F32_SHAPE,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::F32_SHAPE,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => neon::F32_SHAPE,
            #[allow(unreachable_patterns)]
            _ => scalar::F32_SHAPE,
        }
    }

    pub(crate) fn i8_shape(self) -> KernelShape {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::I8_SHAPE,
            _ => scalar::I8_SHAPE,
        }
    }

    /// Runs the f32 kernel of this set on `spans` (at most `f32_shape().max_spans`).
    ///
    /// # Safety
    /// The CPU has this instruction set (it came from [`Isa::available_f32`]); `block` and
    /// `spans` follow the padded layout of the module docs for this set's `f32_shape()`
    /// (every full-vector read of every tap inside `block.input`, `block.weights` holding
    /// `cin · ks² · ocb` values); `out` is valid for writes at `o · out_plane + span.output + l`
    /// for `o < oc_valid ≤ ocb`, `l < span.lanes ≤ lanes`, and no other thread touches them;
    /// `residual`, when not null, is valid for reads at the same offsets.
    pub(crate) unsafe fn conv_f32(self, block: &F32Block, spans: &[Span], out: OutPlanes) {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => avx2::conv_f32(block, spans, out),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => avx512::conv_f32(block, spans, out),
                #[cfg(target_arch = "aarch64")]
                Isa::Neon => neon::conv_f32(block, spans, out),
                _ => scalar::conv_f32(block, spans, out),
            }
        }
    }

    /// Runs the int8 kernel of this set on `spans` (at most `i8_shape().max_spans`).
    ///
    /// # Safety
    /// As [`Isa::conv_f32`], for [`Isa::available_i8`] and the int8 layout (`block.input`
    /// holding `groups · plane · 4` bytes, `block.weights` `groups · 9 · ocb · 4` values).
    pub(crate) unsafe fn conv_i8(self, block: &I8Block, spans: &[Span], out: OutPlanes) {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => avx512::conv_i8(block, spans, out),
                _ => scalar::conv_i8(block, spans, out),
            }
        }
    }
}

/// Winograd F(2×2, 3×3) ([`crate::network::winograd`]): tiles per vector of the transforms
/// and of the product kernel, on every instruction set (16 f32 lanes of AVX-512; the scalar
/// twin loops over them).
pub(crate) const WINO_LANES: usize = 16;
/// Output channels per call of the Winograd product kernel.
pub(crate) const WINO_OCB: usize = 8;
/// Values between two (vector, channel) blocks of the Winograd buffers: 16 positions ξ × 16
/// tiles, plus a cache line so that the blocks of one position do not all fall in a few L1
/// sets (they are read 1 KiB apart by the product kernel).
pub(crate) const WINO_BLOCK: usize = 16 * WINO_LANES + WINO_LANES;

/// The tiles of one Winograd work unit: tile rows `r0 .. r0 + rows` of `tw` tiles each,
/// numbered row by row without gaps (tile `t` is column `t % tw` of row `r0 + t / tw`) and
/// cut into vectors of 16 (a vector may hold the end of one row and the start of the next).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Band {
    pub r0: usize,
    pub rows: usize,
    pub tw: usize,
}

impl Band {
    pub fn count(&self) -> usize {
        self.rows * self.tw
    }

    pub fn vectors(&self) -> usize {
        self.count().div_ceil(WINO_LANES)
    }

    /// Appends the pieces of every vector of the band, each vector's in lane order, to
    /// `pieces`, and each vector's first piece (then the end) to `starts`: vector `k`'s
    /// pieces are `pieces[starts[k] .. starts[k + 1]]`. Lanes past the band's last tile are
    /// in no piece.
    pub fn pieces(&self, pieces: &mut Vec<Piece>, starts: &mut Vec<usize>) {
        pieces.clear();
        starts.clear();
        for k in 0..self.vectors() {
            starts.push(pieces.len());
            let (mut t, end) = (k * WINO_LANES, ((k + 1) * WINO_LANES).min(self.count()));
            while t < end {
                let (r, tx) = (t / self.tw, t % self.tw);
                let len = (self.tw - tx).min(end - t);
                let j0 = t - k * WINO_LANES;
                pieces.push(Piece {
                    r: self.r0 + r,
                    j0,
                    j1: j0 + len,
                    tx,
                });
                t += len;
            }
        }
        starts.push(pieces.len());
    }
}

/// A band's tile vectors cut at tile-row ends (see [`Band::pieces`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pieces<'a> {
    pub band: Band,
    pub list: &'a [Piece],
    pub starts: &'a [usize],
}

impl<'a> Pieces<'a> {
    /// The pieces of vector `k`.
    #[inline(always)]
    pub fn of(&self, k: usize) -> &'a [Piece] {
        &self.list[self.starts[k]..self.starts[k + 1]]
    }

    fn check(&self) {
        let b = self.band;
        assert!(self.starts.len() == b.vectors() + 1);
        assert!(self.list.iter().all(|p| {
            p.j0 < p.j1
                && p.j1 <= WINO_LANES
                && p.tx + (p.j1 - p.j0) <= b.tw
                && (b.r0..b.r0 + b.rows).contains(&p.r)
                && (p.j0 == 0 || (p.tx == 0 && p.r > b.r0))
        }));
    }
}

/// Lanes `j0 .. j1` of a tile vector, holding tiles `tx .. tx + j1 - j0` of tile row `r`
/// (absolute). A piece that starts past lane 0 starts its row (`tx = 0`) and is not the
/// band's first row.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Piece {
    pub r: usize,
    pub j0: usize,
    pub j1: usize,
    pub tx: usize,
}

/// `V = Bᵀ d B` for one 4 × 4 input tile `d` (rows, then columns), with
/// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]` (Lavin & Gray 2016).
/// The SIMD kernels do the same additions in the same order.
#[inline(always)]
pub(crate) fn wino_input_tile(d: [[f32; 4]; 4]) -> [[f32; 4]; 4] {
    let mut t = [[0f32; 4]; 4];
    for j in 0..4 {
        t[0][j] = d[0][j] - d[2][j];
        t[1][j] = d[1][j] + d[2][j];
        t[2][j] = d[2][j] - d[1][j];
        t[3][j] = d[1][j] - d[3][j];
    }
    t.map(|r| [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]])
}

/// `Y = Aᵀ M A` for one tile's 4 × 4 products `M` (rows, then columns), with
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`: the 2 × 2 outputs before the bias.
#[inline(always)]
pub(crate) fn wino_output_tile(m: [[f32; 4]; 4]) -> [[f32; 2]; 2] {
    let mut s = [[0f32; 4]; 2];
    for j in 0..4 {
        s[0][j] = (m[0][j] + m[1][j]) + m[2][j];
        s[1][j] = (m[1][j] - m[2][j]) - m[3][j];
    }
    s.map(|r| [(r[0] + r[1]) + r[2], (r[1] - r[2]) - r[3]])
}

/// Where the input transform reads: one channel's zero-padded plane (rows of `pw` values,
/// at least `2 · (r0 + rows) + 2` of them, column `x + 1` holding image column `x`), and the
/// values after it (`src` runs to the end of the padded buffer, which has a vector of slack:
/// the lanes of a piece past its row read on into the next).
pub(crate) fn check_wino_input(
    src: &[f32],
    pw: usize,
    pieces: Pieces,
    dst: &[f32],
    (c, cin): (usize, usize),
) {
    pieces.check();
    let band = pieces.band;
    assert!(band.tw > 0 && band.rows > 0 && pw >= (2 * band.tw + 2).max(WINO_LANES) && c < cin);
    assert!(src.len() >= (2 * (band.r0 + band.rows) + 1) * pw + 2 * band.tw + 2 * WINO_LANES + 2);
    assert!(dst.len() >= band.vectors() * cin * WINO_BLOCK);
}

/// The bounds every `wino_gemm` kernel relies on.
pub(crate) fn check_wino_gemm(
    v: &[f32],
    (cin, cout, nvec): (usize, usize, usize),
    u: &[f32],
    m: &[f32],
) {
    assert!(cout % WINO_OCB == 0 && u.len() >= 16 * cin * cout);
    assert!(v.len() >= nvec * cin * WINO_BLOCK && m.len() >= nvec * cout * WINO_BLOCK);
}

/// The bounds every `wino_output` kernel relies on: `out` (and `residual`) are the band's
/// output rows, `2 · r0 ..`, `rows` of them (`2 · band.rows`, or one less at an odd bottom).
pub(crate) fn check_wino_output(
    m: &[f32],
    (o, cout): (usize, usize),
    pieces: Pieces,
    (out, residual): (&[f32], Option<&[f32]>),
    (rows, width): (usize, usize),
) {
    pieces.check();
    let band = pieces.band;
    assert!(o < cout && m.len() >= band.vectors() * cout * WINO_BLOCK);
    assert!(width.div_ceil(2) == band.tw && rows.div_ceil(2) == band.rows);
    assert!(out.len() >= rows * width && residual.is_none_or(|r| r.len() >= rows * width));
}

/// Asks the CPU to bring `data` into the cache (a hint: no effect on values, and nothing on
/// targets without a prefetch instruction here). The Winograd transforms read and write a
/// few rows of one plane after another, streams too short for the hardware prefetcher to
/// catch, so the driver announces the next plane while the current one is transformed.
#[inline]
pub(crate) fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a prefetch never faults and changes no value; the pointer is in `data`.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                line.as_ptr() as *const i8
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

impl Isa {
    /// Whether this set has Winograd kernels (the scalar twin always does).
    pub(crate) fn has_winograd(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Input transform of channel `c` over a band: tile `(r, tx)` is the 4 × 4 window of
    /// padded rows `2r ..` and columns `2tx ..` of `src` (see [`check_wino_input`]);
    /// `V[ξ]` of lane `j` of vector `k` goes to `dst[(k · cin + c) · WINO_BLOCK + 16ξ + j]`
    /// (zero for lanes past the band). Panics when a read or write would leave the slices.
    pub(crate) fn wino_input(
        self,
        src: &[f32],
        pw: usize,
        pieces: Pieces,
        dst: &mut [f32],
        cc: (usize, usize),
    ) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_f32`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::wino_input(src, pw, pieces, dst, cc) },
            _ => scalar::wino_input(src, pw, pieces, dst, cc),
        }
    }

    /// Products of a unit's output channels (`cout`, whole blocks of [`WINO_OCB`]): for each
    /// position `ξ`, vector `k < nvec` and lane `j`, `m[(k · cout + o) · WINO_BLOCK + 16ξ + j]
    /// = Σ_c U[ξ][c][o] · v[(k · cin + c) · WINO_BLOCK + 16ξ + j]`, with `u`
    /// `[cout / 8][16][cin][8]`. Panics when a read or write would leave the slices.
    pub(crate) fn wino_gemm(
        self,
        v: &[f32],
        dims: (usize, usize, usize),
        u: &[f32],
        m: &mut [f32],
    ) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_f32`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::wino_gemm(v, dims, u, m) },
            _ => scalar::wino_gemm(v, dims, u, m),
        }
    }

    /// Output transform of output channel `o` (of the unit's `cout`) over a band: the tile
    /// of lane `j` of vector `k` reads its products at
    /// `m[(k · cout + o) · WINO_BLOCK + 16ξ + j]` and writes output pixels `(2 (r - r0) + dy, 2tx + dx)` inside `rows × width` of
    /// `out` as `y + bias`, plus the same pixel of `residual` when there is one. Panics when
    /// a read or write would leave the slices.
    pub(crate) fn wino_output(
        self,
        m: &[f32],
        oc: (usize, usize),
        pieces: Pieces,
        bias: f32,
        planes: (&mut [f32], Option<&[f32]>),
        size: (usize, usize),
    ) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_f32`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::wino_output(m, oc, pieces, bias, planes, size) },
            _ => scalar::wino_output(m, oc, pieces, bias, planes, size),
        }
    }
}

#[cfg(test)]
mod tests;

/// The affine part of an input stage for one channel: `(x + pre) · scale + shift`.
pub(crate) type Affine = (f32, f32, f32);

/// The input stage of one row: `relu((x + pre) · scale + shift)` (no fused multiply-add, so
/// every instruction set gives the values tract's `Add`, `Mul`, `Add` and `Max` would).
#[inline(always)]
fn stage_row_body((pre, scale, shift): Affine, relu: bool, row: &[f32], dst: &mut [f32]) {
    if relu {
        for (d, x) in dst.iter_mut().zip(row) {
            *d = ((*x + pre) * scale + shift).max(0.0);
        }
    } else {
        for (d, x) in dst.iter_mut().zip(row) {
            *d = (*x + pre) * scale + shift;
        }
    }
}

/// Four rows (four channels) through the stage (`(x + pre) · scale + shift`) and a ReLU, then to u8 codes
/// `trunc(min(x · inv_scale, 255) + 0.5)` (NaN to 0), interleaved: pixel `i` is bytes
/// `4i..4i + 4` of `dst`, channel order.
#[inline(always)]
pub(crate) fn quantize_rows_body(
    rows: [&[f32]; 4],
    stage: [Affine; 4],
    inv_scale: f32,
    dst: &mut [u8],
) {
    let n = dst.len() / 4;
    let code = |x: f32, (p, s, t): Affine| -> u32 {
        // `as` saturates and sends NaN to 0; the value is ≥ 0 after the max, so + 0.5 rounds.
        ((((x + p) * s + t).max(0.0) * inv_scale).min(255.0) + 0.5) as u8 as u32
    };
    let (r0, r1, r2, r3) = (&rows[0][..n], &rows[1][..n], &rows[2][..n], &rows[3][..n]);
    for (i, d) in dst.chunks_exact_mut(4).enumerate() {
        let v = code(r0[i], stage[0])
            | code(r1[i], stage[1]) << 8
            | code(r2[i], stage[2]) << 16
            | code(r3[i], stage[3]) << 24;
        d.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn stage_row_avx512(affine: Affine, relu: bool, row: &[f32], dst: &mut [f32]) {
    stage_row_body(affine, relu, row, dst)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn stage_row_avx2(affine: Affine, relu: bool, row: &[f32], dst: &mut [f32]) {
    stage_row_body(affine, relu, row, dst)
}

/// `max` as x86's `maxps` computes it (`b` when either is NaN), so that the scalar twin and
/// the SIMD code agree on every input.
#[inline(always)]
fn max_ps(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

/// 2×2 max pooling of one output row: `dst[i]` is the largest of `r0[2i], r0[2i + 1],
/// r1[2i], r1[2i + 1]` (`r0`, `r1` at least `2 · dst.len()` long).
pub(crate) fn maxpool2_body(r0: &[f32], r1: &[f32], dst: &mut [f32]) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = max_ps(
            max_ps(r0[2 * i], r1[2 * i]),
            max_ps(r0[2 * i + 1], r1[2 * i + 1]),
        );
    }
}

/// Nearest ×2 upsampling of one row: `dst[i] = src[i / 2]` (`src` at least
/// `⌈dst.len() / 2⌉` long).
pub(crate) fn nearest2_body(src: &[f32], dst: &mut [f32]) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = src[i / 2];
    }
}

impl Isa {
    /// [`maxpool2_body`] with this instruction set.
    pub(crate) fn maxpool2(self, r0: &[f32], r1: &[f32], dst: &mut [f32]) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_f32/_i8`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::maxpool2(r0, r1, dst) },
            _ => maxpool2_body(r0, r1, dst),
        }
    }

    /// [`nearest2_body`] with this instruction set.
    pub(crate) fn nearest2(self, src: &[f32], dst: &mut [f32]) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_f32/_i8`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::nearest2(src, dst) },
            _ => nearest2_body(src, dst),
        }
    }

    /// `dst[i] = relu?((row[i] + pre) · scale + shift)`, compiled for this instruction set
    /// (the same values on every set: the body is one portable loop, the scalar one is its
    /// twin).
    pub(crate) fn stage_row(self, affine: Affine, relu: bool, row: &[f32], dst: &mut [f32]) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_f32/_i8`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { stage_row_avx512(affine, relu, row, dst) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { stage_row_avx2(affine, relu, row, dst) },
            _ => stage_row_body(affine, relu, row, dst),
        }
    }

    /// Four channels' rows to interleaved u8 codes (see the module docs), compiled for this
    /// instruction set.
    pub(crate) fn quantize_rows(
        self,
        rows: [&[f32]; 4],
        stage: [Affine; 4],
        inv_scale: f32,
        dst: &mut [u8],
    ) {
        match self {
            // SAFETY: `self` is a set this CPU has (it came from `available_i8`).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { avx512::quantize_rows(rows, stage, inv_scale, dst) },
            _ => quantize_rows_body(rows, stage, inv_scale, dst),
        }
    }
}
