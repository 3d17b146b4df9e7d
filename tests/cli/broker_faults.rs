//! The worker when the broker misbehaves, each test on a RabbitMQ node of its own
//! ([`PrivateBroker`]) that it stops, restarts and cuts: a restart mid-batch, the broker lost
//! in the middle of declaring the topology, the connection cut while results are in flight,
//! the results channel closed by the broker (a deleted exchange, a result over its
//! `max_message_size`). Throughout: every job gets exactly one answer (a second only for a job
//! in flight at the fault, same job id), the worker never exits, `/readyz` tells the truth.
//! And the one fault that must stop it: a declaration the broker refuses.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

use super::broker::{BASIC_PUBLISH, EXCHANGE_DECLARE, HoldingProxy, PrivateBroker};
use super::queue::{Prefix, SLOW_KEY, Worker, broker, broker_at, slow_jobs_root};
use super::queue_faults::{answers_for, cycle, get, http_addr, keys_of, ready, sample};
use super::wait_until;
use asset_worker::telemetry::{METRICS_PATH, metric};

/// Every id answered, all `succeeded`; only up to `prefetch` (2) jobs, those in flight at the
/// fault, answered twice, and never more than twice.
fn assert_each_answered_once(ids: &[String], answers: &HashMap<String, Vec<Value>>, worker: &Worker) {
    let missing: Vec<_> = ids.iter().filter(|id| !answers.contains_key(*id)).collect();
    assert!(missing.is_empty(), "unanswered: {missing:?}\n{}", worker.log());
    assert!(answers.keys().all(|id| ids.contains(id)), "answers for jobs never sent");
    let twice: Vec<_> = answers.iter().filter(|(_, a)| a.len() > 1).map(|(id, a)| (id, a.len())).collect();
    assert!(
        twice.len() <= 2 && twice.iter().all(|(_, n)| *n == 2),
        "repeats beyond the jobs in flight: {twice:?}"
    );
    for result in answers.values().flatten() {
        assert_eq!(result["status"], "succeeded", "{result}");
    }
}

/// The worker still runs.
fn assert_alive(worker: &mut Worker) {
    let exited = worker.child.try_wait().unwrap();
    assert!(exited.is_none(), "the worker exited ({exited:?}):\n{}", worker.log());
}

fn metrics_of(addr: &str) -> String {
    get(addr, METRICS_PATH).1
}

/// The jobs in a dead-letter queue, taken off it: (job id, why it was dead-lettered, by the
/// `x-death` header: `rejected` by the worker, `delivery_limit` by the broker).
fn dead_letters(url: &str, queue: String) -> Vec<(String, String)> {
    broker_at(url, |channel| async move {
        let mut dead = Vec::new();
        while let Some(message) =
            channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await?
        {
            let job: Value = serde_json::from_slice(&message.delivery.data).unwrap_or_default();
            let headers = message.delivery.properties.headers().clone().unwrap_or_default();
            let reason = match headers.inner().get("x-death") {
                Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
                    Some(AMQPValue::FieldTable(death)) => match death.inner().get("reason") {
                        Some(AMQPValue::LongString(reason)) => reason.to_string(),
                        other => format!("{other:?}"),
                    },
                    other => format!("{other:?}"),
                },
                other => format!("{other:?}"),
            };
            dead.push((job["job_id"].as_str().unwrap_or("-").to_owned(), reason));
        }
        Ok(dead)
    })
}

/// A valid PDF of `pages` empty Letter pages: its result lists every page (about 50 bytes
/// each), so its size is chosen by the page count.
fn write_pdf_with_pages(path: &Path, pages: usize) {
    let kids: Vec<String> = (0..pages).map(|n| format!("{} 0 R", n + 3)).collect();
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!("<< /Type /Pages /Kids [{}] /Count {pages} >>", kids.join(" ")),
    ];
    objects.extend((0..pages).map(|_| "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".to_owned()));
    let objects: Vec<Vec<u8>> = objects.into_iter().map(String::into_bytes).collect();
    super::queue::write_pdf(path, &objects);
}

