//! Writing results: label images as TIFF, pictures as PNG, object tables as CSV.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cellpose::ObjectSummary;
use tiff::encoder::{TiffEncoder, colortype};

/// Largest label a 16-bit label image holds; above it the file is written with 32 bits.
pub const MAX_LABEL_16: u32 = u16::MAX as u32;

/// One frame's label image.
#[derive(Clone, Copy)]
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

fn create_file(path: &Path) -> Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// `DIR/.NAME.partial`: where a result is written before it takes its name, so that a
/// reader never sees half a file and a failed run leaves no file under the result's name.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// A label TIFF written page by page as frames are segmented, so that a long time-lapse is
/// never held in memory. Pages are 16-bit while every label fits; the first page with a
/// label above 65,535 turns the whole file to 32 bits (the pages written so far are read
/// back one at a time and rewritten), so a stack keeps one sample type. The file takes its
/// name only in [`LabelTiffWriter::finish`]; dropped before, it leaves nothing behind.
pub struct LabelTiffWriter {
    path: PathBuf,
    partial: PathBuf,
    /// Unbuffered: the encoder writes whole strips and directories, and with no buffer to
    /// flush at the end every write error surfaces where it happens.
    encoder: Option<TiffEncoder<File>>,
    wide: bool,
    pages: usize,
    narrow: Vec<u16>,
}

impl LabelTiffWriter {
    pub fn create(path: &Path) -> Result<LabelTiffWriter> {
        let partial = partial_path(path);
        let encoder = TiffEncoder::new(create_file(&partial)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(LabelTiffWriter {
            path: path.to_path_buf(),
            partial,
            encoder: Some(encoder),
            wide: false,
            pages: 0,
            narrow: Vec::new(),
        })
    }

    pub fn write_page(&mut self, page: LabelPage) -> Result<()> {
        if !self.wide && page.labels.iter().any(|&l| l > MAX_LABEL_16) {
            let path = self.path.display().to_string();
            self.widen()
                .with_context(|| format!("cannot write {path}"))?;
        }
        let err = || format!("cannot write {}", self.path.display());
        let enc = self.encoder.as_mut().expect("open until finish");
        let (w, h) = (page.width as u32, page.height as u32);
        if self.wide {
            enc.write_image::<colortype::Gray32>(w, h, page.labels)
                .with_context(err)?;
        } else {
            self.narrow.clear();
            self.narrow.extend(page.labels.iter().map(|&l| l as u16));
            enc.write_image::<colortype::Gray16>(w, h, &self.narrow)
                .with_context(err)?;
        }
        self.pages += 1;
        Ok(())
    }

    /// Rewrites the 16-bit pages written so far as 32-bit pages, one at a time.
    fn widen(&mut self) -> Result<()> {
        self.wide = true;
        drop(self.encoder.take());
        let narrow = self.partial.with_extension("narrow");
        std::fs::rename(&self.partial, &narrow)?;
        let mut enc = TiffEncoder::new(create_file(&self.partial)?)?;
        if self.pages > 0 {
            let mut dec =
                tiff::decoder::Decoder::new(std::io::BufReader::new(File::open(&narrow)?))?;
            for i in 0..self.pages {
                if i > 0 {
                    dec.next_image()?;
                }
                let (w, h) = dec.dimensions()?;
                let labels: Vec<u32> = match dec.read_image()? {
                    tiff::decoder::DecodingResult::U16(v) => v.into_iter().map(u32::from).collect(),
                    _ => anyhow::bail!("page {} of the partial label file is not 16-bit", i + 1),
                };
                enc.write_image::<colortype::Gray32>(w, h, &labels)?;
            }
        }
        std::fs::remove_file(&narrow)?;
        self.encoder = Some(enc);
        Ok(())
    }

    /// Completes the file and gives it its name (replacing a file of that name).
    pub fn finish(mut self) -> Result<PathBuf> {
        let err = || format!("cannot write {}", self.path.display());
        drop(self.encoder.take());
        std::fs::rename(&self.partial, &self.path).with_context(err)?;
        Ok(self.path.clone())
    }
}

impl Drop for LabelTiffWriter {
    fn drop(&mut self) {
        if self.encoder.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Writes the label images as one TIFF page each: 16-bit unless a label exceeds 65,535,
/// then 32-bit for every page (so a stack has one sample type).
pub fn write_label_tiff(path: &Path, pages: &[LabelPage]) -> Result<()> {
    let mut w = LabelTiffWriter::create(path)?;
    for p in pages {
        w.write_page(LabelPage { ..*p })?;
    }
    w.finish().map(|_| ())
}

/// Writes `text` to `path` (under a temporary name, renamed when complete).
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    let err = || format!("cannot write {}", path.display());
    let partial = partial_path(path);
    std::fs::write(&partial, text).with_context(err)?;
    std::fs::rename(&partial, path).with_context(err)
}

/// Writes an RGB8 picture as PNG (under a temporary name, renamed when complete).
pub fn write_rgb_png(path: &Path, width: usize, height: usize, rgb: &[u8]) -> Result<()> {
    let err = || format!("cannot write {}", path.display());
    let partial = partial_path(path);
    let mut w = create(&partial)?;
    {
        let mut enc = png::Encoder::new(&mut w, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().with_context(err)?;
        wr.write_image_data(rgb).with_context(err)?;
        wr.finish().with_context(err)?;
    }
    w.flush().with_context(err)?;
    drop(w);
    // Renamed into place when complete, as the label images.
    std::fs::rename(&partial, path).with_context(err)
}

/// Header of the object table.
pub const CSV_HEADER: &str =
    "frame,label,area,centroid_y,centroid_x,bbox_y0,bbox_x0,bbox_y1,bbox_x1,mean_intensity";

/// An object table written frame by frame: one row per object (frames numbered from 1).
/// The bounding box is inclusive at the top-left and exclusive at the bottom-right, in
/// pixels. Like [`LabelTiffWriter`], the file takes its name in [`CsvWriter::finish`].
pub struct CsvWriter {
    path: PathBuf,
    partial: PathBuf,
    w: Option<BufWriter<File>>,
}

impl CsvWriter {
    pub fn create(path: &Path) -> Result<CsvWriter> {
        let partial = partial_path(path);
        let mut w = create(&partial)?;
        writeln!(w, "{CSV_HEADER}").with_context(|| format!("cannot write {}", path.display()))?;
        Ok(CsvWriter {
            path: path.to_path_buf(),
            partial,
            w: Some(w),
        })
    }

    pub fn write_frame(&mut self, frame: usize, objects: &[ObjectSummary]) -> Result<()> {
        let err = || format!("cannot write {}", self.path.display());
        let w = self.w.as_mut().expect("open until finish");
        for o in objects {
            writeln!(
                w,
                "{},{},{},{:.3},{:.3},{},{},{},{},{:.3}",
                frame,
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
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        let err = || format!("cannot write {}", self.path.display());
        let mut w = self.w.take().expect("open until finish");
        w.flush().with_context(err)?;
        drop(w);
        std::fs::rename(&self.partial, &self.path).with_context(err)
    }
}

impl Drop for CsvWriter {
    fn drop(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
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
