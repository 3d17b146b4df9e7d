//! Text metadata (DESIGN §3 `text`): which encoding, and how many characters, lines and words.
//!
//! Encodings are Firefox's: byte-order marks first, then UTF-16 without a BOM by the telltale
//! zero bytes of ASCII-range text, then UTF-8, then `chardetng`, which guesses the legacy
//! encoding of text that is not UTF-8. Memory stays flat for any file size (chunks).
//!
//! UTF-8, what nearly all text is, is read once: std's validator splits each chunk into valid
//! text, counted byte by byte (ASCII without decoding), and invalid bytes, counted. Text whose
//! invalid bytes are a few among many valid multi-byte characters is UTF-8 with a damaged spot
//! (a truncated write, a bad concatenation), reported as `utf-8` with `invalid_bytes`; text
//! with more of them is read again with chardetng's guess and decoded by `encoding_rs`.

use std::io::SeekFrom;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{DecoderResult, Encoding, UTF_8, UTF_16BE, UTF_16LE};
use serde::Serialize;

use super::{ExtractError, Extracted, ReadSeek};
use crate::job::DataType;

/// Bytes read and decoded at a time.
const CHUNK: usize = 64 * 1024;

/// Above this share of control characters (or undecodable bytes) the data is binary.
const MAX_CONTROL_PER_MILLE: u64 = 10;

/// Text is UTF-8 with damaged spots, rather than a legacy encoding, when its valid multi-byte
/// characters outnumber its invalid bytes this many times: in Latin-1 or windows-125x text
/// every accented letter is an invalid byte, and valid UTF-8 sequences occur only by accident.
const VALID_MULTIBYTE_PER_INVALID_BYTE: u64 = 4;

/// The `metadata` of a text file.
#[derive(Debug, Serialize)]
pub struct TextMetadata {
    /// WHATWG encoding label, lower-case: `utf-8`, `utf-16le`, `windows-1252`, …
    pub encoding: String,
    pub has_bom: bool,
    /// Unicode code points, the BOM excluded.
    pub char_count: u64,
    /// Lines as an editor shows them: each terminator ends one, and text after the last
    /// terminator is one more (`wc -l` would miss it); an empty file has none.
    pub line_count: u64,
    /// Runs of non-whitespace characters (Unicode whitespace), as `wc -w` counts them.
    pub word_count: u64,
    pub line_ending: LineEnding,
    /// Bytes that are not valid UTF-8 in text otherwise UTF-8 (each counts as one U+FFFD
    /// character); absent when there are none, and for other encodings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_bytes: Option<u64>,
}

/// Which line terminators the file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineEnding {
    Lf,
    Crlf,
    Cr,
    Mixed,
    None,
}

/// Whether a character that starts with `lead` (above ASCII) may be whitespace or a control:
/// the only such characters are U+0080–U+00A0 (lead 0xC2: C1 controls, NEL, no-break space),
/// U+1680 (0xE1), U+2000–U+205F (0xE2: spaces, separators) and U+3000 (0xE3). Every other
/// character is a letter, digit, mark or symbol of a word, counted without decoding it.
fn may_be_space_or_control(lead: u8) -> bool {
    matches!(lead, 0xC2 | 0xE1 | 0xE2 | 0xE3)
}

/// Whether the first bytes of a file look like text in an encoding we read. Decides between
/// "text" and "unsupported" for files no magic number claimed.
pub fn looks_like_text(head: &[u8]) -> bool {
    let encoding = match encoding_from_bom(head).or_else(|| utf16_without_bom(head)) {
        Some((encoding, _)) => encoding,
        None if head.contains(&0) => return false,
        None => {
            let mut counter = TextCounter::default();
            // `last = false`: a character cut off at the end of the head is not an error.
            counter.push_utf8(head, false);
            if counter.is_mostly_utf8() {
                return !counter.is_binary();
            }
            let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
            detector.feed(head, false);
            detector.guess(None, Utf8Detection::Allow)
        }
    };
    let mut counter = TextCounter::default();
    let mut decoder = encoding.new_decoder_with_bom_removal();
    let mut out = String::with_capacity(head.len() * 3 + 16);
    // `last = false`: a character cut off at the end of the head is not an error.
    decode_chunk(&mut decoder, head, false, &mut out, &mut counter);
    counter.push(&out);
    !counter.is_binary()
}

