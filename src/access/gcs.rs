//! Google Cloud Storage: a job's object → a short-lived V4 signed GET URL, signed as the
//! customer's service account without the worker ever holding that account's key
//! (DESIGN §1, §7).
//!
//! Two ways to sign:
//! - **Impersonation** (production). The job names the customer's service account; the worker
//!   asks the IAM Credentials API to sign the URL's string to sign (`signBlob`), calling it
//!   **with its own Google credentials** (application default credentials). The customer grants
//!   the worker's identity `roles/iam.serviceAccountTokenCreator` on that one service account,
//!   and nothing else; no key leaves Google.
//! - **A service-account key** (development and tests). Jobs that name no service account, or
//!   the key's own account, are signed locally with it.
//!
//! Why our own `signBlob` call rather than google-cloud-auth's impersonated signer: that signer
//! first trades the worker's token for the *target's* token and calls `signBlob` with it, so the
//! customer's service account would also need Token Creator on itself — a second grant nobody
//! expects. (Building impersonated credentials from a JSON file with a `service_account` source
//! is worse: it signs locally with the source key while naming the target, which GCS rejects.)
//!
//! The canonical request, string to sign and URL are google-cloud-storage's `SignedUrlBuilder`;
//! the tests at the end of this file prove them against all of Google's conformance vectors.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use google_cloud_auth::credentials::{CacheableResource, Credentials};
use google_cloud_auth::signer::{Signer, SigningError as SignerError, SigningProvider};
use google_cloud_storage::builder::storage::SignedUrlBuilder;
use google_cloud_storage::error::SigningError as UrlSigningError;
use google_cloud_storage::http::Method;
use google_cloud_storage::signed_url::UrlStyle;

use super::{AccessError, Fetchable, MintRequest, Provider, SignedUrl};
use crate::job::GcsSource;

/// Where signed URLs point unless `ASSET_WORKER_GCS_ENDPOINT` says otherwise.
pub const DEFAULT_STORAGE_ENDPOINT: &str = "https://storage.googleapis.com";
/// Where `signBlob` is called unless `ASSET_WORKER_IAM_CREDENTIALS_ENDPOINT` says otherwise.
pub const DEFAULT_IAM_CREDENTIALS_ENDPOINT: &str = "https://iamcredentials.googleapis.com";
/// How long a signed URL lives unless configured: long enough to fetch what an extractor
/// reads, short enough that a leaked URL is soon worthless.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);
/// The V4 limit: GCS refuses a signed URL that claims to live longer.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// `signBlob` attempts for a throttled or failing IAM Credentials API before the job is handed
/// back as transient (the queue retries it later, with its own backoff).
const SIGN_BLOB_ATTEMPTS: u32 = 3;
/// Pause before the second attempt; each further one waits four times longer.
const SIGN_BLOB_FIRST_BACKOFF: Duration = Duration::from_millis(200);
const SIGN_BLOB_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SIGN_BLOB_TIMEOUT: Duration = Duration::from_secs(15);
/// Google's error messages are short; this bounds what a hostile or broken endpoint can put
/// into a job's error.
const MAX_QUOTED_MESSAGE: usize = 300;

/// The endpoints of the GCS provider (`ASSET_WORKER_GCS_ENDPOINT`,
/// `ASSET_WORKER_IAM_CREDENTIALS_ENDPOINT`).
#[derive(Debug, Clone)]
pub struct GcsSettings {
    /// Scheme, host and optional port that signed URLs point at (path style):
    /// `https://storage.googleapis.com`, a private endpoint, or an emulator.
    pub storage_endpoint: String,
    /// Scheme, host and optional port of the IAM Credentials API. It receives the worker's
    /// access token, so it must be `https` except on a loopback address (test doubles).
    pub iam_credentials_endpoint: String,
}

impl Default for GcsSettings {
    fn default() -> Self {
        GcsSettings {
            storage_endpoint: DEFAULT_STORAGE_ENDPOINT.into(),
            iam_credentials_endpoint: DEFAULT_IAM_CREDENTIALS_ENDPOINT.into(),
        }
    }
}

/// Mints V4 signed URLs for GCS objects, by impersonation or with a key.
#[derive(Debug, Clone)]
pub struct GcsAccess {
    storage_endpoint: String,
    iam_credentials_endpoint: String,
    /// Signs jobs that name no service account, or this key's own account.
    key: Option<KeySigner>,
    /// The worker's own identity: what calls `signBlob`.
    worker: Option<WorkerIdentity>,
    http: reqwest::Client,
}

/// The worker's own Google credentials, and whether they have ever produced a token.
#[derive(Debug, Clone)]
struct WorkerIdentity {
    credentials: Credentials,
    /// Without any application default credentials, google-cloud-auth falls back to the
    /// metadata server and reports its absence as *transient*. Credentials that have never
    /// worked in this process are a misconfiguration, not a passing failure.
    has_worked: Arc<AtomicBool>,
}

/// A local signer and the account it signs as.
#[derive(Debug, Clone)]
struct KeySigner {
    email: String,
    signer: Signer,
}

