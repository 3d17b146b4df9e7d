//! Audio metadata (DESIGN §3 `audio`): container, codec, duration, sample rate, channels and
//! bits per sample, read from headers and packet framing. Samples are never decoded.
//!
//! Durations are the truth of the file, so each container is asked where it can answer exactly:
//!
//! | container | duration from |
//! |---|---|
//! | WAV, RF64, BW64 | `data` byte count ÷ block size (our parser: symphonia lacks RF64's `ds64`) |
//! | AU (Sun `.snd`) | data byte count ÷ frame size (our parser: symphonia has no AU reader) |
//! | AIFF, AIFF-C | COMM frame count (our parser: exact, where symphonia divides SSND's size) |
//! | CAF | packet table or data size in the header (symphonia) |
//! | MP3 | Xing/Info or VBRI frame count, if it fits the file; else frames **counted** |
//! | FLAC | STREAMINFO total samples (our 42-byte read); **counted** when it says 0 |
//! | Ogg | granule position of the last page, which symphonia reads near the end of the file |
//! | ADTS AAC | **counted**: the format has no length anywhere |
//! | MP4/M4A | movie header duration (the edit list's, without AAC priming); **counted** if 0 |
//! | Matroska/WebM | segment `Duration`; **counted** when absent (live recordings) |
//!
//! "Counted" means demuxing every packet (no decoding), which reads the whole file: acceptable
//! for audio, and only done where no header can tell. MP3 durations are whole frames (LAME's
//! encoder delay and padding stay in), as ffprobe reports them; Opus durations leave out the
//! pre-skip (RFC 7845 §4.2), as players play them, where ffprobe keeps it in.

use std::io::{self, Read, Seek, SeekFrom};

use serde::Serialize;
use symphonia::core::codecs::CodecParameters;
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Track, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::units::TimeBase;
use symphonia::default::formats::{
    AdtsReader, CafReader, FlacReader, IsoMp4Reader, MkvReader, MpaReader, OggReader,
};

use super::{ExtractError, Extracted, ReadSeek, sniff::Format};
use crate::job::DataType;

/// The audio fields of DESIGN §3, named as on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioMetadata {
    /// `wav`, `rf64`, `aiff`, `au`, `mp3`, `flac`, `ogg`, `adts`, `caf`, `mp4`, `mkv`, `webm`, …
    pub container: &'static str,
    /// ffprobe's `codec_name`; `None` for a codec neither we nor symphonia know.
    pub codec: Option<&'static str>,
    /// `None` only when nothing in the file tells it (a compressed WAV without a `fact` chunk).
    pub duration_seconds: Option<f64>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    /// Bits of one stored sample for PCM and lossless codecs; `None` for lossy ones.
    pub bits_per_sample: Option<u32>,
}

/// Extracts audio metadata from a file sniffed as `format`. ISO-BMFF and Matroska files come
/// here from the video extractor when they hold no video track.
pub fn extract(source: &mut dyn ReadSeek, format: Format) -> Result<Extracted, ExtractError> {
    let (container, metadata) = match format {
        Format::Wav => wav::read(source)?,
        Format::Au => au::read(source)?,
        Format::Mp3 => mpeg_audio::read(source)?,
        Format::Flac => flac::read(source)?,
        Format::Aiff => aiff::read(source)?,
        Format::Ogg | Format::Adts | Format::Caf | Format::IsoBmff | Format::Matroska => {
            read_with_symphonia(source, format)?
        }
        other => return Err(ExtractError::Unsupported(format!("{other:?} files are not audio"))),
    };
    let beyond = |what: String| Err(ExtractError::corrupt(container.display_name(), what));
    if let Some(rate) = metadata.sample_rate.filter(|&rate| rate > MAX_SAMPLE_RATE) {
        return beyond(format!(
            "it declares {rate} Hz, beyond the {MAX_SAMPLE_RATE} Hz of any PCM rate in use"
        ));
    }
    if let Some(channels) = metadata.channels.filter(|&channels| channels > MAX_CHANNELS) {
        return beyond(format!(
            "it declares {channels} channels, beyond the {MAX_CHANNELS} any production uses"
        ));
    }
    if let Some(bits) = metadata.bits_per_sample.filter(|&bits| bits > MAX_BITS_PER_SAMPLE) {
        return beyond(format!(
            "it declares {bits}-bit samples; none is wider than {MAX_BITS_PER_SAMPLE} bits"
        ));
    }
    Ok(Extracted::new(DataType::Audio, container.mime_type(), metadata))
}

/// The highest sample rate a file we read can honestly have: 768 kHz, twice DXD's 352.8 kHz
/// and the top rate of studio converters. Formats whose header has no redundancy to check a
/// rate against (AU, AIFF, an ADPCM WAV) would otherwise report whatever a damaged header
/// says (536,878,912 Hz from one flipped bit of an 8 kHz AU file): `corrupt` instead.
const MAX_SAMPLE_RATE: u32 = 768_000;
/// The most channels a file we read can honestly have: Opus and Vorbis stop at 255, object-based
/// productions (ADM BWF, 128 objects) and 7th-order ambisonics (64) stay below 256. AU and CAF
/// headers have nothing to check a count against (1,048,576 channels from a flipped bit).
const MAX_CHANNELS: u32 = 256;
/// No sample is wider than a 64-bit float (114 from a flipped bit of an ALAC CAF).
const MAX_BITS_PER_SAMPLE: u32 = 64;

/// The containers this module names, with the MIME type each is published under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Wav,
    Rf64,
    Bw64,
    Aiff,
    Au,
    Mp3,
    Flac,
    Ogg,
    Adts,
    Caf,
    Mp4,
    Mov,
    ThreeGp,
    Matroska,
    WebM,
}

impl Container {
    fn name(self) -> &'static str {
        match self {
            Container::Wav => "wav",
            Container::Rf64 => "rf64",
            Container::Bw64 => "bw64",
            Container::Aiff => "aiff",
            Container::Au => "au",
            Container::Mp3 => "mp3",
            Container::Flac => "flac",
            Container::Ogg => "ogg",
            Container::Adts => "adts",
            Container::Caf => "caf",
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
            Container::ThreeGp => "3gp",
            Container::Matroska => "mkv",
            Container::WebM => "webm",
        }
    }

    fn mime_type(self) -> &'static str {
        match self {
            Container::Wav | Container::Rf64 | Container::Bw64 => "audio/wav",
            Container::Aiff => "audio/aiff",
            Container::Au => "audio/basic",
            Container::Mp3 => "audio/mpeg",
            Container::Flac => "audio/flac",
            Container::Ogg => "audio/ogg",
            Container::Adts => "audio/aac",
            Container::Caf => "audio/x-caf",
            Container::Mp4 => "audio/mp4",
            Container::Mov => "audio/quicktime",
            Container::ThreeGp => "audio/3gpp",
            Container::Matroska => "audio/x-matroska",
            Container::WebM => "audio/webm",
        }
    }

    /// The name used in error messages, as users know the format.
    fn display_name(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Rf64 => "RF64",
            Container::Bw64 => "BW64",
            Container::Aiff => "AIFF",
            Container::Au => "AU",
            Container::Mp3 => "MP3",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Adts => "ADTS AAC",
            Container::Caf => "CAF",
            Container::Mp4 | Container::ThreeGp => "MP4",
            Container::Mov => "QuickTime",
            Container::Matroska => "Matroska",
            Container::WebM => "WebM",
        }
    }
}

/// `frames / sample_rate` in seconds, rounded to the microsecond so that JSON shows `1.0`, not
/// `0.9999999999999999`.
fn seconds(ticks: u64, time_base: TimeBase) -> f64 {
    let exact = ticks as f64 * f64::from(time_base.numer.get()) / f64::from(time_base.denom.get());
    (exact * 1e6).round() / 1e6
}

/// `frames / sample_rate` in seconds; `None` for a sample rate of 0.
fn frames_to_seconds(frames: u64, sample_rate: u32) -> Option<f64> {
    TimeBase::try_from_recip(sample_rate).map(|time_base| seconds(frames, time_base))
}

/// The length of the source in bytes.
fn source_len(source: &mut dyn ReadSeek) -> io::Result<u64> {
    source.seek(SeekFrom::End(0))
}

/// Reads exactly `buf.len()` bytes at `offset`; a file that ends first is truncated, which is
/// `Corrupt` and says so.
fn read_exact_at(
    source: &mut dyn ReadSeek,
    offset: u64,
    buf: &mut [u8],
    container: Container,
) -> Result<(), ExtractError> {
    source.seek(SeekFrom::Start(offset))?;
    source.read_exact(buf).map_err(|error| match error.kind() {
        io::ErrorKind::UnexpectedEof => {
            ExtractError::corrupt(container.display_name(), "the file ends inside its headers (truncated)")
        }
        _ => ExtractError::Io(error),
    })
}

