//! Image metadata (DESIGN §3 `image`), read from headers only: no pixel is ever decoded, so a
//! 30000×30000 PNG answers as fast as a thumbnail and a remote file costs only its header.
//!
//! Each format is read by the codec crate `image` itself builds on (`png`, `gif`,
//! `image-webp`, `tiff`), because `image`'s own decoders hide what we need (APNG and WebP frame
//! counts, TIFF pages) or read the whole file first (JPEG). JPEG's marker walk is ours: it is
//! a dozen lines of the specification, reads only up to the frame header, and works for every
//! coding process (arithmetic, lossless, hierarchical) that no Rust decoder supports.
//! EXIF orientation is `image`'s parser for every format.

use std::io::{BufReader, Read, Seek, SeekFrom};

use image::metadata::Orientation;
use serde::Serialize;

use super::{ExtractError, Extracted, ReadSeek, sniff::Format};
use crate::job::DataType;

/// The most pages of a TIFF we count; a loop of IFDs must not spin forever.
const MAX_TIFF_PAGES: u32 = 100_000;

/// The `metadata` of an image.
#[derive(Debug, Serialize)]
pub struct ImageMetadata {
    pub format: &'static str,
    /// As stored, before any orientation is applied.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation 1–8 (1 if none): how a viewer turns the stored pixels.
    pub orientation: u8,
    /// After orientation: swapped for the orientations that turn by 90° (5–8).
    pub display_width: u32,
    pub display_height: u32,
    /// Frames of an animation (GIF, APNG, WebP) or pages of a TIFF; 1 for a still image.
    pub frame_count: u32,
    /// Bits per channel sample (per palette index for indexed images).
    pub bit_depth: u8,
    /// `gray`, `gray_alpha`, `rgb`, `rgba`, `palette`, `cmyk`, `ycbcr`, `lab`, `multiband`.
    pub color_type: &'static str,
}

/// What each format's header reader finds; orientation is applied by [`extract`].
struct Header {
    format: &'static str,
    mime: &'static str,
    width: u32,
    height: u32,
    orientation: Option<Orientation>,
    frame_count: u32,
    bit_depth: u8,
    color_type: &'static str,
}

/// Extracts image metadata from a file sniffed as one of the image formats.
pub fn extract(source: &mut dyn ReadSeek, format: Format) -> Result<Extracted, ExtractError> {
    source.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(source);
    let header = match format {
        Format::Png => read_png(&mut reader)?,
        Format::Jpeg => read_jpeg(&mut reader)?,
        Format::Gif => read_gif(&mut reader)?,
        Format::WebP => read_webp(&mut reader)?,
        Format::Tiff => read_tiff(&mut reader)?,
        Format::Bmp => read_bmp(&mut reader)?,
        Format::Heif => read_heif(reader.into_inner())?,
        other => return Err(ExtractError::Unsupported(format!("{other:?} is not an image format"))),
    };
    if header.width == 0 || header.height == 0 {
        return Err(ExtractError::corrupt(
            header.format,
            format!("the header says {}×{} pixels", header.width, header.height),
        ));
    }
    let orientation = header.orientation.unwrap_or(Orientation::NoTransforms);
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (display_width, display_height) =
        if turned { (header.height, header.width) } else { (header.width, header.height) };
    let metadata = ImageMetadata {
        format: header.format,
        width: header.width,
        height: header.height,
        orientation: orientation.to_exif(),
        display_width,
        display_height,
        frame_count: header.frame_count,
        bit_depth: header.bit_depth,
        color_type: header.color_type,
    };
    Ok(Extracted::new(DataType::Image, header.mime, metadata))
}

type Source<'a> = BufReader<&'a mut dyn ReadSeek>;

fn exif_orientation(exif: Option<&[u8]>) -> Option<Orientation> {
    let exif = exif?;
    Orientation::from_exif_chunk(exif.strip_prefix(b"Exif\0\0").unwrap_or(exif))
}

