//! Reading images and label images from PNG and TIFF files.
//!
//! Images become frames of interleaved f32 samples with the alpha channel dropped (the
//! reference reads PNGs with OpenCV, which drops alpha too). Every error says what the file
//! holds and what was expected; callers put the file name in front.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cellpose::{MAX_SIDE, reduce_channels};
use tiff::ColorType;
use tiff::decoder::{Decoder as TiffDecoder, DecodingResult};
use tiff::tags::{PlanarConfiguration, Tag};

/// File extensions read from folders (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "tif", "tiff"];
/// Name endings of files in a folder that are results or annotations, not images to segment
/// (the reference's `get_image_files` skips the same kinds).
const SKIPPED_STEM_ENDINGS: [&str; 4] = ["_masks", "_cp_outlines", "_cp_flows", "_outlines"];

/// Colour channels a segmentable image may have (gray, gray + nucleus, RGB, RGB + one).
const MAX_COLOURS: usize = 4;

/// One 2D image: `colours` samples per pixel, interleaved, row-major.
#[derive(Clone)]
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

/// Runs a read through the PNG or TIFF decoder, turning a panic inside it into an error: a
/// damaged file can still reach an unchecked index in those crates (fuzzing found a TIFF
/// `SampleFormat` tag without values), and one bad file must fail alone, not end a batch or
/// a folder being watched during an acquisition.
///
/// The panic's message still reaches stderr through the process's panic hook (the CLI keeps
/// Rust's default one), before the error is returned and reported.
fn decoder_guard<T>(read: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(result) => result,
        Err(payload) => bail!(
            "the image decoder failed on this file ({}): the file is damaged, or of a \
             kind the decoder does not handle",
            cellpose::error::panic_message(&*payload)
        ),
    }
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

/// Where the axes of a multi-page file came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AxesFrom {
    /// One 2D image (PNG, or a single-page TIFF): nothing to decide.
    Single,
    /// The ImageJ hyperstack description (`channels=`, `slices=`, `frames=`).
    ImageJ,
    /// The OME-XML description (`SizeC`, `SizeZ`, `SizeT`, `DimensionOrder`).
    Ome,
    /// No axes metadata: the pages are planes of one axis, Z or T, as the caller decides.
    Assumed,
}

/// The axes of an image file: `channels` pages (or planar samples) make one plane's colours,
/// `slices` planes are Z, `frames` are T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axes {
    pub channels: usize,
    pub slices: usize,
    pub frames: usize,
    pub from: AxesFrom,
    /// Page index = `c · stride[0] + z · stride[1] + t · stride[2]`.
    stride: [usize; 3],
}

/// One readable 2D page: a TIFF directory, or one sample plane of a planar TIFF directory.
#[derive(Clone, Copy, Debug)]
struct Page {
    ifd: usize,
    /// The sample plane of a planar directory read as a page of its own.
    sample: Option<usize>,
}

enum Source {
    Png(Frame),
    Tiff {
        dec: Box<TiffDecoder<BufReader<File>>>,
        pages: Vec<Page>,
    },
}

/// The size of a pixel (and of a Z step) in micrometres, from a file's metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhysicalSize {
    pub x_um: f64,
    pub y_um: f64,
    pub z_um: Option<f64>,
}

/// An image file opened for reading plane by plane (a long time-lapse is never held whole).
pub struct ImageFile {
    source: Source,
    pub axes: Axes,
    /// Pixel size from the metadata (OME `PhysicalSize*`, ImageJ `unit=`/`spacing=` with the
    /// resolution tags, or the resolution tags in inches or centimetres), when it gives one.
    pub physical: Option<PhysicalSize>,
    /// A line saying how the pages were read where that was a choice (a planar page split
    /// into planes, pages without axes metadata), for the caller to show.
    pub note: Option<String>,
}

impl ImageFile {
    /// Opens `path` (PNG or TIFF, recognised by content) and reads its layout.
    pub fn open(path: &Path) -> Result<ImageFile> {
        decoder_guard(|| Self::open_unguarded(path))
    }

    fn open_unguarded(path: &Path) -> Result<ImageFile> {
        match sniff(path)? {
            (Format::Png, r) => Ok(ImageFile {
                source: Source::Png(read_png(r)?),
                axes: Axes::single(),
                physical: None,
                note: None,
            }),
            (Format::Tiff, r) => open_tiff(r),
        }
    }

    /// Plane `z` of time point `t`, its channels as the colours of one frame.
    pub fn read_plane(&mut self, z: usize, t: usize) -> Result<Frame> {
        let axes = self.axes;
        assert!(z < axes.slices && t < axes.frames);
        decoder_guard(|| self.read_plane_unguarded(z, t))
    }

