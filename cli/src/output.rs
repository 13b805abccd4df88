//! Writing results: label images as TIFF, pictures as PNG, object tables as CSV.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cellpose::DroppedMasks;
use cellpose::ObjectSummary;
use tiff::encoder::{Rational, TiffEncoder, colortype};
use tiff::tags::{ResolutionUnit, Tag};

use crate::input::PhysicalSize;

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
    meta: LabelMeta,
    /// Unbuffered: the encoder writes whole strips and directories, and with no buffer to
    /// flush at the end every write error surfaces where it happens.
    encoder: Option<TiffEncoder<File>>,
    wide: bool,
    pages: usize,
    narrow: Vec<u16>,
}

/// What a label TIFF says about its pages: OME-XML axes (Z-planes × time points, in that
/// order: the pages' order) and, when the input gave one, the physical pixel size (also as
/// the TIFF resolution tags, for readers without OME).
#[derive(Clone, Debug)]
pub struct LabelMeta {
    pub slices: usize,
    pub frames: usize,
    pub physical: Option<PhysicalSize>,
}

impl LabelMeta {
    /// One 2D image, size unknown.
    #[cfg(test)]
    pub fn single() -> LabelMeta {
        LabelMeta {
            slices: 1,
            frames: 1,
            physical: None,
        }
    }

