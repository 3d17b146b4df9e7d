//! The load generator of `bench/e2e.sh`: publishes one batch of jobs to `{prefix}.process`
//! and times each job from its publish to the arrival of its result on `{prefix}.results`.
//!
//! ```sh
//! e2e_driver --keys KEYS_FILE --out TIMES.tsv                       # local jobs (ASSET_WORKER_LOCAL_ROOT keys)
//! e2e_driver --keys KEYS_FILE --out TIMES.tsv --s3-bucket B --role-arn R --external-id X
//! ```
//! Jobs are made by the crate's own `new_jobs` (fresh job ids) from one key per line; all are
//! published at once, each with a publisher confirm, by the crate's `ConfirmedPublisher`,
//! while a consumer (subscribed before the first publish) takes the results. Settings (broker,
//! prefix) come from the `ASSET_WORKER_*` environment, as the worker's do.
//!
//! `--out` gets one tab-separated line per job: job id, key, then seconds from the first
//! publish to its publish call, its confirm and its result (empty if none came), the result's
//! status, error kind and `stats.total_ms`. Stdout gets one JSON summary: throughput, latency
//! percentiles (publish call → result arrival) and outcomes. Exit 1 if some result is missing
//! at `--timeout`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;

use asset_worker::cli::queue::new_jobs;
use asset_worker::cli::{AccessFlags, parse_remote};
use asset_worker::config::Settings;
use asset_worker::job::{LocalSource, Source};
use asset_worker::queue::connect;
use asset_worker::queue::publisher::{ConfirmedPublisher, Destination, json_properties};
use asset_worker::queue::topology::{self, Names};

#[derive(Parser)]
struct Args {
    /// One key per line: under the worker's ASSET_WORKER_LOCAL_ROOT, or in --s3-bucket.
    #[arg(long)]
    keys: PathBuf,
    /// Where the per-job times go (TSV).
    #[arg(long)]
    out: PathBuf,
    /// Give up waiting for results after this long.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Make s3:// jobs in this bucket instead of local ones.
    #[arg(long, requires_all = ["role_arn", "external_id"])]
    s3_bucket: Option<String>,
    #[arg(long)]
    role_arn: Option<String>,
    #[arg(long)]
    external_id: Option<String>,
}

/// One job's times, in seconds from the first publish.
#[derive(Default, Clone)]
struct Timing {
    key: String,
    published: f64,
    confirmed: Option<f64>,
    answered: Option<f64>,
    status: String,
    error_kind: String,
    total_ms: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = Settings::load(None)?;
    let keys: Vec<String> = std::fs::read_to_string(&args.keys)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let mut sources = Vec::with_capacity(keys.len());
    for key in &keys {
        let source = match &args.s3_bucket {
            Some(bucket) => {
                let flags = AccessFlags {
                    role_arn: args.role_arn.clone(),
                    external_id: args.external_id.clone(),
                    ..AccessFlags::default()
                };
                let object = format!("s3://{bucket}/{key}");
                parse_remote(&object, &flags, &settings.region)
                    .unwrap_or_else(|| Err(format!("{object}: not an object address")))
                    .map_err(anyhow::Error::msg)?
            }
            None => Source::Local(LocalSource { key: key.clone() }),
        };
        sources.push((key.clone(), source));
    }
    let bodies = new_jobs(sources, None);
    let summary = asset_worker::cli::runtime()?.block_on(drive(&settings, &keys, bodies, &args))?;
    println!("{summary}");
    let answered = summary["answered"].as_u64().unwrap_or(0);
    std::process::exit(if answered == keys.len() as u64 { 0 } else { 1 });
}

