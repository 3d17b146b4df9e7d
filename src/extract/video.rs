//! Video metadata (DESIGN §3 `video`): container, duration, picture size and rotation, average
//! frame rate and frame count, codecs, in ffprobe's vocabulary.
//!
//! MP4/MOV/3GP go through [`super::isobmff`]; Matroska and WebM through the small EBML reader
//! below; AVI through [`super::avi`] and MPEG transport streams through [`super::mpegts`]. An
//! ISO-BMFF or Matroska file without a video track (M4A, MKA, WebM audio), or whose only
//! "video" is a cover or chapter picture, is an audio file and goes to [`super::audio`].
//!
//! Why not the `matroska` crate: it sizes buffers by declared element lengths
//! (`vec![0; size]`), so a 28-byte file declaring a 4 GiB `CodecPrivate` aborts the process
//! under the sandbox's address-space limit, and it `assert!`s on seek-head targets. What we need
//! from Matroska is a dozen header elements, read here with every length bounded.

use std::io::{Read, SeekFrom};

use serde::Serialize;

use super::isobmff::{self, Movie, Track, TrackKind};
use super::{ExtractError, Extracted, ReadSeek, sniff::Format};
use crate::job::DataType;

/// The `video` metadata of DESIGN §3; the field names are the wire contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoMetadata {
    /// `mp4`, `mov`, `3gp`, `3g2`, `mkv`, `webm`, `avi`, `mpegts`.
    pub container: &'static str,
    pub duration_seconds: Option<f64>,
    /// Coded picture size, as stored (before rotation).
    pub width: u32,
    pub height: u32,
    /// Clockwise degrees the picture is turned for display: 0, 90, 180, 270.
    pub rotation: u16,
    /// The shape of one stored pixel, `"16:15"` for a PAL 4:3 picture stored as 720x576;
    /// `"1:1"` (square) when the file does not say otherwise.
    pub sample_aspect_ratio: AspectRatio,
    /// The size as displayed: the width stretched by the sample aspect ratio, then width and
    /// height swapped for 90° and 270°.
    pub display_width: u32,
    pub display_height: u32,
    /// Average frames per second (ffprobe's `avg_frame_rate`), e.g. 29.97002997 for 30000/1001.
    pub frame_rate: Option<f64>,
    /// Whether frames are evenly spaced in time (see [`FrameRateMode`]); `None` when the file
    /// does not say without reading every frame's timestamp (Matroska and MPEG-TS unless frames
    /// are counted).
    pub frame_rate_mode: Option<FrameRateMode>,
    /// Number of video frames. `None` for Matroska and MPEG-TS unless the job asks for
    /// `count_frames`: counting them means reading every cluster or packet.
    pub frame_count: Option<u64>,
    /// When the first video frame is shown, in seconds on the file's timeline (after the edit
    /// list of an MP4; ffprobe's `start_time` of the video stream).
    pub start_time_seconds: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub has_audio: bool,
}

/// Whether a video's frames are evenly spaced in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameRateMode {
    /// Every frame lasts as long as the others, to within one tick of the stream's clock or
    /// one millisecond, whichever is longer: a rate that is no whole number of ticks
    /// alternates between two neighbouring durations (29.97 fps in milliseconds: 33 and 34),
    /// and timestamps once rounded to the millisecond (Matroska's and FLV's clock) keep that
    /// jitter through a remux to a finer clock (2970 and 3060 ticks of 90 kHz).
    Constant,
    /// Frame durations differ by more than that: phone recordings, screen captures, edits
    /// joined at different rates.
    Variable,
}

impl FrameRateMode {
    /// The mode of frames whose spacing ranges from `shortest` to `longest` ticks of a clock
    /// of `ticks_per_second`.
    pub(super) fn from_spacing(shortest: i64, longest: i64, ticks_per_second: f64) -> FrameRateMode {
        let tolerance = (ticks_per_second / 1000.0).floor().max(1.0);
        if (longest.saturating_sub(shortest) as f64) <= tolerance {
            FrameRateMode::Constant
        } else {
            FrameRateMode::Variable
        }
    }
}

/// The most one side of a pixel may be stretched against the other: anamorphic formats use
/// up to 2:1 (HDV, DVCPRO HD at 4:3), so 16 leaves room for any real one.
const MAX_PIXEL_STRETCH: u64 = 16;

/// The fastest playback any video has: high-speed captures (1,000 fps and more) are stored at
/// a playback rate, so a faster average comes from a damaged clock, not from frames.
const MAX_FRAME_RATE: f64 = 1000.0;

impl VideoMetadata {
    /// The answer of a video: what the headers claim, less what no file can hold (a frame
    /// rate beyond [`MAX_FRAME_RATE`] is null: a timescale or tick the damage changed).
    pub(super) fn into_extracted(mut self, mime: &'static str) -> Extracted {
        self.frame_rate = self.frame_rate.filter(|rate| *rate <= MAX_FRAME_RATE);
        Extracted::new(DataType::Video, mime, self)
    }
}

/// A pixel's width to its height, in lowest terms; serialised as ffprobe prints it, `"64:45"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AspectRatio {
    pub num: u32,
    pub den: u32,
}

impl AspectRatio {
    /// Square pixels: what a file means when it says nothing.
    pub const SQUARE: AspectRatio = AspectRatio { num: 1, den: 1 };

    /// `num:den` in lowest terms; `None` for a zero term (which files use for "unknown") and
    /// for a shape beyond [`MAX_PIXEL_STRETCH`] either way, which no real pixel has (a damaged
    /// `pasp` box or SPS: a decoder ignores it, and so do we, rather than report a display
    /// billions of pixels wide).
    pub fn new(num: u64, den: u64) -> Option<AspectRatio> {
        if num == 0
            || den == 0
            || num > den.saturating_mul(MAX_PIXEL_STRETCH)
            || den > num.saturating_mul(MAX_PIXEL_STRETCH)
        {
            return None;
        }
        let gcd = {
            let (mut a, mut b) = (num, den);
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let (num, den) = (num / gcd, den / gcd);
        Some(AspectRatio { num: u32::try_from(num).ok()?, den: u32::try_from(den).ok()? })
    }
}

impl Serialize for AspectRatio {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}:{}", self.num, self.den))
    }
}

/// Extracts video metadata, or audio metadata for an ISO-BMFF or Matroska file that holds
/// only audio. With `count_frames`, Matroska and MPEG-TS files are read whole to count their
/// video frames (the other containers index them).
pub fn extract(
    source: &mut dyn ReadSeek,
    format: Format,
    count_frames: bool,
) -> Result<Extracted, ExtractError> {
    match format {
        Format::IsoBmff => extract_isobmff(source),
        Format::Matroska => extract_matroska(source, count_frames),
        Format::Avi => super::avi::extract(source),
        Format::MpegTs => super::mpegts::extract(source, count_frames),
        other => Err(ExtractError::Unsupported(format!("{other:?} is not a video container"))),
    }
}

/// Hands an audio-only file to the audio extractor, from its first byte.
fn extract_audio(source: &mut dyn ReadSeek, format: Format) -> Result<Extracted, ExtractError> {
    source.seek(SeekFrom::Start(0))?;
    super::audio::extract(source, format)
}

/// Stored size as displayed: the width stretched (or narrowed) by the sample aspect ratio, as
/// ffmpeg's `scale=iw*sar:ih` and players do, then turned.
pub(super) fn display_size(width: u32, height: u32, rotation: u16, aspect: AspectRatio) -> (u32, u32) {
    let stretched =
        (u64::from(width) * u64::from(aspect.num) + u64::from(aspect.den) / 2) / u64::from(aspect.den);
    let width = u32::try_from(stretched).unwrap_or(u32::MAX);
    if rotation % 180 == 90 { (height, width) } else { (width, height) }
}

/// Frame presentation times, taken in the order a stream stores them (decode order, where
/// B-frames come after the frame shown after them) and put back in presentation order through
/// a window deeper than any codec reorders (H.264 and HEVC hold at most 16 frames), to count
/// frames and measure their spacing without keeping every timestamp.
#[derive(Debug, Default)]
pub(super) struct FrameTimes {
    window: std::collections::BinaryHeap<std::cmp::Reverse<i64>>,
    last: Option<i64>,
    /// Shortest and longest step between consecutive frames, in the stream's ticks.
    spacing: Option<(i64, i64)>,
    count: u64,
}

/// Frames held back to undo reordering.
const REORDER_WINDOW: usize = 32;

impl FrameTimes {
    /// One frame, with its presentation time if the stream gives one.
    pub(super) fn push(&mut self, pts: Option<i64>) {
        self.count += 1;
        if let Some(pts) = pts {
            self.window.push(std::cmp::Reverse(pts));
            if self.window.len() > REORDER_WINDOW
                && let Some(std::cmp::Reverse(earliest)) = self.window.pop()
            {
                self.advance(earliest);
            }
        }
    }

    fn advance(&mut self, pts: i64) {
        if let Some(last) = self.last {
            let step = pts.saturating_sub(last);
            self.spacing =
                Some(self.spacing.map_or((step, step), |(min, max)| (min.min(step), max.max(step))));
        }
        self.last = Some(pts);
    }