    fn read_plane_unguarded(&mut self, z: usize, t: usize) -> Result<Frame> {
        let axes = self.axes;
        match &mut self.source {
            Source::Png(frame) => Ok(frame.clone()),
            Source::Tiff { dec, pages } => {
                if axes.channels == 1 {
                    let page = axes.page(0, z, t);
                    return read_page(dec, pages[page], page + 1);
                }
                let mut parts = Vec::with_capacity(axes.channels);
                for c in 0..axes.channels {
                    let page = axes.page(c, z, t);
                    let f = read_page(dec, pages[page], page + 1)?;
                    if f.colours != 1 {
                        bail!(
                            "TIFF page {} has {} colour channels, but the axes metadata gives \
                             {} channels as separate pages",
                            page + 1,
                            f.colours,
                            axes.channels
                        );
                    }
                    parts.push(f);
                }
                merge_channels(parts)
            }
        }
    }
}

impl AxesFrom {
    /// The metadata's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            AxesFrom::Single => "single image",
            AxesFrom::ImageJ => "ImageJ",
            AxesFrom::Ome => "OME",
            AxesFrom::Assumed => "assumed",
        }
    }
}

impl Axes {
    fn single() -> Axes {
        Axes {
            channels: 1,
            slices: 1,
            frames: 1,
            from: AxesFrom::Single,
            stride: [0, 0, 0],
        }
    }

    /// `pages` planes of one unknown axis (Z or T: see [`Axes::as_z`]), read as time points.
    fn assumed(pages: usize) -> Axes {
        Axes {
            channels: 1,
            slices: 1,
            frames: pages,
            from: AxesFrom::Assumed,
            stride: [0, 0, 1],
        }
    }

    /// Where the axes could not be read, the pages as Z-planes instead of time points.
    pub fn as_z(self) -> Axes {
        if self.from != AxesFrom::Assumed {
            return self;
        }
        Axes {
            slices: self.frames,
            frames: 1,
            stride: [0, 1, 0],
            ..self
        }
    }

    fn page(&self, c: usize, z: usize, t: usize) -> usize {
        c * self.stride[0] + z * self.stride[1] + t * self.stride[2]
    }

    /// `C × Z × T` in words, for messages.
    pub fn describe(&self) -> String {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        format!(
            "{} × {} × {}",
            plural(self.channels, "channel"),
            plural(self.slices, "Z-plane"),
            plural(self.frames, "time point")
        )
    }
}

/// Frames of one channel each (same size) into one frame of interleaved colours.
fn merge_channels(parts: Vec<Frame>) -> Result<Frame> {
    let (w, h) = (parts[0].width, parts[0].height);
    if let Some(f) = parts.iter().find(|f| (f.width, f.height) != (w, h)) {
        bail!(
            "the channels of one plane differ in size ({w}×{h} and {}×{})",
            f.width,
            f.height
        );
    }
    let colours = parts.len();
    if colours > MAX_COLOURS {
        bail!("planes have {colours} channels; at most {MAX_COLOURS} can be segmented");
    }
    let mut data = vec![0f32; w * h * colours];
    for (c, f) in parts.iter().enumerate() {
        for (i, v) in f.data.iter().enumerate() {
            data[i * colours + c] = *v;
        }
    }
    Ok(Frame {
        width: w,
        height: h,
        colours,
        data,
    })
}

/// The value of `key=` on a line of an ImageJ description.
fn imagej_value(desc: &str, key: &str) -> Option<usize> {
    desc.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
}

/// The value of attribute `name="…"` of the first `<Pixels` element of an OME-XML text.
fn ome_attribute<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let pixels = &xml[xml.find("<Pixels")?..];
    let pixels = &pixels[..pixels.find('>')?];
    let at = pixels.find(&format!(" {name}=\""))? + name.len() + 3;
    let rest = &pixels[at..];
    Some(&rest[..rest.find('"')?])
}

