//! Pictures of a result for people to look at, as the reference draws them: mask outlines
//! (`utils.masks_to_outlines`), the image as RGB (`plot.image_to_rgb`) and the flow field
//! as colour (`plot.dx_to_circ`, the GUI's flow view). Pixels are row-major RGB8.

use crate::preprocess::{Normalization, normalize_channel};

/// Percentiles the reference maps to 0 and 1 when it shows an image or a flow magnitude
/// (`normalize99`).
const DISPLAY_PERCENTILES: (f32, f32) = (1.0, 99.0);
/// Colour drawn on outline pixels (reference `show_segmentation`: pure red).
pub const OUTLINE_RGB: [u8; 3] = [255, 0, 0];

/// Marks the outline of every mask: labelled pixels with a 4-neighbour outside their mask
/// or on the image border. For masks without holes (the pipeline fills them) this is the
/// pixel set of the reference's external contours.
pub fn outlines(labels: &[u32], width: usize, out: &mut [bool]) {
    assert_eq!(
        labels.len(),
        out.len(),
        "labels and outline buffer differ in size"
    );
    if width == 0 {
        return;
    }
    let height = labels.len() / width;
    for y in 0..height {
        for x in 0..width {
            let i = y * width + x;
            let l = labels[i];
            out[i] = l != 0
                && (x == 0
                    || y == 0
                    || x + 1 == width
                    || y + 1 == height
                    || labels[i - 1] != l
                    || labels[i + 1] != l
                    || labels[i - width] != l
                    || labels[i + width] != l);
        }
    }
}

/// Scales one plane to 0..=255 between its 1st and 99th percentiles, clipped (reference
/// `image_to_rgb` per channel: a constant plane is only clipped).
fn display_plane(plane: &[f32], width: usize, scratch: &mut Vec<f32>) -> Vec<u8> {
    let mut v = plane.to_vec();
    let (lo, hi) = DISPLAY_PERCENTILES;
    normalize_channel(&mut v, width, lo, hi, scratch);
    v.iter()
        .map(|&x| (x.clamp(0.0, 1.0) * 255.0) as u8)
        .collect()
}

/// The image as RGB for display. `planes` holds the channel to segment, then optionally a
/// nucleus plane (raw intensities, `height × width` each). `channels` is the channel choice
/// the planes were made with (see [`crate::reduce_channels`]): with
/// `channels[0] == 0` or a single plane the image is gray; otherwise each plane is shown in
/// the colour it came from (1 red, 2 green, 3 blue).
pub fn image_to_rgb(planes: &[&[f32]], width: usize, channels: [usize; 2], out: &mut [u8]) {
    let npix = planes.first().map_or(0, |p| p.len());
    assert_eq!(out.len(), 3 * npix, "RGB buffer has the wrong size");
    let mut scratch = Vec::new();
    let first = display_plane(planes[0], width, &mut scratch);
    if channels[0] == 0 || planes.len() == 1 || channels[0] > 3 {
        for (px, &g) in out.chunks_exact_mut(3).zip(&first) {
            px.fill(g);
        }
        return;
    }
    out.fill(0);
    let mut put = |plane: &[u8], colour: usize| {
        for (px, &g) in out.chunks_exact_mut(3).zip(plane) {
            px[colour] = g;
        }
    };
    put(&first, channels[0] - 1);
    if (1..=3).contains(&channels[1]) && planes.len() > 1 {
        put(
            &display_plane(planes[1], width, &mut scratch),
            channels[1] - 1,
        );
    }
}

/// Paints the outline pixels of `labels` over an RGB image in [`OUTLINE_RGB`].
pub fn draw_outlines(labels: &[u32], width: usize, rgb: &mut [u8]) {
    let mut edge = vec![false; labels.len()];
    outlines(labels, width, &mut edge);
    for (px, _) in rgb.chunks_exact_mut(3).zip(&edge).filter(|(_, e)| **e) {
        px.copy_from_slice(&OUTLINE_RGB);
    }
}

/// The flow field as colour (reference `dx_to_circ`): hue from the direction, brightness
/// from the magnitude scaled between its 1st and 99th percentiles. `flows` is the dY plane
/// then the dX plane of a `width`-wide image, as in [`crate::Segmentation::flows`].
pub fn flows_to_rgb(flows: &[f32], width: usize, out: &mut [u8]) {
    let npix = flows.len() / 2;
    assert_eq!(out.len(), 3 * npix, "RGB buffer has the wrong size");
    let (dy, dx) = flows.split_at(npix);
    let mut mag: Vec<f32> = dy
        .iter()
        .zip(dx)
        .map(|(y, x)| (y * y + x * x).sqrt())
        .collect();
    let (lo, hi) = DISPLAY_PERCENTILES;
    if normalize_channel(&mut mag, width, lo, hi, &mut Vec::new()) == Normalization::Constant {
        // Reference normalize99 maps a constant magnitude to 0.
        mag.fill(0.0);
    }
    let third = 2.0 * std::f32::consts::PI / 3.0;
    for i in 0..npix {
        // Reference: mag = 255 * clip(m, 0, 1) / 2; angle = atan2(dX, dY) + pi.
        let m = 255.0 * mag[i].clamp(0.0, 1.0) / 2.0;
        let a = dx[i].atan2(dy[i]) + std::f32::consts::PI;
        for (k, c) in out[3 * i..3 * i + 3].iter_mut().enumerate() {
            *c = (m * ((a + k as f32 * third).cos() + 1.0)).clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outline_is_the_border_ring_of_a_square_mask() {
        // 5×5 image, 3×3 mask in the middle: 8 outline pixels, the centre is inside.
        let mut l = vec![0u32; 25];
        for y in 1..4 {
            for x in 1..4 {
                l[y * 5 + x] = 4;
            }
        }
        let mut o = vec![false; 25];
        outlines(&l, 5, &mut o);
        assert_eq!(o.iter().filter(|&&b| b).count(), 8);
        assert!(!o[12]);
        assert!(o[6] && o[18]);
    }

    #[test]
    fn touching_masks_both_get_outlines_on_their_shared_side() {
        let l = vec![1, 1, 2, 2, 1, 1, 2, 2];
        let mut o = vec![false; 8];
        outlines(&l, 4, &mut o);
        assert!(o.iter().all(|&b| b));
    }

    #[test]
    fn flow_colours_follow_the_reference_wheel() {
        // dY = 1, dX = 0 (pointing down) and the opposite, with one zero vector so the
        // magnitude percentiles span [0, 1].
        let flows = vec![1.0, -1.0, 0.0, 0.0, 0.0, 0.0];
        let mut rgb = vec![0u8; 9];
        flows_to_rgb(&flows, 3, &mut rgb);
        // Angle pi (down): red = m*(cos(pi)+1) = 0; green and blue = m*(cos(pi+2pi/3)+1).
        assert_eq!(rgb[0], 0);
        assert_eq!(rgb[1], rgb[2]);
        // Angle 2pi (up): red is brightest.
        assert!(rgb[3] > rgb[4] && rgb[4] == rgb[5]);
        assert_eq!(&rgb[6..9], &[0, 0, 0]);
    }

    #[test]
    fn gray_display_stretches_percentiles_to_full_range() {
        let plane: Vec<f32> = (0..101).map(|v| v as f32).collect();
        let mut rgb = vec![0u8; 303];
        image_to_rgb(&[&plane], 101, [0, 0], &mut rgb);
        assert_eq!(&rgb[..3], &[0, 0, 0]);
        assert_eq!(&rgb[300..], &[255, 255, 255]);
    }
}