    /// The number of frames, and their mode (`None` with fewer than two timed frames), for
    /// timestamps in ticks of `ticks_per_second`.
    pub(super) fn finish(mut self, ticks_per_second: f64) -> (u64, Option<FrameRateMode>) {
        while let Some(std::cmp::Reverse(pts)) = self.window.pop() {
            self.advance(pts);
        }
        (self.count, self.spacing.map(|(min, max)| FrameRateMode::from_spacing(min, max, ticks_per_second)))
    }
}

/// Seconds rounded to the microsecond, ffprobe's precision (AV_TIME_BASE), for durations
/// computed from a ratio that has no short decimal form (40 × 1152 / 44100 s).
pub(super) fn whole_microseconds(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

// ---------------------------------------------------------------------------------------------
// MP4, MOV, 3GP
// ---------------------------------------------------------------------------------------------

fn extract_isobmff(source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    let movie = isobmff::read_movie(source)?;
    let metadata = match isobmff_metadata(&movie) {
        Some(metadata) => metadata,
        None if movie.tracks.iter().any(|t| t.kind == TrackKind::Audio) => {
            return extract_audio(source, Format::IsoBmff);
        }
        None => {
            return Err(ExtractError::corrupt("MP4/QuickTime", "it has neither a video nor an audio track"));
        }
    };
    let mime = match metadata.container {
        "mov" => "video/quicktime",
        "3gp" => "video/3gpp",
        "3g2" => "video/3gpp2",
        _ => "video/mp4",
    };
    Ok(metadata.into_extracted(mime))
}

/// The video metadata of a movie, or `None` if it has no real video track.
fn isobmff_metadata(movie: &Movie) -> Option<VideoMetadata> {
    let video = first_preferring_enabled(movie.tracks.iter().filter(|t| is_motion_video(t, movie)))?;
    let audio = first_preferring_enabled(movie.tracks.iter().filter(|t| t.kind == TrackKind::Audio));
    let stored = video.sample_entry.as_ref().map_or((0, 0), |e| (u32::from(e.width), u32::from(e.height)));
    // Some writers leave the sample entry's size at 0; the track header has the presented size.
    let (width, height) =
        if stored.0 > 0 && stored.1 > 0 { stored } else { (video.tkhd_width, video.tkhd_height) };
    let sample_aspect_ratio = video.sample_aspect_ratio().unwrap_or(AspectRatio::SQUARE);
    let (display_width, display_height) = display_size(width, height, video.rotation, sample_aspect_ratio);
    // A timescale the presentation contradicts gives no rate and no start, rather than
    // impossible ones (7.6 million frames per second from one flipped bit).
    let timing_backed = timing_backed(video, movie.timescale);
    Some(VideoMetadata {
        container: isobmff_container(movie),
        duration_seconds: movie_duration_seconds(movie),
        width,
        height,
        rotation: video.rotation,
        sample_aspect_ratio,
        display_width,
        display_height,
        frame_rate: video.average_frame_rate().filter(|_| timing_backed),
        frame_rate_mode: video.spacing.mode(video.timescale),
        frame_count: Some(video.sample_count),
        start_time_seconds: video.start_seconds(movie.timescale).filter(|_| timing_backed),
        video_codec: video.codec().map(str::to_owned),
        audio_codec: audio.and_then(Track::codec).map(str::to_owned),
        has_audio: audio.is_some(),
    })
}

/// ffprobe-like container names: QuickTime's own brand (or no `ftyp` at all, as in QuickTime
/// files older than it) is `mov`; 3GPP brands are `3gp`/`3g2`; every other ISO brand is `mp4`.
fn isobmff_container(movie: &Movie) -> &'static str {
    match movie.major_brand.as_ref() {
        None | Some(b"qt  ") => "mov",
        Some([b'3', b'g', b'2', _]) => "3g2",
        Some([b'3', b'g', _, _]) => "3gp",
        _ => "mp4",
    }
}

/// A video track that is motion video, not a still picture: cover art stored as a one-frame
/// JPEG/PNG track, or the chapter pictures an audiobook's `chap` reference points to.
fn is_motion_video(track: &Track, movie: &Movie) -> bool {
    if track.kind != TrackKind::Video {
        return false;
    }
    let still_codec = matches!(track.codec(), Some("mjpeg" | "png" | "bmp" | "gif" | "tiff"));
    let is_chapter_pictures = movie.tracks.iter().any(|t| t.chapter_track_ids.contains(&track.id));
    !(still_codec && (track.sample_count <= 1 || is_chapter_pictures))
}

/// The first enabled track, or the first track if all are disabled.
fn first_preferring_enabled<'a>(tracks: impl Iterator<Item = &'a Track> + Clone) -> Option<&'a Track> {
    tracks.clone().find(|t| t.enabled).or_else(|| tracks.clone().next())
}

/// Whether a track's media timing (its `mdhd` timescale and sample durations) agrees with the
/// presentation the movie gives it: each media edit must lie within the media, and without an
/// edit list the track header's duration must match the media's. One flipped bit in a
/// timescale makes 25 frames last 3 µs while the edit list shows them for a second.
fn timing_backed(track: &Track, movie_timescale: u32) -> bool {
    let Some(media_seconds) = track.duration_seconds() else { return false };
    // Writers round the last sample or an edit's end: a tenth of a second, or half the media,
    // is rounding; a factor of a million is not.
    let within_media = |end: f64| end <= media_seconds * 1.5 + 0.1;
    let movie_seconds = |units: u64| units as f64 / f64::from(movie_timescale);
    let media_edits: Vec<_> = track.edits.iter().filter(|edit| edit.media_time >= 0).collect();
    if !media_edits.is_empty() {
        return media_edits.iter().all(|edit| {
            within_media(
                edit.media_time as f64 / f64::from(track.timescale) + movie_seconds(edit.segment_duration),
            )
        });
    }
    match track.presentation_duration {
        Some(units) if track.edits.is_empty() => {
            let presented = movie_seconds(units);
            within_media(presented) && media_seconds <= presented * 1.5 + 0.1
        }
        _ => true,
    }
}

/// The movie's duration as ffprobe reports it: the `mvhd` duration (which includes edit lists).
/// Fragmented movies declare little up front, so their fragments' sample durations (or
/// `mehd`) count too, whichever is longest. An `mvhd` duration its tracks contradict (more
/// than twice as long or half as short as the longest track with sound timing) is not the
/// truth: the tracks are.
fn movie_duration_seconds(movie: &Movie) -> Option<f64> {
    // `read_movie` refuses a timescale of 0.
    let timescale = f64::from(movie.timescale);
    let tracks = longest_track_seconds(movie);
    let plausible = |seconds: f64| {
        tracks.is_none_or(|longest| seconds <= 2.0 * longest + 1.0 && seconds >= longest / 2.0 - 1.0)
    };
    let declared = movie.duration.filter(|&d| d > 0).map(|d| d as f64 / timescale).filter(|&d| plausible(d));
    if !movie.fragmented {
        return declared.or(tracks);
    }
    let fragment = movie.fragment_duration.map(|d| d as f64 / timescale).filter(|&d| plausible(d));
    [declared, fragment, tracks].into_iter().flatten().reduce(f64::max)
}

/// The longest presentation of a track whose timing holds: its track header's duration, or
/// its media's when the header has none.
fn longest_track_seconds(movie: &Movie) -> Option<f64> {
    movie
        .tracks
        .iter()
        .filter(|t| t.kind != TrackKind::Other && timing_backed(t, movie.timescale))
        .filter_map(|t| {
            let presented = t.presentation_duration.map(|units| units as f64 / f64::from(movie.timescale));
            match (presented, t.duration_seconds()) {
                // a fragmented track's header covers only the samples in `moov`
                (Some(presented), Some(media)) if movie.fragmented => Some(presented.max(media)),
                (presented, media) => presented.or(media),
            }
        })
        .reduce(f64::max)
}

// ---------------------------------------------------------------------------------------------
// Matroska, WebM
// ---------------------------------------------------------------------------------------------

const MATROSKA: &str = "Matroska/WebM";

/// Element IDs (Matroska specification, RFC 9559), with their length markers.
mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_ENABLED: u32 = 0xB9;
    pub const CODEC_ID: u32 = 0x86;
    pub const DEFAULT_DURATION: u32 = 0x23_E383;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const PIXEL_CROP_BOTTOM: u32 = 0x54AA;
    pub const PIXEL_CROP_TOP: u32 = 0x54BB;
    pub const PIXEL_CROP_LEFT: u32 = 0x54CC;
    pub const PIXEL_CROP_RIGHT: u32 = 0x54DD;
    pub const DISPLAY_WIDTH: u32 = 0x54B0;
    pub const DISPLAY_HEIGHT: u32 = 0x54BA;
    pub const DISPLAY_UNIT: u32 = 0x54B2;
    pub const PROJECTION: u32 = 0x7670;
    pub const PROJECTION_POSE_ROLL: u32 = 0x7675;
    pub const AUDIO: u32 = 0xE1;
    pub const BIT_DEPTH: u32 = 0x6264;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const CLUSTER_TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const TAGS: u32 = 0x1254_C367;
    pub const CHAPTERS: u32 = 0x1043_A770;
    pub const ATTACHMENTS: u32 = 0x1941_A469;
}

