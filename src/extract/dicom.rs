//! DICOM metadata (DESIGN §3 `dicom`): identifiers, image geometry and an allow-list of
//! attributes, read from the header of the data set; reading stops at Pixel Data, which is
//! never read.
//!
//! Files come in several layouts, all read here: the standard one (128-byte preamble, `DICM`,
//! File Meta group), `DICM` and the meta group without the preamble, the meta group without
//! even `DICM`, and a bare data set without File Meta group (old ACR-NEMA-style files), whose
//! transfer syntax is recognised from its first element. Transfer syntaxes: implicit VR little
//! endian, explicit VR little and big endian, deflated explicit VR little endian, and every
//! encapsulated (compressed) pixel data syntax, since only the header is parsed.
//!
//! Both the File Meta group and the data set are walked element by element by
//! [`DataSetWalker`], as pydicom reads them, rather than loaded with `dicom-object` (which
//! builds nested sequences by recursion, so that tens of thousands of nested sequences overflow
//! the stack, and allocates every value by its declared length before reading it) or read with
//! `dicom-parser`'s token reader (which keeps one encoding for the whole data set, where real
//! files switch: an undefined-length UN element holds implicit VR little endian items, and a
//! data set may be in the other VR encoding than its transfer syntax says). The walk keeps
//! nesting in a counter with a limit, checks every declared length against the bytes left in
//! the file, reads only the values it reports (decoded by `dicom-parser`'s value decoder) and
//! skips the rest.

use std::collections::BTreeMap;
use std::io::{self, Read, SeekFrom};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, TagRange};
use dicom_core::header::{DataElementHeader, Length};
use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_encoding::Endianness;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_parser::stateful::decode::{DynStatefulDecoder, StatefulDecode};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::{ExtractError, Extracted, ReadSeek};
use crate::job::DataType;

/// The attributes copied into `tags` when no allow-list is configured.
///
/// The rule: nothing that the Basic Application Level Confidentiality Profile of DICOM PS3.15
/// Annex E (Table E.1-1) removes, empties, replaces or cleans may be here, so that the default
/// output is as safe as a de-identified file. That excludes every patient attribute (name, IDs,
/// birth date, sex, age, size, weight, address), every date and time (StudyDate, SeriesDate,
/// AcquisitionDate, ContentDate, …), people and places (InstitutionName, ReferringPhysicianName,
/// OperatorsName, StationName, DeviceSerialNumber), AccessionNumber and StudyID, the free-text
/// descriptions (StudyDescription, SeriesDescription, ProtocolName, ImageComments), and further
/// UIDs (FrameOfReferenceUID; the study, series and instance UIDs are top-level fields by
/// contract). What remains describes the equipment and the image: useful for labeling, and
/// identifying nobody. Operators who need more configure their own list.
pub const DEFAULT_TAGS: &[&str] = &[
    // equipment
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    // what was imaged, and how
    "ImageType",
    "BodyPartExamined",
    "Laterality",
    "ImageLaterality",
    "ViewPosition",
    "SeriesNumber",
    "InstanceNumber",
    // CT and X-ray acquisition
    "KVP",
    "XRayTubeCurrent",
    "ExposureTime",
    "ConvolutionKernel",
    // MR acquisition
    "MagneticFieldStrength",
    "RepetitionTime",
    "EchoTime",
    "FlipAngle",
    "ScanningSequence",
    "SequenceVariant",
    // geometry
    "SliceThickness",
    "SpacingBetweenSlices",
    "SliceLocation",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "ImagerPixelSpacing",
    // pixel encoding and display
    "SamplesPerPixel",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "RescaleIntercept",
    "RescaleSlope",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "LossyImageCompression",
];

/// Values per attribute copied into `tags`. Longer lists are lookup tables or other bulk data,
/// not metadata a user reads; such an attribute is left out.
const MAX_VALUES_PER_TAG: usize = 64;

/// The longest value read. The values reported are UIDs, codes, numbers and short texts; a
/// longer one is bulk data and is skipped, as if absent.
const MAX_VALUE_BYTES: u32 = 1 << 20;

/// The longest text value reported, in UTF-8 bytes. DICOM's own limits are 64 characters for
/// UIDs and codes and 10,240 for long texts, but UT, UC and UR values are unbounded, and a
/// result that grows with the file may pass the broker's message size (issue 10). A longer
/// value is cut at a character boundary and ends with [`TRUNCATION_MARK`]: most of a long
/// text is more use to a reader than nothing, and the mark says it is not all of it.
const MAX_TEXT_BYTES: usize = 1024;
/// What ends a text value cut at [`MAX_TEXT_BYTES`] (U+2026, three bytes in UTF-8).
const TRUNCATION_MARK: &str = "\u{2026}";

/// What a value of a data set of unknown size (deflated) reserves before its bytes arrive.
const UNKNOWN_SIZE_RESERVE: u64 = 64 * 1024;

/// Sequences nested deeper than this make a file corrupt. Real files nest a few levels (ten is
/// a lot); the limit keeps hostile nesting from growing the reader's stack of open sequences.
const MAX_SEQUENCE_DEPTH: usize = 64;

/// Root data set attributes the top-level fields are made of, read whatever the allow-list.
/// Specific Character Set and Pixel Representation are read for their effect on the decoder:
/// the text encoding of later values, and the sign of ambiguous implicit VR values.
const FIELD_TAGS: [Tag; 13] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::PIXEL_REPRESENTATION,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::MODALITY,
    tags::ROWS,
    tags::COLUMNS,
    tags::NUMBER_OF_FRAMES,
    tags::BITS_ALLOCATED,
    tags::PHOTOMETRIC_INTERPRETATION,
    tags::PIXEL_SPACING,
];

/// Pixel Data (7FE0,0010), and Float and Double Float Pixel Data before it, are group 7FE0;
/// nothing after them in the root data set is reported.
const PIXEL_DATA_GROUP: u16 = 0x7FE0;

