//! Audio metadata (DESIGN §3 `audio`). Being written: see issue 2.
use super::{ExtractError, Extracted, ReadSeek, sniff::Format};

/// Extracts audio metadata from a file sniffed as `format`.
pub fn extract(_source: &mut dyn ReadSeek, format: Format) -> Result<Extracted, ExtractError> {
    Err(ExtractError::Unsupported(format!("{format:?} audio is not read yet")))
}
