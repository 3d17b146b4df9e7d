//! Display URLs: the other use of a customer's delegation (DESIGN §2 "Signing requests"). The
//! platform's page shows assets through short-lived URLs the browser fetches itself; a page
//! needs 50 to 200 at once, so a request signs a batch, with the same cached sessions (and
//! the same checks of each source) as jobs. Served over the broker ([`crate::queue::signing`])
//! and by `asset-worker sign`.
//!
//! A URL never lives longer than `ASSET_WORKER_DISPLAY_URL_TTL_SECONDS` (a longer
//! `ttl_seconds` is shortened, not refused: the answer's `expires_at` says when it ends) nor
//! than the session it is signed with (S3: it would stop working with the session).

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::access::providers::Access;
use crate::access::{Fetchable, MintRequest};
use crate::job::{ErrorBody, ErrorKind, MAX_JOB_ID_BYTES, Source, WorkerInfo};

/// The only signing-request schema this worker reads, and the schema of its answers.
pub const SIGN_SCHEMA: u32 = 1;

/// The most objects one request may name: a labeling page's 50–200 with room to spare, while
/// one answer (about 1.5 KB per S3 URL) stays well under a megabyte.
pub const MAX_SIGN_BATCH: usize = 500;

/// URLs of one request signed at once. An S3 URL from a cached session is a local HMAC; a GCS
/// URL signed by impersonation is one `signBlob` call to Google, so a batch of 100 signed one
/// after the other would take 100 round trips.
const SIGNING_CONCURRENCY: usize = 16;

/// A request to sign display URLs, as read from its message.
#[derive(Debug)]
pub struct SignRequest {
    /// Echoed in the answer, and the name of a new cloud session (for the customer's audit
    /// trail), as a job id is.
    pub request_id: String,
    /// The lifetime asked for; `None`: the longest allowed.
    pub ttl: Option<Duration>,
    /// Each object, or why it cannot be signed (its answer is that error; the others are
    /// signed all the same).
    pub objects: Vec<Result<Source, ErrorBody>>,
}

/// Why a message is not a signing request this worker can serve; nothing in it is signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct InvalidSignRequest {
    /// Its `request_id`, when one could be read, for the answer.
    pub request_id: Option<String>,
    pub problem: String,
}

impl SignRequest {
    /// Reads a message's body: `{"schema":1,"request_id":…,"ttl_seconds":…,"objects":[…]}`.
    /// A malformed request is refused whole; a malformed object only costs its own answer.
    pub fn parse(body: &[u8]) -> Result<SignRequest, InvalidSignRequest> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| InvalidSignRequest {
            request_id: None,
            problem: format!("the signing request is not JSON: {e}"),
        })?;
        let request_id = value.get("request_id").and_then(serde_json::Value::as_str);
        let readable_id = request_id
            .filter(|id| {
                !id.is_empty() && id.len() <= MAX_JOB_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic())
            })
            .map(str::to_owned);
        let invalid = |problem: String| InvalidSignRequest { request_id: readable_id.clone(), problem };
        if value.get("schema").and_then(serde_json::Value::as_u64) != Some(u64::from(SIGN_SCHEMA)) {
            let found = value.get("schema").map_or("none".into(), ToString::to_string);
            return Err(invalid(format!(
                "the signing request has schema {found}; this worker reads schema {SIGN_SCHEMA}"
            )));
        }
        if let Some(unknown) = value.as_object().and_then(|fields| {
            fields
                .keys()
                .find(|key| !["schema", "request_id", "ttl_seconds", "objects"].contains(&key.as_str()))
        }) {
            return Err(invalid(format!("the signing request has an unknown field {unknown:?}")));
        }
        let Some(request_id) = readable_id.clone() else {
            return Err(invalid(format!(
                "request_id must be 1 to {MAX_JOB_ID_BYTES} visible ASCII characters, without spaces"
            )));
        };
        let ttl = match value.get("ttl_seconds") {
            None | Some(serde_json::Value::Null) => None,
            Some(ttl) => match ttl.as_u64() {
                Some(seconds) if seconds > 0 => Some(Duration::from_secs(seconds)),
                _ => {
                    return Err(invalid(format!(
                        "ttl_seconds must be a whole number of seconds above 0: {ttl}"
                    )));
                }
            },
        };
        let objects = match value.get("objects").and_then(serde_json::Value::as_array) {
            Some(objects) if !objects.is_empty() && objects.len() <= MAX_SIGN_BATCH => objects,
            Some(objects) if !objects.is_empty() => {
                return Err(invalid(format!(
                    "the signing request names {} objects; at most {MAX_SIGN_BATCH} may be signed at once",
                    objects.len()
                )));
            }
            _ => return Err(invalid("objects must be a list of 1 or more sources".into())),
        };
        let objects = objects.iter().enumerate().map(|(index, object)| read_source(index, object)).collect();
        Ok(SignRequest { request_id, ttl, objects })
    }
}