/// Reads up to `buf.len()` bytes at `offset` and returns how many there were before the end.
fn read_up_to_at(source: &mut dyn ReadSeek, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    source.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

fn u16_le(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_le(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_be(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------------
// Codec names and sample sizes
// ---------------------------------------------------------------------------------------------

/// ffprobe's `codec_name` for a symphonia codec id.
fn codec_name(codec: AudioCodecId) -> Option<&'static str> {
    let name = match codec {
        CODEC_ID_PCM_S32LE => "pcm_s32le",
        CODEC_ID_PCM_S32BE => "pcm_s32be",
        CODEC_ID_PCM_S24LE => "pcm_s24le",
        CODEC_ID_PCM_S24BE => "pcm_s24be",
        CODEC_ID_PCM_S16LE => "pcm_s16le",
        CODEC_ID_PCM_S16BE => "pcm_s16be",
        CODEC_ID_PCM_S8 => "pcm_s8",
        CODEC_ID_PCM_U32LE => "pcm_u32le",
        CODEC_ID_PCM_U32BE => "pcm_u32be",
        CODEC_ID_PCM_U24LE => "pcm_u24le",
        CODEC_ID_PCM_U24BE => "pcm_u24be",
        CODEC_ID_PCM_U16LE => "pcm_u16le",
        CODEC_ID_PCM_U16BE => "pcm_u16be",
        CODEC_ID_PCM_U8 => "pcm_u8",
        CODEC_ID_PCM_F32LE => "pcm_f32le",
        CODEC_ID_PCM_F32BE => "pcm_f32be",
        CODEC_ID_PCM_F64LE => "pcm_f64le",
        CODEC_ID_PCM_F64BE => "pcm_f64be",
        CODEC_ID_PCM_S32LE_PLANAR => "pcm_s32le_planar",
        CODEC_ID_PCM_S24LE_PLANAR => "pcm_s24le_planar",
        CODEC_ID_PCM_S16LE_PLANAR => "pcm_s16le_planar",
        CODEC_ID_PCM_S16BE_PLANAR => "pcm_s16be_planar",
        CODEC_ID_PCM_S8_PLANAR => "pcm_s8_planar",
        CODEC_ID_PCM_ALAW => "pcm_alaw",
        CODEC_ID_PCM_MULAW => "pcm_mulaw",
        CODEC_ID_ADPCM_G722 => "adpcm_g722",
        CODEC_ID_ADPCM_G726 => "adpcm_g726",
        CODEC_ID_ADPCM_G726LE => "adpcm_g726le",
        CODEC_ID_ADPCM_MS => "adpcm_ms",
        CODEC_ID_ADPCM_IMA_WAV => "adpcm_ima_wav",
        CODEC_ID_ADPCM_IMA_QT => "adpcm_ima_qt",
        CODEC_ID_VORBIS => "vorbis",
        CODEC_ID_OPUS => "opus",
        CODEC_ID_SPEEX => "speex",
        CODEC_ID_MP1 => "mp1",
        CODEC_ID_MP2 => "mp2",
        CODEC_ID_MP3 => "mp3",
        CODEC_ID_AAC => "aac",
        CODEC_ID_AC3 => "ac3",
        CODEC_ID_EAC3 => "eac3",
        CODEC_ID_AC4 => "ac4",
        CODEC_ID_DCA => "dts",
        CODEC_ID_ATRAC1 => "atrac1",
        CODEC_ID_ATRAC3 => "atrac3",
        CODEC_ID_ATRAC3PLUS => "atrac3p",
        CODEC_ID_ATRAC9 => "atrac9",
        CODEC_ID_RA10 => "ra_144",
        CODEC_ID_RA20 => "ra_288",
        CODEC_ID_SIPR => "sipr",
        CODEC_ID_COOK => "cook",
        CODEC_ID_SBC => "sbc",
        CODEC_ID_APTX => "aptx",
        CODEC_ID_APTX_HD => "aptx_hd",
        CODEC_ID_FLAC => "flac",
        CODEC_ID_WAVPACK => "wavpack",
        CODEC_ID_MONKEYS_AUDIO => "ape",
        CODEC_ID_ALAC => "alac",
        CODEC_ID_TTA => "tta",
        CODEC_ID_RALF => "ralf",
        CODEC_ID_TRUEHD => "truehd",
        _ => return None,
    };
    Some(name)
}

/// The stored size of one PCM sample in bits, from the codec alone. G.711 (µ-law, A-law) counts
/// as 8, as ffprobe reports it.
fn pcm_bits(codec: AudioCodecId) -> Option<u32> {
    let bits = match codec {
        CODEC_ID_PCM_S8
        | CODEC_ID_PCM_S8_PLANAR
        | CODEC_ID_PCM_U8
        | CODEC_ID_PCM_ALAW
        | CODEC_ID_PCM_MULAW => 8,
        CODEC_ID_PCM_S16LE
        | CODEC_ID_PCM_S16BE
        | CODEC_ID_PCM_S16LE_PLANAR
        | CODEC_ID_PCM_S16BE_PLANAR
        | CODEC_ID_PCM_U16LE
        | CODEC_ID_PCM_U16BE => 16,
        CODEC_ID_PCM_S24LE
        | CODEC_ID_PCM_S24BE
        | CODEC_ID_PCM_S24LE_PLANAR
        | CODEC_ID_PCM_U24LE
        | CODEC_ID_PCM_U24BE => 24,
        CODEC_ID_PCM_S32LE
        | CODEC_ID_PCM_S32BE
        | CODEC_ID_PCM_S32LE_PLANAR
        | CODEC_ID_PCM_U32LE
        | CODEC_ID_PCM_U32BE
        | CODEC_ID_PCM_F32LE
        | CODEC_ID_PCM_F32BE => 32,
        CODEC_ID_PCM_F64LE | CODEC_ID_PCM_F64BE => 64,
        _ => return None,
    };
    Some(bits)
}

/// Lossless compressed codecs: their bit depth is a property of the audio, so it is reported.
fn is_lossless_compressed(codec: AudioCodecId) -> bool {
    matches!(
        codec,
        CODEC_ID_FLAC
            | CODEC_ID_ALAC
            | CODEC_ID_WAVPACK
            | CODEC_ID_MONKEYS_AUDIO
            | CODEC_ID_TTA
            | CODEC_ID_RALF
            | CODEC_ID_TRUEHD
    )
}

/// The bit depth of an ALAC stream, from its magic cookie (Apple's ALAC specification:
/// `frameLength` u32, `compatibleVersion` u8, `bitDepth` u8, …), which MP4 and CAF may wrap in
/// `frma` and `alac` atom headers of 12 bytes each.
fn alac_bit_depth(cookie: &[u8]) -> Option<u32> {
    let mut cookie = cookie;
    for wrapper in [b"frma", b"alac"] {
        if cookie.get(4..8) == Some(&wrapper[..]) {
            cookie = cookie.get(12..)?;
        }
    }
    cookie.get(5).map(|&depth| u32::from(depth)).filter(|&depth| depth > 0)
}

/// Bits per stored sample for PCM and lossless codecs, `None` for lossy ones (DESIGN §3).
fn bits_per_sample(params: &AudioCodecParameters) -> Option<u32> {
    let declared = params.bits_per_sample.filter(|&bits| bits > 0);
    if let Some(intrinsic) = pcm_bits(params.codec) {
        // AIFF and CAF may store 12 or 20 significant bits in a wider word: keep what they say.
        return Some(declared.unwrap_or(intrinsic));
    }
    if params.codec == CODEC_ID_ALAC {
        return declared.or_else(|| params.extra_data.as_deref().and_then(alac_bit_depth));
    }
    if is_lossless_compressed(params.codec) { declared } else { None }
}

// ---------------------------------------------------------------------------------------------
// WAVE format tags (WAV files, and AVI audio streams)
// ---------------------------------------------------------------------------------------------

/// The `WAVEFORMATEX` structure and its format tags, as a WAV file's `fmt ` chunk and an AVI
/// audio stream's `strf` chunk both hold it: one reading and one table of codec names (ffmpeg's
/// `ff_codec_wav_tags`) serve both extractors.
pub(super) mod wave_format {
    use super::{u16_le, u32_le};

    pub(in crate::extract) const WAVE_FORMAT_PCM: u16 = 0x0001;
    pub(in crate::extract) const WAVE_FORMAT_ADPCM_MS: u16 = 0x0002;
    pub(in crate::extract) const WAVE_FORMAT_IEEE_FLOAT: u16 = 0x0003;
    pub(in crate::extract) const WAVE_FORMAT_ALAW: u16 = 0x0006;
    pub(in crate::extract) const WAVE_FORMAT_MULAW: u16 = 0x0007;
    pub(in crate::extract) const WAVE_FORMAT_IMA_ADPCM: u16 = 0x0011;
    /// The codec is named by a sub-format GUID at bytes 24..40, after `cbSize` and the masks.
    pub(in crate::extract) const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
    /// The 14 bytes that follow the format code in every `KSDATAFORMAT_SUBTYPE_*` GUID whose
    /// first two bytes are a WAVE format code (PCM, IEEE float, A-law, µ-law, …).
    const SUBTYPE_GUID_TAIL: [u8; 14] =
        [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71];

    /// What a `WAVEFORMATEX` says. `format_tag` is as written until the reader resolves
    /// [`WAVE_FORMAT_EXTENSIBLE`] with [`subformat_tag`]: a WAV file with a vendor GUID is
    /// refused, an AVI stream with one is reported with no codec name.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(in crate::extract) struct WaveFormat {
        pub(in crate::extract) format_tag: u16,
        pub(in crate::extract) channels: u16,
        pub(in crate::extract) sample_rate: u32,
        pub(in crate::extract) block_align: u16,
        pub(in crate::extract) bits_per_sample: u16,
        /// ADPCM's `wSamplesPerBlock`, right after `cbSize`.
        pub(in crate::extract) frames_per_block: Option<u16>,
    }

    impl WaveFormat {
        /// Reads the fields of a `WAVEFORMATEX`; `None` when it is shorter than the 16 bytes
        /// every one has.
        pub(in crate::extract) fn from_bytes(body: &[u8]) -> Option<WaveFormat> {
            Some(WaveFormat {
                format_tag: u16_le(body, 0)?,
                channels: u16_le(body, 2)?,
                sample_rate: u32_le(body, 4)?,
                block_align: u16_le(body, 12)?,
                bits_per_sample: u16_le(body, 14)?,
                frames_per_block: u16_le(body, 18),
            })
        }
    }

    /// The format tag a `WAVE_FORMAT_EXTENSIBLE` sub-format GUID stands for: its first two
    /// bytes, when it is one of the WAVE family's `KSDATAFORMAT_SUBTYPE_*` GUIDs; `None` for a
    /// vendor-defined one.
    pub(in crate::extract) fn subformat_tag(guid: &[u8]) -> Option<u16> {
        match guid {
            [low, high, tail @ ..] if *tail == SUBTYPE_GUID_TAIL => Some(u16::from_le_bytes([*low, *high])),
            _ => None,
        }
    }

    /// ffprobe's codec name and the stored bits per sample (for PCM-like formats) of a WAVE
    /// format. PCM is named by its container size (`block_align / channels` bytes), as ffmpeg
    /// does: 20-bit audio in 3-byte words is `pcm_s24le` with 20 bits per sample. PCM of a
    /// size ffmpeg has no codec for (5 bytes, or 0) is unnamed, as are tags ffmpeg does not know.
    pub(in crate::extract) fn codec(format: &WaveFormat) -> (Option<&'static str>, Option<u32>) {
        let bytes_per_sample = match format.block_align.checked_div(format.channels).unwrap_or(0) {
            0 => format.bits_per_sample.div_ceil(8),
            bytes => bytes,
        };
        let declared_bits = match format.bits_per_sample {
            0 => u32::from(bytes_per_sample) * 8,
            bits => u32::from(bits),
        };
        let name = match (format.format_tag, bytes_per_sample) {
            (WAVE_FORMAT_PCM, 1) => "pcm_u8",
            (WAVE_FORMAT_PCM, 2) => "pcm_s16le",
            (WAVE_FORMAT_PCM, 3) => "pcm_s24le",
            (WAVE_FORMAT_PCM, 4) => "pcm_s32le",
            (WAVE_FORMAT_PCM, 8) => "pcm_s64le",
            (WAVE_FORMAT_IEEE_FLOAT, 4) => "pcm_f32le",
            (WAVE_FORMAT_IEEE_FLOAT, 8) => "pcm_f64le",
            (WAVE_FORMAT_ALAW, _) => return (Some("pcm_alaw"), Some(8)),
            (WAVE_FORMAT_MULAW, _) => return (Some("pcm_mulaw"), Some(8)),
            (tag, _) => return (compressed_codec(tag), None),
        };
        (Some(name), Some(declared_bits))
    }

    /// ffprobe's codec name for a format tag that is not PCM-like; `None` for PCM and IEEE
    /// float (whose sizes [`codec`] names) and for a tag ffmpeg does not know either.
    fn compressed_codec(format_tag: u16) -> Option<&'static str> {
        let name = match format_tag {
            WAVE_FORMAT_ADPCM_MS => "adpcm_ms",
            0x000A => "wmavoice",
            WAVE_FORMAT_IMA_ADPCM => "adpcm_ima_wav",
            0x0022 => "truespeech",
            0x0031 => "gsm_ms",
            0x0040 | 0x0045 | 0x0064 => "adpcm_g726",
            0x0050 => "mp2",
            0x0055 => "mp3",
            0x0061 => "adpcm_ima_dk4",
            0x0062 => "adpcm_ima_dk3",
            0x00FF | 0x1600 | 0x1610 | 0x4143 | 0x706D | 0xA106 => "aac",
            0x1602 => "aac_latm",
            0x0160 => "wmav1",
            0x0161 => "wmav2",
            0x0162 => "wmapro",
            0x0163 => "wmalossless",
            0x0270 => "atrac3",
            0x2000 | 0x0092 => "ac3",
            0x2001 => "dts",
            0x674F | 0x6750 | 0x6751 | 0x676F | 0x6770 | 0x6771 | 0x566F => "vorbis",
            0xF1AC => "flac",
            _ => return None,
        };
        Some(name)
    }
}

// ---------------------------------------------------------------------------------------------
// WAV, RF64, BW64
// ---------------------------------------------------------------------------------------------

/// WAVE files, read by our own chunk walker rather than symphonia's: symphonia 0.6 does not
/// know RF64/BW64 (the `ds64` chunk that holds 64-bit sizes), and one parser for all three is
/// simpler than two. It seeks from chunk header to chunk header, so only the headers are read.
mod wav {
    use super::wave_format::*;
    use super::*;

    /// More chunks than any real file has before its audio; a bound against hostile files of
    /// millions of empty chunks.
    const MAX_CHUNKS: usize = 1024;
    /// `fmt ` bytes we look at: WAVE_FORMAT_EXTENSIBLE ends at byte 40.
    const FMT_LEN: usize = 40;

    /// The `fmt ` chunk; a vendor-defined sub-format is `Unsupported`, as we could not name
    /// its codec nor size its samples.
    pub(super) fn parse_fmt(body: &[u8], container: Container) -> Result<WaveFormat, ExtractError> {
        let corrupt = |why: &str| ExtractError::corrupt(container.display_name(), why);
        let mut format =
            WaveFormat::from_bytes(body).ok_or_else(|| corrupt("its fmt chunk is shorter than 16 bytes"))?;
        if format.format_tag == WAVE_FORMAT_EXTENSIBLE {
            let guid = body
                .get(24..40)
                .ok_or_else(|| corrupt("its WAVE_FORMAT_EXTENSIBLE fmt chunk is cut short"))?;
            format.format_tag = subformat_tag(guid).ok_or_else(|| {
                ExtractError::Unsupported(format!(
                    "{} audio in a vendor-defined sub-format (GUID {}); not read",
                    container.display_name(),
                    guid.iter().map(|b| format!("{b:02x}")).collect::<String>()
                ))
            })?;
        }
        if format.channels == 0 {
            return Err(corrupt("its fmt chunk declares 0 channels"));
        }
        if format.sample_rate == 0 {
            return Err(corrupt("its fmt chunk declares a sample rate of 0"));
        }
        check_pcm_consistency(&format, u32_le(body, 8).unwrap_or(0), container)?;
        Ok(format)
    }

    /// In PCM-like formats (PCM, IEEE float, A-law, µ-law) the block align and the byte rate
    /// are not free: a frame is one sample of each channel, a second is `sample_rate` frames.
    /// Fields that disagree are a damaged header, and whichever of them we reported could be
    /// the damaged one (a sample rate of 3,992,985,408 beside a byte rate of 144,000, 53,761
    /// channels in 1-byte frames), so the file is `corrupt`. A zero block align (broken
    /// writers; [`frame_count`] recomputes it) is let pass. Compressed formats have nominal
    /// byte rates (ADPCM's is a round guess) and are not checked.
    fn check_pcm_consistency(
        format: &WaveFormat,
        byte_rate: u32,
        container: Container,
    ) -> Result<(), ExtractError> {
        let pcm_like = matches!(
            format.format_tag,
            WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT | WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW
        );
        if !pcm_like || format.block_align == 0 {
            return Ok(());
        }
        let (channels, block_align) = (format.channels, format.block_align);
        let bytes_per_sample = block_align / channels;
        if !block_align.is_multiple_of(channels) || bytes_per_sample < format.bits_per_sample.div_ceil(8) {
            return Err(ExtractError::corrupt(
                container.display_name(),
                format!(
                    "its fmt chunk declares {channels} channels of {} bits in frames of {block_align} bytes",
                    format.bits_per_sample
                ),
            ));
        }
        if u64::from(byte_rate) != u64::from(format.sample_rate) * u64::from(block_align) {
            return Err(ExtractError::corrupt(
                container.display_name(),
                format!(
                    "its fmt chunk declares {} Hz in frames of {block_align} bytes but {byte_rate} bytes per second",
                    format.sample_rate
                ),
            ));
        }
        Ok(())
    }

    /// How many sample frames `data_len` bytes of audio in `format` hold: exact for PCM-like
    /// formats and block-based ADPCM; for other codecs only the `fact` chunk knows.
    pub(super) fn frame_count(format: &WaveFormat, data_len: u64, fact_frames: Option<u32>) -> Option<u64> {
        let block_align = u64::from(format.block_align);
        match format.format_tag {
            WAVE_FORMAT_PCM | WAVE_FORMAT_IEEE_FLOAT | WAVE_FORMAT_ALAW | WAVE_FORMAT_MULAW => {
                // A zero block_align (broken writers) is recomputed from the sample size.
                let bytes_per_sample = u64::from(format.bits_per_sample.div_ceil(8)).max(1);
                let frame_len = match block_align {
                    0 => bytes_per_sample * u64::from(format.channels),
                    declared => declared,
                };
                Some(data_len / frame_len)
            }
            _ if fact_frames.is_some() => fact_frames.map(u64::from),
            WAVE_FORMAT_ADPCM_MS | WAVE_FORMAT_IMA_ADPCM if block_align > 0 => {
                let frames_per_block = u64::from(format.frames_per_block?);
                Some(data_len / block_align * frames_per_block)
            }
            _ => None,
        }
    }

    pub(super) fn read(source: &mut dyn ReadSeek) -> Result<(Container, AudioMetadata), ExtractError> {
        let file_len = source_len(source)?;
        let mut header = [0u8; 12];
        read_exact_at(source, 0, &mut header, Container::Wav)?;
        let container = match &header[..4] {
            b"RIFF" => Container::Wav,
            b"RF64" => Container::Rf64,
            b"BW64" => Container::Bw64,
            _ => return Err(ExtractError::corrupt("WAV", "it does not start with RIFF, RF64 or BW64")),
        };
        let corrupt = |why: &str| ExtractError::corrupt(container.display_name(), why);
        if &header[8..12] != b"WAVE" {
            return Err(corrupt("its RIFF form is not WAVE"));
        }

        let mut ds64_data_len = None;
        let mut format = None;
        let mut fact_frames = None;
        let mut data_len = None;
        let mut chunk_start = 12u64;
        for _ in 0..MAX_CHUNKS {
            let mut chunk_header = [0u8; 8];
            if read_up_to_at(source, chunk_start, &mut chunk_header)? < 8 {
                break;
            }
            let id = &chunk_header[..4];
            let declared_len =
                u32::from_le_bytes([chunk_header[4], chunk_header[5], chunk_header[6], chunk_header[7]]);
            let body_start = chunk_start.saturating_add(8);
            let available = file_len.saturating_sub(body_start);
            let mut body_len = u64::from(declared_len);
            match id {
                b"ds64" => {
                    // riffSize u64, dataSize u64, sampleCount u64, then a table we don't need.
                    let mut body = [0u8; 16];
                    read_exact_at(source, body_start, &mut body, container)?;
                    ds64_data_len = u64_le(&body, 8);
                }
                b"fmt " => {
                    let mut body = [0u8; FMT_LEN];
                    let wanted = usize::try_from(body_len).unwrap_or(FMT_LEN).min(FMT_LEN);
                    let got = read_up_to_at(source, body_start, &mut body[..wanted])?;
                    format = Some(parse_fmt(&body[..got], container)?);
                }
                b"fact" => {
                    let mut body = [0u8; 4];
                    if read_up_to_at(source, body_start, &mut body)? == 4 {
                        fact_frames = Some(u32::from_le_bytes(body));
                    }
                }
                b"data" => {
                    // 0xFFFFFFFF: the real size is in ds64 (RF64/BW64), or was never written
                    // (streamed WAV): then the audio runs to the end of the file.
                    let declared = match declared_len {
                        u32::MAX => ds64_data_len,
                        len => Some(u64::from(len)),
                    };
                    // A truncated file holds only the bytes that are there.
                    body_len = declared.map_or(available, |len| len.min(available));
                    data_len = Some(body_len);
                }
                _ => {}
            }
            let needs_fact = format.is_some_and(|f| frame_count(&f, 0, None).is_none());
            if data_len.is_some() && format.is_some() && (fact_frames.is_some() || !needs_fact) {
                break;
            }
            // Chunks are padded to an even length.
            chunk_start = body_start.saturating_add(body_len).saturating_add(body_len & 1);
            if chunk_start >= file_len {
                break;
            }
        }

        let format = format.ok_or_else(|| corrupt("it has no fmt chunk before its end"))?;
        let data_len = data_len.ok_or_else(|| corrupt("it has no data chunk"))?;
        let (codec, bits_per_sample) = codec(&format);
        let frames = frame_count(&format, data_len, fact_frames);
        let metadata = AudioMetadata {
            container: container.name(),
            codec,
            duration_seconds: frames.and_then(|frames| frames_to_seconds(frames, format.sample_rate)),
            sample_rate: Some(format.sample_rate),
            channels: Some(u32::from(format.channels)),
            bits_per_sample,
        };
        Ok((container, metadata))
    }
}

// ---------------------------------------------------------------------------------------------
// AIFF, AIFF-C
// ---------------------------------------------------------------------------------------------

/// AIFF and AIFF-C, read by our own chunk walker: the COMM chunk holds the exact frame count,
/// and walking the chunk headers with seeks reads nothing else (symphonia derives the count
/// from the SSND size, reads every chunk, ID3 pictures included, and overflows a `u16` on
/// absurd channel counts).
mod aiff {
    use super::*;

    /// A bound against hostile files of endless empty chunks.
    const MAX_CHUNKS: usize = 1024;

    /// What a COMM chunk says.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Common {
        pub(super) channels: u16,
        pub(super) frames: u32,
        pub(super) bits_per_sample: u16,
        pub(super) sample_rate: u32,
        /// AIFF-C's compression type; `NONE` for plain AIFF.
        pub(super) compression: [u8; 4],
    }

    /// An 80-bit IEEE 754 extended-precision number (COMM's sample rate) rounded to an
    /// integer; `None` if negative, below 1 or above `u32::MAX`.
    pub(super) fn extended_to_u32(bytes: &[u8; 10]) -> Option<u32> {
        let sign_and_exponent = u16::from_be_bytes([bytes[0], bytes[1]]);
        let mantissa = u64::from_be_bytes(bytes[2..10].try_into().ok()?);
        if sign_and_exponent & 0x8000 != 0 {
            return None;
        }
        // value = mantissa × 2^(exponent − 16383 − 63), the mantissa's top bit being the
        // integer bit; rates need exponents 0..=31 above the bias.
        let power = i32::from(sign_and_exponent) - 16383;
        if !(0..=31).contains(&power) {
            return None;
        }
        let twice = (u128::from(mantissa) << 1) >> (63 - power);
        u32::try_from(twice.div_ceil(2)).ok().filter(|&rate| rate > 0)
    }

    pub(super) fn parse_comm(body: &[u8], is_aifc: bool) -> Result<Common, ExtractError> {
        let corrupt = |why: &str| ExtractError::corrupt("AIFF", why);
        if body.len() < 18 || (is_aifc && body.len() < 22) {
            return Err(corrupt("its COMM chunk is cut short"));
        }
        let channels = u16::from_be_bytes([body[0], body[1]]);
        let frames = u32::from_be_bytes([body[2], body[3], body[4], body[5]]);
        let bits_per_sample = u16::from_be_bytes([body[6], body[7]]);
        let rate_bytes: &[u8; 10] =
            body[8..18].try_into().map_err(|_| corrupt("its COMM chunk is cut short"))?;
        let sample_rate = extended_to_u32(rate_bytes)
            .ok_or_else(|| corrupt("its COMM chunk declares an impossible sample rate"))?;
        let compression = match is_aifc {
            true => [body[18], body[19], body[20], body[21]],
            false => *b"NONE",
        };
        // numChannels is a signed short: 0 and negative counts are both impossible.
        if channels == 0 || channels > i16::MAX as u16 {
            return Err(corrupt("its COMM chunk declares 0 or fewer channels"));
        }
        Ok(Common { channels, frames, bits_per_sample, sample_rate, compression })
    }

    /// ffprobe's codec name and the stored bits per sample (for PCM) of an AIFF(-C) stream.
    pub(super) fn codec(common: &Common) -> (Option<&'static str>, Option<u32>) {
        let bits = common.bits_per_sample;
        let pcm = |name| (Some(name), Some(u32::from(bits)));
        match (&common.compression, bits.div_ceil(8)) {
            (b"NONE" | b"twos", 1) => pcm("pcm_s8"),
            (b"NONE" | b"twos", 2) => pcm("pcm_s16be"),
            (b"NONE" | b"twos" | b"in24", 3) => pcm("pcm_s24be"),
            (b"NONE" | b"twos" | b"in32", 4) => pcm("pcm_s32be"),
            (b"sowt", 2) => pcm("pcm_s16le"),
            (b"sowt", 3) => pcm("pcm_s24le"),
            (b"sowt", 4) => pcm("pcm_s32le"),
            (b"raw ", 1) => pcm("pcm_u8"),
            (b"fl32" | b"FL32", _) => (Some("pcm_f32be"), Some(32)),
            (b"fl64" | b"FL64", _) => (Some("pcm_f64be"), Some(64)),
            (b"alaw" | b"ALAW", _) => (Some("pcm_alaw"), Some(8)),
            (b"ulaw" | b"ULAW", _) => (Some("pcm_mulaw"), Some(8)),
            (b"ima4", _) => (Some("adpcm_ima_qt"), None),
            (b"MAC3", _) => (Some("mace3"), None),
            (b"MAC6", _) => (Some("mace6"), None),
            (b"GSM ", _) => (Some("gsm"), None),
            (b"QDM2", _) => (Some("qdm2"), None),
            (b"Qclp", _) => (Some("qcelp"), None),
            _ => (None, None),
        }
    }

    /// The bytes of one sample frame of uncompressed audio, for bounding the frame count by
    /// the sound data actually present; `None` for compressed audio.
    fn frame_len(common: &Common, bits_per_sample: Option<u32>) -> Option<u64> {
        let bytes = match &common.compression {
            b"alaw" | b"ALAW" | b"ulaw" | b"ULAW" => 1,
            _ => u64::from(bits_per_sample?.div_ceil(8)),
        };
        Some(bytes * u64::from(common.channels)).filter(|&len| len > 0)
    }

    pub(super) fn read(source: &mut dyn ReadSeek) -> Result<(Container, AudioMetadata), ExtractError> {
        let corrupt = |why: &str| ExtractError::corrupt("AIFF", why);
        let file_len = source_len(source)?;
        let mut header = [0u8; 12];
        read_exact_at(source, 0, &mut header, Container::Aiff)?;
        let is_aifc = match (&header[..4], &header[8..12]) {
            (b"FORM", b"AIFF") => false,
            (b"FORM", b"AIFC") => true,
            _ => return Err(corrupt("it does not start with FORM AIFF or FORM AIFC")),
        };

        let mut common = None;
        // Bytes of sample data in SSND: its size minus the offset and block-size fields and
        // the `offset` padding, bounded by what the file holds.
        let mut sound_len = None;
        let mut chunk_start = 12u64;
        for _ in 0..MAX_CHUNKS {
            let mut chunk_header = [0u8; 8];
            if read_up_to_at(source, chunk_start, &mut chunk_header)? < 8 {
                break;
            }
            let body_start = chunk_start.saturating_add(8);
            let body_len = u64::from(u32_be(&chunk_header, 4).unwrap_or(0));
            match &chunk_header[..4] {
                b"COMM" => {
                    let mut body = [0u8; 22];
                    let wanted = usize::try_from(body_len).unwrap_or(22).min(22);
                    let got = read_up_to_at(source, body_start, &mut body[..wanted])?;
                    common = Some(parse_comm(&body[..got], is_aifc)?);
                }
                b"SSND" => {
                    let mut offset = [0u8; 4];
                    read_exact_at(source, body_start, &mut offset, Container::Aiff)?;
                    let skipped = 8 + u64::from(u32::from_be_bytes(offset));
                    let present = file_len.saturating_sub(body_start).min(body_len);
                    sound_len = Some(present.saturating_sub(skipped));
                }
                _ => {}
            }
            if common.is_some() && sound_len.is_some() {
                break;
            }
            chunk_start = body_start.saturating_add(body_len).saturating_add(body_len & 1);
            if chunk_start >= file_len {
                break;
            }
        }

        let common = common.ok_or_else(|| corrupt("it has no COMM chunk"))?;
        let (codec, bits_per_sample) = codec(&common);
        // COMM's frame count is exact; a truncated file holds fewer.
        let mut frames = u64::from(common.frames);
        if let Some(frame_len) = frame_len(&common, bits_per_sample) {
            frames = frames.min(sound_len.unwrap_or(0) / frame_len);
        }
        let metadata = AudioMetadata {
            container: Container::Aiff.name(),
            codec,
            duration_seconds: frames_to_seconds(frames, common.sample_rate),
            sample_rate: Some(common.sample_rate),
            channels: Some(u32::from(common.channels)),
            bits_per_sample,
        };
        Ok((Container::Aiff, metadata))
    }
}

