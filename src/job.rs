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
    /// Every field within the bounds of its cloud (so that a source the cloud would refuse is
    /// refused here, naming the field), `field` being where it sits in the message (`source` of
    /// a job, `objects[3]` of a signing request).
    pub fn check_fields(&self, field: &str) -> Result<(), String> {
        let bucket_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c);
        match self {
            Source::S3(s3) => {
                let region_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
                check_chars(&format!("{field}.region"), &s3.region, 32, "a-z 0-9 -", region_char)?;
                check_chars(&format!("{field}.bucket"), &s3.bucket, 63, "a-z 0-9 - .", |c| {
                    bucket_char(c) && c != '_'
                })?;
                check_text(&format!("{field}.key"), &s3.key, MAX_NAME_BYTES)?;
                // IAM's own character sets: role paths and names, and sts:ExternalId.
                let iam_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-/:".contains(c);
                check_chars(&format!("{field}.role_arn"), &s3.role_arn, 2048, "an IAM role ARN", iam_char)?;
                if !s3.role_arn.starts_with("arn:") || !s3.role_arn.contains(":role/") {
                    return Err(format!("{field}.role_arn is not a role ARN: {:?}", s3.role_arn));
                }
                if let Some(external_id) = &s3.external_id {
                    let id_char = |c: char| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c);
                    check_chars(
                        &format!("{field}.external_id"),
                        external_id,
                        1224,
                        "A-Z a-z 0-9 + = , . @ : / - _",
                        id_char,
                    )?;
                }
            }
            Source::Gcs(gcs) => {
                check_chars(&format!("{field}.bucket"), &gcs.bucket, 222, "a-z 0-9 - _ .", bucket_char)?;
                check_text(&format!("{field}.object"), &gcs.object, MAX_NAME_BYTES)?;
                if let Some(account) = &gcs.service_account {
                    let email_char = |c: char| c.is_ascii_alphanumeric() || "-._@".contains(c);
                    check_chars(
                        &format!("{field}.service_account"),
                        account,
                        254,
                        "a service account's email",
                        email_char,
                    )?;
                    if account.matches('@').count() != 1 {
                        return Err(format!("{field}.service_account is not an email address: {account:?}"));
                    }
                }
            }
            Source::Local(local) => check_text(&format!("{field}.key"), &local.key, 4096)?,
        }
        Ok(())
    }

    /// An S3 source without its ExternalId (DESIGN §7): refused before any AssumeRole.
    pub fn lacks_external_id(&self) -> bool {
        matches!(self, Source::S3(s3) if s3.external_id.as_deref().is_none_or(str::is_empty))
    }

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
    /// The wire name (`access_denied`, …), for messages and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::AccessDenied => "access_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::UnsupportedType => "unsupported_type",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidJob => "invalid_job",
            ErrorKind::Transient => "transient",
            ErrorKind::Internal => "internal",
        }
    }

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

/// The only job schema this worker reads; a job of another schema is `invalid_job`.
pub const JOB_SCHEMA: u32 = 1;
/// The schema of the results this worker publishes.
pub const RESULT_SCHEMA: u32 = 1;

/// A "process asset" job, as the backend enqueues it (DESIGN §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub schema: u32,
    /// The idempotency key: a job delivered twice is answered twice with the same id.
    pub job_id: String,
    /// Opaque to the worker, echoed back so the backend needs no lookup.
    pub asset_id: String,
    /// What the backend believes the asset is; the bytes decide, this only breaks ties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<DataType>,
    pub source: Source,
    /// What to extract beyond the defaults.
    #[serde(default, skip_serializing_if = "JobOptions::is_default")]
    pub options: JobOptions,
}

/// A job's `options`: extraction beyond the defaults, each costing more than the default
/// answer. An option this worker does not know is an `invalid_job`, not silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Count the video frames of Matroska/WebM and MPEG-TS files (`frame_count`, and
    /// `frame_rate_mode` from every frame's timestamp), like `ffprobe -count_frames`: the
    /// whole file is read, where the default answer reads its headers.
    #[serde(default)]
    pub count_frames: bool,
}

impl JobOptions {
    fn is_default(&self) -> bool {
        self == &JobOptions::default()
    }
}

/// Why a delivery is not a job this worker can run: the reason, and the job's id when one
/// could be read, so the backend still hears about it (`invalid_job` result).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidJob {
    pub job_id: Option<String>,
    pub reason: InvalidJobReason,
}

