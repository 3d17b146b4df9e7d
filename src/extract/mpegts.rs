//! MPEG transport stream (`.ts`; ISO/IEC 13818-1) video metadata (DESIGN §3 `video`), from the
//! first few MiB and the last MiB of the file: a transport stream has no header and no index,
//! so what ffprobe reports is found the way ffprobe finds it.
//!
//! - Streams: the PAT names the programs, each program's PMT its elementary streams; the first
//!   program with video is reported, with its first video and first audio stream.
//! - Picture size and frame rate: the first sequence parameter set of the video stream (H.264
//!   SPS with its VUI timing; HEVC SPS, with the frame rate from the VPS timing; MPEG-1/2
//!   sequence header), else the frame rate from the spacing of the first presentation
//!   timestamps. Other video codecs (MPEG-4 part 2, VC-1, …) get a size of 0: their headers
//!   are not parsed.
//! - Duration: from the earliest PTS at the start of the file to the latest PTS near its end
//!   plus one frame of that stream, over the video and audio streams, as ffprobe estimates
//!   it (`estimate_timings_from_pts`). PTS are 33-bit and wrap every 26.5 hours; one wrap is
//!   undone.
//! - Frame count: `None`. Nothing in a transport stream counts frames; counting them would
//!   mean reading every packet of the file.
//!
//! Packets are 188 bytes; 192-byte packets (M2TS, Blu-ray: a 4-byte timestamp first) and
//! 204-byte ones (188 + Reed-Solomon parity) are read too, and [`packet_layout`] tells them
//! apart for `sniff` as well. Nothing is searched beyond [`HEAD_LIMIT`]: tables or parameter
//! sets missing there make the file `Corrupt`.

use std::io::{Read, SeekFrom};

use super::mpeg_audio::{adts_header, frame_header};
use super::video::{AspectRatio, FrameTimes, VideoMetadata, display_size, whole_microseconds};
use super::{ExtractError, Extracted, ReadSeek};

const TS: &str = "MPEG-TS";
const SYNC_BYTE: u8 = 0x47;
const PACKET_LEN: usize = 188;

/// How far into the file the tables and the parameter sets are looked for. The head is read
/// in growing steps, so a well-formed file costs the first of them only.
const HEAD_STEPS: [u64; 3] = [256 << 10, 1 << 20, HEAD_LIMIT];
const HEAD_LIMIT: u64 = 4 << 20;
/// How much of the end of the file is read for the last timestamps: several seconds of any
/// ordinary stream, and the last PES header of each stream is all we need.
const TAIL_LEN: u64 = 1 << 20;
/// Bytes of each PES packet kept to find a parameter set or an audio frame header in: they
/// come first in a key frame's access unit, after at most an access unit delimiter and SEI.
const PES_PROBE_LEN: usize = 16 << 10;
/// Video PES timestamps collected at the start: the earliest PTS is among the first few in
/// decode order (B-frames come later in the stream than the frame shown after them), and
/// their spacing gives the frame rate when no header does.
const START_PTS_COUNT: usize = 8;
/// Programs we follow in a PAT (a DVB multiplex has a few dozen).
const MAX_PROGRAMS: usize = 256;
/// The largest PAT or PMT section (`section_length` ≤ 1021, plus the 3 bytes before it).
const MAX_SECTION_LEN: usize = 1024;
/// No picture side is larger in any H.264/HEVC level (8K is 8192); beyond this an SPS is noise.
const MAX_DIMENSION: u64 = 1 << 16;

/// PTS tick rate.
const CLOCK_HZ: f64 = 90_000.0;
const PTS_WRAP: u64 = 1 << 33;
/// A PTS this close before the reference PTS is earlier, not 26.5 hours later (audio often
/// starts a little before video).
const PTS_EARLIER_MARGIN: u64 = 60 * 90_000;

/// Where packets are in the file: every `packet_len` bytes, the 188-byte packet `prefix` bytes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) packet_len: usize,
    prefix: usize,
}

const LAYOUTS: [Layout; 3] = [
    Layout { packet_len: 188, prefix: 0 },
    Layout { packet_len: 192, prefix: 4 },
    Layout { packet_len: 204, prefix: 0 },
];

/// Extracts the video metadata of a transport stream; with `count_frames`, the video frames
/// are counted over the whole file.
pub fn extract(source: &mut dyn ReadSeek, count_frames: bool) -> Result<Extracted, ExtractError> {
    let file_len = source.seek(SeekFrom::End(0))?;
    let head = read_head(source, file_len)?;
    let Some(video) = head.program.video else {
        if head.program.audio.is_some() {
            return Err(ExtractError::Unsupported(
                "an MPEG transport stream with audio but no video (a radio service) is not read".into(),
            ));
        }
        return Err(ExtractError::corrupt(TS, "its program has neither a video nor an audio stream"));
    };
    let picture = match head.probes.video.picture {
        None if has_picture_parser(video.codec) => {
            return Err(if head.probes.video.scrambled {
                ExtractError::Unsupported("the video stream of this transport stream is scrambled".into())
            } else {
                let searched = head.bytes.len() >> 10;
                ExtractError::corrupt(
                    TS,
                    format!("no valid {} parameter set in its first {searched} KiB", video.codec),
                )
            });
        }
        picture => picture,
    };
    let frame_rate =
        picture.and_then(|p| p.frame_rate).or_else(|| frame_rate_from_spacing(&head.probes.video.start_pts));

    let audio = head.program.audio;
    let last = match read_tail(source, file_len, &head)? {
        Some(tail) => last_timestamps(&tail, head.layout, video.pid, audio.map(|a| a.pid)),
        None => last_timestamps(&head.bytes, head.layout, video.pid, audio.map(|a| a.pid)),
    };
    let video_frame_ticks = frame_rate.map(|fps| CLOCK_HZ / fps);
    let audio_frame = head.probes.audio.frame;
    let audio_frame_ticks = audio_frame.map(|f| f64::from(f.samples) * CLOCK_HZ / f64::from(f.sample_rate));
    let duration_seconds =
        duration_seconds(&head.probes, [(last.video, video_frame_ticks), (last.audio, audio_frame_ticks)]);

    let (width, height) = picture.map_or((0, 0), |p| (p.width, p.height));
    let sample_aspect_ratio = picture.and_then(|p| p.aspect).unwrap_or(AspectRatio::SQUARE);
    let (display_width, display_height) = display_size(width, height, 0, sample_aspect_ratio);
    let (frame_count, frame_rate_mode) = if count_frames {
        let (count, mode) = count_video_frames(source, file_len, head.layout, video.pid)?;
        (Some(count), mode)
    } else {
        (None, None)
    };
    let start_time_seconds = head.probes.video.start_pts.first().map(|&pts| pts as f64 / CLOCK_HZ);
    let video_codec = picture.and_then(|p| p.codec).unwrap_or(video.codec);
    let audio_codec = audio.map(|a| audio_frame.and_then(|f| f.codec).unwrap_or(a.codec));
    let metadata = VideoMetadata {
        container: "mpegts",
        duration_seconds,
        width,
        height,
        rotation: 0,
        sample_aspect_ratio,
        display_width,
        display_height,
        frame_rate,
        frame_rate_mode,
        frame_count,
        start_time_seconds,
        video_codec: Some(video_codec.to_owned()),
        audio_codec: audio_codec.map(str::to_owned),
        has_audio: audio.is_some(),
    };
    Ok(metadata.into_extracted("video/mp2t"))
}

/// The start of the file and what it says.
struct Head {
    bytes: Vec<u8>,
    layout: Layout,
    program: Program,
    probes: Probes,
}

/// Reads the head in [`HEAD_STEPS`] until the program's tables and the first PES packets of
/// its streams have been seen; each step scans the bytes again from the start (a few MiB of
/// memory scans, where a second read of the same range could cost a remote fetch).
fn read_head(source: &mut dyn ReadSeek, file_len: u64) -> Result<Head, ExtractError> {
    let mut bytes = Vec::new();
    let mut steps = HEAD_STEPS.iter();
    loop {
        let limit = steps.next().copied().unwrap_or(HEAD_LIMIT);
        let end = limit.min(file_len);
        let have = bytes.len() as u64;
        read_range(source, have, end.saturating_sub(have), &mut bytes)?;
        let last_try = limit >= HEAD_LIMIT || end == file_len;
        let layout = packet_layout(&bytes).ok_or_else(|| {
            ExtractError::corrupt(TS, "its first packets are not 188, 192 or 204 bytes apart")
        })?;
        match find_program(&bytes, layout) {
            Ok(program) => {
                let probes = probe_streams(&bytes, layout, &program);
                if probes.complete(&program) || last_try {
                    return Ok(Head { bytes, layout, program, probes });
                }
            }
            Err(why) if last_try => return Err(ExtractError::corrupt(TS, why)),
            Err(_) => {}
        }
    }
}

/// The last [`TAIL_LEN`] bytes of the file from a packet boundary, or `None` when the head
/// already holds the whole file.
fn read_tail(source: &mut dyn ReadSeek, file_len: u64, head: &Head) -> std::io::Result<Option<Vec<u8>>> {
    if head.bytes.len() as u64 >= file_len {
        return Ok(None);
    }
    // Packets start at multiples of the packet length: the file starts with one.
    let packet_len = head.layout.packet_len as u64;
    let start = file_len.saturating_sub(TAIL_LEN).div_ceil(packet_len) * packet_len;
    let mut tail = Vec::new();
    read_range(source, start, file_len.saturating_sub(start), &mut tail)?;
    Ok(Some(tail))
}

/// Appends `len` bytes read at `offset` (fewer if the file ends first) to `buffer`. `len` is
/// bounded by the callers ([`HEAD_LIMIT`], [`TAIL_LEN`]).
fn read_range(source: &mut dyn ReadSeek, offset: u64, len: u64, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    source.seek(SeekFrom::Start(offset))?;
    source.take(len).read_to_end(buffer)?;
    Ok(())
}

