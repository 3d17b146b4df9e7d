//! S3 delegated access against real peers: SeaweedFS (STS + S3 with real SigV4 checks) proves
//! that the URLs work and fail where they should; moto (IAM auth on) shows what the worker
//! sends to STS — ExternalId, session name, duration, session policy — and how often; and no
//! answer, error or `Debug` of the provider shows a signature, a secret key or a session token.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use asset_worker::access::aws::{S3Access, S3AccessSettings};
use asset_worker::access::{AccessError, Fetchable, MintRequest, Provider, SignedUrl};
use asset_worker::job::{ErrorKind, S3Source};
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use base64::Engine as _;

use super::peers::{Seaweed, moto_assumed_role, peer, unique};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// An SDK identity made of fixed keys: the worker's own identity in these tests.
fn identity(access_key: String, secret_key: String) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key, secret_key, None, None, "test",
        )))
        .build()
}

/// SeaweedFS's admin: the worker's own identity there (it assumes the roles).
fn seaweed_admin() -> SdkConfig {
    identity(peer("S3_ADMIN_ACCESS_KEY_ID"), peer("S3_ADMIN_SECRET_ACCESS_KEY"))
}

fn seaweed_settings() -> S3AccessSettings {
    S3AccessSettings {
        sts_endpoint: Some(peer("STS_ENDPOINT")),
        s3_endpoint: Some(peer("S3_ENDPOINT")),
        force_path_style: true,
        ..S3AccessSettings::default()
    }
}

fn seaweed_provider(settings: S3AccessSettings) -> S3Access {
    S3Access::new(settings, seaweed_admin()).unwrap()
}

/// A job's source in SeaweedFS's bucket, read through `role_arn`.
fn seaweed_source(key: &str, role_arn: String) -> S3Source {
    S3Source {
        region: "eu-central-1".into(),
        bucket: peer("S3_BUCKET"),
        key: key.into(),
        role_arn,
        // SeaweedFS ignores it, but the worker must send one.
        external_id: Some("hub-org-1234".into()),
    }
}

/// Uploads `bytes` as the admin (creating the shared bucket if no test has yet).
fn upload(key: &str, bytes: &[u8]) {
    Seaweed::connect().upload_bytes(key, bytes.to_vec());
}

fn request(job_id: &str) -> MintRequest {
    MintRequest::new(job_id, Duration::from_secs(300))
}

/// The signed URL of a mint that must succeed.
fn minted(answer: Result<Fetchable, AccessError>) -> SignedUrl {
    match answer {
        Ok(Fetchable::Url(url)) => url,
        other => panic!("expected a signed URL, got {other:?}"),
    }
}

/// A query parameter of a URL (still percent-encoded).
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// GETs a signed URL as the fetcher would; a failure is reported without the URL.
fn get(url: &SignedUrl) -> reqwest::blocking::Response {
    reqwest::blocking::get(url.expose())
        .unwrap_or_else(|err| panic!("GET {url} got no answer: {}", err.without_url()))
}

#[test]
fn a_minted_url_reads_the_object_through_the_assumed_role() {
    let key = format!("s3-access/{}/object.bin", unique("read"));
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    upload(&key, &bytes);
    let provider = seaweed_provider(seaweed_settings());
    let source = seaweed_source(&key, peer("S3_ROLE_ARN"));
    let before = SystemTime::now();
    let url = minted(runtime().block_on(provider.mint(&source, &request(&unique("job")))));

    let response = get(&url);
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().as_ref(), bytes.as_slice());
    // Signed by the session, not by the worker's own keys.
    assert!(query_param(url.expose(), "X-Amz-Security-Token").is_some());
    assert!(!query_param(url.expose(), "X-Amz-Credential").unwrap().starts_with("AKIDADMIN"));
    assert_eq!(query_param(url.expose(), "X-Amz-Expires"), Some("300"));
    let lifetime = url.expires_at.duration_since(before).unwrap();
    assert!(lifetime <= Duration::from_secs(301), "{lifetime:?}");

    let head = runtime().block_on(provider.check_object(&source, &unique("check"))).unwrap();
    assert_eq!(head.size_bytes, Some(bytes.len() as u64));
    assert_eq!(head.content_type.as_deref(), Some("application/octet-stream"));
}