/// One entry of `objects`: a job's `source`, with the same checks.
fn read_source(index: usize, object: &serde_json::Value) -> Result<Source, ErrorBody> {
    let field = format!("objects[{index}]");
    let invalid = |problem: String| ErrorBody::new(ErrorKind::InvalidJob, problem);
    let source: Source = serde_json::from_value(object.clone())
        .map_err(|e| invalid(format!("{field} is not a source: {e}")))?;
    source.check_fields(&field).map_err(invalid)?;
    if source.lacks_external_id() {
        return Err(invalid(format!(
            "{field} has no external_id; the customer's role must require one (DESIGN §7)"
        )));
    }
    Ok(source)
}

/// The answer to a signing request: one entry per object, in the request's order, or the
/// request's own `error` (and no entries) when it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignAnswer {
    pub schema: u32,
    pub request_id: Option<String>,
    #[serde(default)]
    pub urls: Vec<DisplayUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    pub worker: WorkerInfo,
}

/// One object's display URL, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisplayUrl {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// RFC 3339, UTC, to the second: when the URL stops working.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl DisplayUrl {
    fn signed(url: &crate::access::SignedUrl) -> DisplayUrl {
        DisplayUrl {
            url: Some(url.expose().to_owned()),
            expires_at: Some(humantime::format_rfc3339_seconds(url.expires_at).to_string()),
            error: None,
        }
    }

    fn failed(error: ErrorBody) -> DisplayUrl {
        DisplayUrl { url: None, expires_at: None, error: Some(error) }
    }

    /// When the URL stops working, if it was signed.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expires_at.as_deref().and_then(|at| humantime::parse_rfc3339(at).ok())
    }
}

impl SignAnswer {
    /// The answer to a request that could not be read.
    pub fn refused(invalid: &InvalidSignRequest, worker: &WorkerInfo) -> SignAnswer {
        SignAnswer {
            schema: SIGN_SCHEMA,
            request_id: invalid.request_id.clone(),
            urls: Vec::new(),
            error: Some(ErrorBody::new(ErrorKind::InvalidJob, invalid.problem.clone())),
            worker: worker.clone(),
        }
    }
}

/// Signs every object of `request` for `min(request.ttl, max_ttl)` at most, in order.
pub async fn sign_batch(
    access: &Access,
    request: &SignRequest,
    max_ttl: Duration,
    worker: &WorkerInfo,
) -> SignAnswer {
    let ttl = request.ttl.map_or(max_ttl, |asked| asked.min(max_ttl));
    // The futures are made before they are streamed: a closure in `map` would trip the
    // compiler's higher-ranked lifetime check where the worker spawns this future.
    let signing: Vec<_> =
        request.objects.iter().map(|object| sign_entry(access, object, ttl, &request.request_id)).collect();
    let urls = futures_util::stream::iter(signing).buffered(SIGNING_CONCURRENCY).collect().await;
    SignAnswer {
        schema: SIGN_SCHEMA,
        request_id: Some(request.request_id.clone()),
        urls,
        error: None,
        worker: worker.clone(),
    }
}

