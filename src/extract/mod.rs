//! Metadata extraction: sniff the format from the bytes, then hand the file to the extractor
//! of its data type. Every extractor takes a `Read + Seek` source and reads only what it needs
//! (headers, indexes), never pixel data, so that a remote source can fetch just those bytes.

pub mod audio;
pub mod avi;
pub mod dicom;
pub mod image;
pub mod isobmff;
mod mpeg_audio;
pub mod mpegts;
pub mod pdf;
pub mod pdf_objects;
pub mod sniff;
pub mod text;
pub mod video;

use std::io::{self, Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::job::{DataType, ErrorBody, ErrorKind};
use sniff::Format;

/// A byte source an extractor can read and seek: a local file, or a remote object that is
/// fetched range by range as it is read. `Send + Sync` because symphonia's sources must be.
pub trait ReadSeek: Read + Seek + Send + Sync {}
impl<T: Read + Seek + Send + Sync + ?Sized> ReadSeek for T {}

/// What one file turned out to be, and its metadata (DESIGN §3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extracted {
    pub data_type: DataType,
    pub mime_type: String,
    pub metadata: serde_json::Value,
}

impl Extracted {
    /// Wraps one extractor's typed metadata; the field names are the typed struct's.
    pub fn new(data_type: DataType, mime_type: &str, metadata: impl Serialize) -> Self {
        let metadata = serde_json::to_value(metadata).expect("metadata structs serialise");
        Extracted { data_type, mime_type: mime_type.to_owned(), metadata }
    }
}

/// Why a file's metadata could not be read, in the categories a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Not a format we read (or not one we read yet); the message names what it is.
    #[error("{0}")]
    Unsupported(String),
    /// The format is known but the file breaks it: truncated, inconsistent, hostile.
    #[error("{0}")]
    Corrupt(String),
    /// Reading it would take more memory or bytes than the configured limits allow.
    #[error("{0}")]
    TooLarge(String),
    /// The source could not be read.
    #[error("reading the file failed: {0}")]
    Io(#[from] io::Error),
}

impl ExtractError {
    /// The wire category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ExtractError::Unsupported(_) => ErrorKind::UnsupportedType,
            ExtractError::Corrupt(_) => ErrorKind::Corrupt,
            ExtractError::TooLarge(_) => ErrorKind::TooLarge,
            // A remote source's failure (access denied, not found, …) keeps its own category.
            ExtractError::Io(e) if let Some(failed) = SourceFailed::from_io(e) => failed.0.kind,
            ExtractError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => ErrorKind::Corrupt,
            ExtractError::Io(e) if e.kind() == io::ErrorKind::InvalidData => ErrorKind::Corrupt,
            // A `try_reserve` that failed (`read_to_end` under the memory cap): the cap, as
            // when the allocator aborts the child; never a retryable `internal`.
            ExtractError::Io(e) if e.kind() == io::ErrorKind::OutOfMemory => ErrorKind::TooLarge,
            ExtractError::Io(_) => ErrorKind::Internal,
        }
    }

    /// The error as it goes on the wire.
    pub fn to_body(&self) -> ErrorBody {
        let message = match self {
            ExtractError::Io(e) if let Some(failed) = SourceFailed::from_io(e) => failed.0.message.clone(),
            ExtractError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                "the file ends before its headers do (truncated)".to_owned()
            }
            ExtractError::Io(e) if e.kind() == io::ErrorKind::OutOfMemory => {
                "reading this file needs more memory than the memory limit allows".to_owned()
            }
            other => other.to_string(),
        };
        ErrorBody::new(self.kind(), message)
    }

    /// A `Corrupt` error that names the format whose parser refused the file.
    pub fn corrupt(format: &str, cause: impl std::fmt::Display) -> Self {
        ExtractError::Corrupt(format!("not a readable {format} file: {cause}"))
    }
}

/// The byte source itself failed (the worker could not fetch a range): carried through
/// `io::Error` so that parsers pass it on, and keeping the source's category (`access_denied`,
/// `transient`, …) rather than reading as a corrupt file.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message)]
pub struct SourceFailed(pub ErrorBody);