/// The broker goes away while the worker declares the topology (issue 10, item 1): first the
/// connection closes under the declaration (a reset), then, on the next attempt, the node's
/// broker shuts down under it (CONNECTION_FORCED). Each is a lost session: the worker stays
/// up and unready, retries, and once the broker is back it declares, consumes and answers.
#[test]
fn a_broker_lost_mid_declaration_is_a_lost_session_not_an_exit() {
    let mut node = PrivateBroker::start("declare");
    let proxy = HoldingProxy::start(node.port, EXCHANGE_DECLARE);
    let prefix = Prefix::on_broker("declare", node.url());
    let images = keys_of("image");
    let ids = prefix.enqueue_local(&cycle(&images, 6));
    let mut worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_AMQP_URL", &proxy.url())]);
    let addr = http_addr(&worker);

    // 1. Connected, declaring: the connection closes under it.
    assert!(proxy.wait_held(Duration::from_secs(30)), "the worker never declared:\n{}", worker.log());
    assert_eq!(ready(&addr), 503, "ready before its topology is declared");
    proxy.cut(true);
    let noticed = wait_until(Duration::from_secs(20), || {
        worker.child.try_wait().unwrap().is_some() || worker.log().contains("failed while opening; retrying")
    });
    assert!(noticed, "the cut went unnoticed:\n{}", worker.log());
    assert_alive(&mut worker);
    // 2. It comes back to declare again; the broker shuts down under that declaration.
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the worker did not declare again after the cut:\n{}",
        worker.log()
    );
    assert_alive(&mut worker);
    node.stop_app();
    proxy.release(false);
    let retried = wait_until(Duration::from_secs(20), || {
        worker.log().matches("failed while opening; retrying").count() >= 2
            && worker.log().contains("the broker is unreachable")
    });
    assert!(retried, "no retry after the broker went away mid-declare:\n{}", worker.log());
    assert_alive(&mut worker);
    assert_eq!(ready(&addr), 503, "ready while the broker is down");

    node.start_app();
    assert!(
        wait_until(Duration::from_secs(60), || ready(&addr) == 200),
        "never ready again:\n{}",
        worker.log()
    );
    let answers = answers_for(&prefix, &ids, Vec::new(), Duration::from_secs(60));
    assert_each_answered_once(&ids, &answers, &worker);
    assert!(answers.values().all(|a| a.len() == 1), "nothing was in flight, yet a job was answered twice");
    assert_alive(&mut worker);
}

/// The node restarts (`rabbitmqctl stop`, then started again on the same data) in the middle
/// of a batch: `/readyz` says 503 while it is down and 200 once the worker is back; every job
/// is answered, only those in flight at the stop twice; the worker never exits.
#[test]
fn a_broker_restart_mid_batch_answers_every_job_once_and_readyz_tells_the_truth() {
    let mut node = PrivateBroker::start("restart");
    let prefix = Prefix::on_broker("restart", node.url());
    let root = slow_jobs_root(&prefix);
    // Enough work (about 6 s) that the stop, which takes rabbitmqctl a few seconds, lands mid-batch.
    const JOBS: usize = 60;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);
    let mut worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let addr = http_addr(&worker);
    let first = prefix.results(2, 60);
    assert_eq!(first.len(), 2, "{}", worker.log());
    assert_eq!(ready(&addr), 200);

    node.stop();
    assert!(wait_until(Duration::from_secs(10), || ready(&addr) == 503), "still ready:\n{}", worker.log());
    let retrying = wait_until(Duration::from_secs(10), || worker.log().contains("the broker is unreachable"));
    assert!(retrying, "{}", worker.log());
    assert_eq!(ready(&addr), 503, "ready while the broker is down");
    assert_alive(&mut worker);

    node.start_again();
    assert!(
        wait_until(Duration::from_secs(60), || ready(&addr) == 200),
        "never ready again:\n{}",
        worker.log()
    );
    let answers = answers_for(&prefix, &ids, first, Duration::from_secs(120));
    assert_each_answered_once(&ids, &answers, &worker);
    assert_alive(&mut worker);
    let reconnects = sample(&metrics_of(&addr), metric::RECONNECTS, &[]).unwrap_or(0.0);
    assert!(reconnects >= 1.0, "{reconnects}");
    let log = worker.log();
    let after = log.split("reconnected to the broker").nth(1).unwrap_or_default();
    assert!(after.contains("job done"), "the restart came after the batch: nothing was proven\n{log}");
}

/// The connection is closed by the broker (`rabbitmqctl close_all_connections`) while a result
/// is on its way, sent but not confirmed: the job is answered (once, or twice if its first
/// answer got through), as is every other; the worker reconnects.
#[test]
fn a_connection_cut_while_results_are_in_flight_loses_no_answer() {
    let node = PrivateBroker::start("inflight");
    let proxy = HoldingProxy::start(node.port, BASIC_PUBLISH);
    let prefix = Prefix::on_broker("inflight", node.url());
    let root = slow_jobs_root(&prefix);
    const JOBS: usize = 10;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);
    let mut worker = prefix
        .spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root), ("ASSET_WORKER_AMQP_URL", &proxy.url())]);
    let addr = http_addr(&worker);
    assert!(proxy.wait_held(Duration::from_secs(60)), "no result was ever sent:\n{}", worker.log());
    node.ctl(&["close_all_connections", "test: cut with a result in flight"]);
    proxy.release(false);

    let answers = answers_for(&prefix, &ids, Vec::new(), Duration::from_secs(90));
    assert_each_answered_once(&ids, &answers, &worker);
    assert_alive(&mut worker);
    assert!(wait_until(Duration::from_secs(10), || ready(&addr) == 200), "{}", worker.log());
    let reconnects = sample(&metrics_of(&addr), metric::RECONNECTS, &[]).unwrap_or(0.0);
    assert!(reconnects >= 1.0, "the cut was not noticed:\n{}", worker.log());
}