// ---------------------------------------------------------------------------------------------
// AU (Sun/NeXT .snd)
// ---------------------------------------------------------------------------------------------

/// Sun/NeXT `.snd` files: a 24-byte big-endian header (magic, data offset, data size, encoding,
/// sample rate, channels), then the samples. symphonia has no AU reader.
mod au {
    use super::*;

    /// ffprobe's codec name and the bytes per sample of an AU encoding number.
    pub(super) fn encoding(number: u32) -> Option<(&'static str, u32)> {
        Some(match number {
            1 => ("pcm_mulaw", 1),
            2 => ("pcm_s8", 1),
            3 => ("pcm_s16be", 2),
            4 => ("pcm_s24be", 3),
            5 => ("pcm_s32be", 4),
            6 => ("pcm_f32be", 4),
            7 => ("pcm_f64be", 8),
            27 => ("pcm_alaw", 1),
            _ => return None,
        })
    }

    pub(super) fn read(source: &mut dyn ReadSeek) -> Result<(Container, AudioMetadata), ExtractError> {
        let corrupt = |why: &str| ExtractError::corrupt("AU", why);
        let file_len = source_len(source)?;
        let mut header = [0u8; 24];
        read_exact_at(source, 0, &mut header, Container::Au)?;
        let field = |at| u32_be(&header, at).unwrap_or(0);
        if &header[..4] != b".snd" {
            return Err(corrupt("it does not start with .snd"));
        }
        let (data_offset, declared_len, encoding_number, sample_rate, channels) =
            (field(4), field(8), field(12), field(16), field(20));
        if data_offset < 24 {
            return Err(corrupt("its data offset points inside its 24-byte header"));
        }
        if sample_rate == 0 {
            return Err(corrupt("its header declares a sample rate of 0"));
        }
        if channels == 0 {
            return Err(corrupt("its header declares 0 channels"));
        }
        let (codec, bytes_per_sample) = encoding(encoding_number).ok_or_else(|| {
            ExtractError::Unsupported(format!(
                "AU audio with encoding {encoding_number} (G.72x ADPCM or other); not read"
            ))
        })?;
        // 0xFFFFFFFF means "unknown" (written to a pipe): the samples run to the end of the file.
        let available = file_len.saturating_sub(u64::from(data_offset));
        let data_len = match declared_len {
            u32::MAX => available,
            len => u64::from(len).min(available),
        };
        let frame_len = u64::from(bytes_per_sample) * u64::from(channels);
        let metadata = AudioMetadata {
            container: Container::Au.name(),
            codec: Some(codec),
            duration_seconds: frames_to_seconds(data_len / frame_len, sample_rate),
            sample_rate: Some(sample_rate),
            channels: Some(channels),
            bits_per_sample: Some(if codec == "pcm_mulaw" || codec == "pcm_alaw" {
                8
            } else {
                bytes_per_sample * 8
            }),
        };
        Ok((Container::Au, metadata))
    }
}