/// The largest result, serialised: far above any real file's metadata (a 10,000-page PDF's page
/// list is about 0.5 MB), far below what a broker accepts (RabbitMQ's default
/// `max_message_size` is 128 MiB; operators often set less).
pub const MAX_RESULT_BYTES: usize = 1024 * 1024;

/// The longest job id: it is the result's AMQP `message_id`, a short string.
pub const MAX_JOB_ID_BYTES: usize = 255;
/// The longest asset id, object key or object name (S3's and GCS's own limit).
pub const MAX_NAME_BYTES: usize = 1024;

/// Whether `id` can be a job id: 1 to [`MAX_JOB_ID_BYTES`] visible ASCII characters (no
/// spaces), what UUIDs, ULIDs and database keys are, and what goes safely into a header and a
/// log line.
fn check_job_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_JOB_ID_BYTES {
        return Err(format!("job_id must be 1 to {MAX_JOB_ID_BYTES} bytes (it is {})", id.len()));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("job_id must be visible ASCII characters, without spaces".into());
    }
    Ok(())
}

/// `value` of the field `name` is 1 to `max` bytes of text without control characters.
fn check_text(name: &str, value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() || value.len() > max {
        return Err(format!("{name} must be 1 to {max} bytes (it is {})", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{name} holds a control character"));
    }
    Ok(())
}

/// `value` of the field `name` is 1 to `max` characters, each allowed by `allowed` (the
/// cloud's own rules, so that a job the cloud would refuse is refused here, with its field).
fn check_chars(
    name: &str,
    value: &str,
    max: usize,
    rule: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), String> {
    if value.is_empty() || value.len() > max || !value.chars().all(allowed) {
        return Err(format!("{name} must be 1 to {max} characters of {rule}: {value:?}"));
    }
    Ok(())
}

/// The categories of unusable deliveries; all of them are dead-lettered, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidJobReason {
    #[error("the job is not JSON: {0}")]
    NotJson(String),
    #[error("the job has schema {found}; this worker reads schema {JOB_SCHEMA}")]
    WrongSchema { found: String },
    #[error("the job's source names provider {0}; expected s3, gcs or local")]
    UnknownProvider(String),
    #[error("the S3 source has no external_id; the customer's role must require one (DESIGN §7)")]
    MissingExternalId,
    #[error("the job does not match schema {JOB_SCHEMA}: {0}")]
    Malformed(String),
    #[error(
        "the job's reply_to {0:?} is outside ASSET_WORKER_REPLY_TO_PREFIX (and not RabbitMQ's direct reply-to): the worker publishes only where it is told it may"
    )]
    ReplyToRefused(String),
}

impl Job {
    /// Every field within the bounds the clouds, the broker and the logs can carry; the
    /// problem names the field.
    fn check_fields(&self) -> Result<(), String> {
        check_job_id(&self.job_id)?;
        check_text("asset_id", &self.asset_id, MAX_NAME_BYTES)?;
        self.source.check_fields("source")
    }

    /// Reads a delivery's body. Checks go from the coarsest to the finest so the reason names
    /// the first thing the sender must fix.
    pub fn parse(body: &[u8]) -> Result<Job, InvalidJob> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| InvalidJob { job_id: None, reason: InvalidJobReason::NotJson(e.to_string()) })?;
        // An id that could not name a result (it becomes the result's AMQP `message_id`, at
        // most 255 bytes) is not read: such a job is dead-lettered without an answer.
        let job_id = value
            .get("job_id")
            .and_then(serde_json::Value::as_str)
            .filter(|id| check_job_id(id).is_ok())
            .map(str::to_owned);
        let invalid = |reason| InvalidJob { job_id: job_id.clone(), reason };
        match value.get("schema") {
            Some(schema) if schema.as_u64() == Some(u64::from(JOB_SCHEMA)) => {}
            Some(schema) => return Err(invalid(InvalidJobReason::WrongSchema { found: schema.to_string() })),
            None => return Err(invalid(InvalidJobReason::WrongSchema { found: "none".into() })),
        }
        if let Some(provider) = value.pointer("/source/provider")
            && !matches!(provider.as_str(), Some("s3" | "gcs" | "local"))
        {
            return Err(invalid(InvalidJobReason::UnknownProvider(provider.to_string())));
        }
        let job: Job =
            serde_json::from_value(value).map_err(|e| invalid(InvalidJobReason::Malformed(e.to_string())))?;
        if let Err(problem) = job.check_fields() {
            return Err(invalid(InvalidJobReason::Malformed(problem)));
        }
        if job.source.lacks_external_id() {
            return Err(invalid(InvalidJobReason::MissingExternalId));
        }
        Ok(job)
    }
}

