//! The broker's limit, for `bench/e2e.sh`: consumes `{prefix}.process` the way the worker
//! does — the crate's connection, topology and confirmed publisher, prefetch =
//! `ASSET_WORKER_CONCURRENCY`, a task per delivery that publishes a result with a publisher
//! confirm and then acks — but does no work: the result is a tiny JSON object. The rate it
//! sustains is the most the worker could reach on this broker and machine; the gap between the
//! two is the cost of the jobs themselves.
//!
//! ```sh
//! ASSET_WORKER_QUEUE_PREFIX=bench cargo run --release --example noop_consumer   # until SIGTERM/SIGINT
//! ```
//! Settings come from the `ASSET_WORKER_*` environment, as the worker's do. On SIGTERM or
//! SIGINT it cancels its consumer, lets the tasks in flight finish, and exits 0.

use futures_lite::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use asset_worker::config::Settings;
use asset_worker::queue::consumer::Session;
use asset_worker::queue::publisher::{Destination, json_properties};
use asset_worker::queue::topology::Names;

fn main() -> anyhow::Result<()> {
    let settings = Settings::load(None)?;
    // As the worker runs its loop (a task on the runtime's threads), so that the two differ
    // only by the jobs' work.
    asset_worker::cli::run_on_workers(&asset_worker::cli::runtime()?, consume(settings))
}

async fn consume(settings: Settings) -> anyhow::Result<()> {
    let names = Names::new(&settings.queue_prefix);
    // Jobs only: signing requests are the worker's, not a baseline's.
    let settings = Settings { sign_prefetch: 0, ..settings };
    let Session { connection, channel, mut consumer, publisher, signing } =
        Session::open(&settings, &names).await?;
    eprintln!("noop_consumer: consuming {} with prefetch {}", names.process, settings.concurrency);
    let destination = Destination::Exchange(names.results_exchange.clone());
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut in_flight = JoinSet::new();
    let mut answered = 0u64;
    loop {
        tokio::select! {
            biased;
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                joined??;
                answered += 1;
            }
            delivery = consumer.next() => {
                let Some(delivery) = delivery else { break };
                let delivery = delivery?;
                let (publisher, destination) = (publisher.clone(), destination.clone());
                in_flight.spawn(async move {
                    let job_id = delivery.properties.message_id().as_ref().map(|id| id.to_string());
                    let body = serde_json::json!({ "schema": 1, "job_id": job_id, "status": "succeeded", "noop": true });
                    publisher
                        .publish(&destination, &serde_json::to_vec(&body)?, json_properties(job_id.as_deref()))
                        .await?;
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    anyhow::Ok(())
                });
            }
        }
    }
    channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await?;
    while let Some(joined) = in_flight.join_next().await {
        joined??;
        answered += 1;
    }
    eprintln!("noop_consumer: answered {answered} jobs; stopping");
    Session { connection, channel, consumer, publisher, signing }.close("done").await;
    Ok(())
}
