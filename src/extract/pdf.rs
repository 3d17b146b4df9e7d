//! PDF metadata (DESIGN §3 `pdf`): page count, version, encryption, and each page's size and
//! rotation.
//!
//! A PDF is read from its end: the cross-reference data locates every object, so the page
//! tree can be read by range without the rest of the file ([`super::pdf_objects`]; a 50 MB scan
//! costs kilobytes). Whenever that reader meets anything it does not trust, `lopdf` parses the
//! whole file instead, in memory, bounded by [`MAX_PDF_BYTES`]: lopdf merges incremental
//! updates (the last revision wins), reads object streams and linearized files, rebuilds
//! damaged cross-reference tables by scanning for objects, and tries the empty user password
//! of encrypted files by itself. Both give the same answer where both can read a file.
//!
//! The page tree is walked here, over either source ([`Objects`]), rather than with lopdf's
//! `page_iter`, for three reasons: page attributes (MediaBox, CropBox, Rotate) are
//! inheritable and lopdf does not resolve them; a walk that remembers every node it has
//! visited counts the true number of pages in a tree with cycles, where lopdf's iterator only
//! stops after a fixed number of steps; and the root's `/Count` can lie (10^6 pages claimed
//! for one), so it is not read at all.

use std::collections::HashSet;
use std::io::{Read, SeekFrom};

use lopdf::{DecompressError, Dictionary, Document, Object, ObjectId};
use serde::Serialize;

use super::pdf_objects::{NeedsWholeFile, RangedPdf};
use super::{ExtractError, Extracted, ReadSeek};
use crate::job::DataType;

/// The largest PDF read whole (one read by range has no such bound). lopdf needs the whole
/// file in memory, and its parsed objects take more again: about the file's size for
/// image-heavy files, but 13 times it for a 26 MB file of 300,000 small page objects. 512 MiB admits scanned documents of several thousand pages; the
/// extraction child's memory limit stops the object-dense extremes.
pub const MAX_PDF_BYTES: u64 = 512 * 1024 * 1024;

/// Pages listed in `pages`; `page_count` still counts them all.
pub const MAX_LISTED_PAGES: usize = 10_000;

/// Levels of `/Pages` nodes followed below the root. Real trees are a few levels deep
/// (balanced trees of 10^6 pages need about 6); deeper ones are hostile, and their deeper
/// pages are not counted. The same limit as lopdf's own page iterator.
const MAX_TREE_DEPTH: usize = 256;

/// The page size when neither a page nor any ancestor has a usable MediaBox: US letter, as
/// poppler (pdfinfo), pdf.js and MuPDF assume.
const DEFAULT_MEDIA_BOX: Rect = Rect { left: 0.0, bottom: 0.0, right: 612.0, top: 792.0 };

/// The `metadata` of a PDF file.
#[derive(Debug, Serialize)]
pub struct PdfMetadata {
    /// Pages reachable in the page tree. `None` only when the file is encrypted with a user
    /// password and its page tree sits in an encrypted object stream, so it cannot be read.
    pub page_count: Option<u64>,
    /// `major.minor`: the header's version, or the catalog's `/Version` when that is later
    /// (PDF 1.4+ lets an incremental update raise the version there), as pdfinfo reports it.
    pub pdf_version: String,
    /// Whether the file is encrypted, also when it opens without a password (an empty user
    /// password: the pages are read as usual).
    pub encrypted: bool,
    /// The first [`MAX_LISTED_PAGES`] pages, in document order.
    pub pages: Vec<PageGeometry>,
}

/// The size and rotation of one page.
///
/// The size is the visible area, the CropBox clipped to the MediaBox, as viewers show the
/// page and as pdfinfo reports its "Page size" (`pdfinfo -box` prints both boxes). Without a
/// CropBox that is the MediaBox. Units are the page's default user space units: points, unless
/// the page sets a `/UserUnit` (PDF 1.6), which is not applied.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PageGeometry {
    /// As stored, before rotation; rounded to a thousandth of a point.
    pub width_pt: f64,
    pub height_pt: f64,
    /// Clockwise degrees the page is turned when displayed: 0, 90, 180 or 270.
    pub rotation: u16,
}

/// Extracts page count, version, encryption and page geometry.
///
/// A file encrypted with a user password we don't have still yields its page tree when that
/// is stored in plain objects: PDF encryption covers strings and streams only, and page
/// dictionaries, their boxes and `/Rotate` are neither. If the tree is inside an (encrypted)
/// object stream, `page_count` is `None` and `pages` empty. An error only when nothing at all
/// can be read.
pub fn extract(source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    let size = source.seek(SeekFrom::End(0))?;
    let metadata = match read_metadata_by_range(source, size) {
        Ok(metadata) => metadata,
        Err(NeedsWholeFile(_)) => read_metadata(&read_whole_file(source, MAX_PDF_BYTES)?)?,
    };
    Ok(Extracted::new(DataType::Pdf, "application/pdf", metadata))
}