/// Which worker answered, for the backend's audit and an operator's debugging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub version: String,
    pub region: String,
    pub host: String,
}

impl WorkerInfo {
    /// This binary, in `region`, on this host (the pod's name under Kubernetes).
    pub fn current(region: &str) -> WorkerInfo {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".into());
        WorkerInfo { version: env!("CARGO_PKG_VERSION").into(), region: region.into(), host }
    }
}

/// What became of one asset: the fields a job's result and a line of `extract` share
/// (DESIGN §2, §4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub status: Status,
    pub data_type: Option<DataType>,
    pub mime_type: Option<String>,
    pub size_bytes: Option<u64>,
    pub metadata: Option<serde_json::Value>,
    pub error: Option<ErrorBody>,
}

impl Outcome {
    /// The outcome of an extraction (or of what stopped it) of an object of `size_bytes`.
    pub fn new(extracted: Result<crate::extract::Extracted, ErrorBody>, size_bytes: Option<u64>) -> Outcome {
        match extracted {
            Ok(extracted) => Outcome {
                status: Status::Succeeded,
                data_type: Some(extracted.data_type),
                mime_type: Some(extracted.mime_type),
                size_bytes,
                metadata: Some(extracted.metadata),
                error: None,
            },
            Err(error) => Outcome::failed(error, size_bytes),
        }
    }

    /// A failure, with the object's size when it is known.
    pub fn failed(error: ErrorBody, size_bytes: Option<u64>) -> Outcome {
        Outcome {
            status: Status::Failed,
            data_type: None,
            mime_type: None,
            size_bytes,
            metadata: None,
            error: Some(error),
        }
    }
}

/// The answer to one job (DESIGN §2), published to the results exchange or the job's
/// `reply_to`. Every field is always present (`null` when unknown), so consumers need no
/// defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobResult {
    pub schema: u32,
    pub job_id: String,
    /// `None` only for an `invalid_job` whose asset id could not be read.
    pub asset_id: Option<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub stats: crate::pipeline::Stats,
    /// The job's `reply_to` queue, when no queue by that name took the answer (its caller went
    /// away) and it came to the results exchange instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_unroutable: Option<String>,
    /// Which attempt at the job this answer comes from (1 unless earlier ones failed
    /// transiently and were retried, or the job was redelivered after a worker was lost).
    pub attempt: u64,
    pub worker: WorkerInfo,
    /// RFC 3339, UTC, whole seconds.
    pub processed_at: String,
}

impl JobResult {
    /// The result of a job that went through the pipeline.
    pub fn from_processed(
        job: &Job,
        processed: crate::pipeline::Processed,
        worker: &WorkerInfo,
    ) -> JobResult {
        let size_bytes = processed.size_bytes;
        let outcome = Outcome::new(processed.outcome, size_bytes);
        let result = JobResult {
            stats: processed.stats,
            ..JobResult::new(job.job_id.clone(), Some(job.asset_id.clone()), outcome, worker)
        };
        let length = serde_json::to_vec(&result).map_or(usize::MAX, |body| body.len());
        if length <= MAX_RESULT_BYTES {
            return result;
        }
        // No customer file may make a result the broker refuses (its max_message_size) or a
        // backend chokes on: the job is answered, without the metadata.
        let error = ErrorBody::new(
            ErrorKind::TooLarge,
            format!(
                "the metadata of this file makes a result of {length} bytes, more than the {MAX_RESULT_BYTES} \
                 a result may carry"
            ),
        );
        JobResult { outcome: Outcome::failed(error, size_bytes), ..result }
    }

    /// A failed result with no pipeline stats (an invalid job, an exhausted retry budget).
    pub fn failed(
        job_id: String,
        asset_id: Option<String>,
        error: ErrorBody,
        worker: &WorkerInfo,
    ) -> JobResult {
        JobResult::new(job_id, asset_id, Outcome::failed(error, None), worker)
    }