impl GcsAccess {
    /// A provider with no identity yet: add the worker's credentials
    /// ([`with_application_default_credentials`](Self::with_application_default_credentials) or
    /// [`with_worker_credentials`](Self::with_worker_credentials)) for impersonation, a key
    /// ([`with_service_account_key`](Self::with_service_account_key)) for local signing, or both.
    pub fn new(settings: &GcsSettings) -> Result<Self, AccessError> {
        let storage_endpoint =
            checked_endpoint("ASSET_WORKER_GCS_ENDPOINT", &settings.storage_endpoint, AllowHttp::Always)?;
        let iam_credentials_endpoint = checked_endpoint(
            "ASSET_WORKER_IAM_CREDENTIALS_ENDPOINT",
            &settings.iam_credentials_endpoint,
            AllowHttp::LoopbackOnly,
        )?;
        let http = reqwest::Client::builder()
            .connect_timeout(SIGN_BLOB_CONNECT_TIMEOUT)
            .timeout(SIGN_BLOB_TIMEOUT)
            .build()
            .map_err(|e| {
                AccessError::Misconfigured(format!("the HTTP client for signBlob can't start: {e}"))
            })?;
        Ok(GcsAccess { storage_endpoint, iam_credentials_endpoint, key: None, worker: None, http })
    }

    /// Impersonates with the worker's application default credentials
    /// (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's login, or the metadata server). Nothing is
    /// fetched yet: call [`verify_worker_identity`](Self::verify_worker_identity) at start, or
    /// the first GCS job learns it as a `Misconfigured` error that says so.
    pub fn with_application_default_credentials(self) -> Result<Self, AccessError> {
        let credentials = google_cloud_auth::credentials::Builder::default().build().map_err(|e| {
            AccessError::Misconfigured(format!(
                "the worker's Google application default credentials can't be loaded \
                 (GOOGLE_APPLICATION_CREDENTIALS): {e}"
            ))
        })?;
        Ok(self.with_worker_credentials(credentials))
    }

    /// Impersonates with these credentials of the worker's own (any google-cloud-auth source).
    pub fn with_worker_credentials(mut self, credentials: Credentials) -> Self {
        self.worker = Some(WorkerIdentity { credentials, has_worked: Arc::new(AtomicBool::new(false)) });
        self
    }

    /// Gets one token for the worker's own identity, so that a worker without Google
    /// credentials fails at start (or in `check`) rather than at its first GCS job.
    pub async fn verify_worker_identity(&self) -> Result<(), AccessError> {
        match &self.worker {
            Some(worker) => worker.auth_headers("customers' service accounts").await.map(drop),
            None => Err(AccessError::Misconfigured(
                "this worker has no Google credentials of its own (application default credentials)".into(),
            )),
        }
    }

    /// Signs locally with a service-account key (the JSON file Google hands out), for jobs that
    /// name no service account or this key's own. Development only: production impersonates.
    pub fn with_service_account_key(mut self, key: serde_json::Value) -> Result<Self, AccessError> {
        let bad_key = |why: &str| AccessError::Misconfigured(format!("the GCS service-account key {why}"));
        if key.get("type").and_then(|t| t.as_str()) != Some("service_account") {
            return Err(bad_key("is not a service-account key (its \"type\" is not \"service_account\")"));
        }
        let Some(email) = key.get("client_email").and_then(|e| e.as_str()).map(str::to_owned) else {
            return Err(bad_key("has no \"client_email\""));
        };
        if key.get("private_key").and_then(|k| k.as_str()).is_none_or(str::is_empty) {
            return Err(bad_key(&format!("of {email} has no \"private_key\"")));
        }
        let signer = google_cloud_auth::credentials::service_account::Builder::new(key)
            .build_signer()
            .map_err(|e| bad_key(&format!("of {email} can't be used: {e}")))?;
        self.key = Some(KeySigner { email, signer });
        Ok(self)
    }

    /// The signed GET URL of `source`'s object, valid for `ttl` (whole seconds, 1 s to 7 days).
    pub async fn mint_signed_url(&self, source: &GcsSource, ttl: Duration) -> Result<SignedUrl, AccessError> {
        check_bucket_name(&source.bucket)?;
        check_object_name(&source.object)?;
        let lifetime = signed_url_lifetime(ttl)?;
        let (email, signer) = self.signer_for(source)?;
        // Taken before the builder takes its own clock reading, so that `expires_at` is never
        // later than the real expiry.
        let issued_at = SystemTime::now();
        let url =
            SignedUrlBuilder::for_object(format!("projects/_/buckets/{}", source.bucket), &source.object)
                .with_method(Method::GET)
                .with_expiration(lifetime)
                // Path style works for every bucket name (dotted names break virtual-hosted TLS)
                // and is what emulators serve.
                .with_url_style(UrlStyle::PathStyle)
                .with_endpoint(&self.storage_endpoint)
                .with_client_email(&email)
                .sign_with(&signer)
                .await
                .map_err(|e| self.signing_failure(&e, &email))?;
        Ok(SignedUrl::new(url, issued_at + lifetime))
    }

