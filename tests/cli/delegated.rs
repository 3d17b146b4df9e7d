//! Delegated access end to end, as an operator sees it: the real `asset-worker` binary runs
//! `extract`, `check` and `sign` on `s3://` and `gs://` objects against the real peers
//! (SeaweedFS, moto, fake-gcs-server), with an environment built for each command and nothing
//! inherited — no secret of the test runner leaks in, none of the worker's leaks out.
//!
//! Covers issue 3's "Tests against real peers" through the binary: an object of each data type
//! read through an assumed role gives its local file's golden answer and leaves nothing in the
//! temp dir; `noget`, a missing key, a missing ExternalId and a missing `--role-arn` fail the
//! way an operator can act on; an expired URL is minted again once; revoking GetObject refuses
//! a URL minted before (on a private SeaweedFS that the test restarts); moto reads back what
//! STS was sent; a GCS object is read through a V4 URL; and a whole batch of runs, at
//! `RUST_LOG=trace`, prints no signature, session token or secret key.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use asset_worker::fetch::PRIVATE_DIR_NAME;
use serde_json::Value;

use super::peers::{Seaweed, moto_assumed_role, peer, unique};
use super::root;

/// The ExternalId sent to SeaweedFS, which ignores it (moto checks it: see the moto tests).
pub const EXTERNAL_ID: &str = "hub-org-1234";
/// The service-account key of Google's conformance vectors: signs GCS URLs for fake-gcs-server,
/// which checks no signature.
pub const GCS_KEY_FILE: &str = "tests/vectors/gcs-v4/test_service_account.not-a-test.json";
pub const PNG: &str = "fixtures/image/png_rgb8.png";

// ---------------------------------------------------------------------------------------------
// The binary, run as an operator would.

/// One finished run of the binary.
pub struct Run {
    /// The process id: `check` and `sign` name their cloud session after it.
    pub pid: u32,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON lines it printed.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nstderr: {}", self.stderr))
            })
            .collect()
    }

    /// The one JSON line of a run over one object.
    pub fn answer(&self) -> Value {
        let mut lines = self.lines();
        assert_eq!(lines.len(), 1, "one line expected; stdout: {}\nstderr: {}", self.stdout, self.stderr);
        lines.remove(0)
    }

    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.code, Some(code), "stdout: {}\nstderr: {}", self.stdout, self.stderr);
    }
}

/// The worker's environment for one set of peers: exactly these variables, a `HOME` of its own
/// (no `~/.aws` or gcloud credentials of the machine) and a temp dir of its own.
pub struct Worker {
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Worker {
    pub fn new(env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        for sub in ["home", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).expect("a temp dir");
        }
        let mut worker = Worker { env: Vec::new(), dir };
        let (home, tmp) = (worker.home(), worker.temp_dir());
        worker = worker
            .with("HOME", home.to_string_lossy())
            .with("ASSET_WORKER_TEMP_DIR", tmp.to_string_lossy())
            // No instance metadata service to wait for when a credential is missing.
            .with("AWS_EC2_METADATA_DISABLED", "true");
        for (name, value) in env {
            worker = worker.with(name, value);
        }
        worker
    }

    /// The worker in front of the shared SeaweedFS, as its admin (the identity that assumes the
    /// customer's roles).
    pub fn seaweed() -> Self {
        Self::seaweed_at(&peer("S3_ENDPOINT"), &peer("STS_ENDPOINT"))
    }

