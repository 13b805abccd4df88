//! ImageJ ROI sets (`NAME_rois.zip`): one polygon ROI per object, for Fiji's ROI Manager.
//!
//! The encoder follows the format's public description (ImageJ's `ij.io.RoiDecoder`
//! documentation: a 64-byte big-endian header, the coordinates, a second 64-byte header
//! with the ROI's position and name); no crate writes it. The zip container is the `zip`
//! crate's. Coordinates are 16-bit offsets from the ROI's bounds, so images up to 32,767
//! pixels a side are written; wider ones are refused with a message.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cellpose::outlines::Outline;
use zip::write::SimpleFileOptions;

/// Version written (1.52 and later read it).
const VERSION: i16 = 228;
const HEADER: usize = 64;
const HEADER2: usize = 64;

/// One polygon ROI (`points` at pixel corners, in order) named `name`, at stack position
/// `position` (1-based frame or plane; 0 for a single image).
pub fn encode_polygon(points: &[(u32, u32)], position: u32, name: &str) -> Result<Vec<u8>> {
    let n = points.len();
    if n == 0 || n > i16::MAX as usize {
        bail!("an outline of {n} points does not fit an ImageJ polygon ROI");
    }
    let (left, top) = (
        points.iter().map(|p| p.0).min().unwrap_or(0),
        points.iter().map(|p| p.1).min().unwrap_or(0),
    );
    let (right, bottom) = (
        points.iter().map(|p| p.0).max().unwrap_or(0),
        points.iter().map(|p| p.1).max().unwrap_or(0),
    );
    if right > i16::MAX as u32 || bottom > i16::MAX as u32 {
        bail!("ImageJ polygon ROIs hold coordinates up to 32767; this image is larger");
    }
    let name: Vec<u16> = name.encode_utf16().collect();
    let header2 = HEADER + 4 * n;
    let mut b = vec![0u8; header2 + HEADER2 + 2 * name.len()];
    let put16 = |b: &mut [u8], at: usize, v: i16| b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    let put32 = |b: &mut [u8], at: usize, v: i32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    b[0..4].copy_from_slice(b"Iout");
    put16(&mut b, 4, VERSION);
    b[6] = 0; // polygon
    put16(&mut b, 8, top as i16);
    put16(&mut b, 10, left as i16);
    put16(&mut b, 12, bottom as i16);
    put16(&mut b, 14, right as i16);
    put16(&mut b, 16, n as i16);
    put32(&mut b, 56, position as i32);
    put32(&mut b, 60, header2 as i32);
    for (i, &(x, y)) in points.iter().enumerate() {
        put16(&mut b, HEADER + 2 * i, (x - left) as i16);
        put16(&mut b, HEADER + 2 * n + 2 * i, (y - top) as i16);
    }
    // Second header: the position again (as the stack position), then the name.
    put32(&mut b, header2 + 4, 0); // channel
    put32(&mut b, header2 + 8, 0); // slice
    put32(&mut b, header2 + 12, 0); // frame
    put32(&mut b, header2 + 16, (header2 + HEADER2) as i32); // name offset
    put32(&mut b, header2 + 20, name.len() as i32); // name length (chars)
    for (i, c) in name.iter().enumerate() {
        b[header2 + HEADER2 + 2 * i..header2 + HEADER2 + 2 * i + 2]
            .copy_from_slice(&c.to_be_bytes());
    }
    Ok(b)
}

/// A ROI set written frame by frame (under a temporary name, renamed when complete, as the
/// other results).
pub struct RoiSetWriter {
    path: PathBuf,
    partial: PathBuf,
    zip: Option<zip::ZipWriter<File>>,
}

impl RoiSetWriter {
    pub fn create(path: &Path) -> Result<RoiSetWriter> {
        let partial = crate::output::partial_path(path);
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        Ok(RoiSetWriter {
            path: path.to_path_buf(),
            partial,
            zip: Some(zip::ZipWriter::new(file)),
        })
    }

    /// Adds one ROI per outline; `frame` (1-based) is the stack position, `None` for a
    /// single image. ROIs are named `LLLL` (the label) or `FFF-LLLL` in a stack.
    pub fn add(&mut self, outlines: &[Outline], frame: Option<usize>) -> Result<()> {
        let err = || format!("cannot write {}", self.path.display());
        let zip = self.zip.as_mut().expect("open until finish");
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for o in outlines {
            let name = match frame {
                Some(f) => format!("{f:03}-{:04}", o.label),
                None => format!("{:04}", o.label),
            };
            let bytes = encode_polygon(&o.points, frame.unwrap_or(0) as u32, &name)?;
            zip.start_file(format!("{name}.roi"), options)
                .with_context(err)?;
            zip.write_all(&bytes).with_context(err)?;
        }
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        let err = || format!("cannot write {}", self.path.display());
        let zip = self.zip.take().expect("open until finish");
        zip.finish().with_context(err)?;
        std::fs::rename(&self.partial, &self.path).with_context(err)
    }
}

impl Drop for RoiSetWriter {
    fn drop(&mut self) {
        if self.zip.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The reference's outline text (`io.outlines_to_text`): one line per object, its boundary
/// pixels as `x1,y1,x2,y2,…`.
pub fn outlines_text(outlines: &[Outline]) -> String {
    let mut s = String::new();
    for o in outlines {
        let line: Vec<String> = o
            .points
            .iter()
            .flat_map(|&(x, y)| [x.to_string(), y.to_string()])
            .collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}
