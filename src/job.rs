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

/// Where an asset lives and how the platform was granted access to it (`source` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase")]
pub enum Source {
    /// An object in a customer's S3 bucket, read through a role the customer lets us assume.
    S3(S3Source),
    /// An object in a customer's Cloud Storage bucket, signed as the customer's service account.
    Gcs(GcsSource),
    /// A file under the worker's configured local root (development and demos).
    Local(LocalSource),
}

/// An S3 object and the role that grants access to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Source {
    pub region: String,
    pub bucket: String,
    pub key: String,
    pub role_arn: String,
    /// Required (DESIGN §7): it is what stops another tenant from naming this role.
    pub external_id: Option<String>,
}

/// A Cloud Storage object and the customer's service account that may read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsSource {
    pub bucket: String,
    pub object: String,
    /// Impersonated to sign; without it the worker's own key signs (development only).
    pub service_account: Option<String>,
}

/// A path relative to the configured local root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSource {
    pub key: String,
}

impl Source {
    /// The provider's wire name, for messages and metric labels.
    pub fn provider(&self) -> &'static str {
        match self {
            Source::S3(_) => "s3",
            Source::Gcs(_) => "gcs",
            Source::Local(_) => "local",
        }
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
    fn sources_parse_as_the_design_spells_them() {
        let s3: Source = serde_json::from_str(
            r#"{"provider":"s3","region":"eu-central-1","bucket":"b","key":"k.mp4",
                "role_arn":"arn:aws:iam::123456789012:role/R","external_id":"x"}"#,
        )
        .unwrap();
        assert_eq!(s3.provider(), "s3");
        let gcs: Source = serde_json::from_str(
            r#"{"provider":"gcs","bucket":"b","object":"o","service_account":"r@p.iam.gserviceaccount.com"}"#,
        )
        .unwrap();
        assert!(matches!(gcs, Source::Gcs(GcsSource { service_account: Some(_), .. })));
        assert!(serde_json::from_str::<Source>(r#"{"provider":"ftp","key":"k"}"#).is_err());
        assert!(serde_json::from_str::<Source>(r#"{"provider":"local","key":"k","extra":1}"#).is_err());
    }

    #[test]
    fn only_passing_failures_are_retryable() {
        assert!(ErrorKind::Transient.retryable());
        assert!(!ErrorKind::Corrupt.retryable());
        assert!(!ErrorKind::AccessDenied.retryable());
    }
}
