//! The wire types every part of the worker shares: data types, outcomes and error kinds,
//! spelled exactly as DESIGN §2 and §3 spell them on the wire.

use serde::{Deserialize, Serialize};

/// The kind of asset, as the platform labels it (`data_type` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Image,
    Video,
    Audio,
    Text,
    Dicom,
    Pdf,
}

impl DataType {
    /// The wire name, for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Image => "image",
            DataType::Video => "video",
            DataType::Audio => "audio",
            DataType::Text => "text",
            DataType::Dicom => "dicom",
            DataType::Pdf => "pdf",
        }
    }
}

impl std::str::FromStr for DataType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
            format!("unknown data type {s:?}; expected one of image, video, audio, text, dicom, pdf")
        })
    }
}

/// Whether an asset was processed (`status` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Succeeded,
    Failed,
}

/// Why an asset failed: the categories the backend and the ack policy act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    AccessDenied,
    NotFound,
    UnsupportedType,
    Corrupt,
    TooLarge,
    Timeout,
    InvalidJob,
    Transient,
    Internal,
}

impl ErrorKind {
    /// Whether enqueueing the same job again may succeed without anyone changing anything.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Timeout | ErrorKind::Internal)
    }
}

/// The `error` object of a result: what failed, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: bool,
}

impl ErrorBody {
    /// An error of `kind`; `retryable` follows from the kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorBody { kind, message: message.into(), retryable: kind.retryable() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_the_design() {
        assert_eq!(serde_json::to_string(&ErrorKind::UnsupportedType).unwrap(), "\"unsupported_type\"");
        assert_eq!(serde_json::to_string(&DataType::Dicom).unwrap(), "\"dicom\"");
        assert_eq!("PDF".parse::<DataType>().unwrap(), DataType::Pdf);
        assert!("movie".parse::<DataType>().is_err());
    }

    #[test]
    fn only_passing_failures_are_retryable() {
        assert!(ErrorKind::Transient.retryable());
        assert!(!ErrorKind::Corrupt.retryable());
        assert!(!ErrorKind::AccessDenied.retryable());
    }
}