/// The axes a description gives for `pages` single-channel pages, if it gives them and
/// they account for every page.
fn axes_from_description(desc: &str, pages: usize) -> Option<Axes> {
    if desc.starts_with("ImageJ=") {
        let c = imagej_value(desc, "channels").unwrap_or(1);
        let z = imagej_value(desc, "slices").unwrap_or(1);
        let t = imagej_value(desc, "frames").unwrap_or(1);
        // ImageJ writes pages channel first, then slice, then frame (XYCZT).
        return (c * z * t == pages && c > 0 && z > 0 && t > 0).then_some(Axes {
            channels: c,
            slices: z,
            frames: t,
            from: AxesFrom::ImageJ,
            stride: [1, c, c * z],
        });
    }
    if desc.contains("<OME") {
        let size = |n: &str| ome_attribute(desc, n)?.parse::<usize>().ok();
        let (c, z, t) = (size("SizeC")?, size("SizeZ")?, size("SizeT")?);
        let order = ome_attribute(desc, "DimensionOrder")?;
        if c * z * t != pages || !order.starts_with("XY") || order.len() != 5 {
            return None;
        }
        // The first axis after XY changes fastest from page to page.
        let mut stride = [0usize; 3];
        let mut step = 1;
        for axis in order[2..].chars() {
            let (i, n) = match axis {
                'C' => (0, c),
                'Z' => (1, z),
                'T' => (2, t),
                _ => return None,
            };
            stride[i] = step;
            step *= n;
        }
        return Some(Axes {
            channels: c,
            slices: z,
            frames: t,
            from: AxesFrom::Ome,
            stride,
        });
    }
    None
}

/// Micrometres in one `unit` (as ImageJ and OME spell them), if it is a length.
fn micrometres_per(unit: &str) -> Option<f64> {
    match unit.trim() {
        "micron" | "microns" | "um" | "µm" | "\\u00B5m" | "micrometer" | "micrometre" => Some(1.0),
        "nm" | "nanometer" | "nanometre" => Some(1e-3),
        "mm" | "millimeter" | "millimetre" => Some(1e3),
        "cm" | "centimeter" | "centimetre" => Some(1e4),
        "m" | "meter" | "metre" => Some(1e6),
        "inch" | "in" => Some(25_400.0),
        _ => None,
    }
}

/// The pixel size the first page's metadata gives, if any.
fn physical_size(dec: &mut TiffDecoder<BufReader<File>>, desc: &str) -> Option<PhysicalSize> {
    let positive = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
    if desc.contains("<OME") {
        let um = |axis: &str| {
            let v: f64 = ome_attribute(desc, &format!("PhysicalSize{axis}"))?
                .parse()
                .ok()?;
            let unit = ome_attribute(desc, &format!("PhysicalSize{axis}Unit")).unwrap_or("µm");
            positive(v * micrometres_per(unit)?)
        };
        return Some(PhysicalSize {
            x_um: um("X")?,
            y_um: um("Y")?,
            z_um: um("Z"),
        });
    }
    // Pixels per unit in the resolution tags.
    let mut per_unit = |tag: Tag| match dec.get_tag(tag).ok()? {
        tiff::decoder::ifd::Value::Rational(n, d) if n > 0 && d > 0 => Some(n as f64 / d as f64),
        _ => None,
    };
    let (xres, yres) = (per_unit(Tag::XResolution)?, per_unit(Tag::YResolution)?);
    let unit_um = if desc.starts_with("ImageJ=") {
        let unit = desc.lines().find_map(|l| l.strip_prefix("unit="))?;
        micrometres_per(unit)?
    } else {
        match dec
            .find_tag_unsigned::<u16>(Tag::ResolutionUnit)
            .ok()
            .flatten()
        {
            Some(2) => 25_400.0,
            Some(3) => 10_000.0,
            _ => return None,
        }
    };
    let z_um = desc
        .lines()
        .find_map(|l| l.strip_prefix("spacing="))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|v| positive(v * unit_um));
    Some(PhysicalSize {
        x_um: positive(unit_um / xres)?,
        y_um: positive(unit_um / yres)?,
        z_um,
    })
}

fn open_tiff(r: BufReader<File>) -> Result<ImageFile> {
    let mut dec = Box::new(TiffDecoder::new(r).context("cannot decode TIFF")?);
    let desc = match dec.get_tag(Tag::ImageDescription) {
        Ok(v) => v.into_string().unwrap_or_default(),
        Err(_) => String::new(),
    };
    let physical = physical_size(&mut dec, &desc);
    // Every directory, and the sample planes of a planar one when they are planes of a stack.
    let mut pages = Vec::new();
    let mut split = None;
    for ifd in 0.. {
        let layout = tiff_page_layout(&mut dec, ifd + 1)?;
        if layout.planar && !layout.rgb_colour {
            split = Some(layout.samples);
            pages.extend((0..layout.samples).map(|s| Page {
                ifd,
                sample: Some(s),
            }));
        } else {
            pages.push(Page { ifd, sample: None });
        }
        if !dec.more_images() {
            break;
        }
        dec.next_image()
            .with_context(|| format!("cannot decode TIFF page {}", ifd + 2))?;
    }
    let n = pages.len();
    let mut notes = Vec::new();
    if let Some(s) = split {
        notes.push(format!(
            "the {s} separate sample planes of a page are read as planes of a stack, not colours"
        ));
    }
    let axes = if n == 1 {
        Axes::single()
    } else if let Some(a) = axes_from_description(&desc, n) {
        a
    } else {
        notes.push(format!(
            "{n} planes with {}",
            if desc.starts_with("ImageJ=") || desc.contains("<OME") {
                "axes metadata that does not match their number"
            } else {
                "no axes metadata (ImageJ or OME)"
            }
        ));
        Axes::assumed(n)
    };
    Ok(ImageFile {
        source: Source::Tiff { dec, pages },
        axes,
        physical,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    })
}

