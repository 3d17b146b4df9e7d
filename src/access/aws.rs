//! S3 through the customer's role: assume it with STS (ExternalId required, session named after
//! the job, narrowed to `s3:GetObject` on the job's bucket), keep the temporary credentials
//! until shortly before they expire, and presign one GET per job (DESIGN §1, §7).
//!
//! # Sessions
//! One STS session serves every job with the same (role, ExternalId, bucket, region): AssumeRole
//! is rate-limited per account and costs a round trip, while a presign is local arithmetic.
//! Concurrent jobs for one key wait for a single AssumeRole. A session is renewed once less than
//! [`REFRESH_MARGIN`] plus the URL's lifetime remains, so a URL never outlives its credentials
//! (AWS rejects a presigned URL whose session has expired, whatever its `X-Amz-Expires`).
//!
//! A session is also renewed once it is older than `session_max_age`
//! (`ASSET_WORKER_SESSION_MAX_AGE_SECONDS`, 15 minutes by default), however long STS let it
//! live: a customer who removes the platform from the role's trust policy ends new sessions,
//! but STS does not end the ones it already issued. Re-assuming every 15 minutes is what
//! bounds how long this worker keeps minting after that (docs/CUSTOMER-SETUP.md).
//!
//! **Audit trail**: a session is named after the job that *opened* it (`asset-worker-{job_id}`),
//! so in the customer's CloudTrail the GETs of later jobs that reused it carry the first job's
//! id. The session name identifies a session, not every job that used it (DESIGN §7).
//!
//! # What the URL looks like
//! The Rust SDK adds `x-id=GetObject` to the query of every GetObject; S3 ignores it. We drop it
//! before signing so the URL is the one botocore makes, which lets the signature be proven
//! byte for byte against `tests/vectors/s3-presign-generated/`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;

use super::{AccessError, Fetchable, MintRequest, Provider, SignedUrl};
use crate::job::S3Source;

/// A session is renewed once less than this (plus the URL's lifetime) remains: enough for a
/// fetch that starts right after the mint to finish inside the session.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A URL ends this long before its credentials: the clocks of the worker and of AWS may differ.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// STS's bounds on `DurationSeconds` (a role's own maximum may be lower, down to one hour).
const SESSION_DURATION_RANGE: (Duration, Duration) =
    (Duration::from_secs(900), Duration::from_secs(12 * 3600));

/// SigV4's bound on a presigned URL's lifetime.
const MAX_URL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bounds on each STS or S3 call where the worker's own SDK configuration sets none: a hung
/// endpoint must cost a job a few seconds, not its whole time limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// All attempts of one call together (the SDK retries throttling, 5xx and resets 3 times).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// STS limits a role session name to 64 characters.
const MAX_SESSION_NAME: usize = 64;

/// How this worker reaches S3 and STS. Built by the caller from the configuration
/// (`ASSET_WORKER_S3_ENDPOINT`, `ASSET_WORKER_S3_FORCE_PATH_STYLE`, `ASSET_WORKER_STS_ENDPOINT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3AccessSettings {
    /// STS for every region (an emulator or a VPC endpoint). `None`: the region's own STS,
    /// `https://sts.{region}.amazonaws.com` (or its partition's equivalent).
    pub sts_endpoint: Option<String>,
    /// S3 for every region (an S3-compatible store or a VPC endpoint). `None`: the region's S3.
    pub s3_endpoint: Option<String>,
    /// `https://host/bucket/key` instead of `https://bucket.host/key`, for stores without
    /// wildcard DNS.
    pub force_path_style: bool,
    /// The longest a signed URL lives; a mint may ask for less, and gets less when its
    /// credentials end sooner.
    pub url_ttl: Duration,
    /// `DurationSeconds` of each AssumeRole (900 s at least). A URL can live at most this long
    /// minus [`EXPIRY_MARGIN`]: raise it for long display URLs.
    pub session_duration: Duration,
    /// A cached session older than this is not used for a new URL: the role is assumed again,
    /// so a trust the customer withdrew stops new URLs within this time.
    pub session_max_age: Duration,
}

/// The default of `session_max_age`: the 15 minutes `docs/CUSTOMER-SETUP.md` promises.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(15 * 60);

impl Default for S3AccessSettings {
    fn default() -> Self {
        S3AccessSettings {
            sts_endpoint: None,
            s3_endpoint: None,
            force_path_style: false,
            url_ttl: Duration::from_secs(5 * 60),
            session_duration: Duration::from_secs(15 * 60),
            session_max_age: DEFAULT_SESSION_MAX_AGE,
        }
    }
}

impl S3AccessSettings {
    /// Refuses settings STS or SigV4 would refuse later, naming the setting to fix.
    fn validate(&self) -> Result<(), AccessError> {
        let (min, max) = SESSION_DURATION_RANGE;
        if self.session_duration < min || self.session_duration > max {
            return Err(AccessError::Misconfigured(format!(
                "the S3 session duration is {} s; STS accepts {}–{} s",
                self.session_duration.as_secs(),
                min.as_secs(),
                max.as_secs()
            )));
        }
        if self.session_max_age.is_zero() {
            return Err(AccessError::Misconfigured(
                "the S3 session maximum age is 0 s (ASSET_WORKER_SESSION_MAX_AGE_SECONDS); it must be \
                 at least 1 s"
                    .into(),
            ));
        }
        if self.url_ttl.is_zero() || self.url_ttl > MAX_URL_TTL {
            return Err(AccessError::Misconfigured(format!(
                "the signed URL lifetime is {} s; SigV4 accepts 1–{} s",
                self.url_ttl.as_secs(),
                MAX_URL_TTL.as_secs()
            )));
        }
        for (setting, endpoint) in [
            ("ASSET_WORKER_STS_ENDPOINT", &self.sts_endpoint),
            ("ASSET_WORKER_S3_ENDPOINT", &self.s3_endpoint),
        ] {
            if let Some(endpoint) = endpoint
                && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            {
                return Err(AccessError::Misconfigured(format!(
                    "{setting} is {endpoint:?}; it must be an http:// or https:// URL"
                )));
            }
        }
        Ok(())
    }
}