    /// The account a job's URL is signed as, and what signs for it.
    fn signer_for(&self, source: &GcsSource) -> Result<(String, Signer), AccessError> {
        let Some(account) = &source.service_account else {
            return match &self.key {
                Some(key) => Ok((key.email.clone(), key.signer.clone())),
                None => Err(AccessError::Misconfigured(format!(
                    "the GCS job for gs://{}/{} names no service_account, and this worker has no \
                     service-account key of its own to sign with (production jobs name the \
                     customer's service account)",
                    source.bucket, source.object
                ))),
            };
        };
        check_service_account(account)?;
        if let Some(key) = self.key.as_ref().filter(|key| &key.email == account) {
            return Ok((key.email.clone(), key.signer.clone()));
        }
        let Some(worker) = &self.worker else {
            return Err(AccessError::Misconfigured(format!(
                "the job names service account {account}, but this worker has no Google credentials \
                 of its own to impersonate it with (application default credentials)"
            )));
        };
        let sign_blob = SignBlob {
            account: account.clone(),
            url: format!(
                "{}/v1/projects/-/serviceAccounts/{account}:signBlob",
                self.iam_credentials_endpoint
            ),
            endpoint: self.iam_credentials_endpoint.clone(),
            worker: worker.clone(),
            http: self.http.clone(),
        };
        Ok((account.clone(), Signer::from(sign_blob)))
    }

    /// Puts a failed `sign_with` back into our categories: a `signBlob` failure travels through
    /// the crates' error chain as the [`AccessError`] [`SignBlob`] made of it.
    fn signing_failure(&self, error: &UrlSigningError, email: &str) -> AccessError {
        if let Some(ours) = access_error_in(error) {
            return copy_of(ours);
        }
        if error.is_invalid_parameter() {
            return AccessError::Misconfigured(format!(
                "ASSET_WORKER_GCS_ENDPOINT={} can't be used to sign URLs: {error}",
                self.storage_endpoint
            ));
        }
        // Only the local key signer fails without an `AccessError`: a key that doesn't parse,
        // or a crypto failure. Either way the operator must replace the key.
        AccessError::Misconfigured(format!("the service-account key of {email} can't sign: {error}"))
    }
}

impl Provider for GcsAccess {
    type Source = GcsSource;

    async fn mint(&self, source: &GcsSource, request: &MintRequest) -> Result<Fetchable, AccessError> {
        self.mint_signed_url(source, request.ttl).await.map(Fetchable::Url)
    }
}

/// Signs as `account` through the IAM Credentials API, with the worker's own credentials.
#[derive(Debug)]
struct SignBlob {
    account: String,
    url: String,
    /// For messages: the URL without the account.
    endpoint: String,
    worker: WorkerIdentity,
    http: reqwest::Client,
}

impl SigningProvider for SignBlob {
    async fn client_email(&self) -> Result<String, SignerError> {
        Ok(self.account.clone())
    }

    async fn sign(&self, content: &[u8]) -> Result<bytes::Bytes, SignerError> {
        // `from_msg` is the one public constructor of the auth crate's error; it keeps ours as
        // its source, where `signing_failure` finds it again.
        self.sign_with_retries(content).await.map(bytes::Bytes::from).map_err(SignerError::from_msg)
    }
}

#[derive(serde::Serialize)]
struct SignBlobRequest {
    payload: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignBlobResponse {
    signed_blob: String,
}

impl SignBlob {
    async fn sign_with_retries(&self, content: &[u8]) -> Result<Vec<u8>, AccessError> {
        let mut backoff = SIGN_BLOB_FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.sign_once(content).await {
                Err(AccessError::Transient(_)) if attempt < SIGN_BLOB_ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn sign_once(&self, content: &[u8]) -> Result<Vec<u8>, AccessError> {
        let headers = self.worker.auth_headers(&self.account).await?;
        let payload = base64::engine::general_purpose::STANDARD.encode(content);
        let response = self
            .http
            .post(&self.url)
            .headers(headers)
            .json(&SignBlobRequest { payload })
            .send()
            .await
            .map_err(|e| {
                AccessError::Transient(format!(
                    "the IAM Credentials API at {} could not be reached to sign as {}: {}",
                    self.endpoint,
                    self.account,
                    e.without_url()
                ))
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            AccessError::Transient(format!(
                "the IAM Credentials API's answer for {} broke off: {}",
                self.account,
                e.without_url()
            ))
        })?;
        if !(200..300).contains(&status) {
            return Err(classify_sign_blob_failure(status, &body, &self.account));
        }
        let unexpected = |why: String| {
            AccessError::Transient(format!(
                "the IAM Credentials API at {} answered signBlob for {} with {why}",
                self.endpoint, self.account
            ))
        };
        let answer: SignBlobResponse =
            serde_json::from_slice(&body).map_err(|e| unexpected(format!("an unreadable body ({e})")))?;
        base64::engine::general_purpose::STANDARD
            .decode(answer.signed_blob)
            .map_err(|e| unexpected(format!("a signature that is not base64 ({e})")))
    }
}

impl WorkerIdentity {
    /// The headers that authenticate the worker (`Authorization: Bearer …`), from the crate's
    /// token cache, which refreshes them before they expire.
    async fn auth_headers(&self, account: &str) -> Result<http::HeaderMap, AccessError> {
        let missing = |e: &dyn std::fmt::Display| {
            AccessError::Misconfigured(format!(
                "the worker has no usable Google credentials of its own to impersonate {account} \
                 (application default credentials: GOOGLE_APPLICATION_CREDENTIALS, gcloud auth \
                 application-default login, or the metadata server on Google Cloud): {e}"
            ))
        };
        match self.credentials.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => {
                self.has_worked.store(true, Ordering::Relaxed);
                Ok(data)
            }
            // Only answered to a caller that passed an entity tag, which we never do.
            Ok(CacheableResource::NotModified) => Err(AccessError::Transient(format!(
                "the worker's own Google credentials returned no headers to impersonate {account}"
            ))),
            Err(e) if e.is_transient() && self.has_worked.load(Ordering::Relaxed) => {
                Err(AccessError::Transient(format!(
                    "the worker's own Google credentials (needed to impersonate {account}) are \
                     unavailable for now: {e}"
                )))
            }
            Err(e) => Err(missing(&e)),
        }
    }
}

/// A `signBlob` refusal in the categories the ack policy acts on, in words that say who must
/// grant what.
fn classify_sign_blob_failure(status: u16, body: &[u8], account: &str) -> AccessError {
    let google = google_error_message(body);
    let said = if google.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {google}") };
    match status {
        400 => {
            AccessError::InvalidJob(format!("the IAM Credentials API refused to sign as {account} ({said})"))
        }
        401 => AccessError::Misconfigured(format!(
            "the IAM Credentials API rejected the worker's own Google credentials while signing as \
             {account} ({said})"
        )),
        403 => AccessError::AccessDenied(format!(
            "the worker may not sign as {account}: grant it roles/iam.serviceAccountTokenCreator on \
             that service account ({said})"
        )),
        404 => AccessError::AccessDenied(format!(
            "there is no service account {account} (or it was deleted): check the service_account \
             the integration names ({said})"
        )),
        408 | 429 | 500..=599 => AccessError::Transient(format!(
            "the IAM Credentials API could not sign as {account} now ({said})"
        )),
        _ => AccessError::Misconfigured(format!(
            "the IAM Credentials API answered signBlob for {account} unexpectedly ({said}); check \
             ASSET_WORKER_IAM_CREDENTIALS_ENDPOINT"
        )),
    }
}

/// `error.message` of a Google API error body, shortened; empty if there is none.
fn google_error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    match message.char_indices().nth(MAX_QUOTED_MESSAGE) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}

/// The [`AccessError`] somewhere in an error's chain of sources.
fn access_error_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a AccessError> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(ours) = current.downcast_ref::<AccessError>() {
            return Some(ours);
        }
        next = current.source();
    }
    None
}