// ---------------------------------------------------------------------------------------------
// MPEG audio (MP3, and MP1/MP2 in the same framing)
// ---------------------------------------------------------------------------------------------

/// MPEG audio elementary streams. The tags around the frames are skipped by us, not read by
/// symphonia, so that an ID3v2 tag with a 16 MB cover picture costs one seek, never the
/// picture's bytes; the frame count comes from the Xing/Info or VBRI header when it agrees
/// with the file, else from counting the frames.
mod mpeg_audio {
    use super::*;
    use crate::extract::mpeg_audio::{FrameHeader, frame_header};

    /// At most this many ID3v2 tags are skipped in a row (some taggers prepend a second one).
    const MAX_ID3V2_TAGS: usize = 4;
    /// Bytes read from the first frame to find a Xing/Info or VBRI header in it.
    const FIRST_FRAME_PROBE: usize = 192;
    /// No MPEG audio frame is shorter than this (MPEG-2.5 layer III at 8 kbit/s is 72 bytes),
    /// so a header claiming more frames than `bytes / 24` is lying.
    const MIN_FRAME_LEN: u64 = 24;
    /// The longest MPEG audio frame (layer II at 384 kbit/s, 32 kHz, padded).
    const MAX_FRAME_LEN: u64 = 2881;

    /// The bytes of a tagged MPEG audio file that are frames: after any leading ID3v2 tags and
    /// before a trailing APEv2 and ID3v1 tag.
    pub(super) fn frame_region(source: &mut dyn ReadSeek, file_len: u64) -> io::Result<(u64, u64)> {
        let mut start = 0u64;
        for _ in 0..MAX_ID3V2_TAGS {
            let mut header = [0u8; 10];
            if read_up_to_at(source, start, &mut header)? < 10 || &header[..3] != b"ID3" {
                break;
            }
            let size_bytes = &header[6..10];
            if size_bytes.iter().any(|b| b & 0x80 != 0) {
                break; // not a synchsafe size: not a tag after all
            }
            let size = size_bytes.iter().fold(0u64, |size, &b| (size << 7) | u64::from(b));
            let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
            start = start.saturating_add(10 + size + footer);
        }

        let mut end = file_len;
        let mut id3v1 = [0u8; 3];
        if end >= start + 128 && read_up_to_at(source, end - 128, &mut id3v1)? == 3 && &id3v1 == b"TAG" {
            end -= 128;
        }
        let mut ape_footer = [0u8; 32];
        if end >= start + 32
            && read_up_to_at(source, end - 32, &mut ape_footer)? == 32
            && &ape_footer[..8] == b"APETAGEX"
        {
            // The footer's size covers items and footer; a header (flag bit 31) adds 32 bytes.
            let size = u64::from(u32_le(&ape_footer, 12).unwrap_or(0));
            let has_header = u32_le(&ape_footer, 20).unwrap_or(0) & 0x8000_0000 != 0;
            let tag_len = size + if has_header { 32 } else { 0 };
            if tag_len <= end - start {
                end -= tag_len;
            }
        }
        Ok((start.min(end), end))
    }

    /// What a Xing/Info or VBRI header in the first frame says: the number of audio frames
    /// after it and, if given, the stream's length in bytes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct FrameCountHeader {
        pub(super) frames: u32,
        pub(super) bytes: Option<u32>,
    }

    /// Finds a Xing/Info (LAME, most encoders) or VBRI (Fraunhofer) header in the first frame,
    /// whose own header is `header`.
    pub(super) fn frame_count_header(first_frame: &[u8], header: &FrameHeader) -> Option<FrameCountHeader> {
        let at = header.xing_offset;
        match first_frame.get(at..at + 4)? {
            b"Xing" | b"Info" => {
                let flags = u32_be(first_frame, at + 4)?;
                if flags & 1 == 0 {
                    return None;
                }
                let frames = u32_be(first_frame, at + 8)?;
                let bytes = if flags & 2 != 0 { u32_be(first_frame, at + 12) } else { None };
                Some(FrameCountHeader { frames, bytes })
            }
            _ if first_frame.get(36..40) == Some(b"VBRI") => {
                // "VBRI", version u16, delay u16, quality u16, bytes u32, frames u32.
                let bytes = u32_be(first_frame, 46)?;
                let frames = u32_be(first_frame, 50)?;
                Some(FrameCountHeader { frames, bytes: Some(bytes) })
            }
            _ => None,
        }
    }

    /// Whether a frame-count header fits the file: a truncated download or a file with frames
    /// appended keeps its old header, and then only counting tells the truth.
    pub(super) fn header_fits(header: &FrameCountHeader, region_len: u64) -> bool {
        let frames = u64::from(header.frames);
        if frames == 0 || frames.saturating_mul(MIN_FRAME_LEN) > region_len {
            return false;
        }
        match header.bytes.map(u64::from) {
            // Shorter than declared by more than a frame: truncated.
            Some(bytes) if region_len.saturating_add(MAX_FRAME_LEN) < bytes => false,
            // Longer by more than 1 % and a few frames: something was appended.
            Some(bytes) if region_len > bytes + bytes / 100 + 2 * MAX_FRAME_LEN => false,
            _ => true,
        }
    }

    /// Samples per MPEG audio frame, from the codec and sample rate symphonia found.
    fn samples_per_frame(codec: AudioCodecId, sample_rate: u32) -> u64 {
        match codec {
            CODEC_ID_MP1 => 384,
            CODEC_ID_MP3 if sample_rate < 32_000 => 576, // MPEG-2 and 2.5 layer III
            _ => 1152,
        }
    }

    pub(super) fn read(source: &mut dyn ReadSeek) -> Result<(Container, AudioMetadata), ExtractError> {
        let file_len = source_len(source)?;
        let (start, end) = frame_region(source, file_len)?;
        let mut first_frame = [0u8; FIRST_FRAME_PROBE];
        let got = read_up_to_at(source, start, &mut first_frame)?;
        let first_frame = &first_frame[..got];

        // A frame-count header that fits the file answers everything from the first frame.
        let header = frame_header(first_frame);
        let frame_count = header
            .and_then(|header| frame_count_header(first_frame, &header))
            .filter(|count| header_fits(count, end - start));
        if let (Some(header), Some(count)) = (header, frame_count) {
            let metadata = AudioMetadata {
                container: Container::Mp3.name(),
                codec: Some(header.codec),
                duration_seconds: frames_to_seconds(
                    u64::from(count.frames) * u64::from(header.samples_per_frame),
                    header.sample_rate,
                ),
                sample_rate: Some(header.sample_rate),
                channels: Some(header.channels),
                bits_per_sample: None,
            };
            return Ok((Container::Mp3, metadata));
        }

        // Otherwise count the frames. Each packet is one MPEG frame; symphonia's per-packet
        // durations carry gapless trims computed against its own estimated end, so packets are
        // counted rather than their durations summed.
        let (track, tally) = tally_track(source, Format::Mp3, Container::Mp3, start..end)?;
        let params = audio_params(&track)?;
        let sample_rate = params.sample_rate.filter(|&rate| rate > 0);
        let frames = sample_rate.map(|rate| tally.packets * samples_per_frame(params.codec, rate));
        let metadata = AudioMetadata {
            container: Container::Mp3.name(),
            codec: codec_name(params.codec),
            duration_seconds: frames
                .zip(sample_rate)
                .and_then(|(frames, rate)| frames_to_seconds(frames, rate)),
            sample_rate,
            channels: params.channels.as_ref().map(|c| c.count() as u32),
            bits_per_sample: None,
        };
        Ok((Container::Mp3, metadata))
    }
}

