//! Text metadata (DESIGN §3 `text`). Being written: see issue 2.
use super::{ExtractError, Extracted, ReadSeek};

/// Whether the first bytes of a file look like text in an encoding we read.
pub fn looks_like_text(_head: &[u8]) -> bool {
    false
}

/// Extracts encoding, counts and line endings.
pub fn extract(_source: &mut dyn ReadSeek) -> Result<Extracted, ExtractError> {
    Err(ExtractError::Unsupported("text is not read yet".into()))
}
