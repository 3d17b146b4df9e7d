//! Text metadata (DESIGN §3 `text`): which encoding, and how many characters, lines and words.
//!
//! Encodings are Firefox's: byte-order marks first, then UTF-16 without a BOM by the telltale
//! zero bytes of ASCII-range text, then `chardetng` (which answers UTF-8 when the bytes are
//! valid UTF-8 and guesses the legacy encoding otherwise). Decoding is `encoding_rs`, streamed
//! in chunks so that memory stays flat for any file size.

use std::io::SeekFrom;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{DecoderResult, Encoding, UTF_16BE, UTF_16LE};
use serde::Serialize;

use super::{ExtractError, Extracted, ReadSeek};
use crate::job::DataType;

/// Bytes read and decoded at a time.
const CHUNK: usize = 64 * 1024;

/// Above this share of control characters (or undecodable bytes) the data is binary.
const MAX_CONTROL_PER_MILLE: u64 = 10;

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

/// Whether the first bytes of a file look like text in an encoding we read. Decides between
/// "text" and "unsupported" for files no magic number claimed.
pub fn looks_like_text(head: &[u8]) -> bool {
    let encoding = match encoding_from_bom(head).or_else(|| utf16_without_bom(head)) {
        Some((encoding, _)) => encoding,
        None if head.contains(&0) => return false,
        None => {
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

/// Extracts encoding, counts and line endings, reading the file twice: once to detect the
/// encoding from all of it (a Latin-1 letter may first appear on the last line), once to count.
pub fn extract(source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    let (encoding, bom_len) = detect_encoding(source)?;
    source.seek(SeekFrom::Start(bom_len as u64))?;
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
            break;
        }
    }
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

/// The encoding of the whole source and the length of its byte-order mark.
fn detect_encoding(source: &mut dyn ReadSeek) -> Result<(&'static Encoding, usize), ExtractError> {
    let mut head = [0u8; 4096];
    source.seek(SeekFrom::Start(0))?;
    let n = read_full(source, &mut head)?;
    if let Some(found) = encoding_from_bom(&head[..n]).or_else(|| utf16_without_bom(&head[..n])) {
        return Ok(found);
    }
    let mut detector = EncodingDetector::new(Iso2022JpDetection::Deny);
    source.seek(SeekFrom::Start(0))?;
    let mut bytes = vec![0u8; CHUNK];
    loop {
        let n = read_full(source, &mut bytes)?;
        detector.feed(&bytes[..n], n == 0);
        if n == 0 {
            break;
        }
    }
    Ok((detector.guess(None, Utf8Detection::Allow), 0))
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
    malformed: u64,
    in_word: bool,
    /// A `\r` was the last character: a `\n` next makes it CRLF.
    pending_cr: bool,
    /// Nothing but terminators since the last terminator (or the start).
    at_line_start: bool,
    started: bool,
}

impl TextCounter {
    fn push(&mut self, text: &str) {
        if !self.started {
            self.started = true;
            self.at_line_start = true;
        }
        for c in text.chars() {
            self.chars += 1;
            if self.pending_cr {
                self.pending_cr = false;
                if c == '\n' {
                    self.crlf += 1;
                    continue;
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
    fn binary_is_not_text() {
        assert!(!looks_like_text(&[0x00, 0x01, 0x02, 0xff, 0x10, 0x00]));
        let controls: Vec<u8> = (0..1000u32).map(|i| if i % 20 == 0 { 0x01 } else { b'a' }).collect();
        assert!(!looks_like_text(&controls));
        assert!(matches!(extract(&mut Cursor::new(controls)), Err(ExtractError::Unsupported(_))));
        assert!(looks_like_text(b"just words\n"));
    }
}