#[test]
fn a_role_without_get_object_mints_a_url_that_is_refused() {
    let key = format!("s3-access/{}/object.bin", unique("noget"));
    upload(&key, b"not for you");
    let provider = seaweed_provider(seaweed_settings());
    let source = seaweed_source(&key, peer("S3_NOGET_ROLE_ARN"));
    // Presigning is local: the refusal comes when the URL is used.
    let url = minted(runtime().block_on(provider.mint(&source, &request(&unique("job")))));
    assert_eq!(get(&url).status(), 403);

    let err = runtime().block_on(provider.check_object(&source, &unique("check"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    assert!(err.to_string().contains("s3:GetObject") && err.to_string().contains("role/noget"), "{err}");
}

#[test]
fn the_check_reports_a_missing_key_as_not_found() {
    let key = format!("s3-access/{}/never-uploaded.bin", unique("missing"));
    let provider = seaweed_provider(seaweed_settings());
    let err = runtime()
        .block_on(provider.check_object(&seaweed_source(&key, peer("S3_ROLE_ARN")), &unique("check")))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&key), "{err}");
}

#[test]
fn a_job_without_external_id_is_invalid() {
    let provider = seaweed_provider(seaweed_settings());
    let mut source = seaweed_source("s3-access/any.bin", peer("S3_ROLE_ARN"));
    source.external_id = None;
    let err = runtime().block_on(provider.mint(&source, &request(&unique("job")))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidJob);
    assert!(err.to_string().contains("external_id"), "{err}");
}

#[test]
fn a_url_never_outlives_the_session_behind_it() {
    let key = format!("s3-access/{}/object.bin", unique("ttl"));
    upload(&key, b"short-lived");
    // URLs may live a day, sessions the minimum 15 minutes: the session wins.
    let settings = S3AccessSettings {
        url_ttl: Duration::from_secs(24 * 3600),
        session_duration: Duration::from_secs(900),
        ..seaweed_settings()
    };
    let provider = seaweed_provider(settings);
    let source = seaweed_source(&key, peer("S3_ROLE_ARN"));
    let asked = MintRequest::new(unique("job"), Duration::from_secs(24 * 3600));
    let before = SystemTime::now();
    for _ in 0..2 {
        // The second mint reuses the session, whose life is by then a little shorter.
        let url = minted(runtime().block_on(provider.mint(&source, &asked)));
        let expires: u64 = query_param(url.expose(), "X-Amz-Expires").unwrap().parse().unwrap();
        assert!((60..=900 - 60).contains(&expires), "X-Amz-Expires={expires}");
        let lifetime = url.expires_at.duration_since(before).unwrap();
        assert!(lifetime <= Duration::from_secs(900 - 60), "{lifetime:?}");
        assert_eq!(get(&url).status(), 200);
    }
}

// ---------------------------------------------------------------------------------------------
// moto: what reaches STS.

fn moto_provider() -> S3Access {
    let settings =
        S3AccessSettings { sts_endpoint: Some(peer("MOTO_ENDPOINT")), ..S3AccessSettings::default() };
    S3Access::new(settings, identity(peer("MOTO_ACCESS_KEY_ID"), peer("MOTO_SECRET_ACCESS_KEY"))).unwrap()
}

fn moto_source(bucket: &str) -> S3Source {
    S3Source {
        region: "eu-central-1".into(),
        bucket: bucket.into(),
        key: "folder/clip.mp4".into(),
        role_arn: peer("MOTO_ROLE_ARN"),
        external_id: Some(peer("MOTO_EXTERNAL_ID")),
    }
}

/// The AssumeRole requests moto recorded, as their decoded form fields.
pub fn recorded_assume_roles() -> Vec<Vec<(String, String)>> {
    let recording = std::fs::read_to_string(peer("MOTO_RECORDING")).unwrap();
    recording
        .lines()
        .filter_map(|line| {
            let request: serde_json::Value = serde_json::from_str(line).ok()?;
            let body = request["body"].as_str()?;
            let body = if request["body_encoded"] == true {
                base64::engine::general_purpose::STANDARD.decode(body).ok()?
            } else {
                body.as_bytes().to_vec()
            };
            let form: Vec<(String, String)> =
                form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            form.iter().any(|(k, v)| k == "Action" && v == "AssumeRole").then_some(form)
        })
        .collect()
}

pub fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// How many AssumeRole requests carried a session name containing `marker`.
fn assume_roles_named(marker: &str) -> usize {
    recorded_assume_roles()
        .iter()
        .filter(|form| field(form, "RoleSessionName").is_some_and(|name| name.contains(marker)))
        .count()
}

#[test]
fn sts_receives_the_external_id_session_name_duration_and_session_policy() {
    let job_id = unique("sent");
    let provider = moto_provider();
    minted(runtime().block_on(provider.mint(&moto_source("customer-bucket"), &request(&job_id))));

    let session_name = format!("asset-worker-{job_id}");
    let assumed = moto_assumed_role(&session_name);
    assert_eq!(assumed["external_id"], peer("MOTO_EXTERNAL_ID"));
    assert_eq!(assumed["role_arn"], peer("MOTO_ROLE_ARN"));
    assert_eq!(assumed["region_name"], "eu-central-1");
    assert_eq!(
        assumed["policy"],
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::customer-bucket/*"}]}"#
    );
    let sent = recorded_assume_roles();
    let form = sent.iter().find(|form| field(form, "RoleSessionName") == Some(&session_name)).unwrap();
    assert_eq!(field(form, "DurationSeconds"), Some("900"));
    assert_eq!(field(form, "ExternalId"), Some(peer("MOTO_EXTERNAL_ID").as_str()));
}

#[test]
fn a_wrong_external_id_is_reported_as_such() {
    let provider = moto_provider();
    let mut source = moto_source("customer-bucket");
    source.external_id = Some("not-the-configured-one".into());
    let err = runtime().block_on(provider.mint(&source, &request(&unique("wrong")))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied, "{err}");
    let message = err.to_string();
    assert!(message.contains("ExternalId") && message.contains(&peer("MOTO_ROLE_ARN")), "{message}");
}

#[test]
fn sessions_are_shared_per_role_external_id_bucket_and_region() {
    let marker = unique("cache");
    let provider = moto_provider();
    let rt = runtime();
    let first =
        minted(rt.block_on(provider.mint(&moto_source("bucket-a"), &request(&format!("{marker}-1")))));
    let second =
        minted(rt.block_on(provider.mint(&moto_source("bucket-a"), &request(&format!("{marker}-2")))));
    assert_eq!(assume_roles_named(&marker), 1, "the second job reused the first one's session");
    // Same credentials, two URLs.
    assert_eq!(
        query_param(first.expose(), "X-Amz-Credential"),
        query_param(second.expose(), "X-Amz-Credential")
    );

    minted(rt.block_on(provider.mint(&moto_source("bucket-b"), &request(&format!("{marker}-3")))));
    assert_eq!(assume_roles_named(&marker), 2, "another bucket needs its own session policy");
    let mut other_region = moto_source("bucket-a");
    other_region.region = "eu-west-1".into();
    minted(rt.block_on(provider.mint(&other_region, &request(&format!("{marker}-4")))));
    assert_eq!(assume_roles_named(&marker), 3, "another region, another session");
}

/// The pipeline's second try after a refused URL asks for fresh credentials: a new
/// AssumeRole (a customer who revoked the sessions issued so far still trusts the role), whose
/// session then replaces the cached one.
#[test]
fn a_mint_for_fresh_credentials_assumes_the_role_again_and_replaces_the_cached_session() {
    let marker = unique("fresh");
    let provider = moto_provider();
    let rt = runtime();
    let source = moto_source("bucket-f");
    let cached = minted(rt.block_on(provider.mint(&source, &request(&format!("{marker}-1")))));
    let mut retry = request(&format!("{marker}-2"));
    retry.fresh_credentials = true;
    let fresh = minted(rt.block_on(provider.mint(&source, &retry)));
    assert_eq!(assume_roles_named(&marker), 2, "fresh credentials come from a new AssumeRole");
    let credential = |url: &SignedUrl| query_param(url.expose(), "X-Amz-Credential").unwrap().to_owned();
    assert_ne!(credential(&cached), credential(&fresh));
    let next = minted(rt.block_on(provider.mint(&source, &request(&format!("{marker}-3")))));
    assert_eq!(assume_roles_named(&marker), 2, "the next job uses the new session from the cache");
    assert_eq!(credential(&next), credential(&fresh));
}

#[test]
fn concurrent_mints_of_one_key_share_one_assume_role() {
    let marker = unique("concurrent");
    let provider = Arc::new(moto_provider());
    let source = moto_source("bucket-c");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    let answers = rt.block_on(async {
        let mut mints = tokio::task::JoinSet::new();
        for i in 0..8 {
            let (provider, source, request) =
                (provider.clone(), source.clone(), request(&format!("{marker}-{i}")));
            mints.spawn(async move { provider.mint(&source, &request).await });
        }
        mints.join_all().await
    });
    let credentials: HashSet<String> = answers
        .into_iter()
        .map(|answer| query_param(minted(answer).expose(), "X-Amz-Credential").unwrap().to_owned())
        .collect();
    assert_eq!(credentials.len(), 1, "eight jobs, one session");
    assert_eq!(assume_roles_named(&marker), 1);
}

// ---------------------------------------------------------------------------------------------
// Nothing the provider says may hand out what a URL or a session is made of.

/// What an answer of the provider shows: its `Debug`, and an error's message.
fn told<T: std::fmt::Debug>(answer: &Result<T, AccessError>) -> Vec<String> {
    let mut shown = vec![format!("{answer:?}")];
    if let Err(err) = answer {
        shown.push(err.to_string());
    }
    shown
}

/// A percent-encoded query value, decoded.
fn decoded(value: &str) -> String {
    form_urlencoded::parse(format!("v={value}").as_bytes()).next().unwrap().1.into_owned()
}

#[test]
fn nothing_the_provider_says_contains_a_signature_or_a_secret() {
    let rt = runtime();
    let mut said: Vec<String> = Vec::new();
    let mut secrets: Vec<String> = vec![peer("S3_ADMIN_SECRET_ACCESS_KEY"), peer("MOTO_SECRET_ACCESS_KEY")];

    // SeaweedFS: a URL that works, one that is refused, a check of each, a missing key.
    let key = format!("s3-access/{}/object.bin", unique("secrets"));
    upload(&key, b"secret-free");
    let seaweed = seaweed_provider(seaweed_settings());
    let good = seaweed_source(&key, peer("S3_ROLE_ARN"));
    let minted_url = rt.block_on(seaweed.mint(&good, &request(&unique("job"))));
    said.extend(told(&minted_url));
    let url = minted(minted_url);
    said.extend([url.to_string(), format!("{url:?}"), url.redacted(), format!("{seaweed:?}")]);
    for name in ["X-Amz-Signature", "X-Amz-Security-Token"] {
        let value = query_param(url.expose(), name).unwrap();
        secrets.extend([value.to_owned(), decoded(value)]);
    }
    let noget = seaweed_source(&key, peer("S3_NOGET_ROLE_ARN"));
    let missing = seaweed_source(&format!("{key}.missing"), peer("S3_ROLE_ARN"));
    for source in [&noget, &missing] {
        let checked = rt.block_on(seaweed.check_object(source, &unique("check")));
        said.extend(told(&checked));
    }
    let mut no_external_id = good.clone();
    no_external_id.external_id = None;
    said.extend(told(&rt.block_on(seaweed.mint(&no_external_id, &request(&unique("job"))))));

    // moto: a session whose secrets moto shows us, a wrong ExternalId, a worker whose own
    // secret is wrong, an STS that is not there.
    let moto = moto_provider();
    let job_id = unique("secrets");
    said.extend(told(&rt.block_on(moto.mint(&moto_source("customer-bucket"), &request(&job_id)))));
    let session = moto_assumed_role(&format!("asset-worker-{job_id}"));
    for field in ["secret_access_key", "session_token"] {
        secrets.push(session[field].as_str().unwrap().to_owned());
    }
    let mut wrong_external_id = moto_source("customer-bucket");
    wrong_external_id.external_id = Some("wrong".into());
    said.extend(told(&rt.block_on(moto.mint(&wrong_external_id, &request(&unique("job"))))));
    let wrong_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGSECRET".to_owned();
    let impostor = S3Access::new(
        S3AccessSettings { sts_endpoint: Some(peer("MOTO_ENDPOINT")), ..S3AccessSettings::default() },
        identity(peer("MOTO_ACCESS_KEY_ID"), wrong_secret.clone()),
    )
    .unwrap();
    let refused = rt.block_on(impostor.mint(&moto_source("customer-bucket"), &request(&unique("job"))));
    assert!(matches!(refused, Err(AccessError::Misconfigured(_))), "{refused:?}");
    said.extend(told(&refused));
    secrets.push(wrong_secret);
    let nowhere = S3Access::new(
        S3AccessSettings { sts_endpoint: Some("http://127.0.0.1:9".into()), ..S3AccessSettings::default() },
        identity(peer("MOTO_ACCESS_KEY_ID"), peer("MOTO_SECRET_ACCESS_KEY")),
    )
    .unwrap();
    said.extend(told(&rt.block_on(nowhere.mint(&moto_source("customer-bucket"), &request(&unique("job"))))));

    assert!(said.len() >= 16, "{said:#?}");
    for text in &said {
        assert!(!text.contains("X-Amz-Signature"), "a signature in: {text}");
        assert!(!text.contains("X-Amz-Security-Token"), "a session token in: {text}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in: {text}");
        }
    }
}

/// A customer who removes the platform from the role's trust policy ends new sessions, not
/// the ones STS already issued: the worker re-assumes a session once it is older than its
/// maximum age (`ASSET_WORKER_SESSION_MAX_AGE_SECONDS`, 900 s by default), however long STS
/// let it live, so that it stops minting within that time (docs/CUSTOMER-SETUP.md).
#[test]
fn a_session_older_than_its_maximum_age_is_assumed_again() {
    assert_eq!(S3AccessSettings::default().session_max_age, Duration::from_secs(900));
    let marker = unique("max-age");
    let settings = S3AccessSettings {
        sts_endpoint: Some(peer("MOTO_ENDPOINT")),
        session_max_age: Duration::from_secs(2),
        ..S3AccessSettings::default()
    };
    let provider =
        S3Access::new(settings, identity(peer("MOTO_ACCESS_KEY_ID"), peer("MOTO_SECRET_ACCESS_KEY")))
            .unwrap();
    let rt = runtime();
    let source = moto_source("bucket-m");
    let credential = |url: &SignedUrl| query_param(url.expose(), "X-Amz-Credential").unwrap().to_owned();
    let first = minted(rt.block_on(provider.mint(&source, &request(&format!("{marker}-1")))));
    let young = minted(rt.block_on(provider.mint(&source, &request(&format!("{marker}-2")))));
    assert_eq!(assume_roles_named(&marker), 1, "a young session is reused");
    assert_eq!(credential(&first), credential(&young));

    std::thread::sleep(Duration::from_millis(2100));
    let old = minted(rt.block_on(provider.mint(&source, &request(&format!("{marker}-3")))));
    assert_eq!(assume_roles_named(&marker), 2, "a session past its maximum age is replaced");
    assert_ne!(credential(&first), credential(&old));
    // The session STS granted still had most of its 15 minutes: only the age made it go.
    let form = recorded_assume_roles()
        .into_iter()
        .find(|form| field(form, "RoleSessionName") == Some(&format!("asset-worker-{marker}-3")))
        .expect("the third job opened the new session");
    assert_eq!(field(&form, "DurationSeconds"), Some("900"));
}
