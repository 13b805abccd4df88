//! `cp_session`: segments frames with one model and one set of options into caller buffers,
//! reusing its own buffers from frame to frame.

use std::ffi::c_void;
use std::mem::{offset_of, size_of};

use cellpose::object_summaries_into;
use cellpose::{ObjectSummary, Segmentation, Segmenter, VolumeSegmenter};

use crate::frame::{self, cp_frame};
use crate::model::cp_model;
use crate::options::cp_session_options;
use crate::status::{Failure, clear_out, cp_status, guard};
use crate::versioned;

/// A segmentation session (opaque): one model, one set of options, and every buffer a frame
/// needs. Buffers are sized by the first frame of a size and reused by later frames of that
/// size. The same session also segments z-stacks (`cp_session_segment_volume`). A session is
/// used by one thread at a time (it may move between threads between calls); run one
/// session per thread to segment in parallel with one shared model.
pub struct cp_session {
    pub(crate) segmenter: Segmenter,
    pub(crate) threads: usize,
    /// The volume pipeline, made by the first volume and kept for later ones.
    pub(crate) volume: Option<VolumeSegmenter>,
    result: Segmentation,
    objects: Vec<ObjectSummary>,
    pub(crate) has_result: bool,
    pub(crate) objects_ready: bool,
    /// Set while the core runs; still set afterwards only if it panicked.
    pub(crate) poisoned: bool,
}

/// Element type of the label image written by `cp_session_segment`.
pub type cp_label_type = u32;
/// `uint32_t` labels.
pub const CP_LABELS_U32: cp_label_type = 0;
/// `uint16_t` labels; a frame with more than 65535 objects fails with `CP_ERR_LABEL_OVERFLOW`.
pub const CP_LABELS_U16: cp_label_type = 1;

/// Where `cp_session_segment` writes its results. The caller owns every buffer; each pointer
/// may be NULL when that output is not wanted. Buffers must not overlap the frame or each
/// other and must be aligned for their element type. Lengths count elements, not bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cp_output {
    /// `sizeof(cp_output)` as the caller knows it.
    pub struct_size: usize,
    /// Label image, `width * height` elements of `label_type`, row-major without padding:
    /// 0 is background, objects are 1..=n_objects.
    pub labels: *mut c_void,
    pub labels_len: usize,
    /// Network flows at the frame size: the dY plane then the dX plane (`2 * width * height`).
    pub flows: *mut f32,
    pub flows_len: usize,
    /// Cell-probability logits at the frame size (`width * height`).
    pub cell_prob: *mut f32,
    pub cell_prob_len: usize,
    /// A `cp_label_type` for `labels`.
    pub label_type: cp_label_type,
    /// Written on success: number of objects found.
    pub n_objects: u32,
    /// Written on success: object diameter (pixels) the frame was rescaled for.
    pub diameter_used: f32,
}

const OUTPUT_V1: usize = size_of::<cp_output>();
const _: () = assert!(offset_of!(cp_output, struct_size) == 0);

/// Summary of one object of the last segmented frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct cp_object {
    /// Pixels in the object.
    pub area: u64,
    /// Mean row and mean column of the object's pixels.
    pub centroid_y: f64,
    pub centroid_x: f64,
    /// The object's value in the label image.
    pub label: u32,
    /// Bounding box: first row and column inside it, last row and column + 1 (exclusive).
    pub bbox_y0: u32,
    pub bbox_x0: u32,
    pub bbox_y1: u32,
    pub bbox_x1: u32,
}

const OBJECT_V1: usize = size_of::<cp_object>();

