//! Volumes: `cp_volume` (a borrowed z-stack), `cp_volume_options` (3D flows or stitching,
//! anisotropy) and `cp_session_segment_volume`, a mirror of `cellpose::VolumeSegmenter`
//! driven by a session's model and options.

use std::ffi::c_void;
use std::mem::{offset_of, size_of};

use cellpose::{
    ChannelLayout, Params, PixelType, VolumeMode, VolumeParams, VolumeSegmenter, VolumeView,
};

use crate::frame::{
    CP_LAYOUT_INTERLEAVED, CP_LAYOUT_PLANAR, CP_PIXEL_F32, CP_PIXEL_U8, CP_PIXEL_U16,
    cp_channel_layout, cp_pixel_type,
};
use crate::session::{self, CP_LABELS_U32, cp_label_type, cp_session};
use crate::status::{Failure, cp_status, guard};
use crate::versioned;

/// How `cp_session_segment_volume` segments a stack.
pub type cp_volume_mode = u32;
/// 3D flows: the network runs on every YX, ZX and ZY slice (Z rescaled by the anisotropy),
/// the flows are combined and followed in 3D (reference `do_3D=True`).
pub const CP_VOLUME_3D: cp_volume_mode = 0;
/// Every plane segmented in 2D, labels of neighbouring planes joined where their IoU reaches
/// `stitch_threshold` (reference `stitch_threshold > 0`). Faster; best for thick Z steps.
pub const CP_VOLUME_STITCH: cp_volume_mode = 1;

/// One z-stack, borrowed for the duration of a call: `depth` planes of `width` × `height`,
/// each stored as a `cp_frame` would store it (rows `row_stride` bytes apart, a second
/// channel planar or interleaved), plane `z` starting `z * plane_stride` bytes after `data`.
/// Channel 0 is the channel to segment; channel 1, when present, the nucleus channel.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cp_volume {
    /// `sizeof(cp_volume)` as the caller knows it.
    pub struct_size: usize,
    /// First byte of the first row of the first plane; aligned for the pixel type.
    pub data: *const c_void,
    /// Bytes readable at `data`: at least `plane_stride * (depth - 1)` plus one plane.
    pub data_len: usize,
    /// Bytes from the start of one row to the start of the next (>= one row; a multiple of
    /// the sample size).
    pub row_stride: usize,
    /// Bytes from the start of one plane to the start of the next (>= one plane with all its
    /// channels; a multiple of the sample size). Tightly packed:
    /// `row_stride * height * channels` (planar) or `row_stride * height` (interleaved).
    pub plane_stride: usize,
    /// Pixels per row, 1..=65536.
    pub width: u32,
    /// Rows per plane, 1..=65536.
    pub height: u32,
    /// Planes, 1..=65536; `width * height * depth` below 2^32.
    pub depth: u32,
    /// A `cp_pixel_type`.
    pub pixel_type: cp_pixel_type,
    /// 1 or 2.
    pub channels: u32,
    /// A `cp_channel_layout` (ignored for one channel).
    pub layout: cp_channel_layout,
}

const VOLUME_V1: usize = size_of::<cp_volume>();
const _: () = assert!(offset_of!(cp_volume, struct_size) == 0);

/// How to segment a volume. Fill with `cp_volume_options_init(&o, sizeof o)`, change fields,
/// pass to `cp_session_segment_volume`. The 2D parameters (diameter, thresholds, min_size,
/// threads, ...) are the session's `cp_session_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct cp_volume_options {
    /// `sizeof(cp_volume_options)` as the caller knows it; set by `cp_volume_options_init`.
    pub struct_size: usize,
    /// A `cp_volume_mode`. Default `CP_VOLUME_3D`.
    pub mode: cp_volume_mode,
    /// Z step over XY pixel size, 0.01..=100 (reference `anisotropy`); Z is rescaled by it
    /// in `CP_VOLUME_3D`. Default 1 (isotropic).
    pub anisotropy: f32,
    /// IoU at which `CP_VOLUME_STITCH` joins labels of neighbouring planes, in (0, 1];
    /// ignored in `CP_VOLUME_3D`. Default 0.25.
    pub stitch_threshold: f32,
}

const VOLUME_OPTIONS_V1: usize = size_of::<cp_volume_options>();
const _: () = assert!(offset_of!(cp_volume_options, struct_size) == 0);

