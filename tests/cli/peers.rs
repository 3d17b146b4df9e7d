//! The test peers of `.peers/env` (`scripts/peers.sh`, tests/peers/README.md), as the tests
//! share them: their settings, names no other test uses, SeaweedFS as its admin (who creates
//! the bucket, uploads objects and presigns with its own keys), and moto's record of a session.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use asset_worker::access::SignedUrl;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;

/// A peer setting from `.peers/env`; a test without its peers fails, it never skips.
pub fn peer(name: &str) -> String {
    let variable = format!("ASSET_WORKER_TEST_{name}");
    std::env::var(&variable).unwrap_or_else(|_| {
        panic!(
            "{variable} is not set: run `make peers` and source .peers/env (`set -a; . .peers/env; set +a`)"
        )
    })
}

/// A name no other test (or earlier run, or other checkout on the same peers) uses.
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// SeaweedFS as its admin. The delegated path that mints URLs in production is what the tests
/// exercise; the admin only prepares objects (and, for the fetch tests, signs with its keys).
pub struct Seaweed {
    s3: aws_sdk_s3::Client,
    pub bucket: String,
    runtime: tokio::runtime::Runtime,
}

impl Seaweed {
    /// The shared SeaweedFS of `.peers/env`, its bucket created if no test has yet.
    pub fn connect() -> Self {
        Self::at(&peer("S3_ENDPOINT"))
    }

    /// The SeaweedFS at `endpoint` (e.g. a private set started by a test that restarts it).
    pub fn at(endpoint: &str) -> Self {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-central-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                peer("S3_ADMIN_ACCESS_KEY_ID"),
                peer("S3_ADMIN_SECRET_ACCESS_KEY"),
                None,
                None,
                "test",
            ))
            .build();
        let seaweed = Seaweed {
            s3: aws_sdk_s3::Client::from_conf(config),
            bucket: peer("S3_BUCKET"),
            runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"),
        };
        seaweed.runtime.block_on(async {
            if let Err(err) = seaweed.s3.create_bucket().bucket(&seaweed.bucket).send().await {
                let exists = err
                    .as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists());
                assert!(
                    exists,
                    "creating bucket {} at {endpoint}: {}",
                    seaweed.bucket,
                    aws_sdk_s3::error::DisplayErrorContext(&err)
                );
            }
        });
        seaweed
    }

    /// Uploads `body` under `key`, typed `application/octet-stream` as an uploader that does
    /// not know the type would: the worker must tell the type from the bytes.
    pub fn upload(&self, key: &str, body: ByteStream) {
        self.runtime.block_on(async {
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type("application/octet-stream")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("upload {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
        });
    }

    pub fn upload_bytes(&self, key: &str, bytes: Vec<u8>) {
        self.upload(key, ByteStream::from(bytes));
    }

    pub fn upload_file(&self, key: &str, path: &Path) {
        let body = self.runtime.block_on(ByteStream::from_path(path)).expect("the file to upload opens");
        self.upload(key, body);
    }

    /// Creates `bucket` (a test's own), if it does not exist yet.
    pub fn create_bucket(&self, bucket: &str) {
        self.runtime.block_on(async {
            if let Err(err) = self.s3.create_bucket().bucket(bucket).send().await {
                let exists = err
                    .as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists());
                assert!(exists, "creating bucket {bucket}: {}", aws_sdk_s3::error::DisplayErrorContext(&err));
            }
        });
    }

    /// Sets `bucket`'s CORS rules to `configuration`, in S3's JSON shape (`{"CORSRules": […]}`,
    /// as `aws s3api put-bucket-cors` takes it).
    pub fn put_cors(&self, bucket: &str, configuration: &serde_json::Value) {
        use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
        let strings = |rule: &serde_json::Value, field: &str| -> Option<Vec<String>> {
            rule[field]
                .as_array()
                .map(|values| values.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        };
        let rules = configuration["CORSRules"].as_array().expect("CORSRules").iter().map(|rule| {
            CorsRule::builder()
                .set_allowed_origins(strings(rule, "AllowedOrigins"))
                .set_allowed_methods(strings(rule, "AllowedMethods"))
                .set_allowed_headers(strings(rule, "AllowedHeaders"))
                .set_expose_headers(strings(rule, "ExposeHeaders"))
                .set_max_age_seconds(rule["MaxAgeSeconds"].as_i64().map(|n| n as i32))
                .build()
                .expect("a CORS rule")
        });
        let cors = CorsConfiguration::builder().set_cors_rules(Some(rules.collect())).build().expect("CORS");
        self.runtime.block_on(async {
            self.s3.put_bucket_cors().bucket(bucket).cors_configuration(cors).send().await.unwrap_or_else(
                |e| panic!("CORS of {bucket}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)),
            );
        });
    }

    /// Uploads `bytes` under `key` of `bucket` (a test's own, not the shared one).
    pub fn upload_to(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        self.runtime.block_on(async {
            self.s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .unwrap_or_else(|e| panic!("upload {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
        });
    }

    /// A GET of `key` presigned with the admin's own keys, living `ttl`.
    pub fn presign(&self, key: &str, ttl: Duration) -> SignedUrl {
        let request = self.runtime.block_on(async {
            self.s3
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(PresigningConfig::expires_in(ttl).expect("a TTL S3 accepts"))
                .await
                .expect("presigning is local")
        });
        SignedUrl::new(request.uri().to_owned(), SystemTime::now() + ttl)
    }
}

/// moto's record of the assumed-role session named `session_name` (`GET /moto-api/data.json`,
/// `.sts.AssumedRole[]`): ExternalId, session policy, and the session's own keys.
pub fn moto_assumed_role(session_name: &str) -> serde_json::Value {
    let data: serde_json::Value =
        reqwest::blocking::get(format!("{}/moto-api/data.json", peer("MOTO_ENDPOINT")))
            .and_then(|response| response.json())
            .unwrap_or_else(|e| panic!("moto's data.json: {e}"));
    let sessions = data["sts"]["AssumedRole"].as_array().cloned().unwrap_or_default();
    sessions
        .into_iter()
        .find(|session| session["session_name"] == session_name)
        .unwrap_or_else(|| panic!("moto has no assumed role named {session_name}"))
}

/// The customer's admin in moto (`tests/peers/moto_admin.py`, run with the peers' venv python:
/// buckets, roles, CloudFormation stacks); its JSON answer. Panics with its stderr on failure.
pub fn moto_admin(args: &[&str]) -> serde_json::Value {
    let script = std::path::PathBuf::from(peer("PEERS_SCRIPT"));
    let root = script.parent().and_then(Path::parent).expect("scripts/peers.sh sits in the repository");
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(super::root().join("tests/peers/moto_admin.py"))
        .args(args)
        .output()
        .expect("the peers' venv python runs");
    assert!(output.status.success(), "moto_admin.py {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("moto_admin.py prints JSON")
}

/// `rabbitmqctl`, where RabbitMQ's packages put it.
pub fn rabbitmqctl() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/lib/rabbitmq/bin".into()])
        .map(|dir| dir.join("rabbitmqctl"))
        .find(|candidate| candidate.is_file())
}