/// Extracts encoding, counts and line endings. UTF-8 is read once; other text twice: once to
/// detect the encoding from all of it (a Latin-1 letter may first appear on the last line),
/// once to count.
pub fn extract(source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    let mut head = [0u8; 4096];
    source.seek(SeekFrom::Start(0))?;
    let n = read_full(source, &mut head)?;
    let marked = encoding_from_bom(&head[..n]).or_else(|| utf16_without_bom(&head[..n]));
    let (encoding, bom_len, counter) = match marked {
        Some((encoding, bom_len)) if encoding == UTF_8 => (UTF_8, bom_len, count_utf8(source, bom_len)?),
        Some((encoding, bom_len)) => (encoding, bom_len, count_decoded(source, encoding, bom_len)?),
        None => {
            let counter = count_utf8(source, 0)?;
            if counter.is_mostly_utf8() {
                (UTF_8, 0, counter)
            } else {
                let encoding = guess_legacy_encoding(source)?;
                (encoding, 0, count_decoded(source, encoding, 0)?)
            }
        }
    };
    if counter.is_binary() {
        return Err(ExtractError::Unsupported(format!(
            "binary data, not text: {} of {} characters are control characters or undecodable as {}",
            counter.control_count,
            counter.chars,
            encoding.name()
        )));
    }
    let metadata = counter.finish(encoding, bom_len > 0);
    Ok(Extracted::new(DataType::Text, "text/plain", metadata))
}

/// Counts the source from `start` as UTF-8: valid text through the fast counter, each invalid
/// byte as one malformed character.
fn count_utf8(source: &mut dyn ReadSeek, start: usize) -> Result<TextCounter, ExtractError> {
    source.seek(SeekFrom::Start(start as u64))?;
    let mut counter = TextCounter::default();
    let mut bytes = vec![0u8; CHUNK];
    // A character cut by the chunk's end is carried into the next chunk.
    let mut carried = 0;
    loop {
        let n = read_full(source, &mut bytes[carried..])?;
        let end = carried + n;
        let counted = counter.push_utf8(&bytes[..end], n == 0);
        if n == 0 {
            return Ok(counter);
        }
        bytes.copy_within(counted..end, 0);
        carried = end - counted;
    }
}

/// Decodes the source from `start` with `encoding` and counts what it decodes to.
fn count_decoded(
    source: &mut dyn ReadSeek,
    encoding: &'static Encoding,
    start: usize,
) -> Result<TextCounter, ExtractError> {
    source.seek(SeekFrom::Start(start as u64))?;
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut counter = TextCounter::default();
    let mut bytes = vec![0u8; CHUNK];
    let mut text = String::with_capacity(CHUNK * 3 + 16);
    loop {
        let n = read_full(source, &mut bytes)?;
        text.clear();
        decode_chunk(&mut decoder, &bytes[..n], n == 0, &mut text, &mut counter);
        counter.push(&text);
        if n == 0 {
            return Ok(counter);
        }
    }
}

/// chardetng's guess over the whole source, for text that is not UTF-8.
fn guess_legacy_encoding(source: &mut dyn ReadSeek) -> Result<&'static Encoding, ExtractError> {
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    source.seek(SeekFrom::Start(0))?;
    let mut bytes = vec![0u8; CHUNK];
    loop {
        let n = read_full(source, &mut bytes)?;
        detector.feed(&bytes[..n], n == 0);
        if n == 0 {
            return Ok(detector.guess(None, Utf8Detection::Allow));
        }
    }
}

fn encoding_from_bom(head: &[u8]) -> Option<(&'static Encoding, usize)> {
    Encoding::for_bom(head)
}

/// UTF-16 without a BOM, recognised by the zero high bytes of ASCII-range characters: in
/// little-endian they sit at odd offsets, in big-endian at even ones. Text mostly outside
/// Latin (CJK in UTF-16 without a BOM) is not recognised and reads as binary.
fn utf16_without_bom(head: &[u8]) -> Option<(&'static Encoding, usize)> {
    let pairs = head.len() / 2;
    if pairs < 2 {
        return None;
    }
    let zeros_at =
        |parity: usize| head.iter().skip(parity).step_by(2).take(pairs).filter(|b| **b == 0).count();
    let (even, odd) = (zeros_at(0), zeros_at(1));
    // Most characters ASCII-range, and (almost) no zero on the other side.
    if odd * 10 >= pairs * 6 && even * 50 <= pairs {
        Some((UTF_16LE, 0))
    } else if even * 10 >= pairs * 6 && odd * 50 <= pairs {
        Some((UTF_16BE, 0))
    } else {
        None
    }
}