/// Transfer syntaxes a bare data set (no File Meta group) can be in.
const IMPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_LITTLE_ENDIAN: &str = "1.2.840.10008.1.2.1";
const EXPLICIT_VR_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// The `metadata` of a DICOM file. Text values are trimmed of DICOM's space and NUL padding;
/// an attribute that is absent or empty is `None`.
#[derive(Debug, Serialize)]
pub struct DicomMetadata {
    /// From the File Meta group; for a file without one, the syntax it was read as.
    pub transfer_syntax_uid: String,
    /// From the data set, or the File Meta group's Media Storage SOP Class UID without one.
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub modality: Option<String>,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    /// 1 for an image without (0028,0008) Number of Frames; `None` for objects without pixels
    /// (no Rows), such as structured reports.
    pub number_of_frames: Option<u32>,
    pub bits_allocated: Option<u16>,
    pub photometric_interpretation: Option<String>,
    /// (0028,0030) in millimetres: `[row spacing, column spacing]`.
    pub pixel_spacing: Option<[f64; 2]>,
    /// The allow-listed attributes present in the file, by keyword (see [`value_json`]).
    pub tags: Map<String, Json>,
}

/// Extracts the DESIGN §3 fields and the allowed tags; never reads pixel data.
///
/// `tags` lists the attribute keywords to copy (`None`: [`DEFAULT_TAGS`]).
pub fn extract(source: &mut dyn ReadSeek, tags: Option<&[String]>) -> Result<Extracted, ExtractError> {
    let keywords: Vec<&str> = match tags {
        Some(keywords) => keywords.iter().map(String::as_str).collect(),
        None => DEFAULT_TAGS.to_vec(),
    };
    let allowed = allowed_tags(&keywords);
    let meta = read_file_meta(source)?;
    let wanted: Vec<Tag> = FIELD_TAGS.iter().copied().chain(allowed.iter().map(|(_, tag)| *tag)).collect();
    let values = read_root_values(source, &meta, &wanted)?;
    let metadata = describe(&meta, &values, &allowed);
    Ok(Extracted::new(DataType::Dicom, "application/dicom", metadata))
}

/// The allow-listed keywords with their tags. Keywords the standard dictionary does not know
/// are left out, and so are repeating-group attributes (overlays, curves), which have no single
/// tag.
fn allowed_tags<'k>(keywords: &[&'k str]) -> Vec<(&'k str, Tag)> {
    keywords
        .iter()
        .filter_map(|&keyword| match StandardDataDictionary.by_name(keyword)?.tag_range() {
            TagRange::Single(tag) => Some((keyword, tag)),
            _ => None,
        })
        .collect()
}

/// What the File Meta group says, and where the data set starts.
struct FileMeta {
    transfer_syntax_uid: String,
    /// Media Storage SOP Class UID: the SOP class when the data set lacks its own.
    media_storage_sop_class_uid: Option<String>,
    data_set_offset: u64,
}

/// Reads the File Meta group wherever the layout puts it, or recognises the transfer syntax of
/// a bare data set.
fn read_file_meta(source: &mut dyn ReadSeek) -> Result<FileMeta, ExtractError> {
    source.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(132);
    (&mut *source).take(132).read_to_end(&mut head)?;

    let meta_offset = if head.get(128..132) == Some(b"DICM") {
        132
    } else if head.get(..4) == Some(b"DICM") {
        4
    } else if head.get(..2) == Some(&[0x02, 0x00]) {
        // The File Meta group (group 0002) without the preamble and the magic code before it.
        0
    } else {
        let transfer_syntax = bare_data_set_syntax(&head).ok_or_else(|| {
            ExtractError::corrupt(
                "DICOM",
                "there is no DICM marker, no File Meta group, and the data does not start with a data element",
            )
        })?;
        return Ok(FileMeta {
            transfer_syntax_uid: transfer_syntax.to_owned(),
            media_storage_sop_class_uid: None,
            data_set_offset: 0,
        });
    };
    // The group is read element by element, as pydicom and DCMTK do, up to the first element of
    // another group: its (0002,0000) group length is optional in practice (old writers leave it
    // out) and, where present, not needed.
    source.seek(SeekFrom::Start(meta_offset))?;
    let mut walker = DataSetWalker::new(Box::new(&mut *source), None, SpecificCharacterSet::default());
    let meta_tags = [tags::MEDIA_STORAGE_SOP_CLASS_UID, tags::TRANSFER_SYNTAX_UID];
    let end = walker.walk(Encoding::EXPLICIT_VR_LITTLE_ENDIAN, &meta_tags, |tag| tag.group() != 0x0002)?;
    let meta_text = |tag| text(&walker.values, tag);
    let transfer_syntax_uid = meta_text(tags::TRANSFER_SYNTAX_UID)
        .ok_or_else(|| ExtractError::corrupt("DICOM", "the File Meta group has no Transfer Syntax UID"))?;
    Ok(FileMeta {
        transfer_syntax_uid,
        media_storage_sop_class_uid: meta_text(tags::MEDIA_STORAGE_SOP_CLASS_UID),
        data_set_offset: meta_offset + end,
    })
}

/// The transfer syntax of a data set without File Meta group, from its first element header:
/// a known two-letter VR after the tag means explicit VR (its group number tells the byte
/// order), else implicit VR little endian, the default syntax. The first group of a data set
/// is a low one (0008 in practice); anything else is not a data set.
fn bare_data_set_syntax(head: &[u8]) -> Option<&'static str> {
    let header = head.get(..8)?;
    let group_le = u16::from_le_bytes([header[0], header[1]]);
    let group_be = u16::from_be_bytes([header[0], header[1]]);
    let plausible = |group: u16| group.is_multiple_of(2) && (0x0004..0x0100).contains(&group);
    let explicit = VR::from_binary([header[4], header[5]]).is_some();
    match (explicit, plausible(group_le), plausible(group_be)) {
        (true, true, _) => Some(EXPLICIT_VR_LITTLE_ENDIAN),
        (true, false, true) => Some(EXPLICIT_VR_BIG_ENDIAN),
        (false, true, _) => Some(IMPLICIT_VR_LITTLE_ENDIAN),
        _ => None,
    }
}

/// Values of the root data set for the `wanted` tags, by tag, with their VR.
type RootValues = BTreeMap<Tag, (VR, PrimitiveValue)>;