/// Largest EBML header, `Info` and `SeekHead` we buffer (they are tens of bytes in practice).
const MAX_SMALL_ELEMENT: u64 = 1 << 20;
/// Largest `Tracks` we buffer: codec private data can hold a few kilobytes per track.
const MAX_TRACKS_ELEMENT: u64 = 16 << 20;
/// Bound on how many top-level elements we step over before the first cluster.
const MAX_SEGMENT_CHILDREN: usize = 100_000;

/// What the header elements of a Matroska file say.
#[derive(Debug, Default)]
struct MatroskaHeaders {
    doc_type: String,
    duration_seconds: Option<f64>,
    /// Nanoseconds per timestamp unit (`TimestampScale`; 1 ms unless stated).
    timestamp_scale_ns: u64,
    tracks: Vec<MatroskaTrack>,
    /// Where the first `Cluster` starts, and where the segment ends.
    first_cluster: Option<u64>,
    segment_end: u64,
}

#[derive(Debug, Clone, Default)]
struct MatroskaTrack {
    /// `TrackNumber`: what blocks name their track by.
    number: u64,
    track_type: u64,
    enabled: bool,
    codec_id: String,
    default_duration_ns: Option<u64>,
    pixel_width: u64,
    pixel_height: u64,
    /// `PixelCrop{Left,Right,Top,Bottom}`.
    crop: [u64; 4],
    /// `DisplayWidth`/`DisplayHeight` (`None`: the cropped pixel size) and `DisplayUnit`.
    display_width: Option<u64>,
    display_height: Option<u64>,
    display_unit: u64,
    /// `ProjectionPoseRoll`: counter-clockwise degrees.
    roll: f64,
    /// Audio `BitDepth`, which names the PCM codecs.
    bit_depth: u64,
}

const TRACK_TYPE_VIDEO: u64 = 1;
const TRACK_TYPE_AUDIO: u64 = 2;

fn extract_matroska(source: &mut dyn ReadSeek, count_frames: bool) -> Result<Extracted, ExtractError> {
    let headers = read_matroska(source)?;
    let preferring_enabled = |kind: u64| {
        let mut of_kind = headers.tracks.iter().filter(move |t| t.track_type == kind);
        of_kind.clone().find(|t| t.enabled).or_else(|| of_kind.next())
    };
    let audio = preferring_enabled(TRACK_TYPE_AUDIO);
    let Some(video) = preferring_enabled(TRACK_TYPE_VIDEO) else {
        if audio.is_some() {
            return extract_audio(source, Format::Matroska);
        }
        return Err(ExtractError::corrupt(MATROSKA, "it has neither a video nor an audio track"));
    };
    let (container, mime) =
        if headers.doc_type == "webm" { ("webm", "video/webm") } else { ("mkv", "video/x-matroska") };
    let width = u32::try_from(video.pixel_width).unwrap_or(u32::MAX);
    let height = u32::try_from(video.pixel_height).unwrap_or(u32::MAX);
    let rotation = clockwise_from_roll(video.roll);
    let sample_aspect_ratio = matroska_sample_aspect(video).unwrap_or(AspectRatio::SQUARE);
    let (display_width, display_height) = display_size(width, height, rotation, sample_aspect_ratio);
    let scan = scan_clusters(source, &headers, video.number, count_frames)?;
    let unit_seconds = headers.timestamp_scale_ns as f64 / 1e9;
    let metadata = VideoMetadata {
        container,
        duration_seconds: headers.duration_seconds,
        width,
        height,
        rotation,
        sample_aspect_ratio,
        display_width,
        display_height,
        frame_rate: video.default_duration_ns.and_then(frame_rate_from_default_duration),
        frame_rate_mode: scan.frames.and_then(|(_, mode)| mode),
        frame_count: scan.frames.map(|(count, _)| count),
        start_time_seconds: scan.first_timestamp.map(|units| units as f64 * unit_seconds),
        video_codec: Some(matroska_codec_name(video)),
        audio_codec: audio.map(matroska_codec_name),
        has_audio: audio.is_some(),
    };
    Ok(metadata.into_extracted(mime))
}

/// The pixel shape that `DisplayWidth`/`DisplayHeight` give the (cropped) picture, as ffmpeg
/// derives it: display width × pixel height : display height × pixel width. A display size
/// in centimetres, inches or as a bare ratio (units 1–3) is a shape as well; unit 4
/// ("unknown") says nothing.
fn matroska_sample_aspect(track: &MatroskaTrack) -> Option<AspectRatio> {
    let [left, right, top, bottom] = track.crop;
    let cropped_width = track.pixel_width.checked_sub(left.checked_add(right)?)?;
    let cropped_height = track.pixel_height.checked_sub(top.checked_add(bottom)?)?;
    if track.display_unit > 3 || (track.display_width.is_none() && track.display_height.is_none()) {
        return None;
    }
    let display_width = track.display_width.unwrap_or(cropped_width);
    let display_height = track.display_height.unwrap_or(cropped_height);
    AspectRatio::new(
        u128::from(display_width)
            .checked_mul(u128::from(cropped_height))
            .and_then(|n| u64::try_from(n).ok())?,
        u128::from(display_height)
            .checked_mul(u128::from(cropped_width))
            .and_then(|n| u64::try_from(n).ok())?,
    )
}

/// `ProjectionPoseRoll` is counter-clockwise; DESIGN wants clockwise quarter turns.
fn clockwise_from_roll(roll: f64) -> u16 {
    if !roll.is_finite() {
        return 0;
    }
    let quarters = (-roll / 90.0).round() as i64;
    (quarters.rem_euclid(4) * 90) as u16
}

/// Frames per second from a track's `DefaultDuration` (whole nanoseconds per frame). NTSC rates
/// cannot be stored exactly (33366666.67 ns), so a duration within a nanosecond of a whole rate
/// or of an n·1000/1001 rate is read as that rate, as ffprobe shows 25/1 and 30000/1001.
fn frame_rate_from_default_duration(nanoseconds: u64) -> Option<f64> {
    if nanoseconds == 0 {
        return None;
    }
    let nanoseconds = nanoseconds as f64;
    let fps = 1e9 / nanoseconds;
    let whole = fps.round();
    let ntsc = (fps * 1.001).round() * 1000.0 / 1001.0;
    let exact =
        [whole, ntsc].into_iter().find(|&rate| rate >= 1.0 && (1e9 / rate - nanoseconds).abs() <= 1.0);
    Some(exact.unwrap_or(fps))
}

/// ffprobe's `codec_name` for a Matroska track's `CodecID`.
fn matroska_codec_name(track: &MatroskaTrack) -> String {
    let bits = track.bit_depth;
    let name = match track.codec_id.as_str() {
        "V_MPEG4/ISO/AVC" => "h264",
        "V_MPEGH/ISO/HEVC" => "hevc",
        "V_MPEGI/ISO/VVC" => "vvc",
        "V_AV1" => "av1",
        "V_VP8" => "vp8",
        "V_VP9" => "vp9",
        "V_THEORA" => "theora",
        "V_PRORES" => "prores",
        "V_FFV1" => "ffv1",
        "V_MJPEG" => "mjpeg",
        "V_MPEG1" => "mpeg1video",
        "V_MPEG2" => "mpeg2video",
        "V_MPEG4/ISO/SP" | "V_MPEG4/ISO/ASP" | "V_MPEG4/ISO/AP" => "mpeg4",
        "V_UNCOMPRESSED" => "rawvideo",
        "A_OPUS" => "opus",
        "A_VORBIS" => "vorbis",
        "A_FLAC" => "flac",
        "A_ALAC" => "alac",
        "A_MPEG/L3" => "mp3",
        "A_MPEG/L2" => "mp2",
        "A_AC3" => "ac3",
        "A_EAC3" => "eac3",
        "A_DTS" => "dts",
        "A_TRUEHD" => "truehd",
        // ffmpeg reads 8-bit little-endian Matroska PCM as unsigned
        "A_PCM/INT/LIT" if bits == 8 => "pcm_u8",
        "A_PCM/INT/LIT" if matches!(bits, 24 | 32) => return format!("pcm_s{bits}le"),
        "A_PCM/INT/LIT" => "pcm_s16le",
        "A_PCM/INT/BIG" if bits == 8 => "pcm_s8",
        "A_PCM/INT/BIG" if matches!(bits, 24 | 32) => return format!("pcm_s{bits}be"),
        "A_PCM/INT/BIG" => "pcm_s16be",
        "A_PCM/FLOAT/IEEE" if bits == 64 => "pcm_f64le",
        "A_PCM/FLOAT/IEEE" => "pcm_f32le",
        id if id.starts_with("A_AAC") => "aac",
        // Unknown or wrapped (V_MS/VFW/FOURCC, A_MS/ACM): the codec ID itself says most.
        other => return other.to_ascii_lowercase(),
    };
    name.to_owned()
}

