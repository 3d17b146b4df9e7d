//! A PDF's objects read by range (issue 9): the cross-reference data from the end of the file,
//! then each object the caller asks for, from its offset or its object stream, through
//! `Read + Seek` — so that a page count costs the page tree, not the file. [`super::pdf`]
//! walks the page tree over this or over lopdf's whole-file [`lopdf::Document`], and falls back
//! to the latter whenever this reader meets anything it does not trust ([`NeedsWholeFile`]):
//! a missing or wrong `startxref`, an offset that holds no `N G obj`, a section it cannot
//! read, an encrypted object stream, a bound reached. lopdf then repairs what it can, so an
//! answer is never worse than the whole-file parse gives.
//!
//! Object syntax is lopdf's own: its object parser is not public, but [`ObjectStream`] parses
//! the objects of any stream it is given, so each object's bytes are handed to it as a
//! one-object stream. What is written here is only what lopdf has no public reader for: the
//! cross-reference sections and the object headers, with a bound on everything a hostile file
//! could inflate.

use std::collections::HashMap;
use std::io::{Read, SeekFrom};

use lopdf::{Dictionary, Object, ObjectId, ObjectStream, Stream};

use super::ReadSeek;

/// The most bytes the reader fetches before it gives up on ranges: past it, reading the file
/// whole costs little more than going on.
const MAX_BYTES_READ: u64 = 32 * 1024 * 1024;
/// Cross-reference sections followed through `/Prev` (incremental updates, linearization).
const MAX_SECTIONS: usize = 64;
/// Objects read one by one before the reader gives up (each is a seek, a range on a remote file).
const MAX_OBJECTS: usize = 200_000;
/// The largest object read from an offset (page dictionaries are a few hundred bytes) and the
/// largest stream (a cross-reference or object stream), compressed and decompressed.
const MAX_OBJECT_BYTES: usize = 4 * 1024 * 1024;
/// The first read at an object's offset; doubled until the object is whole.
const FIRST_OBJECT_READ: usize = 2048;
/// Where `startxref` is looked for: the end of the file (the specification says the last 1024
/// bytes; writers append a little after `%%EOF`).
const TAIL_BYTES: u64 = 4096;

/// Why the range reader stops and the whole file must be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedsWholeFile(pub String);

type Result<T> = std::result::Result<T, NeedsWholeFile>;

fn whole(why: impl Into<String>) -> NeedsWholeFile {
    NeedsWholeFile(why.into())
}

/// Where an object is, by the newest cross-reference section that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Free,
    At { offset: u64, generation: u16 },
    InStream { stream: u32, index: u32 },
}

/// The objects of one PDF, read on demand.
pub struct RangedPdf<'a> {
    source: &'a mut dyn ReadSeek,
    size: u64,
    /// The header's version (`1.7`).
    pub header_version: String,
    /// The newest trailer (`/Root`, `/Encrypt`).
    pub trailer: Dictionary,
    xref: HashMap<u32, Entry>,
    cache: HashMap<ObjectId, Option<Object>>,
    streams: HashMap<u32, ObjectStream>,
    bytes_read: u64,
    objects_read: usize,
}