/// Walks the data set from its start up to Pixel Data and reads the values of the `wanted`
/// root attributes; everything else, nested sequences included, is skipped.
fn read_root_values(
    source: &mut dyn ReadSeek,
    meta: &FileMeta,
    wanted: &[Tag],
) -> Result<RootValues, ExtractError> {
    let transfer_syntax = TransferSyntaxRegistry.get(&meta.transfer_syntax_uid).ok_or_else(|| {
        ExtractError::Unsupported(format!(
            "DICOM transfer syntax {} is not a known one",
            meta.transfer_syntax_uid
        ))
    })?;
    let file_size = source.seek(SeekFrom::End(0))?;
    source.seek(SeekFrom::Start(meta.data_set_offset))?;
    // Declared lengths can be checked against the bytes left, unless the data set is deflated.
    let mut data_set_size = Some(file_size.saturating_sub(meta.data_set_offset));
    let data_set: Box<dyn Read + '_> = match transfer_syntax.codec() {
        Codec::Dataset(Some(adapter)) => {
            data_set_size = None;
            adapter.adapt_reader(Box::new(&mut *source))
        }
        Codec::Dataset(None) => {
            return Err(ExtractError::Unsupported(format!(
                "DICOM transfer syntax {} ({}) is not supported",
                transfer_syntax.name(),
                transfer_syntax.uid()
            )));
        }
        Codec::None | Codec::EncapsulatedPixelData(..) => Box::new(&mut *source),
    };
    let encoding = Encoding {
        explicit_vr: transfer_syntax.uid() != IMPLICIT_VR_LITTLE_ENDIAN,
        big_endian: transfer_syntax.endianness() == Endianness::Big,
    };
    let mut walker = DataSetWalker::new(data_set, data_set_size, SpecificCharacterSet::default());
    walker.walk(encoding, wanted, |tag| tag.group() >= PIXEL_DATA_GROUP)?;
    Ok(walker.values)
}

/// How the elements of a data set are encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Encoding {
    explicit_vr: bool,
    big_endian: bool,
}

impl Encoding {
    const EXPLICIT_VR_LITTLE_ENDIAN: Self = Self { explicit_vr: true, big_endian: false };
    /// The encoding of the items of an undefined-length UN element (PS3.5 §6.2.2).
    const IMPLICIT_VR_LITTLE_ENDIAN: Self = Self { explicit_vr: false, big_endian: false };

    fn u16(self, bytes: [u8; 2]) -> u16 {
        if self.big_endian { u16::from_be_bytes(bytes) } else { u16::from_le_bytes(bytes) }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        if self.big_endian { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) }
    }

    /// A transfer syntax whose values are in this byte order (values do not depend on how the
    /// VR is given).
    fn value_syntax(self) -> &'static str {
        if self.big_endian { EXPLICIT_VR_BIG_ENDIAN } else { EXPLICIT_VR_LITTLE_ENDIAN }
    }
}

/// The length that means "until a delimitation item".
const UNDEFINED_LENGTH: u32 = u32::MAX;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_DELIMITATION: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_DELIMITATION: Tag = Tag(0xFFFE, 0xE0DD);

/// Whether the two bytes after a tag are a VR, as pydicom decides between explicit and
/// implicit VR: in implicit VR they are the low half of a length, which would have to be over
/// 16 KiB (0x4141) for both bytes to be capital letters.
fn looks_like_vr(bytes: [u8; 2]) -> bool {
    bytes.iter().all(u8::is_ascii_uppercase)
}

/// An element header as found in the file.
struct ElementHeader {
    tag: Tag,
    vr: VR,
    length: u32,
}

/// A forward-only walk through a data set's element headers, reading the values of the root
/// elements wanted and skipping all others. Written here rather than taken from `dicom-parser`
/// because real files switch encoding where that reader cannot: the items of an
/// undefined-length UN element are implicit VR little endian whatever the transfer syntax, and
/// a data set (or a sequence item) may be in the other VR encoding than its transfer syntax
/// says, which pydicom and DCMTK detect from its first element. Nesting is a counter with a
/// limit, and every declared length is checked against the bytes left before it is read.
struct DataSetWalker<'r> {
    source: Box<dyn Read + 'r>,
    /// Bytes read since the walk started.
    position: u64,
    /// Bytes from the start to the end of the file, when known (not for a deflated data set).
    size: Option<u64>,
    /// The character set of text values, from (0008,0005) once read.
    charset: SpecificCharacterSet,
    values: RootValues,
}

impl<'r> DataSetWalker<'r> {
    fn new(source: Box<dyn Read + 'r>, size: Option<u64>, charset: SpecificCharacterSet) -> Self {
        Self { source, position: 0, size, charset, values: RootValues::new() }
    }

    /// Walks the root elements until `stop` says a tag ends the walk or the data ends, reading
    /// the `wanted` values; returns the position of the element that stopped it (or of the
    /// end).
    fn walk(
        &mut self,
        mut encoding: Encoding,
        wanted: &[Tag],
        stop: impl Fn(Tag) -> bool,
    ) -> Result<u64, ExtractError> {
        let mut first = true;
        loop {
            let start = self.position;
            let Some(tag) = self.read_tag(encoding, true)? else { return Ok(start) };
            if stop(tag) {
                return Ok(start);
            }
            let header = self.read_header(&mut encoding, tag, first)?;
            first = false;
            if header.length == UNDEFINED_LENGTH {
                self.skip_undefined_length(encoding, &header, 1)?;
            } else if wanted.contains(&tag) && header.vr != VR::SQ && header.length <= MAX_VALUE_BYTES {
                let bytes = self.read_value(&header)?;
                if let Some((vr, value)) = decode_value(&header, &bytes, encoding, &self.charset) {
                    if tag == tags::SPECIFIC_CHARACTER_SET
                        && let Some(charset) =
                            trim_first_value(&value).and_then(|code| SpecificCharacterSet::from_code(&code))
                    {
                        self.charset = charset;
                    }
                    self.values.insert(tag, (vr, value));
                }
            } else {
                self.skip(&header)?;
            }
        }
    }