/// What the clusters say about the video track.
struct ClusterScan {
    /// The timestamp of the first video block in the file (`TimestampScale` units): when the
    /// first frame is shown, as ffprobe's `start_time` takes the first packet's.
    first_timestamp: Option<i64>,
    /// When frames were counted: how many, and how evenly spaced.
    frames: Option<(u64, Option<FrameRateMode>)>,
}

/// Elements looked at for the first video block when frames are not counted: the first
/// cluster or two of any ordinary file.
const MAX_START_ELEMENTS: usize = 4096;
/// Buffer for the cluster walk when counting (every block header of the file is read, a few
/// bytes among kilobytes of frames), and when looking for the first video block only (a
/// remote file should not be fetched further for it than the block's header).
const COUNTING_BUFFER: usize = 64 << 10;
const START_BUFFER: usize = 4 << 10;

/// Walks the clusters from the first: block headers are read and frames skipped. Without
/// `count`, it stops at the first video block; with it, every cluster of the file is walked
/// and each video frame (each frame of a laced block) counted. The end of the file ends the
/// walk, as it ends a live recording.
fn scan_clusters(
    source: &mut dyn ReadSeek,
    headers: &MatroskaHeaders,
    video_track: u64,
    count: bool,
) -> Result<ClusterScan, ExtractError> {
    let mut scan = ClusterScan { first_timestamp: None, frames: None };
    let Some(start) = headers.first_cluster else {
        return Ok(scan);
    };
    let mut times = FrameTimes::default();
    let mut walk = ClusterWalk::new(source, start, if count { COUNTING_BUFFER } else { START_BUFFER })?;
    let mut elements = 0usize;
    let mut cluster_timestamp = 0i64;
    // The end of the cluster being walked (the segment's, for an unknown-size cluster).
    let mut cluster_end: Option<u64> = None;
    let result: Result<(), ExtractError> = (|| {
        while walk.position < headers.segment_end {
            elements += 1;
            if !count && elements > MAX_START_ELEMENTS {
                break;
            }
            if cluster_end.is_some_and(|end| walk.position >= end) {
                cluster_end = None;
            }
            let header = walk.header()?;
            let end = header.size.map(|size| header.data_start.saturating_add(size));
            let is_top_level = matches!(
                header.id,
                id::CLUSTER
                    | id::CUES
                    | id::TAGS
                    | id::CHAPTERS
                    | id::ATTACHMENTS
                    | id::SEEK_HEAD
                    | id::INFO
                    | id::TRACKS
            );
            if header.id == id::CLUSTER {
                // Its children follow; a top-level ID also ends an unknown-size cluster.
                cluster_end = Some(end.unwrap_or(headers.segment_end));
                cluster_timestamp = 0;
                continue;
            }
            let Some(end) = end else {
                if is_top_level || cluster_end.is_none() {
                    break; // an unknown-size element that is not a cluster: nothing to step over
                }
                return Err(ExtractError::corrupt(MATROSKA, "a cluster element has an unknown size"));
            };
            if is_top_level {
                cluster_end = None;
            }
            if cluster_end.is_none() {
                walk.skip_to(end)?; // Cues, Tags, Void, ... between clusters
                continue;
            }
            let block = match header.id {
                id::CLUSTER_TIMESTAMP => {
                    let len =
                        usize::try_from(end - header.data_start).ok().filter(|&len| len <= 8).ok_or_else(
                            || ExtractError::corrupt(MATROSKA, "a cluster timestamp longer than 8 bytes"),
                        )?;
                    let mut bytes = [0u8; 8];
                    walk.read_exact(&mut bytes[..len])?;
                    cluster_timestamp = i64::try_from(ebml_uint(&bytes[..len])?).unwrap_or(i64::MAX);
                    None
                }
                id::SIMPLE_BLOCK => walk.block_header(video_track, end)?,
                id::BLOCK_GROUP => {
                    // Its Block is one child among references and durations.
                    let mut found = None;
                    while walk.position < end {
                        let child = walk.header()?;
                        let child_end = child
                            .size
                            .map(|size| child.data_start.saturating_add(size))
                            .filter(|&child_end| child_end <= end)
                            .ok_or_else(|| {
                                ExtractError::corrupt(MATROSKA, "an element overruns its block group")
                            })?;
                        if child.id == id::BLOCK {
                            found = walk.block_header(video_track, child_end)?;
                        }
                        walk.skip_to(child_end)?;
                    }
                    found
                }
                _ => None,
            };
            if let Some((frames, relative)) = block {
                let timestamp = cluster_timestamp.saturating_add(i64::from(relative));
                scan.first_timestamp.get_or_insert(timestamp);
                if !count {
                    break;
                }
                times.push(Some(timestamp));
                for _ in 1..frames {
                    times.push(None);
                }
            }
            walk.skip_to(end.max(walk.position))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {}
        // The file ends inside a cluster: a live recording cut off; what was read counts.
        Err(ExtractError::Io(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(other) => return Err(other),
    }
    if count {
        scan.frames = Some(times.finish(1e9 / headers.timestamp_scale_ns.max(1) as f64));
    }
    Ok(scan)
}

/// A buffered walk over element headers that knows its position without asking the source.
struct ClusterWalk<'a> {
    reader: std::io::BufReader<&'a mut dyn ReadSeek>,
    position: u64,
}

impl<'a> ClusterWalk<'a> {
    fn new(source: &'a mut dyn ReadSeek, start: u64, buffer: usize) -> Result<Self, ExtractError> {
        source.seek(SeekFrom::Start(start))?;
        Ok(ClusterWalk { reader: std::io::BufReader::with_capacity(buffer, source), position: start })
    }

    fn read_exact(&mut self, buffer: &mut [u8]) -> Result<(), ExtractError> {
        self.reader.read_exact(buffer)?;
        self.position += buffer.len() as u64;
        Ok(())
    }

    fn vint(&mut self, max_len: u32) -> Result<Vint, ExtractError> {
        let vint = read_vint(&mut self.reader, max_len)?;
        self.position += u64::from(vint.len);
        Ok(vint)
    }

    fn header(&mut self) -> Result<ElementHeader, ExtractError> {
        let element_id = self.vint(4)?;
        let size = self.vint(8)?;
        Ok(ElementHeader { id: element_id.raw as u32, data_start: self.position, size: size.known_size() })
    }

    /// Moves to `target`, within the buffer when it can.
    fn skip_to(&mut self, target: u64) -> Result<(), ExtractError> {
        if target != self.position {
            let delta = i64::try_from(i128::from(target) - i128::from(self.position))
                .map_err(|_| ExtractError::corrupt(MATROSKA, "an element size beyond any file"))?;
            self.reader.seek_relative(delta)?;
            self.position = target;
        }
        Ok(())
    }

    /// A `SimpleBlock` or `Block` header (track number, relative timestamp, flags, lace
    /// count) ending no later than `end`: its frame count and relative timestamp, if it
    /// belongs to `track`.
    fn block_header(&mut self, track: u64, end: u64) -> Result<Option<(u32, i16)>, ExtractError> {
        let number = self.vint(8)?.value;
        let mut fields = [0u8; 3];
        self.read_exact(&mut fields)?;
        if self.position > end {
            return Err(ExtractError::corrupt(MATROSKA, "a block is shorter than its header"));
        }
        if number != track {
            return Ok(None);
        }
        let relative = i16::from_be_bytes([fields[0], fields[1]]);
        // Lacing (flags bits 1-2): the next byte is the number of frames minus one.
        let frames = if fields[2] & 0x06 != 0 {
            let mut laced = [0u8; 1];
            self.read_exact(&mut laced)?;
            u32::from(laced[0]) + 1
        } else {
            1
        };
        Ok(Some((frames, relative)))
    }
}

/// An element's ID and the position and size of its data (`None`: "unknown size").
struct ElementHeader {
    id: u32,
    data_start: u64,
    size: Option<u64>,
}

/// Reads the EBML header, then the `Segment`'s children up to the first `Cluster` (media data
/// is never read), following the `SeekHead` for `Info` or `Tracks` placed after the clusters.
fn read_matroska(source: &mut dyn ReadSeek) -> Result<MatroskaHeaders, ExtractError> {
    let file_len = source.seek(SeekFrom::End(0))?;
    source.seek(SeekFrom::Start(0))?;
    let mut headers = MatroskaHeaders { timestamp_scale_ns: 1_000_000, ..MatroskaHeaders::default() };

    let ebml = read_element_header(source)?;
    if ebml.id != id::EBML {
        return Err(ExtractError::corrupt(MATROSKA, "it does not start with an EBML header"));
    }
    let ebml_body = read_element_body(source, &ebml, MAX_SMALL_ELEMENT, file_len)?;
    for element in Elements::new(&ebml_body) {
        let (element_id, data) = element?;
        if element_id == id::DOC_TYPE {
            headers.doc_type = ebml_string(data);
        }
    }
    if !matches!(headers.doc_type.as_str(), "matroska" | "webm") {
        return Err(ExtractError::Unsupported(format!(
            "an EBML file of type '{}', not Matroska",
            headers.doc_type
        )));
    }

    let mut position = ebml.data_start.saturating_add(ebml.size.unwrap_or(0));
    let segment = loop {
        source.seek(SeekFrom::Start(position))?;
        let header = read_element_header(source)?;
        if header.id == id::SEGMENT {
            break header;
        }
        // Only Void or CRC elements may precede the segment; they have a known size.
        let size = header.size.ok_or_else(|| ExtractError::corrupt(MATROSKA, "no Segment element"))?;
        position = header.data_start.saturating_add(size);
    };
    let segment_start = segment.data_start;
    let segment_end = match segment.size {
        Some(size) => {
            let end = segment_start.saturating_add(size);
            if end > file_len {
                return Err(ExtractError::corrupt(
                    MATROSKA,
                    format!("the file ends at byte {file_len}, inside its Segment (truncated)"),
                ));
            }
            end
        }
        None => file_len, // live recordings leave the size unknown
    };
    headers.segment_end = segment_end;

    let mut info_seen = false;
    let mut tracks_seen = false;
    let mut seek_targets: Vec<(u32, u64)> = Vec::new();
    let mut position = segment_start;
    for _ in 0..MAX_SEGMENT_CHILDREN {
        if segment_end.saturating_sub(position) < 2 {
            break;
        }
        source.seek(SeekFrom::Start(position))?;
        let header = read_element_header(source)?;
        match header.id {
            id::CLUSTER => {
                headers.first_cluster = Some(position);
                break;
            }
            id::INFO => {
                parse_info(&read_element_body(source, &header, MAX_SMALL_ELEMENT, file_len)?, &mut headers)?;
                info_seen = true;
            }
            id::TRACKS => {
                headers.tracks =
                    parse_tracks(&read_element_body(source, &header, MAX_TRACKS_ELEMENT, file_len)?)?;
                tracks_seen = true;
            }
            id::SEEK_HEAD => {
                let body = read_element_body(source, &header, MAX_SMALL_ELEMENT, file_len)?;
                seek_targets.extend(parse_seek_head(&body)?);
            }
            _ => {}
        }
        let Some(size) = header.size else { break }; // an unknown-size element other than a cluster
        // Past Info and Tracks, the walk goes on to the first cluster (where the first frame's
        // timestamp is), stepping over Tags, Cues and Void by their sizes.
        position = header.data_start.saturating_add(size);
    }

    for (target, relative) in seek_targets {
        let wanted = (target == id::INFO && !info_seen) || (target == id::TRACKS && !tracks_seen);
        let Some(at) = segment_start.checked_add(relative).filter(|&at| wanted && at < file_len) else {
            continue;
        };
        source.seek(SeekFrom::Start(at))?;
        let header = read_element_header(source)?;
        if header.id != target {
            continue; // a stale seek head: ignore it rather than trust it
        }
        if target == id::INFO {
            parse_info(&read_element_body(source, &header, MAX_SMALL_ELEMENT, file_len)?, &mut headers)?;
            info_seen = true;
        } else {
            headers.tracks =
                parse_tracks(&read_element_body(source, &header, MAX_TRACKS_ELEMENT, file_len)?)?;
            tracks_seen = true;
        }
    }
    if !tracks_seen {
        return Err(ExtractError::corrupt(MATROSKA, "it has no Tracks element"));
    }
    Ok(headers)
}

/// Reads an element ID and data size (EBML variable-length integers) at the current position.
fn read_element_header(source: &mut dyn ReadSeek) -> Result<ElementHeader, ExtractError> {
    let element_id = read_vint(source, 4)?;
    let size = read_vint(source, 8)?;
    let data_start = source.stream_position()?;
    // An ID keeps its length marker; IDs are at most 4 bytes, so `raw` fits in a u32.
    Ok(ElementHeader { id: element_id.raw as u32, data_start, size: size.known_size() })
}

/// An EBML variable-length integer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Vint {
    /// The bytes as a big-endian integer, length marker included (how IDs are written).
    raw: u64,
    /// The value, marker removed (how sizes are read).
    value: u64,
    len: u32,
}

impl Vint {
    /// As an element size: all value bits set means "unknown size".
    fn known_size(self) -> Option<u64> {
        (self.value != (1u64 << (7 * self.len)) - 1).then_some(self.value)
    }

    /// Decodes one from the start of `bytes`; `None` if it is cut short or longer than `max_len`.
    fn parse(bytes: &[u8], max_len: u32) -> Option<Vint> {
        let first = *bytes.first()?;
        let len = first.leading_zeros() + 1; // 9 for a zero byte: invalid
        if len > max_len {
            return None;
        }
        let raw = bytes.get(..len as usize)?.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Some(Vint { raw, value: raw & ((1u64 << (7 * len)) - 1), len })
    }
}

/// Reads one variable-length integer of at most `max_len` bytes from the source.
fn read_vint(source: &mut (impl Read + ?Sized), max_len: u32) -> Result<Vint, ExtractError> {
    let mut bytes = [0u8; 8];
    source.read_exact(&mut bytes[..1])?;
    let len = (bytes[0].leading_zeros() + 1).min(max_len + 1);
    if len > max_len {
        return Err(ExtractError::corrupt(MATROSKA, "an element header is not valid EBML"));
    }
    source.read_exact(&mut bytes[1..len as usize])?;
    Vint::parse(&bytes, max_len)
        .ok_or_else(|| ExtractError::corrupt(MATROSKA, "an element header is not valid EBML"))
}

/// Reads an element's data into memory, refusing one larger than `cap`.
fn read_element_body(
    source: &mut dyn ReadSeek,
    header: &ElementHeader,
    cap: u64,
    file_len: u64,
) -> Result<Vec<u8>, ExtractError> {
    let size =
        header.size.ok_or_else(|| ExtractError::corrupt(MATROSKA, "a header element has an unknown size"))?;
    // Truncation first: a size that runs past the end of the file is a broken file, whatever
    // its size; only a real element bigger than the cap is "too large".
    if header.data_start.saturating_add(size) > file_len {
        return Err(ExtractError::corrupt(
            MATROSKA,
            format!("the file ends at byte {file_len}, inside a header element (truncated)"),
        ));
    }
    if size > cap {
        return Err(ExtractError::TooLarge(format!(
            "a Matroska header element of {size} bytes; the limit is {cap}"
        )));
    }
    source.seek(SeekFrom::Start(header.data_start))?;
    // `size` is at most `cap`.
    let mut body = Vec::with_capacity(size as usize);
    source.take(size).read_to_end(&mut body)?;
    Ok(body)
}

/// The child elements in a buffered master element's data, as (ID, data) pairs.
struct Elements<'a> {
    data: &'a [u8],
}

impl<'a> Elements<'a> {
    fn new(data: &'a [u8]) -> Self {
        Elements { data }
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<(u32, &'a [u8]), ExtractError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let parsed = Vint::parse(self.data, 4).and_then(|element_id| {
            let rest = self.data.get(element_id.len as usize..)?;
            let size = Vint::parse(rest, 8)?;
            let body = rest.get(size.len as usize..)?;
            // Inside a buffered element, an unknown size can only mean "to the end of it".
            let len = size.known_size().unwrap_or(body.len() as u64);
            let len = usize::try_from(len).ok().filter(|&len| len <= body.len())?;
            Some((element_id.raw as u32, &body[..len], &body[len..]))
        });
        match parsed {
            Some((element_id, body, rest)) => {
                self.data = rest;
                Some(Ok((element_id, body)))
            }
            None => {
                self.data = &[];
                Some(Err(ExtractError::corrupt(MATROSKA, "an element overruns its parent")))
            }
        }
    }
}