    pub fn seaweed_at(s3_endpoint: &str, sts_endpoint: &str) -> Self {
        Worker::new(&[
            ("AWS_ACCESS_KEY_ID", peer("S3_ADMIN_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", peer("S3_ADMIN_SECRET_ACCESS_KEY")),
            ("ASSET_WORKER_S3_ENDPOINT", s3_endpoint.to_owned()),
            ("ASSET_WORKER_STS_ENDPOINT", sts_endpoint.to_owned()),
            ("ASSET_WORKER_S3_FORCE_PATH_STYLE", "true".to_owned()),
        ])
    }

    /// The worker whose STS (and S3) is moto, as moto's IAM user `worker`.
    pub fn moto() -> Self {
        Worker::new(&[
            ("AWS_ACCESS_KEY_ID", peer("MOTO_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", peer("MOTO_SECRET_ACCESS_KEY")),
            ("ASSET_WORKER_STS_ENDPOINT", peer("MOTO_ENDPOINT")),
            ("ASSET_WORKER_S3_ENDPOINT", peer("MOTO_ENDPOINT")),
            ("ASSET_WORKER_S3_FORCE_PATH_STYLE", "true".to_owned()),
        ])
    }

    /// The worker signing GCS URLs with a service-account key, for the store at `endpoint`.
    pub fn gcs_at(endpoint: &str) -> Self {
        Worker::new(&[
            ("ASSET_WORKER_GCS_ENDPOINT", endpoint.to_owned()),
            ("ASSET_WORKER_GCS_KEY_FILE", root().join(GCS_KEY_FILE).to_string_lossy().into_owned()),
        ])
    }

    /// Sets (or replaces) one variable.
    pub fn with(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.env.retain(|(existing, _)| existing != name);
        self.env.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `ASSET_WORKER_TEMP_DIR`: where fetched bytes would be held.
    fn temp_dir(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let child = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let pid = child.id();
        let output = child.wait_with_output().expect("the binary's output");
        Run {
            pid,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Nothing of a fetched object outlives the run: the temp dir holds at most the (empty)
    /// private dir the fetches made.
    fn assert_temp_dir_empty(&self) {
        let mut left = Vec::new();
        for entry in std::fs::read_dir(self.temp_dir()).expect("the temp dir is there") {
            let path = entry.expect("a dir entry").path();
            let empty_private_dir = path.file_name() == Some(PRIVATE_DIR_NAME.as_ref())
                && std::fs::read_dir(&path).is_ok_and(|mut entries| entries.next().is_none());
            if !empty_private_dir {
                left.push(path);
            }
        }
        assert!(left.is_empty(), "left in the temp dir: {left:?}");
    }
}

/// `--role-arn ROLE --external-id ID` for `s3://OBJECT`, as the arguments of `command`.
pub fn s3_args<'a>(command: &'a str, object: &'a str, role: &'a str, external_id: &'a str) -> Vec<&'a str> {
    vec![command, object, "--role-arn", role, "--external-id", external_id]
}

/// A fixture's reviewed answer (fixtures/expected/), without its `path`.
fn golden(fixture: &str) -> Value {
    let relative = fixture.strip_prefix("fixtures/").expect("a fixture path");
    let path = root().join("fixtures/expected").join(format!("{relative}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut answer: Value = serde_json::from_str(&text).expect("golden answers are JSON");
    answer.as_object_mut().expect("an object").remove("path");
    answer
}

/// A remote answer compared with its file's golden answer: equal but for `path` (the object)
/// and `stats` (what fetching cost, which a file has not); some bytes were fetched, never more
/// than the object.
fn assert_answers_like_the_file(answer: &Value, object: &str, fixture: &str) {
    let mut answer = answer.clone();
    let fields = answer.as_object_mut().expect("an object");
    assert_eq!(fields.remove("path"), Some(Value::from(object)));
    let stats = fields.remove("stats").unwrap_or_else(|| panic!("{object}: no stats"));
    assert_eq!(answer, golden(fixture), "{object} answers unlike {fixture}");
    let size = std::fs::metadata(root().join(fixture)).expect("the fixture").len();
    assert_eq!(answer["size_bytes"], size, "{object}");
    let fetched = stats["bytes_fetched"].as_u64().unwrap_or_default();
    assert!(fetched > 0 && fetched <= size, "{object}: {fetched} of {size} bytes fetched: {stats}");
}

pub fn error_kind(answer: &Value) -> &str {
    answer["error"]["kind"].as_str().unwrap_or_else(|| panic!("no error kind in {answer}"))
}

pub fn error_message(answer: &Value) -> &str {
    answer["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message in {answer}"))
}

/// Uploads `fixture` to the shared SeaweedFS under a fresh key; its `s3://` name.
fn seaweed_fixture(seaweed: &Seaweed, test: &str, fixture: &str) -> String {
    let name = Path::new(fixture).file_name().expect("a file name").to_string_lossy();
    let key = format!("delegated/{}/{name}", unique(test));
    seaweed.upload_file(&key, &root().join(fixture));
    format!("s3://{}/{key}", seaweed.bucket)
}

// ---------------------------------------------------------------------------------------------
// A relay: the network between the worker and a store, which the test can watch and slow down.

/// What went through one connection of the relay.
#[derive(Debug, Clone, Default)]
struct Exchange {
    /// Everything the worker sent (request heads: GET and HEAD carry no body).
    sent: Vec<u8>,
    /// The status of the store's first answer on this connection.
    status: Option<u16>,
    /// The start of that answer (head and the beginning of its body).
    answer: Vec<u8>,
}

impl Exchange {
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent).into_owned()
    }

    /// A query parameter of the first request (still percent-encoded).
    fn param(&self, name: &str) -> Option<String> {
        let sent = self.sent();
        let target = sent.lines().next()?.split(' ').nth(1)?.to_owned();
        let query = target.split_once('?')?.1;
        query.split('&').find_map(|pair| Some(pair.strip_prefix(name)?.strip_prefix('=')?.to_owned()))
    }
}

/// What a [`Relay`] does besides relaying.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Relaying {
    /// Forwards every byte as it is: what S3's signatures (which cover `Host`) need.
    AsIs,
    /// Holds the first request back until the presigned URL in it has expired: a worker whose
    /// fetch starts late (a slow network or queue), with nothing changed in the worker.
    HoldingTheFirstUntilExpired,
    /// Names the store, not the relay, in `Host`: fake-gcs-server serves path-style URLs only
    /// for its own host (and checks no signature, so the changed header is not noticed).
    RewritingHost,
}

/// A TCP relay on 127.0.0.1 in front of a store, recording each connection. It adds
/// `Connection: close` to each answer, so that a client keeping connections alive (the worker
/// does, per host) still sends each request on a connection of its own, recorded on its own.
struct Relay {
    endpoint: String,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

impl Relay {
    fn start(upstream: &str, relaying: Relaying) -> Relay {
        let upstream = upstream.strip_prefix("http://").expect("an http:// peer").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let authority = listener.local_addr().expect("an address").to_string();
        let endpoint = format!("http://{authority}");
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let log = exchanges.clone();
        // Lives until the test binary exits; each test has its own.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let index = {
                    let mut log = log.lock().expect("the relay's log");
                    log.push(Exchange::default());
                    log.len() - 1
                };
                let hold = relaying == Relaying::HoldingTheFirstUntilExpired && index == 0;
                let rewrite =
                    (relaying == Relaying::RewritingHost).then(|| (authority.clone(), upstream.clone()));
                let (upstream, log) = (upstream.clone(), log.clone());
                std::thread::spawn(move || relay(client, &upstream, index, hold, rewrite, &log));
            }
        });
        Relay { endpoint, exchanges }
    }

    fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().expect("the relay's log").clone()
    }

    /// The statuses of the connections, in order.
    fn statuses(&self) -> Vec<Option<u16>> {
        self.exchanges().iter().map(|e| e.status).collect()
    }
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    index: usize,
    hold: bool,
    rewrite: Option<(String, String)>,
    log: &Mutex<Vec<Exchange>>,
) {
    let record = |bytes: &[u8]| log.lock().expect("the relay's log")[index].sent.extend_from_slice(bytes);
    let forwarded = |bytes: &[u8]| match &rewrite {
        Some((relay, store)) => String::from_utf8_lossy(bytes).replace(relay.as_str(), store).into_bytes(),
        None => bytes.to_vec(),
    };
    // The request head first: it tells when the URL in it expires.
    let mut head = Vec::new();
    let mut buffer = [0u8; 8192];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    record(&head);
    if hold && let Some(expired) = url_expiry(&String::from_utf8_lossy(&head)) {
        // One second past the expiry: S3 compares whole seconds.
        let until = expired + Duration::from_secs(1);
        while SystemTime::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let Ok(mut server) = TcpStream::connect(upstream) else { return };
    if server.write_all(&forwarded(&head)).is_err() {
        return;
    }
    let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone()) else { return };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = client_in.read(&mut buffer) {
                record(&buffer[..n]);
                if server_out.write_all(&forwarded(&buffer[..n])).is_err() {
                    break;
                }
            }
            let _ = server_out.shutdown(std::net::Shutdown::Write);
        });
        let mut buffer = [0u8; 65536];
        let mut first = true;
        while let Ok(n @ 1..) = server.read(&mut buffer) {
            if first {
                first = false;
                let status = String::from_utf8_lossy(&buffer[..n.min(16)])
                    .split(' ')
                    .nth(1)
                    .and_then(|code| code.parse().ok());
                let mut log = log.lock().expect("the relay's log");
                log[index].status = status;
                log[index].answer = buffer[..n.min(2048)].to_vec();
                drop(log);
                // After the status line: one request per connection.
                if let Some(end) = buffer[..n].windows(2).position(|w| w == b"\r\n") {
                    let mut head = buffer[..end + 2].to_vec();
                    head.extend_from_slice(b"Connection: close\r\n");
                    head.extend_from_slice(&buffer[end + 2..n]);
                    if client.write_all(&head).is_err() {
                        break;
                    }
                    continue;
                }
            }
            if client.write_all(&buffer[..n]).is_err() {
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
}

/// When the presigned URL of a request head expires: `X-Amz-Date` plus `X-Amz-Expires`.
fn url_expiry(head: &str) -> Option<SystemTime> {
    let param = |name: &str| {
        let at = head.find(&format!("{name}="))? + name.len() + 1;
        Some(head[at..].split(['&', ' ']).next()?.to_owned())
    };
    let date = param("X-Amz-Date")?; // 20261128T191341Z
    let expires: u64 = param("X-Amz-Expires")?.parse().ok()?;
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        date.get(0..4)?,
        date.get(4..6)?,
        date.get(6..8)?,
        date.get(9..11)?,
        date.get(11..13)?,
        date.get(13..15)?
    );
    Some(humantime::parse_rfc3339(&rfc3339).ok()? + Duration::from_secs(expires))
}

