//! AVI video metadata (DESIGN §3 `video`) from the RIFF header list `hdrl` alone: the main
//! header `avih`, each stream's `strh`, `strf` and OpenDML `vprp`, and OpenDML's `dmlh`. The
//! media (`movi`) and the index (`idx1`, `indx`) are never read: everything we report is in
//! those few headers.
//!
//! The values are the ones ffprobe derives from the same fields:
//! - frame rate: the video stream's `dwRate / dwScale` (ffprobe's `avg_frame_rate`);
//! - frame count: the video stream's `dwLength`, or OpenDML's `dmlh` total when it is larger
//!   (files past the first 1 GiB `RIFF` continue in `RIFF AVIX` chunks, counted only there);
//! - duration: the longest stream's `dwLength × dwScale / dwRate`, as ffprobe's format duration
//!   is the longest stream's (an MP3 track often outlasts the video by its encoder padding).
//!   Like ffmpeg, an audio stream counts only when its `dwSampleSize` is 0 (VBR: `dwLength`
//!   counts frames): writers disagree on what `dwLength` counts when it is not;
//! - sample aspect ratio: `vprp`'s frame aspect over its active size, as ffmpeg's AVI reader
//!   derives it (1:1 without one);
//! - codecs: ffmpeg's RIFF tag tables, by the video's `biCompression` FourCC and the audio's
//!   `wFormatTag`.
//!
//! Every chunk is read through a bounded, fixed-size buffer: declared sizes only move the read
//! position, so an absurd size costs a seek, never an allocation.

use std::io::{self, SeekFrom};

use super::audio::wave_format::{self, WAVE_FORMAT_EXTENSIBLE, WaveFormat, subformat_tag};
use super::video::{AspectRatio, FrameRateMode, VideoMetadata, display_size, whole_microseconds};
use super::{ExtractError, Extracted, ReadSeek};

const AVI: &str = "AVI";

/// Chunks we step over, all lists together, before giving up: real headers have a few dozen;
/// the bound stops a file of millions of empty chunks from costing millions of seeks.
const MAX_CHUNKS: usize = 4096;
/// Streams we accept: real files have a handful; the bound caps what a header can make us keep.
const MAX_STREAMS: usize = 100;

/// `avih` fields up to `dwHeight`: a shorter main header is broken.
const AVIH_LEN: usize = 40;
/// `strh` fields up to `dwSampleSize`.
const STRH_LEN: usize = 48;
/// `strf` bytes we look at: a `BITMAPINFOHEADER` is 40, a `WAVEFORMATEXTENSIBLE` ends at 40.
const STRF_LEN: usize = 40;

type FourCc = [u8; 4];

/// A chunk's identifier and where its data lies. `size` is as declared: it may lie.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    id: FourCc,
    data_start: u64,
    size: u64,
}

impl Chunk {
    /// Where the next chunk starts: chunks are padded to an even length.
    fn end(&self) -> u64 {
        self.data_start.saturating_add(self.size).saturating_add(self.size & 1)
    }
}

/// What kind of stream a `strh` declares (`fccType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Video,
    Audio,
    /// Subtitles (`txts`), MIDI (`mids`) and anything else: not reported.
    Other,
}

/// The codec description of a stream's `strf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamFormat {
    /// `BITMAPINFOHEADER`.
    Bitmap { width: i32, height: i32, compression: FourCc },
    /// `WAVEFORMATEX`, `WAVE_FORMAT_EXTENSIBLE` resolved to its sub-format's tag when the GUID
    /// is of the WAVE family.
    Wave(WaveFormat),
}

/// One `strl` list: the stream header and its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stream {
    kind: StreamKind,
    handler: FourCc,
    /// The stream's time base is `scale / rate` seconds; `dwLength` counts those units.
    scale: u32,
    rate: u32,
    /// `dwStart`: the time (in `scale / rate` units) the stream starts at.
    start: u32,
    length: u32,
    /// Bytes per sample for fixed-size samples (PCM, CBR audio); 0 when chunks vary.
    sample_size: u32,
    format: Option<StreamFormat>,
    /// The pixel shape OpenDML's `vprp` gives (what ffmpeg writes for a non-square one).
    sample_aspect_ratio: Option<AspectRatio>,
}

impl Stream {
    /// `dwLength × dwScale / dwRate` seconds, or `None` when the time base is zero.
    fn duration_seconds(&self, units: u64) -> Option<f64> {
        (self.scale > 0 && self.rate > 0).then(|| units as f64 * f64::from(self.scale) / f64::from(self.rate))
    }
}

/// What the header list says.
#[derive(Debug, Default)]
struct HeaderList {
    micros_per_frame: u32,
    total_frames: u32,
    width: u32,
    height: u32,
    streams: Vec<Stream>,
    /// OpenDML's total frame count over every `RIFF` chunk of the file.
    odml_total_frames: Option<u32>,
}

