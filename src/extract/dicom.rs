//! DICOM metadata (DESIGN §3 `dicom`). Being written: see issue 2.
use super::{ExtractError, Extracted, ReadSeek};

/// The tags copied into `tags` when no allow-list is configured: none identify a patient.
pub const DEFAULT_TAGS: &[&str] = &[];

/// Extracts the DESIGN §3 fields and the allowed tags; never reads pixel data.
pub fn extract(_source: &mut dyn ReadSeek, _tags: Option<&[String]>) -> Result<Extracted, ExtractError> {
    Err(ExtractError::Unsupported("DICOM is not read yet".into()))
}