// ---------------------------------------------------------------------------------------------
// SeaweedFS: the worker role, the noget role, missing keys and flags.

#[test]
fn an_object_of_each_type_read_through_the_role_answers_like_its_file() {
    let seaweed = Seaweed::connect();
    let fixtures = [
        "fixtures/image/jpeg_exif_orientation6.jpg",
        "fixtures/video/mp4_h264_aac_moov_at_end.mp4",
        "fixtures/audio/mp3_vbr_no_xing.mp3",
        "fixtures/pdf/inherited_mediabox_rotate_3pages.pdf",
        "fixtures/dicom/explicit_vr_le_ct_small.dcm",
        "fixtures/text/utf8_lf.txt",
    ];
    let objects: Vec<String> = fixtures.iter().map(|f| seaweed_fixture(&seaweed, "types", f)).collect();
    let worker = Worker::seaweed();
    let role = peer("S3_ROLE_ARN");
    let mut args = vec!["extract"];
    args.extend(objects.iter().map(String::as_str));
    args.extend(["--role-arn", &role, "--external-id", EXTERNAL_ID]);

    let run = worker.run(&args);
    run.assert_exit(0);
    let answers = run.lines();
    assert_eq!(answers.len(), fixtures.len(), "{}", run.stderr);
    for ((fixture, object), answer) in fixtures.iter().zip(&objects).zip(&answers) {
        assert_answers_like_the_file(answer, object, fixture);
    }
    worker.assert_temp_dir_empty();
}

#[test]
fn the_noget_role_is_access_denied_and_check_names_the_missing_permission() {
    let object = seaweed_fixture(&Seaweed::connect(), "noget", PNG);
    let worker = Worker::seaweed();
    let role = peer("S3_NOGET_ROLE_ARN");

    let extracted = worker.run(&s3_args("extract", &object, &role, EXTERNAL_ID));
    extracted.assert_exit(1);
    let answer = extracted.answer();
    assert_eq!(error_kind(&answer), "access_denied", "{answer}");
    assert_eq!(answer["error"]["retryable"], false);

    let checked = worker.run(&s3_args("check", &object, &role, EXTERNAL_ID));
    checked.assert_exit(1);
    let answer = checked.answer();
    assert_eq!(answer["access_granted"], true, "the role itself was assumed: {answer}");
    assert_eq!(error_kind(&answer), "access_denied", "{answer}");
    let message = error_message(&answer);
    assert!(message.contains("s3:GetObject") && message.contains(&role), "{message}");
    worker.assert_temp_dir_empty();
}

#[test]
fn a_missing_key_is_not_found_by_extract_and_check() {
    let seaweed = Seaweed::connect();
    let object = format!("s3://{}/delegated/{}/never-uploaded.png", seaweed.bucket, unique("missing"));
    let worker = Worker::seaweed();
    let role = peer("S3_ROLE_ARN");
    for command in ["extract", "check"] {
        let run = worker.run(&s3_args(command, &object, &role, EXTERNAL_ID));
        run.assert_exit(1);
        let answer = run.answer();
        assert_eq!(error_kind(&answer), "not_found", "{command}: {answer}");
    }
    worker.assert_temp_dir_empty();
}