async fn drive(
    settings: &Settings,
    keys: &[String],
    bodies: Vec<Vec<u8>>,
    args: &Args,
) -> anyhow::Result<serde_json::Value> {
    let names = Names::new(&settings.queue_prefix);
    let connection = connect(settings).await?;
    let channel = connection.create_channel().await?;
    topology::declare(&channel, &names, settings.delivery_limit, &settings.retry_delays_seconds).await?;
    // Results: subscribed before the first job goes out; no acks (the queue is the run's own
    // and is deleted after it), so taking results costs the broker as little as possible.
    channel.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut results = channel
        .basic_consume(
            names.results_queue.as_str().into(),
            "e2e-driver".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let publisher = ConfirmedPublisher::open(&connection).await?;
    let destination = Destination::Queue(names.process.clone());

    let mut timings: HashMap<String, Timing> = HashMap::with_capacity(bodies.len());
    let mut order = Vec::with_capacity(bodies.len());
    let start = Instant::now();
    let mut publishes = JoinSet::new();
    for (key, body) in keys.iter().zip(bodies) {
        let job_id = serde_json::from_slice::<serde_json::Value>(&body)?["job_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let published = start.elapsed().as_secs_f64();
        timings.insert(job_id.clone(), Timing { key: key.clone(), published, ..Timing::default() });
        order.push(job_id.clone());
        let (publisher, destination) = (publisher.clone(), destination.clone());
        publishes.spawn(async move {
            publisher.publish(&destination, &body, json_properties(Some(&job_id))).await?;
            anyhow::Ok((job_id, start.elapsed().as_secs_f64()))
        });
    }

    let deadline = tokio::time::sleep(Duration::from_secs(args.timeout));
    tokio::pin!(deadline);
    let (mut answered, mut duplicates, mut strangers) = (0usize, 0usize, 0usize);
    let mut last_confirm = 0f64;
    while answered < order.len() {
        tokio::select! {
            () = &mut deadline => break,
            Some(joined) = publishes.join_next(), if !publishes.is_empty() => {
                let (job_id, confirmed) = joined??;
                last_confirm = last_confirm.max(confirmed);
                if let Some(timing) = timings.get_mut(&job_id) {
                    timing.confirmed = Some(confirmed);
                }
            }
            delivery = results.next() => {
                let Some(delivery) = delivery else { anyhow::bail!("the results consumer was cancelled") };
                let delivery = delivery?;
                let arrived = start.elapsed().as_secs_f64();
                let result: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap_or_default();
                let job_id = result["job_id"].as_str().unwrap_or_default();
                let Some(timing) = timings.get_mut(job_id) else { strangers += 1; continue };
                if timing.answered.is_some() {
                    duplicates += 1;
                    continue;
                }
                timing.answered = Some(arrived);
                timing.status = result["status"].as_str().unwrap_or("?").to_owned();
                timing.error_kind = result["error"]["kind"].as_str().unwrap_or_default().to_owned();
                timing.total_ms = result["stats"]["total_ms"].as_u64();
                answered += 1;
            }
        }
    }
    // Confirms that came after the last result (the worker can answer a job before its
    // publisher has seen the confirm).
    while let Ok(Some(joined)) = tokio::time::timeout(Duration::from_secs(5), publishes.join_next()).await {
        let (job_id, confirmed) = joined??;
        last_confirm = last_confirm.max(confirmed);
        if let Some(timing) = timings.get_mut(&job_id) {
            timing.confirmed = Some(confirmed);
        }
    }
    let _ = channel.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;

    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.out)?);
    let seconds = |t: Option<f64>| t.map(|t| format!("{t:.6}")).unwrap_or_default();
    for job_id in &order {
        let t = &timings[job_id];
        let total_ms = t.total_ms.map(|ms| ms.to_string()).unwrap_or_default();
        writeln!(
            out,
            "{job_id}\t{}\t{:.6}\t{}\t{}\t{}\t{}\t{total_ms}",
            t.key,
            t.published,
            seconds(t.confirmed),
            seconds(t.answered),
            t.status,
            t.error_kind
        )?;
    }
    out.flush()?;

    let mut latencies: Vec<f64> =
        timings.values().filter_map(|t| t.answered.map(|a| (a - t.published) * 1000.0)).collect();
    latencies.sort_by(f64::total_cmp);
    let mut service: Vec<f64> = timings.values().filter_map(|t| t.total_ms.map(|ms| ms as f64)).collect();
    service.sort_by(f64::total_cmp);
    let last_answer = timings.values().filter_map(|t| t.answered).fold(0f64, f64::max);
    let mut outcomes = BTreeMap::new();
    for t in timings.values().filter(|t| t.answered.is_some()) {
        let outcome = if t.error_kind.is_empty() { t.status.clone() } else { t.error_kind.clone() };
        *outcomes.entry(outcome).or_insert(0u64) += 1;
    }
    Ok(serde_json::json!({
        "jobs": order.len(),
        "answered": answered,
        "duplicates": duplicates,
        "unknown_results": strangers,
        "publish_seconds": last_confirm,
        "wall_seconds": last_answer,
        "jobs_per_second": if last_answer > 0.0 { answered as f64 / last_answer } else { 0.0 },
        "latency_ms": percentiles(&latencies),
        "worker_total_ms": percentiles(&service),
        "outcomes": outcomes,
    }))
}

/// p50, p99 and max of sorted values (nearest rank).
fn percentiles(sorted: &[f64]) -> serde_json::Value {
    let rank = |p: f64| {
        if sorted.is_empty() {
            return serde_json::Value::Null;
        }
        let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        serde_json::json!((sorted[index] * 10.0).round() / 10.0)
    };
    serde_json::json!({ "p50": rank(0.50), "p99": rank(0.99), "max": rank(1.0) })
}