/// The metadata from the cross-reference data and the page tree's objects alone
/// ([`pdf_objects`]), or why the whole file must be parsed. An encrypted file is read so
/// while its page tree is in plain objects (dictionaries are never encrypted); lopdf then
/// need not derive a key it would not use.
fn read_metadata_by_range(source: &mut dyn ReadSeek, size: u64) -> Result<PdfMetadata, NeedsWholeFile> {
    let mut pdf = RangedPdf::open(source, size)?;
    let pdf_version = effective_version(&pdf.header_version.clone(), &mut pdf)?;
    let encrypted = pdf.encrypted();
    let tree = walk_page_tree(&mut pdf)?
        .ok_or_else(|| NeedsWholeFile("no page tree where the cross-reference data says".into()))?;
    Ok(PdfMetadata { page_count: Some(tree.page_count), pdf_version, encrypted, pages: tree.pages })
}

/// Reads the whole source into memory, refusing files over `cap` before reading them.
fn read_whole_file(source: &mut dyn ReadSeek, cap: u64) -> Result<Vec<u8>, ExtractError> {
    let size = source.seek(SeekFrom::End(0))?;
    if size > cap {
        return Err(ExtractError::TooLarge(format!(
            "the PDF is {size} bytes; PDFs over {cap} bytes are not read (they are parsed in memory)"
        )));
    }
    source.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // `take` also bounds a source that grows while it is read.
    source.take(cap).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn read_metadata(bytes: &[u8]) -> Result<PdfMetadata, ExtractError> {
    let document = Document::load_mem(bytes).map_err(load_error)?;
    let needs_password = document.trailer.has(b"Encrypt");
    let encrypted = needs_password || document.was_encrypted();

    let readable;
    let structure = if needs_password {
        // lopdf loads no objects at all without the password; read the plain structure.
        readable = Document::load_mem(&without_encrypt_entry(bytes)).ok();
        readable.as_ref()
    } else {
        Some(&document)
    };

    let pdf_version = match structure {
        Some(structure) => {
            effective_version(&structure.version, &mut WholeFile(structure)).unwrap_or_default()
        }
        None => document.version.clone(),
    };
    let page_tree =
        structure.and_then(|structure| walk_page_tree(&mut WholeFile(structure)).unwrap_or_default());
    let (page_count, pages) = match page_tree {
        Some(tree) => (Some(tree.page_count), tree.pages),
        None if needs_password => (None, Vec::new()),
        None => {
            return Err(ExtractError::corrupt(
                "PDF",
                "the page tree cannot be found (no catalog, or its /Pages is missing or unreadable)",
            ));
        }
    };
    Ok(PdfMetadata { page_count, pdf_version, encrypted, pages })
}

/// Turns a lopdf failure into our categories, with the cause lopdf gives.
fn load_error(error: lopdf::Error) -> ExtractError {
    match error {
        lopdf::Error::Decompress(DecompressError::MemoryLimitExceeded { limit }) => ExtractError::TooLarge(
            format!("a stream of the PDF decompresses to more than {limit} bytes (a decompression bomb?)"),
        ),
        other => ExtractError::corrupt("PDF", super::error_chain(&other)),
    }
}

/// A copy of the file in which the trailer's `/Encrypt` key is renamed, so that lopdf reads the
/// objects as plain ones. Dictionaries, numbers, names and references are never encrypted;
/// strings and streams stay ciphertext and are not used. The name keeps its length, so every
/// byte offset in the cross-reference data stays right. Only the exact name is renamed
/// (`/EncryptMetadata` is another name) — in a trailer, an xref stream's dictionary, or by
/// chance inside ciphertext, where it changes nothing we read.
fn without_encrypt_entry(bytes: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"/Encrypt";
    const RENAMED: &[u8] = b"/Ignored";
    let mut copy = bytes.to_vec();
    let mut at = 0;
    while let Some(found) = copy.get(at..).and_then(|rest| rest.windows(NAME.len()).position(|w| w == NAME)) {
        let start = at + found;
        let end = start + NAME.len();
        if copy.get(end).is_none_or(|&next| !is_regular_character(next)) {
            copy[start..end].copy_from_slice(RENAMED);
        }
        at = end;
    }
    copy
}

/// PDF's "regular characters": anything but white space and delimiters. A name ends before
/// the first byte that is not one.
fn is_regular_character(byte: u8) -> bool {
    !matches!(byte, b'\0' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
        && !matches!(byte, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

/// Where the page-tree walk gets its objects: lopdf's whole-file [`Document`], or the objects
/// read by range ([`RangedPdf`]), which can give up ([`NeedsWholeFile`]). Both answer a
/// missing object with `None`; the walk is written once, over this.
trait Objects {
    fn object(&mut self, id: ObjectId) -> Result<Option<Object>, NeedsWholeFile>;
    fn trailer(&self) -> &Dictionary;
}

/// A document lopdf loaded whole.
struct WholeFile<'a>(&'a Document);

impl Objects for WholeFile<'_> {
    fn object(&mut self, id: ObjectId) -> Result<Option<Object>, NeedsWholeFile> {
        Ok(self.0.get_object(id).ok().cloned())
    }

    fn trailer(&self) -> &Dictionary {
        &self.0.trailer
    }
}

impl Objects for RangedPdf<'_> {
    fn object(&mut self, id: ObjectId) -> Result<Option<Object>, NeedsWholeFile> {
        RangedPdf::object(self, id)
    }

    fn trailer(&self) -> &Dictionary {
        &self.trailer
    }
}

/// References followed to an object: more than this many in a row is a loop.
const MAX_REFERENCE_CHAIN: usize = 32;

/// `object` itself, or what its reference (and theirs) points to; `None` for a missing one.
fn resolve(objects: &mut dyn Objects, object: &Object) -> Result<Option<Object>, NeedsWholeFile> {
    let mut current = object.clone();
    for _ in 0..MAX_REFERENCE_CHAIN {
        match current {
            Object::Reference(id) => match objects.object(id)? {
                Some(next) => current = next,
                None => return Ok(None),
            },
            direct => return Ok(Some(direct)),
        }
    }
    Ok(None)
}

/// `key` of `dictionary`, resolved.
fn entry(
    objects: &mut dyn Objects,
    dictionary: &Dictionary,
    key: &[u8],
) -> Result<Option<Object>, NeedsWholeFile> {
    match dictionary.get(key) {
        Ok(value) => resolve(objects, value),
        Err(_) => Ok(None),
    }
}

/// The trailer's `/Root`, resolved to a dictionary.
fn catalog(objects: &mut dyn Objects) -> Result<Option<Dictionary>, NeedsWholeFile> {
    let trailer = objects.trailer().clone();
    Ok(match entry(objects, &trailer, b"Root")? {
        Some(Object::Dictionary(catalog)) => Some(catalog),
        _ => None,
    })
}

/// The header's version, or the catalog's `/Version` when that is later.
fn effective_version(header: &str, objects: &mut dyn Objects) -> Result<String, NeedsWholeFile> {
    let header = header.trim().to_owned();
    let catalog_version = match catalog(objects)? {
        Some(catalog) => match entry(objects, &catalog, b"Version")? {
            Some(Object::Name(name)) => String::from_utf8(name).ok(),
            _ => None,
        },
        None => None,
    };
    Ok(match (parse_version(&header), catalog_version.as_deref().and_then(parse_version)) {
        (Some(from_header), Some(from_catalog)) if from_catalog > from_header => {
            format!("{}.{}", from_catalog.0, from_catalog.1)
        }
        (None, Some(from_catalog)) => format!("{}.{}", from_catalog.0, from_catalog.1),
        _ => header,
    })
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// What the page-tree walk found.
#[derive(Default)]
struct PageTree {
    page_count: u64,
    pages: Vec<PageGeometry>,
}

/// Page attributes a `/Pages` node passes down to its descendants (PDF 32000-1 §7.7.3.4).
#[derive(Debug, Clone, Copy, Default)]
struct Inherited {
    media_box: Option<Rect>,
    crop_box: Option<Rect>,
    rotation: Option<u16>,
}

impl Inherited {
    /// These attributes as `node` overrides them: a value the node sets and that can be read
    /// replaces the inherited one; an unreadable value is ignored, as poppler does.
    fn overridden_by(
        self,
        node: &Dictionary,
        objects: &mut dyn Objects,
    ) -> Result<Inherited, NeedsWholeFile> {
        Ok(Inherited {
            media_box: read_box(node, b"MediaBox", objects)?.or(self.media_box),
            crop_box: read_box(node, b"CropBox", objects)?.or(self.crop_box),
            rotation: read_rotation(node, objects)?.or(self.rotation),
        })
    }

    fn geometry(self) -> PageGeometry {
        let media_box = self.media_box.unwrap_or(DEFAULT_MEDIA_BOX);
        // A crop box that misses the media box entirely is ignored, as viewers do.
        let visible = self.crop_box.and_then(|crop| crop.intersection(&media_box)).unwrap_or(media_box);
        PageGeometry {
            width_pt: round_to_thousandths(visible.right - visible.left),
            height_pt: round_to_thousandths(visible.top - visible.bottom),
            rotation: self.rotation.unwrap_or(0),
        }
    }
}

/// Walks the page tree from the catalog's `/Pages`, depth first in document order, carrying the
/// inheritable attributes down the tree as poppler does (so a wrong or cyclic `/Parent` entry
/// changes nothing). Every node is visited once: a cycle, or a page listed twice, adds nothing.
/// Kids that are not dictionaries (missing objects) are not pages. `None` when there is no
/// root node to start from.
fn walk_page_tree(objects: &mut dyn Objects) -> Result<Option<PageTree>, NeedsWholeFile> {
    let Some(catalog) = catalog(objects)? else { return Ok(None) };
    let Ok(root_reference) = catalog.get(b"Pages") else { return Ok(None) };
    let root_id = root_reference.as_reference().ok();
    let Some(Object::Dictionary(root)) = resolve(objects, root_reference)? else { return Ok(None) };
    let mut visited: HashSet<ObjectId> = root_id.into_iter().collect();
    let mut tree = PageTree::default();

    let root_attributes = Inherited::default().overridden_by(&root, objects)?;
    let Some(root_kids) = kids_of(&root, objects)? else {
        // A root without /Kids has no pages.
        return Ok(Some(tree));
    };
    // One entry per open `/Pages` node: its remaining kids and what they inherit.
    let mut open_nodes = vec![(root_kids.into_iter(), root_attributes)];
    while let Some((kids, inherited)) = open_nodes.last_mut() {
        let inherited = *inherited;
        let Some(kid) = kids.next() else {
            open_nodes.pop();
            continue;
        };
        let Ok(kid_id) = kid.as_reference() else { continue };
        if !visited.insert(kid_id) {
            continue;
        }
        let Some(Object::Dictionary(node)) = objects.object(kid_id)? else { continue };
        let attributes = inherited.overridden_by(&node, objects)?;
        if is_pages_node(&node) {
            if open_nodes.len() < MAX_TREE_DEPTH
                && let Some(grandchildren) = kids_of(&node, objects)?
            {
                open_nodes.push((grandchildren.into_iter(), attributes));
            }
        } else {
            tree.page_count += 1;
            if tree.pages.len() < MAX_LISTED_PAGES {
                tree.pages.push(attributes.geometry());
            }
        }
    }
    Ok(Some(tree))
}

/// An intermediate node rather than a page: `/Type /Pages`, or, when the type is missing or
/// wrong, a dictionary with `/Kids` (poppler's rule).
fn is_pages_node(node: &Dictionary) -> bool {
    match node.get(b"Type").and_then(Object::as_name) {
        Ok(b"Pages") => true,
        Ok(b"Page") => false,
        _ => node.has(b"Kids"),
    }
}

fn kids_of(node: &Dictionary, objects: &mut dyn Objects) -> Result<Option<Vec<Object>>, NeedsWholeFile> {
    Ok(match entry(objects, node, b"Kids")? {
        Some(Object::Array(kids)) => Some(kids),
        _ => None,
    })
}

/// A rectangle with its corners in order (`left <= right`, `bottom <= top`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    left: f64,
    bottom: f64,
    right: f64,
    top: f64,
}

impl Rect {
    /// A rectangle from any two opposite corners (files write them in either order).
    fn from_corners(x0: f64, y0: f64, x1: f64, y1: f64) -> Rect {
        Rect { left: x0.min(x1), bottom: y0.min(y1), right: x0.max(x1), top: y0.max(y1) }
    }

    /// The overlap of two rectangles, `None` when it has no area.
    fn intersection(&self, other: &Rect) -> Option<Rect> {
        let overlap = Rect {
            left: self.left.max(other.left),
            bottom: self.bottom.max(other.bottom),
            right: self.right.min(other.right),
            top: self.top.min(other.top),
        };
        (overlap.left < overlap.right && overlap.bottom < overlap.top).then_some(overlap)
    }
}

/// A box entry (`/MediaBox`, `/CropBox`): an array of four numbers, each possibly an indirect
/// reference, as is the array itself. Anything else reads as absent.
fn read_box(
    node: &Dictionary,
    key: &[u8],
    objects: &mut dyn Objects,
) -> Result<Option<Rect>, NeedsWholeFile> {
    let Some(Object::Array(array)) = entry(objects, node, key)? else { return Ok(None) };
    let [x0, y0, x1, y1] = array.as_slice() else { return Ok(None) };
    let mut corners = [0.0; 4];
    for (corner, object) in corners.iter_mut().zip([x0, y0, x1, y1]) {
        let value = match resolve(objects, object)? {
            Some(number) => number.as_float().ok().map(f64::from),
            None => None,
        };
        match value.filter(|value| value.is_finite()) {
            Some(value) => *corner = value,
            None => return Ok(None),
        }
    }
    let [x0, y0, x1, y1] = corners;
    Ok(Some(Rect::from_corners(x0, y0, x1, y1)))
}

/// `/Rotate` as clockwise degrees 0, 90, 180 or 270. The specification allows multiples of 90
/// only; negative values and values past 360 are turned into that range (-90 is 270, 450 is
/// 90), and other angles round to the nearest quarter turn, as MuPDF does (poppler would report
/// 45 for 45). A real number is accepted (poppler ignores one, MuPDF reads it).
fn read_rotation(node: &Dictionary, objects: &mut dyn Objects) -> Result<Option<u16>, NeedsWholeFile> {
    let degrees = match entry(objects, node, b"Rotate")? {
        Some(Object::Integer(degrees)) => degrees.rem_euclid(360) as f64,
        Some(Object::Real(degrees)) if degrees.is_finite() => f64::from(degrees).rem_euclid(360.0),
        _ => return Ok(None),
    };
    let quarter_turns = (degrees / 90.0).round() as u16 % 4;
    Ok(Some(quarter_turns * 90))
}

/// Box coordinates come as 32-bit floats from lopdf: 595.276 reads as 595.2760009765625.
fn round_to_thousandths(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn metadata_of(bytes: &[u8]) -> Result<PdfMetadata, ExtractError> {
        read_metadata(bytes)
    }

    fn page(width_pt: f64, height_pt: f64, rotation: u16) -> PageGeometry {
        PageGeometry { width_pt, height_pt, rotation }
    }

    const LETTER: PageGeometry = PageGeometry { width_pt: 612.0, height_pt: 792.0, rotation: 0 };
    const A4: PageGeometry = PageGeometry { width_pt: 595.0, height_pt: 842.0, rotation: 0 };

    /// A PDF with a classic cross-reference table and exact offsets, objects numbered from 1.
    fn build_pdf(objects: &[&[u8]]) -> Vec<u8> {
        build_pdf_with_trailer(objects, "")
    }

    /// [`build_pdf`] with more trailer entries.
    fn build_pdf_with_trailer(objects: &[&[u8]], trailer_entries: &str) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
        let mut offsets = Vec::new();
        for (index, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", index + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for offset in offsets {
            out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        let size = objects.len() + 1;
        out.extend_from_slice(
            format!("trailer\n<< /Size {size} /Root 1 0 R {trailer_entries}>>\nstartxref\n{xref}\n%%EOF\n")
                .as_bytes(),
        );
        out
    }

    #[test]
    fn simple_letter_page() {
        let m = metadata_of(&fixture("pdf/simple_letter_1page.pdf")).unwrap();
        assert_eq!((m.page_count, m.pdf_version.as_str(), m.encrypted), (Some(1), "1.4", false));
        assert_eq!(m.pages, [LETTER]);
    }

    #[test]
    fn mediabox_and_rotate_are_inherited_through_intermediate_nodes() {
        let m = metadata_of(&fixture("pdf/inherited_mediabox_rotate_3pages.pdf")).unwrap();
        assert_eq!(m.page_count, Some(3));
        assert_eq!(m.pages, [page(612.0, 792.0, 90), page(595.0, 842.0, 90), page(612.0, 792.0, 0)]);
    }

    #[test]
    fn real_number_boxes_and_mixed_sizes() {
        let m = metadata_of(&fixture("pdf/mixed_sizes_a4_letter_landscape.pdf")).unwrap();
        assert_eq!(m.pages, [page(595.276, 841.89, 0), page(792.0, 612.0, 0)]);
    }

    #[test]
    fn the_last_revision_of_an_incremental_update_wins() {
        let m = metadata_of(&fixture("pdf/incremental_update.pdf")).unwrap();
        assert_eq!(m.page_count, Some(2));
        assert_eq!(m.pages, [A4, LETTER]);
    }

    #[test]
    fn linearized_and_object_stream_files() {
        let linearized = metadata_of(&fixture("pdf/linearized_3pages.pdf")).unwrap();
        assert_eq!((linearized.page_count, linearized.pages.as_slice()), (Some(3), &[LETTER; 3][..]));
        let object_streams = metadata_of(&fixture("pdf/object_streams_3pages.pdf")).unwrap();
        assert_eq!(object_streams.pdf_version, "1.5");
        assert_eq!((object_streams.page_count, object_streams.pages.as_slice()), (Some(3), &[LETTER; 3][..]));
    }

    #[test]
    fn wrong_xref_offsets_are_repaired() {
        let m = metadata_of(&fixture("pdf/broken_xref_offsets.pdf")).unwrap();
        assert_eq!((m.page_count, m.pages.as_slice()), (Some(1), &[LETTER][..]));
    }

    #[test]
    fn garbage_after_the_header_is_corrupt() {
        let error = metadata_of(&fixture("pdf/corrupt_header_then_garbage.pdf")).unwrap_err();
        assert!(matches!(error, ExtractError::Corrupt(_)), "{error:?}");
    }

    #[test]
    fn empty_user_password_opens_and_is_reported_encrypted() {
        for (name, version) in [
            ("encrypted_aes256_empty_user_password.pdf", "1.7"),
            ("encrypted_aes128_empty_user_password.pdf", "1.6"),
        ] {
            let m = metadata_of(&fixture(&format!("pdf/{name}"))).unwrap();
            assert!(m.encrypted, "{name}");
            assert_eq!(
                (m.page_count, m.pdf_version.as_str(), m.pages.as_slice()),
                (Some(1), version, &[LETTER][..])
            );
        }
    }

    #[test]
    fn a_real_user_password_still_shows_the_plain_page_tree() {
        let m = metadata_of(&fixture("pdf/encrypted_aes256_user_password.pdf")).unwrap();
        assert!(m.encrypted);
        assert_eq!(
            (m.page_count, m.pdf_version.as_str(), m.pages.as_slice()),
            (Some(1), "1.7", &[LETTER][..])
        );
    }

    #[test]
    fn an_unreadable_page_tree_behind_a_password_leaves_the_count_unknown() {
        // The catalog points at a page tree that is not there, as when it sits in an encrypted
        // object stream; the encryption dictionary accepts no empty password.
        let pdf = build_pdf_with_trailer(
            &[
                b"<< /Type /Catalog /Pages 3 0 R >>",
                b"<< /Filter /Standard /V 5 /R 6 /Length 256 /O <00> /U <00> /OE <00> /UE <00> /P -4 >>",
            ],
            "/Encrypt 2 0 R ",
        );
        let m = metadata_of(&pdf).unwrap();
        assert!(m.encrypted);
        assert_eq!((m.page_count, m.pages.len(), m.pdf_version.as_str()), (None, 0, "1.4"));
    }

    #[test]
    fn deeply_nested_arrays_do_not_crash() {
        let m = metadata_of(&fixture("hostile/pdf_nested_arrays_10000.pdf")).unwrap();
        assert_eq!((m.page_count, m.pages.as_slice()), (Some(1), &[LETTER][..]));
    }

    #[test]
    fn nothing_or_noise_is_corrupt() {
        for bytes in [&b""[..], b"%PDF-1.7\n", b"%PDF-1.4\ntrailer << /Root 1 0 R >>\n%%EOF\n"] {
            let error = metadata_of(bytes).unwrap_err();
            assert!(matches!(error, ExtractError::Corrupt(_)), "{bytes:?}: {error:?}");
        }
    }

    #[test]
    fn crop_box_clips_reversed_and_indirect_boxes_read_rotation_normalised() {
        let pdf = build_pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R /Version /1.7 >>",
            b"<< /Type /Pages /Kids [3 0 R 4 0 R 5 0 R 6 0 R 8 0 R] /Count 5 >>",
            // reversed corners; visible area is the crop box; -90 is 270
            b"<< /Type /Page /Parent 2 0 R /MediaBox [612 792 0 0] /CropBox [10 10 300 400] /Rotate -90 >>",
            // no MediaBox anywhere: letter; 450 is 90
            b"<< /Type /Page /Parent 2 0 R /Rotate 450 >>",
            // a number given by reference; 44 rounds to 0, a real 90.0 counts
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 7 0 R] /Rotate 44 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox 9 0 R /CropBox [500 500 900 900] /Rotate 90.0 >>",
            b"200",
            // an unreadable box is ignored; the crop box sticks out of the media box
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 (x) 1] /CropBox [-10 -10 100 100] /Rotate /Ninety >>",
            b"[0 0 400 300]",
        ]);
        let m = metadata_of(&pdf).unwrap();
        assert_eq!(m.pdf_version, "1.7", "the catalog's later /Version wins");
        assert_eq!(
            m.pages,
            [
                page(290.0, 390.0, 270),
                page(612.0, 792.0, 90),
                page(100.0, 200.0, 0),
                page(400.0, 300.0, 90),
                page(100.0, 100.0, 0),
            ]
        );
    }

    #[test]
    fn a_lying_count_and_cycles_give_the_true_page_count() {
        let lying = build_pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ]);
        assert_eq!(metadata_of(&lying).unwrap().page_count, Some(1));

        let cyclic = build_pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 4 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
            b"<< /Type /Pages /Parent 4 0 R /Kids [4 0 R 2 0 R 5 0 R] /Count 5 >>",
            b"<< /Parent 4 0 R /MediaBox [0 0 595 842] >>",
        ]);
        let m = metadata_of(&cyclic).unwrap();
        assert_eq!((m.page_count, m.pages.as_slice()), (Some(2), &[LETTER, A4][..]));
    }

    #[test]
    fn a_very_deep_page_tree_is_cut_off_not_overflowed() {
        // 2,000 nested /Pages nodes with a page at each level.
        let depth = 2000;
        let mut objects: Vec<Vec<u8>> = vec![b"<< /Type /Catalog /Pages 2 0 R >>".to_vec()];
        for level in 0..depth {
            let node = 2 + 2 * level;
            objects
                .push(format!("<< /Type /Pages /Kids [{} 0 R {} 0 R] >>", node + 1, node + 2).into_bytes());
            objects.push(b"<< /Type /Page /MediaBox [0 0 10 10] >>".to_vec());
        }
        objects.push(b"<< /Type /Page >>".to_vec());
        let pdf = build_pdf(&objects.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let m = metadata_of(&pdf).unwrap();
        assert_eq!(m.page_count, Some(MAX_TREE_DEPTH as u64));
    }

    #[test]
    fn page_list_stops_at_the_cap_but_the_count_does_not() {
        let pages = MAX_LISTED_PAGES + 5;
        let kids: String = (0..pages).map(|i| format!("{} 0 R ", i + 3)).collect();
        let mut objects: Vec<Vec<u8>> = vec![
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            format!("<< /Type /Pages /Kids [{kids}] /MediaBox [0 0 612 792] >>").into_bytes(),
        ];
        objects.extend((0..pages).map(|_| b"<< /Type /Page /Parent 2 0 R >>".to_vec()));
        let pdf = build_pdf(&objects.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let m = metadata_of(&pdf).unwrap();
        assert_eq!(m.page_count, Some(pages as u64));
        assert_eq!(m.pages.len(), MAX_LISTED_PAGES);
    }

    #[test]
    fn no_page_tree_is_corrupt() {
        let pdf = build_pdf(&[b"<< /Type /Catalog >>"]);
        let error = metadata_of(&pdf).unwrap_err();
        assert!(matches!(error, ExtractError::Corrupt(_)), "{error:?}");
    }

    #[test]
    fn files_over_the_cap_are_refused_before_reading() {
        let mut source = Cursor::new(vec![b' '; 2048]);
        let error = read_whole_file(&mut source, 1024).unwrap_err();
        assert!(matches!(error, ExtractError::TooLarge(_)), "{error:?}");
        assert_eq!(read_whole_file(&mut source, 4096).unwrap().len(), 2048);
    }

    #[test]
    fn only_the_exact_encrypt_name_is_renamed() {
        let renamed = without_encrypt_entry(b"<< /Encrypt 6 0 R /EncryptMetadata true /Encrypt>>");
        assert_eq!(renamed, b"<< /Ignored 6 0 R /EncryptMetadata true /Ignored>>");
    }

    /// Each fixture read by range (`Err`: the reader gave up) and whole.
    fn both_ways(bytes: &[u8]) -> (Result<PdfMetadata, NeedsWholeFile>, Result<PdfMetadata, ExtractError>) {
        let mut source = Cursor::new(bytes.to_vec());
        (read_metadata_by_range(&mut source, bytes.len() as u64), read_metadata(bytes))
    }

    #[test]
    fn read_by_range_every_pdf_answers_as_parsed_whole_or_is_parsed_whole() {
        let mut by_range = Vec::new();
        for dir in ["pdf", "hostile"] {
            let entries =
                std::fs::read_dir(format!("{}/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            for path in entries.map(|entry| entry.unwrap().path()) {
                let bytes = std::fs::read(&path).unwrap();
                if !bytes.windows(5).take(1024).any(|window| window == b"%PDF-") {
                    continue;
                }
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if let (Ok(ranged), whole) = both_ways(&bytes) {
                    let whole = whole.unwrap_or_else(|e| panic!("{name}: by range {ranged:?}, whole {e:?}"));
                    let as_json = |m: &PdfMetadata| serde_json::to_value(m).unwrap();
                    assert_eq!(as_json(&ranged), as_json(&whole), "{name}");
                    by_range.push(name);
                }
            }
        }
        by_range.sort();
        for expected in [
            "encrypted_aes128_empty_user_password.pdf",
            "encrypted_aes256_empty_user_password.pdf",
            "encrypted_aes256_user_password.pdf",
            "incremental_update.pdf",
            "inherited_mediabox_rotate_3pages.pdf",
            "linearized_3pages.pdf",
            "mixed_sizes_a4_letter_landscape.pdf",
            "object_streams_3pages.pdf",
            "simple_letter_1page.pdf",
        ] {
            assert!(
                by_range.iter().any(|name| name == expected),
                "{expected} not read by range: {by_range:?}"
            );
        }
    }

    #[test]
    fn what_the_range_reader_cannot_trust_goes_to_the_whole_file_parse() {
        for name in ["pdf/broken_xref_offsets.pdf", "pdf/corrupt_header_then_garbage.pdf"] {
            let (ranged, _) = both_ways(&fixture(name));
            assert!(ranged.is_err(), "{name}: {ranged:?}");
        }
        // A /Prev loop; an offset past the end; no startxref at all.
        let simple = fixture("pdf/simple_letter_1page.pdf");
        let text = String::from_utf8_lossy(&simple).into_owned();
        let start = text.rfind("startxref").unwrap();
        let offset: String =
            text[start + 9..].trim_start().chars().take_while(char::is_ascii_digit).collect();
        let looped = text.replace("trailer\n<<", &format!("trailer\n<< /Prev {offset}"));
        let past_end = format!("{}startxref\n999999999\n%%EOF\n", &text[..start]);
        for (what, bytes) in [
            ("a /Prev loop", looped.into_bytes()),
            ("past the end", past_end.into_bytes()),
            ("none", simple[..start].to_vec()),
        ] {
            let (ranged, whole) = both_ways(&bytes);
            assert!(ranged.is_err(), "{what}: {ranged:?}");
            assert!(whole.is_ok(), "{what}: lopdf reads it all the same");
        }
    }

    #[test]
    fn a_large_pdf_costs_its_page_tree_not_its_size() {
        // Three pages and a 40 MiB image stream between them, as a scan has.
        let image = format!("<< /Length {} >>\nstream\n{}\nendstream", 40 << 20, "x".repeat(40 << 20));
        let pdf = build_pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [4 0 R 5 0 R 6 0 R] /MediaBox [0 0 595 842] >>",
            image.as_bytes(),
            b"<< /Type /Page /Parent 2 0 R >>",
            b"<< /Type /Page /Parent 2 0 R /Rotate 90 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ]);
        let mut source = Cursor::new(pdf.clone());
        let mut ranged = RangedPdf::open(&mut source, pdf.len() as u64).unwrap();
        let tree = walk_page_tree(&mut ranged).unwrap().unwrap();
        assert_eq!((tree.page_count, tree.pages.as_slice()), (3, &[A4, page(595.0, 842.0, 90), LETTER][..]));
        let read = ranged.bytes_read();
        assert!(read * 100 < pdf.len() as u64, "{read} of {} bytes read", pdf.len());
    }

    /// A differential run over a mutation campaign's PDF mutants (`python3 bench/mutate.py
    /// --keep --out DIR`, then `PDF_MUTANTS=DIR/mutants cargo test --lib -- --ignored
    /// pdf_mutants`): each mutant the range reader answers gets lopdf's whole-file answer, or,
    /// where lopdf fails on or miscounts the damage, the undamaged fixture's own answer.
    #[test]
    #[ignore = "needs PDF_MUTANTS, a folder of mutants from bench/mutate.py --keep"]
    fn pdf_mutants_read_by_range_answer_as_lopdf_or_as_the_undamaged_file() {
        let dir = std::env::var("PDF_MUTANTS").expect("PDF_MUTANTS: a folder of bench/mutate.py's mutants");
        let as_json = |m: &PdfMetadata| serde_json::to_value(m).unwrap();
        let (mut mutants, mut by_range, mut as_original) = (0, 0, 0);
        for path in std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // NNNNN-mutation-fixture.pdf
            let Some(fixture_name) = name.splitn(3, '-').nth(2).filter(|f| f.ends_with(".pdf")) else {
                continue;
            };
            mutants += 1;
            let (ranged, whole) = both_ways(&std::fs::read(&path).unwrap());
            let Ok(ranged) = ranged else { continue };
            by_range += 1;
            if whole.as_ref().is_ok_and(|whole| as_json(whole) == as_json(&ranged)) {
                continue;
            }
            let original = read_metadata(&fixture(&format!("pdf/{fixture_name}"))).unwrap();
            assert_eq!(as_json(&ranged), as_json(&original), "{name}: lopdf says {whole:?}");
            as_original += 1;
        }
        eprintln!(
            "{mutants} PDF mutants, {by_range} read by range, {as_original} of them as the undamaged file where lopdf differs"
        );
        assert!(mutants > 0);
    }

    #[test]
    fn extract_reports_the_pdf_data_type() {
        let mut source = Cursor::new(fixture("pdf/simple_letter_1page.pdf"));
        let extracted = extract(&mut source).unwrap();
        assert_eq!(extracted.mime_type, "application/pdf");
        assert_eq!(extracted.metadata["pages"][0]["width_pt"], 612.0);
        assert_eq!(extracted.metadata["page_count"], 1);
    }
}
