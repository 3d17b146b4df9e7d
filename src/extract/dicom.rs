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
//! The File Meta group is read by `dicom-object`. The data set is walked with `dicom-parser`'s
//! lazy token reader rather than loaded with `dicom-object`, which builds nested sequences by
//! recursion (a file of tens of thousands of nested sequences overflows the stack) and
//! allocates and zeroes every value by its declared length before reading it (a 200-byte file
//! declaring a 1 GiB element costs 1 GiB of memory). The walk keeps nesting in a counter with a
//! limit, checks every declared length against the bytes left in the file, reads only the
//! values it reports and skips the rest.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, SeekFrom};

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, TagRange};
use dicom_core::{PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_object::FileMetaTable;
use dicom_parser::dataset::LazyDataToken;
use dicom_parser::dataset::lazy_read::LazyDataSetReader;
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

    let (magic_offset, missing_magic): (u64, &[u8]) = if head.get(128..132) == Some(b"DICM") {
        (128, b"")
    } else if head.get(..4) == Some(b"DICM") {
        (0, b"")
    } else if head.get(..2) == Some(&[0x02, 0x00]) {
        // The File Meta group (group 0002) without the preamble and the magic code before it.
        (0, b"DICM")
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
    source.seek(SeekFrom::Start(magic_offset))?;
    // The meta group reader reads exactly the group's bytes, so the source ends up at the data set.
    let table = FileMetaTable::from_reader(Cursor::new(missing_magic).chain(&mut *source))
        .map_err(|error| error_with_causes(&error))?;
    Ok(FileMeta {
        transfer_syntax_uid: trim_padding(table.transfer_syntax()).to_owned(),
        media_storage_sop_class_uid: Some(trim_padding(table.media_storage_sop_class_uid()).to_owned())
            .filter(|uid| !uid.is_empty()),
        data_set_offset: source.stream_position()?,
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
    let mut bytes_left = Some(file_size.saturating_sub(meta.data_set_offset));
    let data_set: Box<dyn Read + '_> = match transfer_syntax.codec() {
        Codec::Dataset(Some(adapter)) => {
            bytes_left = None;
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
    let decoder = DynStatefulDecoder::new_with(data_set, transfer_syntax, SpecificCharacterSet::default(), 0)
        .map_err(|error| error_with_causes(&error))?;
    let mut tokens = LazyDataSetReader::new(decoder);

    let mut values = RootValues::new();
    // Open sequences (and encapsulated pixel data inside them, as in icons); 0 is the root.
    let mut depth = 0usize;
    while let Some(token) = tokens.advance() {
        match token.map_err(|error| error_with_causes(&error))? {
            LazyDataToken::ElementHeader(header) if depth == 0 && header.tag.group() >= PIXEL_DATA_GROUP => {
                break;
            }
            LazyDataToken::SequenceStart { tag, .. } if depth == 0 && tag.group() >= PIXEL_DATA_GROUP => {
                break;
            }
            LazyDataToken::PixelSequenceStart if depth == 0 => break,
            LazyDataToken::SequenceStart { .. } | LazyDataToken::PixelSequenceStart => {
                depth += 1;
                if depth > MAX_SEQUENCE_DEPTH {
                    return Err(ExtractError::corrupt(
                        "DICOM",
                        format!("sequences are nested more than {MAX_SEQUENCE_DEPTH} deep"),
                    ));
                }
            }
            LazyDataToken::SequenceEnd => depth = depth.saturating_sub(1),
            LazyDataToken::LazyValue { header, decoder } => {
                let length = header.len.get().unwrap_or(0);
                if let Some(bytes_left) = bytes_left
                    && u64::from(length) > bytes_left.saturating_sub(decoder.position())
                {
                    return Err(ExtractError::corrupt(
                        "DICOM",
                        format!(
                            "element {} declares {length} bytes, more than the file has left (truncated?)",
                            header.tag
                        ),
                    ));
                }
                let token = LazyDataToken::LazyValue { header, decoder };
                if depth == 0 && length <= MAX_VALUE_BYTES && wanted.contains(&header.tag) {
                    let value = token.into_value().map_err(|error| error_with_causes(&error))?;
                    values.insert(header.tag, (header.vr, value));
                } else {
                    token.skip().map_err(|error| error_with_causes(&error))?;
                }
            }
            // Fragments of encapsulated pixel data in a nested item (an icon, say).
            other @ LazyDataToken::LazyItemValue { .. } => {
                other.skip().map_err(|error| error_with_causes(&error))?;
            }
            _ => {}
        }
    }
    Ok(values)
}

/// A `Corrupt` error with the whole chain of causes that `dicom-rs` gives, or an I/O error when
/// the chain ends in a failing source (rather than in a file that ends too early).
fn error_with_causes(error: &(dyn std::error::Error + 'static)) -> ExtractError {
    let causes = || std::iter::successors(Some(error), |e| e.source());
    let failing_source = causes()
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .find(|e| !matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData));
    if let Some(io_error) = failing_source {
        return ExtractError::Io(io::Error::new(io_error.kind(), io_error.to_string()));
    }
    ExtractError::corrupt("DICOM", super::error_chain(error))
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
        number_of_frames: integer(values, tags::NUMBER_OF_FRAMES).or(rows.map(|_| 1)),
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

fn text(values: &RootValues, tag: Tag) -> Option<String> {
    let (_, value) = values.get(&tag)?;
    let text = value.to_str();
    let trimmed = trim_padding(&text);
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
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

/// A text value as JSON: decimal (DS) and integer (IS) strings become numbers when they parse
/// as such; an empty value is `null`.
fn text_json(text: &str, vr: VR) -> Json {
    if text.is_empty() {
        return Json::Null;
    }
    let number = match vr {
        VR::IS => text.parse::<i64>().ok().map(Json::from),
        VR::DS => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Json::Number),
        _ => None,
    };
    number.unwrap_or_else(|| Json::String(text.to_owned()))
}

/// JSON has no NaN or infinity: such a value is `null`.
fn float_json(value: f64) -> Json {
    serde_json::Number::from_f64(value).map_or(Json::Null, Json::Number)
}

#[cfg(test)]
mod tests {
    use std::io::Seek;

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