/// Packets read at a time when frames are counted (752 KiB of 188-byte packets).
const COUNT_CHUNK_PACKETS: usize = 4096;

/// Counts the video stream's frames over the whole file, with the spacing of their
/// presentation times: one frame per PES packet of the video PID, which is how ffmpeg, HLS
/// packagers and broadcast encoders carry video (one access unit per PES packet).
fn count_video_frames(
    source: &mut dyn ReadSeek,
    file_len: u64,
    layout: Layout,
    video_pid: u16,
) -> Result<(u64, Option<super::video::FrameRateMode>), ExtractError> {
    let chunk_len = (layout.packet_len * COUNT_CHUNK_PACKETS) as u64;
    let mut times = FrameTimes::default();
    // PTS unwrapped across 33-bit wraps: (last raw PTS, its unwrapped value).
    let mut last: Option<(u64, i64)> = None;
    let mut buffer = Vec::with_capacity(chunk_len as usize);
    let mut offset = 0u64;
    while offset < file_len {
        buffer.clear();
        read_range(source, offset, chunk_len, &mut buffer)?;
        if buffer.is_empty() {
            break;
        }
        for packet in Packets::new(&buffer, layout) {
            if packet.pid != video_pid || !packet.unit_start || packet.scrambled {
                continue;
            }
            let Some((pts, _)) = pes_start(packet.payload) else { continue };
            let unwrapped = pts.map(|pts| {
                let value = last.map_or(0, |(raw, value)| value.saturating_add(relative(pts, raw)));
                last = Some((pts, value));
                value
            });
            times.push(unwrapped);
        }
        offset += buffer.len() as u64;
    }
    Ok(times.finish(CLOCK_HZ))
}

/// How many packets' sync bytes must line up for [`packet_layout`] to believe a layout.
pub(super) const LAYOUT_PACKETS: usize = 3;

/// The packet layout whose sync bytes line up over the first [`LAYOUT_PACKETS`] packets, or
/// over as many of them as `bytes` reaches (a short file may hold fewer): the first must be
/// there. Layouts are tried from the most common, 188 bytes, on.
pub(super) fn packet_layout(bytes: &[u8]) -> Option<Layout> {
    LAYOUTS.into_iter().find(|layout| {
        let syncs: Vec<Option<&u8>> =
            (0..LAYOUT_PACKETS).map(|i| bytes.get(layout.prefix + i * layout.packet_len)).collect();
        syncs[0].is_some() && syncs.iter().flatten().all(|&&b| b == SYNC_BYTE)
    })
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// One transport packet's header fields and payload.
struct Packet<'a> {
    pid: u16,
    unit_start: bool,
    scrambled: bool,
    payload: &'a [u8],
}

/// Parses a 188-byte packet; `None` for one marked as damaged or whose adaptation field
/// overruns it.
fn parse_packet(packet: &[u8]) -> Option<Packet<'_>> {
    let header = packet.get(..4)?;
    if header[1] & 0x80 != 0 {
        return None; // transport_error_indicator: a demodulator gave up on this packet
    }
    let pid = u16::from(header[1] & 0x1F) << 8 | u16::from(header[2]);
    let adaptation_field_control = (header[3] >> 4) & 3;
    let mut start = 4;
    if adaptation_field_control & 2 != 0 {
        start = 5 + usize::from(*packet.get(4)?);
    }
    let payload = if adaptation_field_control & 1 != 0 { packet.get(start..)? } else { &[] };
    Some(Packet { pid, unit_start: header[1] & 0x40 != 0, scrambled: header[3] >> 6 != 0, payload })
}

/// The packets of a buffer that starts on a packet boundary. Where a sync byte is missing
/// (a damaged recording), the walk moves on to the next position where two sync bytes are a
/// packet apart.
struct Packets<'a> {
    bytes: &'a [u8],
    layout: Layout,
    position: usize,
}

impl<'a> Packets<'a> {
    fn new(bytes: &'a [u8], layout: Layout) -> Self {
        Packets { bytes, layout, position: 0 }
    }

    fn synced_at(&self, position: usize) -> bool {
        let at = |offset: usize| self.bytes.get(position + self.layout.prefix + offset);
        at(0) == Some(&SYNC_BYTE) && matches!(at(self.layout.packet_len), Some(&SYNC_BYTE) | None)
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    fn next(&mut self) -> Option<Packet<'a>> {
        loop {
            let start = self.position + self.layout.prefix;
            let packet = self.bytes.get(start..start + PACKET_LEN)?;
            if packet[0] != SYNC_BYTE {
                self.position = (self.position + 1..self.bytes.len()).find(|&p| self.synced_at(p))?;
                continue;
            }
            self.position += self.layout.packet_len;
            if let Some(parsed) = parse_packet(packet) {
                return Some(parsed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Program tables: PAT and PMT sections
// ---------------------------------------------------------------------------------------------

/// One elementary stream of the chosen program, with ffprobe's codec name for its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Elementary {
    pid: u16,
    codec: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Video,
    Audio,
}

/// A program's first video and first audio stream, in PMT order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Program {
    video: Option<Elementary>,
    audio: Option<Elementary>,
}

/// Reassembles PSI sections (PAT, PMT) from a PID's packets: a section may span packets, and
/// starts where a unit-start packet's `pointer_field` says.
#[derive(Default)]
struct SectionAssembler {
    buffer: Vec<u8>,
    active: bool,
}

impl SectionAssembler {
    /// Feeds a packet's payload; complete sections go to `out`, refused ones to `problem`.
    fn push(
        &mut self,
        unit_start: bool,
        payload: &[u8],
        out: &mut Vec<Vec<u8>>,
        problem: &mut Option<String>,
    ) {
        let mut data = payload;
        if unit_start {
            let Some((&pointer, rest)) = payload.split_first() else { return self.reset() };
            let Some((tail_of_previous, new)) = rest.split_at_checked(usize::from(pointer)) else {
                *problem = Some("a table's pointer field points past its packet".into());
                return self.reset();
            };
            if self.active {
                self.buffer.extend_from_slice(tail_of_previous);
                self.drain(out, problem);
            }
            self.buffer.clear();
            self.active = true;
            data = new;
        } else if !self.active {
            return;
        }
        self.buffer.extend_from_slice(data);
        self.drain(out, problem);
    }

    fn drain(&mut self, out: &mut Vec<Vec<u8>>, problem: &mut Option<String>) {
        while self.active {
            match self.buffer.first() {
                None | Some(0xFF) => return self.reset(), // stuffing: no more sections here
                Some(_) if self.buffer.len() < 3 => return,
                Some(_) => {}
            }
            let total = 3 + (usize::from(self.buffer[1] & 0x0F) << 8 | usize::from(self.buffer[2]));
            if total > MAX_SECTION_LEN {
                *problem = Some(format!(
                    "a table section declares {} bytes, more than the {MAX_SECTION_LEN} allowed",
                    total
                ));
                return self.reset();
            }
            if self.buffer.len() < total {
                return;
            }
            out.push(self.buffer.drain(..total).collect());
        }
    }

    fn reset(&mut self) {
        self.buffer.clear();
        self.active = false;
    }
}

/// The CRC-32 of MPEG-2 sections (polynomial 0x04C11DB7, not reflected); over a whole
/// section including its CRC field it is 0.
fn crc32_mpeg2(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0xFFFF_FFFF, |crc, &byte| {
        (0..8).fold(crc ^ (u32::from(byte) << 24), |crc, _| {
            if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 }
        })
    })
}

/// A PSI section's table ID, ID extension (the program number of a PMT) and the data between
/// its 8-byte header and its CRC.
struct Section<'a> {
    table_id: u8,
    extension: u16,
    body: &'a [u8],
}

/// Checks a section of the table `name` (PAT, PMT) and its CRC; `None` for one not
/// applicable yet (`current_next_indicator` 0).
fn section_body<'a>(section: &'a [u8], name: &str) -> Result<Option<Section<'a>>, String> {
    if section.len() < 12 || section[1] & 0x80 == 0 {
        return Err(format!("a {name} section is too short or lacks its syntax header"));
    }
    if crc32_mpeg2(section) != 0 {
        return Err(format!("a {name} section fails its CRC"));
    }
    if section[5] & 1 == 0 {
        return Ok(None); // current_next_indicator 0: a table announced for later
    }
    Ok(Some(Section {
        table_id: section[0],
        extension: u16::from_be_bytes([section[3], section[4]]),
        body: &section[8..section.len() - 4],
    }))
}

/// PAT: (program number, PMT PID) pairs; program 0 is the network information PID.
fn parse_pat(body: &[u8]) -> Vec<(u16, u16)> {
    body.chunks_exact(4)
        .map(|entry| {
            (u16::from_be_bytes([entry[0], entry[1]]), u16::from_be_bytes([entry[2], entry[3]]) & 0x1FFF)
        })
        .filter(|&(number, _)| number != 0)
        .take(MAX_PROGRAMS)
        .collect()
}