/// Fills `buffer` as far as the source allows; 0 means end of file.
fn read_full(source: &mut dyn ReadSeek, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes `bytes` into `out`, counting each malformed sequence (as U+FFFD) in `counter`.
fn decode_chunk(
    decoder: &mut encoding_rs::Decoder,
    mut bytes: &[u8],
    last: bool,
    out: &mut String,
    counter: &mut TextCounter,
) {
    loop {
        let (result, read) = decoder.decode_to_string_without_replacement(bytes, out, last);
        bytes = &bytes[read..];
        match result {
            DecoderResult::InputEmpty => return,
            DecoderResult::OutputFull => out.reserve(bytes.len() * 3 + 16),
            DecoderResult::Malformed(..) => {
                counter.malformed += 1;
                out.push('\u{FFFD}');
            }
        }
    }
}

/// Counts characters, lines, words and terminators over decoded text pushed in pieces; a
/// `\r\n` split between two pieces still counts once.
#[derive(Debug, Default)]
struct TextCounter {
    chars: u64,
    words: u64,
    lf: u64,
    crlf: u64,
    cr: u64,
    control_count: u64,
    /// Undecodable sequences, each shown as one U+FFFD.
    malformed: u64,
    /// The bytes of those sequences, when counting UTF-8.
    invalid_bytes: u64,
    /// Valid characters outside ASCII.
    multibyte: u64,
    in_word: bool,
    /// A `\r` was the last character: a `\n` next makes it CRLF.
    pending_cr: bool,
    /// Nothing but terminators since the last terminator (or the start).
    at_line_start: bool,
    started: bool,
}

impl TextCounter {
    /// Counts decoded text. Most characters are neither whitespace, a control nor a line
    /// terminator: those are counted as part of a word without being decoded, a run of visible
    /// ASCII at a time; only the few bytes that may start another kind of character are decoded
    /// and looked at one by one.
    fn push(&mut self, text: &str) {
        if !self.started {
            self.started = true;
            self.at_line_start = true;
        }
        let bytes = text.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            if byte.is_ascii_graphic() {
                let run = bytes[at..].iter().take_while(|b| b.is_ascii_graphic()).count();
                self.push_word_chars(run as u64);
                at += run;
            } else if byte.is_ascii() {
                self.push_char(char::from(byte));
                at += 1;
            } else {
                // `text` is valid UTF-8: the lead byte says the character's length.
                let len = match byte {
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    _ => 4,
                };
                self.multibyte += 1;
                match may_be_space_or_control(byte).then(|| text[at..].chars().next()).flatten() {
                    Some(c) => self.push_char(c),
                    None => self.push_word_chars(1),
                }
                at += len;
            }
        }
    }

    /// `count` characters that are neither whitespace, controls nor terminators: the same
    /// word, on a line that is not empty.
    fn push_word_chars(&mut self, count: u64) {
        self.chars += count;
        if self.pending_cr {
            self.pending_cr = false;
            self.cr += 1;
        }
        self.at_line_start = false;
        if !self.in_word {
            self.in_word = true;
            self.words += 1;
        }
    }

    fn push_char(&mut self, c: char) {
        self.chars += 1;
        if self.pending_cr {
            self.pending_cr = false;
            if c == '\n' {
                self.crlf += 1;
                return;
            }
            self.cr += 1;
        }
        match c {
            '\r' => {
                self.pending_cr = true;
                self.at_line_start = true;
            }
            '\n' => {
                self.lf += 1;
                self.at_line_start = true;
            }
            _ => self.at_line_start = false,
        }
        if c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0b' | '\x0c') {
            self.control_count += 1;
        }
        if c.is_whitespace() {
            self.in_word = false;
        } else if !self.in_word {
            self.in_word = true;
            self.words += 1;
        }
    }

    /// Counts `bytes` as UTF-8: valid text as text, each invalid sequence as one U+FFFD.
    /// Returns how many bytes were counted: all, but a character cut off at the end when more
    /// bytes follow (`last` false), which the caller carries into the next call.
    fn push_utf8(&mut self, bytes: &[u8], last: bool) -> usize {
        let mut at = 0;
        while at < bytes.len() {
            match std::str::from_utf8(&bytes[at..]) {
                Ok(text) => {
                    self.push(text);
                    return bytes.len();
                }
                Err(error) => {
                    let valid = at + error.valid_up_to();
                    self.push(std::str::from_utf8(&bytes[at..valid]).unwrap_or_default());
                    match error.error_len() {
                        Some(len) => {
                            self.push_invalid(len as u64);
                            at = valid + len;
                        }
                        None if last => {
                            self.push_invalid((bytes.len() - valid) as u64);
                            return bytes.len();
                        }
                        None => return valid,
                    }
                }
            }
        }
        bytes.len()
    }

    /// An invalid UTF-8 sequence of `len` bytes (a maximal subpart: a stray byte, or the start
    /// of a character cut short): one U+FFFD character, as a decoder shows it (WHATWG,
    /// Unicode §3.9), and `len` invalid bytes.
    fn push_invalid(&mut self, len: u64) {
        self.push_char(char::REPLACEMENT_CHARACTER);
        self.malformed += 1;
        self.invalid_bytes += len;
    }

    /// UTF-8, possibly with a few damaged spots (see [`VALID_MULTIBYTE_PER_INVALID_BYTE`]).
    fn is_mostly_utf8(&self) -> bool {
        self.invalid_bytes == 0
            || (self.multibyte > 0 && self.invalid_bytes * VALID_MULTIBYTE_PER_INVALID_BYTE <= self.multibyte)
    }

    fn is_binary(&self) -> bool {
        let suspicious = self.control_count + self.malformed;
        suspicious > 0 && suspicious * 1000 > self.chars.max(1) * MAX_CONTROL_PER_MILLE
    }

    fn finish(mut self, encoding: &'static Encoding, has_bom: bool) -> TextMetadata {
        if self.pending_cr {
            self.cr += 1;
        }
        let terminators = self.lf + self.crlf + self.cr;
        let unterminated_last_line = self.started && !self.at_line_start;
        let kinds = [self.lf, self.crlf, self.cr].iter().filter(|n| **n > 0).count();
        let line_ending = match kinds {
            0 => LineEnding::None,
            1 if self.lf > 0 => LineEnding::Lf,
            1 if self.crlf > 0 => LineEnding::Crlf,
            1 => LineEnding::Cr,
            _ => LineEnding::Mixed,
        };
        TextMetadata {
            encoding: encoding.name().to_ascii_lowercase(),
            has_bom,
            char_count: self.chars,
            line_count: terminators + u64::from(unterminated_last_line),
            word_count: self.words,
            line_ending,
            invalid_bytes: (encoding == UTF_8 && self.invalid_bytes > 0).then_some(self.invalid_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn metadata(bytes: &[u8]) -> serde_json::Value {
        extract(&mut Cursor::new(bytes.to_vec())).expect("text").metadata
    }

    #[test]
    fn counts_code_points_not_bytes() {
        let m = metadata("héllo wörld 😀\n".as_bytes());
        assert_eq!(m["encoding"], "utf-8");
        assert_eq!(m["char_count"], 14);
        assert_eq!(m["word_count"], 3);
        assert_eq!(m["line_count"], 1);
        assert_eq!(m["line_ending"], "lf");
    }

    #[test]
    fn line_endings_and_counts() {
        assert_eq!(metadata(b"a\r\nb\r\n")["line_ending"], "crlf");
        assert_eq!(metadata(b"a\rb\rc")["line_ending"], "cr");
        assert_eq!(metadata(b"a\rb\rc")["line_count"], 3);
        assert_eq!(metadata(b"a\nb\r\nc\r")["line_ending"], "mixed");
        assert_eq!(metadata(b"one line")["line_ending"], "none");
        assert_eq!(metadata(b"one line")["line_count"], 1);
        assert_eq!(metadata(b"a\n\n")["line_count"], 2);
        assert_eq!(metadata(b"")["line_count"], 0);
    }

    #[test]
    fn crlf_split_across_chunks_counts_once() {
        let mut counter = TextCounter::default();
        counter.push("a\r");
        counter.push("\nb");
        let m = counter.finish(encoding_rs::UTF_8, false);
        assert_eq!((m.line_count, m.line_ending), (2, LineEnding::Crlf));
    }

    #[test]
    fn boms_and_utf16() {
        let le: Vec<u8> =
            [0xff, 0xfe].into_iter().chain("hé\n".encode_utf16().flat_map(u16::to_le_bytes)).collect();
        let m = metadata(&le);
        assert_eq!((m["encoding"].as_str(), m["has_bom"].as_bool()), (Some("utf-16le"), Some(true)));
        assert_eq!(m["char_count"], 3);
        let be_no_bom: Vec<u8> = "plain ascii words\n".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let m = metadata(&be_no_bom);
        assert_eq!((m["encoding"].as_str(), m["char_count"].as_u64()), (Some("utf-16be"), Some(18)));
    }

    #[test]
    fn legacy_latin_is_windows_1252() {
        let m = metadata(b"Le caf\xe9 co\xfbte 5 \x80, na\xefve gar\xe7on \xe0 l'\xe9cole.\n");
        assert_eq!(m["encoding"], "windows-1252");
        assert_eq!(m["char_count"], 43);
    }

    #[test]
    fn utf8_with_a_few_invalid_bytes_is_utf8_and_says_how_many() {
        let mut text = "Grüße aus Köln, naïve café, 😀 — ".repeat(20).into_bytes();
        text.extend_from_slice(b"cut \xe2\x82 here and \xff there\n");
        let m = metadata(&text);
        assert_eq!(m["encoding"], "utf-8", "{m}");
        assert_eq!(m["invalid_bytes"], 3, "{m}");
        // Two invalid sequences, each one U+FFFD, as a decoder (and Python's "replace") shows them.
        let shown = String::from_utf8_lossy(&text).chars().count() as u64;
        assert_eq!(m["char_count"], shown, "{m}");
        let valid = metadata("Grüße\n".as_bytes());
        assert!(valid.get("invalid_bytes").is_none(), "{valid}");
        // Cut at the very end of the file.
        let m = metadata(&[&"ünïcödé ".repeat(100).into_bytes()[..], b"\xf0\x9f"].concat());
        assert_eq!((m["encoding"].as_str(), m["invalid_bytes"].as_u64()), (Some("utf-8"), Some(2)));
    }

    #[test]
    fn counting_without_decoding_agrees_with_counting_each_character() {
        // Every character up to U+3100 (every whitespace and control above ASCII is below
        // it), each after a letter, then runs of them; and text in a few scripts.
        let every: String = (0x20u32..0x3100).filter_map(char::from_u32).flat_map(|c| [c, 'a']).collect();
        let runs: String = (0x80u32..0x3100).filter_map(char::from_u32).collect();
        let samples = [
            every.as_str(),
            runs.as_str(),
            "naïve café\u{a0}x\u{3000}y\u{2028}z\u{202f}w\u{205f}v\u{1680}u",
            "日本語の テキスト\u{85}end\u{9f}",
            "zero\u{200b}width is no space; “quotes” — dashes",
        ];
        for text in samples {
            let mut counter = TextCounter::default();
            counter.push(text);
            assert_eq!(counter.chars, text.chars().count() as u64);
            assert_eq!(counter.words, text.split_whitespace().count() as u64, "{text:?}");
            let controls = text
                .chars()
                .filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
                .count();
            assert_eq!(counter.control_count, controls as u64);
            assert_eq!(counter.multibyte, text.chars().filter(|c| !c.is_ascii()).count() as u64);
        }
    }

    #[test]
    fn characters_split_across_chunks_are_counted_once() {
        // A 4-byte character astride every chunk boundary.
        let mut text = Vec::new();
        while text.len() < 3 * CHUNK {
            text.extend_from_slice(b"ab ");
            text.extend_from_slice("😀".as_bytes());
        }
        let chars = std::str::from_utf8(&text).unwrap().chars().count() as u64;
        let m = metadata(&text);
        assert_eq!((m["encoding"].as_str(), m["char_count"].as_u64()), (Some("utf-8"), Some(chars)));
        assert!(m.get("invalid_bytes").is_none(), "{m}");
    }

    #[test]
    fn binary_is_not_text() {
        assert!(!looks_like_text(&[0x00, 0x01, 0x02, 0xff, 0x10, 0x00]));
        let controls: Vec<u8> = (0..1000u32).map(|i| if i % 20 == 0 { 0x01 } else { b'a' }).collect();
        assert!(!looks_like_text(&controls));
        assert!(matches!(extract(&mut Cursor::new(controls)), Err(ExtractError::Unsupported(_))));
        assert!(looks_like_text(b"just words\n"));
    }
}
