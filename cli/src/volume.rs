//! `cellpose segment --do-3d`: a multi-page TIFF read as one z-stack (one page per plane),
//! segmented as a volume, its labels written as a multi-page label TIFF.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cellpose::{VolumeMode, VolumeSegmenter, VolumeView, render};

use crate::input::{AxesFrom, ImageFile, reduce};
use crate::output::{
    Done, LabelMeta, LabelPage, output_path, stem_and_dir, write_label_tiff, write_rgb_png,
};

/// Segments the z-stack in `path` and writes `STEM_cp_masks.tif` (one page per plane) and,
/// with `outlines`, one outline picture per plane.
pub fn segment_volume_file(
    path: &Path,
    out_dir: Option<&Path>,
    seg: &mut VolumeSegmenter,
    channels: [usize; 2],
    outlines: bool,
) -> Result<Done> {
    let mut file = ImageFile::open(path)?;
    file.axes = file.axes.as_z();
    let axes = file.axes;
    let mut notes: Vec<String> = file.note.iter().cloned().collect();
    match axes.from {
        AxesFrom::Assumed => notes.push(format!(
            "read as a volume of {} Z-planes (pages without axes metadata)",
            axes.slices
        )),
        AxesFrom::ImageJ | AxesFrom::Ome => notes.push(format!(
            "axes from the {} metadata: {}",
            axes.from.name(),
            axes.describe()
        )),
        AxesFrom::Single => {}
    }
    if axes.frames > 1 {
        bail!(
            "--do-3d: the file holds {} ({} metadata); segment one time point at a time \
             (a volume is the Z-planes of one time point)",
            axes.describe(),
            axes.from.name()
        );
    }
    let (stem, dir) = stem_and_dir(path, out_dir)?;
    let depth = axes.slices;
    if depth < 2 {
        bail!(
            "--do-3d needs a z-stack (several Z-planes: pages of a TIFF, or the slices of an \
             ImageJ or OME hyperstack), but the file holds {}",
            axes.describe()
        );
    }
    let frames = (0..depth)
        .map(|z| file.read_plane(z, 0))
        .collect::<Result<Vec<_>>>()?;
    let first = &frames[0];
    let (w, h, colours) = (first.width, first.height, first.colours);
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| (f.width, f.height, f.colours) != (w, h, colours))
    {
        bail!(
            "TIFF page {} is {}×{} with {} colour channel(s) but page 1 is {w}×{h} with \
             {colours}; the planes of a z-stack must all be alike",
            i + 1,
            f.width,
            f.height,
            f.colours
        );
    }

    // The network's planes of every z, Z×C×Y×X.
    let npix = w * h;
    let mut nplanes = 1;
    let mut stack = Vec::new();
    for (z, frame) in frames.iter().enumerate() {
        let (planes, n) = reduce(frame, channels).with_context(|| format!("plane {}", z + 1))?;
        if z == 0 {
            nplanes = n;
            stack.reserve_exact(depth * n * npix);
        }
        stack.extend_from_slice(&planes[..nplanes * npix]);
    }
    drop(frames);
    let view = VolumeView::planar_f32(depth, nplanes, h, w, &stack)?;
    let s = seg.segment(&view)?;

    if outlines {
        let mut rgb = vec![0u8; 3 * npix];
        for z in 0..depth {
            let at = z * nplanes * npix;
            let shown: Vec<&[f32]> = stack[at..at + nplanes * npix].chunks_exact(npix).collect();
            render::image_to_rgb(&shown, w, channels, &mut rgb);
            render::draw_outlines(&s.labels[z * npix..(z + 1) * npix], w, &mut rgb);
            let p = output_path(&dir, stem, "cp_outlines.png", Some((z, depth)));
            write_rgb_png(&p, w, h, &rgb)?;
        }
    }
    let masks = output_path(&dir, stem, "cp_masks.tif", None);
    let pages: Vec<LabelPage> = s
        .labels
        .chunks_exact(npix)
        .map(|labels| LabelPage {
            width: w,
            height: h,
            labels,
        })
        .collect();
    let meta = LabelMeta {
        slices: depth,
        frames: 1,
        physical: file.physical,
    };
    write_label_tiff(&masks, &pages, meta)?;
    let how = match s.mode {
        VolumeMode::Flows3d => format!("3D flows, anisotropy {}", seg.params().anisotropy),
        VolumeMode::Stitched { threshold } => format!("stitched at IoU {threshold}"),
        VolumeMode::Planes => "independent planes".to_string(),
    };
    Ok(Done {
        frames: depth,
        objects: s.n_objects as u64,
        masks,
        diameters: vec![s.diameter_used],
        volume: Some(how),
        dropped: Default::default(),
        notes,
    })
}