/// Temporary credentials for one (role, ExternalId, bucket, region), and the S3 client that
/// signs with them.
#[derive(Clone)]
struct Session {
    s3: aws_sdk_s3::Client,
    expires_at: SystemTime,
    /// When STS granted it (this worker's clock), for `session_max_age`.
    assumed_at: SystemTime,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl Session {
    /// How long the credentials still work, as far as this worker's clock can tell.
    fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or(Duration::ZERO)
    }

    /// Whether a new URL may still come from this session: it has life enough for the URL
    /// (`needed`) and is younger than `max_age`.
    fn serves(&self, now: SystemTime, needed: Duration, max_age: Duration) -> bool {
        let age = now.duration_since(self.assumed_at).unwrap_or(Duration::ZERO);
        self.remaining(now) >= needed && age < max_age
    }
}

/// What a session is shared by: every field the session's rights depend on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    role_arn: String,
    external_id: String,
    bucket: String,
    region: String,
}

/// One slot per key; the async mutex is what makes concurrent mints of one key share one
/// AssumeRole (the first one in assumes the role, the others find its session).
type SessionSlot = Arc<tokio::sync::Mutex<Option<Session>>>;

/// The S3 provider: the worker's own AWS identity, the STS client of each region and the
/// cached sessions.
pub struct S3Access {
    settings: S3AccessSettings,
    /// The worker's own identity and SDK plumbing (HTTP client, retries); the standard chain.
    worker: SdkConfig,
    sts_clients: Mutex<HashMap<String, aws_sdk_sts::Client>>,
    sessions: Mutex<HashMap<SessionKey, SessionSlot>>,
}

impl fmt::Debug for S3Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Access").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// What a HEAD of the object proved: it exists and the session may read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadableObject {
    pub size_bytes: Option<u64>,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
}

impl S3Access {
    /// A provider whose own identity is `worker` (its credentials provider calls STS; its region
    /// is not used: every job names its own).
    pub fn new(settings: S3AccessSettings, worker: SdkConfig) -> Result<Self, AccessError> {
        settings.validate()?;
        Ok(S3Access { settings, worker, sts_clients: Mutex::default(), sessions: Mutex::default() })
    }

