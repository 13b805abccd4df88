//! Reading images and label images from PNG and TIFF files.
//!
//! Images become frames of interleaved f32 samples with the alpha channel dropped (the
//! reference reads PNGs with OpenCV, which drops alpha too). Every error says what the file
//! holds and what was expected; callers put the file name in front.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tiff::ColorType;
use tiff::decoder::{Decoder as TiffDecoder, DecodingResult};
use tiff::tags::{PlanarConfiguration, Tag};

/// Colour channels a segmentable image may have (gray, gray + nucleus, RGB, RGB + one).
const MAX_COLOURS: usize = 4;

/// One 2D image: `colours` samples per pixel, interleaved, row-major.
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub colours: usize,
    pub data: Vec<f32>,
}

/// A label image: 0 background, 1.. objects.
pub struct Labels {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u32>,
}

enum Format {
    Png,
    Tiff,
}

/// Decides the format from the file's first bytes, so a misnamed file is still read and an
/// empty or foreign file gets a precise message.
fn sniff(path: &Path) -> Result<(Format, BufReader<File>)> {
    let mut f = File::open(path).context("cannot open file")?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        bail!("file is empty (0 bytes)");
    }
    // Signature, then for a PNG the IHDR chunk: length, type, width, height.
    let mut head = [0u8; 24];
    let n = read_up_to(&mut f, &mut head).context("cannot read file")?;
    f.rewind().context("cannot read file")?;
    let head = &head[..n];
    let format = if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        if n == 24 && &head[12..16] == b"IHDR" {
            let dim = |i: usize| u32::from_be_bytes(head[i..i + 4].try_into().unwrap());
            check_size(dim(16) as usize, dim(20) as usize)?;
        }
        Format::Png
    } else if head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || head.starts_with(b"II+\0")
        || head.starts_with(b"MM\0+")
    {
        Format::Tiff
    } else {
        bail!("not a PNG or TIFF file (unrecognised header; {len} bytes)");
    };
    Ok((format, BufReader::new(f)))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Every frame of an image file: one for a PNG, one per page for a TIFF.
pub fn read_frames(path: &Path) -> Result<Vec<Frame>> {
    match sniff(path)? {
        (Format::Png, r) => Ok(vec![read_png(r)?]),
        (Format::Tiff, r) => read_tiff_pages(r),
    }
}

fn check_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        bail!("image is {width}×{height} pixels; both sides must be at least 1");
    }
    Ok(())
}

/// Samples per pixel kept and the alpha channel dropped, for a colour type's sample count.
fn keep_colours(samples: usize, has_alpha: bool) -> Result<usize> {
    let colours = samples - usize::from(has_alpha);
    if colours == 0 || colours > MAX_COLOURS {
        bail!(
            "image has {samples} samples per pixel; expected 1 to {MAX_COLOURS} colour channels \
             (a z-stack or time series must be stored one plane per TIFF page)"
        );
    }
    Ok(colours)
}

/// Copies interleaved samples, keeping the first `keep` of every `stride`.
fn take_colours(src: impl Iterator<Item = f32>, stride: usize, keep: usize) -> Vec<f32> {
    src.enumerate()
        .filter(|(i, _)| i % stride < keep)
        .map(|(_, v)| v)
        .collect()
}

fn png_reader<R: Read + Seek>(r: BufReader<R>) -> Result<png::Reader<BufReader<R>>> {
    let mut dec = png::Decoder::new(r);
    // Palette → RGB, sub-byte gray → 8 bit; 16-bit samples are kept.
    dec.set_transformations(png::Transformations::EXPAND);
    dec.read_info().context("cannot decode PNG")
}

fn read_png_raw<R: Read + Seek>(r: BufReader<R>) -> Result<(usize, usize, usize, bool, Vec<f32>)> {
    let mut reader = png_reader(r)?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    check_size(w, h)?;
    let size = reader
        .output_buffer_size()
        .context("PNG is too large to decode")?;
    let mut buf = vec![0u8; size];
    let out = reader.next_frame(&mut buf).context("cannot decode PNG")?;
    let samples = out.color_type.samples();
    let has_alpha = matches!(
        out.color_type,
        png::ColorType::GrayscaleAlpha | png::ColorType::Rgba
    );
    let buf = &buf[..out.buffer_size()];
    let values: Vec<f32> = match out.bit_depth {
        png::BitDepth::Sixteen => buf
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as f32)
            .collect(),
        _ => buf.iter().map(|&v| v as f32).collect(),
    };
    Ok((w, h, samples, has_alpha, values))
}

fn read_png<R: Read + Seek>(r: BufReader<R>) -> Result<Frame> {
    let (width, height, samples, has_alpha, values) = read_png_raw(r)?;
    let colours = keep_colours(samples, has_alpha)?;
    let data = take_colours(values.into_iter(), samples, colours);
    Ok(Frame {
        width,
        height,
        colours,
        data,
    })
}

fn tiff_samples(ct: ColorType) -> Result<(usize, bool)> {
    Ok(match ct {
        ColorType::Gray(_) => (1, false),
        ColorType::GrayA(_) => (2, true),
        ColorType::RGB(_) => (3, false),
        ColorType::RGBA(_) => (4, true),
        ColorType::Multiband { num_samples, .. } => (num_samples as usize, false),
        other => bail!("TIFF colour type {other:?} is not supported; expected gray or RGB"),
    })
}

