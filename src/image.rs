//! Borrowed frames as acquisition software holds them: u8/u16/f32 samples, one or two
//! channels, planar or interleaved, rows separated by an arbitrary stride. Nothing is copied
//! until preprocessing converts the frame into the network's f32 planes.

use crate::error::ImageError;

/// Largest accepted side, so that every size product below fits comfortably in `usize`
/// and a corrupt header cannot make the library allocate terabytes.
pub const MAX_SIDE: usize = 1 << 16;

/// Sample type of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelType {
    U8,
    U16,
    F32,
}

impl PixelType {
    pub fn bytes(self) -> usize {
        match self {
            PixelType::U8 => 1,
            PixelType::U16 => 2,
            PixelType::F32 => 4,
        }
    }
    fn name(self) -> &'static str {
        match self {
            PixelType::U8 => "u8",
            PixelType::U16 => "u16",
            PixelType::F32 => "f32",
        }
    }
}

/// How the channels of a two-channel frame are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelLayout {
    /// Channel planes one after the other; each plane is `height` rows of `row_stride` bytes.
    Planar,
    /// Samples of one pixel side by side (`c0 c1 c0 c1 ...` along a row).
    Interleaved,
}

/// A borrowed 2D frame. Channel 0 is the channel to segment (cytoplasm or nuclei), channel 1
/// the optional nucleus channel.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    channels: usize,
    pixel: PixelType,
    layout: ChannelLayout,
    row_stride: usize,
}

impl<'a> ImageView<'a> {
    /// A frame of `height` rows of `width` pixels over raw bytes (native endianness). Sizes
    /// are given in memory order, (height, width), as everywhere in this library.
    /// `row_stride` is in bytes; for planar frames channel `c` starts at
    /// `c * height * row_stride`.
    ///
    /// # Errors
    /// [`ImageError`] for an empty side, a side over [`MAX_SIDE`], other than 1 or 2
    /// channels, a row stride shorter than a row, a buffer shorter than the frame, samples
    /// not aligned for their type, or sizes whose byte count overflows.
    pub fn new(
        data: &'a [u8],
        height: usize,
        width: usize,
        channels: usize,
        pixel: PixelType,
        layout: ChannelLayout,
        row_stride: usize,
    ) -> Result<Self, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Empty { width, height });
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(ImageError::TooLarge {
                width,
                height,
                limit: MAX_SIDE,
            });
        }
        if channels != 1 && channels != 2 {
            return Err(ImageError::Channels { found: channels });
        }
        let per_pixel = match layout {
            ChannelLayout::Planar => 1,
            ChannelLayout::Interleaved => channels,
        };
        let overflow = ImageError::Overflow { width, height };
        let row_bytes = width
            .checked_mul(per_pixel)
            .and_then(|v| v.checked_mul(pixel.bytes()))
            .ok_or(overflow.clone())?;
        if row_stride < row_bytes {
            return Err(ImageError::Stride {
                stride: row_stride,
                row_bytes,
            });
        }
        let planes = if layout == ChannelLayout::Planar {
            channels
        } else {
            1
        };
        // The last row of the last plane only needs `row_bytes`, not a full stride.
        let needed = row_stride
            .checked_mul(height.checked_mul(planes).ok_or(overflow.clone())? - 1)
            .and_then(|v| v.checked_add(row_bytes))
            .ok_or(overflow)?;
        if data.len() < needed {
            return Err(ImageError::BufferTooSmall {
                needed,
                found: data.len(),
            });
        }
        let align = pixel.bytes();
        if !(data.as_ptr() as usize).is_multiple_of(align) || !row_stride.is_multiple_of(align) {
            return Err(ImageError::Misaligned {
                pixel: pixel.name(),
            });
        }
        Ok(ImageView {
            data,
            width,
            height,
            channels,
            pixel,
            layout,
            row_stride,
        })
    }

    /// A tightly packed single-channel 8-bit frame (Y×X).
    ///
    /// # Errors
    /// As [`ImageView::new`].
    pub fn gray_u8(height: usize, width: usize, data: &'a [u8]) -> Result<Self, ImageError> {
        Self::new(
            data,
            height,
            width,
            1,
            PixelType::U8,
            ChannelLayout::Planar,
            width,
        )
    }

    /// A tightly packed single-channel 16-bit frame (Y×X).
    ///
    /// # Errors
    /// As [`ImageView::new`].
    pub fn gray_u16(height: usize, width: usize, data: &'a [u16]) -> Result<Self, ImageError> {
        Self::new(
            bytemuck::cast_slice(data),
            height,
            width,
            1,
            PixelType::U16,
            ChannelLayout::Planar,
            width.saturating_mul(2),
        )
    }

    /// A tightly packed f32 frame of `channels` planes (C×Y×X).
    ///
    /// # Errors
    /// As [`ImageView::new`].
    pub fn planar_f32(
        channels: usize,
        height: usize,
        width: usize,
        data: &'a [f32],
    ) -> Result<Self, ImageError> {
        Self::new(
            bytemuck::cast_slice(data),
            height,
            width,
            channels,
            PixelType::F32,
            ChannelLayout::Planar,
            width.saturating_mul(4),
        )
    }

    /// Bytes the frame spans from its first sample: the rows of every channel plane a
    /// stride apart, the last row only its samples (what [`new`](Self::new) checked the
    /// buffer for, so this cannot overflow).
    fn span_bytes(&self) -> usize {
        let (planes, per_pixel) = match self.layout {
            ChannelLayout::Planar => (self.channels, 1),
            ChannelLayout::Interleaved => (1, self.channels),
        };
        self.row_stride * (self.height * planes - 1) + self.width * per_pixel * self.pixel.bytes()
    }

    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    pub fn channels(&self) -> usize {
        self.channels
    }
    pub fn pixel_type(&self) -> PixelType {
        self.pixel
    }

    /// Copies channel `c` into `out` (row-major, `width*height` values) as f32.
    pub fn channel_to_f32(&self, c: usize, out: &mut [f32]) {
        assert!(c < self.channels && out.len() == self.width * self.height);
        let (plane_off, step, first) = match self.layout {
            ChannelLayout::Planar => (c * self.height * self.row_stride, 1, 0),
            ChannelLayout::Interleaved => (0, self.channels, c),
        };
        for y in 0..self.height {
            let row = &self.data[plane_off + y * self.row_stride..];
            let dst = &mut out[y * self.width..(y + 1) * self.width];
            match self.pixel {
                PixelType::U8 => {
                    for (x, d) in dst.iter_mut().enumerate() {
                        *d = row[first + x * step] as f32;
                    }
                }
                PixelType::U16 => {
                    let s: &[u16] =
                        bytemuck::cast_slice(&row[..(first + (self.width - 1) * step + 1) * 2]);
                    for (x, d) in dst.iter_mut().enumerate() {
                        *d = s[first + x * step] as f32;
                    }
                }
                PixelType::F32 => {
                    let s: &[f32] =
                        bytemuck::cast_slice(&row[..(first + (self.width - 1) * step + 1) * 4]);
                    for (x, d) in dst.iter_mut().enumerate() {
                        *d = s[first + x * step];
                    }
                }
            }
        }
    }
}