/// Creates a session segmenting with `model` and `options` (NULL: the defaults of
/// `cp_session_options_init`). The session holds its own reference to the model, so the model
/// may be freed before the session. On success `*out` owns a new session to release with
/// `cp_session_free`; on failure `*out` is NULL.
///
/// Errors: `CP_ERR_NULL_POINTER` (`model` or `out`), `CP_ERR_STRUCT_SIZE`,
/// `CP_ERR_UNKNOWN_ENUM` (`diameter_mode`), `CP_ERR_PARAMS` (an option out of range, threads
/// not in 1..=256, or `CP_DIAMETER_AUTO` with a model without a size model).
///
/// Any thread; several threads may create sessions from one model at the same time.
///
/// # Safety
/// `model` is NULL or a live model; `options` is NULL or points to `options->struct_size`
/// readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_new(
    model: *const cp_model,
    options: *const cp_session_options,
    out: *mut *mut cp_session,
) -> cp_status {
    guard("cp_session_new", || {
        // SAFETY: `out` is NULL or writable by the caller's promise.
        unsafe { clear_out(out) }?;
        // SAFETY: a live model by the caller's promise.
        let m = unsafe { versioned::arg_ref(model, "model") }?;
        // SAFETY: forwarded from the caller.
        let (params, threads) = unsafe { cp_session_options::read(options) }?;
        let segmenter = Segmenter::new(m.model.clone(), params)?.with_threads(threads)?;
        log::debug!("session created: {threads} thread(s)");
        let session = Box::new(cp_session {
            segmenter,
            threads,
            volume: None,
            result: Segmentation::default(),
            objects: Vec::new(),
            has_result: false,
            objects_ready: false,
            poisoned: false,
        });
        // SAFETY: checked non-NULL above.
        unsafe { *out = Box::into_raw(session) };
        Ok(())
    })
}

/// Borrows a live session, refusing one poisoned by an earlier panic.
///
/// # Safety
/// `session` is NULL or a live session no other thread uses during `'a`.
pub(crate) unsafe fn live<'a>(session: *mut cp_session) -> Result<&'a mut cp_session, Failure> {
    // SAFETY: forwarded from the caller.
    let s = unsafe { versioned::arg_mut(session, "session") }?;
    if s.poisoned {
        return Err(Failure::new(
            cp_status::CP_ERR_PANIC,
            "session is unusable after an internal error; free it",
        ));
    }
    Ok(s)
}

/// Runs `core` (a call into the core library) with the session marked poisoned, and clears
/// the mark when it returns: if it panics, `guard` catches the panic and the mark stays, so
/// every later call refuses the session (`live`), whose state may be half-written.
pub(crate) fn poisoned_during<R>(poisoned: &mut bool, core: impl FnOnce() -> R) -> R {
    *poisoned = true;
    let r = core();
    *poisoned = false;
    r
}

/// The alignment `labels` needs for `label_type`, or `CP_ERR_UNKNOWN_ENUM`.
pub(crate) fn label_align(label_type: cp_label_type) -> Result<usize, Failure> {
    match label_type {
        CP_LABELS_U32 => Ok(align_of::<u32>()),
        CP_LABELS_U16 => Ok(align_of::<u16>()),
        t => Err(Failure::new(
            cp_status::CP_ERR_UNKNOWN_ENUM,
            format!("output->label_type {t} is not a cp_label_type (0 or 1)"),
        )),
    }
}

/// Writes `labels` into the caller's buffer as `label_type` elements, or fails with
/// `CP_ERR_LABEL_OVERFLOW` writing nothing when 16-bit labels cannot hold `n_objects`.
///
/// # Safety
/// `dst` is non-NULL, aligned for `label_type` (a valid one, see `label_align`), and holds
/// `labels.len()` writable elements overlapping nothing the caller still reads.
pub(crate) unsafe fn write_labels(
    dst: *mut c_void,
    label_type: cp_label_type,
    labels: &[u32],
    n_objects: u32,
) -> Result<(), Failure> {
    let n = labels.len();
    if label_type == CP_LABELS_U16 {
        if n_objects > u16::MAX as u32 {
            return Err(Failure::new(
                cp_status::CP_ERR_LABEL_OVERFLOW,
                format!("{n_objects} objects do not fit 16-bit labels; use CP_LABELS_U32"),
            ));
        }
        // SAFETY: by this function's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst as *mut u16, n) };
        dst.iter_mut().zip(labels).for_each(|(d, &l)| *d = l as u16);
    } else {
        // SAFETY: by this function's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst as *mut u32, n) };
        dst.copy_from_slice(labels);
    }
    Ok(())
}