impl SourceFailed {
    /// The source failure an extractor's I/O error carries, if any.
    pub fn from_io(error: &io::Error) -> Option<&SourceFailed> {
        error.get_ref()?.downcast_ref::<SourceFailed>()
    }
}

/// An error and all its causes, outermost first, as one message: parser crates wrap the
/// useful part ("unexpected end of file at offset …") in generic outer errors.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let causes = std::iter::successors(Some(error), |e| e.source());
    causes.map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
}

/// What a caught panic said (its `&str` or `String` payload), for an error message.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into())
}

/// Choices that change what is extracted, not how.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtractOptions {
    /// The job's `data_type`, which only breaks ties (an empty file hinted as text is text).
    pub hint: Option<DataType>,
    /// DICOM keywords to copy into `tags`; `None` takes [`dicom::DEFAULT_TAGS`].
    pub dicom_tags: Option<Vec<String>>,
    /// Count the video frames of Matroska/WebM and MPEG-TS files, which reads them whole
    /// (the job's `options.count_frames`, `extract --count-frames`).
    #[serde(default)]
    pub count_frames: bool,
}

impl ExtractOptions {
    /// These options as one job asks for them: its `data_type` hint and its `options`.
    pub fn for_job(&self, job: &crate::job::Job) -> ExtractOptions {
        ExtractOptions { hint: job.data_type, count_frames: job.options.count_frames, ..self.clone() }
    }
}

/// Reads the start of a source for sniffing and rewinds it.
fn read_head(source: &mut dyn ReadSeek) -> io::Result<Vec<u8>> {
    source.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(sniff::SNIFF_LEN);
    source.take(sniff::SNIFF_LEN as u64).read_to_end(&mut head)?;
    source.seek(SeekFrom::Start(0))?;
    Ok(head)
}

/// Extracts the metadata of one file: the format is sniffed from its bytes, the extractor of
/// that format reads the rest.
pub fn extract(source: &mut dyn ReadSeek, options: &ExtractOptions) -> Result<Extracted, ExtractError> {
    let head = read_head(source)?;
    let format = match sniff::sniff(&head) {
        Some(format) => format,
        None if head.is_empty() && options.hint == Some(DataType::Text) => Format::Text,
        None if head.is_empty() => {
            return Err(ExtractError::Unsupported("the file is empty: there is nothing to identify".into()));
        }
        None if text::looks_like_text(&head) => Format::Text,
        None => {
            return Err(ExtractError::Unsupported(
                "no known file signature, and the bytes are not text in any supported encoding".into(),
            ));
        }
    };
    match format {
        Format::Png
        | Format::Jpeg
        | Format::Gif
        | Format::WebP
        | Format::Tiff
        | Format::Bmp
        | Format::Heif => image::extract(source, format),
        Format::IsoBmff | Format::Matroska | Format::Avi | Format::MpegTs => {
            video::extract(source, format, options.count_frames)
        }
        Format::Wav
        | Format::Aiff
        | Format::Au
        | Format::Mp3
        | Format::Flac
        | Format::Ogg
        | Format::Adts
        | Format::Caf => audio::extract(source, format),
        Format::Pdf => pdf::extract(source),
        Format::Dicom => dicom::extract(source, options.dicom_tags.as_deref()),
        Format::Text => text::extract(source),
    }
}

/// A source that counts the bytes a parser reads: what a ranged fetch would download (for
/// tests of how little of a file a parser needs).
#[cfg(test)]
pub(crate) struct Counting<R> {
    pub inner: R,
    pub bytes_read: u64,
}

#[cfg(test)]
impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes_read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
impl<R: std::io::Seek> std::io::Seek for Counting<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reservation_is_too_large_never_internal() {
        // What `read_to_end` returns when `try_reserve` fails under the memory cap.
        let error = ExtractError::Io(io::Error::from(io::ErrorKind::OutOfMemory));
        assert_eq!(error.kind(), ErrorKind::TooLarge);
        assert!(!error.to_body().retryable);
    }
}