    /// Skips the items of an undefined-length element (a sequence, an undefined-length UN, or
    /// encapsulated pixel data in an icon) up to its sequence delimitation item.
    fn skip_undefined_length(
        &mut self,
        encoding: Encoding,
        header: &ElementHeader,
        depth: usize,
    ) -> Result<(), ExtractError> {
        if depth > MAX_SEQUENCE_DEPTH {
            return Err(ExtractError::corrupt(
                "DICOM",
                format!("sequences are nested more than {MAX_SEQUENCE_DEPTH} deep"),
            ));
        }
        // PS3.5 §6.2.2: an undefined-length UN holds a sequence in implicit VR little endian.
        let encoding = if header.vr == VR::UN { Encoding::IMPLICIT_VR_LITTLE_ENDIAN } else { encoding };
        loop {
            let tag = self.read_tag(encoding, false)?.unwrap_or(SEQUENCE_DELIMITATION);
            let length = encoding.u32(self.read_array(tag)?);
            let item = ElementHeader { tag, vr: VR::UN, length };
            match tag {
                SEQUENCE_DELIMITATION => return Ok(()),
                ITEM if length == UNDEFINED_LENGTH => self.skip_item(encoding, depth)?,
                ITEM => self.skip(&item)?,
                _ => {
                    return Err(ExtractError::corrupt(
                        "DICOM",
                        format!("element {} holds {tag} where an item should be", header.tag),
                    ));
                }
            }
        }
    }

    /// Skips the elements of an undefined-length item up to its item delimitation item.
    fn skip_item(&mut self, mut encoding: Encoding, depth: usize) -> Result<(), ExtractError> {
        let mut first = true;
        loop {
            let tag = self.read_tag(encoding, false)?.unwrap_or(ITEM_DELIMITATION);
            if tag == ITEM_DELIMITATION {
                self.read_array::<4>(tag)?;
                return Ok(());
            }
            let header = self.read_header(&mut encoding, tag, first)?;
            first = false;
            if header.length == UNDEFINED_LENGTH {
                self.skip_undefined_length(encoding, &header, depth + 1)?;
            } else {
                self.skip(&header)?;
            }
        }
    }

