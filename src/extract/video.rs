//! Video metadata (DESIGN §3 `video`). Being written: see issue 2.
use super::{ExtractError, Extracted, ReadSeek, sniff::Format};

/// Extracts video metadata (or audio metadata for an audio-only container).
pub fn extract(_source: &mut dyn ReadSeek, format: Format) -> Result<Extracted, ExtractError> {
    Err(ExtractError::Unsupported(format!("{format:?} is not read yet")))
}
