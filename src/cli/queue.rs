//! The queue commands of DESIGN §4: `run` (the worker), `enqueue` (publish jobs, for
//! operators, demos and load tests), `results` (print answers from the results queue) and
//! `sign --via-broker` (one signing request, as a backend sends it).
//! Each declares the topology first, so they can be started in any order.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;

use crate::access::providers::Access;
use crate::config::Settings;
use crate::display::{SIGN_SCHEMA, SignAnswer};
use crate::job::{DataType, JOB_SCHEMA, Job, LocalSource, Source};
use crate::pipeline::Pipeline;
use crate::queue::consumer::{self, WorkerParts};
use crate::queue::publisher::{ConfirmedPublisher, Destination, json_properties};
use crate::queue::topology::{self, Names};
use crate::queue::{DIRECT_REPLY_TO, connect};
use crate::sandbox::{Pool, PoolSettings};
use crate::telemetry::{self, Readiness};

/// How often `results` looks at an empty queue.
const RESULTS_POLL: Duration = Duration::from_millis(50);

/// The worker: sweeps what a crash left in the temp dir, serves health and metrics, then
/// consumes until `shutdown`.
pub async fn run_worker(
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let swept = crate::fetch::sweep_temp_dir(&settings.temp_dir).map_err(|e| {
        anyhow::anyhow!("sweeping ASSET_WORKER_TEMP_DIR={}: {e}", settings.temp_dir.display())
    })?;
    if swept > 0 {
        tracing::info!(removed = swept, "swept the temp dir of what a previous run left");
    }
    let readiness = Readiness::default();
    let metrics = telemetry::install_metrics()?;
    let http_addr = telemetry::serve(settings.http_addr, readiness.clone(), metrics).await?;
    tracing::info!(%http_addr, "serving /healthz /readyz /metrics");
    let pool = Pool::start(PoolSettings::from_settings(settings)?);
    tracing::info!(
        jobs_in_flight = settings.concurrency,
        fetch_budget_mib = settings.fetch_budget_mb(),
        max_fetch_bytes = settings.max_fetch_bytes,
        "fetched bytes of all jobs in flight are bounded by the fetch budget"
    );
    readiness.watch_parsers({
        let pool = pool.clone();
        move || pool.children_failing()
    });
    match pool.wait_ready().await {
        Some(protections) => {
            tracing::info!(
                children = settings.pool_size(),
                child_memory_mib = protections.memory_bytes / (1024 * 1024),
                child_max_jobs = settings.child_max_jobs,
                no_new_privs = protections.no_new_privs,
                not_dumpable = protections.not_dumpable,
                landlock = %protections.landlock,
                seccomp = protections.seccomp,
                notes = ?protections.notes,
                "parser children ready and locked down"
            );
            readiness.describe_parsers(format!(
                "parser children: {} of {} MiB each, landlock {}, seccomp {}, no_new_privs {}, not dumpable {}",
                settings.pool_size(),
                protections.memory_bytes / (1024 * 1024),
                protections.landlock,
                if protections.seccomp { "on" } else { "off" },
                if protections.no_new_privs { "on" } else { "off" },
                if protections.not_dumpable { "on" } else { "off" },
            ));
        }
        // Visible, not fatal: `/readyz` says so, and every job goes back to the queue
        // saying why its child failed to start, until one does.
        None => tracing::error!("no parser child became ready; jobs will fail until one does"),
    }
    let parts = WorkerParts {
        access: Access::from_settings(settings).await?,
        pipeline: Pipeline::new(pool, settings)?,
        readiness,
    };
    consumer::run(settings, parts, shutdown).await?;
    Ok(())
}

/// One job per source, each with a fresh job id; the asset id is what names the object
/// (the local key, or the `s3://`/`gs://` address).
pub fn new_jobs(sources: Vec<(String, Source)>, data_type: Option<DataType>) -> Vec<Vec<u8>> {
    sources
        .into_iter()
        .map(|(asset_id, source)| {
            let job = Job {
                schema: JOB_SCHEMA,
                job_id: new_job_id(),
                asset_id,
                data_type,
                source,
                options: Default::default(),
            };
            serde_json::to_vec(&job).unwrap_or_default()
        })
        .collect()
}

/// A job for each file under the local root (`--local KEY…`).
pub fn local_jobs(keys: &[String], data_type: Option<DataType>) -> Vec<Vec<u8>> {
    let sources =
        keys.iter().map(|key| (key.clone(), Source::Local(LocalSource { key: key.clone() }))).collect();
    new_jobs(sources, data_type)
}

