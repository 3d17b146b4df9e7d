//! The queue worker under faults, against the real RabbitMQ: the broker dropping and refusing
//! it, `kill -9` mid-batch, two workers on one queue, hostile files in the sandbox, a job past
//! its deadline; and what operators watch (`/healthz`, `/readyz`, `/metrics`, JSON logs).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::queue::{Prefix, SLOW_KEY, Worker, by_job_id, slow_jobs_root, write_huge_pdf, write_text};
use super::{
    child_at_work, extraction_children, fixture_files, is_alive, marked_children, parent_of, send_signal,
    test_pool, wait_until,
};

/// Keys (relative to `fixtures/`) of the fixtures under `fixtures/{kind}`.
pub fn keys_of(kind: &str) -> Vec<String> {
    fixture_files()
        .into_iter()
        .filter(|f| f.starts_with(format!("fixtures/{kind}")))
        .map(|f| f.strip_prefix("fixtures").unwrap().display().to_string())
        .collect()
}

/// `count` keys, cycling through `pool`.
pub fn cycle(pool: &[String], count: usize) -> Vec<&str> {
    pool.iter().cycle().take(count).map(String::as_str).collect()
}

/// The address the worker serves health and metrics on (it binds port 0 in tests and logs it).
pub fn http_addr(worker: &Worker) -> String {
    let mut found = None;
    let logged = wait_until(Duration::from_secs(30), || {
        found = worker.log().lines().find_map(|line| {
            let line: Value = serde_json::from_str(line).ok()?;
            line["http_addr"].as_str().map(str::to_owned)
        });
        found.is_some()
    });
    assert!(logged, "the worker never logged its http_addr:\n{}", worker.log());
    found.unwrap()
}

/// GET `path` from the worker: status and body (status 0 if nothing answered).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    match client.get(format!("http://{addr}{path}")).send() {
        Ok(response) => (response.status().as_u16(), response.text().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

pub fn ready(addr: &str) -> u16 {
    get(addr, asset_worker::telemetry::READYZ_PATH).0
}

/// The value of one sample of a metric in Prometheus text, matched by name and labels (in
/// any order).
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        let all_match =
            labels.iter().all(|(key, value)| series_labels.contains(&format!("{key}=\"{value}\"")));
        (series_name == name && all_match).then(|| value.parse().ok()).flatten()
    })
}

/// Collects results, beginning with those `already` taken, until every id in `ids` has at
/// least one (or `limit` passes), then a little longer to catch duplicates. Answers by job id.
pub fn answers_for(
    prefix: &Prefix,
    ids: &[String],
    already: Vec<Value>,
    limit: Duration,
) -> HashMap<String, Vec<Value>> {
    let mut answers: HashMap<String, Vec<Value>> = HashMap::new();
    for result in already {
        answers.entry(result["job_id"].as_str().unwrap().to_owned()).or_default().push(result);
    }
    let started = Instant::now();
    let mut last_round = false;
    loop {
        let missing = ids.iter().filter(|id| !answers.contains_key(*id)).count();
        let timeout = if last_round { 2 } else { 5 };
        for result in prefix.results(missing.max(1), timeout) {
            answers.entry(result["job_id"].as_str().unwrap().to_owned()).or_default().push(result);
        }
        if last_round {
            return answers;
        }
        last_round = ids.iter().all(|id| answers.contains_key(id)) || started.elapsed() > limit;
    }
}

/// A RabbitMQ vhost of the test's own, deleted at the end: `close_all_connections -p` and
/// permission changes then touch no other test's connections.
struct Vhost {
    name: String,
}

