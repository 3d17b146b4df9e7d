//! GCS access: V4 signed URLs minted by `access::gcs` read real objects from fake-gcs-server,
//! and impersonation signs through `signBlob` with the worker's own token.
//!
//! fake-gcs-server checks no signature, so signing itself is proven by Google's conformance
//! vectors (the unit tests of `access::gcs`); here a URL is shown to reach the object. signBlob
//! has no emulator: [`SignBlobDouble`] stands in for that one endpoint of the IAM Credentials
//! API and signs with the conformance vectors' test key, like Google would with the service
//! account's own key.
//!
//! The worker's own token: a `CredentialsProvider` of the test ([`WorkerToken`]) that puts a
//! fixed `Authorization: Bearer …` header on the request — the auth crate's public seam for a
//! credential source, so the provider runs the same code as with application default
//! credentials, without a metadata server or an OAuth endpoint to fake.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use asset_worker::access::gcs::{DEFAULT_TTL, GcsAccess, GcsSettings};
use asset_worker::access::{AccessError, Fetchable, MintRequest, Provider};
use asset_worker::job::GcsSource;

use super::peers::unique;
use base64::Engine as _;
use google_cloud_auth::credentials::{CacheableResource, Credentials, CredentialsProvider, EntityTag};
use google_cloud_auth::signer::Signer;

const WORKER_TOKEN: &str = "ya29.worker-own-token";
/// The account of the conformance vectors' key: the double signs as it.
const CUSTOMER_ACCOUNT: &str = "test-iam-credentials@dummy-project-id.iam.gserviceaccount.com";

fn gcs_endpoint() -> String {
    std::env::var("ASSET_WORKER_TEST_GCS_ENDPOINT")
        .expect("ASSET_WORKER_TEST_GCS_ENDPOINT is not set: run `make peers` and source .peers/env")
}

fn test_key() -> serde_json::Value {
    let path = super::root().join("tests/vectors/gcs-v4/test_service_account.not-a-test.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the test key")).expect("JSON")
}

fn key_signer() -> Signer {
    google_cloud_auth::credentials::service_account::Builder::new(test_key()).build_signer().expect("the key")
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Creates a bucket on fake-gcs-server and uploads one object to it (JSON API).
async fn upload(bucket: &str, object: &str, bytes: &[u8]) {
    let endpoint = gcs_endpoint();
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{endpoint}/storage/v1/b?project=test"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .await
        .expect("fake-gcs-server answers");
    assert!(created.status().is_success(), "create bucket {bucket}: {}", created.status());
    let uploaded = http
        .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}", encode(object)))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("fake-gcs-server answers");
    assert!(uploaded.status().is_success(), "upload {object}: {}", uploaded.status());
}

async fn get(url: &asset_worker::access::SignedUrl) -> (u16, Vec<u8>) {
    let response = reqwest::get(url.expose()).await.expect("fake-gcs-server answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("a body").to_vec())
}

/// The worker's own credential source: a fixed bearer token.
#[derive(Debug)]
struct WorkerToken;

impl CredentialsProvider for WorkerToken {
    async fn headers(
        &self,
        _extensions: http::Extensions,
    ) -> Result<CacheableResource<http::HeaderMap>, google_cloud_auth::errors::CredentialsError> {
        let mut headers = http::HeaderMap::new();
        let value = http::HeaderValue::from_str(&format!("Bearer {WORKER_TOKEN}")).expect("a header value");
        headers.insert(http::header::AUTHORIZATION, value);
        Ok(CacheableResource::New { entity_tag: EntityTag::new(), data: headers })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// One request as the double saw it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// What the double answers: a status and a JSON body.
type Answer = Box<dyn Fn(&Received, usize) -> (u16, String) + Send>;

/// A stand-in for `POST /v1/projects/-/serviceAccounts/EMAIL:signBlob` on 127.0.0.1:0,
/// recording every request (one per connection: it answers `Connection: close`).
struct SignBlobDouble {
    endpoint: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SignBlobDouble {
    fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        // Lives until the test binary exits; each test has its own.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Some(request) = read_request(&stream) else { continue };
                let count = {
                    let mut log = log.lock().expect("log");
                    log.push(request.clone());
                    log.len()
                };
                let (status, body) = answer(&request, count);
                write_response(stream, status, &body);
            }
        });
        SignBlobDouble { endpoint, received }
    }

    /// Signs as Google would: the payload with the account's key, for the worker's token and
    /// the one account it may sign as.
    fn signing_as(account: &'static str) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let key = key_signer();
        Self::start(Box::new(move |request, _| {
            if request.authorization.as_deref() != Some(&format!("Bearer {WORKER_TOKEN}")) {
                return (
                    401,
                    google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                );
            }
            if request.path != format!("/v1/projects/-/serviceAccounts/{account}:signBlob") {
                return (404, google_error(404, "NOT_FOUND", "Not found; Gaia id not found for email"));
            }
            let body: serde_json::Value = serde_json::from_slice(&request.body).expect("a JSON body");
            let payload = base64::engine::general_purpose::STANDARD
                .decode(body["payload"].as_str().expect("payload"))
                .expect("base64");
            let signature = runtime.block_on(key.sign(payload)).expect("signs");
            let signed_blob = base64::engine::general_purpose::STANDARD.encode(signature);
            (200, serde_json::json!({ "keyId": "double-key", "signedBlob": signed_blob }).to_string())
        }))
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }
}

