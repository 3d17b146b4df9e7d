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
    let mut decoder = image_webp::WebPDecoder::new(reader).map_err(|e| ExtractError::corrupt("WebP", e))?;
    let (width, height) = decoder.dimensions();
    let has_alpha = decoder.has_alpha();
    let frame_count = if decoder.is_animated() { decoder.num_frames() } else { 1 };
    let exif = decoder.exif_metadata().ok().flatten();
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

/// TIFF: the first page's size and colour; every page is counted by walking the IFD chain.
fn read_tiff(reader: &mut Source) -> Result<Header, ExtractError> {
    let corrupt = |e| ExtractError::corrupt("TIFF", e);
    let mut decoder = tiff::decoder::Decoder::new(reader).map_err(corrupt)?;
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

/// BMP: `image`'s header parser (it validates the DIB header variants and takes the absolute
/// height of top-down files); bits per pixel from the DIB header itself.
fn read_bmp(reader: &mut Source) -> Result<Header, ExtractError> {
    use image::ImageDecoder;
    // The DIB header's size fields: i32 width/height at 18/22 (u16 at 18/20 in the 12-byte
    // core header). A zero side is refused here, before `image` calls it "too large".
    let mut dib = [0u8; 16];
    reader.seek(SeekFrom::Start(14))?;
    reader.read_exact(&mut dib)?;
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

/// HEIC and AVIF: the primary item's properties (`ispe`, `pixi`, `irot`/`imir`), from the
/// ISO-BMFF `meta` box; no decoder is needed.
fn read_heif(source: &mut dyn ReadSeek) -> Result<Header, ExtractError> {
    let heif = super::isobmff::read_heif(source)?;
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