impl Vhost {
    fn new(test: &str) -> Vhost {
        let name = super::peers::unique(test);
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Vhost { name };
        vhost.allow();
        vhost
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// guest may use the vhost.
    fn allow(&self) {
        rabbitmqctl(&["set_permissions", "-p", &self.name, "guest", ".*", ".*", ".*"]);
    }

    /// guest may no longer open connections to it: reconnecting fails until `allow`.
    fn refuse(&self) {
        rabbitmqctl(&["clear_permissions", "-p", &self.name, "guest"]);
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Some(ctl) = super::peers::rabbitmqctl() {
            let _ = Command::new(ctl).args(["delete_vhost", &self.name]).output();
        }
    }
}

fn rabbitmqctl(args: &[&str]) {
    let ctl = super::peers::rabbitmqctl().expect("rabbitmqctl (installed with rabbitmq-server)");
    let output = Command::new(ctl).args(args).output().expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn health_readiness_metrics_and_json_logs_tell_what_the_worker_does() {
    let prefix = Prefix::new("telemetry");
    let worker = prefix.spawn_worker(1);
    let addr = http_addr(&worker);
    assert_eq!(get(&addr, asset_worker::telemetry::HEALTHZ_PATH).0, 200);
    assert!(wait_until(Duration::from_secs(30), || ready(&addr) == 200), "never ready:\n{}", worker.log());
    // What the parser children run under, as they reported it (this machine's kernel has both).
    let (_, body) = get(&addr, asset_worker::telemetry::READYZ_PATH);
    assert!(body.contains("landlock full") && body.contains("seccomp on"), "{body}");

    let images = keys_of("image");
    let mut keys = cycle(&images, 3);
    keys.push("image/no-such-file.png");
    let ids = prefix.enqueue_local(&keys);
    let results = by_job_id(prefix.results(4, 60));
    assert_eq!(results.len(), 4, "{}", worker.log());

    let (status, metrics) = get(&addr, asset_worker::telemetry::METRICS_PATH);
    assert_eq!(status, 200);
    use asset_worker::telemetry::metric;
    let jobs = |outcome, data_type| {
        sample(&metrics, metric::JOBS, &[("outcome", outcome), ("data_type", data_type)]).unwrap_or(0.0)
    };
    assert_eq!(jobs("succeeded", "image"), 3.0, "{metrics}");
    assert_eq!(jobs("not_found", "unknown"), 1.0, "{metrics}");
    assert_eq!(sample(&metrics, metric::DELIVERIES, &[("settlement", "ack")]), Some(4.0), "{metrics}");
    assert_eq!(sample(&metrics, metric::IN_FLIGHT, &[]), Some(0.0), "{metrics}");
    assert_eq!(sample(&metrics, metric::READY, &[]), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, metric::RECONNECTS, &[]), Some(0.0), "{metrics}");
    for protection in ["no_new_privs", "not_dumpable", "no_core_files", "landlock", "seccomp"] {
        let holds = sample(&metrics, metric::CHILD_PROTECTION, &[("protection", protection)]);
        assert_eq!(holds, Some(1.0), "{protection}: {metrics}");
    }
    assert!(
        sample(&metrics, metric::CHILDREN_STARTED, &[]).is_some_and(|started| started >= 1.0),
        "{metrics}"
    );
    let total_count = format!("{}_count", metric::STAGE_SECONDS);
    assert_eq!(sample(&metrics, &total_count, &[("stage", "total")]), Some(4.0), "{metrics}");
    // Bounded labels: no job id, key or path is a label value.
    for id in &ids {
        assert!(!metrics.contains(id.as_str()), "job id {id} in the metrics");
    }
    assert!(!metrics.contains("no-such-file"), "an asset key in the metrics");

    // Every log line is one JSON object; every line about a job carries its ids.
    let log = worker.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"))
        })
        .collect();
    let done: Vec<&Value> = lines.iter().filter(|line| line["message"] == "job done").collect();
    assert_eq!(done.len(), 4, "{log}");
    for (line, id) in done.iter().zip(&ids) {
        assert!(ids.contains(&line["span"]["job_id"].as_str().unwrap().to_owned()), "{line}");
        assert!(line["span"]["asset_id"].is_string(), "{line}");
        let _ = id;
    }
}

/// No client can take the health endpoints away from the probes: 64 connections that send
/// nothing (one of them half a request) hold every slot, the 65th is closed as it arrives and
/// counted, the silent ones are closed by the worker (their head never came), and then the
/// probes answer again.
#[test]
fn idle_and_surplus_connections_cannot_starve_the_health_endpoints() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let prefix = Prefix::new("http-bounds");
    let worker = prefix.spawn_worker(1);
    let addr = http_addr(&worker);
    assert_eq!(get(&addr, asset_worker::telemetry::HEALTHZ_PATH).0, 200);
    let mut silent: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    silent[0].write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    // The worker closes a connection by ending it: a read gives 0 bytes or a reset. Blocking
    // reads wait for that event; their timeout only keeps a broken worker from hanging the test.
    let closed_by_worker = |stream: &mut TcpStream| {
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    let mut surplus = TcpStream::connect(&addr).unwrap();
    assert!(closed_by_worker(&mut surplus), "the 65th connection was served");
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(closed_by_worker(stream), "connection {i} sent no request and was kept open");
    }
    let (status, metrics) = get(&addr, asset_worker::telemetry::METRICS_PATH);
    assert_eq!(status, 200, "{}", worker.log());
    let refused = sample(&metrics, asset_worker::telemetry::metric::HTTP_REFUSED, &[]);
    assert!(refused.is_some_and(|refused| refused >= 1.0), "{metrics}");
    assert_eq!(get(&addr, asset_worker::telemetry::HEALTHZ_PATH).0, 200);
}