/// Extracts the video metadata of an AVI file.
pub fn extract(source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    let header = read_header_list(source)?;
    let video = header.streams.iter().find(|s| s.kind == StreamKind::Video);
    let audio = header.streams.iter().find(|s| s.kind == StreamKind::Audio);
    let Some(video) = video else {
        if audio.is_some() {
            return Err(ExtractError::Unsupported(
                "an AVI file with audio but no video stream: audio-only AVI is not read".into(),
            ));
        }
        return Err(ExtractError::corrupt(AVI, "its header list declares no video or audio stream"));
    };
    Ok(metadata(&header, video, audio).into_extracted("video/x-msvideo"))
}

fn metadata(header: &HeaderList, video: &Stream, audio: Option<&Stream>) -> VideoMetadata {
    let (width, height) = match video.format {
        // A negative height marks a top-down bitmap; the size is its magnitude.
        Some(StreamFormat::Bitmap { width, height, .. }) if width != 0 && height != 0 => {
            (width.unsigned_abs(), height.unsigned_abs())
        }
        _ => (header.width, header.height),
    };
    // AVI's only pixel shape is OpenDML's `vprp` (ffmpeg's too; it does not look into the
    // codec's own bitstream of an AVI for one either when `vprp` is there).
    let sample_aspect_ratio = video.sample_aspect_ratio.unwrap_or(AspectRatio::SQUARE);
    let (display_width, display_height) = display_size(width, height, 0, sample_aspect_ratio);
    let frame_count = frame_count(header, video);
    let video_seconds = match video.duration_seconds(frame_count) {
        Some(seconds) => Some(seconds),
        // ffmpeg takes the main header's frame period when dwScale or dwRate is 0.
        None if header.micros_per_frame > 0 => {
            Some(frame_count as f64 * f64::from(header.micros_per_frame) / 1e6)
        }
        None => None,
    };
    let audio_seconds =
        audio.filter(|a| a.sample_size == 0).and_then(|a| a.duration_seconds(u64::from(a.length)));
    let duration_seconds =
        [video_seconds, audio_seconds].into_iter().flatten().reduce(f64::max).map(whole_microseconds);
    VideoMetadata {
        container: "avi",
        duration_seconds,
        width,
        height,
        rotation: 0,
        sample_aspect_ratio,
        display_width,
        display_height,
        frame_rate: frame_rate(header, video),
        // Every chunk of an AVI stream lasts one `dwScale / dwRate` period.
        frame_rate_mode: Some(FrameRateMode::Constant),
        frame_count: Some(frame_count),
        start_time_seconds: video.duration_seconds(u64::from(video.start)).or(Some(0.0)),
        video_codec: video_codec(video),
        audio_codec: audio.and_then(audio_codec).map(str::to_owned),
        has_audio: audio.is_some(),
    }
}

/// The video stream's `dwLength`; OpenDML's total when larger (writers that leave `dwLength`
/// at the first `RIFF` chunk's count); the main header's count when neither is set.
fn frame_count(header: &HeaderList, video: &Stream) -> u64 {
    let declared = video.length.max(header.odml_total_frames.unwrap_or(0));
    u64::from(if declared > 0 { declared } else { header.total_frames })
}