/// PMT: the first video and audio stream whose type we can name.
fn parse_pmt(body: &[u8]) -> Result<Program, String> {
    let overrun = || "a PMT's descriptors or stream entries overrun its section".to_owned();
    let length_field = body.get(2..4).ok_or_else(overrun)?;
    let program_info_len = usize::from(u16::from_be_bytes([length_field[0], length_field[1]]) & 0x0FFF);
    let program_info = body.get(4..4 + program_info_len).ok_or_else(overrun)?;
    let blu_ray = has_registration(program_info, b"HDMV");
    let mut program = Program::default();
    let mut rest = &body[4 + program_info_len..];
    while !rest.is_empty() {
        let entry = rest.get(..5).ok_or_else(overrun)?;
        let stream_type = entry[0];
        let pid = u16::from_be_bytes([entry[1], entry[2]]) & 0x1FFF;
        let info_len = usize::from(u16::from_be_bytes([entry[3], entry[4]]) & 0x0FFF);
        let descriptors = rest.get(5..5 + info_len).ok_or_else(overrun)?;
        rest = &rest[5 + info_len..];
        let kind_and_codec =
            stream_codec(stream_type, descriptors, blu_ray || has_registration(descriptors, b"HDMV"));
        match kind_and_codec {
            Some((StreamKind::Video, codec)) if program.video.is_none() => {
                program.video = Some(Elementary { pid, codec });
            }
            Some((StreamKind::Audio, codec)) if program.audio.is_none() => {
                program.audio = Some(Elementary { pid, codec });
            }
            _ => {}
        }
    }
    Ok(program)
}

/// The (tag, body) pairs of a descriptor loop; a descriptor overrunning the loop ends it.
fn descriptors(mut bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&tag, rest) = bytes.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let (body, rest) = rest.split_at_checked(usize::from(len))?;
        bytes = rest;
        Some((tag, body))
    })
}

/// Whether a descriptor loop has a registration descriptor (tag 5) naming `format`.
fn has_registration(descriptor_loop: &[u8], format: &[u8; 4]) -> bool {
    registration(descriptor_loop).is_some_and(|id| id == format)
}

fn registration(descriptor_loop: &[u8]) -> Option<&[u8]> {
    descriptors(descriptor_loop).find(|&(tag, _)| tag == 0x05).and_then(|(_, body)| body.get(..4))
}

/// ffprobe's codec name for a PMT `stream_type`, with its descriptors for the private types
/// (ffmpeg's ISO, HDMV, MISC, REGD and DESC tables in libavformat/mpegts.c, common entries).
/// MPEG audio (types 3 and 4) is named `mp3` here and refined from its first frame header.
fn stream_codec(
    stream_type: u8,
    descriptor_loop: &[u8],
    blu_ray: bool,
) -> Option<(StreamKind, &'static str)> {
    use StreamKind::{Audio, Video};
    let by_type = match stream_type {
        0x01 => (Video, "mpeg1video"),
        0x02 => (Video, "mpeg2video"),
        0x10 => (Video, "mpeg4"),
        0x1B => (Video, "h264"),
        0x24 => (Video, "hevc"),
        0x33 => (Video, "vvc"),
        0x42 => (Video, "cavs"),
        0xD1 => (Video, "dirac"),
        0xEA => (Video, "vc1"),
        0x03 | 0x04 => (Audio, "mp3"),
        0x0F => (Audio, "aac"),
        0x11 => (Audio, "aac_latm"),
        0x81 => (Audio, "ac3"),
        0x87 => (Audio, "eac3"),
        0x80 if blu_ray => (Audio, "pcm_bluray"),
        0x82 | 0x85 | 0x86 | 0xA2 if blu_ray => (Audio, "dts"),
        0x83 if blu_ray => (Audio, "truehd"),
        0x84 | 0xA1 if blu_ray => (Audio, "eac3"),
        _ => return codec_from_descriptors(descriptor_loop),
    };
    Some(by_type)
}

/// The codec of a private stream (type 6, or one we do not know) from its descriptors: DVB's
/// AC-3/E-AC-3/DTS descriptors, or a registration descriptor's format identifier.
fn codec_from_descriptors(descriptor_loop: &[u8]) -> Option<(StreamKind, &'static str)> {
    use StreamKind::{Audio, Video};
    for (tag, _) in descriptors(descriptor_loop) {
        match tag {
            0x6A => return Some((Audio, "ac3")),
            0x7A => return Some((Audio, "eac3")),
            0x7B => return Some((Audio, "dts")),
            _ => {}
        }
    }
    let known = match registration(descriptor_loop)? {
        b"AC-3" => (Audio, "ac3"),
        b"EAC3" => (Audio, "eac3"),
        b"DTS1" | b"DTS2" | b"DTS3" => (Audio, "dts"),
        b"Opus" => (Audio, "opus"),
        b"mlpa" => (Audio, "truehd"),
        b"BSSD" => (Audio, "s302m"),
        b"HEVC" => (Video, "hevc"),
        b"VC-1" => (Video, "vc1"),
        b"AV01" => (Video, "av1"),
        b"drac" => (Video, "dirac"),
        _ => return None,
    };
    Some(known)
}

/// Walks the PSI of the first bytes: the PAT, then the PMT of each program it lists, and
/// chooses the first program (in PAT order) that has video, else the first with audio.
fn find_program(bytes: &[u8], layout: Layout) -> Result<Program, String> {
    let mut pat_sections = SectionAssembler::default();
    let mut pmt_sections: Vec<(u16, SectionAssembler)> = Vec::new();
    let mut programs: Vec<(u16, u16, Option<Program>)> = Vec::new();
    let mut problem = None;
    let mut complete = Vec::new();
    for packet in Packets::new(bytes, layout) {
        if packet.scrambled {
            continue;
        }
        if packet.pid == 0 {
            pat_sections.push(packet.unit_start, packet.payload, &mut complete, &mut problem);
            for section in complete.drain(..) {
                match section_body(&section, "PAT") {
                    Ok(Some(Section { table_id: 0x00, body, .. })) if programs.is_empty() => {
                        programs = parse_pat(body).into_iter().map(|(n, pid)| (n, pid, None)).collect();
                        for &(_, pid, _) in &programs {
                            if !pmt_sections.iter().any(|(known, _)| *known == pid) {
                                pmt_sections.push((pid, SectionAssembler::default()));
                            }
                        }
                        if programs.is_empty() {
                            problem = Some("its PAT lists no program".into());
                        }
                    }
                    Ok(_) => {}
                    Err(why) => problem = Some(why),
                }
            }
            continue;
        }
        let Some((_, assembler)) = pmt_sections.iter_mut().find(|(pid, _)| *pid == packet.pid) else {
            continue;
        };
        assembler.push(packet.unit_start, packet.payload, &mut complete, &mut problem);
        for section in complete.drain(..) {
            let (number, body) = match section_body(&section, "PMT") {
                Ok(Some(Section { table_id: 0x02, extension, body })) => (extension, body),
                Ok(_) => continue,
                Err(why) => {
                    problem = Some(why);
                    continue;
                }
            };
            let parsed = match parse_pmt(body) {
                Ok(parsed) => parsed,
                Err(why) => {
                    problem = Some(why);
                    continue;
                }
            };
            for entry in programs.iter_mut().filter(|(n, pid, _)| *n == number && *pid == packet.pid) {
                entry.2.get_or_insert(parsed);
            }
        }
        if let Some(program) = decided(&programs, false) {
            return Ok(program);
        }
    }
    if let Some(program) = decided(&programs, true) {
        return Ok(program);
    }
    let missing =
        if programs.is_empty() { "program association table (PAT)" } else { "program map table (PMT)" };
    let detail = problem.map(|why| format!(" ({why})")).unwrap_or_default();
    Err(format!("no valid {missing} in its first {} KiB{detail}", bytes.len() >> 10))
}

/// The program to report, once it is known: the first with video in PAT order, provided
/// every program before it has been seen; at the end of the data, among those seen.
fn decided(programs: &[(u16, u16, Option<Program>)], at_end: bool) -> Option<Program> {
    let mut first_with_audio = None;
    for (_, _, program) in programs {
        match program {
            Some(program) if program.video.is_some() => return Some(*program),
            Some(program) if program.audio.is_some() => {
                first_with_audio = first_with_audio.or(Some(*program));
            }
            Some(_) => {}
            None if !at_end => return None,
            None => {}
        }
    }
    if at_end || programs.iter().all(|(_, _, p)| p.is_some()) {
        first_with_audio.or_else(|| programs.iter().find_map(|(_, _, p)| *p))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// PES packets: timestamps, parameter sets, audio frame headers
// ---------------------------------------------------------------------------------------------

/// The PTS (if any) and the data of a PES packet's first TS payload (ISO/IEC 13818-1
/// §2.4.3.6); `None` if it is not a PES start.
fn pes_start(payload: &[u8]) -> Option<(Option<u64>, &[u8])> {
    if payload.get(..3)? != [0, 0, 1] {
        return None;
    }
    let stream_id = *payload.get(3)?;
    // Streams without the optional header: program stream map, padding, private 2, ECM, EMM,
    // DSM-CC, H.222.1 type E, directory.
    if matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) {
        return Some((None, payload.get(6..)?));
    }
    let flags = payload.get(6..9)?;
    if flags[0] & 0xC0 != 0x80 {
        return None;
    }
    let data = payload.get(9 + usize::from(flags[2])..)?;
    let pts = if flags[1] & 0x80 != 0 { payload.get(9..14).map(timestamp) } else { None };
    Some((pts, data))
}

/// A 33-bit PTS/DTS from its 5-byte field (marker bits ignored).
fn timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1)
}

/// What the first PES packets of the video stream say.
#[derive(Debug, Default)]
struct VideoProbe {
    picture: Option<Picture>,
    /// PTS of the first [`START_PTS_COUNT`] PES packets, in stream order.
    start_pts: Vec<u64>,
    scrambled: bool,
}

/// What the first audio PES packets say.
#[derive(Debug, Default)]
struct AudioProbe {
    first_pts: Option<u64>,
    frame: Option<AudioFrame>,
    /// PES packets looked at for a frame header.
    attempts: usize,
}

/// Audio PES packets looked at for a frame header: a cut recording may start mid-frame.
const AUDIO_PROBE_ATTEMPTS: usize = 4;