/// A worker whose parser children cannot start (its binary replaced under it, as a careless
/// upgrade does) says so on `/readyz`, counts it, and hands its jobs back (`transient`, for
/// another delivery or worker), not answering them `internal` as if the files were at fault.
/// With its binary back, it is ready and answers again.
#[test]
fn a_worker_whose_children_cannot_start_is_not_ready_and_blames_no_file() {
    use std::os::unix::fs::PermissionsExt;

    let prefix = Prefix::new("children-fail");
    let bin = tempfile::tempdir().unwrap();
    let exe = bin.path().join("asset-worker");
    std::fs::copy(env!("CARGO_BIN_EXE_asset-worker"), &exe).unwrap();
    // One child, replaced after every job: each job after the first needs a child started.
    // (Retries of the transient failure a second apart, not minutes.)
    let settings = [
        ("ASSET_WORKER_POOL_SIZE", "1"),
        ("ASSET_WORKER_CHILD_MAX_JOBS", "1"),
        ("ASSET_WORKER_RETRY_DELAYS_SECONDS", "[1]"),
    ];
    let worker = prefix.spawn_worker_of(&exe, 1, &settings);
    let addr = http_addr(&worker);
    assert!(wait_until(Duration::from_secs(30), || ready(&addr) == 200), "never ready:\n{}", worker.log());
    let image = keys_of("image")[0].clone();
    let first = prefix.enqueue_local(&[&image]);
    assert_eq!(prefix.results(1, 60)[0]["status"], "succeeded", "{}", worker.log());

    // The running worker keeps its (deleted) binary; children it starts now get this. The
    // child that replaced the first job's was started (exec'd) before its answer went out, so
    // the next job still succeeds, and the one after meets a child started from this.
    std::fs::remove_file(&exe).unwrap();
    std::fs::write(&exe, "#!/bin/sh\necho 'not the worker' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    prefix.enqueue_local(&[&image]);
    assert_eq!(prefix.results(1, 60)[0]["status"], "succeeded", "{}", worker.log());
    let failed = prefix.enqueue_local(&[&image]);
    let answer = prefix.results(1, 60).remove(0);
    assert_eq!(answer["job_id"], failed[0].as_str());
    assert_eq!(answer["error"]["kind"], "transient", "{answer}\n{}", worker.log());
    assert_eq!(answer["error"]["retryable"], true, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("failed to start") && message.contains("not the worker"), "{message}");
    let (status, body) = get(&addr, asset_worker::telemetry::READYZ_PATH);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("parser children fail to start"), "{body}");
    let (_, metrics) = get(&addr, asset_worker::telemetry::METRICS_PATH);
    let start_failed =
        sample(&metrics, asset_worker::telemetry::metric::CHILDREN_RETIRED, &[("reason", "start_failed")]);
    // One per attempt at the job: the delivery limit is 5.
    assert_eq!(start_failed, Some(5.0), "{metrics}");

    std::fs::remove_file(&exe).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_asset-worker"), &exe).unwrap();
    let again = prefix.enqueue_local(&[&image]);
    let answer = prefix.results(1, 60).remove(0);
    assert_eq!(
        (answer["job_id"].as_str(), answer["status"].as_str()),
        (Some(again[0].as_str()), Some("succeeded"))
    );
    assert_eq!(ready(&addr), 200);
    assert_ne!(first, again);
}

/// The broker closes the worker's connection (`rabbitmqctl close_all_connections`) and then
/// refuses it for a while: readiness goes false, the worker retries with backoff, and once
/// let back in it re-declares, consumes again and the batch completes.
#[test]
fn the_worker_reconnects_when_the_broker_drops_it_and_is_unready_meanwhile() {
    let vhost = Vhost::new("reconnect");
    let prefix = Prefix::on_broker("reconnect", vhost.url());
    let root = slow_jobs_root(&prefix);
    const JOBS: usize = 30;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);
    let worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let addr = http_addr(&worker);
    let first = prefix.results(1, 60);
    assert_eq!(first.len(), 1, "{}", worker.log());

    vhost.refuse();
    rabbitmqctl(&["close_all_connections", "-p", &vhost.name, "test: the broker drops the worker"]);
    assert!(wait_until(Duration::from_secs(10), || ready(&addr) == 503), "still ready:\n{}", worker.log());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ready(&addr), 503, "ready while the broker refuses it:\n{}", worker.log());
    vhost.allow();
    assert!(wait_until(Duration::from_secs(40), || ready(&addr) == 200), "not back:\n{}", worker.log());

    let answers = answers_for(&prefix, &ids, first, Duration::from_secs(120));
    let missing: Vec<_> = ids.iter().filter(|id| !answers.contains_key(*id)).collect();
    assert!(missing.is_empty(), "unanswered after the reconnect: {missing:?}\n{}", worker.log());
    // Only jobs in flight when the connection dropped can run twice (prefetch 2).
    let twice = answers.values().filter(|a| a.len() > 1).count();
    assert!(twice <= 2, "{twice} jobs answered twice");
    assert!(answers.values().flatten().all(|r| r["status"] == "succeeded"));

    let (_, metrics) = get(&addr, asset_worker::telemetry::METRICS_PATH);
    let reconnects = sample(&metrics, asset_worker::telemetry::metric::RECONNECTS, &[]).unwrap_or(0.0);
    assert!(reconnects >= 1.0, "{metrics}");
    let log = worker.log();
    assert!(log.contains("lost the broker") && log.contains("the broker is unreachable"), "{log}");
    let after_reconnect = log.split("reconnected to the broker").nth(1).unwrap_or_default();
    assert!(after_reconnect.contains("job done"), "the cut came after the batch: nothing was proven\n{log}");
    prefix.assert_temp_dir_empty();
}