/// An unsigned integer element (at most 8 bytes, big-endian).
fn ebml_uint(data: &[u8]) -> Result<u64, ExtractError> {
    if data.len() > 8 {
        return Err(ExtractError::corrupt(MATROSKA, "an integer element longer than 8 bytes"));
    }
    Ok(data.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// A float element: 4 or 8 bytes (0 bytes is the default, 0.0).
fn ebml_float(data: &[u8]) -> Option<f64> {
    match *data {
        [] => Some(0.0),
        [a, b, c, d] => Some(f64::from(f32::from_be_bytes([a, b, c, d]))),
        [a, b, c, d, e, f, g, h] => Some(f64::from_be_bytes([a, b, c, d, e, f, g, h])),
        _ => None,
    }
}

/// A string element: may be padded with zero bytes.
fn ebml_string(data: &[u8]) -> String {
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// `Info`: the duration, in `TimestampScale` nanoseconds (1 ms unless stated).
fn parse_info(info: &[u8], headers: &mut MatroskaHeaders) -> Result<(), ExtractError> {
    let mut scale_ns = 1_000_000u64;
    let mut duration = None;
    for element in Elements::new(info) {
        let (element_id, data) = element?;
        match element_id {
            id::TIMESTAMP_SCALE => scale_ns = ebml_uint(data)?,
            id::DURATION => duration = ebml_float(data),
            _ => {}
        }
    }
    headers.duration_seconds = duration
        .map(|units| units * scale_ns as f64 / 1e9)
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0);
    headers.timestamp_scale_ns = scale_ns;
    Ok(())
}

/// Bound on `TrackEntry` elements we keep.
const MAX_MATROSKA_TRACKS: usize = 4096;

fn parse_tracks(tracks: &[u8]) -> Result<Vec<MatroskaTrack>, ExtractError> {
    let mut parsed = Vec::new();
    for element in Elements::new(tracks) {
        let (element_id, entry) = element?;
        if element_id != id::TRACK_ENTRY {
            continue;
        }
        if parsed.len() >= MAX_MATROSKA_TRACKS {
            return Err(ExtractError::TooLarge(format!("more than {MAX_MATROSKA_TRACKS} tracks")));
        }
        let mut track = MatroskaTrack { enabled: true, ..MatroskaTrack::default() };
        for field in Elements::new(entry) {
            let (field_id, data) = field?;
            match field_id {
                id::TRACK_NUMBER => track.number = ebml_uint(data)?,
                id::TRACK_TYPE => track.track_type = ebml_uint(data)?,
                id::FLAG_ENABLED => track.enabled = ebml_uint(data)? != 0,
                id::CODEC_ID => track.codec_id = ebml_string(data),
                id::DEFAULT_DURATION => track.default_duration_ns = Some(ebml_uint(data)?),
                id::VIDEO => parse_video_settings(data, &mut track)?,
                id::AUDIO => {
                    for setting in Elements::new(data) {
                        let (setting_id, value) = setting?;
                        if setting_id == id::BIT_DEPTH {
                            track.bit_depth = ebml_uint(value)?;
                        }
                    }
                }
                _ => {}
            }
        }
        parsed.push(track);
    }
    Ok(parsed)
}

fn parse_video_settings(video: &[u8], track: &mut MatroskaTrack) -> Result<(), ExtractError> {
    for element in Elements::new(video) {
        let (element_id, data) = element?;
        match element_id {
            id::PIXEL_WIDTH => track.pixel_width = ebml_uint(data)?,
            id::PIXEL_HEIGHT => track.pixel_height = ebml_uint(data)?,
            id::PIXEL_CROP_LEFT => track.crop[0] = ebml_uint(data)?,
            id::PIXEL_CROP_RIGHT => track.crop[1] = ebml_uint(data)?,
            id::PIXEL_CROP_TOP => track.crop[2] = ebml_uint(data)?,
            id::PIXEL_CROP_BOTTOM => track.crop[3] = ebml_uint(data)?,
            id::DISPLAY_WIDTH => track.display_width = Some(ebml_uint(data)?),
            id::DISPLAY_HEIGHT => track.display_height = Some(ebml_uint(data)?),
            id::DISPLAY_UNIT => track.display_unit = ebml_uint(data)?,
            id::PROJECTION => {
                for projection in Elements::new(data) {
                    let (projection_id, value) = projection?;
                    if projection_id == id::PROJECTION_POSE_ROLL {
                        track.roll = ebml_float(value).unwrap_or(0.0);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `SeekHead`: (element ID, position relative to the segment's data) pairs.
fn parse_seek_head(seek_head: &[u8]) -> Result<Vec<(u32, u64)>, ExtractError> {
    let mut targets = Vec::new();
    for element in Elements::new(seek_head).take(1024) {
        let (element_id, seek) = element?;
        if element_id != id::SEEK {
            continue;
        }
        let (mut target, mut position) = (None, None);
        for field in Elements::new(seek) {
            let (field_id, data) = field?;
            match field_id {
                // The ID is stored as its bytes, marker included.
                id::SEEK_ID if data.len() <= 4 => target = Some(ebml_uint(data)? as u32),
                id::SEEK_POSITION => position = Some(ebml_uint(data)?),
                _ => {}
            }
        }
        if let (Some(target), Some(position)) = (target, position) {
            targets.push((target, position));
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn a_frame_rate_no_playback_has_is_null() {
        let video = |frame_rate| VideoMetadata {
            container: "mpegts",
            duration_seconds: Some(1.0),
            width: 64,
            height: 48,
            rotation: 0,
            sample_aspect_ratio: AspectRatio::SQUARE,
            display_width: 64,
            display_height: 48,
            frame_rate: Some(frame_rate),
            frame_rate_mode: None,
            frame_count: None,
            start_time_seconds: None,
            video_codec: None,
            audio_codec: None,
            has_audio: false,
        };
        // The campaign's MPEG-TS at 74,898 fps (a damaged VUI tick), beside real rates.
        for (rate, kept) in [(74_898.3, false), (1000.0, true), (240.0, true), (29.97, true)] {
            let answer = video(rate).into_extracted("video/mp2t");
            assert_eq!(answer.metadata["frame_rate"].as_f64().is_some(), kept, "{rate}");
        }
    }

    fn fixture(path: &str) -> std::fs::File {
        let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::File::open(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn video(path: &str, format: Format) -> (String, VideoMetadata) {
        let extracted = extract(&mut fixture(path), format, false).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(extracted.data_type, DataType::Video, "{path}");
        let value = extracted.metadata;
        let metadata = VideoMetadata {
            container: match value["container"].as_str() {
                Some("mp4") => "mp4",
                Some("mov") => "mov",
                Some("mkv") => "mkv",
                Some("webm") => "webm",
                other => panic!("{path}: container {other:?}"),
            },
            duration_seconds: value["duration_seconds"].as_f64(),
            width: value["width"].as_u64().unwrap() as u32,
            height: value["height"].as_u64().unwrap() as u32,
            rotation: value["rotation"].as_u64().unwrap() as u16,
            sample_aspect_ratio: {
                let text = value["sample_aspect_ratio"].as_str().unwrap();
                let (num, den) = text.split_once(':').unwrap();
                AspectRatio::new(num.parse().unwrap(), den.parse().unwrap()).unwrap()
            },
            display_width: value["display_width"].as_u64().unwrap() as u32,
            display_height: value["display_height"].as_u64().unwrap() as u32,
            frame_rate: value["frame_rate"].as_f64(),
            frame_rate_mode: match value["frame_rate_mode"].as_str() {
                Some("constant") => Some(FrameRateMode::Constant),
                Some("variable") => Some(FrameRateMode::Variable),
                None => None,
                other => panic!("{path}: frame_rate_mode {other:?}"),
            },
            frame_count: value["frame_count"].as_u64(),
            start_time_seconds: value["start_time_seconds"].as_f64(),
            video_codec: value["video_codec"].as_str().map(str::to_owned),
            audio_codec: value["audio_codec"].as_str().map(str::to_owned),
            has_audio: value["has_audio"].as_bool().unwrap(),
        };
        (extracted.mime_type, metadata)
    }

    /// Expected values from `ffprobe -v error -show_streams -show_format -of json` (frame
    /// counts of fragmented and Matroska files from `-count_frames`).
    struct Expected {
        path: &'static str,
        mime: &'static str,
        container: &'static str,
        duration: f64,
        size: (u32, u32),
        rotation: u16,
        fps: f64,
        frames: Option<u64>,
        video: &'static str,
        audio: Option<&'static str>,
    }

    const H264_AAC: (&str, Option<&str>) = ("h264", Some("aac"));

    #[test]
    fn fixtures_match_ffprobe() {
        let mp4 =
            |path, duration, fps, frames, (video, audio): (&'static str, Option<&'static str>)| Expected {
                path,
                mime: "video/mp4",
                container: "mp4",
                duration,
                size: (320, 240),
                rotation: 0,
                fps,
                frames,
                video,
                audio,
            };
        let cases = [
            mp4("video/mp4_h264_aac_faststart.mp4", 1.0, 25.0, Some(25), H264_AAC),
            mp4("video/mp4_h264_aac_moov_at_end.mp4", 1.0, 25.0, Some(25), H264_AAC),
            mp4("video/mp4_29.97fps.mp4", 1.001, 30000.0 / 1001.0, Some(30), H264_AAC),
            mp4("video/mp4_fragmented.mp4", 1.08, 25.0, Some(25), H264_AAC),
            mp4("video/mp4_hevc_hvc1_aac.mp4", 1.0, 25.0, Some(25), ("hevc", Some("aac"))),
            mp4("video/mp4_av1.mp4", 1.0, 25.0, Some(25), ("av1", None)),
            mp4("video/mp4_25fps_25frames.mp4", 1.0, 25.0, Some(25), ("h264", None)),
            Expected {
                size: (160, 90),
                ..mp4("video/mp4_video_only.mp4", 1.0, 24.0, Some(24), ("h264", None))
            },
            Expected { rotation: 90, ..mp4("video/mp4_rotate_cw90.mp4", 1.0, 25.0, Some(25), H264_AAC) },
            Expected { rotation: 270, ..mp4("video/mp4_rotate_cw270.mp4", 1.0, 25.0, Some(25), H264_AAC) },
            Expected {
                mime: "video/quicktime",
                container: "mov",
                size: (160, 120),
                ..mp4("video/mov_prores_proxy.mov", 0.5, 24.0, Some(12), ("prores", None))
            },
            Expected {
                mime: "video/x-matroska",
                container: "mkv",
                ..mp4("video/mkv_h264_aac.mkv", 1.023, 25.0, None, H264_AAC)
            },
            Expected {
                mime: "video/webm",
                container: "webm",
                ..mp4("video/webm_vp9_opus.webm", 1.008, 25.0, None, ("vp9", Some("opus")))
            },
            Expected {
                mime: "video/webm",
                container: "webm",
                ..mp4("video/webm_vp8_vorbis.webm", 1.003, 25.0, None, ("vp8", Some("vorbis")))
            },
        ];
        for case in cases {
            let format = if case.container == "mkv" || case.container == "webm" {
                Format::Matroska
            } else {
                Format::IsoBmff
            };
            let (mime, got) = video(case.path, format);
            let path = case.path;
            assert_eq!(mime, case.mime, "{path}");
            assert_eq!(got.container, case.container, "{path}");
            assert!(
                (got.duration_seconds.unwrap() - case.duration).abs() < 1e-3,
                "{path}: {:?}",
                got.duration_seconds
            );
            assert_eq!((got.width, got.height), case.size, "{path}");
            assert_eq!(got.rotation, case.rotation, "{path}");
            let turned = if case.rotation % 180 == 90 { (case.size.1, case.size.0) } else { case.size };
            assert_eq!((got.display_width, got.display_height), turned, "{path}");
            assert!((got.frame_rate.unwrap() - case.fps).abs() < 1e-9, "{path}: {:?}", got.frame_rate);
            assert_eq!(got.frame_count, case.frames, "{path}");
            assert_eq!(got.video_codec.as_deref(), Some(case.video), "{path}");
            assert_eq!(got.audio_codec.as_deref(), case.audio, "{path}");
            assert_eq!(got.has_audio, case.audio.is_some(), "{path}");
        }
    }

    /// The frame-timing fields against ffprobe (`start_time` of the video stream,
    /// `sample_aspect_ratio`, the spacing of `-show_entries packet=pts`, `-count_packets`).
    #[test]
    fn frame_timing_matches_ffprobe() {
        use FrameRateMode::{Constant, Variable};
        struct Timing {
            path: &'static str,
            count: bool,
            sar: &'static str,
            display: (u32, u32),
            start: Option<f64>,
            mode: Option<FrameRateMode>,
            frames: Option<u64>,
        }
        let t = |path, count, sar, display, start, mode, frames| Timing {
            path,
            count,
            sar,
            display,
            start,
            mode,
            frames,
        };
        let cases = [
            t(
                "video/mp4_h264_aac_faststart.mp4",
                false,
                "1:1",
                (320, 240),
                Some(0.0),
                Some(Constant),
                Some(25),
            ),
            // no edit list: the first frame is composed 2 frames (B-frame delay) after 0
            t("video/mp4_fragmented.mp4", false, "1:1", (320, 240), Some(0.08), Some(Constant), Some(25)),
            t(
                "video/mp4_h264_vfr_10_then_25fps.mp4",
                false,
                "1:1",
                (320, 240),
                Some(0.0),
                Some(Variable),
                Some(35),
            ),
            t(
                "video/mp4_h264_sar64x45.mp4",
                false,
                "64:45",
                (1024, 576),
                Some(0.0),
                Some(Constant),
                Some(25),
            ),
            t(
                "video/mp4_h264_aac_start_1.5s.mp4",
                false,
                "1:1",
                (320, 240),
                Some(1.5),
                Some(Constant),
                Some(25),
            ),
            t("video/mp4_29.97fps.mp4", false, "1:1", (320, 240), Some(0.0), Some(Constant), Some(30)),
            t("video/mkv_h264_aac.mkv", false, "1:1", (320, 240), Some(0.023), None, None),
            t("video/mkv_h264_aac.mkv", true, "1:1", (320, 240), Some(0.023), Some(Constant), Some(25)),
            t("video/webm_vp9_opus.webm", true, "1:1", (320, 240), Some(0.007), Some(Constant), Some(25)),
            t("video/webm_vp8_vorbis.webm", true, "1:1", (320, 240), Some(0.003), Some(Constant), Some(25)),
            t(
                "video/mkv_h264_vfr_10_then_25fps.mkv",
                true,
                "1:1",
                (320, 240),
                Some(0.0),
                Some(Variable),
                Some(35),
            ),
            t("video/mkv_h264_sar64x45.mkv", false, "64:45", (1024, 576), Some(0.0), None, None),
            t("video/mkv_h264_sar64x45.mkv", true, "64:45", (1024, 576), Some(0.0), Some(Constant), Some(25)),
            t("video/ts_h264_aac.ts", false, "1:1", (320, 240), Some(1.48), None, None),
            t("video/ts_h264_aac.ts", true, "1:1", (320, 240), Some(1.48), Some(Constant), Some(25)),
            t("video/ts_h264_sar16x15.ts", true, "16:15", (768, 576), Some(1.48), Some(Constant), Some(25)),
            t("video/avi_mpeg4_mp3.avi", false, "1:1", (320, 240), Some(0.0), Some(Constant), Some(25)),
        ];
        for case in cases {
            let path = case.path;
            let format = match path.rsplit('.').next() {
                Some("mkv" | "webm") => Format::Matroska,
                Some("ts") => Format::MpegTs,
                Some("avi") => Format::Avi,
                _ => Format::IsoBmff,
            };
            let m = extract(&mut fixture(path), format, case.count)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .metadata;
            assert_eq!(m["sample_aspect_ratio"], case.sar, "{path}");
            assert_eq!(
                (m["display_width"].as_u64(), m["display_height"].as_u64()),
                (Some(u64::from(case.display.0)), Some(u64::from(case.display.1))),
                "{path}"
            );
            match (m["start_time_seconds"].as_f64(), case.start) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 1e-9, "{path}: start {got}"),
                (got, want) => assert_eq!(got, want, "{path}: start"),
            }
            assert_eq!(
                m["frame_rate_mode"],
                serde_json::to_value(case.mode).unwrap(),
                "{path} (count {})",
                case.count
            );
            assert_eq!(m["frame_count"].as_u64(), case.frames, "{path} (count {})", case.count);
        }
    }

    /// Bytes a ranged fetch would download: the headers and the first block's header unless
    /// frames are counted, every cluster when they are.
    #[test]
    fn only_counting_reads_a_matroska_file_whole() {
        use crate::extract::Counting;
        let path = "video/mkv_h264_sar64x45.mkv";
        let size = fixture(path).metadata().unwrap().len();
        let read = |count| {
            let mut source = Counting { inner: fixture(path), bytes_read: 0 };
            extract(&mut source, Format::Matroska, count).unwrap();
            source.bytes_read
        };
        let (plain, counted) = (read(false), read(true));
        assert!(plain < 8 << 10, "{plain} of {size} bytes without counting");
        assert!(counted >= size * 9 / 10, "{counted} of {size} bytes when counting");
    }

    /// Timing the sample tables cannot back is null, and an `mvhd` duration its tracks
    /// contradict (or all ones, "unknown") gives way to theirs.
    #[test]
    fn mp4_timing_the_file_cannot_back() {
        let m = |path| extract(&mut fixture(path), Format::IsoBmff, false).unwrap().metadata;
        let mutant = m("hostile/mp4_fps_7.6e6.mp4");
        assert_eq!(mutant["frame_rate"], serde_json::Value::Null, "25 frames in 3.3 us, shown for 1 s");
        assert_eq!(mutant["start_time_seconds"], serde_json::Value::Null);
        assert_eq!(mutant["duration_seconds"].as_f64(), Some(1.0), "not the mvhd's 2425.8 s");
        assert_eq!(mutant["frame_count"].as_u64(), Some(25));
        let unknown = m("hostile/mp4_mvhd_duration_ffffffff.mp4");
        assert_eq!(unknown["duration_seconds"].as_f64(), Some(1.0), "not 4,294,967 s");
        assert_eq!(unknown["frame_rate"].as_f64(), Some(25.0));
    }

    #[test]
    fn frame_times_are_reordered_and_spaced() {
        // decode order of an IBBP stream: presentation 0, 3, 1, 2, 6, 4, 5 (steps of 40)
        let mut times = FrameTimes::default();
        for pts in [0, 120, 40, 80, 240, 160, 200] {
            times.push(Some(pts));
        }
        assert_eq!(times.finish(1000.0), (7, Some(FrameRateMode::Constant)));
        // 29.97 fps in milliseconds: 33, 33, 34, ... is one rate
        let mut times = FrameTimes::default();
        (0..30).for_each(|n| times.push(Some(n * 1001 / 30)));
        assert_eq!(times.finish(1000.0), (30, Some(FrameRateMode::Constant)));
        let mut times = FrameTimes::default();
        [0, 100, 200, 240, 280].into_iter().for_each(|pts| times.push(Some(pts)));
        assert_eq!(times.finish(1000.0), (5, Some(FrameRateMode::Variable)));
        let mut times = FrameTimes::default();
        times.push(Some(7));
        times.push(None);
        assert_eq!(times.finish(1000.0), (2, None), "one timed frame has no spacing");
        // 30 fps rounded to milliseconds, then carried at 90 kHz: 2970 and 3060 ticks
        let mut times = FrameTimes::default();
        (0..30).for_each(|n| times.push(Some(n * 1000 / 30 * 90)));
        assert_eq!(times.finish(90_000.0), (30, Some(FrameRateMode::Constant)));
        // a frame dropped at 90 kHz (3003 then 6006 ticks) is variable
        let mut times = FrameTimes::default();
        [0, 3003, 6006, 12012].into_iter().for_each(|pts| times.push(Some(pts)));
        assert_eq!(times.finish(90_000.0), (4, Some(FrameRateMode::Variable)));
    }

    #[test]
    fn aspect_ratios_reduce_and_stretch_the_width() {
        assert_eq!(AspectRatio::new(128, 90), Some(AspectRatio { num: 64, den: 45 }));
        assert_eq!(AspectRatio::new(0, 1), None);
        // A damaged pasp or SPS (the mutation campaign's 4294967295-wide display): no pixel is
        // 16 times wider than tall, or taller than wide.
        assert_eq!(AspectRatio::new(16, 1), Some(AspectRatio { num: 16, den: 1 }));
        assert_eq!(AspectRatio::new(17, 1), None);
        assert_eq!(AspectRatio::new(1, 65535), None);
        assert_eq!(AspectRatio::new(u64::MAX, 3), None);
        assert_eq!(serde_json::to_value(AspectRatio::new(16, 15).unwrap()).unwrap(), "16:15");
        let pal = |num, den| display_size(720, 576, 0, AspectRatio::new(num, den).unwrap());
        assert_eq!(pal(64, 45), (1024, 576));
        assert_eq!(pal(16, 15), (768, 576));
        assert_eq!(pal(8, 9), (640, 576), "narrow pixels narrow the picture");
        assert_eq!(display_size(720, 576, 90, AspectRatio::new(64, 45).unwrap()), (576, 1024));
        assert_eq!(display_size(u32::MAX, 1, 0, AspectRatio::new(2, 1).unwrap()), (u32::MAX, 1));
    }

    #[test]
    fn audio_only_movies_are_not_video() {
        for path in ["audio/m4a_aac.m4a", "audio/m4a_alac.m4a"] {
            let movie = isobmff::read_movie(&mut fixture(path)).unwrap();
            assert_eq!(isobmff_metadata(&movie), None, "{path}: goes to the audio extractor");
            let extracted = extract(&mut fixture(path), Format::IsoBmff, false).unwrap();
            assert_eq!(
                (extracted.data_type, extracted.mime_type.as_str()),
                (DataType::Audio, "audio/mp4"),
                "{path}"
            );
        }
    }

    /// Their values are checked against ffprobe in `avi.rs` and `mpegts.rs`.
    #[test]
    fn avi_and_transport_streams_go_to_their_readers() {
        for (path, format, mime) in [
            ("video/avi_mpeg4_mp3.avi", Format::Avi, "video/x-msvideo"),
            ("video/ts_h264_aac.ts", Format::MpegTs, "video/mp2t"),
        ] {
            let extracted =
                extract(&mut fixture(path), format, false).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                (extracted.data_type, extracted.mime_type.as_str()),
                (DataType::Video, mime),
                "{path}"
            );
        }
    }

    #[test]
    fn hostile_movies_are_clean_errors() {
        for path in [
            "hostile/mp4_mvhd_timescale_0.mp4",
            "hostile/mp4_mvhd_mdhd_timescale_0_with_trak.mp4",
            "hostile/truncated_mp4_faststart_half.mp4",
            "hostile/truncated_mp4_moov_at_end_2k.mp4",
        ] {
            let err = extract(&mut fixture(path), Format::IsoBmff, false).unwrap_err();
            assert!(matches!(err, ExtractError::Corrupt(_)), "{path}: {err:?}");
        }
    }

    #[test]
    fn ntsc_default_durations_read_as_exact_rates() {
        assert_eq!(frame_rate_from_default_duration(40_000_000), Some(25.0));
        for (ns, rate) in
            [(33_366_667, 30000.0 / 1001.0), (41_708_333, 24000.0 / 1001.0), (16_683_333, 60000.0 / 1001.0)]
        {
            assert!((frame_rate_from_default_duration(ns).unwrap() - rate).abs() < 1e-9, "{ns}");
        }
        assert_eq!(frame_rate_from_default_duration(0), None);
        assert_eq!(clockwise_from_roll(-90.0), 90);
        assert_eq!(clockwise_from_roll(90.0), 270);
        assert_eq!(clockwise_from_roll(f64::NAN), 0);
    }

    // --- Matroska, hand-built and hostile ---

    /// An element with an 8-byte size field, as streaming EBML writers emit it.
    fn element(id: u32, body: &[u8]) -> Vec<u8> {
        let id_bytes = id.to_be_bytes();
        let skip = id_bytes.iter().position(|&b| b != 0).unwrap_or(3);
        let mut out = id_bytes[skip..].to_vec();
        out.push(0x01); // 8-byte size
        out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out
    }

    fn ebml_header(doc_type: &str) -> Vec<u8> {
        element(id::EBML, &element(id::DOC_TYPE, doc_type.as_bytes()))
    }

    fn minimal_webm(tracks: &[u8]) -> Vec<u8> {
        let info = element(
            id::INFO,
            &[
                element(id::TIMESTAMP_SCALE, &[0x0f, 0x42, 0x40]),
                element(id::DURATION, &2500.0f64.to_be_bytes()),
            ]
            .concat(),
        );
        [ebml_header("webm"), element(id::SEGMENT, &[info, element(id::TRACKS, tracks)].concat())].concat()
    }

    fn video_track(width: u8, height: u8) -> Vec<u8> {
        element(
            id::TRACK_ENTRY,
            &[
                element(id::TRACK_TYPE, &[1]),
                element(id::CODEC_ID, b"V_AV1"),
                element(id::DEFAULT_DURATION, &33_366_667u32.to_be_bytes()),
                element(
                    id::VIDEO,
                    &[element(id::PIXEL_WIDTH, &[width]), element(id::PIXEL_HEIGHT, &[height])].concat(),
                ),
            ]
            .concat(),
        )
    }

    #[test]
    fn hand_built_webm() {
        let file = minimal_webm(&video_track(200, 100));
        let extracted = extract(&mut Cursor::new(file), Format::Matroska, false).unwrap();
        assert_eq!(extracted.mime_type, "video/webm");
        let m = extracted.metadata;
        assert_eq!(
            (m["width"].as_u64(), m["height"].as_u64(), m["video_codec"].as_str()),
            (Some(200), Some(100), Some("av1"))
        );
        assert_eq!(m["duration_seconds"].as_f64(), Some(2.5));
        assert!((m["frame_rate"].as_f64().unwrap() - 30000.0 / 1001.0).abs() < 1e-9);
        assert_eq!((m["has_audio"].as_bool(), m["frame_count"].as_u64()), (Some(false), None));
    }

    #[test]
    fn hostile_matroska() {
        let err = |bytes: Vec<u8>| extract(&mut Cursor::new(bytes), Format::Matroska, true).unwrap_err();
        // Truncated: the segment declares more bytes than the file has.
        let mut cut =
            std::fs::read(format!("{}/fixtures/video/mkv_h264_aac.mkv", env!("CARGO_MANIFEST_DIR"))).unwrap();
        cut.truncate(1000);
        assert!(matches!(err(cut), ExtractError::Corrupt(ref m) if m.contains("truncated")));
        // A CodecPrivate declaring 4 GiB in a tiny file (the `matroska` crate allocates that).
        let huge = [0x63, 0xA2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00];
        let entry = element(id::TRACK_ENTRY, &huge);
        let file = [ebml_header("matroska"), element(id::SEGMENT, &element(id::TRACKS, &entry))].concat();
        assert!(matches!(err(file), ExtractError::Corrupt(_)));
        // A Tracks element declaring 1 TiB inside an unknown-size segment of a tiny file: the
        // file is cut short, whatever the size.
        let segment = vec![0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let tracks_1tib = vec![0x16, 0x54, 0xAE, 0x6B, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00];
        let file = [ebml_header("matroska"), segment.clone(), tracks_1tib].concat();
        assert!(matches!(err(file), ExtractError::Corrupt(ref m) if m.contains("truncated")));
        // A Tracks element that really holds 17 MiB: refused by its size, not read.
        let size = 17u64 << 20;
        let mut tracks = vec![0x16, 0x54, 0xAE, 0x6B, 0x01];
        tracks.extend_from_slice(&size.to_be_bytes()[1..]);
        let file = [ebml_header("matroska"), segment, tracks, vec![0; size as usize]].concat();
        assert!(matches!(err(file), ExtractError::TooLarge(_)));
        // Not Matroska at all, and an invalid EBML ID.
        assert!(matches!(err(ebml_header("dvb")), ExtractError::Unsupported(_)));
        assert!(matches!(err(vec![0x00; 32]), ExtractError::Corrupt(_)));
        assert!(matches!(err(Vec::new()), ExtractError::Io(_)));
        // No tracks at all.
        assert!(matches!(err(minimal_webm(&[])), ExtractError::Corrupt(_)));
    }
}