    /// The next tag; `None` at the end of the data (where `end_allowed`: a clean end between
    /// root elements).
    fn read_tag(&mut self, encoding: Encoding, end_allowed: bool) -> Result<Option<Tag>, ExtractError> {
        let mut bytes = [0u8; 4];
        let mut filled = 0;
        while filled < bytes.len() {
            match self.source.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(read_error(error, "a tag")),
            }
        }
        self.position += filled as u64;
        match filled {
            0 if end_allowed => Ok(None),
            4 => Ok(Some(Tag(encoding.u16([bytes[0], bytes[1]]), encoding.u16([bytes[2], bytes[3]])))),
            _ => Err(ExtractError::corrupt("DICOM", "the file ends inside the data set (truncated?)")),
        }
    }

    /// The rest of an element header after its tag. On the first element of a data set or an
    /// item, the encoding follows what the header shows (VR or no VR), as pydicom reads it.
    fn read_header(
        &mut self,
        encoding: &mut Encoding,
        tag: Tag,
        first: bool,
    ) -> Result<ElementHeader, ExtractError> {
        let vr_or_length = self.read_array::<2>(tag)?;
        if first {
            encoding.explicit_vr = looks_like_vr(vr_or_length);
        }
        if !encoding.explicit_vr {
            let high = self.read_array::<2>(tag)?;
            let [a, b] = vr_or_length;
            let length = encoding.u32([a, b, high[0], high[1]]);
            return Ok(ElementHeader { tag, vr: dictionary_vr(tag), length });
        }
        let vr = VR::from_binary(vr_or_length).ok_or_else(|| {
            ExtractError::corrupt("DICOM", format!("element {tag} has no valid VR ({:?})", vr_or_length))
        })?;
        let length = match vr {
            VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::SV
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::UV => {
                self.read_array::<2>(tag)?; // reserved
                encoding.u32(self.read_array(tag)?)
            }
            _ => u32::from(encoding.u16(self.read_array(tag)?)),
        };
        Ok(ElementHeader { tag, vr, length })
    }

    fn read_array<const N: usize>(&mut self, tag: Tag) -> Result<[u8; N], ExtractError> {
        let mut bytes = [0u8; N];
        self.source.read_exact(&mut bytes).map_err(|error| read_error(error, &format!("element {tag}")))?;
        self.position += N as u64;
        Ok(bytes)
    }

    /// Fails before anything is read or allocated when the element is longer than the file.
    fn check_length(&self, header: &ElementHeader) -> Result<(), ExtractError> {
        match self.size {
            Some(size) if u64::from(header.length) > size.saturating_sub(self.position) => {
                Err(ExtractError::corrupt(
                    "DICOM",
                    format!(
                        "element {} declares {} bytes, more than the file has left (truncated?)",
                        header.tag, header.length
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    fn read_value(&mut self, header: &ElementHeader) -> Result<Vec<u8>, ExtractError> {
        self.check_length(header)?;
        // Reserved by what is there to read, never by the declared length alone: a deflated
        // data set's size is unknown until it is inflated, so there the buffer grows as
        // bytes arrive.
        let left = self.size.map_or(UNKNOWN_SIZE_RESERVE, |size| size.saturating_sub(self.position));
        let mut bytes = Vec::with_capacity(u64::from(header.length).min(left) as usize);
        (&mut self.source)
            .take(u64::from(header.length))
            .read_to_end(&mut bytes)
            .map_err(|e| read_error(e, "a value"))?;
        self.advance(header, bytes.len() as u64)?;
        Ok(bytes)
    }

    fn skip(&mut self, header: &ElementHeader) -> Result<(), ExtractError> {
        self.check_length(header)?;
        let skipped = io::copy(&mut (&mut self.source).take(u64::from(header.length)), &mut io::sink())
            .map_err(|e| read_error(e, "a value"))?;
        self.advance(header, skipped)
    }

    /// Counts `read` bytes of the element's value, which must be all of them.
    fn advance(&mut self, header: &ElementHeader, read: u64) -> Result<(), ExtractError> {
        self.position += read;
        if read < u64::from(header.length) {
            return Err(ExtractError::corrupt(
                "DICOM",
                format!("the file ends inside element {} (truncated?)", header.tag),
            ));
        }
        Ok(())
    }
}

/// A read error: the file ending early, or a deflated stream that does not inflate, make the
/// file corrupt; anything else is the source failing.
fn read_error(error: io::Error, reading: &str) -> ExtractError {
    match error.kind() {
        io::ErrorKind::UnexpectedEof => {
            ExtractError::corrupt("DICOM", format!("the file ends while reading {reading} (truncated?)"))
        }
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => {
            ExtractError::corrupt("DICOM", format!("reading {reading}: {error}"))
        }
        _ => ExtractError::Io(error),
    }
}

/// The VR the standard dictionary gives a tag (for implicit VR, and for values sent as UN);
/// UN for tags it does not know.
fn dictionary_vr(tag: Tag) -> VR {
    StandardDataDictionary.by_tag(tag).map_or(VR::UN, |entry| entry.vr().relaxed())
}

/// An element's value decoded with its VR, or for a value sent as UN (an explicit VR file
/// written by a system that did not know the attribute) with the dictionary's VR, in the data
/// set's byte order (PS3.5 §6.2.2). Text is kept as written, so a malformed number or date is
/// not an error here; `None` for a value that cannot be decoded at all, which is then absent
/// rather than a reason to reject the file.
fn decode_value(
    header: &ElementHeader,
    bytes: &[u8],
    encoding: Encoding,
    charset: &SpecificCharacterSet,
) -> Option<(VR, PrimitiveValue)> {
    let vr = if header.vr == VR::UN { dictionary_vr(header.tag) } else { header.vr };
    let transfer_syntax = TransferSyntaxRegistry.get(encoding.value_syntax())?;
    let mut decoder =
        DynStatefulDecoder::new_with(Box::new(bytes) as Box<dyn Read>, transfer_syntax, charset.clone(), 0)
            .ok()?;
    let value =
        decoder.read_value_preserved(&DataElementHeader::new(header.tag, vr, Length(header.length))).ok()?;
    Some((vr, value))
}

/// The first value of a text attribute, trimmed of padding.
fn trim_first_value(value: &PrimitiveValue) -> Option<String> {
    value.to_multi_str().first().map(|code| trim_padding(code).to_owned()).filter(|code| !code.is_empty())
}

fn describe(meta: &FileMeta, values: &RootValues, allowed: &[(&str, Tag)]) -> DicomMetadata {
    let rows = integer(values, tags::ROWS);
    DicomMetadata {
        transfer_syntax_uid: meta.transfer_syntax_uid.clone(),
        sop_class_uid: text(values, tags::SOP_CLASS_UID).or_else(|| meta.media_storage_sop_class_uid.clone()),
        sop_instance_uid: text(values, tags::SOP_INSTANCE_UID),
        study_instance_uid: text(values, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(values, tags::SERIES_INSTANCE_UID),
        modality: text(values, tags::MODALITY),
        rows,
        columns: integer(values, tags::COLUMNS),
        // A Number of Frames that is not a number is unknown: `None`, not 1.
        number_of_frames: match values.contains_key(&tags::NUMBER_OF_FRAMES) {
            true => integer(values, tags::NUMBER_OF_FRAMES),
            false => rows.map(|_| 1),
        },
        bits_allocated: integer(values, tags::BITS_ALLOCATED).and_then(|bits| u16::try_from(bits).ok()),
        photometric_interpretation: text(values, tags::PHOTOMETRIC_INTERPRETATION),
        pixel_spacing: pixel_spacing(values),
        tags: allowed
            .iter()
            .filter_map(|&(keyword, tag)| {
                let (vr, value) = values.get(&tag)?;
                Some((keyword.to_owned(), value_json(*vr, value)?))
            })
            .collect(),
    }
}

/// DICOM pads text with spaces (and UIDs with NUL) to an even length.
fn trim_padding(text: &str) -> &str {
    text.trim_matches(|c: char| c == ' ' || c == '\0')
}

/// A text value as reported: at most [`MAX_TEXT_BYTES`] of it, then [`TRUNCATION_MARK`].
fn capped(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let cut = (0..=MAX_TEXT_BYTES).rev().find(|&at| text.is_char_boundary(at)).unwrap_or(0);
    format!("{}{TRUNCATION_MARK}", &text[..cut])
}

fn text(values: &RootValues, tag: Tag) -> Option<String> {
    let (_, value) = values.get(&tag)?;
    let text = value.to_str();
    let trimmed = trim_padding(&text);
    (!trimmed.is_empty()).then(|| capped(trimmed))
}

/// A single integer value, binary (US, UL) or text (IS).
fn integer(values: &RootValues, tag: Tag) -> Option<u32> {
    values.get(&tag)?.1.to_int::<u32>().ok()
}

/// Pixel Spacing holds exactly two decimal strings, row then column spacing.
fn pixel_spacing(values: &RootValues) -> Option<[f64; 2]> {
    let spacing = values.get(&tags::PIXEL_SPACING)?.1.to_multi_float64().ok()?;
    match spacing.as_slice() {
        [row, column] if row.is_finite() && column.is_finite() => Some([*row, *column]),
        _ => None,
    }
}

/// An allow-listed attribute's value as JSON: text trimmed, numbers (including the decimal
/// and integer strings DS and IS) as JSON numbers, several values as an array, an attribute
/// present but empty as `null`. `None` (left out) for sequences and binary values (OB, OW, UN,
/// …), and for attributes with more than [`MAX_VALUES_PER_TAG`] values.
fn value_json(vr: VR, value: &PrimitiveValue) -> Option<Json> {
    if matches!(vr, VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN | VR::SQ) {
        return None;
    }
    let values: Vec<Json> = match value {
        PrimitiveValue::Empty => return Some(Json::Null),
        PrimitiveValue::Str(_)
        | PrimitiveValue::Strs(_)
        | PrimitiveValue::Date(_)
        | PrimitiveValue::DateTime(_)
        | PrimitiveValue::Time(_) => {
            value.to_multi_str().iter().map(|s| text_json(trim_padding(s), vr)).collect()
        }
        PrimitiveValue::Tags(list) => list
            .iter()
            .map(|tag| Json::String(format!("({:04X},{:04X})", tag.group(), tag.element())))
            .collect(),
        PrimitiveValue::U8(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::I16(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::U16(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::I32(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::U32(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::I64(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::U64(list) => list.iter().map(|&n| Json::from(n)).collect(),
        PrimitiveValue::F32(list) => list.iter().map(|&n| float_json(f64::from(n))).collect(),
        PrimitiveValue::F64(list) => list.iter().map(|&n| float_json(n)).collect(),
    };
    match values.len() {
        0 => Some(Json::Null),
        1 => values.into_iter().next(),
        n if n > MAX_VALUES_PER_TAG => None,
        _ => Some(Json::Array(values)),
    }
}

/// A text value as JSON: decimal (DS) and integer (IS) strings become numbers, or `null` when
/// they are not numbers (an IS of `1A`): a number field holds a number or nothing, never a
/// guess. An empty value is `null`.
fn text_json(text: &str, vr: VR) -> Json {
    if text.is_empty() {
        return Json::Null;
    }
    match vr {
        VR::IS => text.parse::<i64>().map_or(Json::Null, Json::from),
        VR::DS => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map_or(Json::Null, Json::Number),
        _ => Json::String(capped(text)),
    }
}

/// JSON has no NaN or infinity: such a value is `null`.
fn float_json(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number)
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Seek};

    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/dicom/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn metadata_of(bytes: Vec<u8>) -> Result<Json, ExtractError> {
        extract(&mut Cursor::new(bytes), None).map(|extracted| extracted.metadata)
    }

    fn fixture_metadata(name: &str) -> Json {
        metadata_of(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"))
    }

    /// An explicit VR little endian element with a 16-bit length.
    fn element(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut bytes = [group.to_le_bytes(), element.to_le_bytes()].concat();
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    /// An explicit VR little endian element with a 32-bit length (OB, SQ, UN, UT, …).
    fn long_element_header(group: u16, element: u16, vr: &[u8; 2], length: u32) -> Vec<u8> {
        let mut bytes = [group.to_le_bytes(), element.to_le_bytes()].concat();
        bytes.extend_from_slice(vr);
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes
    }

    fn assert_corrupt(result: Result<Json, ExtractError>) {
        assert!(matches!(result, Err(ExtractError::Corrupt(_))), "{result:?}");
    }

    #[test]
    fn text_values_are_cut_at_1_kib_with_a_mark() {
        let m = metadata_of(
            std::fs::read(format!(
                "{}/fixtures/hostile/dicom_long_text_values.dcm",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        // 'x' then 1500 'é': byte 1024 is inside an 'é', so the cut is at 1023.
        let manufacturer = m["tags"]["Manufacturer"].as_str().unwrap();
        assert_eq!(manufacturer.len(), 1023 + TRUNCATION_MARK.len());
        assert!(manufacturer.starts_with("xé") && manufacturer.ends_with("é\u{2026}"), "{manufacturer}");
        assert_eq!(m["tags"]["SoftwareVersions"][0], "1.0");
        assert_eq!(m["tags"]["SoftwareVersions"][1], format!("{}\u{2026}", "v".repeat(1024)));
        assert_eq!(m["series_instance_uid"], format!("{}\u{2026}", "1".repeat(1024)));
        assert_eq!(m["modality"], "CT", "short values are whole");
        assert_eq!(capped(&"a".repeat(1024)), "a".repeat(1024), "1 KiB exactly is not cut");
    }

    #[test]
    fn explicit_vr_little_endian_ct() {
        let m = fixture_metadata("explicit_vr_le_ct_small.dcm");
        assert_eq!(m["transfer_syntax_uid"], "1.2.840.10008.1.2.1");
        assert_eq!(m["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.2");
        assert_eq!(m["sop_instance_uid"], "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322");
        assert_eq!(m["study_instance_uid"], "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322");
        assert_eq!(m["series_instance_uid"], "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322");
        assert_eq!(m["modality"], "CT");
        assert_eq!((m["rows"].as_u64(), m["columns"].as_u64()), (Some(128), Some(128)));
        assert_eq!(m["number_of_frames"], 1);
        assert_eq!(m["bits_allocated"], 16);
        assert_eq!(m["photometric_interpretation"], "MONOCHROME2");
        assert_eq!(m["pixel_spacing"], serde_json::json!([0.661468, 0.661468]));
        let tags = &m["tags"];
        assert_eq!(tags["Manufacturer"], "GE MEDICAL SYSTEMS");
        assert_eq!(tags["ImageType"], serde_json::json!(["ORIGINAL", "PRIMARY", "AXIAL"]));
        assert_eq!(tags["KVP"], 120.0);
        assert_eq!(tags["XRayTubeCurrent"], 170);
        assert_eq!(tags["RescaleIntercept"], -1024.0);
        assert_eq!(tags["ImagePositionPatient"], serde_json::json!([-158.135803, -179.035797, -75.699997]));
        assert_eq!(tags["Laterality"], Json::Null, "present but empty");
        assert!(tags.get("BodyPartExamined").is_none(), "absent attributes are left out");
    }

    #[test]
    fn the_same_mr_image_in_every_encoding_and_layout_reads_the_same() {
        let reference = fixture_metadata("implicit_vr_le_mr_small.dcm");
        assert_eq!(reference["transfer_syntax_uid"], "1.2.840.10008.1.2");
        assert_eq!((reference["rows"].as_u64(), reference["modality"].as_str()), (Some(64), Some("MR")));
        assert_eq!(reference["pixel_spacing"], serde_json::json!([0.3125, 0.3125]));
        assert_eq!(reference["tags"]["EchoTime"], 240.0);
        for (name, syntax) in [
            ("explicit_vr_be_mr_small.dcm", "1.2.840.10008.1.2.2"),
            ("meta_without_preamble_mr_small.dcm", "1.2.840.10008.1.2.1"),
            ("no_meta_implicit_vr_le_mr_small.dcm", "1.2.840.10008.1.2"),
        ] {
            let mut m = fixture_metadata(name);
            assert_eq!(m["transfer_syntax_uid"], syntax, "{name}");
            m["transfer_syntax_uid"] = reference["transfer_syntax_uid"].clone();
            assert_eq!(m, reference, "{name}");
        }
    }

    #[test]
    fn a_bare_data_set_without_file_meta_is_read_with_the_syntax_of_its_first_element() {
        let with_meta = fixture_metadata("explicit_vr_le_ct_small.dcm");
        let bare = fixture_metadata("no_meta_explicit_vr_le_ct_small.dcm");
        assert_eq!(bare, with_meta);

        let mut big_endian = vec![0x00, 0x08, 0x00, 0x16, b'U', b'I', 0x00, 0x02];
        big_endian.extend_from_slice(b"1\0");
        assert_eq!(bare_data_set_syntax(&big_endian), Some(EXPLICIT_VR_BIG_ENDIAN));
        assert_eq!(
            bare_data_set_syntax(b"\x08\x00\x16\x00\x1a\x00\x00\x00"),
            Some(IMPLICIT_VR_LITTLE_ENDIAN)
        );
        assert_eq!(bare_data_set_syntax(b"%PDF-1.7\n"), None);
    }

    #[test]
    fn deflated_data_set() {
        let m = fixture_metadata("deflated_explicit_vr_le.dcm");
        assert_eq!(m["transfer_syntax_uid"], "1.2.840.10008.1.2.1.99");
        assert_eq!(
            (m["rows"].as_u64(), m["columns"].as_u64(), m["bits_allocated"].as_u64()),
            (Some(512), Some(512), Some(8))
        );
        assert_eq!(m["modality"], "OT");
        assert_eq!(m["pixel_spacing"], Json::Null);
    }

    #[test]
    fn multi_frame_images() {
        let dose = fixture_metadata("multiframe_rtdose_15frames.dcm");
        assert_eq!(
            (dose["modality"].as_str(), dose["number_of_frames"].as_u64()),
            (Some("RTDOSE"), Some(15))
        );
        assert_eq!(dose["bits_allocated"], 32);
        let rle = fixture_metadata("multiframe_rle_rgb_2frames.dcm");
        assert_eq!(rle["transfer_syntax_uid"], "1.2.840.10008.1.2.5");
        assert_eq!(
            (rle["number_of_frames"].as_u64(), rle["photometric_interpretation"].as_str()),
            (Some(2), Some("RGB"))
        );
    }

    #[test]
    fn default_output_carries_no_patient_identifiers() {
        let m = fixture_metadata("dcmtk_img2dcm_with_phi.dcm");
        assert_eq!(m["transfer_syntax_uid"], "1.2.840.10008.1.2.4.50");
        assert_eq!((m["rows"].as_u64(), m["columns"].as_u64()), (Some(48), Some(64)));
        let text = m.to_string();
        for secret in ["Fixture", "Jane", "PID-SECRET", "19700101", "Doe", "John", "20240102", "030405"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn a_configured_allow_list_is_honoured() {
        let keywords = ["PatientName", "StudyDate", "NoSuchKeyword", "OverlayData"].map(String::from);
        let extracted =
            extract(&mut Cursor::new(fixture("dcmtk_img2dcm_with_phi.dcm")), Some(&keywords)).unwrap();
        let tags = extracted.metadata["tags"].as_object().unwrap().clone();
        assert_eq!(tags.get("PatientName"), Some(&Json::from("Fixture^Jane")));
        assert_eq!(tags.get("StudyDate"), Some(&Json::from("20240102")));
        assert_eq!(tags.len(), 2, "unknown keywords and repeating groups are left out: {tags:?}");
    }

    /// Keywords of attributes that PS3.15 Table E.1-1 (basic profile) removes, empties or
    /// replaces, among those an image header commonly carries.
    const BASIC_PROFILE_KEYWORDS: &[&str] = &[
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "PatientAddress",
        "OtherPatientIDs",
        "OtherPatientNames",
        "PatientComments",
        "EthnicGroup",
        "MedicalRecordLocator",
        "IssuerOfPatientID",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "PhysiciansOfRecord",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
        "StudyTime",
        "SeriesTime",
        "AcquisitionTime",
        "ContentTime",
        "AcquisitionDateTime",
        "InstanceCreationDate",
        "InstanceCreationTime",
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "ImageComments",
        "StationName",
        "DeviceSerialNumber",
        "DetectorID",
        "FrameOfReferenceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "RequestAttributesSequence",
        "ReferencedStudySequence",
        "ReferencedImageSequence",
        "SourceImageSequence",
        "ContrastBolusAgent",
        "TimezoneOffsetFromUTC",
        "IconImageSequence",
    ];

    #[test]
    fn default_tags_follow_the_basic_de_identification_profile() {
        for keyword in DEFAULT_TAGS {
            assert!(!BASIC_PROFILE_KEYWORDS.contains(keyword), "{keyword} is removed by the basic profile");
            let entry = StandardDataDictionary
                .by_name(keyword)
                .unwrap_or_else(|| panic!("unknown keyword {keyword}"));
            let TagRange::Single(tag) = entry.tag_range() else { panic!("{keyword} has no single tag") };
            assert_ne!(tag.group(), 0x0010, "{keyword} is a patient attribute");
        }
        assert_eq!(allowed_tags(DEFAULT_TAGS).len(), DEFAULT_TAGS.len());
    }

    /// Records how far into the source anything was read.
    struct ReadTracker {
        inner: Cursor<Vec<u8>>,
        furthest: u64,
    }

    impl Read for ReadTracker {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.furthest = self.furthest.max(self.inner.position());
            Ok(n)
        }
    }

    impl Seek for ReadTracker {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn pixel_data_is_never_read() {
        let bytes = fixture("explicit_vr_le_ct_small.dcm");
        let header = bytes.windows(6).position(|w| w == b"\xe0\x7f\x10\x00OW").expect("pixel data element");
        let pixel_values_start = header as u64 + 12;
        let mut source = ReadTracker { inner: Cursor::new(bytes), furthest: 0 };
        extract(&mut source, None).unwrap();
        assert!(source.furthest <= pixel_values_start, "read up to {}", source.furthest);
    }

    #[test]
    fn nothing_noise_and_cut_files_are_corrupt() {
        assert_corrupt(metadata_of(Vec::new()));
        assert_corrupt(metadata_of(b"not a DICOM file at all, just text".to_vec()));
        let mut preamble_only = vec![0; 128];
        preamble_only.extend_from_slice(b"DICM");
        assert_corrupt(metadata_of(preamble_only.clone()));
        preamble_only.extend_from_slice(&[0xff; 64]);
        assert_corrupt(metadata_of(preamble_only));
        // cut inside the header, in the middle of an element
        let ct = fixture("explicit_vr_le_ct_small.dcm");
        assert_corrupt(metadata_of(ct[..700].to_vec()));
    }

    #[test]
    fn a_declared_length_past_the_end_of_the_file_is_corrupt_before_allocating() {
        let mut bytes = element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
        bytes.extend(long_element_header(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
        bytes.extend_from_slice(&[0; 16]);
        assert_corrupt(metadata_of(bytes));
    }

    #[test]
    fn deep_sequence_nesting_is_corrupt_not_a_stack_overflow() {
        let mut bytes = element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
        for _ in 0..100_000 {
            bytes.extend(long_element_header(0x0008, 0x1140, b"SQ", u32::MAX));
            bytes.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]); // item, undefined length
        }
        assert_corrupt(metadata_of(bytes));
    }

    #[test]
    fn nested_values_are_not_mistaken_for_root_ones() {
        // Modality inside a sequence item, none at the root.
        let mut item = element(0x0008, 0x0060, b"CS", b"MR");
        let mut bytes = element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
        bytes.extend(long_element_header(0x0008, 0x1140, b"SQ", 8 + item.len() as u32));
        bytes.extend_from_slice(&[0xfe, 0xff, 0x00, 0xe0]);
        bytes.extend_from_slice(&(item.len() as u32).to_le_bytes());
        bytes.append(&mut item);
        bytes.extend(element(0x0028, 0x0010, b"US", &7u16.to_le_bytes()));
        let m = metadata_of(bytes).unwrap();
        assert_eq!(m["modality"], Json::Null);
        assert_eq!(m["rows"], 7, "the root continues after the sequence");
        assert_eq!(m["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.7");
    }

    #[test]
    fn unknown_transfer_syntaxes_are_unsupported() {
        let syntax = b"1.2.3.4.5.6\0";
        let mut meta = element(0x0002, 0x0010, b"UI", syntax);
        let mut bytes = vec![0; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend(element(0x0002, 0x0000, b"UL", &(meta.len() as u32).to_le_bytes()));
        bytes.append(&mut meta);
        bytes.extend(element(0x0008, 0x0060, b"CS", b"CT"));
        let result = metadata_of(bytes);
        assert!(matches!(result, Err(ExtractError::Unsupported(_))), "{result:?}");
    }

    #[test]
    fn values_sent_as_un_are_decoded_with_the_dictionary_vr_and_an_undefined_length_un_is_an_implicit_vr_sequence()
     {
        let m = fixture_metadata("explicit_vr_le_un_elements.dcm");
        assert_eq!(m["sop_class_uid"], "1.2.840.10008.5.1.4.1.1.481.2");
        assert_eq!(m["modality"], "RTDOSE", "not a list of bytes, nor the CT inside the UN sequence");
        assert_eq!((m["rows"].as_u64(), m["columns"].as_u64()), (Some(5), Some(3)), "Rows 512 is nested");
        assert_eq!(m["number_of_frames"], 2);
        assert_eq!(m["pixel_spacing"], serde_json::json!([0.5, 0.25]));
        assert_eq!(m["tags"]["SeriesNumber"], 7);
    }

    #[test]
    fn a_data_set_in_the_other_vr_encoding_than_its_transfer_syntax_is_read_as_it_is() {
        for (name, syntax) in [
            ("ts_explicit_data_set_implicit_vr.dcm", EXPLICIT_VR_LITTLE_ENDIAN),
            ("ts_implicit_data_set_explicit_vr.dcm", IMPLICIT_VR_LITTLE_ENDIAN),
        ] {
            let m = fixture_metadata(name);
            assert_eq!(m["transfer_syntax_uid"], syntax, "{name}: the syntax the file declares");
            assert_eq!((m["modality"].as_str(), m["rows"].as_u64()), (Some("CT"), Some(4)), "{name}");
            assert_eq!(m["tags"]["ImageType"], serde_json::json!(["ORIGINAL", "PRIMARY", "AXIAL"]), "{name}");
        }
        assert!(looks_like_vr(*b"CS") && !looks_like_vr([0x1a, 0x00]));
    }

    #[test]
    fn a_file_meta_group_without_group_length_is_read_to_its_last_element() {
        let m = fixture_metadata("meta_without_group_length.dcm");
        assert_eq!(m["transfer_syntax_uid"], EXPLICIT_VR_LITTLE_ENDIAN);
        assert_eq!((m["modality"].as_str(), m["rows"].as_u64()), (Some("CT"), Some(4)));

        let mut bytes = vec![0; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend(element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0"));
        bytes.extend(element(0x0008, 0x0060, b"CS", b"CT"));
        assert_eq!(metadata_of(bytes).unwrap()["modality"], "CT");
    }

    #[test]
    fn a_bare_big_endian_data_set_is_read() {
        let m = fixture_metadata("no_meta_explicit_vr_be.dcm");
        assert_eq!(m["transfer_syntax_uid"], EXPLICIT_VR_BIG_ENDIAN);
        assert_eq!((m["rows"].as_u64(), m["columns"].as_u64()), (Some(4), Some(4)));
        assert_eq!(m["pixel_spacing"], serde_json::json!([0.5, 0.25]));
    }

    #[test]
    fn a_malformed_number_is_null_and_does_not_reject_the_file() {
        let m = fixture_metadata("malformed_is_values.dcm");
        assert_eq!(m["number_of_frames"], Json::Null, "Number of Frames 1A is unknown, not 1");
        assert_eq!(m["tags"]["InstanceNumber"], Json::Null);
        assert_eq!(m["rows"], 4);
        assert_eq!(text_json("1A", VR::IS), Json::Null);
        assert_eq!(text_json("1.5e", VR::DS), Json::Null);
        assert_eq!(text_json("12", VR::IS), 12);
    }

    /// A source that fails (as a broken connection would) after some bytes.
    struct FailingSource {
        inner: Cursor<Vec<u8>>,
        fail_after: u64,
    }

    impl Read for FailingSource {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.inner.position() >= self.fail_after {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset"));
            }
            self.inner.read(buf)
        }
    }

    impl Seek for FailingSource {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn a_failing_source_is_an_io_error_not_a_corrupt_file() {
        let mut source =
            FailingSource { inner: Cursor::new(fixture("explicit_vr_le_ct_small.dcm")), fail_after: 600 };
        let result = extract(&mut source, None);
        assert!(matches!(result, Err(ExtractError::Io(_))), "{result:?}");
    }
}