/// Voxels are indexed with u32 in the dynamics and labels.
const MAX_VOXELS: u64 = u32::MAX as u64;

/// A borrowed z-stack: `depth` frames of `height × width`, one or two channels, u8/u16/f32.
/// Each plane is an [`ImageView`] (any channel layout and row stride) and plane `z` starts
/// `z * plane_stride` bytes into the data.
#[derive(Debug, Clone, Copy)]
pub struct VolumeView<'a> {
    data: &'a [u8],
    depth: usize,
    plane_stride: usize,
    first: ImageView<'a>,
    layout: ChannelLayout,
    row_stride: usize,
}

impl<'a> VolumeView<'a> {
    /// A stack over raw bytes (native endianness). Every plane is checked as an
    /// [`ImageView::new`] frame of the given layout and row stride; planes must not overlap.
    ///
    /// # Errors
    /// [`ImageError`] as [`ImageView::new`] for a plane; and for no planes, more than
    /// [`MAX_SIDE`] planes, a plane stride shorter than one plane
    /// ([`ImageError::PlaneStride`]) or not a multiple of the sample size, a buffer shorter
    /// than the stack, or 2³² voxels or more.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        data: &'a [u8],
        depth: usize,
        height: usize,
        width: usize,
        channels: usize,
        pixel: PixelType,
        layout: ChannelLayout,
        row_stride: usize,
        plane_stride: usize,
    ) -> Result<Self, ImageError> {
        if depth == 0 || depth > MAX_SIDE {
            return Err(ImageError::Depth {
                depth,
                limit: MAX_SIDE,
            });
        }
        let first = ImageView::new(data, height, width, channels, pixel, layout, row_stride)?;
        let plane_bytes = first.span_bytes();
        if plane_stride < plane_bytes {
            return Err(ImageError::PlaneStride {
                plane_stride,
                plane_bytes,
            });
        }
        let overflow = ImageError::Overflow { width, height };
        let needed = plane_stride
            .checked_mul(depth - 1)
            .and_then(|v| v.checked_add(plane_bytes))
            .ok_or(overflow)?;
        if data.len() < needed {
            return Err(ImageError::BufferTooSmall {
                needed,
                found: data.len(),
            });
        }
        if !plane_stride.is_multiple_of(pixel.bytes()) {
            return Err(ImageError::Misaligned {
                pixel: match pixel {
                    PixelType::U8 => "u8",
                    PixelType::U16 => "u16",
                    PixelType::F32 => "f32",
                },
            });
        }
        let voxels = (depth as u64) * (height as u64) * (width as u64);
        if voxels >= MAX_VOXELS {
            return Err(ImageError::TooManyVoxels {
                voxels,
                limit: MAX_VOXELS,
            });
        }
        Ok(VolumeView {
            data,
            depth,
            plane_stride,
            first,
            layout,
            row_stride,
        })
    }

    /// A tightly packed single-channel 8-bit stack (Z×Y×X).
    ///
    /// # Errors
    /// As [`VolumeView::new`].
    pub fn gray_u8(
        depth: usize,
        height: usize,
        width: usize,
        data: &'a [u8],
    ) -> Result<Self, ImageError> {
        let plane = width.saturating_mul(height);
        Self::new(
            data,
            depth,
            height,
            width,
            1,
            PixelType::U8,
            ChannelLayout::Planar,
            width,
            plane,
        )
    }

    /// A tightly packed single-channel 16-bit stack (Z×Y×X).
    ///
    /// # Errors
    /// As [`VolumeView::new`].
    pub fn gray_u16(
        depth: usize,
        height: usize,
        width: usize,
        data: &'a [u16],
    ) -> Result<Self, ImageError> {
        let plane = width.saturating_mul(height).saturating_mul(2);
        Self::new(
            bytemuck::cast_slice(data),
            depth,
            height,
            width,
            1,
            PixelType::U16,
            ChannelLayout::Planar,
            width.saturating_mul(2),
            plane,
        )
    }

    /// A tightly packed f32 stack of `channels` planes per z (Z×C×Y×X, the order of ImageJ
    /// hyperstacks).
    ///
    /// # Errors
    /// As [`VolumeView::new`].
    pub fn planar_f32(
        depth: usize,
        channels: usize,
        height: usize,
        width: usize,
        data: &'a [f32],
    ) -> Result<Self, ImageError> {
        let plane = width
            .saturating_mul(height)
            .saturating_mul(channels)
            .saturating_mul(4);
        Self::new(
            bytemuck::cast_slice(data),
            depth,
            height,
            width,
            channels,
            PixelType::F32,
            ChannelLayout::Planar,
            width.saturating_mul(4),
            plane,
        )
    }

    pub fn depth(&self) -> usize {
        self.depth
    }
    pub fn height(&self) -> usize {
        self.first.height()
    }
    pub fn width(&self) -> usize {
        self.first.width()
    }
    pub fn channels(&self) -> usize {
        self.first.channels()
    }
    pub fn pixel_type(&self) -> PixelType {
        self.first.pixel_type()
    }
    /// `(depth, height, width, channels)`.
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (self.depth(), self.height(), self.width(), self.channels())
    }

    /// Plane `z` as a frame.
    pub fn plane(&self, z: usize) -> ImageView<'a> {
        assert!(z < self.depth);
        ImageView::new(
            &self.data[z * self.plane_stride..],
            self.height(),
            self.width(),
            self.channels(),
            self.pixel_type(),
            self.layout,
            self.row_stride,
        )
        .expect("every plane was checked in new()")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_and_planar_frames_read_the_same_channels() {
        let inter: Vec<u16> = vec![1, 10, 2, 20, 3, 30, 4, 40];
        let planar: Vec<u16> = vec![1, 2, 3, 4, 10, 20, 30, 40];
        let a = ImageView::new(
            bytemuck::cast_slice(&inter),
            2,
            2,
            2,
            PixelType::U16,
            ChannelLayout::Interleaved,
            8,
        )
        .unwrap();
        let b = ImageView::new(
            bytemuck::cast_slice(&planar),
            2,
            2,
            2,
            PixelType::U16,
            ChannelLayout::Planar,
            4,
        )
        .unwrap();
        let (mut x, mut y) = (vec![0.0; 4], vec![0.0; 4]);
        for c in 0..2 {
            a.channel_to_f32(c, &mut x);
            b.channel_to_f32(c, &mut y);
            assert_eq!(x, y);
        }
        assert_eq!(x, vec![10.0, 20.0, 30.0, 40.0]);
    }

    #[test]
    fn padded_rows_are_skipped() {
        let data: Vec<u8> = vec![1, 2, 99, 3, 4, 99];
        let v = ImageView::new(&data, 2, 2, 1, PixelType::U8, ChannelLayout::Planar, 3).unwrap();
        let mut out = vec![0.0; 4];
        v.channel_to_f32(0, &mut out);
        assert_eq!(out, vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn impossible_frames_are_rejected() {
        let d = [0u8; 16];
        assert_eq!(
            ImageView::gray_u8(4, 0, &d).unwrap_err(),
            ImageError::Empty {
                width: 0,
                height: 4
            }
        );
        assert!(matches!(
            ImageView::gray_u8(4, 5, &d),
            Err(ImageError::BufferTooSmall { .. })
        ));
        assert!(matches!(
            ImageView::new(&d, 4, 4, 3, PixelType::U8, ChannelLayout::Planar, 4),
            Err(ImageError::Channels { found: 3 })
        ));
        assert!(matches!(
            ImageView::new(&d, 2, 4, 1, PixelType::U8, ChannelLayout::Planar, 3),
            Err(ImageError::Stride { .. })
        ));
        assert!(matches!(
            ImageView::new(
                &d,
                2,
                usize::MAX / 2,
                1,
                PixelType::U8,
                ChannelLayout::Planar,
                3
            ),
            Err(ImageError::TooLarge { .. })
        ));
    }
}