impl cp_volume_options {
    fn defaults() -> cp_volume_options {
        cp_volume_options {
            struct_size: VOLUME_OPTIONS_V1,
            mode: CP_VOLUME_3D,
            anisotropy: VolumeParams::default().anisotropy,
            stitch_threshold: VolumeMode::DEFAULT_STITCH_THRESHOLD,
        }
    }

    /// The core's parameters for these options and the session's 2D `params` (checked by
    /// the core's `VolumeParams::validate`, not here).
    fn to_params(self, params: Params) -> Result<VolumeParams, Failure> {
        let mode = match self.mode {
            CP_VOLUME_3D => VolumeMode::Flows3d,
            CP_VOLUME_STITCH => VolumeMode::Stitched {
                threshold: self.stitch_threshold,
            },
            m => {
                return Err(Failure::new(
                    cp_status::CP_ERR_UNKNOWN_ENUM,
                    format!("options->mode {m} is not a cp_volume_mode (0 or 1)"),
                ));
            }
        };
        Ok(VolumeParams {
            params,
            mode,
            anisotropy: self.anisotropy,
        })
    }
}

/// Where `cp_session_segment_volume` writes its results; the caller owns the buffer.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cp_volume_output {
    /// `sizeof(cp_volume_output)` as the caller knows it.
    pub struct_size: usize,
    /// Labels, `depth * height * width` elements of `label_type`, Z×Y×X without padding
    /// (plane z starts at element `z * height * width`): 0 is background, objects are
    /// 1..=n_objects, one label per object across all its planes. Not NULL; aligned for
    /// its type; must not overlap the volume.
    pub labels: *mut c_void,
    pub labels_len: usize,
    /// A `cp_label_type` for `labels`.
    pub label_type: cp_label_type,
    /// Written on success: number of objects found in the volume.
    pub n_objects: u32,
    /// Written on success: XY object diameter (pixels) the stack was rescaled for.
    pub diameter_used: f32,
}

const VOLUME_OUTPUT_V1: usize = size_of::<cp_volume_output>();
const _: () = assert!(offset_of!(cp_volume_output, struct_size) == 0);

/// Checks the caller's volume and borrows its pixels as a [`VolumeView`].
///
/// # Safety
/// `volume` is NULL or points to `volume->struct_size` readable bytes, and `volume->data` is
/// NULL or points to `volume->data_len` readable bytes that are not written during `'a`.
unsafe fn view<'a>(volume: *const cp_volume) -> Result<VolumeView<'a>, Failure> {
    let zero = cp_volume {
        struct_size: 0,
        data: std::ptr::null(),
        data_len: 0,
        row_stride: 0,
        plane_stride: 0,
        width: 0,
        height: 0,
        depth: 0,
        pixel_type: 0,
        channels: 0,
        layout: 0,
    };
    // SAFETY: forwarded from the caller.
    let v = unsafe { versioned::read(volume, "volume", VOLUME_V1, zero) }?;
    let unknown = |field: &str, value: u32, expected: &str| {
        Failure::new(
            cp_status::CP_ERR_UNKNOWN_ENUM,
            format!("volume->{field} {value} is not a {expected}"),
        )
    };
    let pixel = match v.pixel_type {
        CP_PIXEL_U8 => PixelType::U8,
        CP_PIXEL_U16 => PixelType::U16,
        CP_PIXEL_F32 => PixelType::F32,
        t => return Err(unknown("pixel_type", t, "cp_pixel_type (0, 1 or 2)")),
    };
    let layout = match v.layout {
        CP_LAYOUT_PLANAR => ChannelLayout::Planar,
        CP_LAYOUT_INTERLEAVED => ChannelLayout::Interleaved,
        // One channel has no layout: the header says the field is ignored then.
        _ if v.channels == 1 => ChannelLayout::Planar,
        l => return Err(unknown("layout", l, "cp_channel_layout (0 or 1)")),
    };
    if v.data.is_null() {
        return Err(Failure::null("volume->data"));
    }
    if v.data_len > isize::MAX as usize {
        return Err(Failure::new(
            cp_status::CP_ERR_OVERFLOW,
            format!("volume->data_len {} exceeds PTRDIFF_MAX", v.data_len),
        ));
    }
    if v.depth == 0 || v.width == 0 || v.height == 0 {
        return Err(Failure::new(
            cp_status::CP_ERR_INVALID_ARGUMENT,
            format!(
                "volume is {}×{}×{} (depth × height × width); every side must be at least 1",
                v.depth, v.height, v.width
            ),
        ));
    }
    // SAFETY: non-NULL, `data_len` readable bytes unchanged during 'a by the caller's promise,
    // data_len <= isize::MAX.
    let data = unsafe { std::slice::from_raw_parts(v.data as *const u8, v.data_len) };
    Ok(VolumeView::new(
        data,
        v.depth as usize,
        v.height as usize,
        v.width as usize,
        v.channels as usize,
        pixel,
        layout,
        v.row_stride,
        v.plane_stride,
    )?)
}