impl AudioProbe {
    fn done(&self) -> bool {
        self.frame.is_some() || self.attempts >= AUDIO_PROBE_ATTEMPTS
    }
}

#[derive(Debug, Default)]
struct Probes {
    video: VideoProbe,
    audio: AudioProbe,
}

impl Probes {
    /// Whether everything the head can tell has been found.
    fn complete(&self, program: &Program) -> bool {
        let video_done = program.video.is_none_or(|video| {
            (self.video.picture.is_some() || !has_picture_parser(video.codec))
                && self.video.start_pts.len() >= START_PTS_COUNT
        });
        let audio_done = program.audio.is_none() || self.audio.done();
        video_done && audio_done
    }
}

/// The start of a PES packet as it comes in, at most [`PES_PROBE_LEN`] bytes.
#[derive(Default)]
struct PesBuffer {
    data: Vec<u8>,
    active: bool,
}

impl PesBuffer {
    fn start(&mut self, data: &[u8]) {
        self.data.clear();
        self.active = true;
        self.append(data);
    }

    fn append(&mut self, data: &[u8]) {
        if self.active {
            let room = PES_PROBE_LEN.saturating_sub(self.data.len());
            self.data.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    /// The buffered start of the PES packet just ended, if there is one.
    fn take(&mut self) -> Option<&[u8]> {
        std::mem::take(&mut self.active).then_some(self.data.as_slice())
    }
}

/// Reads the first PES packets of the program's video and audio stream from the head.
fn probe_streams(bytes: &[u8], layout: Layout, program: &Program) -> Probes {
    let mut probes = Probes::default();
    let video_pid = program.video.map(|v| v.pid);
    let audio_pid = program.audio.map(|a| a.pid);
    let mut video_pes = PesBuffer::default();
    let mut audio_pes = PesBuffer::default();
    for packet in Packets::new(bytes, layout) {
        if probes.complete(program) {
            break;
        }
        let is_video = Some(packet.pid) == video_pid;
        if !is_video && Some(packet.pid) != audio_pid {
            continue;
        }
        if packet.scrambled {
            probes.video.scrambled |= is_video;
            continue;
        }
        if packet.unit_start {
            // A new PES packet ends the previous one of its stream: look at what it began with.
            let finished = if is_video { video_pes.take() } else { audio_pes.take() };
            match (finished, program.video, program.audio) {
                (Some(data), Some(video), _) if is_video => probe_video(video.codec, data, &mut probes.video),
                (Some(data), _, Some(audio)) if !is_video => {
                    probe_audio(audio.codec, data, &mut probes.audio)
                }
                _ => {}
            }
            let Some((pts, data)) = pes_start(packet.payload) else { continue };
            if is_video {
                if let Some(pts) = pts.filter(|_| probes.video.start_pts.len() < START_PTS_COUNT) {
                    probes.video.start_pts.push(pts);
                }
                video_pes.start(data);
            } else {
                probes.audio.first_pts = probes.audio.first_pts.or(pts);
                audio_pes.start(data);
            }
        } else if is_video {
            video_pes.append(packet.payload);
        } else {
            audio_pes.append(packet.payload);
        }
    }
    // The PES packets still open when the head ends: their start is all we look at anyway.
    if let (Some(video), Some(data)) = (program.video, video_pes.take()) {
        probe_video(video.codec, data, &mut probes.video);
    }
    if let (Some(audio), Some(data)) = (program.audio, audio_pes.take()) {
        probe_audio(audio.codec, data, &mut probes.audio);
    }
    probes
}

fn probe_video(codec: &str, data: &[u8], probe: &mut VideoProbe) {
    if probe.picture.is_none() {
        probe.picture = picture_parameters(codec, data);
    }
}

fn probe_audio(codec: &str, data: &[u8], probe: &mut AudioProbe) {
    if !probe.done() {
        probe.frame = audio_frame(codec, data);
        probe.attempts += 1;
    }
}

/// The last PTS of the video and audio streams in the tail of the file, in file order.
#[derive(Debug, Default)]
struct LastTimestamps {
    video: Vec<u64>,
    audio: Vec<u64>,
}

fn last_timestamps(bytes: &[u8], layout: Layout, video_pid: u16, audio_pid: Option<u16>) -> LastTimestamps {
    let mut last = LastTimestamps::default();
    for packet in Packets::new(bytes, layout) {
        if !packet.unit_start || packet.scrambled {
            continue;
        }
        let list = if packet.pid == video_pid {
            &mut last.video
        } else if Some(packet.pid) == audio_pid {
            &mut last.audio
        } else {
            continue;
        };
        // Which is the largest depends on the reference PTS (across a wrap), so all are kept:
        // at most one per packet of the bounded tail.
        if let Some((Some(pts), _)) = pes_start(packet.payload) {
            list.push(pts);
        }
    }
    last
}

/// `pts` relative to `reference`, across one 33-bit wrap: slightly before is negative,
/// anything else is after.
fn relative(pts: u64, reference: u64) -> i64 {
    let ahead = pts.wrapping_sub(reference) & (PTS_WRAP - 1);
    if ahead > PTS_WRAP - PTS_EARLIER_MARGIN { ahead as i64 - PTS_WRAP as i64 } else { ahead as i64 }
}

/// From the earliest start PTS to the latest end (last PTS + one frame) of any stream.
fn duration_seconds(probes: &Probes, ends: [(Vec<u64>, Option<f64>); 2]) -> Option<f64> {
    let reference = probes.video.start_pts.first().copied().or(probes.audio.first_pts)?;
    let start = probes
        .video
        .start_pts
        .iter()
        .chain(&probes.audio.first_pts)
        .map(|&pts| relative(pts, reference))
        .min()?;
    let end = ends
        .iter()
        .filter_map(|(pts, frame_ticks)| {
            let last = pts.iter().map(|&pts| relative(pts, reference)).max()?;
            Some(last as f64 + frame_ticks.unwrap_or(0.0))
        })
        .reduce(f64::max)?;
    let ticks = end - start as f64;
    (ticks > 0.0).then(|| whole_microseconds(ticks / CLOCK_HZ))
}

/// Frames per second from the smallest step between the first presentation timestamps
/// (sorted: B-frames arrive out of order), when no parameter set gives the rate.
fn frame_rate_from_spacing(start_pts: &[u64]) -> Option<f64> {
    let reference = *start_pts.first()?;
    let mut sorted: Vec<i64> = start_pts.iter().map(|&pts| relative(pts, reference)).collect();
    sorted.sort_unstable();
    let step = sorted.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).min()?;
    Some(CLOCK_HZ / step as f64)
}

// ---------------------------------------------------------------------------------------------
// Video parameter sets
// ---------------------------------------------------------------------------------------------

/// What a video stream's parameter sets say.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Picture {
    width: u32,
    height: u32,
    frame_rate: Option<f64>,
    /// The pixel shape the parameter set states (H.264 VUI, MPEG-2 sequence header).
    aspect: Option<AspectRatio>,
    /// A codec name more precise than the stream type's (MPEG-1 vs MPEG-2 video).
    codec: Option<&'static str>,
}

fn has_picture_parser(codec: &str) -> bool {
    matches!(codec, "h264" | "hevc" | "mpeg1video" | "mpeg2video")
}

/// The NAL units (or MPEG-1/2 start-code units) of an Annex B byte stream, without their
/// `00 00 01` prefix; trailing zero bytes (of a 4-byte start code) stay at a unit's end.
fn start_code_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let starts: Vec<usize> =
        data.windows(3).enumerate().filter(|(_, w)| *w == [0, 0, 1]).map(|(i, _)| i + 3).collect();
    let ends: Vec<usize> = starts.iter().skip(1).map(|&next| next - 3).chain([data.len()]).collect();
    starts.into_iter().zip(ends).map(move |(start, end)| &data[start..end.max(start)])
}

/// Longest parameter set we unescape: an SPS with scaling lists and VUI is a few hundred bytes.
const MAX_PARAMETER_SET_LEN: usize = 4096;

/// The picture size and frame rate in the first parameter sets of a PES packet's data.
fn picture_parameters(codec: &str, data: &[u8]) -> Option<Picture> {
    let rbsp = |unit: &[u8], header_len: usize| {
        Some(unescape_rbsp(unit.get(header_len..unit.len().min(MAX_PARAMETER_SET_LEN))?))
    };
    match codec {
        "h264" => start_code_units(data)
            .filter(|unit| unit.first().is_some_and(|&b| b & 0x1F == 7))
            .find_map(|unit| h264_sps(&rbsp(unit, 1)?)),
        "hevc" => {
            let nal_type = |unit: &[u8]| unit.first().map(|&b| (b >> 1) & 0x3F);
            let frame_rate = start_code_units(data)
                .filter(|unit| nal_type(unit) == Some(32))
                .find_map(|unit| hevc_vps_frame_rate(&rbsp(unit, 2)?));
            let picture = start_code_units(data)
                .filter(|unit| nal_type(unit) == Some(33))
                .find_map(|unit| hevc_sps(&rbsp(unit, 2)?))?;
            Some(Picture { frame_rate, ..picture })
        }
        "mpeg1video" | "mpeg2video" => mpeg_video_sequence(data),
        _ => None,
    }
}