    /// A provider whose identity comes from the SDK's standard chain: `AWS_ACCESS_KEY_ID`/…,
    /// web identity (EKS IRSA), ECS or EKS Pod Identity, the instance profile.
    ///
    /// `home_region` (the worker's own AWS region, `ASSET_WORKER_AWS_REGION`) is the region of the worker's
    /// own identity calls unless `AWS_REGION`/`AWS_DEFAULT_REGION` name one; without it the
    /// SDK would probe the instance metadata service for a region at every start.
    pub async fn from_environment(
        settings: S3AccessSettings,
        home_region: &str,
    ) -> Result<Self, AccessError> {
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
            .unwrap_or_else(|| home_region.to_owned());
        let worker = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region)).load().await;
        Self::new(settings, worker)
    }

    /// The settings in force.
    pub fn settings(&self) -> &S3AccessSettings {
        &self.settings
    }

    /// Checks that the job's object can be read the way a job would read it: assume the role
    /// (with the session policy), then HEAD the object. For `asset-worker check`.
    pub async fn check_object(&self, source: &S3Source, job_id: &str) -> Result<ReadableObject, AccessError> {
        let session = self.session(source, job_id, self.settings.url_ttl, false).await?;
        match session.s3.head_object().bucket(&source.bucket).key(&source.key).send().await {
            Ok(head) => Ok(ReadableObject {
                size_bytes: head.content_length().and_then(|n| u64::try_from(n).ok()),
                content_type: head.content_type().map(str::to_owned),
                etag: head.e_tag().map(str::to_owned),
                last_modified: head.last_modified().and_then(|t| SystemTime::try_from(*t).ok()),
            }),
            Err(err) => Err(classify_head_failure(&err, source)),
        }
    }

    /// The session for `source`, from the cache if it still has enough life for a URL of `ttl`
    /// (and `fresh` does not ask for new credentials), otherwise from a new AssumeRole named
    /// after `job_id`, which replaces the cached one.
    async fn session(
        &self,
        source: &S3Source,
        job_id: &str,
        ttl: Duration,
        fresh: bool,
    ) -> Result<Session, AccessError> {
        let external_id = validate_source(source)?;
        let key = SessionKey {
            role_arn: source.role_arn.clone(),
            external_id: external_id.to_owned(),
            bucket: source.bucket.clone(),
            region: source.region.clone(),
        };
        let slot = self.slot(&key);
        let mut cached = slot.lock().await;
        let needed = life_needed(ttl, self.settings.session_duration);
        if !fresh
            && let Some(session) = cached.as_ref()
            && session.serves(SystemTime::now(), needed, self.settings.session_max_age)
        {
            return Ok(session.clone());
        }
        let session = self.assume_role(source, Some(external_id), &session_name(job_id), true).await?;
        *cached = Some(session.clone());
        Ok(session)
    }

    /// The cache slot of `key`. Adding a key first drops the slots nobody uses whose session
    /// has expired, so the map holds the live sessions, not every customer ever seen.
    fn slot(&self, key: &SessionKey) -> SessionSlot {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = sessions.get(key) {
            return slot.clone();
        }
        let now = SystemTime::now();
        sessions.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || slot
                    .try_lock()
                    .map_or(true, |session| session.as_ref().is_some_and(|s| s.expires_at > now))
        });
        sessions.entry(key.clone()).or_default().clone()
    }

    /// The STS client of `region`: its own regional endpoint unless one is configured.
    fn sts_client(&self, region: &str) -> aws_sdk_sts::Client {
        let mut clients = self.sts_clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let mut config = aws_sdk_sts::config::Builder::from(&self.worker)
                    .region(Region::new(region.to_owned()))
                    .timeout_config(call_timeouts(&self.worker));
                if let Some(endpoint) = &self.settings.sts_endpoint {
                    config = config.endpoint_url(endpoint);
                }
                aws_sdk_sts::Client::from_conf(config.build())
            })
            .clone()
    }

    /// AssumeRole on the job's role as `session_name`. A job's session always has the
    /// ExternalId and is `narrowed` to GetObject on the bucket; `check`'s probes leave out one
    /// or the other to see what the customer's policies alone allow.
    async fn assume_role(
        &self,
        source: &S3Source,
        external_id: Option<&str>,
        session_name: &str,
        narrowed: bool,
    ) -> Result<Session, AccessError> {
        let duration = i32::try_from(self.settings.session_duration.as_secs()).unwrap_or(i32::MAX);
        let assumed_at = SystemTime::now();
        let answer = self
            .sts_client(&source.region)
            .assume_role()
            .role_arn(&source.role_arn)
            .role_session_name(session_name)
            .set_external_id(external_id.map(str::to_owned))
            .duration_seconds(duration)
            .set_policy(narrowed.then(|| session_policy(&source.bucket)))
            .send()
            .await
            .map_err(|err| {
                classify_assume_role_failure(&err, source, self.settings.sts_endpoint.as_deref())
            })?;
        let credentials = answer.credentials().ok_or_else(|| {
            AccessError::Transient(format!(
                "STS answered AssumeRole on {} without credentials",
                source.role_arn
            ))
        })?;
        let expires_at = SystemTime::try_from(*credentials.expiration()).map_err(|_| {
            AccessError::Transient(format!(
                "STS answered AssumeRole on {} with an unreadable expiry",
                source.role_arn
            ))
        })?;
        let credentials = aws_sdk_s3::config::Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            Some(expires_at),
            "asset-worker AssumeRole",
        );
        Ok(Session {
            s3: s3_client(&self.worker, &self.settings, &source.region, credentials),
            expires_at,
            assumed_at,
        })
    }

    /// Whether the role refuses a session without the ExternalId, as its trust policy must
    /// (`Condition: StringEquals sts:ExternalId`): without it, anyone who learns the role's ARN
    /// and can get the platform to act for them could read this customer's bucket (the
    /// confused deputy). `Ok(false)` means STS granted a session without it; that session is
    /// not used. For `asset-worker check`, after the job's own AssumeRole has succeeded.
    pub async fn external_id_enforced(&self, source: &S3Source, job_id: &str) -> Result<bool, AccessError> {
        validate_source(source)?;
        let name = session_name(&format!("{job_id}-no-external-id"));
        match self.assume_role(source, None, &name, true).await {
            Ok(_) => Ok(false),
            Err(AccessError::AccessDenied(_)) => Ok(true),
            Err(other) => Err(other),
        }
    }

    /// Whether the customer's policies alone (no session policy) let the role list the job's
    /// bucket: more than the platform needs (GetObject). One ListObjectsV2 of at most one key;
    /// nothing is written. For `asset-worker check`.
    pub async fn may_list_bucket(&self, source: &S3Source, job_id: &str) -> Result<bool, AccessError> {
        let external_id = validate_source(source)?;
        let name = session_name(&format!("{job_id}-scope"));
        let session = self.assume_role(source, Some(external_id), &name, false).await?;
        match session.s3.list_objects_v2().bucket(&source.bucket).max_keys(1).send().await {
            Ok(_) => Ok(true),
            Err(err) => match err.raw_response().map(|raw| raw.status().as_u16()) {
                Some(403) => Ok(false),
                Some(404) => Err(AccessError::NotFound(format!("bucket {} does not exist", source.bucket))),
                _ => Err(AccessError::Transient(format!(
                    "listing s3://{} to check the role's scope failed: {}",
                    source.bucket,
                    causes(&err)
                ))),
            },
        }
    }
}

impl Provider for S3Access {
    type Source = S3Source;

    async fn mint(&self, source: &S3Source, request: &MintRequest) -> Result<Fetchable, AccessError> {
        let wanted = request.ttl.min(self.settings.url_ttl);
        let session = self.session(source, &request.job_id, wanted, request.fresh_credentials).await?;
        let now = SystemTime::now();
        let ttl = wanted.min(session.remaining(now).saturating_sub(EXPIRY_MARGIN));
        if ttl < Duration::from_secs(1) {
            // Only a session STS granted for less than EXPIRY_MARGIN gets here.
            return Err(AccessError::Transient(format!(
                "the session for {} expires before a URL could be used; try again",
                source.role_arn
            )));
        }
        let request = session.s3.get_object().bucket(&source.bucket).key(&source.key);
        let url = presign_get(request, now, ttl).await.map_err(|err| {
            AccessError::Misconfigured(format!(
                "presigning s3://{}/{} failed: {}",
                source.bucket,
                source.key,
                causes(&err)
            ))
        })?;
        Ok(Fetchable::Url(SignedUrl::new(url, now + ttl)))
    }
}

