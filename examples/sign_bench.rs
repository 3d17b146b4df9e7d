//! The signing service as a backend sees it, for `bench/sign.sh`: sends signing requests of
//! `--batch` objects to `{prefix}.sign`, `--concurrency` outstanding at a time, and waits for
//! each answer on RabbitMQ's direct reply-to. Prints one JSON line: round-trip percentiles
//! (milliseconds) and URLs per second. The first request (which assumes the role) is not
//! counted: the figures are for a warm session, as a page's are.
//!
//! ```sh
//! ASSET_WORKER_QUEUE_PREFIX=bench cargo run --release --example sign_bench -- \
//!     --requests 500 --batch 100 --concurrency 1 '{"provider":"s3",…}'
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use asset_worker::config::Settings;
use asset_worker::queue::DIRECT_REPLY_TO;
use asset_worker::queue::topology::Names;

struct Options {
    requests: usize,
    batch: usize,
    concurrency: usize,
    source: serde_json::Value,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options { requests: 200, batch: 1, concurrency: 1, source: serde_json::Value::Null };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> anyhow::Result<usize> { Ok(args.next().context("a number")?.parse()?) };
        match arg.as_str() {
            "--requests" => options.requests = number()?,
            "--batch" => options.batch = number()?,
            "--concurrency" => options.concurrency = number()?,
            source => options.source = serde_json::from_str(source).context("the source (a job's, JSON)")?,
        }
    }
    anyhow::ensure!(
        options.source.is_object(),
        "usage: sign_bench [--requests N] [--batch N] [--concurrency N] SOURCE_JSON"
    );
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let settings = Settings::load(None)?;
    asset_worker::cli::runtime()?.block_on(run(&settings, &options))
}

async fn run(settings: &Settings, options: &Options) -> anyhow::Result<()> {
    let connection =
        Connection::connect(settings.amqp_url.expose_secret(), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let mut answers = channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "sign-bench".into(),
            BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
            FieldTable::default(),
        )
        .await?;
    let sign_queue = Names::new(&settings.queue_prefix).sign;
    let objects = vec![options.source.clone(); options.batch];
    let publish = |n: usize| {
        let (channel, sign_queue) = (channel.clone(), sign_queue.clone());
        let request_id = format!("bench-{n}");
        let body = serde_json::json!({"schema": 1, "request_id": request_id, "objects": objects});
        async move {
            let properties = BasicProperties::default()
                .with_reply_to(DIRECT_REPLY_TO.into())
                .with_correlation_id(request_id.as_str().into());
            let sent = Instant::now();
            let options = BasicPublishOptions::default();
            let body = serde_json::to_vec(&body)?;
            channel.basic_publish("".into(), sign_queue.as_str().into(), options, &body, properties).await?;
            anyhow::Ok((request_id, sent))
        }
    };
    // One answer: its request id and how many URLs it holds.
    let mut answer = async || -> anyhow::Result<(String, usize)> {
        let delivery = tokio::time::timeout(Duration::from_secs(30), answers.next())
            .await
            .context("no answer within 30 s: is a worker serving the prefix?")?
            .context("the reply consumer ended")??;
        let id = delivery.properties.correlation_id().as_ref().map(|id| id.to_string()).unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&delivery.data)?;
        let urls =
            answer["urls"].as_array().map_or(0, |urls| urls.iter().filter(|u| u["url"].is_string()).count());
        anyhow::ensure!(urls == options.batch, "request {id}: {urls} of {} signed: {answer}", options.batch);
        Ok((id, urls))
    };
    // The warm-up request, alone: it assumes the role.
    publish(0).await?;
    answer().await?;
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    let mut round_trips = Vec::with_capacity(options.requests);
    let (mut next, mut signed) = (1, 0);
    let started = Instant::now();
    while round_trips.len() < options.requests {
        while next <= options.requests && sent_at.len() < options.concurrency.max(1) {
            let (id, sent) = publish(next).await?;
            sent_at.insert(id, sent);
            next += 1;
        }
        let (id, urls) = answer().await?;
        if let Some(sent) = sent_at.remove(&id) {
            round_trips.push(sent.elapsed());
            signed += urls;
        }
    }
    let elapsed = started.elapsed();
    round_trips.sort();
    let percentile = |p: f64| {
        let index = ((round_trips.len() as f64 * p).ceil() as usize).clamp(1, round_trips.len()) - 1;
        round_trips[index].as_secs_f64() * 1000.0
    };
    println!(
        "{}",
        serde_json::json!({
            "batch": options.batch, "concurrency": options.concurrency, "requests": round_trips.len(),
            "p50_ms": (percentile(0.50) * 100.0).round() / 100.0,
            "p99_ms": (percentile(0.99) * 100.0).round() / 100.0,
            "max_ms": (percentile(1.0) * 100.0).round() / 100.0,
            "urls_per_second": (signed as f64 / elapsed.as_secs_f64()).round(),
            "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        })
    );
    let _ = connection.close(200, "done".into()).await;
    Ok(())
}