/// PNG and APNG: IHDR, acTL and eXIf, all before the first IDAT.
fn read_png(reader: &mut Source) -> Result<Header, ExtractError> {
    // `read_info` stops at the first IDAT; it allocates one row's buffer, within png's default
    // 64 MiB limit, so only an absurd declared width (hostile) is refused.
    let reader = png::Decoder::new(reader).read_info().map_err(|e| match e {
        png::DecodingError::LimitsExceeded => {
            ExtractError::TooLarge("PNG rows wider than the decoder's 64 MiB limit".into())
        }
        e => ExtractError::corrupt("PNG", e),
    })?;
    let info = reader.info();
    let color_type = match info.color_type {
        png::ColorType::Grayscale => "gray",
        png::ColorType::GrayscaleAlpha => "gray_alpha",
        png::ColorType::Rgb => "rgb",
        png::ColorType::Rgba => "rgba",
        png::ColorType::Indexed => "palette",
    };
    Ok(Header {
        format: "png",
        mime: if info.animation_control.is_some() { "image/apng" } else { "image/png" },
        width: info.width,
        height: info.height,
        orientation: exif_orientation(info.exif_metadata.as_deref()),
        frame_count: info.animation_control.map_or(1, |actl| actl.num_frames.max(1)),
        bit_depth: info.bit_depth as u8,
        color_type,
    })
}

/// JPEG: walks the marker segments up to the frame header (SOFn), picking up the EXIF APP1
/// and Adobe APP14 segments on the way; entropy-coded data is never read.
fn read_jpeg(reader: &mut Source) -> Result<Header, ExtractError> {
    let corrupt = |why: &str| ExtractError::corrupt("JPEG", why);
    let mut exif = None;
    reader.seek(SeekFrom::Start(2))?;
    loop {
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte)?;
        if byte[0] != 0xff {
            return Err(corrupt("a marker segment does not start with 0xFF"));
        }
        // Any number of 0xFF fill bytes may precede a marker code.
        let marker = loop {
            reader.read_exact(&mut byte)?;
            if byte[0] != 0xff {
                break byte[0];
            }
        };
        match marker {
            0x01 | 0xd0..=0xd8 => continue, // TEM, RSTn, SOI: no length field
            0xd9 => return Err(corrupt("the image ends before any frame header")),
            0xda => return Err(corrupt("a scan starts before any frame header")),
            _ => {}
        }
        let mut length = [0u8; 2];
        reader.read_exact(&mut length)?;
        let body_len = u16::from_be_bytes(length)
            .checked_sub(2)
            .ok_or_else(|| corrupt("a marker segment is shorter than its own length field"))?;
        let is_frame_header = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_frame_header {
            let mut sof = [0u8; 6];
            reader.read_exact(&mut sof)?;
            let (precision, components) = (sof[0], sof[5]);
            // ITU T.81 allows 8 and 12 bits (2 to 16 in lossless coding): anything else is a
            // damaged frame header, not a bit depth.
            if !(2..=16).contains(&precision) {
                return Err(corrupt("the frame header's sample precision is not 2 to 16 bits"));
            }
            let color_type = match components {
                1 => "gray",
                3 => "rgb",
                4 => "cmyk",
                _ => return Err(corrupt("the frame header has an unusual number of components")),
            };
            return Ok(Header {
                format: "jpeg",
                mime: "image/jpeg",
                height: u16::from_be_bytes([sof[1], sof[2]]).into(),
                width: u16::from_be_bytes([sof[3], sof[4]]).into(),
                orientation: exif_orientation(exif.as_deref()),
                frame_count: 1,
                bit_depth: precision,
                color_type,
            });
        }
        if marker == 0xe1 && exif.is_none() {
            let mut body = vec![0u8; body_len.into()];
            reader.read_exact(&mut body)?;
            if body.starts_with(b"Exif\0\0") {
                exif = Some(body);
            }
        } else {
            reader.seek_relative(body_len.into())?;
        }
    }
}

