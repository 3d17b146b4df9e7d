//! The queue worker against the real RabbitMQ (127.0.0.1:5672, or ASSET_WORKER_AMQP_URL):
//! each test has its own queue prefix, runs the real binary (`run`, `enqueue`, `results`)
//! over the local provider on `fixtures/`, and deletes its queues at the end.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::Value;

use super::{fixture_files, root};

const AMQP_DEFAULT: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// One test's queue names, deleted when the test ends (passed or not).
pub struct Prefix {
    pub name: String,
    /// The worker's temp dir and log files.
    pub dir: tempfile::TempDir,
    /// The broker of every command, when not the default one (a test's own vhost).
    amqp_url: Option<String>,
}

impl Prefix {
    pub fn new(test: &str) -> Prefix {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        Prefix {
            name: format!("test-{test}-{}-{nanos:x}", std::process::id()),
            dir: tempfile::tempdir().expect("a temp dir"),
            amqp_url: None,
        }
    }

    /// A prefix whose commands all use `amqp_url` (a vhost of the test's own).
    pub fn on_broker(test: &str, amqp_url: String) -> Prefix {
        let mut prefix = Prefix::new(test);
        prefix.amqp_url = Some(amqp_url);
        prefix
    }

    /// The broker of this prefix's commands.
    pub fn amqp_url(&self) -> String {
        self.amqp_url.clone().unwrap_or_else(default_amqp_url)
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.dir.path().join("temp")
    }

