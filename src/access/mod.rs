//! Delegated access: turn a job's `source` into something the fetcher can read, using only the
//! rights the customer granted (DESIGN §1, §7). One provider a file behind the [`Provider`]
//! seam; each answers with a [`Fetchable`]: a short-lived signed URL, or a local file.
//!
//! A signed URL is a bearer credential: it lives in a [`SignedUrl`], whose `Debug` and
//! `Display` show scheme, host and path only, so it can't reach a log line or an error message
//! by accident.

pub mod aws;
pub mod cors;
pub mod gcs;
pub mod local;
pub mod providers;

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};

use crate::job::ErrorKind;

/// A URL whose query string grants read access until `expires_at`.
#[derive(Clone)]
pub struct SignedUrl {
    url: SecretString,
    /// When the signature (or the credentials behind it) stops working.
    pub expires_at: SystemTime,
}

impl SignedUrl {
    /// Wraps a freshly minted URL.
    pub fn new(url: String, expires_at: SystemTime) -> Self {
        SignedUrl { url: SecretString::from(url), expires_at }
    }

    /// The URL itself, for the one place that sends it: an HTTP request (or, for `sign`, the
    /// user who asked for it).
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// Scheme, host and path, without the query that carries the signature.
    pub fn redacted(&self) -> String {
        let url = self.url.expose_secret();
        let end = url.find(['?', '#']).unwrap_or(url.len());
        format!("{}?<signature redacted>", &url[..end])
    }
}

impl fmt::Debug for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedUrl")
            .field("url", &self.redacted())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl fmt::Display for SignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// What a provider hands the fetcher.
#[derive(Debug)]
pub enum Fetchable {
    /// Fetched over HTTP(S), range by range.
    Url(SignedUrl),
    /// Read in place: a regular file under the local provider's root, opened beneath it, and
    /// its size (learnt when it was checked to be a regular file).
    File { file: std::fs::File, size: u64 },
}

/// What a mint is for: the job that asks (its id names the cloud session, for audit trails)
/// and how long the URL may live.
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub job_id: String,
    pub ttl: Duration,
    /// Mint from new credentials, not a cached session: a URL from the cached one was just
    /// refused, and the customer may have revoked the sessions issued before some moment
    /// (AWS's "revoke active sessions") while still trusting the platform.
    pub fresh_credentials: bool,
}

impl MintRequest {
    /// A mint for `job_id` of a URL living `ttl` at most, from cached credentials if any.
    pub fn new(job_id: impl Into<String>, ttl: Duration) -> MintRequest {
        MintRequest { job_id: job_id.into(), ttl, fresh_credentials: false }
    }
}

/// Why access could not be had, in the categories the ack policy and an admin act on. Messages
/// name the role, bucket or setting to fix, never a URL or a secret.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The job itself is wrong: no ExternalId, a malformed ARN, a path that leaves the root.
    #[error("{0}")]
    InvalidJob(String),
    /// The customer's side refuses: the role can't be assumed, or it may not read the object.
    #[error("{0}")]
    AccessDenied(String),
    /// The bucket or object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Throttling, a 5xx, a network failure: trying again later may work.
    #[error("{0}")]
    Transient(String),
    /// This worker lacks a setting or an identity the provider needs; the operator must act.
    #[error("{0}")]
    Misconfigured(String),
}

impl AccessError {
    /// The wire category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AccessError::InvalidJob(_) => ErrorKind::InvalidJob,
            AccessError::AccessDenied(_) => ErrorKind::AccessDenied,
            AccessError::NotFound(_) => ErrorKind::NotFound,
            AccessError::Transient(_) => ErrorKind::Transient,
            AccessError::Misconfigured(_) => ErrorKind::Internal,
        }
    }
}

/// A way to reach objects of one kind of source (S3, GCS, local).
pub trait Provider {
    /// The job's `source` fields this provider reads.
    type Source;

    /// Makes `source` readable for `request.ttl` at most (less if the credentials behind it
    /// expire sooner).
    fn mint(
        &self,
        source: &Self::Source,
        request: &MintRequest,
    ) -> impl Future<Output = Result<Fetchable, AccessError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_never_print_their_signature() {
        let url = SignedUrl::new(
            "https://s3.eu-central-1.amazonaws.com/b/k.mp4?X-Amz-Credential=AKIA&X-Amz-Signature=abc123"
                .into(),
            SystemTime::UNIX_EPOCH,
        );
        for shown in [format!("{url}"), format!("{url:?}"), url.redacted()] {
            assert!(!shown.contains("abc123") && !shown.contains("AKIA"), "{shown}");
            assert!(shown.contains("/b/k.mp4"), "{shown}");
        }
        assert!(url.expose().ends_with("abc123"));
    }
}