/// GIF: the logical screen (canvas) size, which is the image's size even when the first
/// frame is smaller; frames are counted without LZW decoding. A 0×0 screen is taken as the
/// extent of the frames, as browsers and ImageMagick do.
fn read_gif(reader: &mut Source) -> Result<Header, ExtractError> {
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    options.check_frame_consistency(false);
    let mut decoder = options.read_info(reader).map_err(|e| ExtractError::corrupt("GIF", e))?;
    let (screen_width, screen_height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let palette_entries = decoder.global_palette().map_or(256, |p| p.len() / 3).max(2);
    let (mut frame_count, mut extent_width, mut extent_height) = (0, 0, 0);
    while let Some(frame) = decoder.next_frame_info().map_err(|e| ExtractError::corrupt("GIF", e))? {
        frame_count += 1;
        extent_width = extent_width.max(u32::from(frame.left) + u32::from(frame.width));
        extent_height = extent_height.max(u32::from(frame.top) + u32::from(frame.height));
    }
    let (width, height) = if screen_width == 0 || screen_height == 0 {
        (extent_width, extent_height)
    } else {
        (screen_width, screen_height)
    };
    Ok(Header {
        format: "gif",
        mime: "image/gif",
        width,
        height,
        orientation: None,
        frame_count: frame_count.max(1),
        bit_depth: palette_entries.next_power_of_two().trailing_zeros() as u8,
        color_type: "palette",
    })
}

/// WebP: lossy, lossless and extended (alpha, animation, EXIF) files.
fn read_webp(reader: &mut Source) -> Result<Header, ExtractError> {
    let mut decoder =
        image_webp::WebPDecoder::new(&mut *reader).map_err(|e| ExtractError::corrupt("WebP", e))?;
    let (width, height) = decoder.dimensions();
    let has_alpha = decoder.has_alpha();
    let frame_count = if decoder.is_animated() { decoder.num_frames() } else { 1 };
    let exif = decoder.exif_metadata().ok().flatten();
    let animated = decoder.is_animated();
    drop(decoder);
    if read_fourcc(reader, 12)? == *b"VP8X" {
        check_webp_canvas(reader, width, height, animated)?;
    }
    Ok(Header {
        format: "webp",
        mime: "image/webp",
        width,
        height,
        orientation: exif_orientation(exif.as_deref()),
        frame_count: frame_count.max(1),
        bit_depth: 8,
        color_type: if has_alpha { "rgba" } else { "rgb" },
    })
}

/// The largest side a single VP8 or VP8L frame can have (a 14-bit field).
const WEBP_MAX_FRAME_SIDE: u32 = 16_384;
/// More chunks than a WebP file has (an animation has one per frame): a bound on the walk.
const WEBP_MAX_CHUNKS: usize = 100_000;

/// An extended WebP's canvas (its `VP8X` chunk) must be backed by its frames. A still image's
/// canvas is its one bitstream's size: libwebp refuses a file where they differ ("image size
/// coherency"). An animation's frames lie inside the canvas at offsets (the container
/// specification's rule, checked here: frames are not decoded), and may leave transparent
/// borders (libwebp's encoder crops a frame to what changes), but a canvas side beyond both
/// the largest side one frame can have and the extent of every frame is drawn by nothing: a
/// bit flip of a 64×48 animation's canvas to 6,357,056 wide. Either contradiction is `corrupt`.
fn check_webp_canvas(
    reader: &mut Source,
    width: u32,
    height: u32,
    animated: bool,
) -> Result<(), ExtractError> {
    let corrupt = |why: String| ExtractError::corrupt("WebP", why);
    let (mut extent, mut still) = ((0u32, 0u32), None);
    let mut at = 12u64;
    for _ in 0..WEBP_MAX_CHUNKS {
        let mut chunk = [0u8; 24];
        reader.seek(SeekFrom::Start(at))?;
        let mut got = Vec::with_capacity(chunk.len());
        (&mut *reader).take(chunk.len() as u64).read_to_end(&mut got)?;
        if got.len() < 8 {
            break;
        }
        chunk[..got.len()].copy_from_slice(&got);
        let body = &chunk[8..];
        let u24 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], 0]);
        match &chunk[..4] {
            b"ANMF" => {
                let (x, y) = (u24(&body[0..3]) * 2, u24(&body[3..6]) * 2);
                let (w, h) = (u24(&body[6..9]) + 1, u24(&body[9..12]) + 1);
                // The container specification: a frame lies inside the canvas; and its
                // bitstream cannot be larger than a VP8/VP8L frame.
                if x + w > width || y + h > height || w > WEBP_MAX_FRAME_SIDE || h > WEBP_MAX_FRAME_SIDE {
                    return Err(corrupt(format!(
                        "a {w}×{h} frame at ({x}, {y}) does not fit its {width}×{height} canvas"
                    )));
                }
                extent = (extent.0.max(x + w), extent.1.max(y + h));
            }
            b"VP8 " if body[3..6] == [0x9d, 0x01, 0x2a] && still.is_none() => {
                let side = |b: &[u8]| u32::from(u16::from_le_bytes([b[0], b[1]]) & 0x3fff);
                still = Some((side(&body[6..8]), side(&body[8..10])));
            }
            b"VP8L" if body[0] == 0x2f && still.is_none() => {
                let bits = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
                still = Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1));
            }
            _ => {}
        }
        let len = u64::from(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        at += 8 + len + (len & 1);
    }
    match (animated, still) {
        (false, Some(frame)) if frame != (width, height) => {
            Err(corrupt(format!("its canvas is {width}×{height} but its image is {}×{}", frame.0, frame.1)))
        }
        (true, _)
            if (width > WEBP_MAX_FRAME_SIDE && width > extent.0)
                || (height > WEBP_MAX_FRAME_SIDE && height > extent.1) =>
        {
            Err(corrupt(format!(
                "its canvas is {width}×{height} but its frames cover {}×{}",
                extent.0, extent.1
            )))
        }
        _ => Ok(()),
    }
}