    /// The OME-XML description of `width × height` pages of `uint16` (or `uint32` when
    /// `wide`) labels.
    fn ome_xml(&self, width: usize, height: usize, wide: bool) -> String {
        let mut physical = String::new();
        if let Some(p) = self.physical {
            // In µm, OME's default unit: a TIFF description is ASCII, which "µm" is not.
            let um = |v: f64| {
                let s = format!("{v:.6}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            };
            physical = format!(
                " PhysicalSizeX=\"{}\" PhysicalSizeY=\"{}\"",
                um(p.x_um),
                um(p.y_um)
            );
            if let Some(z) = p.z_um.filter(|_| self.slices > 1) {
                physical.push_str(&format!(" PhysicalSizeZ=\"{}\"", um(z)));
            }
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\" Creator=\"cellpose-rs {}\">\
             <Image ID=\"Image:0\" Name=\"labels\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"XYZCT\" \
             Type=\"{}\" SizeX=\"{width}\" SizeY=\"{height}\" SizeZ=\"{}\" SizeC=\"1\" SizeT=\"{}\"{physical}>\
             <Channel ID=\"Channel:0:0\" Name=\"labels\" SamplesPerPixel=\"1\"/>\
             <TiffData IFD=\"0\" PlaneCount=\"{}\"/></Pixels></Image></OME>",
            env!("CARGO_PKG_VERSION"),
            if wide { "uint32" } else { "uint16" },
            self.slices,
            self.frames,
            self.slices * self.frames
        )
    }
}

/// Pixels per centimetre as a TIFF rational, for a pixel of `um` micrometres.
fn per_centimetre(um: f64) -> Rational {
    let v = 1e4 / um;
    let mut d = 1_000_000u32;
    while d > 1 && v * d as f64 > u32::MAX as f64 / 2.0 {
        d /= 10;
    }
    Rational {
        n: (v * d as f64).round().clamp(1.0, u32::MAX as f64) as u32,
        d,
    }
}

/// Writes one label page with its tags: the OME-XML on the first page, the resolution
/// tags on every page when the pixel size is known.
fn write_labels<C>(
    enc: &mut TiffEncoder<File>,
    (width, height): (usize, usize),
    data: &[C::Inner],
    description: Option<&str>,
    physical: Option<PhysicalSize>,
) -> tiff::TiffResult<()>
where
    C: colortype::ColorType,
    [C::Inner]: tiff::encoder::TiffValue,
{
    let mut image = enc.new_image::<C>(width as u32, height as u32)?;
    if let Some(d) = description {
        image.encoder().write_tag(Tag::ImageDescription, d)?;
    }
    if let Some(p) = physical {
        let e = image.encoder();
        e.write_tag(Tag::ResolutionUnit, ResolutionUnit::Centimeter.to_u16())?;
        e.write_tag(Tag::XResolution, per_centimetre(p.x_um))?;
        e.write_tag(Tag::YResolution, per_centimetre(p.y_um))?;
    }
    image.write_data(data)
}

impl LabelTiffWriter {
    pub fn create(path: &Path, meta: LabelMeta) -> Result<LabelTiffWriter> {
        let partial = partial_path(path);
        let encoder = TiffEncoder::new(create_file(&partial)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(LabelTiffWriter {
            path: path.to_path_buf(),
            partial,
            meta,
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
        let size = (page.width, page.height);
        let xml = (self.pages == 0).then(|| self.meta.ome_xml(size.0, size.1, self.wide));
        let physical = self.meta.physical;
        if self.wide {
            write_labels::<colortype::Gray32>(enc, size, page.labels, xml.as_deref(), physical)
                .with_context(err)?;
        } else {
            self.narrow.clear();
            self.narrow.extend(page.labels.iter().map(|&l| l as u16));
            write_labels::<colortype::Gray16>(enc, size, &self.narrow, xml.as_deref(), physical)
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
                let size = (w as usize, h as usize);
                let xml = (i == 0).then(|| self.meta.ome_xml(size.0, size.1, true));
                write_labels::<colortype::Gray32>(
                    &mut enc,
                    size,
                    &labels,
                    xml.as_deref(),
                    self.meta.physical,
                )?;
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
pub fn write_label_tiff(path: &Path, pages: &[LabelPage], meta: LabelMeta) -> Result<()> {
    let mut w = LabelTiffWriter::create(path, meta)?;
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

// Output naming: where the results of one input go.

/// Output path `DIR/STEM_SUFFIX` (with `_frameNNN` before the extension for stacks).
pub fn output_path(dir: &Path, stem: &str, suffix: &str, frame: Option<(usize, usize)>) -> PathBuf {
    let name = match frame {
        None => format!("{stem}_{suffix}"),
        Some((i, n)) => {
            let digits = n.to_string().len();
            let (base, ext) = suffix.rsplit_once('.').unwrap_or((suffix, ""));
            format!("{stem}_{base}_frame{:0digits$}.{ext}", i + 1)
        }
    };
    dir.join(name)
}

/// The file name's stem and the folder its results go to.
pub fn stem_and_dir<'a>(path: &'a Path, out_dir: Option<&Path>) -> Result<(&'a str, PathBuf)> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .context("file name is not valid UTF-8")?;
    let dir = match out_dir {
        Some(d) => d.to_path_buf(),
        None => path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    Ok((stem, dir))
}

/// What one image produced.
pub(crate) struct Done {
    /// Frames, or planes of a volume.
    pub frames: usize,
    pub objects: u64,
    pub masks: PathBuf,
    pub diameters: Vec<f32>,
    /// For a volume, how it was segmented ("3D flows", "stitched at IoU 0.25").
    pub volume: Option<String>,
    /// Masks removed by the size and flow-error rules, over every frame.
    pub dropped: DroppedMasks,
    /// How the file was read or normalised where that was a choice, for the user.
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_outputs_are_numbered_per_frame() {
        let d = Path::new("o");
        assert_eq!(
            output_path(d, "s", "cp_flows.png", Some((2, 12))),
            Path::new("o/s_cp_flows_frame03.png")
        );
        assert_eq!(
            output_path(d, "s", "cp_masks.tif", None),
            Path::new("o/s_cp_masks.tif")
        );
    }
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
            write_label_tiff(&p, &[page], LabelMeta::single()).unwrap();
            assert_eq!(sample_type(&p), tiff::ColorType::Gray(bits), "{name}");
            let back = read_labels(&p).unwrap();
            assert_eq!((back.width, back.height), (w, h));
            assert_eq!(&back.data, labels, "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