/// How much life a cached session needs to serve a URL of `ttl`: the URL plus
/// [`REFRESH_MARGIN`], but never more than a fresh session would have minus that margin —
/// otherwise a TTL close to the session duration would make every mint assume the role again.
fn life_needed(ttl: Duration, session_duration: Duration) -> Duration {
    (ttl + REFRESH_MARGIN).min(session_duration.saturating_sub(REFRESH_MARGIN))
}

/// The S3 client that signs with a session's credentials, at the configured endpoint.
fn s3_client(
    worker: &SdkConfig,
    settings: &S3AccessSettings,
    region: &str,
    credentials: aws_sdk_s3::config::Credentials,
) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(worker)
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .force_path_style(settings.force_path_style)
        .timeout_config(call_timeouts(worker));
    if let Some(endpoint) = &settings.s3_endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

/// The worker's own timeouts, with ours where it has none.
fn call_timeouts(worker: &SdkConfig) -> TimeoutConfig {
    let ours = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(CALL_TIMEOUT);
    worker.timeout_config().map(TimeoutConfig::to_builder).unwrap_or_default().take_unset_from(ours).build()
}

/// Presigns `request` (a GetObject) to be valid from `start` for `ttl`, without the SDK's
/// `x-id` query parameter (see the module's doc).
async fn presign_get(
    request: aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
    start: SystemTime,
    ttl: Duration,
) -> Result<String, SdkError<aws_sdk_s3::operation::get_object::GetObjectError>> {
    let config = PresigningConfig::builder()
        .start_time(start)
        .expires_in(ttl)
        .build()
        .map_err(SdkError::construction_failure)?;
    let presigned = request
        .customize()
        .mutate_request(|http| {
            let stripped = without_x_id(http.uri());
            if stripped != http.uri() {
                // The URI came from a valid one by removing a parameter: it stays valid.
                let _ = http.set_uri(stripped);
            }
        })
        .presigned(config)
        .await?;
    Ok(presigned.uri().to_owned())
}

/// `uri` without its `x-id=…` query parameter.
fn without_x_id(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_owned();
    };
    let kept: Vec<&str> =
        query.split('&').filter(|pair| !pair.starts_with("x-id=") && *pair != "x-id").collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}

/// Checks the fields STS, the session policy and the endpoint are built from; returns the
/// ExternalId. The bucket becomes part of an IAM policy and the region part of a hostname, so
/// both are held to the characters AWS allows (a bucket `*` would widen the policy to every
/// bucket the role can read).
fn validate_source(source: &S3Source) -> Result<&str, AccessError> {
    let external_id = source.external_id.as_deref().map(str::trim).unwrap_or_default();
    if external_id.is_empty() {
        return Err(AccessError::InvalidJob(format!(
            "the S3 source has no external_id: the role {} may only be assumed with the ExternalId \
             the customer configured for this integration",
            source.role_arn
        )));
    }
    let arn: Vec<&str> = source.role_arn.splitn(6, ':').collect();
    if arn.len() != 6 || arn[0] != "arn" || arn[2] != "iam" || !arn[5].starts_with("role/") {
        return Err(AccessError::InvalidJob(format!(
            "role_arn {:?} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
            source.role_arn
        )));
    }
    let region_ok = !source.region.is_empty()
        && source.region.len() <= 50
        && source.region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(AccessError::InvalidJob(format!(
            "region {:?} is not an AWS region name (like eu-central-1)",
            source.region
        )));
    }
    // Today's rules are lowercase only; legacy us-east-1 buckets may have capitals and '_'.
    let bucket_ok = (3..=255).contains(&source.bucket.len())
        && source.bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && source.bucket.bytes().any(|b| b.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(AccessError::InvalidJob(format!("bucket {:?} is not an S3 bucket name", source.bucket)));
    }
    if source.key.is_empty() {
        return Err(AccessError::InvalidJob(format!(
            "the S3 source names no key in bucket {}",
            source.bucket
        )));
    }
    Ok(external_id)
}

/// `asset-worker-{job_id}`, held to STS's rules (2–64 characters of `[\w+=,.@-]`): any other
/// character becomes `-`, and a long job id is cut. Customers read it in CloudTrail.
fn session_name(job_id: &str) -> String {
    let sanitized =
        job_id.chars().map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' });
    "asset-worker-".chars().chain(sanitized).take(MAX_SESSION_NAME).collect()
}