fn decoded_to_f32(d: DecodingResult) -> Vec<f32> {
    match d {
        DecodingResult::U8(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::U16(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::U64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I8(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I16(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::I64(v) => v.into_iter().map(|x| x as f32).collect(),
        DecodingResult::F16(v) => v.into_iter().map(f32::from).collect(),
        DecodingResult::F32(v) => v,
        DecodingResult::F64(v) => v.into_iter().map(|x| x as f32).collect(),
    }
}

/// Size and samples of the current TIFF page, rejecting what cannot be read correctly.
fn tiff_page_layout<R: Read + Seek>(
    dec: &mut TiffDecoder<R>,
    page: usize,
) -> Result<(usize, usize, usize, bool)> {
    let (w, h) = dec
        .dimensions()
        .with_context(|| format!("cannot decode TIFF page {page}"))?;
    check_size(w as usize, h as usize).with_context(|| format!("TIFF page {page}"))?;
    let (samples, alpha) = tiff_samples(
        dec.colortype()
            .with_context(|| format!("cannot decode TIFF page {page}"))?,
    )
    .with_context(|| format!("TIFF page {page}"))?;
    let planar = dec
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
        .ok()
        .flatten()
        == Some(PlanarConfiguration::Planar.to_u16());
    if planar && samples > 1 {
        bail!(
            "TIFF page {page} stores its {samples} channels as separate planes; \
             only interleaved (chunky) channels are supported"
        );
    }
    Ok((w as usize, h as usize, samples, alpha))
}

fn read_tiff_pages<R: Read + Seek>(r: R) -> Result<Vec<Frame>> {
    let mut dec = TiffDecoder::new(r).context("cannot decode TIFF")?;
    let mut frames = Vec::new();
    loop {
        let page = frames.len() + 1;
        let (width, height, samples, alpha) = tiff_page_layout(&mut dec, page)?;
        let colours = keep_colours(samples, alpha).with_context(|| format!("TIFF page {page}"))?;
        let values = decoded_to_f32(
            dec.read_image()
                .with_context(|| format!("cannot decode TIFF page {page}"))?,
        );
        if values.len() != width * height * samples {
            bail!(
                "TIFF page {page} decoded to {} samples, expected {width}×{height}×{samples}",
                values.len()
            );
        }
        frames.push(Frame {
            width,
            height,
            colours,
            data: take_colours(values.into_iter(), samples, colours),
        });
        if !dec.more_images() {
            return Ok(frames);
        }
        dec.next_image()
            .with_context(|| format!("cannot decode TIFF page {}", page + 1))?;
    }
}

/// Converts label samples, which must be whole numbers from 0 to 2³²−1.
fn to_labels(values: impl Iterator<Item = f64>) -> Result<Vec<u32>> {
    values
        .map(|v| {
            if v >= 0.0 && v <= u32::MAX as f64 && v.fract() == 0.0 {
                Ok(v as u32)
            } else {
                bail!(
                    "label value {v} is not a whole number from 0 to {}",
                    u32::MAX
                )
            }
        })
        .collect()
}

/// A 2D label image from a single-channel PNG or a single-page single-channel TIFF.
pub fn read_labels(path: &Path) -> Result<Labels> {
    match sniff(path)? {
        (Format::Png, r) => {
            let (width, height, samples, _, values) = read_png_raw(r)?;
            if samples != 1 {
                bail!("label image has {samples} channels; expected a single-channel image");
            }
            Ok(Labels {
                width,
                height,
                data: to_labels(values.into_iter().map(f64::from))?,
            })
        }
        (Format::Tiff, mut r) => {
            let pages = {
                let mut dec = TiffDecoder::new(&mut r).context("cannot decode TIFF")?;
                let mut n = 1;
                while dec.more_images() {
                    dec.next_image()
                        .with_context(|| format!("cannot decode TIFF page {}", n + 1))?;
                    n += 1;
                }
                n
            };
            if pages > 1 {
                bail!(
                    "label image is a stack of {pages} pages (3D); expected a single 2D label image"
                );
            }
            r.rewind().context("cannot read file")?;
            let mut dec = TiffDecoder::new(r).context("cannot decode TIFF")?;
            let (width, height, samples, _) = tiff_page_layout(&mut dec, 1)?;
            if samples != 1 {
                bail!("label image has {samples} channels; expected a single-channel image");
            }
            let data = match dec.read_image().context("cannot decode TIFF")? {
                // Exact for every integer type; f32 labels are whole numbers below 2^24.
                DecodingResult::U32(v) => v,
                DecodingResult::U64(v) => to_labels(v.into_iter().map(|x| x as f64))?,
                DecodingResult::I32(v) => to_labels(v.into_iter().map(f64::from))?,
                DecodingResult::I64(v) => to_labels(v.into_iter().map(|x| x as f64))?,
                DecodingResult::F64(v) => to_labels(v.into_iter())?,
                other => to_labels(decoded_to_f32(other).into_iter().map(f64::from))?,
            };
            if data.len() != width * height {
                bail!(
                    "label image decoded to {} values, expected {width}×{height}",
                    data.len()
                );
            }
            Ok(Labels {
                width,
                height,
                data,
            })
        }
    }
}