/// A NAL unit's payload with its emulation prevention bytes (`00 00 03` → `00 00`) removed.
fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &byte in nal {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// A big-endian bit reader with the Exp-Golomb codes of H.264/HEVC (ITU-T H.264 §9.1). Every
/// read past the end is `None`.
struct Bits<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, position: 0 }
    }

    fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.position / 8)?;
        let bit = (byte >> (7 - self.position % 8)) & 1;
        self.position += 1;
        Some(u32::from(bit))
    }

    fn flag(&mut self) -> Option<bool> {
        Some(self.bit()? == 1)
    }

    /// `count` ≤ 32 bits.
    fn bits(&mut self, count: u32) -> Option<u32> {
        (0..count).try_fold(0u32, |value, _| Some(value << 1 | self.bit()?))
    }

    fn skip(&mut self, count: usize) -> Option<()> {
        let end = self.position.checked_add(count)?;
        (end <= self.data.len() * 8).then(|| self.position = end)
    }

    /// `ue(v)`. More than 31 leading zeros does not fit the 32 bits any syntax element has:
    /// the data is noise.
    fn ue(&mut self) -> Option<u32> {
        let mut leading_zeros = 0;
        while self.bit()? == 0 {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return None;
            }
        }
        let value = (1u64 << leading_zeros) - 1 + u64::from(self.bits(leading_zeros)?);
        u32::try_from(value).ok()
    }

    /// `se(v)`.
    fn se(&mut self) -> Option<i64> {
        let code = i64::from(self.ue()?);
        Some(if code % 2 == 1 { (code + 1) / 2 } else { -(code / 2) })
    }
}

/// Width and height after cropping, from sizes in luma samples and crop offsets in chroma
/// units; `None` if the cropping eats the picture or the size is absurd.
fn cropped(full: (u64, u64), crop: [u64; 4], unit: (u64, u64)) -> Option<(u32, u32)> {
    let [left, right, top, bottom] = crop;
    let width = full.0.checked_sub((left + right).checked_mul(unit.0)?)?;
    let height = full.1.checked_sub((top + bottom).checked_mul(unit.1)?)?;
    let valid = |side: u64| (1..=MAX_DIMENSION).contains(&side);
    (valid(width) && valid(height)).then_some((width as u32, height as u32))
}

/// Four `ue(v)` crop or conformance-window offsets, if their flag is set.
fn crop_offsets(bits: &mut Bits) -> Option<[u64; 4]> {
    let mut crop = [0u64; 4];
    if bits.flag()? {
        for offset in &mut crop {
            *offset = u64::from(bits.ue()?);
        }
    }
    Some(crop)
}