/// SIGKILL leaves no chance to drain: the broker hands the unacked jobs to the next worker.
/// Every job is answered; only jobs in flight at the kill are answered twice (same job id);
/// no fetched bytes are left behind.
#[test]
fn kill_9_mid_batch_then_a_new_worker_answers_every_job() {
    let prefix = Prefix::new("kill9");
    let root = slow_jobs_root(&prefix);
    const JOBS: usize = 30;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);
    let mut first = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let early = prefix.results(3, 60);
    assert_eq!(early.len(), 3, "{}", first.log());
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    // What a crash on a system without unnamed temp files (O_TMPFILE) would leave behind:
    // the next worker's start-up sweep removes it.
    let private = prefix.temp_dir().join("asset-worker-fetch");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::write(private.join("fetch-left-by-a-crash"), b"customer bytes").unwrap();

    let second = prefix.spawn_worker_with(2, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let answers = answers_for(&prefix, &ids, early, Duration::from_secs(120));
    assert!(second.log().contains("job done"), "the kill came after the batch: nothing was proven");
    let missing: Vec<_> = ids.iter().filter(|id| !answers.contains_key(*id)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}\n{}", second.log());
    assert!(answers.len() < JOBS + 1 && answers.keys().all(|id| ids.contains(id)));
    let twice: Vec<_> = answers.iter().filter(|(_, a)| a.len() > 1).map(|(id, a)| (id, a.len())).collect();
    assert!(
        twice.len() <= 2 && twice.iter().all(|(_, n)| *n == 2),
        "prefetch 2 bounds the repeats: {twice:?}"
    );
    assert!(answers.values().flatten().all(|r| r["status"] == "succeeded"));
    prefix.assert_temp_dir_empty();
    assert!(second.log().contains("swept the temp dir"), "{}", second.log());
}