/// The inline session policy: the session may GetObject (which also allows HEAD) in the job's
/// bucket and nothing else; STS grants the intersection of this and the role's own policies.
/// `bucket` has passed [`validate_source`], so it needs no JSON escaping; packed, this is far
/// below STS's 2048-character limit.
fn session_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/*"}}]}}"#
    )
}

/// Turns a failed AssumeRole into the category the ack policy and the customer's admin act on.
fn classify_assume_role_failure(
    err: &SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>,
    source: &S3Source,
    sts_endpoint: Option<&str>,
) -> AccessError {
    let sts = sts_endpoint.map_or_else(|| format!("STS in {}", source.region), |e| format!("STS at {e}"));
    match err {
        SdkError::ServiceError(service) => {
            let failure = service.err();
            // The SDK reads STS's own error shape; emulators and proxies may wrap it
            // differently (moto: `ErrorResponse/Errors/Error`), so look for the fields anywhere.
            let body = service.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
            let code = failure.code().or_else(|| xml_text(&body, "Code"));
            let message = failure.message().or_else(|| xml_text(&body, "Message"));
            sts_service_failure(code, message, service.raw().status().as_u16(), source)
        }
        // Its body is not shown, not even through the parse error: a 200 whose body could
        // not be read carries the session's secret key.
        SdkError::ResponseError(response) => AccessError::Transient(format!(
            "{sts} answered AssumeRole on {} with an unreadable HTTP {} response",
            source.role_arn,
            response.raw().status().as_u16()
        )),
        SdkError::DispatchFailure(dispatch) if dispatch.is_io() || dispatch.is_timeout() => {
            AccessError::Transient(format!("{sts} could not be reached: {}", causes(err)))
        }
        // Resolving the worker's own credentials happens before anything is sent, and its
        // failure surfaces as a dispatch failure that is neither I/O nor a timeout.
        SdkError::DispatchFailure(_) if is_missing_identity(err) => AccessError::Misconfigured(format!(
            "the worker has no AWS identity to call {sts} with: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or give the instance or pod an IAM identity (instance \
             profile, EKS Pod Identity, IRSA) ({})",
            causes(err)
        )),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AccessError::Transient(format!(
            "AssumeRole on {} at {sts} failed: {}",
            source.role_arn,
            causes(err)
        )),
        _ => AccessError::Misconfigured(format!(
            "AssumeRole on {} could not be sent to {sts}: {}",
            source.role_arn,
            causes(err)
        )),
    }
}

/// The messages of `err` and its causes, joined. Never their `Debug`, which for an SDK error
/// includes the raw response (`DisplayErrorContext` appends it too).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let message = err.to_string();
        if !text.ends_with(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = err.source();
    }
    text
}

/// The text of the first `<name>` element of `xml`, if short enough to be a code or a message.
fn xml_text<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let length = xml[start..].find(&format!("</{name}>"))?;
    Some(xml[start..start + length].trim()).filter(|text| !text.is_empty() && text.len() <= 1000)
}

/// Whether the error chain says the worker's own credentials could not be had.
fn is_missing_identity(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<CredentialsError>() || err.to_string().contains("no identity resolver") {
            return true;
        }
        cause = err.source();
    }
    false
}

/// The category of an error STS answered with (`code` as in its XML, e.g. `AccessDenied`).
fn sts_service_failure(
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
    source: &S3Source,
) -> AccessError {
    let role = &source.role_arn;
    let says = format!("STS says {}: {}", code.unwrap_or("nothing"), message.unwrap_or("(no message)"));
    // A 403 without a code is how some emulators and proxies say AccessDenied.
    let denied = code == Some("AccessDenied") || (code.is_none() && status == 403);
    match code {
        _ if denied => AccessError::AccessDenied(format!(
            "AssumeRole on {role} was refused: check that the role trusts the platform's account and \
             that its ExternalId condition equals the one configured for this integration ({says})"
        )),
        Some("RegionDisabledException") => AccessError::AccessDenied(format!(
            "STS is not activated in {region} for the account of {role}: the account's administrator \
             must activate {region} (IAM → Account settings), or the integration must name an active \
             region ({says})",
            region = source.region
        )),
        Some("MalformedPolicyDocument" | "PackedPolicyTooLarge") => AccessError::InvalidJob(format!(
            "STS refused the session policy for bucket {} ({says})",
            source.bucket
        )),
        Some("InvalidIdentityToken" | "ValidationError" | "InvalidParameterValue") => {
            AccessError::InvalidJob(format!("AssumeRole on {role} was refused as invalid ({says})"))
        }
        Some(
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "ExpiredToken"
            | "ExpiredTokenException",
        ) => AccessError::Misconfigured(format!(
            "STS does not accept the worker's own AWS identity: check the worker's credentials \
             (AWS_ACCESS_KEY_ID…, instance or pod identity) ({says})"
        )),
        Some(
            "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "InternalFailure"
            | "IDPCommunicationError",
        ) => AccessError::Transient(format!("AssumeRole on {role} should be tried again ({says})")),
        _ if status == 429 || status >= 500 => {
            AccessError::Transient(format!("AssumeRole on {role} failed with HTTP {status} ({says})"))
        }
        _ if status == 403 => AccessError::AccessDenied(format!("AssumeRole on {role} was refused ({says})")),
        _ => AccessError::InvalidJob(format!("AssumeRole on {role} failed with HTTP {status} ({says})")),
    }
}

/// Turns a failed HEAD into what an admin must fix: the role's rights, the key, or the region.
fn classify_head_failure(
    err: &SdkError<aws_sdk_s3::operation::head_object::HeadObjectError, HttpResponse>,
    source: &S3Source,
) -> AccessError {
    match err {
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            head_failure(
                raw.status().as_u16(),
                service.err().code(),
                raw.headers().get("x-amz-bucket-region"),
                source,
            )
        }
        SdkError::ResponseError(response) => AccessError::Transient(format!(
            "HEAD s3://{}/{} got an unreadable HTTP {} response",
            source.bucket,
            source.key,
            response.raw().status().as_u16()
        )),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AccessError::Transient(format!(
            "HEAD s3://{}/{} failed: {}",
            source.bucket,
            source.key,
            causes(err)
        )),
        _ => AccessError::Misconfigured(format!(
            "HEAD s3://{}/{} could not be sent: {}",
            source.bucket,
            source.key,
            causes(err)
        )),
    }
}

/// The category of an S3 answer to HEAD. A HEAD answer has no body, so the status and the
/// `x-amz-bucket-region` header are all there is to go on. The header is believed only on an
/// answer about the region (S3-compatible stores send it with a fixed region on every answer).
fn head_failure(
    status: u16,
    code: Option<&str>,
    bucket_region: Option<&str>,
    source: &S3Source,
) -> AccessError {
    let object = format!("s3://{}/{}", source.bucket, source.key);
    let region_code = matches!(
        code,
        Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException")
    );
    let redirected = matches!(status, 301 | 307) || region_code;
    // A request signed for the wrong region is a 400 (AuthorizationHeaderMalformed), whose
    // code a HEAD answer cannot carry: the header is what tells it apart.
    let actual = bucket_region.filter(|actual| *actual != source.region);
    match (status, actual) {
        (301 | 307 | 400, Some(actual)) => AccessError::InvalidJob(format!(
            "bucket {} is in region {actual}, but the job says {}: set the integration's region to {actual}",
            source.bucket, source.region
        )),
        _ if redirected => AccessError::InvalidJob(format!(
            "bucket {} is not in region {} (S3 did not say which region it is in): set the \
             integration's region to the bucket's",
            source.bucket, source.region
        )),
        (403, _) => AccessError::AccessDenied(format!(
            "the role {} may not read {object}: its policy (and the bucket policy, and the KMS key \
             policy if the object is encrypted with one) must allow s3:GetObject on arn:aws:s3:::{}/{} \
             (or on a prefix or bucket wildcard that covers it)",
            source.role_arn, source.bucket, source.key
        )),
        (404, _) => {
            AccessError::NotFound(format!("{object} does not exist (no such key, or no such bucket)"))
        }
        (429 | 500.., _) => {
            AccessError::Transient(format!("HEAD {object} answered HTTP {status}; try again"))
        }
        _ => AccessError::InvalidJob(format!("HEAD {object} answered HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};

    fn source() -> S3Source {
        S3Source {
            region: "eu-central-1".into(),
            bucket: "customer-bucket".into(),
            key: "folder/clip.mp4".into(),
            role_arn: "arn:aws:iam::123456789012:role/HubDelegatedAccess".into(),
            external_id: Some("hub-org-1234".into()),
        }
    }

    /// The query parameters of a URL, decoded only as far as splitting, in a stable order.
    fn query_pairs(url: &str) -> Vec<String> {
        let mut pairs: Vec<String> =
            url.split_once('?').map(|(_, q)| q.split('&').map(str::to_owned).collect()).unwrap_or_default();
        pairs.sort();
        pairs
    }

    #[tokio::test]
    async fn presigned_urls_match_botocore_byte_for_byte() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/s3-presign-generated/s3_presign_botocore.json"
        );
        let vectors: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = vectors["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 5);
        let worker = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        for case in cases {
            let text = |field: &str| case[field].as_str().unwrap_or_else(|| panic!("{field}")).to_owned();
            let description = text("description");
            let path_style = text("addressing_style") == "path";
            let settings = S3AccessSettings {
                // The virtual-hosted case is AWS's own regional endpoint: the SDK's default.
                s3_endpoint: path_style.then(|| text("endpoint")),
                force_path_style: path_style,
                ..S3AccessSettings::default()
            };
            let credentials = aws_sdk_s3::config::Credentials::new(
                text("access_key_id"),
                text("secret_access_key"),
                case["session_token"].as_str().map(str::to_owned),
                None,
                "vector",
            );
            let client = s3_client(&worker, &settings, &text("region"), credentials);
            let mut request = client.get_object().bucket(text("bucket")).key(text("key"));
            if let Some(disposition) = case["extra_params"]["ResponseContentDisposition"].as_str() {
                request = request.response_content_disposition(disposition);
            }
            let start = DateTime::from_str(&text("timestamp"), DateTimeFormat::DateTime).unwrap();
            let ttl = Duration::from_secs(case["expires_in"].as_u64().unwrap());
            let url = presign_get(request, SystemTime::try_from(start).unwrap(), ttl).await.unwrap();

            let expected = text("expected_url");
            let (ours, theirs) = (url.split_once('?').unwrap().0, expected.split_once('?').unwrap().0);
            assert_eq!(ours, theirs, "{description}: scheme, host and path");
            // botocore and the SDK order the parameters differently in the URL (the signature
            // covers them sorted); as a set, they and the signature must be identical.
            assert_eq!(query_pairs(&url), query_pairs(&expected), "{description}");
        }
    }

    #[test]
    fn the_x_id_parameter_is_dropped_and_nothing_else() {
        assert_eq!(without_x_id("https://h/b/k?x-id=GetObject"), "https://h/b/k");
        assert_eq!(without_x_id("https://h/b/k?x-id=GetObject&a=1"), "https://h/b/k?a=1");
        assert_eq!(without_x_id("https://h/b/k?a=1&x-id=GetObject&b=2"), "https://h/b/k?a=1&b=2");
        assert_eq!(without_x_id("https://h/b/x-id=k?ax-id=1"), "https://h/b/x-id=k?ax-id=1");
        assert_eq!(without_x_id("https://h/b/k"), "https://h/b/k");
    }

    #[test]
    fn session_names_carry_the_job_id_within_the_rules_of_sts() {
        assert_eq!(session_name("4f6a-01"), "asset-worker-4f6a-01");
        assert_eq!(session_name("a b/c:d\u{e9}"), "asset-worker-a-b-c-d-");
        assert_eq!(session_name("x_y+z=1,2.3@4"), "asset-worker-x_y+z=1,2.3@4");
        assert_eq!(session_name(""), "asset-worker-");
        let long = session_name(&"7".repeat(100));
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("asset-worker-777"));
        for name in [session_name("\u{1F600}".repeat(70).as_str()), session_name("éé")] {
            assert!((2..=64).contains(&name.len()), "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b)), "{name}");
        }
    }

    #[test]
    fn the_session_policy_allows_get_object_on_the_bucket_only() {
        let policy = session_policy("customer-bucket");
        assert_eq!(
            policy,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::customer-bucket/*"}]}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&policy).unwrap();
        assert_eq!(parsed["Statement"].as_array().unwrap().len(), 1);
        assert!(session_policy(&"b".repeat(255)).len() < 2048);
    }

    #[test]
    fn sources_that_would_widen_the_policy_or_the_endpoint_are_refused() {
        let invalid = |change: fn(&mut S3Source)| {
            let mut s = source();
            change(&mut s);
            match validate_source(&s) {
                Err(AccessError::InvalidJob(message)) => message,
                other => panic!("{other:?}"),
            }
        };
        assert!(invalid(|s| s.external_id = None).contains("external_id"));
        assert!(invalid(|s| s.external_id = Some("  ".into())).contains("external_id"));
        assert!(invalid(|s| s.role_arn = "HubDelegatedAccess".into()).contains("role_arn"));
        assert!(invalid(|s| s.role_arn = "arn:aws:iam::1:user/u".into()).contains("role_arn"));
        assert!(invalid(|s| s.bucket = "*".into()).contains("bucket"));
        assert!(invalid(|s| s.bucket = "b\"}]".into()).contains("bucket"));
        assert!(invalid(|s| s.bucket = "...".into()).contains("bucket"));
        assert!(invalid(|s| s.region = "evil.example/".into()).contains("region"));
        assert!(invalid(|s| s.region = String::new()).contains("region"));
        assert!(invalid(|s| s.key = String::new()).contains("key"));
        assert_eq!(validate_source(&source()).unwrap(), "hub-org-1234");
        let mut legacy = source();
        legacy.bucket = "Legacy_Bucket.1".into();
        assert!(validate_source(&legacy).is_ok());
    }

    #[test]
    fn settings_outside_what_sts_and_sigv4_accept_are_refused() {
        let refused = |settings: S3AccessSettings| match settings.validate() {
            Err(AccessError::Misconfigured(message)) => message,
            other => panic!("{other:?}"),
        };
        let defaults = S3AccessSettings::default();
        assert!(defaults.validate().is_ok());
        assert_eq!(defaults.url_ttl, Duration::from_secs(300));
        assert_eq!(defaults.session_duration, Duration::from_secs(900));
        assert!(
            refused(S3AccessSettings { session_duration: Duration::from_secs(899), ..defaults.clone() })
                .contains("899")
        );
        assert!(
            refused(S3AccessSettings { url_ttl: Duration::ZERO, ..defaults.clone() }).contains("lifetime")
        );
        let bad_endpoint = S3AccessSettings { s3_endpoint: Some("127.0.0.1:9000".into()), ..defaults };
        assert!(refused(bad_endpoint).contains("ASSET_WORKER_S3_ENDPOINT"));
    }

    #[test]
    fn a_session_is_renewed_while_a_url_of_full_length_still_fits() {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        // Defaults: 5-minute URLs from 15-minute sessions are served while 10 minutes remain.
        assert_eq!(life_needed(minutes(5), minutes(15)), minutes(10));
        // A URL as long as the session cannot be served in full; a fresh session must still do.
        assert_eq!(life_needed(minutes(15), minutes(15)), minutes(10));
        assert_eq!(life_needed(minutes(15), minutes(60)), minutes(20));
    }

    #[test]
    fn a_cached_session_serves_while_young_enough_and_long_enough() {
        let worker = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let credentials = aws_sdk_s3::config::Credentials::new("AKID", "secret", None, None, "test");
        let now = SystemTime::now();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let session = |age: Duration, life: Duration| Session {
            s3: s3_client(&worker, &S3AccessSettings::default(), "eu-central-1", credentials.clone()),
            assumed_at: now - age,
            expires_at: now + life,
        };
        // A one-hour session, 10 minutes needed, re-assumed at 15 minutes of age.
        assert!(session(minutes(14), minutes(46)).serves(now, minutes(10), minutes(15)));
        assert!(!session(minutes(15), minutes(45)).serves(now, minutes(10), minutes(15)), "too old");
        assert!(!session(minutes(1), minutes(9)).serves(now, minutes(10), minutes(15)), "too short");
    }

    #[test]
    fn sts_errors_become_categories_an_admin_can_act_on() {
        let s = source();
        let kind = |code: Option<&str>, status| sts_service_failure(code, Some("the message"), status, &s);
        let denied = kind(Some("AccessDenied"), 403);
        assert!(matches!(denied, AccessError::AccessDenied(_)));
        let text = denied.to_string();
        assert!(
            text.contains(&s.role_arn) && text.contains("ExternalId") && text.contains("trusts"),
            "{text}"
        );
        let region = kind(Some("RegionDisabledException"), 403);
        assert!(matches!(&region, AccessError::AccessDenied(m) if m.contains("eu-central-1")), "{region}");
        for code in ["InvalidIdentityToken", "MalformedPolicyDocument", "ValidationError"] {
            assert!(matches!(kind(Some(code), 400), AccessError::InvalidJob(_)), "{code}");
        }
        for code in ["Throttling", "ServiceUnavailable"] {
            assert!(matches!(kind(Some(code), 400), AccessError::Transient(_)), "{code}");
        }
        assert!(matches!(kind(None, 503), AccessError::Transient(_)));
        assert!(matches!(kind(Some("InvalidClientTokenId"), 403), AccessError::Misconfigured(_)));
        assert!(matches!(kind(Some("Whatever"), 403), AccessError::AccessDenied(_)));
        assert!(matches!(kind(None, 403), AccessError::AccessDenied(m) if m.contains("ExternalId")));
    }

    #[test]
    fn error_fields_are_found_in_the_error_shapes_emulators_use() {
        let moto = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ErrorResponse><Errors><Error><Code>AccessDenied</Code>\
                    <Message>User: arn:aws:iam::123456789012:user/worker is not authorized</Message>\
                    <Type>Sender</Type></Error></Errors></ErrorResponse>";
        assert_eq!(xml_text(moto, "Code"), Some("AccessDenied"));
        assert_eq!(
            xml_text(moto, "Message"),
            Some("User: arn:aws:iam::123456789012:user/worker is not authorized")
        );
        assert_eq!(xml_text(moto, "RequestId"), None);
        assert_eq!(xml_text("<Code></Code>", "Code"), None);
        assert_eq!(xml_text("<Code>unterminated", "Code"), None);
    }

    #[test]
    fn an_unreadable_sts_answer_is_transient_and_its_body_is_not_shown() {
        // A 200 cut short: the SDK cannot parse it, but it holds the session's secret.
        let body = "<AssumeRoleResponse><AssumeRoleResult><Credentials><SecretAccessKey>s3cr3t/KEY\
                    </SecretAccessKey><SessionToken>T0KEN";
        let raw = HttpResponse::new(200.try_into().unwrap(), body.into());
        let err = SdkError::response_error("unexpected end of input: T0KEN s3cr3t/KEY", raw);
        let classified = classify_assume_role_failure(&err, &source(), None);
        assert!(matches!(&classified, AccessError::Transient(m) if m.contains("HTTP 200")), "{classified}");
        for shown in [classified.to_string(), format!("{classified:?}")] {
            assert!(!shown.contains("s3cr3t") && !shown.contains("T0KEN"), "{shown}");
        }
    }

    #[test]
    fn head_errors_name_the_right_fix() {
        let s = source();
        let not_found = head_failure(404, Some("NotFound"), None, &s);
        assert!(
            matches!(&not_found, AccessError::NotFound(m) if m.contains("s3://customer-bucket/folder/clip.mp4"))
        );
        let denied = head_failure(403, None, Some("eu-central-1"), &s);
        assert!(matches!(&denied, AccessError::AccessDenied(m) if m.contains("s3:GetObject")), "{denied}");
        // S3-compatible stores name one fixed region on every answer: not a region problem.
        assert!(matches!(head_failure(403, None, Some("us-east-1"), &s), AccessError::AccessDenied(_)));
        assert!(matches!(head_failure(404, None, Some("us-east-1"), &s), AccessError::NotFound(_)));
        let moved = head_failure(301, None, Some("us-west-2"), &s);
        assert!(matches!(&moved, AccessError::InvalidJob(m) if m.contains("us-west-2")), "{moved}");
        let malformed = head_failure(400, None, Some("ap-south-1"), &s);
        assert!(matches!(&malformed, AccessError::InvalidJob(m) if m.contains("ap-south-1")), "{malformed}");
        let unnamed = head_failure(301, Some("PermanentRedirect"), None, &s);
        assert!(matches!(&unnamed, AccessError::InvalidJob(m) if m.contains("not in region eu-central-1")));
        assert!(matches!(head_failure(503, None, None, &s), AccessError::Transient(_)));
    }

    #[tokio::test]
    async fn sts_is_called_in_the_region_of_the_job() {
        use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
        for (region, expected) in [
            ("eu-central-1", "https://sts.eu-central-1.amazonaws.com"),
            ("us-east-1", "https://sts.us-east-1.amazonaws.com"),
            ("cn-north-1", "https://sts.cn-north-1.amazonaws.com.cn"),
        ] {
            let params = Params::builder().region(region).build().unwrap();
            let endpoint = DefaultResolver::new().resolve_endpoint(&params).await.unwrap();
            assert_eq!(endpoint.url(), expected);
        }
    }

    /// A worker identity that never has credentials, like the standard chain on a machine with
    /// no keys and no instance or pod identity.
    #[derive(Debug)]
    struct NoCredentials;

    impl aws_credential_types::provider::ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                CredentialsError::not_loaded("no credentials in the environment"),
            ))
        }
    }

    /// A provider whose STS is `sts_endpoint` and whose identity is `worker`.
    fn provider(sts_endpoint: &str, worker: SdkConfig) -> S3Access {
        let settings =
            S3AccessSettings { sts_endpoint: Some(sts_endpoint.into()), ..S3AccessSettings::default() };
        S3Access::new(settings, worker).unwrap()
    }

    fn mint_request() -> MintRequest {
        MintRequest::new("job-1", Duration::from_secs(300))
    }

    #[tokio::test]
    async fn a_worker_without_an_identity_is_misconfigured_not_transient() {
        let no_keys = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(NoCredentials))
            .build();
        let no_provider = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        for worker in [no_keys, no_provider] {
            // Nothing listens there: had the worker sent anything, this would be transient.
            let err =
                provider("http://127.0.0.1:9", worker).mint(&source(), &mint_request()).await.unwrap_err();
            match err {
                AccessError::Misconfigured(message) => {
                    assert!(
                        message.contains("no AWS identity") && message.contains("AWS_ACCESS_KEY_ID"),
                        "{message}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_unreachable_sts_is_transient() {
        let worker = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                aws_sdk_sts::config::Credentials::for_tests(),
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        let err = provider("http://127.0.0.1:9", worker).mint(&source(), &mint_request()).await.unwrap_err();
        assert!(matches!(&err, AccessError::Transient(m) if m.contains("could not be reached")), "{err:?}");
    }

    #[tokio::test]
    async fn a_job_without_external_id_never_reaches_sts() {
        let worker = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let mut job = source();
        job.external_id = None;
        let err = provider("http://127.0.0.1:9", worker).mint(&job, &mint_request()).await.unwrap_err();
        assert!(matches!(&err, AccessError::InvalidJob(m) if m.contains("external_id")), "{err:?}");
    }
}