    fn new(job_id: String, asset_id: Option<String>, outcome: Outcome, worker: &WorkerInfo) -> JobResult {
        JobResult {
            schema: RESULT_SCHEMA,
            job_id,
            asset_id,
            outcome,
            stats: crate::pipeline::Stats::default(),
            reply_to_unroutable: None,
            attempt: 1,
            worker: worker.clone(),
            processed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_job(job_id: &str, key: &str) -> String {
        serde_json::json!({"schema": 1, "job_id": job_id, "asset_id": "a", "source": {"provider": "local", "key": key}})
            .to_string()
    }

    #[test]
    fn options_are_read_and_an_unknown_one_is_refused() {
        let with = |options: serde_json::Value| {
            serde_json::json!({"schema": 1, "job_id": "o-1", "asset_id": "a", "data_type": "video",
                "source": {"provider": "local", "key": "k.mkv"}, "options": options})
            .to_string()
        };
        let plain = Job::parse(local_job("o-0", "k.mkv").as_bytes()).unwrap();
        assert!(!plain.options.count_frames);
        let counting = Job::parse(with(serde_json::json!({"count_frames": true})).as_bytes()).unwrap();
        assert!(counting.options.count_frames);
        let base = crate::extract::ExtractOptions {
            dicom_tags: Some(vec!["Modality".into()]),
            ..Default::default()
        };
        let options = base.for_job(&counting);
        assert!(options.count_frames);
        assert_eq!(options.hint, Some(DataType::Video));
        assert_eq!(options.dicom_tags, base.dicom_tags, "the worker's own settings stay");
        assert!(!base.for_job(&plain).count_frames);
        let unknown = Job::parse(with(serde_json::json!({"count_frame": true})).as_bytes()).unwrap_err();
        assert!(matches!(unknown.reason, InvalidJobReason::Malformed(_)), "{unknown}");
        assert!(unknown.to_string().contains("count_frame"), "{unknown}");
        assert_eq!(unknown.job_id.as_deref(), Some("o-1"));
        // a job without options is sent without them
        assert!(!serde_json::to_string(&plain).unwrap().contains("options"));
    }

    #[test]
    fn a_result_too_large_to_publish_is_answered_too_large_without_its_metadata() {
        let job = Job::parse(local_job("big-1", "k").as_bytes()).unwrap();
        let worker = WorkerInfo::current("eu-central-1");
        let processed = |metadata: serde_json::Value| crate::pipeline::Processed {
            outcome: Ok(crate::extract::Extracted {
                data_type: DataType::Dicom,
                mime_type: "application/dicom".into(),
                metadata,
            }),
            size_bytes: Some(10),
            stats: Default::default(),
        };
        let small = JobResult::from_processed(&job, processed(serde_json::json!({"rows": 1})), &worker);
        assert_eq!(small.outcome.status, Status::Succeeded);
        let huge = serde_json::json!({"tags": {"ImageComments": "x".repeat(MAX_RESULT_BYTES)}});
        let capped = JobResult::from_processed(&job, processed(huge), &worker);
        assert_eq!(capped.outcome.status, Status::Failed);
        assert_eq!(capped.outcome.error.as_ref().unwrap().kind, ErrorKind::TooLarge);
        assert!(capped.outcome.metadata.is_none());
        assert!(serde_json::to_vec(&capped).unwrap().len() < 4096);
        assert_eq!(capped.outcome.size_bytes, Some(10));
    }

    #[test]
    fn every_field_is_bounded_and_the_problem_names_it() {
        assert!(Job::parse(local_job("ok-1", "a/b.png").as_bytes()).is_ok());
        let long = Job::parse(local_job(&"j".repeat(256), "k").as_bytes()).unwrap_err();
        assert_eq!(long.job_id, None, "an id no result can carry is not read");
        assert!(long.to_string().contains("job_id"), "{long}");
        assert!(Job::parse(local_job(&"j".repeat(255), "k").as_bytes()).is_ok());
        let spaced = Job::parse(local_job("a b", "k").as_bytes()).unwrap_err();
        assert!(spaced.to_string().contains("job_id"), "{spaced}");
        let control = Job::parse(local_job("ok-2", "a\nb").as_bytes()).unwrap_err();
        assert_eq!(control.job_id.as_deref(), Some("ok-2"));
        assert!(control.to_string().contains("source.key"), "{control}");
        let s3 = |bucket: &str, role: &str, external_id: &str| {
            serde_json::json!({"schema": 1, "job_id": "s", "asset_id": "a", "source": {"provider": "s3",
                "region": "eu-central-1", "bucket": bucket, "key": "k", "role_arn": role, "external_id": external_id}})
            .to_string()
        };
        let role = "arn:aws:iam::123456789012:role/path/Reader";
        assert!(Job::parse(s3("customer-bucket", role, "hub-org-1").as_bytes()).is_ok());
        for (job, field) in [
            (s3("Bad_Bucket", role, "x1"), "source.bucket"),
            (s3("b", "arn:aws:iam::1:user/U", "x1"), "source.role_arn"),
            (s3("b", role, "has space"), "source.external_id"),
        ] {
            let error = Job::parse(job.as_bytes()).unwrap_err();
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn wire_names_match_the_design() {
        assert_eq!(serde_json::to_string(&ErrorKind::UnsupportedType).unwrap(), "\"unsupported_type\"");
        assert_eq!(serde_json::to_string(&DataType::Dicom).unwrap(), "\"dicom\"");
        assert_eq!("PDF".parse::<DataType>().unwrap(), DataType::Pdf);
        assert!("movie".parse::<DataType>().is_err());
        // as_str (metric labels, messages) spells every kind as the wire does.
        for kind in [
            ErrorKind::AccessDenied,
            ErrorKind::NotFound,
            ErrorKind::UnsupportedType,
            ErrorKind::Corrupt,
            ErrorKind::TooLarge,
            ErrorKind::Timeout,
            ErrorKind::InvalidJob,
            ErrorKind::Transient,
            ErrorKind::Internal,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
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

    #[test]
    fn a_job_parses_as_the_design_spells_it() {
        let job = Job::parse(
            br#"{"schema":1,"job_id":"j1","asset_id":"a1","data_type":"video",
                "source":{"provider":"local","key":"video/clip.mp4"}}"#,
        )
        .unwrap();
        assert_eq!(job.job_id, "j1");
        assert_eq!(job.data_type, Some(DataType::Video));
    }

    #[test]
    fn unusable_jobs_are_categorised_with_their_id_when_readable() {
        let reason = |body: &str| Job::parse(body.as_bytes()).unwrap_err();
        let not_json = reason("{not json");
        assert!(matches!(not_json.reason, InvalidJobReason::NotJson(_)));
        assert_eq!(not_json.job_id, None);
        let schema =
            reason(r#"{"schema":2,"job_id":"j2","asset_id":"a","source":{"provider":"local","key":"k"}}"#);
        assert!(matches!(schema.reason, InvalidJobReason::WrongSchema { .. }));
        assert_eq!(schema.job_id.as_deref(), Some("j2"));
        let ftp =
            reason(r#"{"schema":1,"job_id":"j3","asset_id":"a","source":{"provider":"ftp","key":"k"}}"#);
        assert!(matches!(ftp.reason, InvalidJobReason::UnknownProvider(_)));
        let no_external_id = reason(
            r#"{"schema":1,"job_id":"j4","asset_id":"a","source":{"provider":"s3","region":"eu-central-1",
                "bucket":"b","key":"k","role_arn":"arn:aws:iam::123456789012:role/R"}}"#,
        );
        assert_eq!(no_external_id.reason, InvalidJobReason::MissingExternalId);
        assert_eq!(no_external_id.job_id.as_deref(), Some("j4"));
        let no_asset = reason(r#"{"schema":1,"job_id":"j5","source":{"provider":"local","key":"k"}}"#);
        assert!(matches!(no_asset.reason, InvalidJobReason::Malformed(_)));
    }

    #[test]
    fn a_result_has_every_field_of_the_design() {
        let worker = WorkerInfo::current("eu-central-1");
        let result =
            JobResult::failed("j".into(), None, ErrorBody::new(ErrorKind::InvalidJob, "bad"), &worker);
        let value = serde_json::to_value(&result).unwrap();
        for field in [
            "schema",
            "job_id",
            "asset_id",
            "status",
            "data_type",
            "mime_type",
            "size_bytes",
            "metadata",
            "error",
            "stats",
            "worker",
            "processed_at",
        ] {
            assert!(value.get(field).is_some(), "{field} missing from {value}");
        }
        assert_eq!(value["error"]["kind"], "invalid_job");
        assert_eq!(value["stats"]["total_ms"], 0);
        assert!(humantime::parse_rfc3339(value["processed_at"].as_str().unwrap()).is_ok());
    }
}