/// Replaces the options of a session; later frames and volumes use them. On error the old
/// options stay.
///
/// Errors: `CP_ERR_NULL_POINTER` (`session` or `options`), `CP_ERR_STRUCT_SIZE`,
/// `CP_ERR_UNKNOWN_ENUM`, `CP_ERR_PARAMS`, `CP_ERR_PANIC` (poisoned session).
///
/// The thread using the session.
///
/// # Safety
/// `session` is NULL or a live session; `options` is NULL or points to
/// `options->struct_size` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_set_options(
    session: *mut cp_session,
    options: *const cp_session_options,
) -> cp_status {
    guard("cp_session_set_options", || {
        // SAFETY: forwarded from the caller.
        let s = unsafe { live(session) }?;
        if options.is_null() {
            return Err(Failure::null("options"));
        }
        // SAFETY: non-NULL with struct_size readable bytes by the caller's promise.
        let (params, threads) = unsafe { cp_session_options::read(options) }?;
        if threads != s.threads {
            // A new thread pool: a new segmenter (its buffers regrow on the next frame).
            let fresh = Segmenter::new(s.segmenter.model().clone(), params)?;
            s.segmenter = fresh.with_threads(threads)?;
            s.threads = threads;
            s.volume = None;
        } else {
            s.segmenter.set_params(params)?;
        }
        Ok(())
    })
}

/// Prepares the session for frames of `width` × `height` with `channels` channels by
/// segmenting one blank frame: the network plan for that size is optimised and the buffers of
/// the network stage are sized, so the first real frame does not pay for them. Buffers whose
/// size depends on the objects found still grow during the first real frames. Results of the
/// blank frame are discarded (`cp_session_objects` reports `CP_ERR_NO_RESULT` until the next
/// `cp_session_segment`).
///
/// Errors: as `cp_session_segment` for the frame size.
///
/// The thread using the session.
///
/// # Safety
/// `session` is NULL or a live session.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_prepare(
    session: *mut cp_session,
    width: u32,
    height: u32,
    channels: u32,
) -> cp_status {
    guard("cp_session_prepare", || {
        // SAFETY: forwarded from the caller.
        let s = unsafe { live(session) }?;
        let (w, h, c) = (width as usize, height as usize, channels as usize);
        let n = w
            .checked_mul(h)
            .and_then(|v| v.checked_mul(c))
            .filter(|&n| n <= (1 << 32))
            .ok_or_else(|| {
                Failure::new(
                    cp_status::CP_ERR_OVERFLOW,
                    format!("{width}×{height}×{channels} is too large"),
                )
            })?;
        let blank = vec![0u8; n];
        let view = cellpose::ImageView::new(
            &blank,
            h,
            w,
            c,
            cellpose::PixelType::U8,
            cellpose::ChannelLayout::Planar,
            w,
        )?;
        s.has_result = false;
        s.objects_ready = false;
        poisoned_during(&mut s.poisoned, || {
            s.segmenter.segment_into(&view, &mut s.result)
        })?;
        Ok(())
    })
}