/// Publishes each body to the process queue, confirmed, as it is (raw lines are sent even if
/// they are not valid jobs: testing the worker's handling of bad messages needs them). Returns
/// each body's job id, when one is readable.
pub async fn enqueue(settings: &Settings, bodies: &[Vec<u8>]) -> anyhow::Result<Vec<Option<String>>> {
    let connection = connect(settings).await?;
    let names = Names::new(&settings.queue_prefix);
    topology::declare(
        &connection.create_channel().await?,
        &names,
        settings.delivery_limit,
        &settings.retry_delays_seconds,
    )
    .await?;
    let publisher = ConfirmedPublisher::open(&connection).await?;
    let destination = Destination::Queue(names.process.clone());
    let mut ids = Vec::with_capacity(bodies.len());
    for body in bodies {
        let job_id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|job| job.get("job_id").and_then(|id| id.as_str()).map(str::to_owned));
        publisher.publish(&destination, body, json_properties(job_id.as_deref())).await?;
        ids.push(job_id);
    }
    publisher.close().await;
    let _ = connection.close(200, "enqueued".into()).await;
    Ok(ids)
}

/// Takes results off the results queue, one JSON line each to `out`, acking each once
/// written, until `count` are printed or `timeout` passes. Returns how many were printed.
pub async fn results(
    settings: &Settings,
    count: Option<usize>,
    timeout: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let connection = connect(settings).await?;
    let names = Names::new(&settings.queue_prefix);
    let channel = connection.create_channel().await?;
    topology::declare(&channel, &names, settings.delivery_limit, &settings.retry_delays_seconds).await?;
    let deadline = Instant::now() + timeout;
    let mut printed = 0;
    // basic.get rather than a consumer: it takes exactly `count` messages, never prefetching
    // one more that would then have to be handed back.
    while count.is_none_or(|count| printed < count) && Instant::now() < deadline {
        let Some(message) =
            channel.basic_get(names.results_queue.as_str().into(), BasicGetOptions::default()).await?
        else {
            tokio::time::sleep(RESULTS_POLL).await;
            continue;
        };
        let delivery = message.delivery;
        // One line per result, whatever whitespace the publisher used.
        match serde_json::from_slice::<serde_json::Value>(&delivery.data) {
            Ok(value) => writeln!(out, "{value}")?,
            Err(_) => writeln!(out, "{}", String::from_utf8_lossy(&delivery.data).trim())?,
        }
        out.flush()?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        printed += 1;
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(printed)
}

/// Sends one signing request for `sources` to `{prefix}.sign`, as a backend does (RabbitMQ's
/// direct reply-to, a `correlation_id`), and waits `timeout` at most for the answer. Returns
/// it and the round trip. Declares nothing: a missing signing queue (no worker ever ran on
/// this prefix) is an error saying so.
pub async fn sign_via_broker(
    settings: &Settings,
    sources: &[Source],
    ttl_seconds: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<(SignAnswer, Duration)> {
    let connection = connect(settings).await?;
    let names = Names::new(&settings.queue_prefix);
    let channel = connection.create_channel().await?;
    // Direct reply-to: consume the pseudo-queue (no_ack, as RabbitMQ requires) on the channel
    // that publishes, before publishing.
    let mut answers = channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "asset-worker-sign".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let request_id = format!("sign-{}", new_job_id());
    let request = serde_json::json!({
        "schema": SIGN_SCHEMA, "request_id": request_id, "ttl_seconds": ttl_seconds, "objects": sources,
    });
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_reply_to(DIRECT_REPLY_TO.into())
        .with_correlation_id(request_id.as_str().into());
    let sent = Instant::now();
    let confirmation = channel
        .basic_publish(
            "".into(),
            names.sign.as_str().into(),
            BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
            &serde_json::to_vec(&request)?,
            properties,
        )
        .await?
        .await?;
    if let lapin::Confirmation::Ack(Some(_)) | lapin::Confirmation::Nack(Some(_)) = confirmation {
        anyhow::bail!(
            "no queue {} on the broker: is a worker running with ASSET_WORKER_QUEUE_PREFIX={}?",
            names.sign,
            settings.queue_prefix
        );
    }
    let answer = tokio::time::timeout(timeout, async {
        while let Some(delivery) = answers.next().await {
            let delivery = delivery?;
            let ours =
                delivery.properties.correlation_id().as_ref().is_some_and(|id| id.as_str() == request_id);
            if ours {
                return Ok(Some(serde_json::from_slice::<SignAnswer>(&delivery.data)?));
            }
        }
        anyhow::Ok(None)
    })
    .await;
    let took = sent.elapsed();
    let _ = connection.close(200, "signed".into()).await;
    match answer {
        Ok(Ok(Some(answer))) => Ok((answer, took)),
        Ok(Ok(None)) => anyhow::bail!("the broker closed the reply channel before an answer came"),
        Ok(Err(error)) => Err(error.context("reading the signing answer")),
        Err(_) => anyhow::bail!(
            "no answer from {} within {} ms: is a worker with ASSET_WORKER_SIGN_PREFETCH above 0 consuming it?",
            names.sign,
            timeout.as_millis()
        ),
    }
}

/// A job id unique without coordination: time, process and a counter.
fn new_job_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
