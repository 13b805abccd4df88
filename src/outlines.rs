//! Label image → object outlines, for the formats other tools read (ImageJ ROI sets, the
//! reference's outline text files): reference `utils.outlines_list`.
//!
//! Two forms of the same boundary, both of the outer boundary of each label's first
//! connected part (in raster order; Cellpose masks are one part each, holes filled):
//! - [`outline_polygons`]: a polygon through pixel *corners*, following the cracks between
//!   the label's pixels and the others, so that the polygon encloses exactly the label's
//!   pixels (an ImageJ polygon ROI filled by Fiji gives the mask back);
//! - [`outline_pixels`]: the label's boundary *pixels* in order (8-connected, Moore
//!   neighbour tracing), the form of the reference's `outlines_list` (OpenCV
//!   `findContours(RETR_EXTERNAL, CHAIN_APPROX_NONE)`).

/// One label's outline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outline {
    pub label: u32,
    /// `(x, y)` points in order around the object (polygons clockwise on screen, y down;
    /// boundary pixels counter-clockwise, as OpenCV), the first not repeated at the end.
    pub points: Vec<(u32, u32)>,
}

/// A label image with lookups that treat everything outside it as background.
struct Grid<'a> {
    labels: &'a [u32],
    width: usize,
    height: usize,
}

impl<'a> Grid<'a> {
    fn new(labels: &'a [u32], width: usize, height: usize) -> Grid<'a> {
        assert_eq!(
            labels.len(),
            width * height,
            "labels are not {width}×{height}"
        );
        Grid {
            labels,
            width,
            height,
        }
    }

    /// Whether pixel `(x, y)` is in the image and has label `l`.
    fn is(&self, l: u32, x: i64, y: i64) -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < self.width
            && (y as usize) < self.height
            && self.labels[y as usize * self.width + x as usize] == l
    }
}

/// The first pixel of every label in raster order (`None` for absent labels), indexed by
/// label.
fn first_pixels(labels: &[u32]) -> Vec<Option<usize>> {
    let max = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut first = vec![None; max + 1];
    for (i, &l) in labels.iter().enumerate() {
        if l != 0 && first[l as usize].is_none() {
            first[l as usize] = Some(i);
        }
    }
    first
}

/// Polygons through pixel corners enclosing each label (see the module docs), by label.
/// `labels` is `height × width`, row-major; corners are `(x, y)` with `0 ≤ x ≤ width`,
/// `0 ≤ y ≤ height`. Only corners where the boundary turns are kept.
pub fn outline_polygons(labels: &[u32], height: usize, width: usize) -> Vec<Outline> {
    let grid = Grid::new(labels, width, height);
    let inside = |l: u32, x: i64, y: i64| grid.is(l, x, y);
    // Directions right, down, left, up (y down); the pixels ahead of a corner (x, y) on the
    // left and on the right of each, as offsets of the pixel's top-left corner.
    const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    const AHEAD_LEFT: [(i64, i64); 4] = [(0, -1), (0, 0), (-1, 0), (-1, -1)];
    const AHEAD_RIGHT: [(i64, i64); 4] = [(0, 0), (-1, 0), (-1, -1), (0, -1)];
    let mut out = Vec::new();
    for (l, first) in first_pixels(labels).into_iter().enumerate() {
        let Some(i) = first else { continue };
        let l = l as u32;
        // The top edge of the first pixel is on the outer boundary; walk it with the label
        // on the right: turn left when the pixel ahead-left is the label's, go straight
        // when the one ahead-right is, turn right otherwise.
        let start = ((i % width) as i64, (i / width) as i64);
        let (mut c, mut d) = (start, 0usize);
        let mut points = vec![(start.0 as u32, start.1 as u32)];
        loop {
            c = (c.0 + STEP[d].0, c.1 + STEP[d].1);
            let turn = |dir: usize| {
                let (al, ar) = (AHEAD_LEFT[dir], AHEAD_RIGHT[dir]);
                if inside(l, c.0 + al.0, c.1 + al.1) {
                    (dir + 3) % 4
                } else if inside(l, c.0 + ar.0, c.1 + ar.1) {
                    dir
                } else {
                    (dir + 1) % 4
                }
            };
            let nd = turn(d);
            if c == start && nd == 0 {
                break;
            }
            if nd != d {
                points.push((c.0 as u32, c.1 as u32));
            }
            d = nd;
        }
        out.push(Outline { label: l, points });
    }
    out
}