/// Reads `page` (`number`, from 1, for messages) as a frame.
fn read_page(dec: &mut TiffDecoder<BufReader<File>>, page: Page, number: usize) -> Result<Frame> {
    let at = |e: tiff::TiffError| {
        anyhow::Error::from(e).context(format!("cannot decode TIFF page {number}"))
    };
    dec.seek_to_image(page.ifd).map_err(at)?;
    let layout = tiff_page_layout(dec, number)?;
    let (width, height, samples) = (layout.width, layout.height, layout.samples);
    if layout.planar {
        // Planar: the strips of sample 0, then of sample 1, … (the `tiff` crate's
        // `read_image` reads sample 0 only).
        if dec.get_chunk_type() != tiff::decoder::ChunkType::Strip {
            bail!("TIFF page {number} is tiled with separate sample planes; not supported");
        }
        let per_sample = dec.strip_count().map_err(at)? as usize / samples;
        let wanted: Vec<usize> = match page.sample {
            Some(s) => vec![s],
            None => (0..keep_colours(samples, layout.alpha)?).collect(),
        };
        let mut planes = Vec::with_capacity(wanted.len());
        for s in wanted {
            let mut plane = Vec::with_capacity(width * height);
            for k in 0..per_sample {
                let chunk = dec.read_chunk((s * per_sample + k) as u32).map_err(at)?;
                plane.extend(decoded_to_f32(chunk));
            }
            if plane.len() < width * height {
                bail!(
                    "TIFF page {number}: sample plane {} decoded to {} values, expected {width}×{height}",
                    s + 1,
                    plane.len()
                );
            }
            plane.truncate(width * height);
            planes.push(Frame {
                width,
                height,
                colours: 1,
                data: plane,
            });
        }
        return merge_channels(planes);
    }
    let colours =
        keep_colours(samples, layout.alpha).with_context(|| format!("TIFF page {number}"))?;
    let values = decoded_to_f32(dec.read_image().map_err(at)?);
    if values.len() != width * height * samples {
        bail!(
            "TIFF page {number} decoded to {} samples, expected {width}×{height}×{samples}",
            values.len()
        );
    }
    Ok(Frame {
        width,
        height,
        colours,
        data: take_colours(values.into_iter(), samples, colours),
    })
}

fn check_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 {
        bail!("image is {width}×{height} pixels; both sides must be at least 1");
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        bail!("image is {width}×{height} pixels; the library segments sides up to {MAX_SIDE}");
    }
    Ok(())
}