// ---------------------------------------------------------------------------------------------
// FLAC
// ---------------------------------------------------------------------------------------------

/// Native FLAC. Everything is in STREAMINFO, the 34-byte metadata block that must come first,
/// so we read those 42 bytes and nothing else (symphonia would read every metadata block,
/// cover pictures included). Only a STREAMINFO total of 0 (streamed encoders) makes us count
/// the frames with symphonia.
mod flac {
    use super::*;

    /// What STREAMINFO says (RFC 9639 §8.2).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct StreamInfo {
        pub(super) sample_rate: u32,
        pub(super) channels: u32,
        pub(super) bits_per_sample: u32,
        /// 0 when the encoder did not know it.
        pub(super) total_samples: u64,
    }

    /// Parses `fLaC` and the STREAMINFO block header and body at the start of a file.
    pub(super) fn stream_info(head: &[u8; 42]) -> Result<StreamInfo, ExtractError> {
        let corrupt = |why: &str| ExtractError::corrupt("FLAC", why);
        if &head[..4] != b"fLaC" {
            return Err(corrupt("it does not start with fLaC"));
        }
        let block_type = head[4] & 0x7f;
        let block_len = u32::from_be_bytes([0, head[5], head[6], head[7]]);
        if block_type != 0 || block_len < 34 {
            return Err(corrupt("its first metadata block is not a 34-byte STREAMINFO"));
        }
        // After min/max block size (2 × u16) and min/max frame size (2 × u24): sample rate
        // (20 bits), channels − 1 (3), bits per sample − 1 (5), total samples (36).
        let b = &head[18..26];
        let sample_rate = (u32::from(b[0]) << 12) | (u32::from(b[1]) << 4) | (u32::from(b[2]) >> 4);
        let channels = u32::from((b[2] >> 1) & 7) + 1;
        let bits_per_sample = ((u32::from(b[2] & 1) << 4) | (u32::from(b[3]) >> 4)) + 1;
        let total_samples =
            b[4..].iter().fold(u64::from(b[3] & 0x0f), |total, &byte| (total << 8) | u64::from(byte));
        if sample_rate == 0 {
            return Err(corrupt("its STREAMINFO declares a sample rate of 0"));
        }
        Ok(StreamInfo { sample_rate, channels, bits_per_sample, total_samples })
    }

    pub(super) fn read(source: &mut dyn ReadSeek) -> Result<(Container, AudioMetadata), ExtractError> {
        let mut head = [0u8; 42];
        read_exact_at(source, 0, &mut head, Container::Flac)?;
        let info = stream_info(&head)?;
        let samples = match info.total_samples {
            0 => {
                let file_len = source_len(source)?;
                tally_track(source, Format::Flac, Container::Flac, 0..file_len)?.1.summed_duration
            }
            total => total,
        };
        let metadata = AudioMetadata {
            container: Container::Flac.name(),
            codec: Some("flac"),
            duration_seconds: frames_to_seconds(samples, info.sample_rate),
            sample_rate: Some(info.sample_rate),
            channels: Some(info.channels),
            bits_per_sample: Some(info.bits_per_sample),
        };
        Ok((Container::Flac, metadata))
    }
}

// ---------------------------------------------------------------------------------------------
// Everything symphonia demuxes
// ---------------------------------------------------------------------------------------------

/// The container name of an ISO-BMFF or Matroska file depends on its brand or DocType.
fn container_of(source: &mut dyn ReadSeek, format: Format) -> Result<Container, ExtractError> {
    Ok(match format {
        Format::Ogg => Container::Ogg,
        Format::Adts => Container::Adts,
        Format::Caf => Container::Caf,
        Format::IsoBmff => {
            let mut ftyp = [0u8; 12];
            let got = read_up_to_at(source, 0, &mut ftyp)?;
            match (got == 12 && &ftyp[4..8] == b"ftyp", &ftyp[8..12]) {
                (true, b"qt  ") => Container::Mov,
                (true, brand) if brand.starts_with(b"3g") => Container::ThreeGp,
                _ => Container::Mp4,
            }
        }
        Format::Matroska => {
            let mut head = [0u8; 64];
            let got = read_up_to_at(source, 0, &mut head)?;
            match ebml_doc_type(&head[..got]) {
                Some(b"webm") => Container::WebM,
                _ => Container::Matroska,
            }
        }
        other => return Err(ExtractError::Unsupported(format!("{other:?} is not an audio container"))),
    })
}

/// The DocType (`matroska`, `webm`) of an EBML file, from the EBML header at its start.
fn ebml_doc_type(head: &[u8]) -> Option<&[u8]> {
    /// An EBML variable-length integer: the count of leading zero bits in the first byte
    /// gives its length; IDs keep the length marker bit, sizes drop it.
    fn vint(bytes: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
        let first = *bytes.get(at)?;
        let len = first.leading_zeros() as usize + 1;
        if len > 8 {
            return None;
        }
        // An 8-byte size has its marker as the whole first byte.
        let marker_mask = if keep_marker { 0xff } else { 0xffu8.checked_shr(len as u32).unwrap_or(0) };
        let value = bytes
            .get(at + 1..at + len)?
            .iter()
            .fold(u64::from(first & marker_mask), |v, &b| (v << 8) | u64::from(b));
        Some((value, len))
    }
    const EBML_HEADER: u64 = 0x1A45_DFA3;
    const DOC_TYPE: u64 = 0x4282;
    let (id, id_len) = vint(head, 0, true)?;
    if id != EBML_HEADER {
        return None;
    }
    let (header_len, size_len) = vint(head, id_len, false)?;
    let body_start = id_len + size_len;
    let body_end = usize::try_from(header_len).ok()?.saturating_add(body_start).min(head.len());
    let mut at = body_start;
    while at < body_end {
        let (child, child_id_len) = vint(head, at, true)?;
        let (child_len, child_size_len) = vint(head, at + child_id_len, false)?;
        let value_start = at + child_id_len + child_size_len;
        let value_end = value_start.checked_add(usize::try_from(child_len).ok()?)?;
        if child == DOC_TYPE {
            return head.get(value_start..value_end);
        }
        at = value_end;
    }
    None
}

/// Opens symphonia's demuxer for `format` directly: the format is already known from its
/// magic number, so the probe (which scans for markers and reads trailing tags) is skipped.
fn open_reader<'s>(
    format: Format,
    container: Container,
    stream: MediaSourceStream<'s>,
) -> Result<Box<dyn FormatReader + 's>, ExtractError> {
    fn boxed<'s, R: FormatReader + 's>(reader: R) -> Box<dyn FormatReader + 's> {
        Box::new(reader)
    }
    let options = FormatOptions::default();
    let opened = match format {
        Format::Mp3 => MpaReader::try_new(stream, options).map(boxed),
        Format::Flac => FlacReader::try_new(stream, options).map(boxed),
        Format::Ogg => OggReader::try_new(stream, options).map(boxed),
        Format::Adts => AdtsReader::try_new(stream, options).map(boxed),
        Format::Caf => CafReader::try_new(stream, options).map(boxed),
        Format::IsoBmff => IsoMp4Reader::try_new(stream, options).map(boxed),
        Format::Matroska => MkvReader::try_new(stream, options).map(boxed),
        other => return Err(ExtractError::Unsupported(format!("{other:?} is not an audio container"))),
    };
    opened.map_err(|error| symphonia_error(container, error))
}

/// Maps symphonia's errors to what a user can act on: a malformed or truncated file is
/// `Corrupt`, a feature symphonia lacks is `Unsupported`, a limit is `TooLarge`.
fn symphonia_error(container: Container, error: SymphoniaError) -> ExtractError {
    let container = container.display_name();
    match error {
        SymphoniaError::IoError(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            ExtractError::corrupt(container, "the file ends early (truncated)")
        }
        SymphoniaError::IoError(error) => ExtractError::Io(error),
        SymphoniaError::DecodeError(why) => ExtractError::corrupt(container, why),
        SymphoniaError::Unsupported(what) => {
            ExtractError::Unsupported(format!("{container} audio using a feature that is not read ({what})"))
        }
        SymphoniaError::LimitError(what) => {
            ExtractError::TooLarge(format!("{container} file beyond a limit: {what}"))
        }
        other => ExtractError::corrupt(container, other),
    }
}

/// The track a player would play: the default audio track.
fn audio_track(reader: &dyn FormatReader) -> Result<Track, ExtractError> {
    reader
        .default_track(TrackType::Audio)
        .or_else(|| reader.first_track(TrackType::Audio))
        .cloned()
        .ok_or_else(|| ExtractError::Unsupported("the file has no audio track that can be read".into()))
}

fn audio_params(track: &Track) -> Result<&AudioCodecParameters, ExtractError> {
    match &track.codec_params {
        Some(CodecParameters::Audio(params)) => Ok(params),
        _ => Err(ExtractError::Unsupported("the audio track's codec parameters are unknown".into())),
    }
}

/// What demuxing a whole track found.
#[derive(Debug, Default, Clone, Copy)]
struct PacketTally {
    packets: u64,
    /// The sum of the packets' durations, in the track's time base.
    summed_duration: u64,
    /// From the first packet's timestamp to the end of the last one, in the track's time base:
    /// the measure for containers whose packets often carry no duration (Matroska), where a
    /// packet without one is taken to last as long as the gap before it.
    span: u64,
}

/// Demuxes every packet of `track_id` (no decoding) and tallies them. Reads the whole file,
/// so it runs only where no header tells the duration. A file that ends inside a packet
/// (truncated, or streamed and cut) counts the packets before it: that is what it holds.
fn tally_packets(
    reader: &mut dyn FormatReader,
    track_id: u32,
    container: Container,
) -> Result<PacketTally, ExtractError> {
    let mut tally = PacketTally::default();
    let mut first_pts = None;
    let mut previous_pts = None;
    let mut end_pts = i64::MIN;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) | Err(SymphoniaError::ResetRequired) => break,
            Err(SymphoniaError::IoError(error)) if error.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(error) => return Err(symphonia_error(container, error)),
        };
        if packet.track_id != track_id {
            continue;
        }
        tally.packets += 1;
        tally.summed_duration = tally.summed_duration.saturating_add(packet.dur.get());
        let pts = packet.pts.get();
        first_pts.get_or_insert(pts);
        // A packet without a duration (Matroska blocks) lasts as long as the gap before it.
        let gap = previous_pts.map_or(0, |previous| pts.saturating_sub(previous).max(0));
        let duration = match i64::try_from(packet.dur.get()).unwrap_or(i64::MAX) {
            0 => gap,
            duration => duration,
        };
        end_pts = end_pts.max(pts.saturating_add(duration));
        previous_pts = Some(pts);
    }
    if let Some(first) = first_pts {
        tally.span = u64::try_from(end_pts.saturating_sub(first)).unwrap_or(0);
    }
    Ok(tally)
}

/// Demuxes `range` of the source as `format` and tallies its audio track's packets: the
/// counting path of the containers whose own parsers found no length in the header.
fn tally_track(
    source: &mut dyn ReadSeek,
    format: Format,
    container: Container,
    range: std::ops::Range<u64>,
) -> Result<(Track, PacketTally), ExtractError> {
    source_range::run(source, range, move |stream| {
        let mut reader = open_reader(format, container, stream)?;
        let track = audio_track(reader.as_ref())?;
        let tally = tally_packets(reader.as_mut(), track.id, container)?;
        Ok((track, tally))
    })
}

/// The pre-skip of an Ogg Opus stream: samples at 48 kHz that decoders drop (RFC 7845 §4.2),
/// from the OpusHead packet (`OpusHead`, version u8, channels u8, pre-skip u16 LE, …).
fn opus_pre_skip(params: &AudioCodecParameters, track: &Track) -> u64 {
    params
        .extra_data
        .as_deref()
        .filter(|head| head.starts_with(b"OpusHead"))
        .and_then(|head| u16_le(head, 10))
        .map(u64::from)
        .or(track.delay.map(u64::from))
        .unwrap_or(0)
}