/// The results exchange is deleted while jobs flow (issue 10, item 2): the broker closes the
/// publisher's channel (404) at the next result. The worker must notice: end the session,
/// reconnect, declare the exchange again, and answer every job, rather than requeue each job
/// until the delivery limit dead-letters it unanswered while `/readyz` says 200.
#[test]
fn a_deleted_results_exchange_ends_the_session_and_every_job_is_still_answered() {
    let node = PrivateBroker::start("noexchange");
    let prefix = Prefix::on_broker("noexchange", node.url());
    let root = slow_jobs_root(&prefix);
    const JOBS: usize = 16;
    let ids = prefix.enqueue_local(&[SLOW_KEY; JOBS]);
    let mut worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let addr = http_addr(&worker);
    let first = prefix.results(1, 60);
    assert_eq!(first.len(), 1, "{}", worker.log());
    let exchange = format!("{}.results", prefix.name);
    broker_at(&node.url(), |channel| async move {
        channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await
    });
    // Before reading results: `results` declares the topology too, which would put the
    // exchange back before the worker had published to the void.
    let noticed = wait_until(Duration::from_secs(30), || worker.log().contains("lost the broker"));
    assert!(noticed, "the dead publisher was not noticed:\n{}", worker.log());

    let answers = answers_for(&prefix, &ids, first, Duration::from_secs(60));
    assert_each_answered_once(&ids, &answers, &worker);
    assert_alive(&mut worker);
    let log = worker.log();
    assert!(log.contains("NOT_FOUND"), "{log}");
    assert!(wait_until(Duration::from_secs(10), || ready(&addr) == 200), "{log}");
    let reconnects = sample(&metrics_of(&addr), metric::RECONNECTS, &[]).unwrap_or(0.0);
    assert!(reconnects >= 1.0, "{reconnects}");
    assert!(dead_letters(&node.url(), format!("{}.process.dead", prefix.name)).is_empty());
}

/// A result larger than the broker's `max_message_size` (issue 10, item 2): the broker closes
/// the publisher's channel refusing it. That job, and only that one, is dead-lettered once
/// by the worker (not by the delivery limit), with a log line and
/// `asset_worker_results_unpublishable_total`; every other job, including those whose results
/// were pending on the same channel, is answered; the worker carries on, ready.
#[test]
fn a_result_over_the_brokers_max_message_size_is_dead_lettered_once_and_the_rest_answered() {
    let node = PrivateBroker::start_with("maxsize", "max_message_size = 8192");
    let prefix = Prefix::on_broker("maxsize", node.url());
    let root = prefix.dir.path().join("assets");
    std::fs::create_dir_all(&root).unwrap();
    super::queue::write_text(&root.join(SLOW_KEY), 24);
    write_pdf_with_pages(&root.join("pages.pdf"), 400); // a result of about 20 KB
    let mut keys = vec![SLOW_KEY; 4];
    keys.push("pages.pdf");
    keys.extend([SLOW_KEY; 8]);
    let ids = prefix.enqueue_local(&keys);
    let big = ids[4].clone();
    let others: Vec<String> = ids.iter().filter(|id| **id != big).cloned().collect();
    let root = root.display().to_string();
    let mut worker = prefix.spawn_worker_with(1, &[("ASSET_WORKER_LOCAL_ROOT", &root)]);
    let addr = http_addr(&worker);

    let answers = answers_for(&prefix, &others, Vec::new(), Duration::from_secs(60));
    assert!(!answers.contains_key(&big), "the oversized result got out?\n{}", worker.log());
    assert_each_answered_once(&others, &answers, &worker);
    let dead = dead_letters(&node.url(), format!("{}.process.dead", prefix.name));
    assert_eq!(dead, vec![(big.clone(), "rejected".to_owned())], "{}", worker.log());
    assert_alive(&mut worker);
    assert!(wait_until(Duration::from_secs(10), || ready(&addr) == 200), "{}", worker.log());
    let metrics = metrics_of(&addr);
    assert_eq!(sample(&metrics, metric::RESULTS_UNPUBLISHABLE, &[]), Some(1.0), "{metrics}");
    let log = worker.log();
    let refused: Vec<&str> =
        log.lines().filter(|line| line.contains("the broker refuses this job's result")).collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(refused[0].contains(&big), "the line names the job: {}", refused[0]);
}

/// The one broker fault the worker must not ride out: the process queue exists with another
/// delivery limit, so the broker refuses the declaration (406 PRECONDITION_FAILED). Retrying
/// cannot mend it; the worker exits with status 2 and says what to do.
#[test]
fn a_queue_declared_with_other_arguments_stops_the_worker_with_status_2() {
    let prefix = Prefix::new("refused");
    let queue = format!("{}.process", prefix.name);
    broker(|channel| async move {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(99));
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(queue.as_str().into(), durable, arguments).await.map(|_| ())
    });
    let mut worker = prefix.spawn_worker(1);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = worker.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still running:\n{}", worker.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2), "{}", worker.log());
    let log = worker.log();
    assert!(log.contains("PRECONDITION") && log.contains("other arguments"), "{log}");
}
