//! Type detection from the first bytes of a file (magic numbers), never from its name.
//!
//! Hand-written rather than `infer`: we need finer answers than a MIME guess (an ISO-BMFF file
//! may be an image, a video or an audio file; DICOM may lack its preamble; text has no magic at
//! all), and each rule here is one line of a format's specification.

use super::mpeg_audio::{adts_header, frame_header};
use super::mpegts::{LAYOUT_PACKETS, packet_layout};
use crate::job::DataType;

/// How many leading bytes [`sniff`] wants to see.
pub const SNIFF_LEN: usize = 4096;

/// A file format recognised from its leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    Gif,
    WebP,
    Tiff,
    Bmp,
    /// HEIF still images: AVIF, HEIC (an ISO-BMFF `ftyp` with an image brand).
    Heif,
    /// Any other ISO-BMFF file: MP4, MOV, M4A, 3GP. Video or audio, decided by its tracks.
    IsoBmff,
    /// EBML: Matroska or WebM. Video or audio, decided by its tracks.
    Matroska,
    Wav,
    Aiff,
    Au,
    Mp3,
    Flac,
    Ogg,
    Adts,
    Caf,
    Avi,
    MpegTs,
    Pdf,
    Dicom,
    /// No magic number matched and the bytes look like text in some encoding.
    Text,
}

impl Format {
    /// The data type a format always has, or `None` when its contents decide
    /// (ISO-BMFF and Matroska hold either video or audio only).
    pub fn data_type(self) -> Option<DataType> {
        use Format::*;
        match self {
            Png | Jpeg | Gif | WebP | Tiff | Bmp | Heif => Some(DataType::Image),
            IsoBmff | Matroska => None,
            Avi | MpegTs => Some(DataType::Video),
            Wav | Aiff | Au | Mp3 | Flac | Ogg | Adts | Caf => Some(DataType::Audio),
            Pdf => Some(DataType::Pdf),
            Dicom => Some(DataType::Dicom),
            Text => Some(DataType::Text),
        }
    }
}

/// Recognise the format of a file from its first bytes (`head`, up to [`SNIFF_LEN`]).
///
/// Returns `None` for bytes that match nothing and are not text: the caller reports them as
/// `unsupported_type`. Text is decided by [`super::text::looks_like_text`].
pub fn sniff(head: &[u8]) -> Option<Format> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    // DICOM first: its 128-byte preamble is free for other formats' headers (a TIFF header is
    // common there), and "DICM" at 128 is the one signature that says what the file is.
    let format = if at(128, b"DICM") {
        Format::Dicom
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Format::Png
    } else if at(0, b"\xff\xd8\xff") {
        Format::Jpeg
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Format::Gif
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Format::WebP
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Format::Tiff
    } else if at(0, b"BM") && head.len() >= 26 && bmp_header_is_plausible(head) {
        Format::Bmp
    } else if at(4, b"ftyp") {
        if ftyp_is_still_image(head) { Format::Heif } else { Format::IsoBmff }
    } else if at(4, b"moov") || at(4, b"mdat") || at(4, b"wide") || at(4, b"free") || at(4, b"skip") {
        // QuickTime files from before `ftyp` existed start straight with an atom.
        Format::IsoBmff
    } else if at(0, b"\x1a\x45\xdf\xa3") {
        Format::Matroska
    } else if (at(0, b"RIFF") || at(0, b"RF64") || at(0, b"BW64")) && at(8, b"WAVE") {
        Format::Wav
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        Format::Avi
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Format::Aiff
    } else if at(0, b".snd") {
        Format::Au
    } else if at(0, b"fLaC") {
        Format::Flac
    } else if at(0, b"OggS") {
        Format::Ogg
    } else if at(0, b"caff") {
        Format::Caf
    } else if at(0, b"%PDF-") || head.get(..1024).unwrap_or(head).windows(5).any(|w| w == b"%PDF-") {
        // Readers accept the header anywhere in the first kilobyte (PDF 32000-1 annex H).
        Format::Pdf
    } else if dicom_without_preamble(head) {
        Format::Dicom
    } else if at(0, b"ID3") {
        Format::Mp3
    } else if is_mpeg_ts(head) {
        Format::MpegTs
    } else {
        mpeg_audio_frames(head)?
    };
    Some(format)
}