/// Two workers on one queue: the broker deals the jobs out; none is run by both.
#[test]
fn two_workers_share_one_queue_and_run_each_job_once() {
    let prefix = Prefix::new("share");
    let workers = [prefix.spawn_worker(1), prefix.spawn_worker(2)];
    for worker in &workers {
        let addr = http_addr(worker);
        assert!(wait_until(Duration::from_secs(30), || ready(&addr) == 200), "{}", worker.log());
    }
    let mut pool = keys_of("image");
    pool.extend(keys_of("audio"));
    const JOBS: usize = 40;
    let ids = prefix.enqueue_local(&cycle(&pool, JOBS));
    let results = by_job_id(prefix.results(JOBS, 120));
    assert_eq!(results.len(), JOBS);
    assert!(prefix.results(1, 2).is_empty(), "one result per job");

    let done_by = |worker: &Worker| -> HashSet<String> {
        worker
            .log()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "job done")
            .map(|line| line["span"]["job_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (first, second) = (done_by(&workers[0]), done_by(&workers[1]));
    assert!(!first.is_empty() && !second.is_empty(), "both worked: {} and {}", first.len(), second.len());
    assert!(first.is_disjoint(&second), "a job run by both: {:?}", first.intersection(&second));
    assert_eq!(first.len() + second.len(), JOBS);
    assert_eq!(first.union(&second).cloned().collect::<HashSet<_>>(), ids.into_iter().collect());
}

/// Writes the hostile files of the sandbox test into `root`: a text file that takes seconds
/// to count (a child that "hangs" past a short limit) and a PDF too large for 128 MiB.
fn write_hostile_files(root: &Path) {
    write_text(&root.join("slow.txt"), 256);
    write_huge_pdf(&root.join("huge.pdf"));
}

/// A child past its time limit, a child past its memory cap and a job past its deadline each
/// fail their own job; the jobs around them succeed and the worker keeps consuming.
#[test]
fn a_child_that_hangs_or_blows_its_memory_cap_fails_only_that_job() {
    let prefix = Prefix::new("sandbox");
    let root = prefix.dir.path().join("assets");
    std::fs::create_dir_all(&root).unwrap();
    write_hostile_files(&root);
    let fixtures = super::root().join("fixtures");
    for key in ["image/png_rgb8.png", "text/utf8_lf.txt", "audio/au_mulaw_8000_mono.au"] {
        let source = fixtures.join(key);
        assert!(source.is_file(), "fixture {key} moved");
        std::fs::copy(&source, root.join(key.replace('/', "-"))).unwrap();
    }
    let small = ["image-png_rgb8.png", "text-utf8_lf.txt", "audio-au_mulaw_8000_mono.au"];
    let root_env = root.display().to_string();

    let ids = prefix.enqueue_local(&["slow.txt", small[0], "huge.pdf", small[1], small[2]]);
    let mut worker = prefix.spawn_worker_with(
        1,
        &[
            ("ASSET_WORKER_LOCAL_ROOT", &root_env),
            ("ASSET_WORKER_EXTRACT_TIMEOUT_MS", "1500"),
            ("ASSET_WORKER_POOL_SIZE", "1"),
            ("ASSET_WORKER_MEMORY_BUDGET_MB", "128"),
        ],
    );
    let results = by_job_id(prefix.results(5, 120));
    assert_eq!(results.len(), 5, "{}", worker.log());
    let slow = &results[&ids[0]]["error"];
    assert_eq!(slow["kind"], "timeout", "{slow}");
    assert_eq!(slow["retryable"], true);
    let huge = &results[&ids[2]]["error"];
    assert_eq!(huge["kind"], "too_large", "{huge}");
    for id in [&ids[1], &ids[3], &ids[4]] {
        assert_eq!(results[id]["status"], "succeeded", "{}\n{}", results[id], worker.log());
    }
    assert!(worker.terminate(Duration::from_secs(40)).success());

    // The job's own deadline: the child's 30 s limit is cut to what is left of 1 s.
    let ids = prefix.enqueue_local(&["slow.txt", small[0]]);
    let mut worker = prefix.spawn_worker_with(
        2,
        &[("ASSET_WORKER_LOCAL_ROOT", &root_env), ("ASSET_WORKER_JOB_TIMEOUT_SECONDS", "1")],
    );
    let results = by_job_id(prefix.results(2, 60));
    assert_eq!(results.len(), 2, "{}", worker.log());
    let slow = &results[&ids[0]]["error"];
    assert_eq!(slow["kind"], "timeout", "{slow}");
    assert!(slow["message"].as_str().unwrap().contains("ASSET_WORKER_JOB_TIMEOUT_SECONDS"), "{slow}");
    assert_eq!(results[&ids[1]]["status"], "succeeded");
    prefix.assert_temp_dir_empty();
    assert!(worker.terminate(Duration::from_secs(40)).success());

    // A worker killed with SIGKILL: its child, with seconds of reading left, exits at once
    // rather than finish for nobody (it watches for its parent's death), and its idle ones
    // with it (their stdin closes).
    prefix.enqueue_local(&["slow.txt"]);
    let mut worker = prefix.spawn_worker_with(3, &[("ASSET_WORKER_LOCAL_ROOT", &root_env)]);
    let worker_pid = worker.child.id();
    let working = children_at_work(&worker);
    let children = extraction_children(|child| parent_of(child) == Some(worker_pid));
    assert!(children.contains(&working));
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    let gone = wait_until(Duration::from_millis(1500), || children.iter().all(|pid| !is_alive(*pid)));
    assert!(gone, "the orphaned children {children:?} outlived their worker");

    // A job abandoned by a live worker (the drain deadline, a lost broker): dropping its
    // future kills its child at once, and the pool starts another that serves the next job.
    let marker = 7001;
    let slow = root.join("slow.txt");
    let png = root.join(small[0]);
    super::runtime().block_on(async {
        let pool = test_pool(1, marker);
        let options = asset_worker::extract::ExtractOptions::default();
        assert!(pool.wait_ready().await.is_some(), "the pool's child never said it was ready");
        let warm = marked_children(marker);
        assert_eq!(warm.len(), 1, "{warm:?}");
        let extraction =
            asset_worker::pipeline::extract_file(&pool, &slow, &options, Duration::from_secs(60));
        let abandoned = tokio::time::timeout(Duration::from_millis(300), extraction).await;
        assert!(abandoned.is_err(), "the slow file was read within 300 ms");
        let killed = wait_until(Duration::from_secs(5), || !is_alive(warm[0]));
        assert!(killed, "the abandoned job's child {} still runs", warm[0]);
        let next = asset_worker::pipeline::extract_file(&pool, &png, &options, Duration::from_secs(60));
        assert!(next.await.outcome.is_ok(), "the next job failed");
        let now = marked_children(marker);
        assert_eq!(now.len(), 1, "the pool is back to its size: {now:?}");
        assert_ne!(now, warm);
    });
}

/// A parser child of `worker` that is parsing (not one waiting warm in the pool).
fn children_at_work(worker: &Worker) -> u32 {
    child_at_work(worker.child.id())
        .unwrap_or_else(|| panic!("no extraction child at work:\n{}", worker.log()))
}

/// Objects in customers' buckets through the queue: `enqueue s3://… gs://…` with the access
/// flags, a worker that assumes the role on SeaweedFS (and signs for fake-gcs-server) at
/// `RUST_LOG=trace`: each answers like its file, nothing stays in the temp dir, and no line
/// of the worker's log holds a signature, a session token or the worker's secret key.
#[test]
fn objects_in_customer_buckets_through_the_queue_leave_no_secret_in_the_log() {
    use super::delegated::{GCS_KEY_FILE, PNG, gcs_fixture};
    use super::peers::{Seaweed, peer, unique};
    let seaweed = Seaweed::connect();
    let fixtures = [PNG, "fixtures/video/mp4_h264_aac_moov_at_end.mp4"];
    let mut objects = Vec::new();
    for fixture in fixtures {
        let key =
            format!("queue/{}/{}", unique("objects"), Path::new(fixture).file_name().unwrap().display());
        seaweed.upload_file(&key, &super::root().join(fixture));
        objects.push(format!("s3://{}/{key}", seaweed.bucket));
    }
    let gcs_endpoint = peer("GCS_ENDPOINT");
    let gcs_object = gcs_fixture(&gcs_endpoint);

    let prefix = Prefix::new("objects");
    let role = peer("S3_ROLE_ARN");
    let mut args = vec!["enqueue"];
    args.extend(objects.iter().map(String::as_str));
    args.extend(["--role-arn", &role, "--external-id", "hub-org-1234"]);
    let enqueued = prefix.command(&args).output().unwrap();
    assert!(enqueued.status.success(), "{}", String::from_utf8_lossy(&enqueued.stderr));
    let mut ids: Vec<String> =
        String::from_utf8(enqueued.stdout).unwrap().lines().map(str::to_owned).collect();
    let enqueued = prefix.command(&["enqueue", &gcs_object]).output().unwrap();
    assert!(enqueued.status.success(), "{}", String::from_utf8_lossy(&enqueued.stderr));
    ids.extend(String::from_utf8(enqueued.stdout).unwrap().lines().map(str::to_owned));
    assert_eq!(ids.len(), 3);
    // An s3:// object without an ExternalId is refused at enqueue, as the worker would refuse it.
    let refused = prefix.command(&["enqueue", &objects[0], "--role-arn", &role]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("external_id"), "{refused:?}");

    let secret = peer("S3_ADMIN_SECRET_ACCESS_KEY");
    let key_file = super::root().join(GCS_KEY_FILE).display().to_string();
    let mut env = seaweed_worker_env();
    env.extend([
        ("ASSET_WORKER_GCS_ENDPOINT".into(), gcs_endpoint.clone()),
        ("ASSET_WORKER_GCS_KEY_FILE".into(), key_file),
        ("RUST_LOG".into(), "trace".into()),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let worker = prefix.spawn_worker_with(1, &env);
    let results = by_job_id(prefix.results(3, 60));
    assert_eq!(results.len(), 3, "{}", worker.log());
    for (id, fixture) in ids.iter().zip([fixtures[0], fixtures[1], PNG]) {
        let (result, expected) = (&results[id], super::queue::expected(Path::new(fixture)));
        for field in ["status", "data_type", "mime_type", "size_bytes", "metadata", "error"] {
            assert_eq!(result[field], expected[field], "{field} of {fixture}: {result}");
        }
        let fetched = result["stats"]["bytes_fetched"].as_u64().unwrap();
        assert!(fetched > 0, "{result}");
    }
    prefix.assert_temp_dir_empty();

    let log = worker.log();
    assert!(log.lines().count() > 3, "the worker logged its jobs:\n{log}");
    let lower = log.to_ascii_lowercase();
    for name in
        ["x-amz-signature", "x-amz-security-token", "x-amz-credential", "x-goog-signature", "private key"]
    {
        assert!(!lower.contains(name), "{name} in the worker's log:\n{log}");
    }
    assert!(!log.contains(&secret), "the worker's secret key in its log");
}

/// What a worker needs to read SeaweedFS objects through the test role.
/// The files `pid` holds open under `dir` (a fetch's unnamed temp file reads
/// `…/#N (deleted)`): what a job that ended must not leave behind.
fn open_files_under(pid: u32, dir: &Path) -> Vec<PathBuf> {
    let dir = dir.display().to_string();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.display().to_string().starts_with(&dir))
        .collect()
}

pub fn seaweed_worker_env() -> Vec<(String, String)> {
    use super::peers::peer;
    [
        ("AWS_ACCESS_KEY_ID", peer("S3_ADMIN_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", peer("S3_ADMIN_SECRET_ACCESS_KEY")),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("ASSET_WORKER_S3_ENDPOINT", peer("S3_ENDPOINT")),
        ("ASSET_WORKER_STS_ENDPOINT", peer("STS_ENDPOINT")),
        ("ASSET_WORKER_S3_FORCE_PATH_STYLE", "true".into()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// A worker killed with SIGKILL while it fetches a large object: its parser children end (their
/// parent is gone), the fetched bytes go with it (an unnamed temp file: nothing to sweep), and
/// the job, never acked, is answered by the next worker.
#[test]
fn a_worker_killed_mid_fetch_leaves_no_child_and_no_file_and_its_job_is_answered_later() {
    use super::peers::{Seaweed, peer, unique};
    let seaweed = Seaweed::connect();
    let key = format!("queue/{}/large.txt", unique("killed"));
    // Text is read whole: 192 MiB keep the worker fetching while the test looks.
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    let text: Vec<u8> = line.iter().copied().cycle().take(192 << 20).collect();
    let size = text.len();
    seaweed.upload_bytes(&key, text);
    let prefix = Prefix::new("killed");
    let object = format!("s3://{}/{key}", seaweed.bucket);
    let role = peer("S3_ROLE_ARN");
    let enqueued = prefix
        .command(&["enqueue", &object, "--role-arn", &role, "--external-id", "hub-org-1234"])
        .output()
        .unwrap();
    assert!(enqueued.status.success(), "{}", String::from_utf8_lossy(&enqueued.stderr));
    let id = String::from_utf8(enqueued.stdout).unwrap().trim().to_owned();
    let env = seaweed_worker_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();

    let mut worker = prefix.spawn_worker_with(1, &env);
    let pid = worker.child.id();
    // The fetch is under way when the worker holds its temp file (unnamed: `…/#N (deleted)`).
    let private = prefix.temp_dir().join("asset-worker-fetch");
    let fetching = wait_until(Duration::from_secs(60), || !open_files_under(pid, &private).is_empty());
    assert!(fetching, "the worker never opened a temp file:\n{}", worker.log());
    let children = extraction_children(|child| parent_of(child) == Some(pid));
    assert!(!children.is_empty(), "the worker has no parser children");
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
    let gone = wait_until(Duration::from_millis(1500), || children.iter().all(|child| !is_alive(*child)));
    assert!(gone, "children {children:?} outlived their worker");
    prefix.assert_temp_dir_empty();

    let mut worker = prefix.spawn_worker_with(2, &env);
    let results = prefix.results(1, 120);
    assert_eq!(results.len(), 1, "{}", worker.log());
    assert_eq!(results[0]["job_id"], id.as_str());
    assert_eq!(results[0]["status"], "succeeded", "{}", results[0]);
    assert_eq!(results[0]["size_bytes"], size as u64);
    assert!(worker.terminate(Duration::from_secs(40)).success());
    prefix.assert_temp_dir_empty();
}

/// No broker at all: `enqueue` fails at once naming the setting (never its password); the
/// worker stays up, unready, and says in its log that it keeps trying.
/// The hostile files of the local test above, as objects in a customer's bucket: the job that
/// hangs (past the time limit while its object is still arriving) and the one that blows the
/// memory cap each cost one answer, the next job succeeds, and no ended job leaves a file open
/// in the worker (a remote object over 1 MiB is fetched into an unnamed temp file, which a
/// directory listing never shows: the worker's /proc fd table does).
#[test]
fn hostile_objects_in_a_bucket_fail_only_their_job_and_leave_no_file_open() {
    use super::peers::{Seaweed, peer, unique};
    let seaweed = Seaweed::connect();
    let prefix = Prefix::new("hostile-s3");
    let assets = prefix.dir.path().join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    write_hostile_files(&assets);
    let base = format!("queue/{}", unique("hostile"));
    let png = super::root().join("fixtures/image/png_rgb8.png");
    let mut ids = Vec::new();
    for (name, path) in
        [("slow.txt", assets.join("slow.txt")), ("huge.pdf", assets.join("huge.pdf")), ("small.png", png)]
    {
        let key = format!("{base}/{name}");
        seaweed.upload_file(&key, &path);
        let object = format!("s3://{}/{key}", seaweed.bucket);
        let role = peer("S3_ROLE_ARN");
        let enqueued = prefix
            .command(&["enqueue", &object, "--role-arn", &role, "--external-id", "hub-org-1234"])
            .output()
            .unwrap();
        assert!(enqueued.status.success(), "{}", String::from_utf8_lossy(&enqueued.stderr));
        ids.push(String::from_utf8(enqueued.stdout).unwrap().trim().to_owned());
    }
    let mut env = seaweed_worker_env();
    env.extend(
        [
            ("ASSET_WORKER_EXTRACT_TIMEOUT_MS", "1500"),
            ("ASSET_WORKER_POOL_SIZE", "1"),
            ("ASSET_WORKER_MEMORY_BUDGET_MB", "128"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let mut worker = prefix.spawn_worker_with(1, &env);
    let pid = worker.child.id();
    let results = by_job_id(prefix.results(3, 120));
    assert_eq!(results.len(), 3, "{}", worker.log());
    let slow = &results[&ids[0]]["error"];
    assert_eq!(slow["kind"], "timeout", "{slow}");
    let huge = &results[&ids[1]]["error"];
    assert_eq!(huge["kind"], "too_large", "{huge}");
    assert!(results[&ids[0]]["stats"]["bytes_fetched"].as_u64() > Some(1 << 20), "{}", results[&ids[0]]);
    assert_eq!(results[&ids[2]]["status"], "succeeded", "{}", results[&ids[2]]);
    // Every file is closed before the answer goes out, and the pool is back to its size.
    let private = prefix.temp_dir().join("asset-worker-fetch");
    assert_eq!(open_files_under(pid, &private), Vec::<PathBuf>::new(), "{}", worker.log());
    // …and its share of the fetch budget given back, whatever the job's end.
    let (_, metrics) = get(&http_addr(&worker), asset_worker::telemetry::METRICS_PATH);
    use asset_worker::telemetry::metric::{FETCH_BUDGET_HELD, FETCH_BUDGET_WAITING};
    for gauge in [FETCH_BUDGET_HELD, FETCH_BUDGET_WAITING] {
        assert_eq!(sample(&metrics, gauge, &[]), Some(0.0), "{gauge}: {metrics}");
    }
    let one_child = wait_until(Duration::from_secs(10), || {
        extraction_children(|child| parent_of(child) == Some(pid)).len() == 1
    });
    assert!(one_child, "{:?}", extraction_children(|child| parent_of(child) == Some(pid)));
    assert!(worker.terminate(Duration::from_secs(40)).success());
    prefix.assert_temp_dir_empty();
}

#[test]
fn a_dead_broker_is_reported_without_its_password() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("amqp://guest:s3cr3t-pw@127.0.0.1:{port}/%2f");
    let prefix = Prefix::on_broker("deadbroker", url);

    let enqueued = prefix.command(&["enqueue", "--local", "image/png_rgb8.png"]).output().unwrap();
    assert_eq!(enqueued.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&enqueued.stderr);
    assert!(stderr.contains("ASSET_WORKER_AMQP_URL"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-pw"), "the password in: {stderr}");

    let worker = prefix.spawn_worker(1);
    let addr = http_addr(&worker);
    assert!(wait_until(Duration::from_secs(10), || worker
        .log()
        .matches("the broker is unreachable")
        .count()
        >= 2));
    assert_eq!(ready(&addr), 503);
    assert_eq!(get(&addr, asset_worker::telemetry::HEALTHZ_PATH).0, 200, "alive, only not ready");
    assert!(!worker.log().contains("s3cr3t-pw"), "the password in the log:\n{}", worker.log());
}

/// Ctrl-C in a terminal signals the whole foreground process group. The worker drains; its
/// extraction children, in groups of their own, are not hit, so no in-flight job is answered
/// as if its parser had crashed.
#[test]
fn ctrl_c_in_a_terminal_drains_without_failing_the_jobs_in_flight() {
    let prefix = Prefix::new("ctrlc");
    let root = slow_jobs_root(&prefix);
    const JOBS: usize = 6;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);
    let mut worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    children_at_work(&worker); // a job in flight when the signal comes
    send_signal("INT", &format!("-{}", worker.child.id())); // the whole group
    let status = worker.terminate(Duration::from_secs(40));
    assert!(status.success(), "{status:?}\n{}", worker.log());
    let answered: Vec<Value> = prefix.results(JOBS, 5);
    assert!(!answered.is_empty(), "the job in flight was finished:\n{}", worker.log());
    for result in &answered {
        assert_eq!(result["status"], "succeeded", "{result}");
    }
    // The rest were handed back, not lost.
    let left = prefix.message_count("process") as usize;
    assert_eq!(answered.len() + left, ids.len(), "{}", worker.log());
}

/// Jobs abandoned because the broker went away are stopped, children included, while the
/// worker lives on: the child of a job with seconds of reading left is gone at once, and the
/// job, redelivered, is answered.
#[test]
fn a_lost_broker_stops_the_children_of_the_jobs_it_abandons() {
    let vhost = Vhost::new("abandon");
    let prefix = Prefix::on_broker("abandon", vhost.url());
    let root = prefix.dir.path().join("assets");
    std::fs::create_dir_all(&root).unwrap();
    write_text(&root.join(SLOW_KEY), 256);
    let ids = prefix.enqueue_local(&[SLOW_KEY]);
    let mut worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root.display().to_string())]);
    let children = [children_at_work(&worker)];
    rabbitmqctl(&["close_all_connections", "-p", &vhost.name, "test: the broker drops the worker"]);
    let gone = wait_until(Duration::from_millis(1500), || children.iter().all(|pid| !is_alive(*pid)));
    assert!(gone, "the abandoned job's child {children:?} still runs:\n{}", worker.log());
    assert!(worker.child.try_wait().unwrap().is_none(), "the worker lives on");
    let results = prefix.results(1, 60);
    assert_eq!(results.len(), 1, "{}", worker.log());
    assert_eq!(results[0]["job_id"], ids[0].as_str());
    assert_eq!(results[0]["status"], "succeeded", "{}", results[0]);
}