/// The four bytes at `offset` (zeros past the end).
fn read_fourcc(reader: &mut Source, offset: u64) -> std::io::Result<[u8; 4]> {
    let mut fourcc = [0u8; 4];
    reader.seek(SeekFrom::Start(offset))?;
    let mut got = Vec::with_capacity(4);
    (&mut *reader).take(4).read_to_end(&mut got)?;
    fourcc[..got.len()].copy_from_slice(&got);
    Ok(fourcc)
}

/// TIFF: the first page's size and colour; every page is counted by walking the IFD chain.
fn read_tiff(reader: &mut Source) -> Result<Header, ExtractError> {
    let corrupt = |e| ExtractError::corrupt("TIFF", e);
    // The crate bounds a tag's values by its decoding buffer (256 MiB by default), and
    // reserves them by the declared count before reading: a 2 KB file whose TileOffsets count
    // was flipped made the child allocate over 32 MiB. No pixel is decoded here, so the only
    // buffers are tag values, and those cannot be larger than the file.
    let file_len = reader.seek(SeekFrom::End(0))?;
    // The crate reads the first IFD before it takes limits: its counts are checked here.
    check_first_tiff_ifd(reader, file_len)?;
    reader.seek(SeekFrom::Start(0))?;
    let file_len = usize::try_from(file_len).unwrap_or(usize::MAX);
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = limits.decoding_buffer_size.min(file_len);
    limits.ifd_value_size = limits.ifd_value_size.min(file_len);
    limits.intermediate_buffer_size = limits.intermediate_buffer_size.min(file_len);
    let mut decoder = tiff::decoder::Decoder::new(reader).map_err(corrupt)?.with_limits(limits);
    let (width, height) = decoder.dimensions().map_err(corrupt)?;
    let colortype = decoder.colortype().map_err(corrupt)?;
    let orientation = decoder
        .find_tag_unsigned::<u8>(tiff::tags::Tag::Orientation)
        .ok()
        .flatten()
        .and_then(Orientation::from_exif);
    let mut pages = 1;
    while decoder.more_images() && pages < MAX_TIFF_PAGES {
        decoder.next_image().map_err(corrupt)?;
        pages += 1;
    }
    use tiff::ColorType as T;
    let color_type = match colortype {
        T::Gray(_) => "gray",
        T::GrayA(_) => "gray_alpha",
        T::RGB(_) => "rgb",
        T::RGBA(_) => "rgba",
        T::Palette(_) => "palette",
        T::CMYK(_) | T::CMYKA(_) => "cmyk",
        T::YCbCr(_) => "ycbcr",
        T::Lab(_) => "lab",
        _ => "multiband",
    };
    Ok(Header {
        format: "tiff",
        mime: "image/tiff",
        width,
        height,
        orientation,
        frame_count: pages,
        bit_depth: colortype.bit_depth(),
        color_type,
    })
}