fn google_error(code: u16, status: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message, "status": status } }).to_string()
}

fn read_request(stream: &TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (mut length, mut authorization) = (0, None);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { method, path, authorization, body })
}

fn write_response(mut stream: TcpStream, status: u16, body: &str) {
    let head = format!(
        "HTTP/1.1 {status} Double\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
}

fn settings(iam_credentials_endpoint: &str) -> GcsSettings {
    GcsSettings {
        storage_endpoint: gcs_endpoint(),
        iam_credentials_endpoint: iam_credentials_endpoint.into(),
    }
}

fn impersonating(double: &SignBlobDouble) -> GcsAccess {
    GcsAccess::new(&settings(&double.endpoint))
        .expect("settings")
        .with_worker_credentials(Credentials::from(WorkerToken))
}

fn with_key() -> GcsAccess {
    GcsAccess::new(&settings("https://iamcredentials.googleapis.com"))
        .expect("settings")
        .with_service_account_key(test_key())
        .expect("the key")
}

fn source(bucket: &str, object: &str, account: Option<&str>) -> GcsSource {
    GcsSource { bucket: bucket.into(), object: object.into(), service_account: account.map(Into::into) }
}

fn job_request() -> MintRequest {
    MintRequest::new(unique("job"), DEFAULT_TTL)
}

#[tokio::test]
async fn a_key_signed_url_reads_the_object_from_fake_gcs_server() {
    let bucket = unique("gcs-key");
    let object = "folder/clip 1 (final).bin";
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    upload(&bucket, object, &bytes).await;

    let minted = with_key().mint(&source(&bucket, object, None), &job_request()).await.expect("minted");
    let Fetchable::Url(url) = minted else { panic!("a URL, not a file") };
    assert!(
        url.expose().starts_with(&format!("{}/{bucket}/folder/clip%201%20%28final%29.bin?", gcs_endpoint()))
    );
    assert!(url.expose().contains("X-Goog-Credential=test-iam-credentials%40dummy-project-id"));
    assert!(!url.to_string().contains("X-Goog-Signature"), "Display is redacted: {url}");
    let (status, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "the object's bytes ({} of {})", body.len(), bytes.len());
}

#[tokio::test]
async fn a_url_for_a_missing_object_answers_404() {
    let bucket = unique("gcs-missing");
    upload(&bucket, "present.txt", b"here").await;
    let url =
        with_key().mint_signed_url(&source(&bucket, "absent.txt", None), DEFAULT_TTL).await.expect("minted");
    assert_eq!(get(&url).await.0, 404);
}

#[tokio::test]
async fn impersonation_signs_through_sign_blob_with_the_worker_s_own_token() {
    let bucket = unique("gcs-impersonate");
    let object = "scan.dcm";
    upload(&bucket, object, b"DICM and more").await;
    let double = SignBlobDouble::signing_as(CUSTOMER_ACCOUNT);
    let impersonated = source(&bucket, object, Some(CUSTOMER_ACCOUNT));

    // The same inputs signed locally with the account's key must give the same URL, signature
    // included; both take the clock's second, so retry until two mints share one.
    let (by_sign_blob, by_key) = loop {
        let by_sign_blob =
            impersonating(&double).mint_signed_url(&impersonated, DEFAULT_TTL).await.expect("minted");
        let by_key =
            with_key().mint_signed_url(&source(&bucket, object, None), DEFAULT_TTL).await.expect("minted");
        let date = |url: &str| url.split("X-Goog-Date=").nth(1).map(|d| d[..16].to_owned());
        if date(by_sign_blob.expose()) == date(by_key.expose()) {
            break (by_sign_blob, by_key);
        }
    };
    assert!(by_sign_blob.expose() == by_key.expose(), "signBlob's URL differs from the key's");

    let calls = double.received();
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, format!("/v1/projects/-/serviceAccounts/{CUSTOMER_ACCOUNT}:signBlob"));
        assert_eq!(call.authorization.as_deref(), Some(format!("Bearer {WORKER_TOKEN}").as_str()));
    }
    let (status, body) = get(&by_sign_blob).await;
    assert_eq!((status, body.as_slice()), (200, b"DICM and more".as_slice()));
}