impl<'a> RangedPdf<'a> {
    /// Reads the header and every cross-reference section, newest first.
    pub fn open(source: &'a mut dyn ReadSeek, size: u64) -> Result<RangedPdf<'a>> {
        let mut pdf = RangedPdf {
            source,
            size,
            header_version: String::new(),
            trailer: Dictionary::new(),
            xref: HashMap::new(),
            cache: HashMap::new(),
            streams: HashMap::new(),
            bytes_read: 0,
            objects_read: 0,
        };
        pdf.header_version = pdf.read_header()?;
        let tail_start = size.saturating_sub(TAIL_BYTES);
        let tail = pdf.read_at(tail_start, (size - tail_start) as usize)?;
        let mut next = Some(startxref(&tail).ok_or_else(|| whole("no startxref at the end"))?);
        let mut seen = Vec::new();
        while let Some(offset) = next.take() {
            if seen.contains(&offset) || seen.len() >= MAX_SECTIONS {
                return Err(whole("a loop or too many sections in the /Prev chain"));
            }
            seen.push(offset);
            let trailer = pdf.read_section(offset)?;
            if seen.len() == 1 {
                pdf.trailer = trailer.clone();
            }
            next = match trailer.get(b"Prev").and_then(Object::as_i64) {
                Ok(prev) => Some(u64::try_from(prev).map_err(|_| whole("a negative /Prev"))?),
                Err(_) => None,
            };
        }
        Ok(pdf)
    }

    /// Bytes fetched so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Whether the trailer names an encryption dictionary.
    pub fn encrypted(&self) -> bool {
        self.trailer.has(b"Encrypt")
    }

    /// The object `id` (its newest revision); `None` when no section has it or it is free (a
    /// missing object, as lopdf reads it too).
    pub fn object(&mut self, id: ObjectId) -> Result<Option<Object>> {
        if let Some(cached) = self.cache.get(&id) {
            return Ok(cached.clone());
        }
        let object = match self.xref.get(&id.0).copied() {
            None | Some(Entry::Free) => None,
            // The object's own header decides its generation, as lopdf reads it (the table's
            // may be damaged).
            Some(Entry::At { offset, .. }) => {
                let (object, _, generation) = self.read_object_at(offset, id.0)?;
                (generation == id.1).then_some(object)
            }
            Some(Entry::InStream { stream, .. }) => {
                if self.encrypted() {
                    return Err(whole("an object in an encrypted object stream"));
                }
                self.load_object_stream(stream)?;
                self.streams.get(&stream).and_then(|objects| objects.objects.get(&(id.0, 0))).cloned()
            }
        };
        self.cache.insert(id, object.clone());
        Ok(object)
    }

    /// `%PDF-M.m` in the first kilobyte (lopdf reads it anywhere there too).
    fn read_header(&mut self) -> Result<String> {
        let head = self.read_at(0, 1024)?;
        let at = find(&head, b"%PDF-").ok_or_else(|| whole("no %PDF- header"))?;
        let version: String = head[at + 5..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit() || **byte == b'.')
            .map(|&byte| byte as char)
            .collect();
        if version.is_empty() {
            return Err(whole("a header without a version"));
        }
        Ok(version)
    }

    /// One cross-reference section, a table or a stream, at `offset`: its entries go in
    /// unless a newer section named the object already. Returns its trailer dictionary.
    fn read_section(&mut self, offset: u64) -> Result<Dictionary> {
        let start = self.read_at(offset, 16)?;
        if skip_space(&start).starts_with(b"xref") {
            let (entries, trailer) = self.read_table(offset)?;
            self.add_entries(entries);
            // A hybrid file: the table first, then the stream it points to (ISO 32000 §7.5.8.4).
            if let Ok(stream_offset) = trailer.get(b"XRefStm").and_then(Object::as_i64) {
                let stream_offset = u64::try_from(stream_offset).map_err(|_| whole("a negative /XRefStm"))?;
                let (entries, _) = self.read_xref_stream(stream_offset)?;
                self.add_entries(entries);
            }
            Ok(trailer)
        } else {
            let (entries, dictionary) = self.read_xref_stream(offset)?;
            self.add_entries(entries);
            Ok(dictionary)
        }
    }

    fn add_entries(&mut self, entries: Vec<(u32, Entry)>) {
        for (id, entry) in entries {
            self.xref.entry(id).or_insert(entry);
        }
    }

    /// A classic table (`xref`, subsections of 20-byte entries, `trailer << … >>`).
    fn read_table(&mut self, offset: u64) -> Result<(Vec<(u32, Entry)>, Dictionary)> {
        let mut length = 64 * 1024;
        loop {
            let bytes = self.read_at(offset, length)?;
            if let Some(trailer_at) = find(&bytes, b"trailer") {
                let after = &bytes[trailer_at + 7..];
                // The trailer runs to `startxref`; an object in between is damage.
                if let Some(end) = find(after, b"startxref") {
                    if find(&after[..end], b"endobj").is_some() {
                        return Err(whole("a trailer that runs into objects"));
                    }
                    let entries = parse_table(&bytes[..trailer_at])?;
                    return match parse_direct_object(&after[..end]) {
                        Some(Object::Dictionary(trailer)) => Ok((entries, trailer)),
                        _ => Err(whole("a trailer that does not parse")),
                    };
                }
            }
            if offset + length as u64 >= self.size {
                return Err(whole("a cross-reference table without a readable trailer"));
            }
            length *= 2;
        }
    }

    /// A cross-reference stream (PDF 1.5): its entries and its dictionary (the trailer's keys).
    fn read_xref_stream(&mut self, offset: u64) -> Result<(Vec<(u32, Entry)>, Dictionary)> {
        let (object, _, _) = self.read_object_at(offset, 0)?;
        let Object::Stream(stream) = object else {
            return Err(whole("startxref points at neither a table nor a stream"));
        };
        if stream.dict.get(b"Type").and_then(Object::as_name).ok() != Some(b"XRef".as_slice()) {
            return Err(whole("a cross-reference stream without /Type /XRef"));
        }
        let content = stream
            .decompressed_content_with_limit(MAX_OBJECT_BYTES)
            .map_err(|e| whole(format!("a cross-reference stream does not decode: {e}")))?;
        let entries = parse_xref_stream(&stream.dict, &content)?;
        Ok((entries, stream.dict))
    }

    /// The object at `offset`, whose header must be `{id} G obj` (`id` 0: any number, for
    /// sections). A stream's content is read by its `/Length`.
    fn read_object_at(&mut self, offset: u64, id: u32) -> Result<(Object, u32, u16)> {
        self.objects_read += 1;
        if self.objects_read > MAX_OBJECTS {
            return Err(whole("too many objects to read one by one"));
        }
        let mut length = FIRST_OBJECT_READ;
        loop {
            let bytes = self.read_at(offset, length)?;
            let (number, generation, body) =
                object_header(&bytes).ok_or_else(|| whole("an offset that holds no object"))?;
            if id != 0 && number != id {
                return Err(whole(format!("object {id}'s offset holds object {number}")));
            }
            let whole_read = bytes.len() < length;
            // The object's bytes end at `endobj` or, for a stream, at `stream`, whichever
            // comes first (the bytes read may hold the next objects too).
            let stream_at = find_keyword(body, b"stream");
            let end = match (stream_at, find(body, b"endobj")) {
                (Some(stream), Some(endobj)) => Some(stream.min(endobj)),
                (one, other) => one.or(other),
            };
            match end {
                Some(end) => {
                    let dictionary = parse_direct_object(&body[..end])
                        .ok_or_else(|| whole(format!("object {number} does not parse")))?;
                    if stream_at != Some(end) {
                        return Ok((dictionary, number, generation));
                    }
                    let Object::Dictionary(dict) = dictionary else {
                        return Err(whole(format!("object {number}: a stream without a dictionary")));
                    };
                    let body_offset = offset + (bytes.len() - body.len()) as u64;
                    let content_offset = body_offset + stream_data_start(body, end) as u64;
                    let stream = self.read_stream_content(dict, content_offset)?;
                    return Ok((Object::Stream(stream), number, generation));
                }
                None if whole_read || length >= MAX_OBJECT_BYTES => {
                    return Err(whole(format!("object {number} has no end")));
                }
                None => length *= 2,
            }
        }
    }

    /// A stream's content: `/Length` bytes from `offset` (a length given by reference is
    /// looked up first).
    fn read_stream_content(&mut self, dict: Dictionary, offset: u64) -> Result<Stream> {
        let length = match dict.get(b"Length") {
            Ok(Object::Integer(length)) => *length,
            Ok(Object::Reference(id)) => match self.object(*id)? {
                Some(Object::Integer(length)) => length,
                _ => return Err(whole("a stream length that is not a number")),
            },
            _ => return Err(whole("a stream without /Length")),
        };
        let length = usize::try_from(length)
            .ok()
            .filter(|length| *length <= MAX_OBJECT_BYTES)
            .ok_or_else(|| whole("a stream too long to read by range"))?;
        // The content and what must follow it: `endstream`, after at most an end of line.
        let mut content = self.read_at(offset, length + 32)?;
        let after = content.split_off(length.min(content.len()));
        if content.len() < length || !skip_space(&after).starts_with(b"endstream") {
            return Err(whole("a stream whose /Length does not end at endstream"));
        }
        Ok(Stream::new(dict, content))
    }

    /// Reads object stream `number` and keeps its objects.
    fn load_object_stream(&mut self, number: u32) -> Result<()> {
        if self.streams.contains_key(&number) {
            return Ok(());
        }
        let Some(Entry::At { offset, .. }) = self.xref.get(&number).copied() else {
            return Err(whole(format!("object stream {number} is not at an offset")));
        };
        let (object, _, _) = self.read_object_at(offset, number)?;
        let Object::Stream(stream) = object else {
            return Err(whole(format!("object stream {number} is not a stream")));
        };
        let objects = ObjectStream::new_with_limit(&stream, Some(MAX_OBJECT_BYTES))
            .map_err(|e| whole(format!("object stream {number} does not decode: {e}")))?;
        self.streams.insert(number, objects);
        Ok(())
    }

    /// Up to `length` bytes at `offset` (fewer at the end of the file), counted.
    fn read_at(&mut self, offset: u64, length: usize) -> Result<Vec<u8>> {
        let length = length.min(self.size.saturating_sub(offset) as usize);
        self.bytes_read += length as u64;
        if self.bytes_read > MAX_BYTES_READ {
            return Err(whole("more than the range budget"));
        }
        let io = |e: std::io::Error| whole(format!("reading: {e}"));
        self.source.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut bytes = Vec::with_capacity(length);
        (&mut *self.source).take(length as u64).read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    }
}

/// The offset after the last `startxref` of the tail.
fn startxref(tail: &[u8]) -> Option<u64> {
    let at = tail.windows(9).rposition(|window| window == b"startxref")?;
    let digits: String =
        skip_space(&tail[at + 9..]).iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
    digits.parse().ok()
}

/// The entries of a classic table's subsections (`xref` up to `trailer`).
fn parse_table(bytes: &[u8]) -> Result<Vec<(u32, Entry)>> {
    let text = std::str::from_utf8(bytes).map_err(|_| whole("a cross-reference table that is not text"))?;
    let mut tokens = text.split_ascii_whitespace();
    if tokens.next() != Some("xref") {
        return Err(whole("a table without xref"));
    }
    let mut entries = Vec::new();
    let number = |token: Option<&str>| -> Result<u64> {
        token.and_then(|token| token.parse().ok()).ok_or_else(|| whole("a malformed cross-reference table"))
    };
    while let Some(first) = tokens.next() {
        let first: u32 = first.parse().map_err(|_| whole("a malformed subsection header"))?;
        let count = number(tokens.next())?;
        for index in 0..count {
            let offset = number(tokens.next())?;
            let generation = u16::try_from(number(tokens.next())?).unwrap_or(u16::MAX);
            let id = first
                .checked_add(u32::try_from(index).unwrap_or(u32::MAX))
                .ok_or_else(|| whole("an object number past 2^32"))?;
            let entry = match tokens.next() {
                Some("n") => Entry::At { offset, generation },
                Some("f") => Entry::Free,
                _ => return Err(whole("an entry that is neither n nor f")),
            };
            entries.push((id, entry));
        }
    }
    Ok(entries)
}

/// The entries of a decoded cross-reference stream (`/W`, `/Index`, `/Size`).
fn parse_xref_stream(dict: &Dictionary, content: &[u8]) -> Result<Vec<(u32, Entry)>> {
    let widths: Vec<usize> = dict
        .get(b"W")
        .and_then(Object::as_array)
        .map_err(|_| whole("a cross-reference stream without /W"))?
        .iter()
        .map(|width| width.as_i64().ok().and_then(|w| usize::try_from(w).ok()).filter(|w| *w <= 8))
        .collect::<Option<_>>()
        .ok_or_else(|| whole("a malformed /W"))?;
    let [w_type, w_field2, w_field3] = widths[..] else {
        return Err(whole("a /W of other than three widths"));
    };
    let row = w_type + w_field2 + w_field3;
    if row == 0 {
        return Err(whole("a /W of zero widths"));
    }
    let size = dict
        .get(b"Size")
        .and_then(Object::as_i64)
        .map_err(|_| whole("a cross-reference stream without /Size"))?;
    let index: Vec<i64> = match dict.get(b"Index").and_then(Object::as_array) {
        Ok(index) => index
            .iter()
            .map(|n| n.as_i64().map_err(|_| whole("a malformed /Index")))
            .collect::<Result<_>>()?,
        Err(_) => vec![0, size],
    };
    let mut rows = content.chunks_exact(row);
    let mut entries = Vec::new();
    for pair in index.chunks(2) {
        let [first, count] = pair else { return Err(whole("an odd /Index")) };
        let (first, count) = (u32::try_from(*first), u64::try_from(*count));
        let (Ok(first), Ok(count)) = (first, count) else { return Err(whole("a negative /Index")) };
        for index in 0..count {
            let Some(fields) = rows.next() else {
                return Err(whole("a cross-reference stream shorter than its /Index"));
            };
            let field = |from: usize, width: usize| {
                fields[from..from + width].iter().fold(0u64, |n, &b| n << 8 | u64::from(b))
            };
            let kind = if w_type == 0 { 1 } else { field(0, w_type) };
            let (second, third) = (field(w_type, w_field2), field(w_type + w_field2, w_field3));
            let id = first
                .checked_add(u32::try_from(index).unwrap_or(u32::MAX))
                .ok_or_else(|| whole("an object number past 2^32"))?;
            let entry = match kind {
                0 => Entry::Free,
                1 => Entry::At { offset: second, generation: u16::try_from(third).unwrap_or(u16::MAX) },
                2 => Entry::InStream {
                    stream: u32::try_from(second).map_err(|_| whole("an object stream number past 2^32"))?,
                    index: u32::try_from(third).unwrap_or(u32::MAX),
                },
                // Other types are reserved: readers treat them as null objects.
                _ => Entry::Free,
            };
            entries.push((id, entry));
        }
    }
    Ok(entries)
}

/// `N G obj` at the start (after white space): the object number, its generation and the
/// bytes after `obj`.
fn object_header(bytes: &[u8]) -> Option<(u32, u16, &[u8])> {
    let mut rest = skip_space(bytes);
    let mut numbers = [0u64; 2];
    for number in &mut numbers {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 10 {
            return None;
        }
        *number = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        rest = skip_space(&rest[digits..]);
    }
    let rest = rest.strip_prefix(b"obj")?;
    Some((u32::try_from(numbers[0]).ok()?, u16::try_from(numbers[1]).ok()?, rest))
}

/// Where a stream's data begins: after `stream` and its end of line (CR LF or LF; a lone CR is
/// tolerated, as lopdf does).
fn stream_data_start(body: &[u8], keyword_at: usize) -> usize {
    let after = keyword_at + b"stream".len();
    match &body[after..] {
        [b'\r', b'\n', ..] => after + 2,
        [b'\n', ..] | [b'\r', ..] => after + 1,
        _ => after,
    }
}

/// The keyword `word` as a token: preceded by white space or a delimiter, followed by white
/// space (so `endstream` and `/streamy` do not count).
fn find_keyword(bytes: &[u8], word: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = find(&bytes[from..], word) {
        let at = from + found;
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + word.len()).copied();
        let delimited = before.is_none_or(|b| b.is_ascii_whitespace() || b == b'>');
        if delimited && after.is_some_and(|b| b.is_ascii_whitespace()) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' '))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// One direct object parsed by lopdf's own parser: the bytes become the only object of an