/// One entry of a batch: signed, or the error its object was read with.
async fn sign_entry(
    access: &Access,
    object: &Result<Source, ErrorBody>,
    ttl: Duration,
    request_id: &str,
) -> DisplayUrl {
    match object {
        Ok(source) => sign_one(access, source, ttl, request_id).await,
        Err(error) => DisplayUrl::failed(error.clone()),
    }
}

/// A display URL for `source` living `ttl` at most, minted as a job's would be (the same
/// cached session); `request_id` names a new session if one is needed.
pub async fn sign_one(access: &Access, source: &Source, ttl: Duration, request_id: &str) -> DisplayUrl {
    let request = MintRequest::new(request_id, ttl);
    match access.mint(source, &request).await {
        Ok(Fetchable::Url(url)) => DisplayUrl::signed(&url),
        Ok(Fetchable::File { .. }) => DisplayUrl::failed(ErrorBody::new(
            ErrorKind::InvalidJob,
            "local files have no URL to sign; use s3:// or gs://",
        )),
        Err(error) => DisplayUrl::failed(ErrorBody::new(error.kind(), error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(key: &str) -> serde_json::Value {
        serde_json::json!({"provider": "s3", "region": "eu-central-1", "bucket": "b", "key": key,
            "role_arn": "arn:aws:iam::123456789012:role/r", "external_id": "x"})
    }

    #[test]
    fn a_request_is_read_object_by_object() {
        let body = serde_json::json!({"schema": 1, "request_id": "page-7", "ttl_seconds": 600,
            "objects": [s3("a.png"), {"provider": "s3", "bucket": "b"}, s3(""),
                        {"provider": "s3", "region": "eu-central-1", "bucket": "b", "key": "c",
                         "role_arn": "arn:aws:iam::123456789012:role/r"}]});
        let request = SignRequest::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(request.request_id, "page-7");
        assert_eq!(request.ttl, Some(Duration::from_secs(600)));
        assert!(request.objects[0].is_ok());
        let problems: Vec<String> =
            request.objects[1..].iter().map(|o| o.as_ref().unwrap_err().message.clone()).collect();
        assert!(problems[0].starts_with("objects[1] is not a source"), "{problems:?}");
        assert!(problems[1].starts_with("objects[2].key"), "{problems:?}");
        assert!(problems[2].contains("objects[3] has no external_id"), "{problems:?}");
    }

    #[test]
    fn a_request_that_cannot_be_served_is_refused_whole_naming_why() {
        let refused = |body: serde_json::Value| SignRequest::parse(body.to_string().as_bytes()).unwrap_err();
        let many = vec![s3("k"); MAX_SIGN_BATCH + 1];
        for (body, expected_id, problem) in [
            (
                serde_json::json!({"schema": 2, "request_id": "r", "objects": [s3("k")]}),
                Some("r"),
                "schema 2",
            ),
            (serde_json::json!({"schema": 1, "objects": [s3("k")]}), None, "request_id"),
            (serde_json::json!({"schema": 1, "request_id": "r", "objects": []}), Some("r"), "1 or more"),
            (serde_json::json!({"schema": 1, "request_id": "r", "objects": many}), Some("r"), "at most 500"),
            (
                serde_json::json!({"schema": 1, "request_id": "r", "ttl_seconds": 0, "objects": [s3("k")]}),
                Some("r"),
                "ttl_seconds",
            ),
            (
                serde_json::json!({"schema": 1, "request_id": "r", "ttl": 5, "objects": [s3("k")]}),
                Some("r"),
                "unknown field \"ttl\"",
            ),
        ] {
            let invalid = refused(body);
            assert_eq!(invalid.request_id.as_deref(), expected_id, "{invalid:?}");
            assert!(invalid.problem.contains(problem), "{problem}: {}", invalid.problem);
        }
        assert!(SignRequest::parse(b"{").unwrap_err().problem.contains("not JSON"));
    }
}