/// `BM` alone is too weak (text can start with it): the header size must be a known one.
fn bmp_header_is_plausible(head: &[u8]) -> bool {
    let dib_size = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
    matches!(dib_size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// Whether an `ftyp` box names a still-image brand (HEIF, AVIF) as its major brand, or lists
/// one while listing no movie brand.
fn ftyp_is_still_image(head: &[u8]) -> bool {
    const IMAGE: [&[u8; 4]; 8] = [b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"];
    let size = head.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let Some(ftyp) = head.get(8..size.min(head.len())) else { return false };
    let major = &ftyp[..4.min(ftyp.len())];
    if IMAGE.iter().any(|b| &b[..] == major) && major != b"avis" && major != b"msf1" {
        return true;
    }
    // Compatible brands follow the major brand and the minor version.
    let compatible: Vec<&[u8]> = ftyp.get(8..).unwrap_or(&[]).chunks_exact(4).collect();
    let has_image = compatible.iter().any(|b| *b == b"mif1" || *b == b"avif" || *b == b"heic");
    let has_movie = compatible.iter().chain([&major]).any(|b| {
        matches!(*b, b"isom" | b"iso2" | b"mp41" | b"mp42" | b"qt  " | b"M4A " | b"msf1" | b"avis" | b"dash")
    });
    has_image && !has_movie
}

/// DICOM files without the 128-byte preamble start with a group 0002 (meta) or 0008 element,
/// explicit VR (two letters) or implicit (a 4-byte length), little endian; or, for a bare
/// explicit VR big endian data set (old ACR-NEMA-style files), a group 0008 element in big
/// endian (implicit VR is little endian only).
fn dicom_without_preamble(head: &[u8]) -> bool {
    if head.len() < 8 {
        return false;
    }
    let explicit_vr = head[4..6].iter().all(u8::is_ascii_uppercase);
    let little_endian = {
        let group = u16::from_le_bytes([head[0], head[1]]);
        let element = u16::from_le_bytes([head[2], head[3]]);
        (group == 0x0002 || group == 0x0008) && element <= 0x0100
    };
    let big_endian = {
        let group = u16::from_be_bytes([head[0], head[1]]);
        let element = u16::from_be_bytes([head[2], head[3]]);
        group == 0x0008 && element <= 0x0100
    };
    (little_endian && (explicit_vr || (head[6] == 0 && head[7] == 0))) || (big_endian && explicit_vr)
}

/// MPEG transport streams: a sync byte at the start of each of the first three packets, in any
/// packet layout the transport-stream reader reads (188 bytes; 192 for M2TS, whose packets
/// start 4 bytes in; 204 with Reed-Solomon parity), and those three packets all in `head`.
fn is_mpeg_ts(head: &[u8]) -> bool {
    packet_layout(head).is_some_and(|layout| head.len() >= LAYOUT_PACKETS * layout.packet_len)
}

/// Raw MPEG audio (MP3) or ADTS AAC without a tag: a frame header that is valid and followed
/// by another frame header right where its length says, so random bytes don't pass.
fn mpeg_audio_frames(head: &[u8]) -> Option<Format> {
    let first = frame_at(head, 0)?;
    let second = frame_at(head, first.length)?;
    (first.format == second.format).then_some(first.format)
}

struct Frame {
    format: Format,
    length: usize,
}

/// The ADTS or MPEG audio layer III frame that starts at `offset`, if one does.
fn frame_at(head: &[u8], offset: usize) -> Option<Frame> {
    let bytes = head.get(offset..offset.checked_add(7)?)?;
    if let Some(adts) = adts_header(bytes) {
        return (adts.frame_len >= 7).then_some(Frame { format: Format::Adts, length: adts.frame_len });
    }
    // Only layer III counts here: MP2 is rare and its check would admit more noise. A free-format
    // stream (no frame length in the header) is not recognised either.
    let header = frame_header(bytes).filter(|header| header.layer == 3)?;
    Some(Frame { format: Format::Mp3, length: header.frame_len? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_decide_not_names() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(Format::Png));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some(Format::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), Some(Format::Wav));
        assert_eq!(sniff(b"RF64\xff\xff\xff\xffWAVEds64"), Some(Format::Wav));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some(Format::Pdf));
        assert_eq!(sniff(b"hello world"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn ftyp_brands_split_images_from_movies() {
        let ftyp = |major: &[u8; 4], compatible: &[&[u8; 4]]| {
            let mut b = Vec::new();
            b.extend_from_slice(&((16 + 4 * compatible.len()) as u32).to_be_bytes());
            b.extend_from_slice(b"ftyp");
            b.extend_from_slice(major);
            b.extend_from_slice(&[0; 4]);
            compatible.iter().for_each(|c| b.extend_from_slice(*c));
            b
        };
        assert_eq!(sniff(&ftyp(b"heic", &[b"mif1", b"heic"])), Some(Format::Heif));
        assert_eq!(sniff(&ftyp(b"avif", &[b"avif", b"mif1", b"miaf"])), Some(Format::Heif));
        assert_eq!(sniff(&ftyp(b"isom", &[b"isom", b"avc1", b"mp41"])), Some(Format::IsoBmff));
        assert_eq!(sniff(&ftyp(b"M4A ", &[b"M4A ", b"mp42"])), Some(Format::IsoBmff));
        assert_eq!(sniff(&ftyp(b"qt  ", &[b"qt  "])), Some(Format::IsoBmff));
    }

    #[test]
    fn mpeg_audio_needs_two_consistent_frames() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes a frame.
        let mut two = vec![0u8; 417 + 7];
        two[..4].copy_from_slice(&[0xff, 0xfb, 0x90, 0x00]);
        two[417..421].copy_from_slice(&[0xff, 0xfb, 0x90, 0x00]);
        assert_eq!(sniff(&two), Some(Format::Mp3));
        two[417] = 0; // the second header is gone: noise that happens to start with a sync word
        assert_eq!(sniff(&two), None);
        // ADTS: two 8-byte frames (48 kHz, one raw data block); a frame length under the 7-byte
        // header is not a frame.
        let adts = [0xff, 0xf1, 0x4c, 0x80, 0x01, 0x1f, 0xfc, 0x00];
        assert_eq!(sniff(&[adts, adts].concat()), Some(Format::Adts));
        let too_short = [0xff, 0xf1, 0x4c, 0x80, 0x00, 0x1f, 0xfc, 0x00];
        assert_eq!(sniff(&[too_short, too_short].concat()), None);
    }

    #[test]
    fn transport_streams_in_every_packet_layout() {
        let ts =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/video/ts_h264_aac.ts")).unwrap();
        let m2ts: Vec<u8> = ts.chunks(188).flat_map(|p| [&[0x0C, 0, 0, 0][..], p].concat()).collect();
        let with_parity: Vec<u8> = ts.chunks(188).flat_map(|p| [p, &[0xAB; 16][..]].concat()).collect();
        for (bytes, layout) in [(ts, "188"), (m2ts, "M2TS"), (with_parity, "204")] {
            assert_eq!(sniff(&bytes[..SNIFF_LEN]), Some(Format::MpegTs), "{layout}");
        }
        // Sync bytes only: three whole packets are needed, and at the layout's own places.
        let syncs = |packet_len: usize, first: usize, packets: usize| {
            let mut bytes = vec![0u8; packet_len * packets];
            (0..packets).for_each(|i| bytes[first + i * packet_len] = 0x47);
            bytes
        };
        assert_eq!(sniff(&syncs(192, 4, 3)), Some(Format::MpegTs));
        assert_eq!(sniff(&syncs(204, 0, 3)), Some(Format::MpegTs));
        assert_eq!(sniff(&syncs(188, 0, 2)), None, "two packets");
        assert_eq!(sniff(&syncs(192, 4, 3)[..575]), None, "the third M2TS packet cut short");
        assert_eq!(sniff(&syncs(192, 0, 3)), None, "192 bytes apart but not 4 bytes in");
    }

    #[test]
    fn dicom_with_and_without_preamble() {
        let mut with = vec![0u8; 132];
        with[128..].copy_from_slice(b"DICM");
        assert_eq!(sniff(&with), Some(Format::Dicom));
        with[..4].copy_from_slice(b"II*\0"); // a TIFF header in the preamble is allowed
        assert_eq!(sniff(&with), Some(Format::Dicom));
        // (0008,0005) CS "ISO_IR 100", explicit VR little endian, no preamble.
        assert_eq!(sniff(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"), Some(Format::Dicom));
        // The same in explicit VR big endian.
        assert_eq!(sniff(b"\x00\x08\x00\x05CS\x00\x0aISO_IR 100"), Some(Format::Dicom));
    }
}