/// The boundary pixels of each label in order (see the module docs), by label: Moore
/// neighbour tracing from the label's first pixel in raster order, listed
/// counter-clockwise on screen as OpenCV lists them.
pub fn outline_pixels(labels: &[u32], height: usize, width: usize) -> Vec<Outline> {
    let grid = Grid::new(labels, width, height);
    let inside = |l: u32, x: i64, y: i64| grid.is(l, x, y);
    // The 8 neighbours clockwise from west (y down): W, NW, N, NE, E, SE, S, SW.
    const RING: [(i64, i64); 8] = [
        (-1, 0),
        (-1, -1),
        (0, -1),
        (1, -1),
        (1, 0),
        (1, 1),
        (0, 1),
        (-1, 1),
    ];
    let mut out = Vec::new();
    for (l, first) in first_pixels(labels).into_iter().enumerate() {
        let Some(i) = first else { continue };
        let l = l as u32;
        let start = ((i % width) as i64, (i / width) as i64);
        let mut points = vec![(start.0 as u32, start.1 as u32)];
        // Came from the west (the pixel left of the first is outside).
        let (mut p, mut from) = (start, 0usize);
        let mut first_move = None;
        loop {
            // Search clockwise from the neighbour after the one we came from.
            let next = (1..=8).map(|k| (from + k) % 8).find(|&k| {
                let (dx, dy) = RING[k];
                inside(l, p.0 + dx, p.1 + dy)
            });
            let Some(k) = next else { break }; // a single pixel
            let q = (p.0 + RING[k].0, p.1 + RING[k].1);
            // Jacob's stopping rule: back at the start, leaving it the way we first did.
            if p == start && first_move == Some(k) {
                break;
            }
            if first_move.is_none() {
                first_move = Some(k);
            }
            // The backtrack for q: the neighbour of q that is p, stepped back one.
            from = (k + 4) % 8;
            p = q;
            if p == start && points.len() > 1 && first_move == Some(k) {
                break;
            }
            points.push((p.0 as u32, p.1 as u32));
        }
        if points.len() > 1 && points.last() == Some(&points[0]) {
            points.pop();
        }
        // OpenCV (and so the reference) lists an outer boundary counter-clockwise on
        // screen from the same first pixel.
        points[1..].reverse();
        out.push(Outline { label: l, points });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the pixel centre (x + ½, y + ½) is inside the polygon (even-odd rule).
    fn encloses(poly: &[(u32, u32)], x: usize, y: usize) -> bool {
        let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
        let mut inside = false;
        for i in 0..poly.len() {
            let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
            let (ax, ay, bx, by) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
            if (ay > py) != (by > py) && px < ax + (py - ay) / (by - ay) * (bx - ax) {
                inside = !inside;
            }
        }
        inside
    }

    fn shapes() -> (Vec<u32>, usize, usize) {
        // A square, an L, a plus touching the border, a single pixel, a diagonal pair.
        let (w, h) = (12, 9);
        let rows = [
            "111.222.....",
            "111.2.......",
            "111.2...44..",
            "....2.......",
            ".......5....",
            "3..........6",
            "33.......66.",
            "3.......666.",
            ".........6..",
        ];
        let mut labels = vec![0u32; w * h];
        for (y, r) in rows.iter().enumerate() {
            for (x, ch) in r.chars().enumerate() {
                labels[y * w + x] = ch.to_digit(10).unwrap_or(0);
            }
        }
        (labels, w, h)
    }

    #[test]
    fn polygons_enclose_exactly_each_labels_pixels() {
        let (labels, w, h) = shapes();
        let polys = outline_polygons(&labels, h, w);
        assert_eq!(
            polys.iter().map(|p| p.label).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        for p in &polys {
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(
                        encloses(&p.points, x, y),
                        labels[y * w + x] == p.label,
                        "label {} at ({x}, {y}): {:?}",
                        p.label,
                        p.points
                    );
                }
            }
        }
        // The square: its four corners, clockwise from the top-left.
        assert_eq!(polys[0].points, vec![(0, 0), (3, 0), (3, 3), (0, 3)]);
        assert_eq!(polys[4].points, vec![(7, 4), (8, 4), (8, 5), (7, 5)]);
    }

    #[test]
    fn boundary_pixels_go_round_each_label_once() {
        let (labels, w, h) = shapes();
        let outlines = outline_pixels(&labels, h, w);
        // The 3×3 square: its 8 border pixels, counter-clockwise from the top-left.
        assert_eq!(
            outlines[0].points,
            vec![
                (0, 0),
                (0, 1),
                (0, 2),
                (1, 2),
                (2, 2),
                (2, 1),
                (2, 0),
                (1, 0)
            ]
        );
        assert_eq!(outlines[4].points, vec![(7, 4)]);
        for o in &outlines {
            // Every point is the label's and touches the outside (or the image border).
            for &(x, y) in &o.points {
                let (x, y) = (x as usize, y as usize);
                assert_eq!(labels[y * w + x], o.label);
                let edge = x == 0 || y == 0 || x + 1 == w || y + 1 == h;
                let touches = edge
                    || [(0i64, -1i64), (1, 0), (0, 1), (-1, 0)]
                        .iter()
                        .any(|(dx, dy)| {
                            labels[(y as i64 + dy) as usize * w + (x as i64 + dx) as usize]
                                != o.label
                        });
                assert!(touches, "label {} ({x}, {y}) is interior", o.label);
            }
            // Consecutive points are 8-neighbours, and no point is repeated.
            for i in 1..o.points.len() {
                let (a, b) = (o.points[i - 1], o.points[i]);
                assert!(
                    (a.0 as i64 - b.0 as i64).abs() <= 1 && (a.1 as i64 - b.1 as i64).abs() <= 1
                );
            }
        }
        // The L of label 2: every one of its pixels is on its boundary.
        let l: usize = labels.iter().filter(|&&v| v == 2).count();
        let mut two = outlines[1].points.clone();
        two.sort();
        two.dedup();
        assert_eq!(two.len(), l);
    }
}