/// Refuses a first IFD with a tag whose values (count × type size) are longer than the file:
/// the `tiff` crate reserves them by the declared count before reading. Classic TIFF (12-byte
/// entries of 32-bit counts, after a 16-bit entry count) and BigTIFF (20-byte entries of
/// 64-bit counts, after a 64-bit entry count).
fn check_first_tiff_ifd(reader: &mut Source, file_len: u64) -> Result<(), ExtractError> {
    let mut read_at = |offset: u64, len: u64| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(len as usize);
        reader.seek(SeekFrom::Start(offset))?;
        (&mut *reader).take(len).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let header = read_at(0, 16)?;
    let got = header.len();
    if got < 8 {
        return Ok(()); // the crate says what is wrong with a header this short
    }
    let big_endian = header[..2] == *b"MM";
    let u16_at = |b: &[u8]| {
        if big_endian { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) }
    };
    let u32_at = |b: &[u8]| {
        u32::from_be_bytes(if big_endian { [b[0], b[1], b[2], b[3]] } else { [b[3], b[2], b[1], b[0]] })
    };
    let u64_at = |b: &[u8]| {
        let (high, low) = if big_endian { (&b[..4], &b[4..8]) } else { (&b[4..8], &b[..4]) };
        (u64::from(u32_at(high)) << 32) | u64::from(u32_at(low))
    };
    let bigtiff = u16_at(&header[2..4]) == 43;
    if bigtiff && got < 16 {
        return Ok(());
    }
    let (ifd, entry_len, count_len) =
        if bigtiff { (u64_at(&header[8..16]), 20, 8) } else { (u64::from(u32_at(&header[4..8])), 12, 2) };
    let count_field = read_at(ifd, count_len)?;
    if count_field.len() < count_len as usize {
        return Ok(());
    }
    let entries = if bigtiff { u64_at(&count_field) } else { u64::from(u16_at(&count_field)) };
    let entries_start = ifd + count_len;
    for index in 0..entries.min(file_len / entry_len) {
        let entry = read_at(entries_start + index * entry_len, entry_len)?;
        if entry.len() < entry_len as usize {
            break;
        }
        let (tag, kind) = (u16_at(&entry[0..2]), u16_at(&entry[2..4]));
        let count = if bigtiff { u64_at(&entry[4..12]) } else { u64::from(u32_at(&entry[4..8])) };
        let size = match kind {
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16..=18 => 8,
            _ => 1,
        };
        if count.saturating_mul(size) > file_len {
            return Err(ExtractError::corrupt(
                "TIFF",
                format!("tag {tag} declares {count} values, more than the {file_len}-byte file holds"),
            ));
        }
    }
    Ok(())
}