/// Ogg, ADTS, CAF, MP4 and Matroska through symphonia's demuxers.
fn read_with_symphonia(
    source: &mut dyn ReadSeek,
    format: Format,
) -> Result<(Container, AudioMetadata), ExtractError> {
    let container = container_of(source, format)?;
    let file_len = source_len(source)?;
    let metadata = source_range::run(source, 0..file_len, move |stream| {
        let mut reader = open_reader(format, container, stream)?;
        let track = audio_track(reader.as_ref())?;
        let params = audio_params(&track)?.clone();
        Ok(AudioMetadata {
            container: container.name(),
            codec: codec_name(params.codec),
            duration_seconds: duration_seconds(reader.as_mut(), &track, &params, container)?,
            sample_rate: params.sample_rate.filter(|&rate| rate > 0),
            channels: params.channels.as_ref().map(|c| c.count() as u32).filter(|&n| n > 0),
            bits_per_sample: bits_per_sample(&params),
        })
    })?;
    Ok((container, metadata))
}

/// The duration of `track`, from where `container` states it exactly (module docs), else by
/// counting its packets.
fn duration_seconds(
    reader: &mut dyn FormatReader,
    track: &Track,
    params: &AudioCodecParameters,
    container: Container,
) -> Result<Option<f64>, ExtractError> {
    let in_track_time = |ticks: u64| track.time_base.map(|time_base| seconds(ticks, time_base));
    let media_info = *reader.media_info();
    let media_duration = media_info.duration.map(|d| d.get()).zip(media_info.time_base);
    let track_duration = track.duration.map(|d| d.get()).filter(|&d| d > 0);
    let counted = |reader: &mut dyn FormatReader| tally_packets(reader, track.id, container);

    Ok(match container {
        // The movie header's duration is the edit list's: it leaves out AAC's priming samples,
        // as players do, where the track's is the sum of all samples. 0 in fragmented files.
        Container::Mp4 | Container::Mov | Container::ThreeGp => match media_duration {
            Some((duration, movie_time_base)) if duration > 0 => Some(seconds(duration, movie_time_base)),
            _ => in_track_time(match track_duration {
                Some(ticks) => ticks,
                None => counted(reader)?.summed_duration,
            }),
        },
        // Blocks often carry no duration of their own: measure from the first to the last.
        Container::Matroska | Container::WebM => match media_duration {
            Some((duration, segment_time_base)) => Some(seconds(duration, segment_time_base)),
            None => in_track_time(counted(reader)?.span),
        },
        Container::Ogg => {
            // The last page's granule position, counted from 0 (or from where a stream cut out
            // of a longer one starts); without an end-of-stream page, the packets counted.
            let granules = match track_duration {
                Some(end) => end.saturating_sub(u64::try_from(track.start_ts.get()).unwrap_or(0)),
                None => counted(reader)?.summed_duration,
            };
            in_track_time(match params.codec {
                CODEC_ID_OPUS => granules.saturating_sub(opus_pre_skip(params, track)),
                _ => granules,
            })
        }
        // ADTS has no length anywhere; symphonia's figure is a bitrate estimate.
        Container::Adts => in_track_time(counted(reader)?.summed_duration),
        _ => in_track_time(match track_duration {
            Some(ticks) => ticks,
            None => counted(reader)?.summed_duration,
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// The bridge between our source and symphonia
// ---------------------------------------------------------------------------------------------

/// A byte range of the source as symphonia's `MediaSource`, positions relative to its start:
/// symphonia reads the stream it is given from 0 to its end, while an MP3's audio sits between
/// tags we skip.
mod source_range {
    use std::ops::Range;

    use symphonia::core::io::{MediaSource, MediaSourceStream, MediaSourceStreamOptions};

    use super::*;

    struct SourceRange<'a> {
        source: &'a mut dyn ReadSeek,
        start: u64,
        len: u64,
        position: u64,
        /// Whether the source is already at `start + position`, so a read needs no seek.
        in_step: bool,
    }

    impl Read for SourceRange<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let remaining = self.len.saturating_sub(self.position);
            let len = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
            if len == 0 {
                return Ok(0);
            }
            if !self.in_step {
                self.source.seek(SeekFrom::Start(self.start.saturating_add(self.position)))?;
                self.in_step = true;
            }
            let n = self.source.read(&mut buf[..len])?;
            self.position += n as u64;
            Ok(n)
        }
    }

    impl Seek for SourceRange<'_> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            let target = match to {
                SeekFrom::Start(position) => Some(position),
                SeekFrom::End(delta) => self.len.checked_add_signed(delta),
                SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            };
            let target = target.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the file")
            })?;
            self.in_step &= target == self.position;
            self.position = target;
            Ok(self.position)
        }
    }

    impl MediaSource for SourceRange<'_> {
        fn is_seekable(&self) -> bool {
            true
        }

        fn byte_len(&self) -> Option<u64> {
            Some(self.len)
        }
    }

    /// Runs `work` on a symphonia stream over `range` of `source`.
    pub(super) fn run<T>(
        source: &mut dyn ReadSeek,
        range: Range<u64>,
        work: impl FnOnce(MediaSourceStream<'_>) -> Result<T, ExtractError>,
    ) -> Result<T, ExtractError> {
        let len = range.end.saturating_sub(range.start);
        let view = SourceRange { source, start: range.start, len, position: 0, in_step: false };
        work(MediaSourceStream::new(Box::new(view), MediaSourceStreamOptions::default()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::extract::sniff;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/audio/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Runs the audio extractor on `bytes`, sniffed as the dispatcher would.
    fn extract_bytes(bytes: &[u8]) -> Result<Extracted, ExtractError> {
        let format = sniff::sniff(bytes).expect("the test bytes have a known signature");
        extract(&mut Cursor::new(bytes.to_vec()), format)
    }

    fn metadata(bytes: &[u8]) -> AudioMetadata {
        let extracted = extract_bytes(bytes).unwrap_or_else(|e| panic!("extraction failed: {e:?}"));
        let m = extracted.metadata;
        AudioMetadata {
            container: Box::leak(m["container"].as_str().unwrap().to_owned().into_boxed_str()),
            codec: m["codec"].as_str().map(|c| &*Box::leak(c.to_owned().into_boxed_str())),
            duration_seconds: m["duration_seconds"].as_f64(),
            sample_rate: m["sample_rate"].as_u64().map(|v| v as u32),
            channels: m["channels"].as_u64().map(|v| v as u32),
            bits_per_sample: m["bits_per_sample"].as_u64().map(|v| v as u32),
        }
    }

    /// One fixture's expected values: the encoder parameters in fixtures/make.sh, and the
    /// duration the file really holds (see the table in fixtures/README.md).
    struct Expected {
        file: &'static str,
        mime: &'static str,
        container: &'static str,
        codec: &'static str,
        seconds: f64,
        rate: u32,
        channels: u32,
        bits: Option<u32>,
    }

    /// Positional, so that each fixture's row reads as a line of a table.
    #[allow(clippy::too_many_arguments)]
    const fn expected(
        file: &'static str,
        mime: &'static str,
        container: &'static str,
        codec: &'static str,
        seconds: f64,
        rate: u32,
        channels: u32,
        bits: Option<u32>,
    ) -> Expected {
        Expected { file, mime, container, codec, seconds, rate, channels, bits }
    }

    /// MPEG-1 layer III: 1152 samples a frame; MPEG-2 layer III: 576; AAC: 1024.
    const MP3_40_FRAMES: f64 = 40.0 * 1152.0 / 44100.0;

    const FIXTURES: &[Expected] = &[
        expected("wav_pcm_s16le_stereo_44100.wav", "audio/wav", "wav", "pcm_s16le", 1.0, 44100, 2, Some(16)),
        expected("wav_float32_mono_48000.wav", "audio/wav", "wav", "pcm_f32le", 0.5, 48000, 1, Some(32)),
        expected("wav_mulaw_8000_mono.wav", "audio/wav", "wav", "pcm_mulaw", 1.0, 8000, 1, Some(8)),
        expected(
            "wav_extensible_6ch_24bit_8000.wav",
            "audio/wav",
            "wav",
            "pcm_s24le",
            1.0,
            8000,
            6,
            Some(24),
        ),
        expected("rf64_s16le_8000_mono.wav", "audio/wav", "rf64", "pcm_s16le", 1.0, 8000, 1, Some(16)),
        expected("aiff_s16be_22050_mono.aiff", "audio/aiff", "aiff", "pcm_s16be", 1.0, 22050, 1, Some(16)),
        expected("aifc_sowt_22050_mono.aifc", "audio/aiff", "aiff", "pcm_s16le", 1.0, 22050, 1, Some(16)),
        expected("au_s16be_8000_mono.au", "audio/basic", "au", "pcm_s16be", 1.0, 8000, 1, Some(16)),
        // LAME's Info/Xing frame counts; the durations are whole frames, as ffprobe's.
        expected("mp3_cbr_128k.mp3", "audio/mpeg", "mp3", "mp3", MP3_40_FRAMES, 44100, 2, None),
        expected("mp3_id3v2_apic.mp3", "audio/mpeg", "mp3", "mp3", MP3_40_FRAMES, 44100, 1, None),
        expected("mp3_mpeg2_22050.mp3", "audio/mpeg", "mp3", "mp3", 41.0 * 576.0 / 22050.0, 22050, 1, None),
        expected("mp3_vbr_xing.mp3", "audio/mpeg", "mp3", "mp3", 78.0 * 1152.0 / 44100.0, 44100, 1, None),
        // No Xing header: 289 frames counted (ffprobe estimates 4.01 s, exiftool 1.22 s).
        expected("mp3_vbr_no_xing.mp3", "audio/mpeg", "mp3", "mp3", 289.0 * 1152.0 / 44100.0, 44100, 1, None),
        expected("flac_16bit_44100_mono.flac", "audio/flac", "flac", "flac", 1.0, 44100, 1, Some(16)),
        // STREAMINFO says 0 samples: the frames are counted (ffprobe: N/A).
        expected("flac_total_samples_0.flac", "audio/flac", "flac", "flac", 1.0, 44100, 1, Some(16)),
        expected("ogg_vorbis_44100_mono.ogg", "audio/ogg", "ogg", "vorbis", 1.0, 44100, 1, None),
        // 1 s of audio; the last granule (48312) includes the 312-sample pre-skip (ffprobe: 1.0065).
        expected("opus_mono.opus", "audio/ogg", "ogg", "opus", 1.0, 48000, 1, None),
        // The edit list leaves out AAC's 1024 priming samples, as ffprobe does.
        expected("m4a_aac.m4a", "audio/mp4", "mp4", "aac", 1.0, 44100, 1, None),
        expected("m4a_alac.m4a", "audio/mp4", "mp4", "alac", 1.0, 44100, 1, Some(16)),
        // 45 ADTS frames counted (ffprobe's bitrate estimate: 1.044870).
        expected("aac_adts.aac", "audio/aac", "adts", "aac", 45.0 * 1024.0 / 44100.0, 44100, 1, None),
    ];

    #[test]
    fn every_fixture_gives_the_truth_of_the_file() {
        for case in FIXTURES {
            let bytes = fixture(case.file);
            let extracted = extract_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e:?}", case.file));
            assert_eq!(extracted.data_type, DataType::Audio, "{}", case.file);
            assert_eq!(extracted.mime_type, case.mime, "{}", case.file);
            let m = metadata(&bytes);
            assert_eq!(m.container, case.container, "{}", case.file);
            assert_eq!(m.codec, Some(case.codec), "{}", case.file);
            assert_eq!(m.sample_rate, Some(case.rate), "{}", case.file);
            assert_eq!(m.channels, Some(case.channels), "{}", case.file);
            assert_eq!(m.bits_per_sample, case.bits, "{}", case.file);
            let seconds = m.duration_seconds.unwrap_or_else(|| panic!("{}: no duration", case.file));
            assert!(
                (seconds - case.seconds).abs() < 0.001,
                "{}: {seconds} s, expected {} s",
                case.file,
                case.seconds
            );
        }
    }

    /// A source that records which bytes were read, to prove what is skipped.
    struct Recording {
        inner: Cursor<Vec<u8>>,
        read: Vec<std::ops::Range<u64>>,
    }

    impl Read for Recording {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let start = self.inner.position();
            let n = self.inner.read(buf)?;
            self.read.push(start..start + n as u64);
            Ok(n)
        }
    }

    impl Seek for Recording {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    fn bytes_read_by(bytes: Vec<u8>, format: Format) -> Vec<std::ops::Range<u64>> {
        let mut source = Recording { inner: Cursor::new(bytes), read: Vec::new() };
        extract(&mut source, format).expect("extraction succeeds");
        source.read
    }

    #[test]
    fn headers_answer_without_reading_the_audio() {
        for (file, format, most) in [
            ("wav_pcm_s16le_stereo_44100.wav", Format::Wav, 100),
            ("rf64_s16le_8000_mono.wav", Format::Wav, 150),
            ("au_s16be_8000_mono.au", Format::Au, 24),
            ("aifc_sowt_22050_mono.aifc", Format::Aiff, 100),
            ("flac_16bit_44100_mono.flac", Format::Flac, 42),
            ("mp3_vbr_xing.mp3", Format::Mp3, 300),
        ] {
            let bytes = fixture(file);
            let size = bytes.len();
            let total: u64 = bytes_read_by(bytes, format).iter().map(|r| r.end - r.start).sum();
            assert!(total <= most, "{file}: read {total} of {size} bytes");
        }
    }

    #[test]
    fn id3v2_cover_art_is_skipped_not_read() {
        let bytes = fixture("mp3_id3v2_apic.mp3");
        let tag_len = 10 + bytes[6..10].iter().fold(0u64, |size, &b| (size << 7) | u64::from(b));
        assert!(tag_len > 600, "the fixture's tag holds a 631-byte JPEG");
        let read = bytes_read_by(bytes, Format::Mp3);
        assert!(
            read.iter().all(|r| r.end <= 10 || r.start >= tag_len),
            "read inside the ID3v2 tag: {read:?}"
        );
    }

    // ---- hand-built files -----------------------------------------------------------------

    /// A WAV file: `fmt ` (PCM unless `format_tag` says otherwise) and `data` with `data_len`
    /// declared and `samples` bytes present.
    fn wav(format_tag: u16, channels: u16, rate: u32, bits: u16, data_len: u32, samples: usize) -> Vec<u8> {
        let block_align = channels * bits.div_ceil(8);
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&format_tag.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        fmt.extend_from_slice(&block_align.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mut file = b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec();
        file.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        file.extend_from_slice(&fmt);
        file.extend_from_slice(b"data");
        file.extend_from_slice(&data_len.to_le_bytes());
        file.resize(file.len() + samples, 0);
        file
    }

    fn is_corrupt(result: &Result<Extracted, ExtractError>) -> bool {
        matches!(result, Err(ExtractError::Corrupt(_)))
    }

    #[test]
    fn wav_sizes_that_lie_give_the_bytes_that_are_there() {
        // Streamed WAV: data size 0xFFFFFFFF, 8000 bytes of 8 kHz 8-bit mono follow.
        let streamed = wav(1, 1, 8000, 8, u32::MAX, 8000);
        assert_eq!(metadata(&streamed).duration_seconds, Some(1.0));
        // Declares 2 s, holds 0.5 s (a truncated download).
        let truncated = wav(1, 2, 8000, 16, 64_000, 16_000);
        assert_eq!(metadata(&truncated).duration_seconds, Some(0.5));
    }

    #[test]
    fn wav_hostile_headers_are_corrupt() {
        assert!(is_corrupt(&extract_bytes(b"RIFF\x04\0\0\0WAVE")), "no chunks at all");
        assert!(is_corrupt(&extract_bytes(&wav(1, 1, 0, 16, 100, 100))), "sample rate 0");
        assert!(is_corrupt(&extract_bytes(&wav(1, 0, 8000, 16, 100, 100))), "0 channels");
        let mut no_data = wav(1, 1, 8000, 16, 0, 0);
        no_data.truncate(no_data.len() - 8);
        assert!(is_corrupt(&extract_bytes(&no_data)), "no data chunk");
        let mut short_fmt = wav(1, 1, 8000, 16, 0, 0);
        short_fmt[16] = 8; // fmt chunk of 8 bytes
        assert!(is_corrupt(&extract_bytes(&short_fmt)), "fmt shorter than 16 bytes");
        let truncated = &fixture("wav_pcm_s16le_stereo_44100.wav")[..30];
        assert!(is_corrupt(&extract_bytes(truncated)), "ends inside fmt");
    }

    #[test]
    fn wav_pcm_fields_that_disagree_are_corrupt() {
        // The sample rate of wav_rate_3.99e9.wav: byte rate 144,000 says 8,000 Hz × 18 bytes.
        let mut rate = wav(1, 6, 8000, 24, 1800, 1800);
        rate[24..28].copy_from_slice(&3_992_985_408u32.to_le_bytes());
        assert!(is_corrupt(&extract_bytes(&rate)), "byte rate ≠ rate × block align");
        // 53,761 channels in 1-byte frames (wav_channels_53761.wav).
        let mut channels = wav(7, 1, 8000, 8, 800, 800);
        channels[22..24].copy_from_slice(&53_761u16.to_le_bytes());
        assert!(is_corrupt(&extract_bytes(&channels)), "block align contradicts channels");
        // 24-bit samples in 4-byte containers are consistent (ffmpeg names them by the container).
        let mut padded = wav(1, 2, 8000, 24, 800, 800);
        padded[28..32].copy_from_slice(&64_000u32.to_le_bytes());
        padded[32..34].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(metadata(&padded).sample_rate, Some(8000));
        // ADPCM's byte rate is nominal: not checked.
        let mut adpcm = wav(0x11, 1, 22050, 4, 1024, 1024);
        adpcm[28..32].copy_from_slice(&16_000u32.to_le_bytes());
        assert!(!is_corrupt(&extract_bytes(&adpcm)));
    }

    #[test]
    fn rates_and_channel_counts_no_file_has_are_corrupt_whatever_the_container() {
        // Found by bench/mutate.py: a bit flip of au_mulaw_8000_mono.au's rate (offset 16).
        let mut au = fixture("au_mulaw_8000_mono.au");
        au[16..20].copy_from_slice(&536_878_912u32.to_be_bytes());
        assert!(is_corrupt(&extract_bytes(&au)));
        au[16..20].copy_from_slice(&768_000u32.to_be_bytes());
        assert_eq!(metadata(&au).sample_rate, Some(768_000));
        // Channels (offset 20): 1,048,576 from a huge length field; 256 is the most allowed.
        au[20..24].copy_from_slice(&1_048_576u32.to_be_bytes());
        assert!(is_corrupt(&extract_bytes(&au)));
        au[20..24].copy_from_slice(&256u32.to_be_bytes());
        assert!(!is_corrupt(&extract_bytes(&au)));
    }

    #[test]
    fn wav_compressed_without_fact_has_no_duration_rather_than_a_guess() {
        let gsm = wav(0x31, 1, 8000, 0, 650, 650);
        let m = metadata(&gsm);
        assert_eq!((m.codec, m.duration_seconds, m.bits_per_sample), (Some("gsm_ms"), None, None));
    }

    #[test]
    fn wave_format_tags_name_codecs_for_wav_and_avi_alike() {
        use wave_format::{WaveFormat, codec, subformat_tag};
        let format = |format_tag, channels, block_align, bits_per_sample| WaveFormat {
            format_tag,
            channels,
            sample_rate: 8000,
            block_align,
            bits_per_sample,
            frames_per_block: None,
        };
        assert_eq!(codec(&format(1, 2, 6, 20)), (Some("pcm_s24le"), Some(20)), "20 bits in 3 bytes");
        assert_eq!(codec(&format(3, 1, 8, 64)), (Some("pcm_f64le"), Some(64)));
        assert_eq!(codec(&format(7, 1, 1, 8)), (Some("pcm_mulaw"), Some(8)));
        assert_eq!(codec(&format(0x0161, 2, 4096, 0)), (Some("wmav2"), None));
        assert_eq!(codec(&format(0x00ff, 2, 0, 0)), (Some("aac"), None));
        assert_eq!(codec(&format(1, 1, 5, 40)), (None, None), "no 40-bit PCM codec");
        assert_eq!(codec(&format(1, 0, 0, 0)), (None, None), "no channels and no bits: no size");
        assert_eq!(codec(&format(0x1234, 1, 1, 8)), (None, None), "a tag ffmpeg does not know");
        // KSDATAFORMAT_SUBTYPE_IEEE_FLOAT, then a vendor GUID, then one cut short.
        let float_guid = [3, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];
        assert_eq!(subformat_tag(&float_guid), Some(3));
        let mut vendor_guid = float_guid;
        vendor_guid[15] = 0x72;
        assert_eq!(subformat_tag(&vendor_guid), None);
        assert_eq!(subformat_tag(&float_guid[..15]), None);
    }

    #[test]
    fn rf64_takes_the_data_size_from_ds64() {
        // RF64 with ds64 saying 16000 data bytes; the data chunk's own size is 0xFFFFFFFF.
        let mut file = b"RF64\xff\xff\xff\xffWAVEds64\x1c\0\0\0".to_vec();
        file.extend_from_slice(&0u64.to_le_bytes()); // riff size (unused)
        file.extend_from_slice(&16_000u64.to_le_bytes());
        file.extend_from_slice(&8_000u64.to_le_bytes()); // sample count
        file.extend_from_slice(&0u32.to_le_bytes()); // table length
        let pcm = wav(1, 1, 8000, 16, u32::MAX, 20_000);
        file.extend_from_slice(&pcm[12..]); // fmt + data chunks of the RIFF version
        let m = metadata(&file);
        assert_eq!((m.container, m.duration_seconds), ("rf64", Some(1.0)));
    }

    /// An AIFF file (or AIFF-C with `compression`): COMM declaring `frames`, then SSND with
    /// `sound` bytes present.
    fn aiff(
        compression: Option<&[u8; 4]>,
        channels: u16,
        frames: u32,
        bits: u16,
        rate: [u8; 10],
        sound: usize,
    ) -> Vec<u8> {
        let mut comm = Vec::new();
        comm.extend_from_slice(&channels.to_be_bytes());
        comm.extend_from_slice(&frames.to_be_bytes());
        comm.extend_from_slice(&bits.to_be_bytes());
        comm.extend_from_slice(&rate);
        if let Some(compression) = compression {
            comm.extend_from_slice(compression);
            comm.extend_from_slice(b"\0\0"); // empty Pascal-string name, padded
        }
        let mut file = b"FORM\0\0\0\0".to_vec();
        file.extend_from_slice(if compression.is_some() { b"AIFC" } else { b"AIFF" });
        file.extend_from_slice(b"COMM");
        file.extend_from_slice(&(comm.len() as u32).to_be_bytes());
        file.extend_from_slice(&comm);
        file.extend_from_slice(b"SSND");
        file.extend_from_slice(
            &(8 + frames * u32::from(channels) * u32::from(bits.div_ceil(8))).to_be_bytes(),
        );
        file.extend_from_slice(&[0; 8]); // offset, block size
        file.resize(file.len() + sound, 0);
        file
    }

    /// 8000 as an 80-bit extended float: 1.953125 × 2^12.
    const RATE_8000: [u8; 10] = [0x40, 0x0b, 0xfa, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn aiff_extended_float_sample_rates() {
        use aiff::extended_to_u32;
        assert_eq!(extended_to_u32(&RATE_8000), Some(8000));
        assert_eq!(extended_to_u32(&[0x40, 0x0e, 0xac, 0x44, 0, 0, 0, 0, 0, 0]), Some(44100));
        assert_eq!(extended_to_u32(&[0x40, 0x0d, 0xac, 0x44, 0, 0, 0, 0, 0, 0]), Some(22050));
        assert_eq!(extended_to_u32(&[0; 10]), None, "0 Hz");
        assert_eq!(extended_to_u32(&[0xc0, 0x0b, 0xfa, 0, 0, 0, 0, 0, 0, 0]), None, "-8000 Hz");
        assert_eq!(
            extended_to_u32(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None,
            "NaN"
        );
        assert_eq!(extended_to_u32(&[0x40, 0x3e, 0x80, 0, 0, 0, 0, 0, 0, 0]), None, "2^63 Hz");
    }

    #[test]
    fn aiff_frame_count_and_compression_types() {
        let plain = metadata(&aiff(None, 2, 8000, 16, RATE_8000, 32_000));
        assert_eq!(
            (plain.codec, plain.channels, plain.duration_seconds),
            (Some("pcm_s16be"), Some(2), Some(1.0))
        );
        let float = metadata(&aiff(Some(b"fl32"), 1, 4000, 32, RATE_8000, 16_000));
        assert_eq!(
            (float.codec, float.bits_per_sample, float.duration_seconds),
            (Some("pcm_f32be"), Some(32), Some(0.5))
        );
        let ulaw = metadata(&aiff(Some(b"ulaw"), 1, 8000, 16, RATE_8000, 8000));
        assert_eq!(
            (ulaw.codec, ulaw.bits_per_sample, ulaw.duration_seconds),
            (Some("pcm_mulaw"), Some(8), Some(1.0))
        );
        // COMM says 1 s, the file was cut after 0.25 s of samples.
        let truncated = metadata(&aiff(None, 1, 8000, 16, RATE_8000, 4000));
        assert_eq!(truncated.duration_seconds, Some(0.25));
    }

    #[test]
    fn aiff_hostile_headers_are_corrupt() {
        assert!(is_corrupt(&extract_bytes(&aiff(None, 0, 8000, 16, RATE_8000, 100))), "0 channels");
        assert!(is_corrupt(&extract_bytes(&aiff(None, 0xffff, 8000, 16, RATE_8000, 100))), "-1 channels");
        assert!(is_corrupt(&extract_bytes(&aiff(None, 1, 8000, 16, [0; 10], 100))), "0 Hz");
        // 20000 channels of 32-bit samples overflow a u16 frame size in symphonia's reader;
        // read without overflow, they are beyond what any production has (256).
        assert!(is_corrupt(&extract_bytes(&aiff(None, 20_000, 1, 32, RATE_8000, 80_000))), "20000 channels");
        let wide = metadata(&aiff(None, 256, 1, 32, RATE_8000, 80_000));
        assert_eq!(wide.duration_seconds, Some(1.0 / 8000.0));
        let mut no_comm = aiff(None, 1, 8000, 16, RATE_8000, 100);
        no_comm[12..16].copy_from_slice(b"JUNK");
        assert!(is_corrupt(&extract_bytes(&no_comm)), "no COMM chunk");
        assert!(is_corrupt(&extract_bytes(b"FORM\0\0\0\x04AIFFCOMM\0\0\0\x12\0\x01")), "COMM cut short");
    }

    fn au(encoding: u32, rate: u32, channels: u32, data_len: u32, samples: usize) -> Vec<u8> {
        let mut file = b".snd".to_vec();
        for field in [24, data_len, encoding, rate, channels] {
            file.extend_from_slice(&field.to_be_bytes());
        }
        file.resize(24 + samples, 0);
        file
    }

    #[test]
    fn au_encodings_and_unknown_sizes() {
        let mulaw = metadata(&au(1, 8000, 1, u32::MAX, 4000));
        assert_eq!(
            (mulaw.codec, mulaw.bits_per_sample, mulaw.duration_seconds),
            (Some("pcm_mulaw"), Some(8), Some(0.5))
        );
        let alaw = metadata(&au(27, 8000, 2, 16_000, 16_000));
        assert_eq!((alaw.codec, alaw.duration_seconds), (Some("pcm_alaw"), Some(1.0)));
        let float = metadata(&au(6, 1000, 1, 400, 400));
        assert_eq!(
            (float.codec, float.bits_per_sample, float.duration_seconds),
            (Some("pcm_f32be"), Some(32), Some(0.1))
        );
    }

    #[test]
    fn au_hostile_headers_are_corrupt_or_unsupported() {
        assert!(is_corrupt(&extract_bytes(b".snd\0\0\0\x18\0\0")), "truncated header");
        assert!(is_corrupt(&extract_bytes(&au(3, 0, 1, 100, 100))), "sample rate 0");
        assert!(is_corrupt(&extract_bytes(&au(3, 8000, 0, 100, 100))), "0 channels");
        let mut inside_header = au(3, 8000, 1, 100, 100);
        inside_header[7] = 8; // data offset 8
        assert!(is_corrupt(&extract_bytes(&inside_header)), "data offset inside the header");
        assert!(
            matches!(extract_bytes(&au(23, 8000, 1, 100, 100)), Err(ExtractError::Unsupported(_))),
            "G.721"
        );
    }

    /// An MPEG-1 layer III frame (128 kbit/s, 44.1 kHz, mono, 417 bytes), silent, with an
    /// optional Xing header (frames, bytes) where LAME puts it.
    fn mp3_frame(xing: Option<(u32, u32)>) -> Vec<u8> {
        let mut frame = vec![0u8; 417];
        frame[..4].copy_from_slice(&[0xff, 0xfb, 0x90, 0xc4]);
        if let Some((frames, bytes)) = xing {
            frame[21..25].copy_from_slice(b"Xing");
            frame[25..29].copy_from_slice(&3u32.to_be_bytes()); // frames and bytes present
            frame[29..33].copy_from_slice(&frames.to_be_bytes());
            frame[33..37].copy_from_slice(&bytes.to_be_bytes());
        }
        frame
    }

    fn mp3(xing: Option<(u32, u32)>, audio_frames: usize) -> Vec<u8> {
        let mut file = mp3_frame(xing);
        (0..audio_frames).for_each(|_| file.extend(mp3_frame(None)));
        file
    }

    #[test]
    fn mp3_xing_frame_count_is_used_when_it_fits_the_file() {
        let six = 6.0 * 1152.0 / 44100.0;
        let honest = mp3(Some((6, 7 * 417)), 6);
        assert!((metadata(&honest).duration_seconds.unwrap() - six).abs() < 1e-6);
        // A Xing header claiming 4 billion frames in 3 KB: the frames are counted instead.
        let lying = mp3(Some((4_000_000_000, 7 * 417)), 6);
        assert!((metadata(&lying).duration_seconds.unwrap() - six).abs() < 1e-6);
        // Written for 100 frames, then cut to 6: counted.
        let truncated = mp3(Some((100, 101 * 417)), 6);
        assert!((metadata(&truncated).duration_seconds.unwrap() - six).abs() < 1e-6);
    }

    #[test]
    fn mp3_tags_at_both_ends_are_not_frames() {
        let mut file = b"ID3\x03\0\0\0\0\x10\0".to_vec(); // ID3v2.3, 2048 bytes of tag
        file.resize(10 + 2048, 0xff); // sync-like bytes that must not be taken for frames
        file.extend(mp3(None, 4));
        file.extend_from_slice(b"TAG");
        file.resize(file.len() + 125, b'x');
        let m = metadata(&file);
        assert!((m.duration_seconds.unwrap() - 5.0 * 1152.0 / 44100.0).abs() < 1e-6, "{m:?}");
    }

    #[test]
    fn mp3_hostile_inputs_are_errors_not_panics() {
        let mp3_bytes = |bytes: &[u8]| extract(&mut Cursor::new(bytes.to_vec()), Format::Mp3);
        // An ID3v2 tag whose size points past the end of the file: nothing is left.
        let r = mp3_bytes(b"ID3\x04\0\0\x7f\x7f\x7f\x7f\xff\xfb\x90\xc4");
        assert!(is_corrupt(&r), "{r:?}");
        // One frame header, then bytes that never sync again.
        let r = mp3_bytes(&[&[0xff, 0xfb, 0x90, 0xc4][..], &[0x55; 3000]].concat());
        assert!(is_corrupt(&r), "{r:?}");
        // A Xing frame claiming 0 frames and no audio frames after it: 0 s, not a guess.
        let empty = mp3_bytes(&mp3(Some((0, 417)), 0)).expect("an empty stream is still MP3");
        assert_eq!(empty.metadata["duration_seconds"], 0.0);
    }

    #[test]
    fn frame_count_headers() {
        use crate::extract::mpeg_audio::frame_header;
        use mpeg_audio::{FrameCountHeader, header_fits};
        let frame_count_header = |frame: &[u8]| mpeg_audio::frame_count_header(frame, &frame_header(frame)?);
        let xing = frame_count_header(&mp3_frame(Some((40, 17135)))).unwrap();
        assert_eq!(xing, FrameCountHeader { frames: 40, bytes: Some(17135) });
        assert!(header_fits(&xing, 17135));
        assert!(!header_fits(&xing, 12000), "truncated");
        assert!(!header_fits(&xing, 40_000), "grown");
        assert_eq!(frame_count_header(&mp3_frame(None)), None);
        let mut vbri = mp3_frame(None);
        vbri[36..40].copy_from_slice(b"VBRI");
        vbri[46..50].copy_from_slice(&5000u32.to_be_bytes());
        vbri[50..54].copy_from_slice(&12u32.to_be_bytes());
        assert_eq!(frame_count_header(&vbri).map(|h| (h.frames, h.bytes)), Some((12, Some(5000))));
    }

    #[test]
    fn flac_hostile_streaminfo_is_an_error() {
        let good = fixture("flac_16bit_44100_mono.flac");
        // STREAMINFO sample rate (20 bits at byte 18) set to 0.
        let mut rate_0 = good.clone();
        rate_0[18] = 0;
        rate_0[19] = 0;
        rate_0[20] &= 0x0f;
        let result = extract_bytes(&rate_0);
        assert!(matches!(result, Err(ExtractError::Corrupt(_) | ExtractError::Unsupported(_))), "{result:?}");
        // STREAMINFO block shorter than its 34 bytes.
        let mut short = good[..8].to_vec();
        short[7] = 10;
        assert!(is_corrupt(&extract_bytes(&short)));
        assert!(is_corrupt(&extract_bytes(b"fLaC")));
    }

    /// Every fixture cut at several lengths: an error or a shorter answer, never a panic
    /// (a panic inside symphonia would surface as "the audio demuxer failed").
    #[test]
    fn truncated_fixtures_fail_cleanly() {
        for case in FIXTURES {
            let bytes = fixture(case.file);
            for cut in [4, 12, 24, 44, 100, 1000, bytes.len() / 2, bytes.len() - 1] {
                let Some(head) = bytes.get(..cut) else { continue };
                let Some(format) = sniff::sniff(head) else { continue };
                match extract(&mut Cursor::new(head.to_vec()), format) {
                    Err(ExtractError::Corrupt(why)) if why.contains("demuxer failed") => {
                        panic!("{} cut at {cut}: symphonia panicked: {why}", case.file)
                    }
                    Ok(_) | Err(ExtractError::Corrupt(_) | ExtractError::Unsupported(_)) => {}
                    Err(other) => panic!("{} cut at {cut}: {other:?}", case.file),
                }
            }
        }
    }

    #[test]
    fn caf_from_a_hand_built_file() {
        // CAF: 'desc' (lpcm, 16-bit little-endian, 8 kHz mono) then 'data' with 8000 frames.
        let mut file = b"caff\0\x01\0\0desc".to_vec();
        file.extend_from_slice(&32u64.to_be_bytes());
        file.extend_from_slice(&8000f64.to_be_bytes());
        file.extend_from_slice(b"lpcm");
        for field in [2u32 /* little-endian */, 2, 1, 1, 16] {
            file.extend_from_slice(&field.to_be_bytes());
        }
        file.extend_from_slice(b"data");
        file.extend_from_slice(&(4u64 + 16_000).to_be_bytes());
        file.resize(file.len() + 4 + 16_000, 0);
        let m = metadata(&file);
        assert_eq!(m.container, "caf");
        assert_eq!(
            (m.codec, m.sample_rate, m.channels, m.bits_per_sample),
            (Some("pcm_s16le"), Some(8000), Some(1), Some(16))
        );
        assert_eq!(m.duration_seconds, Some(1.0));
    }

    #[test]
    fn ebml_doc_type_names_webm_and_matroska() {
        // EBML header: EBMLVersion 1, DocType "webm".
        let webm = b"\x1a\x45\xdf\xa3\x8b\x42\x86\x81\x01\x42\x82\x84webm";
        assert_eq!(ebml_doc_type(webm), Some(&b"webm"[..]));
        let mkv = b"\x1a\x45\xdf\xa3\x8b\x42\x82\x88matroska";
        assert_eq!(ebml_doc_type(mkv), Some(&b"matroska"[..]));
        // The same header with its size written in 8 bytes.
        let long_size = b"\x1a\x45\xdf\xa3\x01\0\0\0\0\0\0\x0b\x42\x86\x81\x01\x42\x82\x84webm";
        assert_eq!(ebml_doc_type(long_size), Some(&b"webm"[..]));
        assert_eq!(ebml_doc_type(b"\x1a\x45\xdf\xa3\xff"), None);
        assert_eq!(ebml_doc_type(b"\x1a\x45\xdf\xa3\x00\x00"), None);
    }

    #[test]
    fn alac_cookie_bit_depth_with_and_without_atom_wrappers() {
        let mut cookie = vec![0u8; 24];
        cookie[5] = 24;
        assert_eq!(alac_bit_depth(&cookie), Some(24));
        let mut wrapped = b"\0\0\0\x0cfrmaalac\0\0\0\x24alac\0\0\0\0".to_vec();
        wrapped.extend_from_slice(&cookie);
        assert_eq!(alac_bit_depth(&wrapped), Some(24));
        assert_eq!(alac_bit_depth(&[0; 3]), None);
    }
}