/// `dwRate / dwScale`; the main header's `dwMicroSecPerFrame` when either is 0 (as ffmpeg
/// does for "broken software"); `None` when that is 0 too, rather than ffmpeg's guess of 25.
fn frame_rate(header: &HeaderList, video: &Stream) -> Option<f64> {
    if video.scale > 0 && video.rate > 0 {
        Some(f64::from(video.rate) / f64::from(video.scale))
    } else if header.micros_per_frame > 0 {
        Some(1e6 / f64::from(header.micros_per_frame))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the header list
// ---------------------------------------------------------------------------------------------

/// Finds `LIST hdrl` among the top-level chunks (it is the first in every file we have seen,
/// but JUNK may precede it) and reads it.
fn read_header_list(source: &mut dyn ReadSeek) -> Result<HeaderList, ExtractError> {
    let file_len = source.seek(SeekFrom::End(0))?;
    let mut riff = [0u8; 12];
    read_exact_at(source, 0, &mut riff)?;
    if &riff[..4] != b"RIFF" || &riff[8..] != b"AVI " {
        return Err(ExtractError::corrupt(AVI, "it does not start with a RIFF 'AVI ' header"));
    }
    // A RIFF size of 0 or past the end (a recording cut short) means "to the end of the file".
    let riff_end = match u64::from(le_u32(&riff, 4)) {
        0 => file_len,
        size => size.saturating_add(8).min(file_len),
    };
    let mut budget = MAX_CHUNKS;
    let mut top_level = Chunks::new(12, riff_end);
    while let Some(chunk) = top_level.next(source, &mut budget)? {
        if &chunk.id != b"LIST" {
            continue;
        }
        match &list_type(source, &chunk)? {
            b"hdrl" => return parse_header_list(source, &chunk, file_len, &mut budget),
            b"movi" => break, // the headers always come before the media
            _ => {}
        }
    }
    Err(ExtractError::corrupt(AVI, "it has no header list (LIST 'hdrl') before its media"))
}

fn parse_header_list(
    source: &mut dyn ReadSeek,
    hdrl: &Chunk,
    file_len: u64,
    budget: &mut usize,
) -> Result<HeaderList, ExtractError> {
    let mut header = HeaderList::default();
    let mut main_header_seen = false;
    let mut children = Chunks::inside_list(hdrl, file_len);
    while let Some(chunk) = children.next(source, budget)? {
        match &chunk.id {
            b"avih" => {
                let mut avih = [0u8; AVIH_LEN];
                read_chunk_prefix(source, &chunk, file_len, &mut avih)?;
                header.micros_per_frame = le_u32(&avih, 0);
                header.total_frames = le_u32(&avih, 16);
                header.width = le_u32(&avih, 32);
                header.height = le_u32(&avih, 36);
                main_header_seen = true;
            }
            b"LIST" => match &list_type(source, &chunk)? {
                b"strl" => {
                    if header.streams.len() >= MAX_STREAMS {
                        return Err(ExtractError::TooLarge(format!(
                            "an AVI header declaring more than {MAX_STREAMS} streams"
                        )));
                    }
                    if let Some(stream) = parse_stream_list(source, &chunk, file_len, budget)? {
                        header.streams.push(stream);
                    }
                }
                b"odml" => header.odml_total_frames = parse_odml_list(source, &chunk, file_len, budget)?,
                _ => {}
            },
            _ => {}
        }
    }
    if !main_header_seen {
        return Err(ExtractError::corrupt(AVI, "its header list has no main header (avih)"));
    }
    Ok(header)
}

/// A `strl` list: `strh` then `strf` (then optional `strd`, `strn`, `indx`, skipped). A list
/// without `strh` is ignored, as ffmpeg does.
fn parse_stream_list(
    source: &mut dyn ReadSeek,
    strl: &Chunk,
    file_len: u64,
    budget: &mut usize,
) -> Result<Option<Stream>, ExtractError> {
    let mut stream = None;
    let mut format = None;
    let mut vprp = None;
    let mut children = Chunks::inside_list(strl, file_len);
    while let Some(chunk) = children.next(source, budget)? {
        match &chunk.id {
            b"strh" if stream.is_none() => {
                let mut strh = [0u8; STRH_LEN];
                read_chunk_prefix(source, &chunk, file_len, &mut strh)?;
                let kind = match &strh[..4] {
                    b"vids" => StreamKind::Video,
                    b"auds" => StreamKind::Audio,
                    _ => StreamKind::Other,
                };
                stream = Some(Stream {
                    kind,
                    handler: fourcc(&strh, 4),
                    scale: le_u32(&strh, 20),
                    rate: le_u32(&strh, 24),
                    start: le_u32(&strh, 28),
                    length: le_u32(&strh, 32),
                    sample_size: le_u32(&strh, 44),
                    format: None,
                    sample_aspect_ratio: None,
                });
            }
            b"vprp" if vprp.is_none() => {
                let mut header = [0u8; VPRP_LEN];
                if read_chunk_prefix_up_to(source, &chunk, file_len, &mut header)? == VPRP_LEN {
                    vprp = vprp_aspect_ratio(&header);
                }
            }
            b"strf" if format.is_none() => {
                let mut strf = [0u8; STRF_LEN];
                let got = read_chunk_prefix_up_to(source, &chunk, file_len, &mut strf)?;
                format = Some((strf, got));
            }
            _ => {}
        }
    }
    let Some(mut stream) = stream else { return Ok(None) };
    if let Some((strf, len)) = format {
        stream.format = parse_stream_format(stream.kind, &strf[..len])?;
    }
    stream.sample_aspect_ratio = vprp;
    Ok(Some(stream))
}

/// `vprp` (OpenDML's VideoPropHeader) up to the active frame size: format, standard, refresh
/// rate, total width and lines, then the frame's aspect ratio (`den`, `num` as 16-bit halves)
/// and its active width and height.
const VPRP_LEN: usize = 32;

/// The sample aspect ratio a `vprp` gives: the frame's shape over its active size, as ffmpeg
/// reads it (4:3 at 720×576 is 16:15). `None` when a value is 0 or the ratio absurd.
fn vprp_aspect_ratio(vprp: &[u8; VPRP_LEN]) -> Option<AspectRatio> {
    let frame_den = u64::from(u16::from_le_bytes([vprp[20], vprp[21]]));
    let frame_num = u64::from(u16::from_le_bytes([vprp[22], vprp[23]]));
    let (active_width, active_height) = (u64::from(le_u32(vprp, 24)), u64::from(le_u32(vprp, 28)));
    if active_width == 0 || active_height == 0 {
        return None;
    }
    AspectRatio::new(frame_num * active_height, frame_den * active_width)
}

/// A `strf` chunk, read by the kind its `strh` declared.
fn parse_stream_format(kind: StreamKind, strf: &[u8]) -> Result<Option<StreamFormat>, ExtractError> {
    match kind {
        StreamKind::Video => {
            if strf.len() < 20 {
                return Err(ExtractError::corrupt(AVI, "a video stream's BITMAPINFOHEADER is cut short"));
            }
            Ok(Some(StreamFormat::Bitmap {
                width: le_i32(strf, 4),
                height: le_i32(strf, 8),
                compression: fourcc(strf, 16),
            }))
        }
        StreamKind::Audio => {
            let mut format = WaveFormat::from_bytes(strf)
                .ok_or_else(|| ExtractError::corrupt(AVI, "an audio stream's WAVEFORMATEX is cut short"))?;
            if format.format_tag == WAVE_FORMAT_EXTENSIBLE {
                // A vendor-defined sub-format GUID stays unnamed.
                format.format_tag =
                    strf.get(24..40).and_then(subformat_tag).unwrap_or(WAVE_FORMAT_EXTENSIBLE);
            }
            Ok(Some(StreamFormat::Wave(format)))
        }
        StreamKind::Other => Ok(None),
    }
}

/// `LIST odml` / `dmlh`: the OpenDML total frame count.
fn parse_odml_list(
    source: &mut dyn ReadSeek,
    odml: &Chunk,
    file_len: u64,
    budget: &mut usize,
) -> Result<Option<u32>, ExtractError> {
    let mut children = Chunks::inside_list(odml, file_len);
    while let Some(chunk) = children.next(source, budget)? {
        if &chunk.id == b"dmlh" {
            let mut dmlh = [0u8; 4];
            read_chunk_prefix(source, &chunk, file_len, &mut dmlh)?;
            return Ok(Some(le_u32(&dmlh, 0)));
        }
    }
    Ok(None)
}

/// The chunks in a byte range of the file, read one header at a time.
struct Chunks {
    position: u64,
    end: u64,
}

impl Chunks {
    fn new(start: u64, end: u64) -> Self {
        Chunks { position: start, end }
    }

    /// The chunks of a `LIST`, after its 4-byte type, and not past the end of the file.
    fn inside_list(list: &Chunk, file_len: u64) -> Self {
        let end = list.data_start.saturating_add(list.size).min(file_len);
        Chunks::new(list.data_start.saturating_add(4), end)
    }

    /// The next chunk header, or `None` at the end of the range. A chunk may declare more
    /// bytes than its parent holds: it is returned (its reader checks what it needs), and the
    /// walk ends after it.
    fn next(&mut self, source: &mut dyn ReadSeek, budget: &mut usize) -> Result<Option<Chunk>, ExtractError> {
        if self.end.saturating_sub(self.position) < 8 {
            return Ok(None);
        }
        *budget = budget.checked_sub(1).ok_or_else(|| {
            ExtractError::TooLarge(format!("more than {MAX_CHUNKS} chunks before the end of the AVI headers"))
        })?;
        let mut header = [0u8; 8];
        read_exact_at(source, self.position, &mut header)?;
        let chunk = Chunk {
            id: fourcc(&header, 0),
            data_start: self.position + 8,
            size: u64::from(le_u32(&header, 4)),
        };
        self.position = chunk.end();
        Ok(Some(chunk))
    }
}

/// A `LIST` chunk's type: its first four data bytes.
fn list_type(source: &mut dyn ReadSeek, list: &Chunk) -> Result<FourCc, ExtractError> {
    if list.size < 4 {
        return Err(ExtractError::corrupt(AVI, "a LIST chunk is shorter than its type"));
    }
    let mut kind = [0u8; 4];
    read_exact_at(source, list.data_start, &mut kind)?;
    Ok(kind)
}

/// Reads the first `buf.len()` bytes of a chunk, which must hold them.
fn read_chunk_prefix(
    source: &mut dyn ReadSeek,
    chunk: &Chunk,
    file_len: u64,
    buf: &mut [u8],
) -> Result<(), ExtractError> {
    let got = read_chunk_prefix_up_to(source, chunk, file_len, buf)?;
    if got < buf.len() {
        let id = String::from_utf8_lossy(&chunk.id).into_owned();
        return Err(ExtractError::corrupt(
            AVI,
            format!("its '{id}' chunk holds {got} bytes, fewer than its fields"),
        ));
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes of a chunk: fewer if it declares fewer or the file ends.
fn read_chunk_prefix_up_to(
    source: &mut dyn ReadSeek,
    chunk: &Chunk,
    file_len: u64,
    buf: &mut [u8],
) -> Result<usize, ExtractError> {
    let available = file_len.saturating_sub(chunk.data_start).min(chunk.size);
    let len = buf.len().min(usize::try_from(available).unwrap_or(usize::MAX));
    read_exact_at(source, chunk.data_start, &mut buf[..len])?;
    Ok(len)
}

fn read_exact_at(source: &mut dyn ReadSeek, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    source.seek(SeekFrom::Start(offset))?;
    source.read_exact(buf)
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn le_i32(bytes: &[u8], at: usize) -> i32 {
    le_u32(bytes, at) as i32
}

fn fourcc(bytes: &[u8], at: usize) -> FourCc {
    [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
}

// ---------------------------------------------------------------------------------------------
// Codec names (ffmpeg's libavformat/riff.c tables)
// ---------------------------------------------------------------------------------------------

/// ffprobe's `codec_name` for the video stream: by `biCompression` (the `strh` handler only
/// when there is no `strf`), matched case-insensitively as ffmpeg falls back to. An unknown
/// FourCC is shown lower-cased, as the MP4 reader does, so that the user sees what it is.
fn video_codec(video: &Stream) -> Option<String> {
    let tag = match video.format {
        Some(StreamFormat::Bitmap { compression, .. }) => compression,
        _ => video.handler,
    };
    let name = match u32::from_le_bytes(tag) {
        // BI_RGB and BI_BITFIELDS: uncompressed; BI_RLE8 and BI_RLE4: Microsoft RLE.
        0 | 3 => "rawvideo",
        1 | 2 => "msrle",
        _ => match &tag.map(|b| b.to_ascii_uppercase()) {
            b"H264" | b"X264" | b"AVC1" | b"DAVC" | b"VSSH" | b"Q264" | b"V264" | b"GAVC" | b"UMSV" => "h264",
            b"HEVC" | b"H265" | b"X265" | b"HVC1" | b"HEV1" => "hevc",
            b"XVID" | b"DIVX" | b"DX50" | b"FMP4" | b"MP4V" | b"MP4S" | b"M4S2" | b"DIV1" | b"BLZ0"
            | b"UMP4" | b"WV1F" | b"SEDG" | b"RMP4" | b"3IV2" | b"FFDS" | b"FVFW" | b"DCOD" | b"MVXM"
            | b"PM4V" | b"SMP4" | b"DXGM" | b"VIDM" | b"M4T3" | b"GEOX" | b"HDX4" | b"DM4V" | b"DMK2"
            | b"DYM4" | b"DIGI" | b"EPHV" | b"EM4A" | b"M4CC" | b"SN40" | b"VSPX" | b"ULDX" | b"GEOV"
            | b"SIPP" | b"XVIX" | b"DREX" | b"QMP4" | b"PLV1" | b"GLV4" | b"GMP4" | b"MNM4" | b"GTM4"
            | b"ZMP4" => "mpeg4",
            b"MP43" | b"DIV3" | b"MPG3" | b"DIV4" | b"DIV5" | b"DIV6" | b"DVX3" | b"AP41" | b"COL1"
            | b"COL0" => "msmpeg4v3",
            b"MP42" | b"DIV2" => "msmpeg4v2",
            b"MPG4" | b"MP41" => "msmpeg4v1",
            b"WMV1" => "wmv1",
            b"WMV2" | b"GXVE" => "wmv2",
            b"WMV3" => "wmv3",
            b"WVC1" | b"WMVA" => "vc1",
            b"H263" | b"X263" | b"T263" | b"L263" | b"VX1K" | b"ZYGO" | b"M263" => "h263",
            b"I263" => "h263i",
            b"U263" | b"VIV1" => "h263p",
            b"MJPG" | b"MJPA" | b"AVRN" | b"LJPG" | b"JPGL" | b"JPEG" | b"IJPG" | b"AVI1" | b"ACDV"
            | b"QIVG" | b"SLMJ" | b"CJPG" | b"JFIF" | b"DMB1" => "mjpeg",
            b"MJLS" => "jpegls",
            b"MJ2C" | b"LJ2C" | b"LJ2K" | b"IPJ2" => "jpeg2000",
            b"MPG1" | b"PIM1" | b"VCR2" | b"BW10" | b"XMPG" => "mpeg1video",
            b"MPG2" | b"MPEG" | b"PIM2" | b"DVR " | b"MMES" | b"LMP2" | b"SLIF" | b"EM2V" | b"MPGV" => {
                "mpeg2video"
            }
            b"DVSD" | b"DVHD" | b"DVSL" | b"DV25" | b"DV50" | b"CDVC" | b"CDVH" | b"CDV5" | b"DVC "
            | b"DVCS" | b"DVH1" | b"DVIS" | b"PDVC" | b"SL25" | b"SLDV" | b"AVD1" => "dvvideo",
            b"DIB " | b"RAW " | b"Y800" | b"I420" | b"IYUV" | b"YV12" | b"YUY2" | b"YUYV" | b"UYVY"
            | b"YVYU" | b"Y41P" | b"YUNV" | b"UYNV" | b"Y422" | b"HDYC" | b"NV12" | b"NV21" | b"YV16"
            | b"YV24" | b"RGB " | b"RGBA" => "rawvideo",
            b"VP80" => "vp8",
            b"VP90" => "vp9",
            b"AV01" => "av1",
            b"VP30" | b"VP31" => "vp3",
            b"VP50" => "vp5",
            b"VP60" | b"VP61" | b"VP62" => "vp6",
            b"VP6F" | b"FLV4" => "vp6f",
            b"VP6A" => "vp6a",
            b"VP70" | b"VP71" | b"VP72" => "vp7",
            b"FFV1" => "ffv1",
            b"HFYU" => "huffyuv",
            b"FFVH" => "ffvhuff",
            b"CVID" => "cinepak",
            b"MSVC" | b"CRAM" | b"WHAM" => "msvideo1",
            b"IV31" | b"IV32" => "indeo3",
            b"IV41" => "indeo4",
            b"IV50" => "indeo5",
            b"TSCC" => "tscc",
            b"TSC2" => "tscc2",
            b"ZMBV" => "zmbv",
            b"CSCD" => "cscd",
            b"FPS1" => "fraps",
            b"LAGS" => "lagarith",
            b"MAGY" => "magicyuv",
            b"SNOW" => "snow",
            b"FLV1" => "flv1",
            b"SVQ1" => "svq1",
            b"MPNG" | b"PNG1" | b"PNG " => "png",
            b"AVDN" | b"AVDH" => "dnxhd",
            b"APCH" | b"APCN" | b"APCS" | b"APCO" | b"AP4H" => "prores",
            b"HAP1" | b"HAP5" | b"HAPY" => "hap",
            b"CFHD" => "cfhd",
            b"V210" => "v210",
            [b'U', b'L' | b'Q' | b'M', ..] => "utvideo", // ULRG, ULY0, UQY2, UMH4, ...
            _ => return printable_fourcc(tag),
        },
    };
    Some(name.to_owned())
}

/// An unknown FourCC as text, when it is text.
fn printable_fourcc(tag: FourCc) -> Option<String> {
    let text =
        String::from_utf8_lossy(&tag).trim_matches(|c: char| c == ' ' || c == '\0').to_ascii_lowercase();
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic())).then_some(text)
}

/// ffprobe's `codec_name` for the audio stream, from the table WAV files use too.
fn audio_codec(audio: &Stream) -> Option<&'static str> {
    let Some(StreamFormat::Wave(format)) = audio.format else { return None };
    wave_format::codec(&format).0
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn fixture(path: &str) -> std::fs::File {
        let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::File::open(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn extract_bytes(bytes: Vec<u8>) -> Result<Extracted, ExtractError> {
        extract(&mut Cursor::new(bytes))
    }

    /// ffprobe -show_streams -show_format: mpeg4 (FMP4) 320x240 25/1, nb_frames 25; mp3;
    /// format duration 1.044898 (the MP3 stream's 40 × 1152 / 44100; the video's is 1.0).
    #[test]
    fn fixture_matches_ffprobe() {
        let extracted = extract(&mut fixture("video/avi_mpeg4_mp3.avi")).unwrap();
        assert_eq!(
            (extracted.data_type, extracted.mime_type.as_str()),
            (crate::job::DataType::Video, "video/x-msvideo")
        );
        let m = extracted.metadata;
        assert_eq!(m["container"], "avi");
        assert_eq!(m["duration_seconds"].as_f64(), Some(1.044898));
        assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(320), Some(240)));
        assert_eq!((m["display_width"].as_u64(), m["display_height"].as_u64()), (Some(320), Some(240)));
        assert_eq!(m["rotation"].as_u64(), Some(0));
        assert_eq!(m["frame_rate"].as_f64(), Some(25.0));
        assert_eq!(m["frame_count"].as_u64(), Some(25));
        assert_eq!((m["video_codec"].as_str(), m["audio_codec"].as_str()), (Some("mpeg4"), Some("mp3")));
        assert_eq!(m["has_audio"].as_bool(), Some(true));
    }

    /// Counts the bytes read, to prove that `movi` is skipped, not read.
    struct Counting<R> {
        inner: R,
        read: u64,
    }

    impl<R: io::Read> io::Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    impl<R: io::Seek> io::Seek for Counting<R> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn only_the_headers_are_read() {
        let mut source = Counting { inner: fixture("video/avi_mpeg4_mp3.avi"), read: 0 };
        extract(&mut source).unwrap();
        // Of 80958 bytes: chunk headers and the fields of avih, strh and strf.
        assert!(source.read < 1024, "{} bytes read", source.read);
    }

    // --- hand-built files ---

    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(0);
        }
        out
    }

    fn list(kind: &[u8; 4], children: &[Vec<u8>]) -> Vec<u8> {
        chunk(b"LIST", &[kind.to_vec(), children.concat()].concat())
    }

    fn avih(micros_per_frame: u32, total_frames: u32, width: u32, height: u32) -> Vec<u8> {
        let mut body = vec![0u8; 56];
        body[0..4].copy_from_slice(&micros_per_frame.to_le_bytes());
        body[16..20].copy_from_slice(&total_frames.to_le_bytes());
        body[32..36].copy_from_slice(&width.to_le_bytes());
        body[36..40].copy_from_slice(&height.to_le_bytes());
        chunk(b"avih", &body)
    }

    fn strh(kind: &[u8; 4], handler: &[u8; 4], scale: u32, rate: u32, length: u32) -> Vec<u8> {
        let mut body = vec![0u8; 56];
        body[0..4].copy_from_slice(kind);
        body[4..8].copy_from_slice(handler);
        body[20..24].copy_from_slice(&scale.to_le_bytes());
        body[24..28].copy_from_slice(&rate.to_le_bytes());
        body[32..36].copy_from_slice(&length.to_le_bytes());
        chunk(b"strh", &body)
    }

    fn bitmap(width: i32, height: i32, compression: &[u8; 4]) -> Vec<u8> {
        let mut body = vec![0u8; 40];
        body[0..4].copy_from_slice(&40u32.to_le_bytes());
        body[4..8].copy_from_slice(&width.to_le_bytes());
        body[8..12].copy_from_slice(&height.to_le_bytes());
        body[16..20].copy_from_slice(compression);
        chunk(b"strf", &body)
    }

    fn wave(format_tag: u16, channels: u16, block_align: u16, bits: u16) -> Vec<u8> {
        let mut body = vec![0u8; 18];
        body[0..2].copy_from_slice(&format_tag.to_le_bytes());
        body[2..4].copy_from_slice(&channels.to_le_bytes());
        body[12..14].copy_from_slice(&block_align.to_le_bytes());
        body[14..16].copy_from_slice(&bits.to_le_bytes());
        chunk(b"strf", &body)
    }

    fn avi(header_children: &[Vec<u8>]) -> Vec<u8> {
        let hdrl = list(b"hdrl", header_children);
        let movi = list(b"movi", &[chunk(b"00dc", &[0; 16])]);
        let body = [b"AVI ".to_vec(), hdrl, movi].concat();
        chunk(b"RIFF", &body)
    }

    fn video_stream(scale: u32, rate: u32, length: u32) -> Vec<u8> {
        list(b"strl", &[strh(b"vids", b"H264", scale, rate, length), bitmap(1920, -1080, b"H264")])
    }

    fn metadata_of(bytes: Vec<u8>) -> serde_json::Value {
        extract_bytes(bytes).unwrap().metadata
    }

    #[test]
    fn ntsc_rate_top_down_bitmap_and_pcm_audio() {
        let file = avi(&[
            avih(33_367, 300, 1920, 1080),
            video_stream(1001, 30_000, 300),
            list(b"strl", &[strh(b"auds", &[0; 4], 4, 192_000, 480_000), wave(1, 2, 4, 16)]),
        ]);
        let m = metadata_of(file);
        assert!((m["frame_rate"].as_f64().unwrap() - 30000.0 / 1001.0).abs() < 1e-9);
        assert_eq!(m["duration_seconds"].as_f64(), Some(10.01)); // audio: 480000 × 4 / 192000 = 10.0
        assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(1920), Some(1080)));
        assert_eq!((m["video_codec"].as_str(), m["audio_codec"].as_str()), (Some("h264"), Some("pcm_s16le")));
    }

    /// A `vprp` chunk: frame aspect `num:den` over an active `width`×`height`.
    fn vprp(num: u16, den: u16, width: u32, height: u32) -> Vec<u8> {
        let mut body = vec![0u8; 36];
        body[12..16].copy_from_slice(&25u32.to_le_bytes());
        body[20..22].copy_from_slice(&den.to_le_bytes());
        body[22..24].copy_from_slice(&num.to_le_bytes());
        body[24..28].copy_from_slice(&width.to_le_bytes());
        body[28..32].copy_from_slice(&height.to_le_bytes());
        chunk(b"vprp", &body)
    }

    #[test]
    fn the_pixel_shape_comes_from_vprp() {
        let shaped = |vprp_chunk: Vec<u8>| {
            let stream =
                list(b"strl", &[strh(b"vids", b"FMP4", 1, 25, 25), bitmap(720, 576, b"FMP4"), vprp_chunk]);
            let m = metadata_of(avi(&[avih(40_000, 25, 720, 576), stream]));
            (m["sample_aspect_ratio"].as_str().unwrap().to_owned(), m["display_width"].as_u64().unwrap())
        };
        assert_eq!(shaped(vprp(4, 3, 720, 576)), ("16:15".to_owned(), 768));
        assert_eq!(shaped(vprp(16, 9, 720, 576)), ("64:45".to_owned(), 1024));
        // No shape given, or an absurd one: square pixels.
        assert_eq!(shaped(vprp(0, 0, 720, 576)), ("1:1".to_owned(), 720));
        assert_eq!(shaped(vprp(4, 3, 0, 576)), ("1:1".to_owned(), 720));
        assert_eq!(shaped(vprp(60_000, 1, 720, 576)), ("1:1".to_owned(), 720));
        assert_eq!(shaped(chunk(b"vprp", &[1, 2, 3])), ("1:1".to_owned(), 720), "a vprp too short to read");
    }

    #[test]
    fn only_variable_size_audio_lengths_count_towards_the_duration() {
        // 2 s of video; 50 MP3 frames of 1152 samples at 44100 Hz = 1.306 s, or 100 = 2.612 s.
        let mp3 = |frames: u32, sample_size: u32| {
            let mut strh = strh(b"auds", &[0; 4], 1152, 44_100, frames);
            strh[8 + 44..8 + 48].copy_from_slice(&sample_size.to_le_bytes());
            list(b"strl", &[strh, wave(0x55, 2, 1152, 0)])
        };
        let duration = |audio| metadata_of(avi(&[avih(40_000, 50, 64, 48), video_stream(1, 25, 50), audio]));
        assert_eq!(duration(mp3(50, 0))["duration_seconds"].as_f64(), Some(2.0));
        assert_eq!(duration(mp3(100, 0))["duration_seconds"].as_f64(), Some(2.612245));
        // dwSampleSize > 0: what dwLength counts depends on the writer; ffmpeg ignores it too.
        assert_eq!(duration(mp3(100, 1))["duration_seconds"].as_f64(), Some(2.0));
    }

    #[test]
    fn opendml_total_frames_count_past_the_first_riff() {
        let odml = list(b"odml", &[chunk(b"dmlh", &90_000u32.to_le_bytes())]);
        let m = metadata_of(avi(&[avih(40_000, 20_000, 1920, 1080), video_stream(1, 25, 20_000), odml]));
        assert_eq!(m["frame_count"].as_u64(), Some(90_000));
        assert_eq!(m["duration_seconds"].as_f64(), Some(3600.0));
        assert_eq!(m["has_audio"].as_bool(), Some(false));
        assert_eq!(m["audio_codec"], serde_json::Value::Null);
    }

    #[test]
    fn codec_names_follow_ffmpeg() {
        for (tag, name) in
            [(b"XVID", "mpeg4"), (b"divx", "mpeg4"), (b"MJPG", "mjpeg"), (b"\0\0\0\0", "rawvideo")]
        {
            let strl = list(b"strl", &[strh(b"vids", tag, 1, 25, 25), bitmap(64, 48, tag)]);
            let m = metadata_of(avi(&[avih(40_000, 25, 64, 48), strl]));
            assert_eq!(m["video_codec"].as_str(), Some(name), "{tag:?}");
        }
        for (format_tag, block_align, name) in
            [(1, 1, "pcm_u8"), (0x55, 1, "mp3"), (0x2000, 1, "ac3"), (0xFF, 1, "aac"), (2, 1024, "adpcm_ms")]
        {
            let audio =
                list(b"strl", &[strh(b"auds", &[0; 4], 1, 8000, 8000), wave(format_tag, 1, block_align, 8)]);
            let m = metadata_of(avi(&[avih(40_000, 25, 64, 48), video_stream(1, 25, 25), audio]));
            assert_eq!(m["audio_codec"].as_str(), Some(name), "{format_tag:#x}");
        }
    }

    #[test]
    fn zero_rate_or_scale_falls_back_to_the_frame_period_or_to_nothing() {
        for (scale, rate) in [(0, 25), (1, 0), (0, 0)] {
            let m = metadata_of(avi(&[avih(40_000, 50, 64, 48), video_stream(scale, rate, 50)]));
            assert_eq!(m["frame_rate"].as_f64(), Some(25.0), "{scale}/{rate}");
            assert_eq!(m["duration_seconds"].as_f64(), Some(2.0), "{scale}/{rate}");
            let m = metadata_of(avi(&[avih(0, 50, 64, 48), video_stream(scale, rate, 50)]));
            assert_eq!((m["frame_rate"].as_f64(), m["duration_seconds"].as_f64()), (None, None));
            assert_eq!(m["frame_count"].as_u64(), Some(50));
        }
    }

    fn is_corrupt(result: Result<Extracted, ExtractError>) -> bool {
        matches!(result, Err(ExtractError::Corrupt(_)))
            || matches!(result, Err(ExtractError::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof)
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let good = avi(&[avih(40_000, 25, 64, 48), video_stream(1, 25, 25)]);
        // Every truncation of a valid file: an error or (once the headers are whole) an answer.
        for len in 0..good.len() {
            let result = extract_bytes(good[..len].to_vec());
            assert!(result.is_ok() || is_corrupt(result), "cut at {len}");
        }
        // Absurd sizes: a 4 GiB hdrl, strh and RIFF in a tiny file: no allocation, no panic.
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes()); // hdrl LIST size
        assert!(extract_bytes(huge.clone()).is_ok());
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // RIFF size
        assert!(extract_bytes(huge).is_ok());
        let big_strh = avi(&[
            avih(40_000, 25, 64, 48),
            list(b"strl", &[[b"strh".to_vec(), u32::MAX.to_le_bytes().to_vec(), vec![0; 8]].concat()]),
        ]);
        assert!(is_corrupt(extract_bytes(big_strh)));
        // A short avih, no avih, audio only, nothing at all.
        assert!(is_corrupt(extract_bytes(avi(&[chunk(b"avih", &[0; 12]), video_stream(1, 25, 25)]))));
        assert!(is_corrupt(extract_bytes(avi(&[video_stream(1, 25, 25)]))));
        let audio_only = avi(&[
            avih(0, 0, 0, 0),
            list(b"strl", &[strh(b"auds", &[0; 4], 1, 8000, 8000), wave(1, 1, 1, 8)]),
        ]);
        assert!(matches!(extract_bytes(audio_only), Err(ExtractError::Unsupported(_))));
        assert!(is_corrupt(extract_bytes(avi(&[avih(0, 0, 0, 0)]))));
        // No hdrl before movi; a BITMAPINFOHEADER cut to 8 bytes.
        let no_header = chunk(b"RIFF", &[b"AVI ".to_vec(), list(b"movi", &[])].concat());
        assert!(is_corrupt(extract_bytes(no_header)));
        let short_strf = list(b"strl", &[strh(b"vids", b"H264", 1, 25, 25), chunk(b"strf", &[0; 8])]);
        assert!(is_corrupt(extract_bytes(avi(&[avih(40_000, 25, 64, 48), short_strf]))));
        // Millions of empty chunks: refused after the budget, not walked.
        let junk: Vec<u8> = (0..MAX_CHUNKS + 10).flat_map(|_| chunk(b"JUNK", &[])).collect();
        let file = chunk(b"RIFF", &[b"AVI ".to_vec(), junk].concat());
        assert!(matches!(extract_bytes(file), Err(ExtractError::TooLarge(_))));
    }
}