/// BMP: `image`'s header parser (it validates the DIB header variants and takes the absolute
/// height of top-down files); bits per pixel from the DIB header itself.
fn read_bmp(reader: &mut Source) -> Result<Header, ExtractError> {
    use image::ImageDecoder;
    // The DIB header's size fields: i32 width/height at 18/22 (u16 at 18/20 in the 12-byte
    // core header). A zero side is refused here, before `image` calls it "too large".
    let mut file_header = [0u8; 14];
    reader.seek(SeekFrom::Start(0))?;
    reader.read_exact(&mut file_header)?;
    // Up to the compression field (offset 30); a 12-byte core header has none.
    let mut dib = Vec::with_capacity(20);
    (&mut *reader).take(20).read_to_end(&mut dib)?;
    let dib_read = dib.len();
    dib.resize(20, 0);
    if dib_read < 16 {
        return Err(ExtractError::corrupt("BMP", "the file ends inside its DIB header"));
    }
    let core_header = u32::from_le_bytes([dib[0], dib[1], dib[2], dib[3]]) == 12;
    let zero_side = if core_header {
        dib[4..6] == [0, 0] || dib[6..8] == [0, 0]
    } else {
        dib[4..8] == [0; 4] || dib[8..12] == [0; 4]
    };
    if zero_side {
        return Err(ExtractError::corrupt("BMP", "the header says the image has no pixels (a side of 0)"));
    }
    reader.seek(SeekFrom::Start(0))?;
    let (width, height, has_alpha) = {
        let decoder =
            image::codecs::bmp::BmpDecoder::new(&mut *reader).map_err(|e| ExtractError::corrupt("BMP", e))?;
        let (width, height) = decoder.dimensions();
        (width, height, decoder.color_type().has_alpha())
    };
    // The DIB header's bit count: offset 24 in the 12-byte core header, 28 in all others.
    let bits = if core_header {
        u16::from_le_bytes([dib[10], dib[11]])
    } else {
        u16::from_le_bytes([dib[14], dib[15]])
    };
    let compression = if core_header || dib_read < 20 {
        BI_RGB
    } else {
        u32::from_le_bytes([dib[16], dib[17], dib[18], dib[19]])
    };
    let pixels_at =
        u64::from(u32::from_le_bytes([file_header[10], file_header[11], file_header[12], file_header[13]]));
    let file_len = reader.seek(SeekFrom::End(0))?;
    check_bmp_pixels_fit(width, height, bits, compression, file_len.saturating_sub(pixels_at))?;
    let (bit_depth, color_type) = match bits {
        1 | 2 | 4 | 8 => (bits as u8, "palette"),
        _ if has_alpha => (8, "rgba"),
        16 => (5, "rgb"),
        _ => (8, "rgb"),
    };
    Ok(Header {
        format: "bmp",
        mime: "image/bmp",
        width,
        height,
        orientation: None,
        frame_count: 1,
        bit_depth,
        color_type,
    })
}

/// BMP compression codes whose pixel array has a fixed size: none, and the bit-field masks.
const BI_RGB: u32 = 0;
const BI_BITFIELDS: u32 = 3;
const BI_ALPHABITFIELDS: u32 = 6;

/// An uncompressed BMP's pixel array has an exact size: rows of `width × bits` rounded up to
/// 4 bytes, `height` of them (the last one may go without its padding). A header whose array
/// cannot be in the file (a bit flip made the height 1,107,296,208 in a 9 KB file) is
/// `corrupt`: its size is not the picture's. Compressed (RLE, JPEG, PNG) arrays have no fixed
/// size and are not checked; a truncated uncompressed one is refused like a lying header,
/// because the two cannot be told apart.
fn check_bmp_pixels_fit(
    width: u32,
    height: u32,
    bits: u16,
    compression: u32,
    available: u64,
) -> Result<(), ExtractError> {
    if !matches!(compression, BI_RGB | BI_BITFIELDS | BI_ALPHABITFIELDS) {
        return Ok(());
    }
    let row_bits = u128::from(width) * u128::from(bits);
    let stride = row_bits.div_ceil(32) * 4;
    let needed = stride * u128::from(height.saturating_sub(1)) + row_bits.div_ceil(8);
    if needed > u128::from(available) {
        return Err(ExtractError::corrupt(
            "BMP",
            format!(
                "{width}×{height} pixels of {bits} bits need {needed} bytes; the file has {available} after its headers"
            ),
        ));
    }
    Ok(())
}