/// Fills `*options` with the defaults (`CP_VOLUME_3D`, anisotropy 1, stitch threshold 0.25)
/// and sets `options->struct_size = struct_size`. Pass `sizeof(cp_volume_options)` as
/// `struct_size`. No more than `struct_size` bytes are written.
///
/// Errors: `CP_ERR_NULL_POINTER`, `CP_ERR_STRUCT_SIZE` (`struct_size` smaller than the first
/// version of the struct).
///
/// Any thread.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_volume_options_init(
    options: *mut cp_volume_options,
    struct_size: usize,
) -> cp_status {
    guard("cp_volume_options_init", || {
        if options.is_null() {
            return Err(Failure::null("options"));
        }
        if struct_size < VOLUME_OPTIONS_V1 {
            return Err(Failure::new(
                cp_status::CP_ERR_STRUCT_SIZE,
                format!("struct_size is {struct_size}, expected at least {VOLUME_OPTIONS_V1}"),
            ));
        }
        // SAFETY: non-NULL with struct_size writable bytes, of which the first usize is
        // written first so that `versioned::write` sees the caller's size.
        unsafe {
            (options as *mut usize).write_unaligned(struct_size);
            versioned::write(
                options,
                "options",
                VOLUME_OPTIONS_V1,
                &cp_volume_options::defaults(),
            )
        }
    })
}