    /// A command of the binary with this prefix's settings.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_asset-worker")), args)
    }

    /// A command of `exe` (the binary, or a copy of it) with this prefix's settings.
    fn command_of(&self, exe: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(exe);
        if let Some(url) = &self.amqp_url {
            command.env("ASSET_WORKER_AMQP_URL", url);
        }
        command
            .args(args)
            .current_dir(root())
            .env("ASSET_WORKER_QUEUE_PREFIX", &self.name)
            .env("ASSET_WORKER_LOCAL_ROOT", root().join("fixtures"))
            .env("ASSET_WORKER_TEMP_DIR", self.temp_dir())
            .env("ASSET_WORKER_CONCURRENCY", "2")
            .env("ASSET_WORKER_DELIVERY_LIMIT", "5")
            // Every worker of every test on its own free port.
            .env("ASSET_WORKER_HTTP_ADDR", "127.0.0.1:0");
        command
    }

    /// Starts `asset-worker run`; its log goes to `worker-N.log` in the test's dir.
    pub fn spawn_worker(&self, n: usize) -> Worker {
        self.spawn_worker_with(n, &[])
    }

    /// Starts `asset-worker run` with extra settings.
    pub fn spawn_worker_with(&self, n: usize, env: &[(&str, &str)]) -> Worker {
        self.spawn_worker_of(Path::new(env!("CARGO_BIN_EXE_asset-worker")), n, env)
    }

    /// Starts `exe run` (a copy of the binary the test may replace) with extra settings.
    pub fn spawn_worker_of(&self, exe: &Path, n: usize, env: &[(&str, &str)]) -> Worker {
        let log_path = self.dir.path().join(format!("worker-{n}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = self
            .command_of(exe, &["run"])
            .envs(env.iter().copied())
            // A group of its own, as a shell gives a foreground job: tests can signal the
            // whole group, as a Ctrl-C in a terminal does.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the worker starts");
        Worker { child, log_path }
    }

    /// `enqueue --local KEY…`: the job ids, in key order.
    pub fn enqueue_local(&self, keys: &[&str]) -> Vec<String> {
        let mut args = vec!["enqueue", "--local"];
        args.extend_from_slice(keys);
        let output = self.command(&args).output().unwrap();
        assert!(output.status.success(), "enqueue: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect()
    }

    /// `enqueue` with raw job lines on stdin.
    pub fn enqueue_raw(&self, lines: &[&str]) {
        let mut child =
            self.command(&["enqueue"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(lines.join("\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "enqueue of raw lines failed");
    }

    /// `results --count N --timeout S`: the results that arrived (fewer if it timed out).
    pub fn results(&self, count: usize, timeout_seconds: u64) -> Vec<Value> {
        let output = self
            .command(&["results", "--count", &count.to_string(), "--timeout", &timeout_seconds.to_string()])
            .output()
            .unwrap();
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
            .collect()
    }

    /// Ready messages in one of this prefix's queues.
    pub fn message_count(&self, suffix: &str) -> u32 {
        let queue = format!("{}.{suffix}", self.name);
        broker_at(&self.amqp_url(), |channel| async move {
            let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            Ok(channel
                .queue_declare(queue.as_str().into(), options, FieldTable::default())
                .await?
                .message_count())
        })
    }

    /// No fetched bytes left behind.
    pub fn assert_temp_dir_empty(&self) {
        let private = self.temp_dir().join("asset-worker-fetch");
        let left: Vec<_> =
            std::fs::read_dir(&private).map(|d| d.filter_map(Result::ok).collect()).unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", private.display());
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        if self.amqp_url.is_some() {
            return; // the test's own vhost goes, and its queues with it
        }
        let name = self.name.clone();
        // The retry queues of the default delays and of the delays tests set (a queue that
        // was never declared is deleted without complaint).
        let mut retry_delays = asset_worker::config::Settings::default().retry_delays_seconds;
        retry_delays.extend([1, 2]);
        broker(|channel| async move {
            let retry_queues = retry_delays.iter().map(|delay| format!("retry.{delay}s"));
            for suffix in ["process", "process.dead", "results", "sign"]
                .map(String::from)
                .into_iter()
                .chain(retry_queues)
            {
                let queue = format!("{name}.{suffix}");
                channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
            }
            for suffix in ["dlx", "results"] {
                let exchange = format!("{name}.{suffix}");
                channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await?;
            }
            Ok(())
        });
    }
}

/// A running worker, killed if the test ends without stopping it.
pub struct Worker {
    pub child: Child,
    log_path: PathBuf,
}

impl Worker {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most `limit`) for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        super::send_signal("TERM", &self.child.id().to_string());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "the worker did not stop within {limit:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared test broker: ASSET_WORKER_AMQP_URL, or 127.0.0.1:5672.
fn default_amqp_url() -> String {
    std::env::var("ASSET_WORKER_AMQP_URL").unwrap_or_else(|_| AMQP_DEFAULT.into())
}

/// Runs `work` on a fresh channel to the test broker.
pub fn broker<T, F, Fut>(work: F) -> T
where
    F: FnOnce(lapin::Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<T>>,
{
    broker_at(&default_amqp_url(), work)
}

/// Runs `work` on a fresh channel to the broker at `url` (a test's own vhost or node).
pub fn broker_at<T, F, Fut>(url: &str, work: F) -> T
where
    F: FnOnce(lapin::Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let connection =
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await.unwrap_or_else(
                |e| panic!("RabbitMQ at {url} (DESIGN §6: start it with `rabbitmq-server -detached`): {e}"),
            );
        let answer = work(connection.create_channel().await.unwrap()).await.expect("the broker answers");
        let _ = connection.close(200, "test done".into()).await;
        answer
    })
}

/// The key of the text file of [`slow_jobs_root`].
pub const SLOW_KEY: &str = "slow.txt";

/// Writes `mib` MiB of English-like text to `path`: every byte is counted, so reading it
/// takes time in proportion (about 0.1 s per 10 MiB in a debug build).
pub fn write_text(path: &Path, mib: usize) {
    let line = "alpha beta gamma delta omega ".repeat(8) + "\n";
    let block = line.repeat((1 << 20) / line.len());
    let mut text = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..mib {
        std::io::Write::write_all(&mut text, block.as_bytes()).unwrap();
    }
}

/// Writes a PDF the parser must hold in memory whole (96 MiB: over a 128 MiB address-space cap
/// with the parser's own copies): damaged, its `startxref` pointing at the header, so it
/// cannot be read by range and lopdf rebuilds its cross-reference by scanning all of it.
pub fn write_huge_pdf(path: &Path) {
    let body = vec![b' '; 96 << 20];
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        [format!("<< /Length {} >>\nstream\n", body.len()).as_bytes(), &body, b"\nendstream"].concat(),
    ];
    write_pdf(path, &objects);
    let mut pdf = std::fs::read(path).unwrap();
    let at = pdf.windows(9).rposition(|window| window == b"startxref").unwrap();
    pdf.truncate(at);
    pdf.extend_from_slice(b"startxref\n0\n%%EOF\n");
    std::fs::write(path, pdf).unwrap();
}

/// Writes a PDF of `objects` (numbered from 1; the first is the catalog) with its xref table.
pub fn write_pdf(path: &Path, objects: &[Vec<u8>]) {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (number, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n", number + 1).as_bytes());
        pdf.extend(object);
        pdf.extend(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        pdf.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    std::fs::write(path, pdf).unwrap();
}
/// A local root under the test's dir holding one text file that takes a few hundred
/// milliseconds to read: jobs slow enough that a fault lands mid-batch. Returns the root.
pub fn slow_jobs_root(prefix: &Prefix) -> String {
    let root = prefix.dir.path().join("assets");
    std::fs::create_dir_all(&root).unwrap();
    write_text(&root.join("slow.txt"), 24);
    root.display().to_string()
}

/// The reviewed answer of `extract` for a fixture (path relative to the root).
pub fn expected(fixture: &Path) -> Value {
    let relative = fixture.strip_prefix("fixtures").unwrap();
    let path = root().join("fixtures/expected").join(format!("{}.json", relative.display()));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Results by job id; each id must appear once.
pub fn by_job_id(results: Vec<Value>) -> HashMap<String, Value> {
    let mut map = HashMap::new();
    for result in results {
        let id = result["job_id"].as_str().expect("a job_id").to_owned();
        assert!(map.insert(id.clone(), result).is_none(), "two results for job {id}");
    }
    map
}

#[test]
fn every_job_gets_exactly_one_correct_result() {
    let prefix = Prefix::new("batch");
    let mut fixtures = Vec::new();
    for kind in ["image", "video", "audio", "pdf", "dicom", "text"] {
        let of_kind: Vec<PathBuf> = fixture_files()
            .into_iter()
            .filter(|f| f.starts_with(format!("fixtures/{kind}")))
            .take(3)
            .collect();
        assert!(!of_kind.is_empty(), "no {kind} fixtures");
        fixtures.extend(of_kind);
    }
    let keys: Vec<String> =
        fixtures.iter().map(|f| f.strip_prefix("fixtures").unwrap().display().to_string()).collect();
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let ids = prefix.enqueue_local(&key_refs);
    assert_eq!(ids.len(), fixtures.len());
    let worker = prefix.spawn_worker(1);

    let results = by_job_id(prefix.results(fixtures.len(), 120));
    assert_eq!(results.len(), fixtures.len(), "worker log:\n{}", worker.log());
    for ((id, fixture), key) in ids.iter().zip(&fixtures).zip(&keys) {
        let result = &results[id];
        let expected = expected(fixture);
        assert_eq!(result["asset_id"], key.as_str());
        assert_eq!(result["schema"], 1);
        for field in ["status", "data_type", "mime_type", "size_bytes", "metadata", "error"] {
            assert_eq!(result[field], expected[field], "{field} of {key}");
        }
        assert!(result["processed_at"].is_string() && result["worker"]["version"].is_string());
        assert!(result["stats"]["total_ms"].is_u64());
    }
    assert!(prefix.results(1, 1).is_empty(), "no result beyond one per job");
    prefix.assert_temp_dir_empty();
}

#[test]
fn bad_messages_are_dead_lettered_and_the_worker_keeps_consuming() {
    let prefix = Prefix::new("poison");
    let long_id_job = format!(
        r#"{{"schema":1,"job_id":"{}","asset_id":"a","source":{{"provider":"local","key":"text/x.txt"}}}}"#,
        "j".repeat(300)
    );
    prefix.enqueue_raw(&[
        "{this is not json",
        r#"{"schema":2,"job_id":"p-schema","asset_id":"a","source":{"provider":"local","key":"text/x.txt"}}"#,
        r#"{"schema":1,"job_id":"p-ftp","asset_id":"a","source":{"provider":"ftp","key":"k"}}"#,
        r#"{"schema":1,"job_id":"p-s3","asset_id":"a","source":{"provider":"s3","region":"eu-central-1","bucket":"b","key":"k","role_arn":"arn:aws:iam::123456789012:role/R"}}"#,
        r#"{"schema":1,"job_id":"p-key","asset_id":"a","source":{"provider":"local","key":"text/x\u0000.txt"}}"#,
        // A job id longer than a result's message_id can carry: no result can name it.
        &long_id_job,
    ]);
    let text = fixture_files().into_iter().find(|f| f.starts_with("fixtures/text")).unwrap();
    let good_key = text.strip_prefix("fixtures").unwrap().display().to_string();
    let good = prefix.enqueue_local(&[&good_key]).remove(0);
    let worker = prefix.spawn_worker(1);

    let results = by_job_id(prefix.results(5, 60));
    assert_eq!(results.len(), 5, "four invalid_job results and the good one; log:\n{}", worker.log());
    for id in ["p-schema", "p-ftp", "p-s3", "p-key"] {
        assert_eq!(results[id]["status"], "failed");
        assert_eq!(results[id]["error"]["kind"], "invalid_job", "{id}: {}", results[id]);
        assert_eq!(results[id]["error"]["retryable"], false);
    }
    assert_eq!(results[&good]["status"], "succeeded", "{}", results[&good]);
    assert!(results[&good]["stats"]["total_ms"].is_u64());
    // Dead-lettering is asynchronous in the broker: wait for all six to land.
    let started = Instant::now();
    while prefix.message_count("process.dead") < 6 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(prefix.message_count("process.dead"), 6, "every bad message is dead-lettered");
    let log = worker.log();
    assert!(
        log.contains("invalid job, dead-lettered") && log.contains("job_id must be 1 to 255 bytes"),
        "{log}"
    );
    assert_eq!(prefix.message_count("process"), 0);
}

#[test]
fn a_missing_object_is_answered_once_as_not_found() {
    let prefix = Prefix::new("missing");
    let id = prefix.enqueue_local(&["image/no-such-file.png"]).remove(0);
    let worker = prefix.spawn_worker(1);
    let results = prefix.results(1, 60);
    assert_eq!(results.len(), 1, "log:\n{}", worker.log());
    assert_eq!(results[0]["job_id"], id.as_str());
    assert_eq!(results[0]["status"], "failed");
    assert_eq!(results[0]["error"]["kind"], "not_found", "{}", results[0]);
    assert_eq!(results[0]["error"]["retryable"], false);
    // Acked once: not redelivered, not dead-lettered, no second answer.
    assert!(prefix.results(1, 2).is_empty());
    assert_eq!(prefix.message_count("process"), 0);
    assert_eq!(prefix.message_count("process.dead"), 0);
}

#[test]
fn a_job_that_asks_for_counted_frames_gets_them() {
    let prefix = Prefix::new("count");
    let job = |id: &str, options: &str| {
        format!(
            r#"{{"schema":1,"job_id":"{id}","asset_id":"a","source":{{"provider":"local","key":"video/mkv_h264_aac.mkv"}}{options}}}"#
        )
    };
    prefix.enqueue_raw(&[
        &job("c-counted", r#","options":{"count_frames":true}"#),
        &job("c-plain", ""),
        &job("c-unknown", r#","options":{"count_everything":true}"#),
    ]);
    let worker = prefix.spawn_worker(1);
    let results = by_job_id(prefix.results(3, 60));
    assert_eq!(results.len(), 3, "log:\n{}", worker.log());
    let probe: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/reference/video/mkv_h264_aac.mkv.ffprobe.json"))
            .unwrap(),
    )
    .unwrap();
    let packets = probe["streams"][0]["nb_read_packets"].as_str().unwrap().parse::<u64>().unwrap();
    let counted = &results["c-counted"]["metadata"];
    assert_eq!(counted["frame_count"].as_u64(), Some(packets), "{counted}");
    assert_eq!(counted["frame_rate_mode"], "constant");
    assert!(results["c-plain"]["metadata"]["frame_count"].is_null(), "{}", results["c-plain"]);
    assert_eq!(results["c-unknown"]["error"]["kind"], "invalid_job", "{}", results["c-unknown"]);
}

#[test]
fn sigterm_mid_batch_finishes_in_flight_jobs_and_loses_none() {
    let (results, log) = stop_mid_batch("sigterm", 30);
    assert!(!log.contains("handed back"), "30 s are enough to finish in-flight jobs:\n{log}");
    // The job in flight at the signal was finished and answered while draining.
    let after_signal = log.split_once("asked to stop").map_or("", |(_, after)| after);
    assert!(after_signal.contains("job done"), "no job finished after SIGTERM:\n{log}");
    let ids = results.iter().map(|(id, answers)| (id, answers.len()));
    let repeated: Vec<_> = ids.filter(|(_, n)| *n > 1).collect();
    assert!(repeated.is_empty(), "in-flight jobs were finished, so none is answered twice: {repeated:?}");
}

/// With no drain time, in-flight jobs are abandoned and nacked back: the second worker answers
/// them. A job abandoned between its confirmed result and its ack may be answered twice (same
/// job id): at-least-once, never lost.
#[test]
fn past_the_drain_deadline_unfinished_jobs_go_back_to_the_queue() {
    let (_, log) = stop_mid_batch("drain0", 0);
    assert!(log.contains("jobs handed back"), "a job was in flight at SIGTERM and was nacked back:\n{log}");
}

/// Enqueues a batch, stops the first worker with SIGTERM after its first result, lets a second
/// worker finish; asserts exit 0 and that every job was answered (and succeeded). Returns the
/// answers by job id.
fn stop_mid_batch(test: &str, drain_seconds: u64) -> (HashMap<String, Vec<Value>>, String) {
    let prefix = Prefix::new(test);
    // Jobs of a few hundred milliseconds each, so that some are in flight when SIGTERM comes.
    let root = slow_jobs_root(&prefix);
    const JOBS: usize = 20;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);

    let drain = drain_seconds.to_string();
    let mut first = prefix.spawn_worker_with(
        1,
        &[("ASSET_WORKER_DRAIN_TIMEOUT_SECONDS", &drain), ("ASSET_WORKER_LOCAL_ROOT", &root)],
    );
    let mut results = prefix.results(1, 60);
    assert_eq!(results.len(), 1, "log:\n{}", first.log());
    // A job in flight at the signal: a parser child of this worker is using CPU on it now
    // (its CPU time grows; a warm child waiting for work uses none).
    let worker_pid = first.child.id();
    let at_work = super::wait_until(Duration::from_secs(30), || {
        super::extraction_children(|child| super::parent_of(child) == Some(worker_pid)).into_iter().any(
            |child| {
                let before = super::cpu_ticks(child);
                std::thread::sleep(Duration::from_millis(30));
                super::cpu_ticks(child) > before
            },
        )
    });
    assert!(at_work, "no job in flight to prove anything with:\n{}", first.log());
    let status = first.terminate(Duration::from_secs(drain_seconds + 10));
    assert!(status.success(), "exit status {status:?}; log:\n{}", first.log());
    // What the first worker finished while draining.
    results.extend(prefix.results(JOBS, 2));
    assert!(results.len() < JOBS, "the batch ended before SIGTERM: nothing was proven");
    let log = first.log();

    let second = prefix.spawn_worker_with(2, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let started = Instant::now();
    let mut answers: HashMap<String, Vec<Value>> = HashMap::new();
    loop {
        for result in results.drain(..) {
            answers.entry(result["job_id"].as_str().unwrap().to_owned()).or_default().push(result);
        }
        if answers.len() == JOBS || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        results = prefix.results(JOBS - answers.len(), 5);
    }
    for result in prefix.results(JOBS, 2) {
        answers.entry(result["job_id"].as_str().unwrap().to_owned()).or_default().push(result);
    }
    assert_eq!(answers.len(), JOBS, "every job answered; logs:\n{log}\n{}", second.log());
    for id in &ids {
        assert!(answers[id].iter().all(|r| r["status"] == "succeeded"), "{:?}", answers[id]);
    }
    (answers, log)
}

/// An unreachable STS is `transient`: each attempt but the last goes to the retry queue of
/// its delay (1 s, then 2 s for every later one) and comes back when it expires; the last
/// (the delivery limit, 5) is answered once, failed with `retryable: true` and its attempt,
/// and acked (not dead-lettered). Nothing is left in any queue.
#[test]
fn transient_failures_are_retried_after_growing_delays_then_answered_once() {
    let prefix = Prefix::new("transient");
    prefix.enqueue_raw(&[r#"{"schema":1,"job_id":"t-sts-down","asset_id":"a","source":{"provider":"s3","region":"eu-central-1","bucket":"customer-bucket","key":"k","role_arn":"arn:aws:iam::123456789012:role/R","external_id":"x"}}"#]);
    let worker = prefix.spawn_worker_with(
        1,
        &[
            // Nothing listens on port 1: every AssumeRole fails to connect.
            ("ASSET_WORKER_STS_ENDPOINT", "http://127.0.0.1:1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("ASSET_WORKER_RETRY_DELAYS_SECONDS", "[1,2]"),
        ],
    );
    let results = prefix.results(1, 90);
    assert_eq!(results.len(), 1, "log:\n{}", worker.log());
    let error = &results[0]["error"];
    assert_eq!(error["kind"], "transient", "{}", results[0]);
    assert_eq!(error["retryable"], true);
    assert!(error["message"].as_str().unwrap().contains("gave up after 5 attempts"), "{error}");
    assert_eq!(results[0]["attempt"], 5, "{}", results[0]);
    // Four retries, each logged with its delay, each attempt at least that delay after the
    // one before (the broker holds the job for the retry queue's TTL).
    let log = worker.log();
    let retries: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "transient failure, retried later")
        .collect();
    let delays: Vec<u64> = retries.iter().map(|line| line["retry_in_seconds"].as_u64().unwrap()).collect();
    assert_eq!(delays, [1, 2, 2, 2], "{log}");
    let attempts: Vec<u64> = retries.iter().map(|line| line["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 2, 3, 4], "{log}");
    let at = |line: &Value| humantime::parse_rfc3339(line["timestamp"].as_str().unwrap()).unwrap();
    for pair in retries.windows(2) {
        let waited = at(&pair[1]).duration_since(at(&pair[0])).unwrap();
        let delay = Duration::from_secs(pair[0]["retry_in_seconds"].as_u64().unwrap());
        assert!(waited >= delay, "attempt {} came {waited:?} after a {delay:?} delay", pair[1]["attempt"]);
    }
    assert!(prefix.results(1, 2).is_empty(), "answered once");
    assert_eq!(prefix.message_count("process"), 0);
    assert_eq!(prefix.message_count("process.dead"), 0, "acked after the answer, not dead-lettered");
    for delay in ["1s", "2s"] {
        assert_eq!(prefix.message_count(&format!("retry.{delay}")), 0);
    }
}

/// The retry budget of the ack policy rests on how the broker counts: the worker answers a
/// transient failure on the delivery whose `x-delivery-count` is `limit - 1`, so that
/// delivery must happen before the broker dead-letters the job.
#[test]
fn the_broker_delivers_the_last_attempt_the_worker_counts_on() {
    let prefix = Prefix::new("limit");
    prefix.enqueue_raw(&[
        r#"{"schema":1,"job_id":"count-me","asset_id":"a","source":{"provider":"local","key":"k"}}"#,
    ]);
    let queue = format!("{}.process", prefix.name);
    let counts = broker(|channel| async move {
        let mut counts = Vec::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let options = lapin::options::BasicGetOptions::default();
            let Some(message) = channel.basic_get(queue.as_str().into(), options).await? else {
                if !counts.is_empty()
                    && channel
                        .queue_declare(
                            queue.as_str().into(),
                            QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                            FieldTable::default(),
                        )
                        .await?
                        .message_count()
                        == 0
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let count = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count").and_then(|v| v.as_long_long_int()))
                .unwrap_or(0);
            counts.push(count);
            let requeue = lapin::options::BasicNackOptions { requeue: true, ..Default::default() };
            message.delivery.acker.nack(requeue).await?;
        }
        Ok(counts)
    });
    // RabbitMQ 3.10 delivers limit + 1 times (counts 0..=5); the worker gives up on the 5th.
    assert!(counts.len() >= 5, "the job is delivered at least `limit` times: {counts:?}");
    assert_eq!(counts[..5], [0, 1, 2, 3, 4], "each return is counted");
    let started = Instant::now();
    while prefix.message_count("process.dead") < 1 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(prefix.message_count("process.dead"), 1, "dead-lettered once the budget is spent");
}

/// Publishes `job` to the prefix's process queue with `properties`, then waits (60 s at most)
/// for one message on `queue`: what a backend calling the worker sees.
fn publish_and_take(
    prefix: &Prefix,
    job: &Value,
    properties: lapin::BasicProperties,
    queue: &str,
) -> Option<lapin::message::Delivery> {
    use lapin::options::{BasicGetOptions, BasicPublishOptions};
    let (process, queue, body) = (format!("{}.process", prefix.name), queue.to_owned(), job.to_string());
    broker_at(&prefix.amqp_url(), |channel| async move {
        let options = BasicPublishOptions::default();
        channel
            .basic_publish("".into(), process.as_str().into(), options, body.as_bytes(), properties)
            .await?
            .await?;
        let started = Instant::now();
        loop {
            if let Some(message) =
                channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await?
            {
                return Ok(Some(message.delivery));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A worker that says it is consuming.
fn consuming_worker(prefix: &Prefix) -> Worker {
    let worker = prefix.spawn_worker(1);
    let consuming = super::wait_until(Duration::from_secs(30), || worker.log().contains("consuming"));
    assert!(consuming, "{}", worker.log());
    worker
}

fn local_job(job_id: &str) -> Value {
    serde_json::json!({"schema": 1, "job_id": job_id, "asset_id": "a",
        "source": {"provider": "local", "key": "image/png_rgb8.png"}})
}

/// The backend's trace runs through the worker (W3C Trace Context, OpenTelemetry's messaging
/// conventions): a job published with `traceparent` and `tracestate` headers is logged with its
/// trace id, and its result comes back in the same trace, as a child of the worker's own span,
/// with the `tracestate` passed on.
#[test]
fn a_jobs_trace_is_logged_and_continued_on_its_result() {
    use lapin::types::{AMQPValue, LongString};

    let prefix = Prefix::new("trace");
    let worker = consuming_worker(&prefix);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let job_parent = "00f067aa0ba902b7";
    let mut headers = FieldTable::default();
    let parent = format!("00-{trace_id}-{job_parent}-01");
    headers.insert("traceparent".into(), AMQPValue::LongString(LongString::from(parent)));
    headers.insert("tracestate".into(), AMQPValue::LongString(LongString::from("backend=7")));
    let properties = lapin::BasicProperties::default().with_headers(headers);
    let results = format!("{}.results", prefix.name);
    let result = publish_and_take(&prefix, &local_job("traced-1"), properties, &results)
        .unwrap_or_else(|| panic!("no result:\n{}", worker.log()));
    let body: Value = serde_json::from_slice(&result.data).unwrap();
    assert_eq!(
        (body["job_id"].as_str(), body["status"].as_str()),
        (Some("traced-1"), Some("succeeded")),
        "{body}"
    );
    let header = |name: &str| {
        let headers = result.properties.headers().clone().unwrap_or_default();
        match headers.inner().get(name) {
            Some(AMQPValue::LongString(text)) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            other => panic!("result header {name}: {other:?}"),
        }
    };
    let traceparent = header("traceparent");
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!((fields[0], fields[1], fields[3]), ("00", trace_id, "01"), "{traceparent}");
    assert!(fields[2].len() == 16 && fields[2] != job_parent, "the worker's own span: {traceparent}");
    assert_eq!(header("tracestate"), "backend=7");
    let done = worker
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "job done")
        .unwrap_or_else(|| panic!("{}", worker.log()));
    assert_eq!(done["span"]["trace_id"], trace_id, "{done}");
}

/// A job's `reply_to`: the caller's queue gets the answer (with its `correlation_id`); a queue
/// that no longer exists (the caller went away) sends the answer to the results exchange,
/// naming the queue, and the job is acked rather than sent round until the delivery limit
/// dead-letters it unanswered; a queue outside `ASSET_WORKER_REPLY_TO_PREFIX` (here the
/// worker's own process queue) is refused as `invalid_job` and nothing is published there.
#[test]
fn a_reply_goes_to_its_caller_or_to_the_results_exchange_saying_why() {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};

    let prefix = Prefix::new("replyto");
    let worker = consuming_worker(&prefix);
    let results = format!("{}.results", prefix.name);
    let caller = format!("{}.reply.caller-1", prefix.name);
    let declared = caller.clone();
    broker_at(&prefix.amqp_url(), |channel| async move {
        channel
            .queue_declare(declared.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
    });
    let reply = |job_id: &str, reply_to: &str, queue: &str| {
        let properties = lapin::BasicProperties::default()
            .with_reply_to(reply_to.into())
            .with_correlation_id(job_id.into());
        let message = publish_and_take(&prefix, &local_job(job_id), properties, queue)
            .unwrap_or_else(|| panic!("nothing on {queue} for {job_id}:\n{}", worker.log()));
        let body: Value = serde_json::from_slice(&message.data).unwrap();
        assert_eq!(body["job_id"], job_id, "{body}");
        (body, message.properties)
    };

    let (answer, properties) = reply("to-caller", &caller, &caller);
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(properties.correlation_id().as_ref().map(|id| id.as_str()), Some("to-caller"));
    assert!(answer.get("reply_to_unroutable").is_none(), "{answer}");

    let gone = format!("{}.reply.gone", prefix.name);
    let (answer, _) = reply("caller-gone", &gone, &results);
    assert_eq!(
        (answer["status"].as_str(), answer["reply_to_unroutable"].as_str()),
        (Some("succeeded"), Some(gone.as_str())),
        "{answer}"
    );

    let process = format!("{}.process", prefix.name);
    let (answer, _) = reply("into-the-process-queue", &process, &results);
    assert_eq!(answer["error"]["kind"], "invalid_job", "{answer}");
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("ASSET_WORKER_REPLY_TO_PREFIX"),
        "{answer}"
    );
    assert_eq!(prefix.message_count("process.dead"), 1, "the refused job is dead-lettered");
    assert_eq!(prefix.message_count("process"), 0, "and nothing was published into the process queue");
    assert!(prefix.results(1, 2).is_empty(), "one answer each:\n{}", worker.log());
    broker_at(&prefix.amqp_url(), |channel| async move {
        channel.queue_delete(caller.as_str().into(), QueueDeleteOptions::default()).await
    });
}

/// RabbitMQ's direct reply-to, as RPC backends use it: the job's answer reaches the caller's
/// channel once, and nowhere else (with `mandatory`, RabbitMQ 3.10 delivers such a message and
/// also returns it as unroutable, which once sent every answer a second time to the results
/// exchange as `reply_to_unroutable`).
#[test]
fn a_job_asked_through_direct_reply_to_is_answered_there_once() {
    use futures_lite::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions};

    let prefix = Prefix::new("direct-reply");
    let worker = consuming_worker(&prefix);
    let process = format!("{}.process", prefix.name);
    let body = local_job("direct-1").to_string();
    let answer = broker_at(&prefix.amqp_url(), |channel| async move {
        let options = BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() };
        let mut answers = channel
            .basic_consume("amq.rabbitmq.reply-to".into(), "test".into(), options, FieldTable::default())
            .await?;
        let properties = lapin::BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("direct-1".into());
        channel
            .basic_publish(
                "".into(),
                process.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await?
            .await?;
        match tokio::time::timeout(Duration::from_secs(60), answers.next()).await {
            Ok(Some(delivery)) => Ok(Some(delivery?)),
            _ => Ok(None),
        }
    })
    .unwrap_or_else(|| panic!("no answer on direct reply-to:\n{}", worker.log()));
    let result: Value = serde_json::from_slice(&answer.data).unwrap();
    assert_eq!((result["job_id"].as_str(), result["status"].as_str()), (Some("direct-1"), Some("succeeded")));
    assert_eq!(answer.properties.correlation_id().as_ref().map(|id| id.as_str()), Some("direct-1"));
    assert!(
        prefix.results(1, 3).is_empty(),
        "answered a second time on the results exchange:\n{}",
        worker.log()
    );
    assert!(!worker.log().contains("reply_to"), "{}", worker.log());
}