#[test]
fn an_s3_object_without_external_id_is_an_invalid_job() {
    let object = format!("s3://{}/delegated/{}/any.png", peer("S3_BUCKET"), unique("no-external-id"));
    let role = peer("S3_ROLE_ARN");
    let worker = Worker::seaweed();
    for command in ["extract", "check"] {
        let run = worker.run(&[command, &object, "--role-arn", &role]);
        run.assert_exit(1);
        let answer = run.answer();
        assert_eq!(error_kind(&answer), "invalid_job", "{command}: {answer}");
        assert!(error_message(&answer).contains("external_id"), "{answer}");
    }
}

#[test]
fn an_s3_object_without_role_arn_is_a_usage_error_naming_the_flag() {
    let object = format!("s3://{}/delegated/any.png", peer("S3_BUCKET"));
    let worker = Worker::seaweed();
    for command in ["extract", "check", "sign"] {
        let run = worker.run(&[command, &object, "--external-id", EXTERNAL_ID]);
        run.assert_exit(2);
        assert!(run.stdout.is_empty(), "{command}: {}", run.stdout);
        assert!(run.stderr.contains("--role-arn"), "{command}: {}", run.stderr);
    }
}

/// The pipeline mints a URL again, once, when the store refuses the first (it may have expired
/// between mint and fetch). Shown through the binary, honestly: URLs live 3 s
/// (`ASSET_WORKER_URL_TTL_SECONDS`; S3 dates are whole seconds, so the fresh URL has 2 to 3 s
/// to be used), and a [`Relay`] between the worker and SeaweedFS holds the
/// first request until its URL has expired — the worker is untouched. SeaweedFS refuses it
/// (403), the worker mints a fresh URL (another date, another signature), and reads the object.
/// With the `noget` role every URL is refused: the worker tries exactly twice, then reports
/// `access_denied`.
#[test]
fn an_expired_url_is_minted_again_once() {
    let object = seaweed_fixture(&Seaweed::connect(), "expired", PNG);
    let slow = Relay::start(&peer("S3_ENDPOINT"), Relaying::HoldingTheFirstUntilExpired);
    let worker =
        Worker::seaweed_at(&slow.endpoint, &peer("STS_ENDPOINT")).with("ASSET_WORKER_URL_TTL_SECONDS", "3");

    let started = Instant::now();
    let run = worker.run(&s3_args("extract", &object, &peer("S3_ROLE_ARN"), EXTERNAL_ID));
    run.assert_exit(0);
    assert_answers_like_the_file(&run.answer(), &object, PNG);
    let exchanges = slow.exchanges();
    assert_eq!(slow.statuses(), [Some(403), Some(206)], "one refused URL, one fresh one (a ranged GET)");
    let (first, second) = (&exchanges[0], &exchanges[1]);
    let refusal = String::from_utf8_lossy(&first.answer);
    assert!(refusal.contains("Request has expired"), "refused for its age, not otherwise: {refusal}");
    assert!(first.sent().starts_with("GET ") && second.sent().starts_with("GET "));
    assert_ne!(first.param("X-Amz-Signature"), second.param("X-Amz-Signature"), "a new URL");
    assert!(second.param("X-Amz-Date") > first.param("X-Amz-Date"), "minted after the refusal");
    assert!(started.elapsed() >= Duration::from_secs(3), "the first URL was held past its expiry");

    let refused = Relay::start(&peer("S3_ENDPOINT"), Relaying::AsIs);
    let worker = Worker::seaweed_at(&refused.endpoint, &peer("STS_ENDPOINT"));
    let run = worker.run(&s3_args("extract", &object, &peer("S3_NOGET_ROLE_ARN"), EXTERNAL_ID));
    run.assert_exit(1);
    assert_eq!(error_kind(&run.answer()), "access_denied");
    assert_eq!(refused.statuses(), [Some(403), Some(403)], "minted again once, then given up");
    worker.assert_temp_dir_empty();
}

// ---------------------------------------------------------------------------------------------
// Revocation, on a SeaweedFS of the test's own.

/// A SeaweedFS of this test alone (`PEERS_STATE_DIR`: own ports, data and env), because
/// restarting it with another IAM config would break every test on the shared one. Stopped
/// when dropped, also when the test fails.
struct PrivateSeaweed {
    state: tempfile::TempDir,
    endpoint: String,
}

impl PrivateSeaweed {
    fn start() -> Self {
        // The guard exists before the start: a set that half started is stopped too.
        let mut seaweed =
            PrivateSeaweed { state: tempfile::tempdir().expect("a temp dir"), endpoint: String::new() };
        seaweed.script(&["start", "seaweedfs"]).unwrap_or_else(|e| panic!("{e}"));
        let env = std::fs::read_to_string(seaweed.state.path().join("env")).expect("peers.sh wrote env");
        seaweed.endpoint = env
            .lines()
            .find_map(|line| line.strip_prefix("export ASSET_WORKER_TEST_S3_ENDPOINT="))
            .expect("the private SeaweedFS's endpoint")
            .to_owned();
        seaweed
    }

