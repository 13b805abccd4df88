//! Sizing of the reusable per-frame buffers (the `*Scratch` structs of `flows`, `masks` and
//! `flows_to_masks`): each is grown once to its worst case for a frame size, so later frames
//! of that size run without allocating.

/// Grows `v`'s capacity to at least `total` elements (a no-op when it has that much), so a
/// per-frame buffer sized for the worst case never reallocates afterwards.
pub(crate) fn reserve_total<T>(v: &mut Vec<T>, total: usize) {
    v.reserve(total.saturating_sub(v.len()));
}