/// Segments one z-stack with the session's model and options (`cp_session_options`: the
/// diameter mode and diameter, which are XY pixels, thresholds, `min_size`, which counts
/// voxels, threads ...) and `options` (NULL: the defaults of `cp_volume_options_init`). The
/// stack is read in place; the labels are written into `output->labels`, with
/// `output->n_objects` and `output->diameter_used`. `CP_DIAMETER_AUTO` estimates the
/// diameter on the middle plane. The session keeps buffers for later volumes; after a
/// volume, `cp_session_objects` reports `CP_ERR_NO_RESULT` until the next 2D frame. Labels
/// do not depend on the thread count.
///
/// Time and memory grow with the voxels: the 3D mode runs the network on every slice of
/// three orientations and holds about 16 bytes per voxel (at the network's scale) while it
/// runs; `CP_VOLUME_STITCH` costs about one 2D frame per plane.
///
/// Errors, checked before any work: `CP_ERR_NULL_POINTER` (`session`, `volume`, `output`,
/// `volume->data` or `output->labels`), `CP_ERR_STRUCT_SIZE`, `CP_ERR_UNKNOWN_ENUM` (pixel
/// type, layout, mode, label type), `CP_ERR_INVALID_ARGUMENT` (a zero side, misaligned data,
/// stride or labels), `CP_ERR_OVERFLOW` (strides × sizes overflow, `data_len` over
/// PTRDIFF_MAX), `CP_ERR_BUFFER_TOO_SMALL` (`data_len` or `labels_len`), `CP_ERR_IMAGE`
/// (channels, a row or plane stride shorter than a row or plane, a side over 65536, 2^32
/// voxels or more, a non-finite f32 sample), `CP_ERR_PARAMS` (anisotropy outside
/// 0.01..=100, stitch threshold outside (0, 1] in `CP_VOLUME_STITCH`). After segmenting:
/// `CP_ERR_LABEL_OVERFLOW` (16-bit labels and more than 65535 objects; nothing written),
/// `CP_ERR_MODEL`, `CP_ERR_PANIC`. On error `*output` and its buffer are not written.
///
/// The thread using the session.
///
/// # Safety
/// `session` is NULL or a live session; `volume` is NULL or points to `volume->struct_size`
/// readable bytes whose `data` points to `data_len` readable bytes; `options` is NULL or
/// points to `options->struct_size` readable bytes; `output` is NULL or points to
/// `output->struct_size` writable bytes whose `labels` is NULL or holds `labels_len`
/// writable elements overlapping nothing else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_segment_volume(
    session: *mut cp_session,
    volume: *const cp_volume,
    options: *const cp_volume_options,
    output: *mut cp_volume_output,
) -> cp_status {
    guard("cp_session_segment_volume", || {
        // SAFETY: forwarded from the caller.
        let s = unsafe { session::live(session) }?;
        // A volume call, refused or not, ends the availability of the last 2D frame's
        // objects (as the header says of volumes).
        s.has_result = false;
        s.objects_ready = false;
        let zero = cp_volume_output {
            struct_size: 0,
            labels: std::ptr::null_mut(),
            labels_len: 0,
            label_type: CP_LABELS_U32,
            n_objects: 0,
            diameter_used: 0.0,
        };
        // SAFETY: forwarded from the caller.
        let o = unsafe { versioned::read(output, "output", VOLUME_OUTPUT_V1, zero) }?;
        let opts = if options.is_null() {
            cp_volume_options::defaults()
        } else {
            // SAFETY: non-NULL with struct_size readable bytes by the caller's promise.
            unsafe {
                versioned::read(
                    options,
                    "options",
                    VOLUME_OPTIONS_V1,
                    cp_volume_options::defaults(),
                )
            }?
        };
        let params = opts.to_params(s.segmenter.params().clone())?;
        // SAFETY: forwarded from the caller; the pixels are only read during this call.
        let view = unsafe { view(volume) }?;
        // Below 2^32 (checked by the view), so this cannot overflow.
        let n = view.depth() * view.height() * view.width();
        let align = session::label_align(o.label_type)?;
        if o.labels.is_null() {
            return Err(Failure::null("output->labels"));
        }
        if o.labels_len < n {
            return Err(Failure::new(
                cp_status::CP_ERR_BUFFER_TOO_SMALL,
                format!(
                    "output->labels_len is {}, the volume needs {n}",
                    o.labels_len
                ),
            ));
        }
        if !(o.labels as usize).is_multiple_of(align) {
            return Err(Failure::new(
                cp_status::CP_ERR_INVALID_ARGUMENT,
                format!("output->labels is not aligned to {align} bytes"),
            ));
        }
        params.validate().map_err(cellpose::Error::from)?;
        let seg = match &mut s.volume {
            Some(seg) => {
                seg.set_params(params)?;
                seg
            }
            slot @ None => {
                let model = s.segmenter.model().clone();
                slot.insert(VolumeSegmenter::new(model, params)?.with_threads(s.threads)?)
            }
        };

        s.has_result = false;
        s.objects_ready = false;
        let res = session::poisoned_during(&mut s.poisoned, || seg.segment(&view))?;
        // SAFETY: `labels` is non-NULL, aligned for its (valid) type and holds at least n
        // elements (checked above); the caller promises they are writable and overlap
        // neither the volume (no longer read) nor anything else.
        unsafe { session::write_labels(o.labels, o.label_type, &res.labels, res.n_objects) }?;
        // SAFETY: `output` holds at least VOLUME_OUTPUT_V1 writable bytes (checked by
        // versioned::read), which contain both fields.
        unsafe {
            std::ptr::addr_of_mut!((*output).n_objects).write_unaligned(res.n_objects);
            std::ptr::addr_of_mut!((*output).diameter_used).write_unaligned(res.diameter_used);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_volume_options_are_3d_isotropic() {
        let o = cp_volume_options::defaults();
        let p = o.to_params(Params::default()).unwrap();
        assert_eq!((p.mode, p.anisotropy), (VolumeMode::Flows3d, 1.0));
    }

    #[test]
    fn stitching_needs_a_threshold_above_zero_and_modes_are_checked() {
        let mut o = cp_volume_options {
            mode: CP_VOLUME_STITCH,
            ..cp_volume_options::defaults()
        };
        let p = o.to_params(Params::default()).unwrap();
        assert_eq!(p.mode, VolumeMode::Stitched { threshold: 0.25 });
        assert!(p.validate().is_ok());
        for bad in [0.0, -0.5, 1.5, f32::NAN] {
            o.stitch_threshold = bad;
            let p = o.to_params(Params::default()).unwrap();
            let e = cellpose::Error::from(p.validate().unwrap_err());
            assert_eq!(Failure::from(e).status, cp_status::CP_ERR_PARAMS, "{bad}");
        }
        o.mode = 2;
        assert_eq!(
            o.to_params(Params::default()).unwrap_err().status,
            cp_status::CP_ERR_UNKNOWN_ENUM
        );
    }
}
