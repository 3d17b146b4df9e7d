//! Image metadata (DESIGN §3 `image`). Being written: see issue 2.
use super::{ExtractError, Extracted, ReadSeek, sniff::Format};

/// Extracts image metadata from headers only.
pub fn extract(_source: &mut dyn ReadSeek, format: Format) -> Result<Extracted, ExtractError> {
    Err(ExtractError::Unsupported(format!("{format:?} is not read yet")))
}