/// An H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1) up to its VUI timing.
fn h264_sps(rbsp: &[u8]) -> Option<Picture> {
    let mut bits = Bits::new(rbsp);
    let profile_idc = bits.bits(8)?;
    bits.skip(16)?; // constraint flags, level_idc
    if bits.ue()? > 31 {
        return None; // seq_parameter_set_id
    }
    let mut chroma_format_idc = 1;
    let mut separate_colour_planes = false;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = bits.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_planes = bits.flag()?;
        }
        if bits.ue()? > 6 || bits.ue()? > 6 {
            return None; // bit_depth_luma_minus8, bit_depth_chroma_minus8
        }
        bits.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for list in 0..lists {
                if bits.flag()? {
                    skip_scaling_list(&mut bits, if list < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    if bits.ue()? > 12 {
        return None; // log2_max_frame_num_minus4
    }
    match bits.ue()? {
        0 => {
            if bits.ue()? > 12 {
                return None; // log2_max_pic_order_cnt_lsb_minus4
            }
        }
        1 => {
            bits.skip(1)?;
            bits.se()?;
            bits.se()?;
            let cycle = bits.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                bits.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    bits.ue()?; // max_num_ref_frames
    bits.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_in_macroblocks = u64::from(bits.ue()?) + 1;
    let height_in_map_units = u64::from(bits.ue()?) + 1;
    let frame_mbs_only = bits.flag()?;
    if !frame_mbs_only {
        bits.skip(1)?; // mb_adaptive_frame_field_flag
    }
    bits.skip(1)?; // direct_8x8_inference_flag
    let crop = crop_offsets(&mut bits)?;
    // Crop units (§7.4.2.1.1): chroma subsampling, doubled vertically for field coding.
    let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_planes) {
        (0, _) | (_, true) | (3, _) => (1, 1),
        (1, _) => (2, 2),
        _ => (2, 1),
    };
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let full = (width_in_macroblocks * 16, height_in_map_units * 16 * field_factor);
    let (width, height) = cropped(full, crop, (sub_width, sub_height * field_factor))?;
    // A VUI cut short leaves the size valid, without a rate.
    let (aspect, frame_rate) = if bits.flag()? { h264_vui(&mut bits) } else { (None, None) };
    Some(Picture { width, height, frame_rate, aspect, codec: None })
}

/// The sample aspect ratio an H.264 SPS NAL unit (header byte included, as `avcC` stores it)
/// states in its VUI.
pub(super) fn h264_sps_aspect_ratio(nal: &[u8]) -> Option<AspectRatio> {
    let rbsp = unescape_rbsp(nal.get(1..nal.len().min(MAX_PARAMETER_SET_LEN))?);
    h264_sps(&rbsp)?.aspect
}

/// `aspect_ratio_idc` 1–16 of H.264 Table E-1 (HEVC uses the same table).
const H264_ASPECT_RATIOS: [(u64, u64); 16] = [
    (1, 1),
    (12, 11),
    (10, 11),
    (16, 11),
    (40, 33),
    (24, 11),
    (20, 11),
    (32, 11),
    (80, 33),
    (18, 11),
    (15, 11),
    (64, 33),
    (160, 99),
    (4, 3),
    (3, 2),
    (2, 1),
];

/// `scaling_list()` of H.264 §7.3.2.1.1.1, read only to be skipped.
fn skip_scaling_list(bits: &mut Bits, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            let delta = bits.se()?;
            if !(-128..=127).contains(&delta) {
                return None;
            }
            next = (last + delta + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// The VUI's sample aspect ratio and timing info: frames per second is `time_scale / (2 ×
/// num_units_in_tick)`, a tick being a field (H.264 Annex E). Each is `None` when absent or
/// cut short.
fn h264_vui(bits: &mut Bits) -> (Option<AspectRatio>, Option<f64>) {
    let mut aspect = None;
    let frame_rate = (|| {
        if bits.flag()? {
            aspect = match bits.bits(8)? {
                255 => AspectRatio::new(u64::from(bits.bits(16)?), u64::from(bits.bits(16)?)),
                idc => H264_ASPECT_RATIOS
                    .get(usize::try_from(idc).ok()?.checked_sub(1)?)
                    .and_then(|&(num, den)| AspectRatio::new(num, den)),
            };
        }
        if bits.flag()? {
            bits.skip(1)?; // overscan_appropriate_flag
        }
        if bits.flag()? {
            bits.skip(4)?; // video_format, video_full_range_flag
            if bits.flag()? {
                bits.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coefficients
            }
        }
        if bits.flag()? {
            bits.ue()?;
            bits.ue()?; // chroma_sample_loc_type_top_field, _bottom_field
        }
        if !bits.flag()? {
            return None;
        }
        let num_units_in_tick = bits.bits(32)?;
        let time_scale = bits.bits(32)?;
        (num_units_in_tick > 0 && time_scale > 0)
            .then(|| f64::from(time_scale) / (2.0 * f64::from(num_units_in_tick)))
    })();
    (aspect, frame_rate)
}

/// `profile_tier_level(1, max_sub_layers_minus1)` of HEVC §7.3.3, skipped.
fn skip_hevc_profile_tier_level(bits: &mut Bits, max_sub_layers_minus1: u32) -> Option<()> {
    bits.skip(96)?; // general profile (88 bits) and level (8 bits)
    let sub_layers = max_sub_layers_minus1 as usize;
    let mut present = [(false, false); 8];
    for layer in present.iter_mut().take(sub_layers) {
        *layer = (bits.flag()?, bits.flag()?);
    }
    if sub_layers > 0 {
        bits.skip(2 * (8 - sub_layers))?; // reserved_zero_2bits
    }
    for &(profile, level) in present.iter().take(sub_layers) {
        bits.skip(if profile { 88 } else { 0 } + if level { 8 } else { 0 })?;
    }
    Some(())
}

/// An HEVC sequence parameter set (H.265 §7.3.2.2) up to its conformance window: the size.
/// Its frame rate is in the VUI behind reference picture sets, too far to be worth it; the
/// VPS usually has it (see [`hevc_vps_frame_rate`]).
fn hevc_sps(rbsp: &[u8]) -> Option<Picture> {
    let mut bits = Bits::new(rbsp);
    bits.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = bits.bits(3)?;
    bits.skip(1)?; // sps_temporal_id_nesting_flag
    skip_hevc_profile_tier_level(&mut bits, max_sub_layers_minus1)?;
    if bits.ue()? > 15 {
        return None; // sps_seq_parameter_set_id
    }
    let chroma_format_idc = bits.ue()?;
    if chroma_format_idc > 3 {
        return None;
    }
    let separate_colour_planes = chroma_format_idc == 3 && bits.flag()?;
    let width = u64::from(bits.ue()?);
    let height = u64::from(bits.ue()?);
    let window = crop_offsets(&mut bits)?;
    let unit = match (chroma_format_idc, separate_colour_planes) {
        (1, _) => (2, 2),
        (2, false) => (2, 1),
        _ => (1, 1),
    };
    let (width, height) = cropped((width, height), window, unit)?;
    Some(Picture { width, height, frame_rate: None, aspect: None, codec: None })
}

/// The VPS timing info (H.265 §7.3.2.1): `vps_time_scale / vps_num_units_in_tick` pictures
/// per second.
fn hevc_vps_frame_rate(rbsp: &[u8]) -> Option<f64> {
    let mut bits = Bits::new(rbsp);
    bits.skip(4 + 1 + 1 + 6)?; // vps_video_parameter_set_id, base layer flags, max_layers_minus1
    let max_sub_layers_minus1 = bits.bits(3)?;
    bits.skip(1 + 16)?; // temporal_id_nesting_flag, vps_reserved_0xffff_16bits
    skip_hevc_profile_tier_level(&mut bits, max_sub_layers_minus1)?;
    let first = if bits.flag()? { 0 } else { max_sub_layers_minus1 };
    for _ in first..=max_sub_layers_minus1 {
        bits.ue()?;
        bits.ue()?;
        bits.ue()?; // max_dec_pic_buffering_minus1, max_num_reorder_pics, max_latency_increase_plus1
    }
    let max_layer_id = bits.bits(6)? as usize;
    let layer_sets_minus1 = bits.ue()?;
    if layer_sets_minus1 > 1023 {
        return None;
    }
    for _ in 0..layer_sets_minus1 {
        bits.skip(max_layer_id + 1)?; // layer_id_included_flag
    }
    if !bits.flag()? {
        return None;
    }
    let num_units_in_tick = bits.bits(32)?;
    let time_scale = bits.bits(32)?;
    (num_units_in_tick > 0 && time_scale > 0).then(|| f64::from(time_scale) / f64::from(num_units_in_tick))
}

/// An MPEG-1/2 video sequence header (`00 00 01 B3`) and, for MPEG-2, its sequence extension
/// (`00 00 01 B5`, identifier 1), which also names the codec MPEG-2 as ffmpeg's parser does.
fn mpeg_video_sequence(data: &[u8]) -> Option<Picture> {
    const RATES: [f64; 9] =
        [0.0, 24000.0 / 1001.0, 24.0, 25.0, 30000.0 / 1001.0, 30.0, 50.0, 60000.0 / 1001.0, 60.0];
    let mut picture: Option<Picture> = None;
    let mut mpeg1_aspect = 0u8;
    for unit in start_code_units(data) {
        match (unit.first(), &mut picture) {
            (Some(0xB3), None) => {
                let header = unit.get(1..5)?;
                let width = u32::from(header[0]) << 4 | u32::from(header[1] >> 4);
                let height = u32::from(header[1] & 0x0F) << 8 | u32::from(header[2]);
                let frame_rate = RATES.get(usize::from(header[3] & 0x0F)).copied().filter(|&r| r > 0.0);
                if width == 0 || height == 0 {
                    return None;
                }
                let aspect_code = header[3] >> 4;
                picture =
                    Some(Picture { width, height, frame_rate, aspect: None, codec: Some("mpeg1video") });
                mpeg1_aspect = aspect_code;
            }
            (Some(0xB5), Some(picture)) if unit.get(1).is_some_and(|b| b >> 4 == 1) => {
                let mut bits = Bits::new(&unit[1..]);
                bits.skip(4 + 8 + 1 + 2)?; // identifier, profile/level, progressive, chroma
                let width_extension = bits.bits(2)?;
                let height_extension = bits.bits(2)?;
                bits.skip(12 + 1 + 8 + 1)?; // bit rate ext, marker, vbv ext, low_delay
                let rate_n = f64::from(bits.bits(2)? + 1);
                let rate_d = f64::from(bits.bits(5)? + 1);
                picture.width |= width_extension << 12;
                picture.height |= height_extension << 12;
                picture.frame_rate = picture.frame_rate.map(|rate| rate * rate_n / rate_d);
                picture.codec = Some("mpeg2video");
                picture.aspect = mpeg2_sample_aspect(mpeg1_aspect, picture.width, picture.height);
                return Some(*picture);
            }
            (Some(0x00), Some(_)) => break, // a picture: no extension follows the header
            _ => {}
        }
    }
    // MPEG-1 codes the pixel shape itself (ISO/IEC 11172-2 Table 2-D.3.5: height/width ×
    // 10000); only the square code is common enough to be worth a table.
    picture.map(|p| Picture { aspect: (mpeg1_aspect == 1).then_some(AspectRatio::SQUARE), ..p })
}

/// An MPEG-2 `aspect_ratio_information` (ISO/IEC 13818-2 Table 6-3) is the display's shape:
/// code 1 is square pixels, 2–4 are 4:3, 16:9 and 2.21:1 pictures, so a pixel is
/// (DAR × height) : width.
fn mpeg2_sample_aspect(code: u8, width: u32, height: u32) -> Option<AspectRatio> {
    let (dar_w, dar_h) = match code {
        1 => return Some(AspectRatio::SQUARE),
        2 => (4, 3),
        3 => (16, 9),
        4 => (221, 100),
        _ => return None,
    };
    AspectRatio::new(dar_w * u64::from(height), dar_h * u64::from(width))
}

// ---------------------------------------------------------------------------------------------
// Audio frame headers
// ---------------------------------------------------------------------------------------------

/// The first audio frame of a stream: its length (for the end of the last frame) and, for
/// MPEG audio, which layer the stream really is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AudioFrame {
    codec: Option<&'static str>,
    samples: u32,
    sample_rate: u32,
}

/// How far into the first audio PES the first frame header is looked for: PES packets of
/// audio start on a frame in practice.
const AUDIO_SYNC_SEARCH: usize = 256;

fn audio_frame(codec: &str, data: &[u8]) -> Option<AudioFrame> {
    let search = data.len().min(AUDIO_SYNC_SEARCH);
    (0..search).find_map(|at| {
        let header = data.get(at..at + 7)?;
        match codec {
            "aac" => adts_frame(header),
            "mp3" => mpeg_audio_frame(header),
            "ac3" | "eac3" => ac3_frame(header),
            _ => None,
        }
    })
}

/// An ADTS frame: 1024 samples per raw data block; the PMT has named the codec already.
fn adts_frame(h: &[u8]) -> Option<AudioFrame> {
    let header = adts_header(h)?;
    Some(AudioFrame { codec: None, samples: header.samples_per_frame, sample_rate: header.sample_rate? })
}

/// An MPEG audio frame: the layer names the codec, as ffprobe reports `mp2` for a layer II
/// stream that the PMT calls MPEG audio.
fn mpeg_audio_frame(h: &[u8]) -> Option<AudioFrame> {
    let header = frame_header(h)?;
    Some(AudioFrame {
        codec: Some(header.codec),
        samples: header.samples_per_frame,
        sample_rate: header.sample_rate,
    })
}

/// An AC-3 or E-AC-3 sync frame header (ATSC A/52 §5.3, annex E): 6 blocks of 256 samples,
/// fewer in E-AC-3 frames that say so.
fn ac3_frame(h: &[u8]) -> Option<AudioFrame> {
    if h[..2] != [0x0B, 0x77] {
        return None;
    }
    let fscod = usize::from(h[4] >> 6);
    let enhanced = h[5] >> 3 > 10; // bsid 16 is E-AC-3
    let (sample_rate, blocks) = match (enhanced, fscod) {
        (false, 3) => return None,
        (false, _) => ([48_000, 44_100, 32_000][fscod], 6),
        (true, 3) => (*[24_000, 22_050, 16_000].get(usize::from((h[4] >> 4) & 3))?, 6),
        (true, _) => ([48_000, 44_100, 32_000][fscod], [1, 2, 3, 6][usize::from((h[4] >> 4) & 3)]),
    };
    Some(AudioFrame { codec: None, samples: 256 * blocks, sample_rate })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn fixture_bytes(path: &str) -> Vec<u8> {
        let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn extract_bytes(bytes: Vec<u8>) -> Result<Extracted, ExtractError> {
        extract(&mut Cursor::new(bytes), false)
    }

    fn metadata_of(bytes: Vec<u8>) -> serde_json::Value {
        extract_bytes(bytes).unwrap_or_else(|e| panic!("{e:?}")).metadata
    }

    /// ffprobe -show_streams -show_format: h264 High 320x240, avg_frame_rate 25/1, aac;
    /// format duration 1.023222 (audio starts at 1.456778, video ends at 1.48 + 1.0);
    /// `-count_frames` counts 25 video frames, which we do not (no index in a TS).
    #[test]
    fn fixture_matches_ffprobe() {
        let extracted = extract_bytes(fixture_bytes("video/ts_h264_aac.ts")).unwrap();
        assert_eq!(
            (extracted.data_type, extracted.mime_type.as_str()),
            (crate::job::DataType::Video, "video/mp2t")
        );
        let m = extracted.metadata;
        assert_eq!(m["container"], "mpegts");
        assert_eq!(m["duration_seconds"].as_f64(), Some(1.023222));
        assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(320), Some(240)));
        assert_eq!((m["display_width"].as_u64(), m["display_height"].as_u64()), (Some(320), Some(240)));
        assert_eq!(m["rotation"].as_u64(), Some(0));
        assert_eq!(m["frame_rate"].as_f64(), Some(25.0));
        assert_eq!(m["frame_count"], serde_json::Value::Null);
        assert_eq!((m["video_codec"].as_str(), m["audio_codec"].as_str()), (Some("h264"), Some("aac")));
        assert_eq!(m["has_audio"].as_bool(), Some(true));
    }

    #[test]
    fn m2ts_and_reed_solomon_packets_read_like_plain_ones() {
        let plain = fixture_bytes("video/ts_h264_aac.ts");
        let expected = metadata_of(plain.clone());
        let m2ts: Vec<u8> = plain.chunks(188).flat_map(|p| [&[0x0C, 0, 0, 0][..], p].concat()).collect();
        assert_eq!(metadata_of(m2ts), expected);
        let with_parity: Vec<u8> = plain.chunks(188).flat_map(|p| [p, &[0xAB; 16][..]].concat()).collect();
        assert_eq!(metadata_of(with_parity), expected);
    }

    #[test]
    fn damaged_packets_are_skipped_not_trusted() {
        let mut bytes = fixture_bytes("video/ts_h264_aac.ts");
        // Garbage in the middle: three bytes lost (out of sync), one packet flagged in error.
        bytes.drain(188 * 60 + 10..188 * 60 + 13);
        bytes[188 * 40 + 1] |= 0x80;
        let m = metadata_of(bytes);
        assert_eq!((m["width"].as_u64(), m["duration_seconds"].as_f64()), (Some(320), Some(1.023222)));
    }

    // --- hand-built streams ---

    /// Writes the bits of a parameter set, with Exp-Golomb codes.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        fn u(&mut self, count: u32, value: u64) -> &mut Self {
            self.bits.extend((0..count).rev().map(|i| (value >> i) & 1 == 1));
            self
        }

        fn ue(&mut self, value: u64) -> &mut Self {
            let code = value + 1;
            let len = 64 - code.leading_zeros();
            self.u(len - 1, 0).u(len, code)
        }

        /// RBSP trailing bits, then bytes.
        fn finish(&mut self) -> Vec<u8> {
            self.bits.push(true);
            while !self.bits.len().is_multiple_of(8) {
                self.bits.push(false);
            }
            self.bits
                .chunks(8)
                .map(|byte| byte.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit)))
                .collect()
        }
    }

    /// Emulation prevention: `00 00 0x` (x ≤ 3) is written `00 00 03 0x`.
    fn escape(rbsp: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut zeros = 0;
        for &byte in rbsp {
            if zeros >= 2 && byte <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if byte == 0 { zeros + 1 } else { 0 };
            out.push(byte);
        }
        out
    }

    #[test]
    fn mpeg2_aspect_codes_are_display_shapes() {
        assert_eq!(mpeg2_sample_aspect(1, 720, 576), Some(AspectRatio::SQUARE));
        assert_eq!(mpeg2_sample_aspect(2, 720, 576), AspectRatio::new(16, 15));
        assert_eq!(mpeg2_sample_aspect(3, 720, 576), AspectRatio::new(64, 45));
        assert_eq!(mpeg2_sample_aspect(3, 1920, 1080), Some(AspectRatio::SQUARE));
        assert_eq!(mpeg2_sample_aspect(0, 720, 576), None, "forbidden code");
        // the VUI of an SPS whose Extended_SAR says 1:1
        let nal = h264_sps_nal(20, 15, 0, Some((1, 50)));
        assert_eq!(h264_sps_aspect_ratio(&nal[4..]), Some(AspectRatio::SQUARE));
        assert_eq!(h264_sps_aspect_ratio(&h264_sps_nal(20, 15, 0, None)[4..]), None);
    }

    /// A High profile SPS: `width_mbs` × `height_mbs` macroblocks, frame coded, cropped by
    /// `crop_bottom` chroma rows, with VUI timing if given.
    fn h264_sps_nal(
        width_mbs: u64,
        height_mbs: u64,
        crop_bottom: u64,
        timing: Option<(u64, u64)>,
    ) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.u(8, 100).u(8, 0).u(8, 40).ue(0); // profile, constraints, level, sps id
        w.ue(1).ue(0).ue(0).u(1, 0).u(1, 0); // 4:2:0, 8-bit, no bypass, no scaling matrix
        w.ue(0).ue(0).ue(0); // log2_max_frame_num, poc type 0, log2_max_poc_lsb
        w.ue(4).u(1, 0); // max_num_ref_frames, gaps
        w.ue(width_mbs - 1).ue(height_mbs - 1).u(1, 1).u(1, 1); // size, frame_mbs_only, direct_8x8
        if crop_bottom > 0 {
            w.u(1, 1).ue(0).ue(0).ue(0).ue(crop_bottom);
        } else {
            w.u(1, 0);
        }
        match timing {
            Some((num_units_in_tick, time_scale)) => {
                w.u(1, 1); // vui_parameters_present_flag
                w.u(1, 1).u(8, 255).u(16, 1).u(16, 1); // Extended_SAR 1:1
                w.u(1, 0).u(1, 1).u(3, 5).u(1, 0).u(1, 1).u(24, 0x01_01_01); // overscan, signal type
                w.u(1, 0); // chroma location
                w.u(1, 1).u(32, num_units_in_tick).u(32, time_scale).u(1, 1);
            }
            None => {
                w.u(1, 0);
            }
        }
        [vec![0, 0, 0, 1, 0x67], escape(&w.finish())].concat()
    }

    /// A 188-byte packet; a payload shorter than 184 bytes is preceded by adaptation-field
    /// stuffing, as muxers do for PES packets.
    fn packet(pid: u16, unit_start: bool, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() <= 184);
        let pusi = if unit_start { 0x40 } else { 0 };
        let mut out = vec![SYNC_BYTE, pusi | (pid >> 8) as u8, pid as u8];
        if payload.len() == 184 {
            out.push(0x10);
        } else {
            let stuffing = 183 - payload.len();
            out.push(0x30);
            out.push(stuffing as u8);
            if stuffing > 0 {
                out.push(0);
                out.extend(std::iter::repeat_n(0xFF, stuffing - 1));
            }
        }
        out.extend_from_slice(payload);
        out
    }

    /// The packets of a PES packet (or, with `pointer`, of a PSI section after its pointer
    /// field) split into 184-byte payloads.
    fn packets_of(pid: u16, data: &[u8]) -> Vec<u8> {
        data.chunks(184).enumerate().flat_map(|(i, chunk)| packet(pid, i == 0, chunk)).collect()
    }

    fn section(table_id: u8, extension: u16, body: &[u8]) -> Vec<u8> {
        let length = 5 + body.len() + 4;
        let mut section = vec![table_id, 0xB0 | (length >> 8) as u8, length as u8];
        section.extend_from_slice(&extension.to_be_bytes());
        section.extend_from_slice(&[0xC1, 0, 0]); // version 0, current, section 0 of 0
        section.extend_from_slice(body);
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        section
    }

    /// A PSI section in its own packet(s): pointer field 0, stuffing after.
    fn psi(pid: u16, section: &[u8]) -> Vec<u8> {
        let mut payload = [&[0u8][..], section].concat();
        payload.resize(payload.len().div_ceil(184) * 184, 0xFF);
        packets_of(pid, &payload)
    }

    fn pat(programs: &[(u16, u16)]) -> Vec<u8> {
        let body: Vec<u8> = programs
            .iter()
            .flat_map(|&(n, pid)| [n.to_be_bytes(), (0xE000 | pid).to_be_bytes()].concat())
            .collect();
        psi(0, &section(0, 1, &body))
    }

    fn pmt_section(program: u16, streams: &[(u8, u16)]) -> Vec<u8> {
        let mut body = vec![0xE1, 0x00, 0xF0, 0x00]; // PCR PID 0x100, no program descriptors
        for &(stream_type, pid) in streams {
            body.push(stream_type);
            body.extend_from_slice(&(0xE000 | pid).to_be_bytes());
            body.extend_from_slice(&[0xF0, 0x00]);
        }
        section(2, program, &body)
    }

    fn pes(pid: u16, stream_id: u8, pts: u64, data: &[u8]) -> Vec<u8> {
        let pts_bytes = [
            0x21 | ((pts >> 29) & 0x0E) as u8,
            (pts >> 22) as u8,
            ((pts >> 14) & 0xFE) as u8 | 1,
            (pts >> 7) as u8,
            ((pts << 1) & 0xFE) as u8 | 1,
        ];
        let header = [&[0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5][..], &pts_bytes].concat();
        packets_of(pid, &[header, data.to_vec()].concat())
    }

    const VIDEO_PID: u16 = 0x100;
    const AUDIO_PID: u16 = 0x101;
    const ACCESS_UNIT_DELIMITER: [u8; 6] = [0, 0, 0, 1, 0x09, 0xF0];

    /// PAT, PMT (H.264 + optional AAC), then `frames` video PES every `step` ticks from
    /// `first_pts`, the first with `sps`, and one ADTS frame per two video frames.
    fn stream(sps: &[u8], first_pts: u64, step: u64, frames: u64, with_audio: bool) -> Vec<u8> {
        let mut streams = vec![(0x1B, VIDEO_PID)];
        if with_audio {
            streams.push((0x0F, AUDIO_PID));
        }
        let mut out = [pat(&[(1, 0x1000)]), psi(0x1000, &pmt_section(1, &streams))].concat();
        // ADTS: 48 kHz (index 3), one raw data block, 7-byte header.
        let adts = [0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x1F, 0xFC];
        for frame in 0..frames {
            let pts = (first_pts + frame * step) % PTS_WRAP;
            let data = if frame == 0 {
                [&ACCESS_UNIT_DELIMITER[..], sps].concat()
            } else {
                ACCESS_UNIT_DELIMITER.to_vec()
            };
            out.extend(pes(VIDEO_PID, 0xE0, pts, &[data, vec![0x55; 300]].concat()));
            if with_audio && frame % 2 == 0 {
                out.extend(pes(AUDIO_PID, 0xC0, pts, &adts));
            }
        }
        out
    }

    #[test]
    fn cropped_1080p_at_ntsc_rate_from_the_sps() {
        let sps = h264_sps_nal(120, 68, 4, Some((1001, 60_000)));
        let m = metadata_of(stream(&sps, 900_000, 3003, 10, false));
        assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(1920), Some(1080)));
        assert!((m["frame_rate"].as_f64().unwrap() - 30000.0 / 1001.0).abs() < 1e-9);
        // 10 frames of 3003 ticks.
        assert_eq!(m["duration_seconds"].as_f64(), Some(whole_microseconds(30_030.0 / 90_000.0)));
        assert_eq!((m["has_audio"].as_bool(), m["audio_codec"].as_str()), (Some(false), None));
    }

    #[test]
    fn audio_frames_extend_the_end_and_the_rate_comes_from_timestamps_without_vui() {
        let sps = h264_sps_nal(20, 15, 0, None);
        let m = metadata_of(stream(&sps, 0, 3600, 10, true));
        assert_eq!((m["width"].as_u64(), m["height"].as_u64()), (Some(320), Some(240)));
        assert_eq!(m["frame_rate"].as_f64(), Some(25.0));
        // Video ends at 10 × 3600 = 36000 ticks; the last ADTS frame (PTS 28800) at 28800 + 1920.
        assert_eq!(m["duration_seconds"].as_f64(), Some(0.4));
        assert_eq!(m["audio_codec"].as_str(), Some("aac"));
    }

    #[test]
    fn timestamps_wrapping_past_33_bits() {
        let sps = h264_sps_nal(20, 15, 0, Some((1, 50)));
        let m = metadata_of(stream(&sps, PTS_WRAP - 5 * 3600, 3600, 10, true));
        assert_eq!(m["duration_seconds"].as_f64(), Some(0.4));
        assert_eq!(relative(100, PTS_WRAP - 100), 200);
        assert_eq!(relative(PTS_WRAP - 100, 100), -200);
    }

    /// Counts the bytes read, to prove that the middle of a long stream is not read.
    struct Counting {
        inner: Cursor<Vec<u8>>,
        read: u64,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    impl std::io::Seek for Counting {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_long_stream_costs_its_first_step_and_its_tail() {
        // 20000 frames of 25 fps (800 s) in about 15 MiB.
        let sps = h264_sps_nal(20, 15, 0, Some((1, 50)));
        let bytes = stream(&sps, 0, 3600, 20_000, true);
        let mut source = Counting { inner: Cursor::new(bytes), read: 0 };
        let m = extract(&mut source, false).unwrap().metadata;
        assert_eq!(m["duration_seconds"].as_f64(), Some(800.0));
        assert!(source.read <= HEAD_STEPS[0] + TAIL_LEN, "{} bytes read", source.read);
    }

    #[test]
    fn exp_golomb_codes() {
        let bytes = BitWriter::default().ue(0).ue(1).ue(2).ue(254).ue(u64::from(u32::MAX) - 1).finish();
        let mut bits = Bits::new(&bytes);
        assert_eq!([bits.ue(), bits.ue(), bits.ue(), bits.ue()], [Some(0), Some(1), Some(2), Some(254)]);
        assert_eq!(bits.ue(), Some(u32::MAX - 1));
        // 32 leading zeros: more than any syntax element holds.
        let mut bits = Bits::new(&[0, 0, 0, 0, 0x80, 0, 0, 0, 0]);
        assert_eq!(bits.ue(), None);
        let signed = BitWriter::default().ue(1).ue(2).ue(3).finish();
        let mut bits = Bits::new(&signed);
        assert_eq!([bits.se(), bits.se(), bits.se()], [Some(1), Some(-1), Some(2)]);
        assert_eq!(Bits::new(&[]).bit(), None);
    }

    fn is_corrupt(result: &Result<Extracted, ExtractError>, about: &str) -> bool {
        matches!(result, Err(ExtractError::Corrupt(message)) if message.contains(about))
    }

    #[test]
    fn hostile_tables_are_corrupt() {
        let sps = h264_sps_nal(20, 15, 0, Some((1, 50)));
        let good = stream(&sps, 0, 3600, 10, true);
        let pmt_at = 188; // the PMT is the second packet
        // No PAT at all: only the PMT and the PES packets.
        let result = extract_bytes(good[pmt_at..].to_vec());
        assert!(is_corrupt(&result, "(PAT)"), "{result:?}");
        // A PMT whose section_length lies (longer than what follows; shorter than its data):
        // the CRC no longer matches, or the section never ends.
        for length in [60u16, 1000, 10] {
            let mut bytes = good.clone();
            bytes[pmt_at + 6..pmt_at + 8].copy_from_slice(&(0xB000 | length).to_be_bytes());
            let result = extract_bytes(bytes);
            assert!(is_corrupt(&result, "(PMT)"), "{length}: {result:?}");
        }
        // Longer than any section may be.
        let mut bytes = good.clone();
        bytes[pmt_at + 6..pmt_at + 8].copy_from_slice(&0xB400u16.to_be_bytes());
        let result = extract_bytes(bytes);
        assert!(is_corrupt(&result, "more than the 1024 allowed"), "{result:?}");
        // A PMT (valid CRC) whose stream entry declares 200 bytes of descriptors it lacks.
        let lying = section(2, 1, &[0xE1, 0x00, 0xF0, 0x00, 0x1B, 0xE1, 0x00, 0xF0, 200]);
        let bytes = [pat(&[(1, 0x1000)]), psi(0x1000, &lying), good[2 * 188..].to_vec()].concat();
        let result = extract_bytes(bytes);
        assert!(is_corrupt(&result, "overrun"), "{result:?}");
        // A PAT listing no program; a pointer field past the packet.
        let bytes = [psi(0, &section(0, 1, &[])), good[188..].to_vec()].concat();
        assert!(is_corrupt(&extract_bytes(bytes), "lists no program"));
        let mut bytes = good.clone();
        bytes[4] = 200;
        assert!(is_corrupt(&extract_bytes(bytes), "pointer field"));
    }

    #[test]
    fn hostile_parameter_sets_are_corrupt() {
        let cases = [
            // 40 zero bits where the width is: an Exp-Golomb code longer than 32 bits.
            [vec![0, 0, 0, 1, 0x67, 66, 0, 30], vec![0x80, 0, 0, 0, 0, 0, 0x01]].concat(),
            // 2^31 macroblocks wide.
            h264_sps_nal(1 << 31, 15, 0, None),
            // Cropped to less than nothing.
            h264_sps_nal(20, 15, 200, None),
            // Cut after its profile (the next NAL unit follows).
            [&[0, 0, 0, 1, 0x67, 100][..], &ACCESS_UNIT_DELIMITER].concat(),
        ];
        for sps in cases {
            let result = extract_bytes(stream(&sps, 0, 3600, 10, false));
            assert!(is_corrupt(&result, "no valid h264 parameter set"), "{sps:?}: {result:?}");
        }
    }

    #[test]
    fn programs_without_video_and_scrambled_video() {
        let audio_only = [pat(&[(1, 0x1000)]), psi(0x1000, &pmt_section(1, &[(0x0F, AUDIO_PID)]))].concat();
        assert!(matches!(extract_bytes(audio_only), Err(ExtractError::Unsupported(_))));
        let nothing = [pat(&[(1, 0x1000)]), psi(0x1000, &pmt_section(1, &[(0x05, 0x200)]))].concat();
        assert!(is_corrupt(&extract_bytes(nothing), "neither"));
        let sps = h264_sps_nal(20, 15, 0, Some((1, 50)));
        let mut scrambled = stream(&sps, 0, 3600, 10, false);
        for packet in scrambled.chunks_mut(188).skip(2) {
            packet[3] |= 0x80;
        }
        assert!(
            matches!(extract_bytes(scrambled), Err(ExtractError::Unsupported(m)) if m.contains("scrambled"))
        );
    }

    #[test]
    fn the_first_program_with_video_is_reported() {
        let sps = h264_sps_nal(20, 15, 0, Some((1, 50)));
        let video = stream(&sps, 0, 3600, 10, false);
        let radio = pmt_section(1, &[(0x03, 0x300)]);
        let tv = pmt_section(2, &[(0x1B, VIDEO_PID)]);
        let bytes = [
            pat(&[(1, 0x1001), (2, 0x1000)]),
            psi(0x1001, &radio),
            psi(0x1000, &tv),
            video[2 * 188..].to_vec(),
        ]
        .concat();
        let m = metadata_of(bytes);
        assert_eq!((m["video_codec"].as_str(), m["has_audio"].as_bool()), (Some("h264"), Some(false)));
    }

    #[test]
    fn truncated_and_random_streams_fail_cleanly() {
        let bytes = fixture_bytes("video/ts_h264_aac.ts");
        for len in (0..bytes.len()).step_by(97) {
            match extract_bytes(bytes[..len].to_vec()) {
                Ok(extracted) => assert_eq!(extracted.metadata["width"].as_u64(), Some(320)),
                Err(ExtractError::Corrupt(_)) => {}
                Err(other) => panic!("cut at {len}: {other:?}"),
            }
        }
        // Sync bytes in place, noise everywhere else.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        let random: Vec<u8> =
            (0..188 * 2000).map(|i| if i % 188 == 0 { SYNC_BYTE } else { noise() }).collect();
        assert!(matches!(extract_bytes(random), Err(ExtractError::Corrupt(_))));
    }

    #[test]
    fn audio_frame_headers() {
        // MPEG-1 layer II 48 kHz, layer III 44.1 kHz, MPEG-2 layer III 22.05 kHz.
        let frame = |h: [u8; 4]| mpeg_audio_frame(&[h[0], h[1], h[2], h[3], 0, 0, 0]);
        assert_eq!(
            frame([0xFF, 0xFD, 0x84, 0x00]).map(|f| (f.codec, f.sample_rate)),
            Some((Some("mp2"), 48_000))
        );
        assert_eq!(frame([0xFF, 0xFB, 0x90, 0x00]).map(|f| (f.codec, f.samples)), Some((Some("mp3"), 1152)));
        assert_eq!(frame([0xFF, 0xF3, 0x80, 0x00]).map(|f| (f.sample_rate, f.samples)), Some((22_050, 576)));
        assert_eq!(frame([0xFF, 0xFB, 0xF0, 0x00]), None); // bitrate index 15
        // AC-3 at 48 kHz; E-AC-3 with 1 block per frame at 44.1 kHz.
        assert_eq!(
            ac3_frame(&[0x0B, 0x77, 0, 0, 0x00, 0x40, 0]).map(|f| (f.samples, f.sample_rate)),
            Some((1536, 48_000))
        );
        assert_eq!(
            ac3_frame(&[0x0B, 0x77, 0, 0, 0x40, 0x80, 0]).map(|f| (f.samples, f.sample_rate)),
            Some((256, 44_100))
        );
    }
}
