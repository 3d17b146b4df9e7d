//! Frame headers of MPEG audio (MP1, MP2, MP3) and of ADTS (AAC), parsed in one place for the
//! three readers that meet them: the sniffer (two frames in a row make a raw MP3 or AAC file),
//! the audio extractor (an MP3's sample rate, channels and Xing header) and the transport-stream
//! reader (samples per frame, to place the end of a stream's last frame).
//!
//! A header is four (MPEG) or seven (ADTS) bytes of bit fields; nothing here reads a source.

/// What a 4-byte MPEG audio frame header says (ISO/IEC 11172-3 §2.4.1.3; 13818-3 §2.4.2.3 for
/// the lower MPEG-2 sample rates, and the unofficial MPEG-2.5 below those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FrameHeader {
    /// 1, 2 or 3, as the standard numbers the layers.
    pub(super) layer: u8,
    /// ffprobe's name for the layer's codec: `mp1`, `mp2` or `mp3`.
    pub(super) codec: &'static str,
    pub(super) sample_rate: u32,
    pub(super) channels: u32,
    pub(super) samples_per_frame: u32,
    /// The frame's length in bytes, header and padding included; `None` for a free-format
    /// stream (bitrate index 0), whose frames only the next sync word delimits.
    pub(super) frame_len: Option<usize>,
    /// Where a Xing/Info header starts: after the 4-byte header and the side information.
    pub(super) xing_offset: usize,
}

/// Bit rates in kbit/s by bitrate index (0: free format); the row depends on version and layer.
const MPEG1_LAYER1_KBPS: [u32; 15] = [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448];
const MPEG1_LAYER2_KBPS: [u32; 15] = [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384];
const MPEG1_LAYER3_KBPS: [u32; 15] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const MPEG2_LAYER1_KBPS: [u32; 15] = [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256];
/// MPEG-2 and MPEG-2.5 share one table for layers II and III.
const MPEG2_LAYER23_KBPS: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];

/// Parses the MPEG audio frame header at the start of `bytes`; `None` when there is no sync
/// word or a field holds a reserved value (version 01, layer 00, bitrate index 15, sample
/// rate index 3), which is what tells a header from noise that starts with `0xFF`.
pub(super) fn frame_header(bytes: &[u8]) -> Option<FrameHeader> {
    let h = bytes.get(..4)?;
    if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = (h[1] >> 3) & 3; // 0: MPEG-2.5, 1: reserved, 2: MPEG-2, 3: MPEG-1
    let layer_bits = (h[1] >> 1) & 3; // 0: reserved, 1: III, 2: II, 3: I
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 3);
    if version == 1 || layer_bits == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    let layer = 4 - layer_bits;
    let mpeg1 = version == 3;
    let mono = h[3] >> 6 == 3;
    let padded = h[2] & 2 != 0;
    // MPEG-2 halves MPEG-1's sample rates, MPEG-2.5 quarters them.
    let sample_rate = [44_100, 48_000, 32_000][rate_index] >> (3 - u32::from(version.max(1)));
    let (codec, samples_per_frame, kbps_table) = match (layer, mpeg1) {
        (1, true) => ("mp1", 384, MPEG1_LAYER1_KBPS),
        (1, false) => ("mp1", 384, MPEG2_LAYER1_KBPS),
        (2, true) => ("mp2", 1152, MPEG1_LAYER2_KBPS),
        (2, false) => ("mp2", 1152, MPEG2_LAYER23_KBPS),
        (_, true) => ("mp3", 1152, MPEG1_LAYER3_KBPS),
        (_, false) => ("mp3", 576, MPEG2_LAYER23_KBPS),
    };
    let bits_per_second = kbps_table[bitrate_index] * 1000;
    let frame_len = (bits_per_second > 0).then(|| {
        // Layer I counts in 4-byte slots (its padding is one slot); layers II and III in bytes.
        let len = if layer == 1 {
            (12 * bits_per_second / sample_rate + u32::from(padded)) * 4
        } else {
            samples_per_frame / 8 * bits_per_second / sample_rate + u32::from(padded)
        };
        len as usize
    });
    let side_info = match (mpeg1, mono) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    Some(FrameHeader {
        layer,
        codec,
        sample_rate,
        channels: if mono { 1 } else { 2 },
        samples_per_frame,
        frame_len,
        xing_offset: 4 + side_info,
    })
}

/// What a 7-byte ADTS header says (ISO/IEC 14496-3 §1.A.2.2, `adts_fixed_header` and
/// `adts_variable_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AdtsHeader {
    /// `aac_frame_length` as written, header included: a frame shorter than its 7-byte header
    /// is not one, which the caller that walks frames checks.
    pub(super) frame_len: usize,
    /// `None` for the reserved sampling frequency indexes 13 to 15.
    pub(super) sample_rate: Option<u32>,
    /// 1024 samples for each of the frame's one to four raw data blocks.
    pub(super) samples_per_frame: u32,
}

/// Sampling frequencies by `sampling_frequency_index`.
const ADTS_SAMPLE_RATES: [u32; 13] =
    [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];