#[tokio::test]
async fn a_403_from_sign_blob_is_access_denied_with_the_token_creator_hint() {
    let double = SignBlobDouble::start(Box::new(|_, _| {
        let message = "Permission 'iam.serviceAccounts.signBlob' denied on resource (or it may not exist).";
        (403, google_error(403, "PERMISSION_DENIED", message))
    }));
    let account = "reader@customer-project.iam.gserviceaccount.com";
    let error = impersonating(&double)
        .mint(&source("customer-bucket", "a.png", Some(account)), &job_request())
        .await
        .expect_err("refused");
    let AccessError::AccessDenied(message) = &error else { panic!("{error:?}") };
    assert!(message.contains(&format!("the worker may not sign as {account}")), "{message}");
    assert!(
        message.contains("grant it roles/iam.serviceAccountTokenCreator on that service account"),
        "{message}"
    );
    assert_eq!(error.kind(), asset_worker::job::ErrorKind::AccessDenied);
    assert_eq!(double.received().len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn an_unknown_account_a_throttled_api_and_an_outage_are_told_apart() {
    // No such account: the double signs only as the vectors' account.
    let double = SignBlobDouble::signing_as(CUSTOMER_ACCOUNT);
    let ghost = "ghost@customer-project.iam.gserviceaccount.com";
    let error = impersonating(&double).mint_signed_url(&source("b-1", "o", Some(ghost)), DEFAULT_TTL).await;
    assert!(
        matches!(&error, Err(AccessError::AccessDenied(m)) if m.contains("no service account")),
        "{error:?}"
    );

    // Throttled once, then served: the mint succeeds after one pause.
    let signing = SignBlobDouble::signing_as(CUSTOMER_ACCOUNT);
    let signing_endpoint = signing.endpoint.clone();
    let throttled = SignBlobDouble::start(Box::new(move |request, count| {
        if count == 1 {
            return (429, google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"));
        }
        forward(&signing_endpoint, request)
    }));
    let url = impersonating(&throttled)
        .mint_signed_url(&source("b-1", "o", Some(CUSTOMER_ACCOUNT)), DEFAULT_TTL)
        .await
        .expect("minted after a retry");
    assert!(url.expose().contains("X-Goog-Signature="));
    assert_eq!(throttled.received().len(), 2);

    // Down for good: three attempts, then transient (the queue retries the job later).
    let down = SignBlobDouble::start(Box::new(|_, _| {
        (503, google_error(503, "UNAVAILABLE", "The service is unavailable."))
    }));
    let error =
        impersonating(&down).mint_signed_url(&source("b-1", "o", Some(CUSTOMER_ACCOUNT)), DEFAULT_TTL).await;
    assert!(matches!(&error, Err(AccessError::Transient(m)) if m.contains("HTTP 503")), "{error:?}");
    assert_eq!(down.received().len(), 3);
}

/// Passes a request on to another double (blocking: the doubles run on plain threads).
fn forward(endpoint: &str, request: &Received) -> (u16, String) {
    let mut stream = TcpStream::connect(endpoint.trim_start_matches("http://")).expect("the other double");
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: double\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        request.method,
        request.path,
        request.authorization.as_deref().unwrap_or_default(),
        request.body.len()
    );
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&request.body)).expect("sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("an answer");
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status");
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn sign_blob_double_rejects_a_foreign_token() {
    // The double itself must tell tokens apart, or the impersonation test proves nothing.
    let double = SignBlobDouble::signing_as(CUSTOMER_ACCOUNT);
    let request = Received {
        method: "POST".into(),
        path: format!("/v1/projects/-/serviceAccounts/{CUSTOMER_ACCOUNT}:signBlob"),
        authorization: Some("Bearer ya29.the-target-s-token".into()),
        body: br#"{"payload":"aGk="}"#.to_vec(),
    };
    assert_eq!(forward(&double.endpoint, &request).0, 401);
}