/// Checks that an optional caller buffer of `len` elements holds `needed` and is aligned.
fn check_buffer<T>(name: &str, ptr: *const T, len: usize, needed: usize) -> Result<(), Failure> {
    if ptr.is_null() {
        return Ok(());
    }
    if len < needed {
        return Err(Failure::new(
            cp_status::CP_ERR_BUFFER_TOO_SMALL,
            format!("output->{name}_len is {len}, the frame needs {needed}"),
        ));
    }
    if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Failure::new(
            cp_status::CP_ERR_INVALID_ARGUMENT,
            format!(
                "output->{name} is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    Ok(())
}

/// Segments one frame. The frame is read in place (no copy of the pixels); the labels, and
/// the flows and cell probability when asked for, are written into the caller's buffers in
/// `*output`, with `output->n_objects` and `output->diameter_used`. The session keeps the
/// labels for `cp_session_objects`. After the first frame of a size, later frames of that size
/// reuse the session's buffers.
///
/// Errors, checked before any work: `CP_ERR_NULL_POINTER` (`session`, `frame`, `output` or
/// `frame->data`), `CP_ERR_STRUCT_SIZE`, `CP_ERR_UNKNOWN_ENUM` (pixel type, layout, label
/// type), `CP_ERR_INVALID_ARGUMENT` (zero width or height, misaligned data or buffer),
/// `CP_ERR_OVERFLOW` (sizes overflow), `CP_ERR_BUFFER_TOO_SMALL` (`data_len` or an output
/// length), `CP_ERR_IMAGE` (channels, stride, side over 65536, non-finite f32 sample). After
/// segmenting: `CP_ERR_LABEL_OVERFLOW` (16-bit labels and more than 65535 objects; nothing
/// is written to `output`, but `cp_session_objects` works), `CP_ERR_MODEL` (the network
/// failed), `CP_ERR_PANIC`. On error the output buffers are not written.
///
/// The thread using the session; other sessions (on the same model or not) may segment on
/// other threads at the same time.
///
/// # Safety
/// `session` is NULL or a live session; `frame` is NULL or points to `frame->struct_size`
/// readable bytes whose `data` points to `data_len` readable bytes; `output` is NULL or points
/// to `output->struct_size` writable bytes whose buffers are NULL or hold their `_len`
/// elements, writable and overlapping nothing else.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_segment(
    session: *mut cp_session,
    frame: *const cp_frame,
    output: *mut cp_output,
) -> cp_status {
    guard("cp_session_segment", || {
        // SAFETY: forwarded from the caller.
        let s = unsafe { live(session) }?;
        // Whatever happens below, the previous frame's results are no longer the current
        // ones: a frame refused for a bad argument must not leave them readable as if they
        // belonged to it (the header promises CP_ERR_NO_RESULT after a failed frame).
        s.has_result = false;
        s.objects_ready = false;
        let zero = cp_output {
            struct_size: 0,
            labels: std::ptr::null_mut(),
            labels_len: 0,
            flows: std::ptr::null_mut(),
            flows_len: 0,
            cell_prob: std::ptr::null_mut(),
            cell_prob_len: 0,
            label_type: CP_LABELS_U32,
            n_objects: 0,
            diameter_used: 0.0,
        };
        // SAFETY: forwarded from the caller.
        let o = unsafe { versioned::read(output, "output", OUTPUT_V1, zero) }?;
        // SAFETY: forwarded from the caller; the pixels are only read during this call.
        let view = unsafe { frame::view(frame) }?;
        // Both sides are at most 65536 (checked by the view), so these cannot overflow.
        let npix = view.width() * view.height();
        match label_align(o.label_type)? {
            2 => check_buffer("labels", o.labels as *const u16, o.labels_len, npix)?,
            _ => check_buffer("labels", o.labels as *const u32, o.labels_len, npix)?,
        }
        check_buffer("flows", o.flows, o.flows_len, 2 * npix)?;
        check_buffer("cell_prob", o.cell_prob, o.cell_prob_len, npix)?;

        poisoned_during(&mut s.poisoned, || {
            s.segmenter.segment_into(&view, &mut s.result)
        })?;
        s.has_result = true;
        let res = &s.result;
        // SAFETY (all writes below): each pointer is non-NULL, aligned and holds at least the
        // number of elements written (checked above); the caller promises the buffers are
        // writable and overlap neither the frame (no longer read) nor each other. Labels go
        // first: a 16-bit overflow fails before anything is written.
        if !o.labels.is_null() {
            unsafe { write_labels(o.labels, o.label_type, &res.labels, res.n_objects) }?;
        }
        if !o.flows.is_null() {
            let dst = unsafe { std::slice::from_raw_parts_mut(o.flows, 2 * npix) };
            dst.copy_from_slice(&res.flows);
        }
        if !o.cell_prob.is_null() {
            let dst = unsafe { std::slice::from_raw_parts_mut(o.cell_prob, npix) };
            dst.copy_from_slice(&res.cell_prob);
        }
        // SAFETY: `output` holds at least OUTPUT_V1 writable bytes (checked by
        // versioned::read), which contain both fields.
        unsafe {
            std::ptr::addr_of_mut!((*output).n_objects).write_unaligned(res.n_objects);
            std::ptr::addr_of_mut!((*output).diameter_used).write_unaligned(res.diameter_used);
        }
        Ok(())
    })
}

/// Per-object summaries of the last segmented frame, in label order. Sets `*count` to the
/// number of objects, then: when `objects` is NULL, only counts (`CP_OK`); otherwise writes
/// the summaries into `objects`, an array of `capacity` elements of `object_size` bytes each
/// (pass `sizeof(cp_object)`), or fails with `CP_ERR_BUFFER_TOO_SMALL` writing nothing when
/// `capacity < *count`. Computed on the first call after a frame, then cached.
///
/// Errors: `CP_ERR_NULL_POINTER` (`session` or `count`), `CP_ERR_STRUCT_SIZE` (`object_size`
/// too small), `CP_ERR_NO_RESULT` (no frame segmented yet, or the last one failed),
/// `CP_ERR_BUFFER_TOO_SMALL`, `CP_ERR_OVERFLOW`.
///
/// The thread using the session.
///
/// # Safety
/// `session` is NULL or a live session; `objects` is NULL or points to
/// `capacity * object_size` writable bytes; `count` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_objects(
    session: *mut cp_session,
    objects: *mut cp_object,
    capacity: usize,
    object_size: usize,
    count: *mut usize,
) -> cp_status {
    guard("cp_session_objects", || {
        // SAFETY: forwarded from the caller.
        let s = unsafe { live(session) }?;
        // SAFETY: forwarded from the caller.
        let count = unsafe { versioned::arg_mut(count, "count") }?;
        if object_size < OBJECT_V1 {
            return Err(Failure::new(
                cp_status::CP_ERR_STRUCT_SIZE,
                format!("object_size is {object_size}, expected at least {OBJECT_V1}"),
            ));
        }
        if !s.has_result {
            return Err(Failure::new(
                cp_status::CP_ERR_NO_RESULT,
                "no frame has been segmented by this session",
            ));
        }
        if !s.objects_ready {
            object_summaries_into(&s.result.labels, s.result.width, None, &mut s.objects);
            s.objects_ready = true;
        }
        let n = s.objects.len();
        *count = n;
        if objects.is_null() {
            return Ok(());
        }
        if capacity < n {
            return Err(Failure::new(
                cp_status::CP_ERR_BUFFER_TOO_SMALL,
                format!("capacity is {capacity}, the frame has {n} objects"),
            ));
        }
        if n.checked_mul(object_size)
            .is_none_or(|b| b > isize::MAX as usize)
        {
            return Err(Failure::new(
                cp_status::CP_ERR_OVERFLOW,
                format!("{n} objects of {object_size} bytes overflow"),
            ));
        }
        for (i, o) in s.objects.iter().enumerate() {
            let c = cp_object {
                area: o.area,
                centroid_y: o.centroid_y,
                centroid_x: o.centroid_x,
                label: o.label,
                bbox_y0: o.bbox_y0,
                bbox_x0: o.bbox_x0,
                bbox_y1: o.bbox_y1,
                bbox_x1: o.bbox_x1,
            };
            // SAFETY: element i lies inside the caller's capacity * object_size writable
            // bytes (i < n <= capacity, no overflow); an untyped copy of the first
            // min(object_size, size_of) bytes, so the caller's alignment does not matter.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    &c as *const cp_object as *const u8,
                    (objects as *mut u8).add(i * object_size),
                    object_size.min(OBJECT_V1),
                )
            };
        }
        Ok(())
    })
}

/// Releases a session and its buffers. NULL is accepted and does nothing. Returns `CP_OK`.
///
/// Takes ownership: `session` must not be used afterwards. The thread using the session.
///
/// # Safety
/// `session` is NULL or a live session, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cp_session_free(session: *mut cp_session) -> cp_status {
    guard("cp_session_free", || {
        if !session.is_null() {
            // SAFETY: created by Box::into_raw in cp_session_new and not freed before.
            drop(unsafe { Box::from_raw(session) });
        }
        Ok(())
    })
}