/// An owned copy of an error found by reference in a chain (`AccessError` is not `Clone`).
fn copy_of(error: &AccessError) -> AccessError {
    match error {
        AccessError::InvalidJob(m) => AccessError::InvalidJob(m.clone()),
        AccessError::AccessDenied(m) => AccessError::AccessDenied(m.clone()),
        AccessError::NotFound(m) => AccessError::NotFound(m.clone()),
        AccessError::Transient(m) => AccessError::Transient(m.clone()),
        AccessError::Misconfigured(m) => AccessError::Misconfigured(m.clone()),
    }
}

/// The whole seconds a URL lives (what `X-Goog-Expires` carries), within GCS's limits.
fn signed_url_lifetime(ttl: Duration) -> Result<Duration, AccessError> {
    let lifetime = Duration::from_secs(ttl.as_secs());
    if lifetime.is_zero() || lifetime > MAX_TTL {
        return Err(AccessError::Misconfigured(format!(
            "a GCS signed URL must live between 1 second and 7 days; the configured lifetime is {:.3} s",
            ttl.as_secs_f64()
        )));
    }
    Ok(lifetime)
}

/// GCS's bucket naming rules, checked before the name is put into a URL path.
fn check_bucket_name(bucket: &str) -> Result<(), AccessError> {
    let valid_chars =
        bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    let alnum_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=222).contains(&bucket.len()) && valid_chars && alnum_ends {
        Ok(())
    } else {
        Err(AccessError::InvalidJob(format!(
            "{bucket:?} is not a GCS bucket name (3–222 characters: lowercase letters, digits, \
             '-', '_' and '.', starting and ending with a letter or digit)"
        )))
    }
}

/// GCS's object naming rules, plus one of ours: no `.` or `..` segment, because HTTP clients
/// rewrite those paths, so the request would no longer match what was signed.
fn check_object_name(object: &str) -> Result<(), AccessError> {
    let refuse = |why: &str| AccessError::InvalidJob(format!("GCS object name {object:?} {why}"));
    if object.is_empty() || object.len() > 1024 {
        return Err(refuse("must be 1 to 1024 bytes long"));
    }
    if object.contains(['\r', '\n']) {
        return Err(refuse("holds a line break, which GCS does not allow"));
    }
    if object.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(refuse("has a `.` or `..` segment, which a signed URL can't carry unchanged"));
    }
    Ok(())
}

/// A service-account email, checked before it goes into the `signBlob` URL path and the
/// signed URL's credential.
fn check_service_account(account: &str) -> Result<(), AccessError> {
    let valid_chars = account.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b));
    let shaped_like_email =
        account.split_once('@').is_some_and(|(name, domain)| !name.is_empty() && domain.contains('.'));
    if valid_chars && shaped_like_email && account.len() <= 254 && account.matches('@').count() == 1 {
        Ok(())
    } else {
        Err(AccessError::InvalidJob(format!(
            "service_account {account:?} is not a service-account email \
             (like reader@project.iam.gserviceaccount.com)"
        )))
    }
}

/// Whether a plain-`http` endpoint is acceptable.
#[derive(Clone, Copy, PartialEq)]
enum AllowHttp {
    Always,
    /// The endpoint receives a bearer token: only a local test double may go without TLS.
    LoopbackOnly,
}