/// zlib's largest compression ratio (a long run of one byte): decoded bytes per byte of a
/// PNG's compressed data, at most.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Refuses a PNG header whose image (`raw_bytes` of filtered rows, as the header's size,
/// colour type and bit depth give them) is more than a file of `file_len` bytes can expand
/// to, before the output buffer is allocated: a damaged header could otherwise ask for
/// terabytes and abort the process.
fn check_png_holds(width: usize, height: usize, raw_bytes: u64, file_len: u64) -> Result<()> {
    if raw_bytes > file_len.saturating_mul(DEFLATE_MAX_RATIO) {
        bail!(
            "PNG header says {width}×{height} pixels ({raw_bytes} bytes of samples), more than \
             its {file_len} bytes can hold (damaged or truncated file)"
        );
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

fn read_png_raw<R: Read + Seek>(
    mut r: BufReader<R>,
) -> Result<(usize, usize, usize, bool, Vec<f32>)> {
    let file_len = r
        .seek(SeekFrom::End(0))
        .and_then(|n| r.rewind().map(|_| n))
        .context("cannot read file")?;
    let mut reader = png_reader(r)?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    check_size(w, h)?;
    check_png_holds(w, h, reader.info().raw_bytes() as u64, file_len)?;
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

/// The layout of a TIFF page.
struct PageLayout {
    width: usize,
    height: usize,
    samples: usize,
    alpha: bool,
    /// More than one sample, stored as separate planes (planar configuration 2).
    planar: bool,
    /// Three samples that are the colours of an RGB picture (photometric RGB, no extra
    /// samples), as opposed to planes of a stack stored as samples (tifffile's default for
    /// a small stack writes them as RGB + alpha).
    rgb_colour: bool,
}

/// Size and samples of the current TIFF page, rejecting what cannot be read correctly.
fn tiff_page_layout<R: Read + Seek>(dec: &mut TiffDecoder<R>, page: usize) -> Result<PageLayout> {
    let (w, h) = dec
        .dimensions()
        .with_context(|| format!("cannot decode TIFF page {page}"))?;
    check_size(w as usize, h as usize).with_context(|| format!("TIFF page {page}"))?;
    let (samples, alpha) = tiff_samples(
        dec.colortype()
            .with_context(|| format!("cannot decode TIFF page {page}"))?,
    )
    .with_context(|| format!("TIFF page {page}"))?;
    let tag = |dec: &mut TiffDecoder<R>, t: Tag| dec.find_tag_unsigned::<u16>(t).ok().flatten();
    let planar = tag(dec, Tag::PlanarConfiguration) == Some(PlanarConfiguration::Planar.to_u16())
        && samples > 1;
    let photometric_rgb = tag(dec, Tag::PhotometricInterpretation)
        == Some(tiff::tags::PhotometricInterpretation::RGB.to_u16());
    Ok(PageLayout {
        width: w as usize,
        height: h as usize,
        samples,
        alpha,
        planar,
        rgb_colour: photometric_rgb && samples == 3,
    })
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
    decoder_guard(|| read_labels_unguarded(path))
}

fn read_labels_unguarded(path: &Path) -> Result<Labels> {
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
            let PageLayout {
                width,
                height,
                samples,
                ..
            } = tiff_page_layout(&mut dec, 1)?;
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

/// An input file, or an input that names nothing usable with the reason.
pub type Input = Result<PathBuf, (PathBuf, String)>;

/// The images named by the inputs, folders expanded (sorted, results and annotations
/// skipped). Inputs that name nothing usable come back as errors.
pub fn expand_inputs(inputs: &[PathBuf]) -> Vec<Input> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(input) {
                Ok(rd) => rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_image_name(p))
                    .collect(),
                Err(e) => {
                    out.push(Err((input.clone(), format!("cannot list folder: {e}"))));
                    continue;
                }
            };
            if files.is_empty() {
                out.push(Err((
                    input.clone(),
                    "folder holds no PNG or TIFF images to segment".into(),
                )));
            }
            files.sort();
            out.extend(files.into_iter().map(Ok));
        } else if input.exists() {
            out.push(Ok(input.clone()));
        } else {
            out.push(Err((input.clone(), "no such file or folder".into())));
        }
    }
    out
}

/// A file name segmented when its folder is an input: a PNG or TIFF extension, and not a
/// result or annotation of this program or the reference.
pub fn is_image_name(p: &Path) -> bool {
    let ext_ok = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)));
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    ext_ok && !SKIPPED_STEM_ENDINGS.iter().any(|s| stem.ends_with(s))
}

/// The frame's colours reduced to the network's planes (the reference's channel choice).
/// Returns both planes and how many of them carry data (1 without a nucleus channel).
pub fn reduce(frame: &Frame, channels: [usize; 2]) -> Result<(Vec<f32>, usize)> {
    let nch = frame.colours;
    for (which, &c) in ["channel to segment", "nucleus channel"]
        .iter()
        .zip(&channels)
    {
        if c > nch {
            bail!(
                "--channels {},{} asks for colour {c} as the {which}, but the image has \
                 {nch} colour channel{}",
                channels[0],
                channels[1],
                if nch == 1 { "" } else { "s" }
            );
        }
    }
    let npix = frame.width * frame.height;
    let mut planes = vec![0.0f32; 2 * npix];
    reduce_channels(&frame.data, nch, channels, &mut planes)?;
    let with_nucleus = channels[0] != 0 && channels[1] != 0 && nch > 1;
    Ok((planes, if with_nucleus { 2 } else { 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_listing_skips_results_and_annotations() {
        assert!(is_image_name(Path::new("a/x_img.png")));
        assert!(is_image_name(Path::new("a/x.TIF")));
        assert!(!is_image_name(Path::new("a/x_masks.png")));
        assert!(!is_image_name(Path::new("a/x_img_cp_masks.tif")));
        assert!(!is_image_name(Path::new("a/x_cp_outlines.png")));
        assert!(!is_image_name(Path::new("a/x.jpg")));
    }
}
