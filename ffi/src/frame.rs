//! `cp_frame`: a frame as acquisition software holds it, borrowed without a copy.

use std::ffi::c_void;
use std::mem::offset_of;

use cellpose::{ChannelLayout, ImageView, PixelType};

use crate::status::{Failure, cp_status};
use crate::versioned;

/// Sample type of a frame (native endianness).
pub type cp_pixel_type = u32;
/// `uint8_t` samples.
pub const CP_PIXEL_U8: cp_pixel_type = 0;
/// `uint16_t` samples (row_stride and data aligned to 2 bytes).
pub const CP_PIXEL_U16: cp_pixel_type = 1;
/// `float` samples, finite (row_stride and data aligned to 4 bytes).
pub const CP_PIXEL_F32: cp_pixel_type = 2;

/// How the two channels of a two-channel frame are stored.
pub type cp_channel_layout = u32;
/// Channel planes one after the other; channel `c` starts at byte `c * height * row_stride`.
pub const CP_LAYOUT_PLANAR: cp_channel_layout = 0;
/// Samples of one pixel side by side along a row (`c0 c1 c0 c1 ...`).
pub const CP_LAYOUT_INTERLEAVED: cp_channel_layout = 1;

/// One frame, borrowed for the duration of a call: the library reads the pixels in place and
/// keeps no pointer to them afterwards. Channel 0 is the channel to segment; channel 1, when
/// present, the optional nucleus channel.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cp_frame {
    /// `sizeof(cp_frame)` as the caller knows it.
    pub struct_size: usize,
    /// First byte of the first row; aligned for the pixel type.
    pub data: *const c_void,
    /// Bytes readable at `data`: at least `row_stride * (height * planes - 1)` plus one row.
    pub data_len: usize,
    /// Bytes from the start of one row to the start of the next (>= one row; a multiple of
    /// the sample size).
    pub row_stride: usize,
    /// Pixels per row, 1..=65536.
    pub width: u32,
    /// Rows, 1..=65536.
    pub height: u32,
    /// A `cp_pixel_type`.
    pub pixel_type: cp_pixel_type,
    /// 1 or 2.
    pub channels: u32,
    /// A `cp_channel_layout` (ignored for one channel).
    pub layout: cp_channel_layout,
}

pub(crate) const FRAME_V1: usize = std::mem::size_of::<cp_frame>();
const _: () = assert!(offset_of!(cp_frame, struct_size) == 0);

fn unknown(field: &str, value: u32, expected: &str) -> Failure {
    Failure::new(
        cp_status::CP_ERR_UNKNOWN_ENUM,
        format!("frame->{field} {value} is not a {expected}"),
    )
}

/// Checks the caller's frame and borrows its pixels as an [`ImageView`].
///
/// # Safety
/// `frame` is NULL or points to `frame->struct_size` readable bytes, and `frame->data` is NULL
/// or points to `frame->data_len` readable bytes that are not written during `'a`.
pub(crate) unsafe fn view<'a>(frame: *const cp_frame) -> Result<ImageView<'a>, Failure> {
    let zero = cp_frame {
        struct_size: 0,
        data: std::ptr::null(),
        data_len: 0,
        row_stride: 0,
        width: 0,
        height: 0,
        pixel_type: 0,
        channels: 0,
        layout: 0,
    };
    // SAFETY: forwarded from the caller.
    let f = unsafe { versioned::read(frame, "frame", FRAME_V1, zero) }?;
    let pixel = match f.pixel_type {
        CP_PIXEL_U8 => PixelType::U8,
        CP_PIXEL_U16 => PixelType::U16,
        CP_PIXEL_F32 => PixelType::F32,
        v => return Err(unknown("pixel_type", v, "cp_pixel_type (0, 1 or 2)")),
    };
    let layout = match f.layout {
        CP_LAYOUT_PLANAR => ChannelLayout::Planar,
        CP_LAYOUT_INTERLEAVED => ChannelLayout::Interleaved,
        // One channel has no layout: the header says the field is ignored then.
        _ if f.channels == 1 => ChannelLayout::Planar,
        v => return Err(unknown("layout", v, "cp_channel_layout (0 or 1)")),
    };
    if f.data.is_null() {
        return Err(Failure::null("frame->data"));
    }
    if f.data_len > isize::MAX as usize {
        return Err(Failure::new(
            cp_status::CP_ERR_OVERFLOW,
            format!("frame->data_len {} exceeds PTRDIFF_MAX", f.data_len),
        ));
    }
    // SAFETY: non-NULL, `data_len` readable bytes unchanged during 'a by the caller's promise,
    // data_len <= isize::MAX.
    let data = unsafe { std::slice::from_raw_parts(f.data as *const u8, f.data_len) };
    Ok(ImageView::new(
        data,
        f.height as usize,
        f.width as usize,
        f.channels as usize,
        pixel,
        layout,
        f.row_stride,
    )?)
}