/// uncompressed object stream, which lopdf parses with the parser it loads files with.
fn parse_direct_object(bytes: &[u8]) -> Option<Object> {
    let index = b"1 0\n";
    let mut content = Vec::with_capacity(index.len() + bytes.len());
    content.extend_from_slice(index);
    content.extend_from_slice(bytes);
    let mut dict = Dictionary::new();
    dict.set("N", 1);
    dict.set("First", index.len() as i64);
    let mut objects =
        ObjectStream::new_with_limit(&Stream::new(dict, content), Some(MAX_OBJECT_BYTES)).ok()?;
    objects.objects.remove(&(1, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lopdf_parses_one_object_given_as_an_object_stream() {
        let object =
            parse_direct_object(b" << /Type /Page /MediaBox [0 0 612 792.5] /Parent 2 0 R >>\nendobj")
                .unwrap();
        let dict = object.as_dict().unwrap();
        assert_eq!(dict.get(b"Type").unwrap().as_name().unwrap(), b"Page");
        assert_eq!(dict.get(b"Parent").unwrap().as_reference().unwrap(), (2, 0));
        assert_eq!(dict.get(b"MediaBox").unwrap().as_array().unwrap().len(), 4);
        assert!(parse_direct_object(b"").is_none());
    }

    #[test]
    fn headers_keywords_and_tables() {
        assert_eq!(object_header(b"\n12 3 obj<<>>").map(|(n, g, rest)| (n, g, rest.len())), Some((12, 3, 4)));
        assert!(object_header(b"12 0 R").is_none());
        assert_eq!(find_keyword(b"<< /Length 5 >>stream\nhello endstream", b"stream"), Some(15));
        assert_eq!(find_keyword(b"<< /streamy 1 >> endstream\n", b"stream"), None);
        assert_eq!(startxref(b"...startxref\n  1234\n%%EOF\n"), Some(1234));
        let table =
            parse_table(b"xref\n0 2\n0000000000 65535 f \n0000000017 00000 n \n5 1\n0000000099 00002 n\r\n")
                .unwrap();
        assert_eq!(
            table,
            [
                (0, Entry::Free),
                (1, Entry::At { offset: 17, generation: 0 }),
                (5, Entry::At { offset: 99, generation: 2 })
            ]
        );
    }

    #[test]
    fn cross_reference_stream_rows() {
        let mut dict = Dictionary::new();
        dict.set("W", vec![Object::Integer(1), Object::Integer(2), Object::Integer(1)]);
        dict.set("Size", 3);
        dict.set("Index", vec![Object::Integer(4), Object::Integer(3)]);
        let rows = [0u8, 0, 0, 0, 1, 0x01, 0x00, 0, 2, 0, 7, 3];
        let entries = parse_xref_stream(&dict, &rows).unwrap();
        assert_eq!(
            entries,
            [
                (4, Entry::Free),
                (5, Entry::At { offset: 256, generation: 0 }),
                (6, Entry::InStream { stream: 7, index: 3 }),
            ]
        );
        assert!(parse_xref_stream(&dict, &rows[..8]).is_err(), "fewer rows than /Index says");
    }
}