/// Parses the ADTS header at the start of `bytes`: a 12-bit sync word and layer `00`, which no
/// MPEG audio header has, so the two parsers never both accept the same bytes.
pub(super) fn adts_header(bytes: &[u8]) -> Option<AdtsHeader> {
    let h = bytes.get(..7)?;
    if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
        return None;
    }
    let sample_rate = ADTS_SAMPLE_RATES.get(usize::from((h[2] >> 2) & 0x0f)).copied();
    // The frame length is 13 bits spanning bytes 3 to 5.
    let frame_len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let raw_data_blocks = u32::from(h[6] & 3) + 1;
    Some(AdtsHeader { frame_len, sample_rate, samples_per_frame: 1024 * raw_data_blocks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpeg_frame_headers_of_every_version() {
        let mpeg1 = frame_header(&[0xff, 0xfb, 0x90, 0x64]).unwrap();
        assert_eq!(
            (mpeg1.codec, mpeg1.sample_rate, mpeg1.channels, mpeg1.samples_per_frame),
            ("mp3", 44100, 2, 1152)
        );
        let mpeg2 = frame_header(&[0xff, 0xf3, 0x84, 0xc4]).unwrap();
        assert_eq!((mpeg2.sample_rate, mpeg2.channels, mpeg2.samples_per_frame), (24000, 1, 576));
        let mpeg25 = frame_header(&[0xff, 0xe3, 0x80, 0xc4]).unwrap();
        assert_eq!((mpeg25.sample_rate, mpeg25.samples_per_frame), (11025, 576));
        let layer2 = frame_header(&[0xff, 0xfd, 0x90, 0x04]).unwrap();
        assert_eq!((layer2.layer, layer2.codec, layer2.samples_per_frame), (2, "mp2", 1152));
        let layer1 = frame_header(&[0xff, 0xff, 0x90, 0x04]).unwrap();
        assert_eq!((layer1.layer, layer1.codec, layer1.samples_per_frame), (1, "mp1", 384));
        assert_eq!(frame_header(&[0xff, 0xeb, 0x90, 0xc4]), None, "reserved version");
        assert_eq!(frame_header(&[0xff, 0xf9, 0x90, 0xc4]), None, "reserved layer");
        assert_eq!(frame_header(&[0xff, 0xfb, 0xf0, 0xc4]), None, "bitrate index 15");
        assert_eq!(frame_header(&[0xff, 0xfb, 0x9c, 0xc4]), None, "sample rate index 3");
        assert_eq!(frame_header(&[0xff, 0xfb, 0x90]), None, "cut short");
    }

    #[test]
    fn mpeg_frame_lengths_by_layer_and_version() {
        let len = |h: [u8; 4]| frame_header(&h).and_then(|header| header.frame_len);
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz: 417 bytes, 418 padded.
        assert_eq!(len([0xff, 0xfb, 0x90, 0x00]), Some(417));
        assert_eq!(len([0xff, 0xfb, 0x92, 0x00]), Some(418));
        // MPEG-2 layer III, 64 kbit/s, 22.05 kHz: 72 × 64000 / 22050.
        assert_eq!(len([0xff, 0xf3, 0x80, 0x00]), Some(208));
        // MPEG-1 layer II, 192 kbit/s, 48 kHz: 576 bytes.
        assert_eq!(len([0xff, 0xfd, 0xa4, 0x00]), Some(576));
        // MPEG-1 layer I, 384 kbit/s, 44.1 kHz: 104 slots of 4 bytes, 105 padded.
        assert_eq!(len([0xff, 0xff, 0xc0, 0x00]), Some(416));
        assert_eq!(len([0xff, 0xff, 0xc2, 0x00]), Some(420));
        // Free format: the header does not know.
        assert_eq!(frame_header(&[0xff, 0xfb, 0x00, 0x00]).map(|h| h.frame_len), Some(None));
    }

    #[test]
    fn adts_headers() {
        // 48 kHz (index 3), one raw data block, an 8-byte frame: the header and one byte.
        let header = adts_header(&[0xff, 0xf1, 0x4c, 0x80, 0x01, 0x1f, 0xfc]).unwrap();
        assert_eq!(header, AdtsHeader { frame_len: 8, sample_rate: Some(48_000), samples_per_frame: 1024 });
        // Four raw data blocks at 44.1 kHz, a 371-byte frame.
        let four = adts_header(&[0xff, 0xf1, 0x50, 0x80, 0x2e, 0x7f, 0xff]).unwrap();
        assert_eq!((four.frame_len, four.sample_rate, four.samples_per_frame), (371, Some(44_100), 4096));
        // A reserved sampling frequency index parses, with no rate.
        assert_eq!(
            adts_header(&[0xff, 0xf1, 0x74, 0x80, 0x01, 0x1f, 0xfc]).map(|h| h.sample_rate),
            Some(None)
        );
        assert_eq!(adts_header(&[0xff, 0xfb, 0x90, 0x00, 0, 0, 0]), None, "an MPEG audio header");
        assert_eq!(adts_header(&[0xff, 0xf1, 0x4c, 0x80, 0x01, 0x1f]), None, "cut short");
        assert_eq!(frame_header(&[0xff, 0xf1, 0x4c, 0x80]), None, "ADTS is not MPEG audio");
    }
}