/// `scheme://host[:port]` of a configured endpoint, without a trailing slash. The signed-URL
/// builder ignores any path, so one is refused rather than silently dropped.
fn checked_endpoint(setting: &str, value: &str, allow_http: AllowHttp) -> Result<String, AccessError> {
    let refuse = |why: &str| AccessError::Misconfigured(format!("{setting}={value:?} {why}"));
    let trimmed = value.trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).map_err(|e| refuse(&format!("is not a URL ({e})")))?;
    let Some(host) = url.host_str() else {
        return Err(refuse("has no host"));
    };
    let loopback = host == "localhost"
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if allow_http == AllowHttp::Always || loopback => {}
        "http" => return Err(refuse("must be https: it receives the worker's access token")),
        _ => return Err(refuse("must start with https:// (or http://)")),
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(refuse("must be scheme://host[:port] only, without a path, query or user"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    //! Google's V4 conformance vectors (tests/vectors/gcs-v4) and the error categories.
    //!
    //! The crate takes the signing time from the clock when the builder is made and offers no
    //! public way to set it (its own `with_timestamp` is `#[cfg(test)]`-private), so a vector
    //! can't be replayed at its own time. Each one is checked in two halves instead:
    //! 1. at the vector's time: the key signs Google's string to sign into Google's signature,
    //!    byte for byte (and the vector is self-consistent);
    //! 2. at the real time T of our run: what we hand the signer is, byte for byte, Google's
    //!    canonical request moved to T (only `X-Goog-Date` and the credential scope's date
    //!    change), hashed into the string to sign; our URL is Google's URL moved to T, with the
    //!    key's signature of our string to sign.
    //!
    //! Vectors of a plain object GET in path style go through `mint_signed_url` itself (their
    //! hostname, client endpoint, emulator host or universe domain becomes the configured
    //! endpoint); the others (PUT/POST, extra headers or query parameters, virtual-hosted and
    //! bucket-bound styles, a bucket listing) use the same builder with those options.

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use sha2::{Digest, Sha256};

    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/gcs-v4/v4_signatures.json");
    const TEST_KEY: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/gcs-v4/test_service_account.not-a-test.json");
    /// Its `expectedCanonicalRequest` carries a path-style path although the URL is
    /// virtual-hosted (tests/vectors/README.md); string to sign and URL are right.
    const WRONG_PATH_VECTOR: &str = "Universe domain with virtual hosted style";

    fn test_key() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(TEST_KEY).expect("the test key")).expect("JSON")
    }

    /// Passes signing on to the key, keeping every string to sign it was given.
    #[derive(Debug)]
    struct Recording {
        key: Signer,
        strings_to_sign: Arc<Mutex<Vec<String>>>,
    }

    impl SigningProvider for Recording {
        async fn client_email(&self) -> Result<String, SignerError> {
            self.key.client_email().await
        }

        async fn sign(&self, content: &[u8]) -> Result<bytes::Bytes, SignerError> {
            self.strings_to_sign.lock().unwrap().push(String::from_utf8_lossy(content).into_owned());
            self.key.sign(content).await
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn sha256_hex(text: &str) -> String {
        hex(&Sha256::digest(text.as_bytes()))
    }

    fn str_field<'a>(vector: &'a serde_json::Value, name: &str) -> Option<&'a str> {
        vector.get(name).and_then(|v| v.as_str())
    }

    fn string_map(vector: &serde_json::Value, name: &str) -> BTreeMap<String, String> {
        vector
            .get(name)
            .and_then(|v| v.as_object())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
            .unwrap_or_default()
    }

    /// `20190201T090000Z` → seconds since the epoch (days from the civil date, Hinnant's
    /// algorithm), to check that the crate's timestamp is the UTC time of the run.
    fn unix_seconds(stamp: &str) -> i64 {
        let number = |range: std::ops::Range<usize>| stamp[range].parse::<i64>().expect("digits");
        let (y, m, d) = (number(0..4), number(4..6), number(6..8));
        let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * m + 2) / 5 + d - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        days * 86_400 + number(9..11) * 3600 + number(11..13) * 60 + number(13..15)
    }

    /// The vector's URL or canonical request as it reads when signed at `now` instead of
    /// `then`: only the `X-Goog-Date` parameter and the credential scope's date move (a signed
    /// `x-goog-date` *header*, as in "Header Ordering", stays as the vector has it).
    fn moved_to(text: &str, then: &str, now: &str) -> String {
        let replacements = [
            (format!("X-Goog-Date={then}"), format!("X-Goog-Date={now}")),
            (format!("%2F{}%2Fauto%2Fstorage", &then[..8]), format!("%2F{}%2Fauto%2Fstorage", &now[..8])),
        ];
        let mut moved = text.to_owned();
        for (from, to) in replacements {
            assert_eq!(moved.matches(&from).count(), 1, "{from} once in {text}");
            moved = moved.replace(&from, &to);
        }
        moved
    }

    fn string_to_sign(stamp: &str, canonical_request: &str) -> String {
        format!(
            "GOOG4-RSA-SHA256\n{stamp}\n{}/auto/storage/goog4_request\n{}",
            &stamp[..8],
            sha256_hex(canonical_request)
        )
    }

    /// The endpoint a client library would sign for, in precedence order: an explicit
    /// hostname, the client's endpoint, the emulator host, the universe domain.
    fn endpoint_of(vector: &serde_json::Value) -> Option<String> {
        let scheme = str_field(vector, "scheme").unwrap_or("https");
        let with_scheme = |e: &str| if e.contains("://") { e.to_owned() } else { format!("{scheme}://{e}") };
        if let Some(host) = str_field(vector, "bucketBoundHostname").or(str_field(vector, "hostname")) {
            return Some(format!("{scheme}://{host}"));
        }
        if let Some(endpoint) = str_field(vector, "clientEndpoint").or(str_field(vector, "emulatorHostname"))
        {
            return Some(with_scheme(endpoint));
        }
        str_field(vector, "universeDomain").map(|domain| format!("https://storage.{domain}"))
    }

    /// Whether the worker's own path (`mint_signed_url`) produces this vector's kind of URL.
    fn is_plain_object_get(vector: &serde_json::Value) -> bool {
        str_field(vector, "method") == Some("GET")
            && str_field(vector, "object").is_some()
            && string_map(vector, "headers").is_empty()
            && string_map(vector, "queryParameters").is_empty()
            && str_field(vector, "urlStyle").is_none_or(|s| s == "PATH_STYLE")
    }

    /// Signs `vector` now, through mint or the builder; returns the URL and what was signed.
    async fn sign_now(vector: &serde_json::Value, key: &Signer) -> (String, String, &'static str) {
        let strings_to_sign = Arc::new(Mutex::new(Vec::new()));
        let recording =
            Signer::from(Recording { key: key.clone(), strings_to_sign: strings_to_sign.clone() });
        let bucket = str_field(vector, "bucket").expect("bucket");
        let expiration = Duration::from_secs(vector["expiration"].as_u64().expect("expiration"));
        let (url, path) = if is_plain_object_get(vector) {
            let settings = GcsSettings {
                storage_endpoint: endpoint_of(vector).unwrap_or(DEFAULT_STORAGE_ENDPOINT.into()),
                ..GcsSettings::default()
            };
            let mut access = GcsAccess::new(&settings).expect("settings");
            let email = key.client_email().await.expect("email");
            access.key = Some(KeySigner { email, signer: recording });
            let source = GcsSource {
                bucket: bucket.into(),
                object: str_field(vector, "object").expect("object").into(),
                service_account: None,
            };
            let url = access.mint_signed_url(&source, expiration).await.expect("minted");
            (url.expose().to_owned(), "mint_signed_url")
        } else {
            let bucket = format!("projects/_/buckets/{bucket}");
            let mut builder = match str_field(vector, "object") {
                Some(object) => SignedUrlBuilder::for_object(bucket, object),
                None => SignedUrlBuilder::for_bucket(bucket),
            };
            let method = str_field(vector, "method").expect("method");
            builder = builder
                .with_method(Method::from_bytes(method.as_bytes()).expect("method"))
                .with_expiration(expiration)
                .with_url_style(match str_field(vector, "urlStyle") {
                    Some("VIRTUAL_HOSTED_STYLE") => UrlStyle::VirtualHostedStyle,
                    Some("BUCKET_BOUND_HOSTNAME") => UrlStyle::BucketBoundHostname,
                    _ => UrlStyle::PathStyle,
                });
            // The universe domain is the crate's own option when the URL style changes the host.
            if let Some(domain) = str_field(vector, "universeDomain") {
                builder = builder.with_universe_domain(domain);
            } else if let Some(endpoint) = endpoint_of(vector) {
                builder = builder.with_endpoint(endpoint);
            }
            for (name, value) in string_map(vector, "headers") {
                builder = builder.with_header(name, value);
            }
            for (name, value) in string_map(vector, "queryParameters") {
                builder = builder.with_query_param(name, value);
            }
            (builder.sign_with(&recording).await.expect("signed"), "SignedUrlBuilder")
        };
        let signed = strings_to_sign.lock().unwrap().pop().expect("the signer was called");
        (url, signed, path)
    }

    #[tokio::test]
    async fn every_signing_vector_of_google_matches_byte_for_byte() {
        let suite: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(VECTORS).expect("the vectors")).expect("JSON");
        let vectors = suite["signingV4Tests"].as_array().expect("signingV4Tests");
        let key = google_cloud_auth::credentials::service_account::Builder::new(test_key())
            .build_signer()
            .expect("the test key");
        let mut through_mint = 0;
        for vector in vectors {
            let name = str_field(vector, "description").expect("description");
            let then = str_field(vector, "timestamp").expect("timestamp").replace(['-', ':'], "");
            let expected_url = str_field(vector, "expectedUrl").expect("expectedUrl");
            let expected_to_sign = str_field(vector, "expectedStringToSign").expect("expectedStringToSign");
            let mut canonical = str_field(vector, "expectedCanonicalRequest").expect("request").to_owned();
            if name == WRONG_PATH_VECTOR {
                assert_ne!(
                    string_to_sign(&then, &canonical),
                    expected_to_sign,
                    "{name}: the vector was fixed"
                );
                canonical = canonical.replacen("\n/test-bucket/test-object\n", "\n/test-object\n", 1);
            }
            assert_eq!(string_to_sign(&then, &canonical), expected_to_sign, "{name}: the vector itself");

            // 1. At the vector's time: Google's signature from Google's string to sign.
            let (url_part, signature) = expected_url.split_once("&X-Goog-Signature=").expect("signature");
            let ours = key.sign(expected_to_sign).await.expect("signs");
            assert_eq!(hex(&ours), signature, "{name}: the key's signature");

            // 2. At our time: the same canonical request, string to sign and URL.
            let (url, signed, path) = sign_now(vector, &key).await;
            let now = signed.lines().nth(1).expect("timestamp line").to_owned();
            let drift = unix_seconds(&now)
                - SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_secs() as i64;
            assert!(now.len() == 16 && now.as_bytes()[8] == b'T' && drift.abs() < 60, "{name}: {now}");
            assert_eq!(signed, string_to_sign(&now, &moved_to(&canonical, &then, &now)), "{name} ({path})");
            let expected_now = format!(
                "{}&X-Goog-Signature={}",
                moved_to(url_part, &then, &now),
                hex(&key.sign(&signed).await.expect("signs"))
            );
            assert_eq!(url, expected_now, "{name} ({path})");
            through_mint += usize::from(path == "mint_signed_url");
        }
        assert_eq!(vectors.len(), 29, "Google's file has 29 signed-URL vectors");
        assert_eq!(through_mint, 12, "vectors that are the worker's own kind of URL");
    }

    fn source(account: Option<&str>) -> GcsSource {
        GcsSource {
            bucket: "customer-bucket".into(),
            object: "a/b.mp4".into(),
            service_account: account.map(Into::into),
        }
    }

    #[tokio::test]
    async fn credentials_that_never_worked_are_a_misconfiguration() {
        use google_cloud_auth::credentials::testing::error_credentials;
        let account = "reader@customer.iam.gserviceaccount.com";
        // Transient or not: credentials that never gave a token in this process are missing
        // (that is how "no application default credentials" looks off Google Cloud).
        for retryable in [false, true] {
            let access = GcsAccess::new(&GcsSettings::default())
                .unwrap()
                .with_worker_credentials(error_credentials(retryable));
            let error = access.mint_signed_url(&source(Some(account)), DEFAULT_TTL).await.unwrap_err();
            // The error went through both crates' error types and came back as ours.
            let AccessError::Misconfigured(message) = &error else { panic!("{error:?}") };
            assert!(
                message.contains(account) && message.contains("GOOGLE_APPLICATION_CREDENTIALS"),
                "{message}"
            );
            assert!(matches!(access.verify_worker_identity().await, Err(AccessError::Misconfigured(_))));
        }
        let nobody = GcsAccess::new(&GcsSettings::default()).unwrap();
        let error = nobody.mint_signed_url(&source(Some(account)), DEFAULT_TTL).await.unwrap_err();
        assert!(
            matches!(&error, AccessError::Misconfigured(m) if m.contains("no Google credentials")),
            "{error}"
        );
        let error = nobody.mint_signed_url(&source(None), DEFAULT_TTL).await.unwrap_err();
        assert!(
            matches!(&error, AccessError::Misconfigured(m) if m.contains("no service_account")),
            "{error}"
        );
    }

    /// A token once, then a passing failure.
    #[derive(Debug, Default)]
    struct Flaky(std::sync::atomic::AtomicUsize);

    impl google_cloud_auth::credentials::CredentialsProvider for Flaky {
        async fn headers(
            &self,
            _: http::Extensions,
        ) -> Result<CacheableResource<http::HeaderMap>, google_cloud_auth::errors::CredentialsError> {
            if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
                let data = http::HeaderMap::new();
                return Ok(CacheableResource::New { entity_tag: Default::default(), data });
            }
            Err(google_cloud_auth::errors::CredentialsError::from_msg(true, "metadata server is restarting"))
        }

        async fn universe_domain(&self) -> Option<String> {
            None
        }
    }

    #[tokio::test]
    async fn credentials_that_worked_before_fail_transiently() {
        let account = "reader@customer.iam.gserviceaccount.com";
        let worker = WorkerIdentity {
            credentials: Credentials::from(Flaky::default()),
            has_worked: Arc::new(AtomicBool::new(false)),
        };
        assert!(worker.auth_headers(account).await.is_ok());
        let error = worker.auth_headers(account).await.unwrap_err();
        assert!(matches!(&error, AccessError::Transient(m) if m.contains("restarting")), "{error:?}");
    }

    #[tokio::test]
    async fn a_job_naming_the_key_s_own_account_is_signed_locally() {
        // No worker credentials at all: had it tried signBlob, this would be Misconfigured.
        let access =
            GcsAccess::new(&GcsSettings::default()).unwrap().with_service_account_key(test_key()).unwrap();
        let own = "test-iam-credentials@dummy-project-id.iam.gserviceaccount.com";
        let url = access.mint_signed_url(&source(Some(own)), DEFAULT_TTL).await.unwrap();
        assert!(url.expose().starts_with("https://storage.googleapis.com/customer-bucket/a/b.mp4?"), "{url}");
        assert!(url.expose().contains("X-Goog-Expires=300&"));
        let lifetime = url.expires_at.duration_since(SystemTime::now()).unwrap();
        assert!(lifetime <= DEFAULT_TTL && lifetime > DEFAULT_TTL - Duration::from_secs(5));
    }

    #[test]
    fn sign_blob_refusals_fall_into_the_categories_the_ack_policy_acts_on() {
        let account = "reader@customer.iam.gserviceaccount.com";
        let denied = br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.signBlob' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#;
        let error = classify_sign_blob_failure(403, denied, account);
        let AccessError::AccessDenied(message) = &error else { panic!("{error:?}") };
        assert!(
            message.contains("roles/iam.serviceAccountTokenCreator") && message.contains(account),
            "{message}"
        );
        assert!(message.contains("iam.serviceAccounts.signBlob' denied"), "{message}");
        assert!(
            matches!(classify_sign_blob_failure(404, b"{}", account), AccessError::AccessDenied(m) if m.contains("no service account"))
        );
        assert!(matches!(classify_sign_blob_failure(400, b"", account), AccessError::InvalidJob(_)));
        assert!(matches!(classify_sign_blob_failure(401, b"", account), AccessError::Misconfigured(_)));
        for transient in [408, 429, 500, 503] {
            assert!(matches!(
                classify_sign_blob_failure(transient, b"<html>", account),
                AccessError::Transient(_)
            ));
        }
        assert!(matches!(classify_sign_blob_failure(302, b"", account), AccessError::Misconfigured(_)));
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(5000));
        assert!(classify_sign_blob_failure(503, long.as_bytes(), account).to_string().len() < 600);
    }

    #[tokio::test]
    async fn names_that_can_t_be_signed_safely_are_invalid_jobs() {
        let access =
            GcsAccess::new(&GcsSettings::default()).unwrap().with_service_account_key(test_key()).unwrap();
        let bad = [
            ("Upper", "o", None),
            ("b/../other", "o", None),
            ("ok-bucket", "", None),
            ("ok-bucket", "a/../../other-bucket/secret", None),
            ("ok-bucket", "line\nbreak", None),
            ("ok-bucket", "o", Some("reader@x.iam.gserviceaccount.com/../../y")),
            ("ok-bucket", "o", Some("not-an-email")),
        ];
        for (bucket, object, account) in bad {
            let source = GcsSource {
                bucket: bucket.into(),
                object: object.into(),
                service_account: account.map(Into::into),
            };
            let error = access.mint_signed_url(&source, DEFAULT_TTL).await.unwrap_err();
            assert!(matches!(error, AccessError::InvalidJob(_)), "{source:?}: {error:?}");
        }
        for ttl in [Duration::ZERO, Duration::from_millis(999), MAX_TTL + Duration::from_secs(1)] {
            let error = access.mint_signed_url(&source(None), ttl).await.unwrap_err();
            assert!(matches!(error, AccessError::Misconfigured(_)), "{ttl:?}: {error:?}");
        }
        assert!(access.mint_signed_url(&source(None), MAX_TTL).await.is_ok());
    }

    #[test]
    fn endpoints_are_checked_and_the_token_never_travels_in_clear() {
        let with = |storage: &str, iam: &str| {
            GcsAccess::new(&GcsSettings {
                storage_endpoint: storage.into(),
                iam_credentials_endpoint: iam.into(),
            })
        };
        let access = with("http://127.0.0.1:4443/", "http://127.0.0.1:9/").unwrap();
        assert_eq!(access.storage_endpoint, "http://127.0.0.1:4443");
        assert_eq!(access.iam_credentials_endpoint, "http://127.0.0.1:9");
        assert!(with("http://gcs.internal", "http://[::1]:9").is_ok());
        let error = with(DEFAULT_STORAGE_ENDPOINT, "http://iam.internal").unwrap_err();
        assert!(
            matches!(&error, AccessError::Misconfigured(m) if m.contains("ASSET_WORKER_IAM_CREDENTIALS_ENDPOINT"))
        );
        for storage in ["storage.googleapis.com", "https://host/prefix", "ftp://host", "https://host?x=1"] {
            let error = with(storage, DEFAULT_IAM_CREDENTIALS_ENDPOINT).unwrap_err();
            assert!(
                matches!(&error, AccessError::Misconfigured(m) if m.contains("ASSET_WORKER_GCS_ENDPOINT")),
                "{storage}"
            );
        }
    }

    #[test]
    fn a_key_that_is_not_a_service_account_key_is_refused_at_start() {
        let base = GcsAccess::new(&GcsSettings::default()).unwrap();
        let mut no_key = test_key();
        no_key["private_key"] = "".into();
        let user = serde_json::json!({"type": "authorized_user", "client_id": "x"});
        for key in [no_key, user] {
            assert!(matches!(base.clone().with_service_account_key(key), Err(AccessError::Misconfigured(_))));
        }
    }

    #[tokio::test]
    async fn a_key_that_does_not_parse_fails_the_job_without_quoting_it() {
        let mut broken = test_key();
        let secret = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-not-really";
        broken["private_key"] =
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n").into();
        // The crate parses the key at each signature, not when the signer is built.
        let access =
            GcsAccess::new(&GcsSettings::default()).unwrap().with_service_account_key(broken).unwrap();
        let error = access.mint_signed_url(&source(None), DEFAULT_TTL).await.unwrap_err();
        let AccessError::Misconfigured(message) = &error else { panic!("{error:?}") };
        assert!(
            message.contains("test-iam-credentials@dummy-project-id") && !message.contains(secret),
            "{message}"
        );
        assert!(!format!("{access:?}").contains(secret));
    }
}