    /// Runs `scripts/peers.sh ARGS` on this set; what it printed, on failure.
    fn script(&self, args: &[&str]) -> Result<(), String> {
        let output = Command::new(peer("PEERS_SCRIPT"))
            .args(args)
            .env("PEERS_STATE_DIR", self.state.path())
            .output()
            .map_err(|e| format!("scripts/peers.sh does not run: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "scripts/peers.sh {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }

    /// Restarts it (same ports, same objects) with another IAM config.
    fn restart_with(&self, iam_config: &str) {
        self.script(&["restart-seaweedfs", iam_config]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for PrivateSeaweed {
    fn drop(&mut self) {
        // Never a panic here: it would abort a test that is already failing.
        if let Err(e) = self.script(&["stop", "seaweedfs"]) {
            eprintln!("the private SeaweedFS did not stop: {e}");
        }
    }
}

/// Issue 3: "revoking GetObject (restart with a policy without it) makes a URL minted before
/// fail". A display URL from `sign` reads the object; SeaweedFS restarts with the worker role
/// reduced to listing (`iam-revoked.json`, same STS key, so the session token still verifies);
/// the same URL is now 403 and a new `extract` is `access_denied`. About 15 s (start, restart,
/// stop of a SeaweedFS).
#[test]
fn revoking_get_object_refuses_a_url_minted_before() {
    let private = PrivateSeaweed::start();
    let seaweed = Seaweed::at(&private.endpoint);
    let key = format!("delegated/{}/png_rgb8.png", unique("revoked"));
    seaweed.upload_file(&key, &root().join(PNG));
    let object = format!("s3://{}/{key}", seaweed.bucket);
    let worker = Worker::seaweed_at(&private.endpoint, &private.endpoint);
    let role = peer("S3_ROLE_ARN");

    let signed = worker.run(&s3_args("sign", &object, &role, EXTERNAL_ID));
    signed.assert_exit(0);
    let url = signed.answer()["url"].as_str().expect("sign prints a url").to_owned();
    let get = |url: &str| {
        reqwest::blocking::get(url)
            .unwrap_or_else(|e| panic!("GET of the signed URL got no answer: {}", e.without_url()))
            .status()
            .as_u16()
    };
    assert_eq!(get(&url), 200, "the display URL works before the revocation");

    private.restart_with(&peer("S3_IAM_REVOKED_CONFIG"));
    assert_eq!(get(&url), 403, "a URL minted before the revocation is refused");
    let run = worker.run(&s3_args("extract", &object, &role, EXTERNAL_ID));
    run.assert_exit(1);
    assert_eq!(error_kind(&run.answer()), "access_denied");
    worker.assert_temp_dir_empty();
}

// ---------------------------------------------------------------------------------------------
// moto: what STS is sent. moto holds no object the worker could read (its S3 is not the
// store under test), so only the AssumeRole half of `check` matters here: moto's trust policy
// checks the ExternalId, and its data.json shows the session the worker opened.

#[test]
fn check_with_a_wrong_external_id_says_so() {
    let role = peer("MOTO_ROLE_ARN");
    let run = Worker::moto().run(&s3_args("check", "s3://customer-bucket/any.png", &role, "wrong"));
    run.assert_exit(1);
    let answer = run.answer();
    assert_eq!(answer["access_granted"], false, "{answer}");
    assert_eq!(error_kind(&answer), "access_denied", "{answer}");
    let message = error_message(&answer);
    assert!(message.contains("ExternalId") && message.contains(&role), "{message}");
}

#[test]
fn check_opens_a_session_named_after_its_job_with_the_external_id() {
    let bucket = unique("customer");
    let object = format!("s3://{bucket}/any.png");
    let run =
        Worker::moto().run(&s3_args("check", &object, &peer("MOTO_ROLE_ARN"), &peer("MOTO_EXTERNAL_ID")));
    // The role was assumed; the HEAD then finds no such bucket in moto.
    run.assert_exit(1);
    let answer = run.answer();
    assert_eq!(answer["access_granted"], true, "{answer}");
    assert_eq!(error_kind(&answer), "not_found", "{answer}");

    // `check`'s job id is `check-PID`; the session carries it, for the customer's CloudTrail.
    let session = moto_assumed_role(&format!("asset-worker-check-{}", run.pid));
    assert_eq!(session["external_id"], peer("MOTO_EXTERNAL_ID"));
    assert_eq!(session["role_arn"], peer("MOTO_ROLE_ARN"));
    let policy = session["policy"].as_str().expect("a session policy");
    assert!(
        policy.contains(&format!("arn:aws:s3:::{bucket}/*")) && policy.contains("s3:GetObject"),
        "{policy}"
    );
}

// ---------------------------------------------------------------------------------------------
// GCS: fake-gcs-server serves objects by V4 URL (and checks no signature: signing is proven by
// Google's conformance vectors in `access::gcs`).

/// Creates `bucket` on fake-gcs-server and uploads `bytes` as `object` (JSON API).
fn gcs_upload(endpoint: &str, bucket: &str, object: &str, bytes: Vec<u8>) {
    let http = reqwest::blocking::Client::new();
    let created = http
        .post(format!("{endpoint}/storage/v1/b?project=test"))
        .json(&serde_json::json!({ "name": bucket }))
        .send()
        .expect("fake-gcs-server answers");
    assert!(created.status().is_success(), "create bucket {bucket}: {}", created.status());
    let uploaded = http
        .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o"))
        .query(&[("uploadType", "media"), ("name", object)])
        .body(bytes)
        .send()
        .expect("fake-gcs-server answers");
    assert!(uploaded.status().is_success(), "upload {object}: {}", uploaded.status());
}

/// A fresh bucket holding [`PNG`] as `dir/png_rgb8.png`; its `gs://` name.
pub fn gcs_fixture(endpoint: &str) -> String {
    let bucket = unique("delegated");
    gcs_upload(endpoint, &bucket, "dir/png_rgb8.png", std::fs::read(root().join(PNG)).expect("the fixture"));
    format!("gs://{bucket}/dir/png_rgb8.png")
}

#[test]
fn a_gcs_object_is_extracted_signed_and_checked() {
    let endpoint = peer("GCS_ENDPOINT");
    let object = gcs_fixture(&endpoint);
    let worker = Worker::gcs_at(&endpoint);

    let run = worker.run(&["extract", &object]);
    run.assert_exit(0);
    assert_answers_like_the_file(&run.answer(), &object, PNG);

    let signed = worker.run(&["sign", &object]);
    signed.assert_exit(0);
    let url = signed.answer()["url"].as_str().expect("sign prints a url").to_owned();
    assert!(url.starts_with(&endpoint) && url.contains("X-Goog-Signature="), "not a V4 URL of the store");
    let body = reqwest::blocking::get(&url)
        .and_then(|response| response.error_for_status()?.bytes())
        .unwrap_or_else(|e| panic!("GET of the signed URL: {}", e.without_url()));
    assert_eq!(body.as_ref(), std::fs::read(root().join(PNG)).expect("the fixture"));

    let missing = object.replace("png_rgb8.png", "never-uploaded.png");
    for command in ["extract", "check"] {
        let run = worker.run(&[command, &missing]);
        run.assert_exit(1);
        assert_eq!(error_kind(&run.answer()), "not_found", "{command}");
    }
    worker.assert_temp_dir_empty();
}

// ---------------------------------------------------------------------------------------------
// No secret in anything a run prints.

/// Query values (raw and percent-decoded) and header values of what the worker sent through a
/// relay that are credentials: signatures and session tokens.
fn secrets_sent(relay: &Relay) -> Vec<String> {
    let mut secrets = Vec::new();
    for exchange in relay.exchanges() {
        for name in ["X-Amz-Signature", "X-Amz-Security-Token", "X-Goog-Signature"] {
            if let Some(value) = exchange.param(name) {
                let decoded = form_urlencoded::parse(format!("v={value}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                secrets.extend([value, decoded]);
            }
        }
        for line in exchange.sent().lines() {
            let Some((name, value)) = line.split_once(':') else { continue };
            match name.trim().to_ascii_lowercase().as_str() {
                "x-amz-security-token" => secrets.push(value.trim().to_owned()),
                "authorization" => {
                    secrets.extend(value.split("Signature=").nth(1).map(|s| s.trim().to_owned()))
                }
                _ => {}
            }
        }
    }
    secrets.retain(|s| s.len() >= 16);
    secrets
}

/// Issue 3: "a test that greps every log line and error of a whole run for the signature:
/// none". Every command but `sign` (whose answer IS a URL), on success and failure paths, at
/// `RUST_LOG=trace` with backtraces on: neither stdout nor stderr holds a signature or token
/// parameter, the worker's own secret keys, the session keys moto handed out, or any signature
/// or session token the relays saw the worker send.
#[test]
fn no_output_of_a_whole_run_holds_a_signature_or_a_secret() {
    let seaweed = Seaweed::connect();
    let object = seaweed_fixture(&seaweed, "secrets", PNG);
    let missing = format!("{object}.missing");
    let (role, noget) = (peer("S3_ROLE_ARN"), peer("S3_NOGET_ROLE_ARN"));
    let s3_relay = Relay::start(&peer("S3_ENDPOINT"), Relaying::AsIs);
    let gcs_endpoint = peer("GCS_ENDPOINT");
    let gcs_object = gcs_fixture(&gcs_endpoint);
    let gcs_relay = Relay::start(&gcs_endpoint, Relaying::RewritingHost);
    let traced = |worker: Worker| worker.with("RUST_LOG", "trace").with("RUST_BACKTRACE", "full");
    let s3 = traced(Worker::seaweed_at(&s3_relay.endpoint, &peer("STS_ENDPOINT")));
    let moto = traced(Worker::moto());
    let wrong_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGSECRET";
    let impostor = traced(Worker::moto().with("AWS_SECRET_ACCESS_KEY", wrong_secret));
    let gcs = traced(Worker::gcs_at(&gcs_relay.endpoint));
    let (moto_role, moto_external_id) = (peer("MOTO_ROLE_ARN"), peer("MOTO_EXTERNAL_ID"));
    let moto_object = format!("s3://{}/any.png", unique("customer"));

    let mut runs = Vec::new();
    for command in ["extract", "check"] {
        // SeaweedFS grants sessions without the ExternalId, which `check` warns of: exit 1.
        let readable = if command == "check" { 1 } else { 0 };
        runs.push((readable, s3.run(&s3_args(command, &object, &role, EXTERNAL_ID))));
        runs.push((1, s3.run(&s3_args(command, &object, &noget, EXTERNAL_ID))));
        runs.push((1, s3.run(&s3_args(command, &missing, &role, EXTERNAL_ID))));
        runs.push((1, s3.run(&[command, &object, "--role-arn", &role])));
        runs.push((2, s3.run(&[command, &object])));
        runs.push((1, moto.run(&s3_args(command, &moto_object, &moto_role, "wrong"))));
        runs.push((1, impostor.run(&s3_args(command, &moto_object, &moto_role, &moto_external_id))));
        runs.push((0, gcs.run(&[command, &gcs_object])));
        runs.push((1, gcs.run(&[command, &format!("{gcs_object}.missing")])));
    }
    let opened = moto.run(&s3_args("check", &moto_object, &moto_role, &moto_external_id));
    // The job's session and `check`'s two probes (without ExternalId, without session policy).
    let sessions: Vec<Value> = ["", "-no-external-id", "-scope"]
        .iter()
        .map(|probe| moto_assumed_role(&format!("asset-worker-check-{}{probe}", opened.pid)))
        .collect();
    runs.push((1, opened));
    for (code, run) in &runs {
        run.assert_exit(*code);
    }

    let mut secrets =
        vec![peer("S3_ADMIN_SECRET_ACCESS_KEY"), peer("MOTO_SECRET_ACCESS_KEY"), wrong_secret.to_owned()];
    for session in &sessions {
        for field in ["secret_access_key", "session_token"] {
            secrets.push(session[field].as_str().expect("moto shows the session's keys").to_owned());
        }
    }
    let (s3_sent, gcs_sent) = (secrets_sent(&s3_relay), secrets_sent(&gcs_relay));
    assert!(s3_sent.len() >= 4 && !gcs_sent.is_empty(), "the relays saw signed requests");
    secrets.extend(s3_sent.into_iter().chain(gcs_sent));
    let key: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join(GCS_KEY_FILE)).expect("the key"))
            .expect("JSON");
    let private_key = key["private_key"].as_str().expect("a private key");
    secrets.extend(private_key.lines().filter(|line| !line.starts_with("-----")).map(str::to_owned));

    for (_, run) in &runs {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            let lower = text.to_ascii_lowercase();
            for name in ["x-amz-signature", "x-goog-signature", "x-amz-security-token", "private key"] {
                assert!(!lower.contains(name), "{name} in the {stream} of a run:\n{text}");
            }
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "a secret in the {stream} of a run:\n{text}");
            }
        }
    }
}
