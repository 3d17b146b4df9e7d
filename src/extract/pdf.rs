//! PDF metadata (DESIGN §3 `pdf`). Being written: see issue 2.
use super::{ExtractError, Extracted, ReadSeek};

/// Extracts page count, version, encryption and page boxes.
pub fn extract(_source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    Err(ExtractError::Unsupported("PDF is not read yet".into()))
}