/// The largest side a HEIF primary image can have: what its codec can code in one picture,
/// times the tiles of a `grid` (at most 256 a side: the grid's rows and columns are 8-bit).
/// HEVC's largest picture (level 6.2, MaxLumaPs 35,651,584) has sides of at most
/// √(8 × MaxLumaPs) = 16,888 (H.265 §A.4.1); AV1's frame size fields are 16-bit (65,536);
/// anything else (JPEG in HEIF) 65,535. An `ispe` beyond that describes no picture the file
/// can hold.
fn heif_max_side(format: &str, grid_tiles: Option<u32>) -> u32 {
    let picture = match format {
        "heic" => 16_888,
        "avif" => 65_536,
        _ => 65_535,
    };
    picture * grid_tiles.unwrap_or(1).clamp(1, 256)
}

/// HEIC and AVIF: the primary item's properties (`ispe`, `pixi`, `irot`/`imir`), from the
/// ISO-BMFF `meta` box; no decoder is needed.
fn read_heif(source: &mut dyn ReadSeek) -> Result<Header, ExtractError> {
    let heif = super::isobmff::read_heif(source)?;
    let max_side = heif_max_side(heif.format, heif.grid_tile_count);
    if heif.width > max_side || heif.height > max_side {
        return Err(ExtractError::corrupt(
            "HEIF",
            format!(
                "its primary image is {}×{}, beyond the {max_side} pixels a side its codec can code",
                heif.width, heif.height
            ),
        ));
    }
    // HEVC's and AV1's profiles code at most 16 bits a sample; `pixi` saying more is damage.
    if let Some(bits) = heif.bits_per_channel.filter(|&bits| bits > 16) {
        return Err(ExtractError::corrupt(
            "HEIF",
            format!("its pixi says {bits} bits a channel; its codec codes 16 at most"),
        ));
    }
    let channels = heif.channels.unwrap_or(3);
    Ok(Header {
        format: heif.format,
        mime: match heif.format {
            "avif" => "image/avif",
            "heic" => "image/heic",
            _ => "image/heif",
        },
        width: heif.width,
        height: heif.height,
        orientation: Orientation::from_exif(heif.exif_orientation()),
        frame_count: 1,
        bit_depth: heif.bits_per_channel.unwrap_or(8),
        color_type: match channels {
            1 => "gray",
            2 => "gray_alpha",
            4 => "rgba",
            _ => "rgb",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn image(bytes: Vec<u8>) -> Result<serde_json::Value, ExtractError> {
        let format = super::super::sniff::sniff(&bytes).expect("sniffed");
        extract(&mut Cursor::new(bytes), format).map(|e| e.metadata)
    }

    #[test]
    fn jpeg_frame_header_after_exif_and_fill_bytes() {
        // SOI, APP1 Exif with orientation 6 (big-endian TIFF), fill bytes, SOF2 16-bit?? no: 8-bit 3 components.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe1];
        jpeg.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        jpeg.append(&mut exif);
        jpeg.extend_from_slice(&[
            0xff, 0xff, 0xc2, 0, 17, 8, 0, 48, 0, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1,
        ]);
        let m = image(jpeg).unwrap();
        assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(64), Some(48)));
        assert_eq!(m["orientation"], 6);
        assert_eq!((m["display_width"].as_u64(), m["display_height"].as_u64()), (Some(48), Some(64)));
    }

    #[test]
    fn jpeg_sample_precision_beyond_16_bits_is_corrupt() {
        // Found by bench/mutate.py: a bit flip made jpeg_gray.jpg's precision 74.
        let mut jpeg = fixture("image/jpeg_gray.jpg");
        let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).expect("SOF0");
        jpeg[sof + 4] = 74;
        assert!(matches!(image(jpeg), Err(ExtractError::Corrupt(_))));
    }

    #[test]
    fn jpeg_without_frame_header_is_corrupt() {
        let err = image(vec![0xff, 0xd8, 0xff, 0xda, 0, 2]).unwrap_err();
        assert!(matches!(err, ExtractError::Corrupt(_)), "{err}");
        let err = image(vec![0xff, 0xd8, 0xff, 0xe0, 0, 1]).unwrap_err();
        assert!(matches!(err, ExtractError::Corrupt(_)), "{err}");
        let truncated = image(vec![0xff, 0xd8, 0xff, 0xe0, 0, 200, 1, 2]).unwrap_err();
        assert_eq!(truncated.kind(), crate::job::ErrorKind::Corrupt);
    }

    #[test]
    fn png_with_huge_declared_size_needs_no_pixels() {
        // A header declaring 30000×30000 RGBA with an empty image data chunk.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&30000u32.to_be_bytes());
        ihdr.extend_from_slice(&30000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        png.extend_from_slice(b"\0\0\0\0IDAT\x35\xaf\x06\x1e");
        let m = image(png).unwrap();
        assert_eq!((m["width"].as_u64(), m["color_type"].as_str()), (Some(30000), Some("rgba")));
    }

    fn fixture(path: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Mutants whose headers claim what the file cannot hold (issue 10's campaign), beside the
    /// fixtures they were made from, which still read.
    #[test]
    fn sizes_the_file_cannot_back_are_corrupt() {
        for name in [
            "hostile/mutant_bmp_height_1.1e9.bmp",
            "hostile/mutant_heic_height_2.4e9.heic",
            "hostile/mutant_webp_canvas_height_16.7e6.webp",
            "hostile/mutant_webp_canvas_width_6.3e6.webp",
            "hostile/mutant_jpeg_precision_74.jpg",
            "hostile/mutant_heic_pixi_bits_255.heic",
            "hostile/mutant_tiff_tag_count_8e6.tif",
        ] {
            let result = image(fixture(name));
            assert!(matches!(result, Err(ExtractError::Corrupt(_))), "{name}: {result:?}");
        }
        for name in [
            "image/bmp_bottom_up.bmp",
            "image/bmp_top_down.bmp",
            "image/heic_basic.heic",
            "image/webp_lossy_alpha.webp",
            "image/webp_animated_3frames.webp",
            "image/jpeg_gray.jpg",
            "image/heic_irot90.heic",
            "image/tiff_tiled_16x16.tif",
            "image/tiff_multipage_3.tif",
            "image/tiff_be_mm.tif",
        ] {
            assert!(image(fixture(name)).is_ok(), "{name}");
        }
    }

    #[test]
    fn an_uncompressed_bmp_must_hold_its_pixels() {
        let bmp = fixture("image/bmp_bottom_up.bmp");
        // 48 rows of 64 × 3 bytes: one byte short is a picture the file does not hold.
        assert!(matches!(image(bmp[..bmp.len() - 1].to_vec()), Err(ExtractError::Corrupt(_))));
        assert!(check_bmp_pixels_fit(3, 2, 24, BI_RGB, 12 + 9).is_ok(), "the last row unpadded");
        assert!(check_bmp_pixels_fit(3, 2, 24, BI_RGB, 12 + 8).is_err());
        assert!(check_bmp_pixels_fit(u32::MAX, u32::MAX, 32, 1, 10).is_ok(), "RLE is not checked");
    }

    #[test]
    fn heif_sides_are_bounded_by_the_codec_and_the_grid() {
        assert_eq!(heif_max_side("heic", None), 16_888);
        assert_eq!(heif_max_side("heic", Some(4)), 4 * 16_888);
        assert_eq!(heif_max_side("avif", Some(100_000)), 256 * 65_536);
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
