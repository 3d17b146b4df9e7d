//! The worker when the broker misbehaves, each test on a RabbitMQ node of its own
//! ([`PrivateBroker`]) that it stops, restarts and cuts: a restart mid-batch, the broker lost
//! in the middle of declaring the topology, the connection cut while results are in flight. Throughout: every job gets exactly one answer (a second only for a job
//! in flight at the fault, same job id), the worker never exits, `/readyz` tells the truth.
//! And the one fault that must stop it: a declaration the broker refuses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

use super::broker::{BASIC_PUBLISH, EXCHANGE_DECLARE, HoldingProxy, PrivateBroker};
use super::queue::{Prefix, SLOW_KEY, Worker, broker, slow_jobs_root};
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
