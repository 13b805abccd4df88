//! Writing results: label images as TIFF, pictures as PNG, object tables as CSV.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use cellpose::ObjectSummary;
use tiff::encoder::{TiffEncoder, colortype};

/// Largest label a 16-bit label image holds; above it the file is written with 32 bits.
pub const MAX_LABEL_16: u32 = u16::MAX as u32;

/// One frame's label image.
pub struct LabelPage<'a> {
    pub width: usize,
    pub height: usize,
    pub labels: &'a [u32],
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path).with_context(|| {
        format!("cannot create {}", path.display())
    })?))
}

/// Writes the label images as one TIFF page each: 16-bit unless a label exceeds 65,535,
/// then 32-bit for every page (so a stack has one sample type).
pub fn write_label_tiff(path: &Path, pages: &[LabelPage]) -> Result<()> {
    let wide = pages
        .iter()
        .any(|p| p.labels.iter().any(|&l| l > MAX_LABEL_16));
    let err = || format!("cannot write {}", path.display());
    let mut w = create(path)?;
    {
        let mut enc = TiffEncoder::new(&mut w).with_context(err)?;
        for p in pages {
            let (pw, ph) = (p.width as u32, p.height as u32);
            if wide {
                enc.write_image::<colortype::Gray32>(pw, ph, p.labels)
                    .with_context(err)?;
            } else {
                let narrow: Vec<u16> = p.labels.iter().map(|&l| l as u16).collect();
                enc.write_image::<colortype::Gray16>(pw, ph, &narrow)
                    .with_context(err)?;
            }
        }
    }
    w.flush().with_context(err)
}

/// Writes an RGB8 picture as PNG.
pub fn write_rgb_png(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<()> {
    let err = || format!("cannot write {}", path.display());
    let mut w = create(path)?;
    {
        let mut enc = png::Encoder::new(&mut w, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().with_context(err)?;
        wr.write_image_data(rgb).with_context(err)?;
        wr.finish().with_context(err)?;
    }
    w.flush().with_context(err)
}

/// Header of the object table.
pub const CSV_HEADER: &str =
    "frame,label,area,centroid_y,centroid_x,bbox_y0,bbox_x0,bbox_y1,bbox_x1,mean_intensity";

/// Writes one row per object of every frame (frames numbered from 1). The bounding box is
/// inclusive at the top-left and exclusive at the bottom-right, in pixels.
pub fn write_csv(path: &Path, frames: &[Vec<ObjectSummary>]) -> Result<()> {
    let err = || format!("cannot write {}", path.display());
    let mut w = create(path)?;
    writeln!(w, "{CSV_HEADER}").with_context(err)?;
    for (f, objects) in frames.iter().enumerate() {
        for o in objects {
            writeln!(
                w,
                "{},{},{},{:.3},{:.3},{},{},{},{},{:.3}",
                f + 1,
                o.label,
                o.area,
                o.centroid_y,
                o.centroid_x,
                o.bbox_y0,
                o.bbox_x0,
                o.bbox_y1,
                o.bbox_x1,
                o.mean_intensity
            )
            .with_context(err)?;
        }
    }
    w.flush().with_context(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::read_labels;

    fn sample_type(path: &Path) -> tiff::ColorType {
        tiff::decoder::Decoder::new(File::open(path).unwrap())
            .unwrap()
            .colortype()
            .unwrap()
    }

    #[test]
    fn label_images_switch_to_32_bit_above_65535_objects() {
        let dir = std::env::temp_dir().join(format!("cellpose-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (w, h) = (300, 250);
        let many: Vec<u32> = (1..=(w * h) as u32).collect();
        let few: Vec<u32> = many.iter().map(|&l| l % 7).collect();
        for (name, labels, bits) in [("many.tif", &many, 32), ("few.tif", &few, 16)] {
            let p = dir.join(name);
            let page = LabelPage {
                width: w,
                height: h,
                labels,
            };
            write_label_tiff(&p, &[page]).unwrap();
            assert_eq!(sample_type(&p), tiff::ColorType::Gray(bits), "{name}");
            let back = read_labels(&p).unwrap();
            assert_eq!((back.width, back.height), (w, h));
            assert_eq!(&back.data, labels, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
