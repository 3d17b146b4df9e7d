//! The worker's loop (vector's AMQP source, mini-redis's shutdown): `basic_qos` →
//! `basic_consume` → one `select!` over shutdown, finished jobs and deliveries. Each delivery
//! becomes a task that runs the job, publishes its result with a confirm, **then** settles
//! the delivery by the ack policy of DESIGN §2:
//!
//! | outcome | result published | delivery |
//! |---|---|---|
//! | succeeded, or failed for good (`not_found`, `corrupt`, …) | yes | ack |
//! | `transient`, deliveries left | no | nack, requeue |
//! | `transient`, last allowed delivery | yes, `retryable: true` | ack |
//! | not a job (not JSON, wrong schema, unknown provider, no ExternalId) | `invalid_job`, if a job id is readable | reject, dead-lettered |
//! | the result could not be published | no | nack, requeue |
//!
//! Only `transient` is retried here. `timeout` and `internal` are retryable for the backend
//! (it may enqueue again) but not requeued by the worker: a file that hangs its parser or
//! trips a bug would do so on every delivery, holding a worker for the whole retry budget.
//!
//! On shutdown the consumer is cancelled, in-flight jobs get a drain deadline, and whatever is
//! still unsettled is nacked back to the queue for another worker.
//!
//! A lost connection (the broker restarted, `rabbitmqctl close_all_connections`, a network
//! cut) ends the session: readiness goes false, the jobs in flight are abandoned (their
//! deliveries died with the channel, so the broker gives them out again: finishing them would
//! only publish duplicates), and the worker reconnects with backoff ([`super::reconnect`]),
//! re-declares the topology and consumes again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, DeliveryTag, FieldTable};
use lapin::{Acker, Channel, Connection};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::publisher::{ConfirmedPublisher, Destination};
use super::reconnect::Backoff;
use super::topology::{self, Names};
use super::{QueueError, connect};
use crate::access::providers::Access;
use crate::config::Settings;
use crate::job::{ErrorBody, ErrorKind, Job, JobResult, WorkerInfo};
use crate::pipeline::{Pipeline, Processed, process_source};
use crate::telemetry::{self, Readiness, metric};

/// How long a broker session must have lasted for its loss to start the backoff afresh.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// How long to wait for deliveries the broker had already sent before the cancel took effect.
const PREFETCHED_GRACE: Duration = Duration::from_millis(500);

/// What the worker needs besides the broker, built once at start.
pub struct WorkerParts {
    pub access: Access,
    pub pipeline: Pipeline,
    /// Set while connected and consuming (`/readyz`).
    pub readiness: Readiness,
}

/// Everything a job task shares with the others, across broker sessions.
struct JobContext {
    access: Access,
    /// Its pool of parser children bounds the CPU-bound part of jobs, however large the
    /// prefetch (which exceeds the cores to hide the latency of minting and fetching).
    pipeline: Pipeline,
    names: Names,
    worker: WorkerInfo,
    delivery_limit: u32,
}

/// Deliveries taken but not yet acked, nacked or rejected: what shutdown hands back.
type Unsettled = Arc<Mutex<HashMap<DeliveryTag, Acker>>>;

/// One connection to the broker, with the topology declared, a confirmed publisher and a
/// consumer of the process queue subscribed with prefetch = `ASSET_WORKER_CONCURRENCY`.
/// (Also what the benchmark's no-op consumer runs on, so the two compare like for like.)
pub struct Session {
    pub connection: Connection,
    pub channel: Channel,
    pub consumer: lapin::Consumer,
    pub publisher: ConfirmedPublisher,
}

impl Session {
    pub async fn open(settings: &Settings, names: &Names) -> Result<Session, QueueError> {
        let connection = connect(settings).await?;
        let channel = connection.create_channel().await?;
        if settings.declare_topology {
            topology::declare(&channel, names, settings.delivery_limit).await?;
        } else {
            topology::check(&channel, names).await?;
        }
        let publisher = ConfirmedPublisher::open(&connection).await?;
        let prefetch = u16::try_from(settings.concurrency).unwrap_or(u16::MAX);
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                names.process.as_str().into(),
                format!("asset-worker-{}", std::process::id()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = %names.process, prefetch, "consuming");
        Ok(Session { connection, channel, consumer, publisher })
    }

    /// Closes what is still open; best effort (the broker requeues anything unsettled when
    /// the channel closes anyway).
    pub async fn close(self, reason: &str) {
        self.publisher.close().await;
        let _ = self.channel.close(200, reason.into()).await;
        let _ = self.connection.close(200, reason.into()).await;
    }
}

/// How a session ended.
enum SessionEnd {
    /// Asked to stop: drained and closed.
    Shutdown,
    /// The connection, channel or consumer failed: reconnect.
    Lost(QueueError),
}

/// Runs the worker until `shutdown` resolves, then drains. Reconnects whenever the broker is
/// lost; returns an error only for what reconnecting cannot mend (a topology that conflicts
/// with the settings), and the process then exits non-zero.
pub async fn run(
    settings: &Settings,
    parts: WorkerParts,
    shutdown: impl Future<Output = ()>,
) -> Result<(), QueueError> {
    let context = Arc::new(JobContext {
        access: parts.access,
        pipeline: parts.pipeline,
        worker: WorkerInfo::current(&settings.region),
        delivery_limit: settings.delivery_limit,
        names: Names::new(&settings.queue_prefix),
    });
    let readiness = parts.readiness;
    let drain = Duration::from_secs(settings.drain_timeout_seconds);
    let mut backoff = Backoff::default();
    let mut sessions = 0u64;
    tokio::pin!(shutdown);
    loop {
        let opened = tokio::select! {
            biased;
            () = &mut shutdown => break,
            opened = Session::open(settings, &context.names) => opened,
        };
        let session = match opened {
            Ok(session) => session,
            // The broker answered and refused the declaration: no retry will change that.
            Err(error @ QueueError::Topology { .. }) => return Err(error),
            Err(error) => {
                let wait = backoff.next_wait();
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "the broker is unreachable");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        if sessions > 0 {
            metrics::counter!(metric::RECONNECTS).increment(1);
            tracing::info!(reconnects = sessions, "reconnected to the broker");
        }
        sessions += 1;
        readiness.set(true);
        let opened_at = Instant::now();
        let ended = consume(session, &context, &mut shutdown, drain, &readiness).await;
        readiness.set(false);
        let SessionEnd::Lost(error) = ended else { break };
        // A session that lived counts as a success: reconnect at once. One lost soon after it
        // opened (a flapping broker, a channel closed at every subscribe) counts as a failed
        // attempt, so the waits keep growing instead of looping.
        let wait = if opened_at.elapsed() >= STABLE_SESSION {
            backoff.reset();
            Duration::ZERO
        } else {
            backoff.next_wait()
        };
        tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "lost the broker; reconnecting");
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// One session's loop: one `select!` over shutdown, finished jobs and deliveries.
async fn consume(
    mut session: Session,
    context: &Arc<JobContext>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    drain: Duration,
    readiness: &Readiness,
) -> SessionEnd {
    let unsettled: Unsettled = Arc::default();
    let mut in_flight = JoinSet::new();
    let lost = loop {
        tokio::select! {
            // Shutdown is checked first: once asked to stop, no new job starts even if a
            // delivery is ready at the same moment.
            biased;
            () = shutdown.as_mut() => break None,
            // Reap finished tasks so the set holds only running jobs. A task that panicked
            // settled its delivery on the way out (settle_even_on_panic); an error here is
            // an abort, which only shutdown and a lost session do.
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a job task ended abnormally");
                }
            }
            // The next job. No bound is needed here: the broker sends at most `prefetch`
            // unsettled deliveries, so the prefetch is the bound on jobs in flight.
            delivery = session.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    lock(&unsettled).insert(delivery.delivery_tag, delivery.acker.clone());
                    let task = settle_even_on_panic(
                        delivery,
                        Arc::clone(context),
                        session.publisher.clone(),
                        Arc::clone(&unsettled),
                    );
                    in_flight.spawn(task);
                }
                Some(Err(error)) => break Some(QueueError::Broker(error)),
                None => break Some(QueueError::ConsumerCancelled { queue: context.names.process.clone() }),
            },
        }
    };
    if let Some(error) = lost {
        // The deliveries died with the channel: the broker hands them out again.
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
        session.close("connection lost").await;
        return SessionEnd::Lost(error);
    }
    readiness.set(false);
    tracing::info!("asked to stop: taking no more jobs");
    stop_consuming(&session.channel, &mut session.consumer, &unsettled).await;
    drain_in_flight(&mut in_flight, &unsettled, drain).await;
    session.close("worker stopping").await;
    SessionEnd::Shutdown
}

/// Cancels the consumer so the broker sends nothing more, and hands back deliveries it had
/// already sent that no job took yet.
async fn stop_consuming(channel: &Channel, consumer: &mut lapin::Consumer, unsettled: &Unsettled) {
    if let Err(error) = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await {
        tracing::warn!(%error, "cancelling the consumer");
    }
    while let Ok(Some(Ok(delivery))) = tokio::time::timeout(PREFETCHED_GRACE, consumer.next()).await {
        requeue(&delivery.acker).await;
        lock(unsettled).remove(&delivery.delivery_tag);
    }
}

/// Lets in-flight jobs finish until `deadline`, then abandons the rest and nacks their
/// deliveries back to the queue (another worker will run them from the start).
async fn drain_in_flight(in_flight: &mut JoinSet<()>, unsettled: &Unsettled, deadline: Duration) {
    let running = in_flight.len();
    if running > 0 {
        tracing::info!(in_flight = running, "draining");
    }
    let all_done = async { while in_flight.join_next().await.is_some() {} };
    if tokio::time::timeout(deadline, all_done).await.is_err() {
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
    }
    let left: Vec<Acker> = lock(unsettled).drain().map(|(_, acker)| acker).collect();
    let mut requeued = 0;
    for acker in left {
        // An aborted task may have settled its delivery already; its acker then refuses.
        if acker.usable() {
            requeue(&acker).await;
            requeued += 1;
        }
    }
    if requeued > 0 {
        tracing::warn!(requeued, "drain deadline passed; jobs handed back");
    }
}

/// Counts a job in `asset_worker_jobs_in_flight` for as long as it lives, however it ends
/// (settled, aborted at the drain deadline or when the connection is lost).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        metrics::gauge!(metric::IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(metric::IN_FLIGHT).decrement(1.0);
    }
}

/// Runs [`handle_delivery`] behind a panic boundary. A bug that panics a job's task must not
/// leave its delivery unsettled, holding a prefetch slot until shutdown (two such messages
/// would stop a 2-slot worker): the delivery is dead-lettered (it would panic again on every
/// delivery), with a log line and `asset_worker_deliveries_total{settlement="dead_letter"}`.
async fn settle_even_on_panic(
    delivery: Delivery,
    context: Arc<JobContext>,
    publisher: ConfirmedPublisher,
    unsettled: Unsettled,
) {
    use futures_lite::FutureExt;
    let (tag, acker) = (delivery.delivery_tag, delivery.acker.clone());
    let handled =
        std::panic::AssertUnwindSafe(handle_delivery(delivery, context, publisher, Arc::clone(&unsettled)))
            .catch_unwind()
            .await;
    if let Err(panic) = handled {
        let why = crate::extract::panic_message(panic.as_ref());
        tracing::error!(panic = %why, "a job's task panicked; its delivery is dead-lettered");
        if acker.usable() {
            settle(&acker, Settlement::DeadLetter).await;
        }
        lock(&unsettled).remove(&tag);
    }
}

/// One delivery, start to settlement. Never panics on the message's content: every path
/// settles the delivery or leaves it for shutdown to hand back.
async fn handle_delivery(
    delivery: Delivery,
    context: Arc<JobContext>,
    publisher: ConfirmedPublisher,
    unsettled: Unsettled,
) {
    let _in_flight = InFlight::start();
    let destination = match delivery.properties.reply_to() {
        Some(queue) if !queue.as_str().is_empty() => Destination::Queue(queue.as_str().to_owned()),
        _ => Destination::Exchange(context.names.results_exchange.clone()),
    };
    let correlation_id = delivery.properties.correlation_id().as_ref().map(|id| id.as_str().to_owned());
    let job = match Job::parse(&delivery.data) {
        Ok(job) => job,
        Err(invalid) => {
            let job_id = invalid
                .job_id
                .clone()
                .or_else(|| delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned()))
                .filter(|id| !id.is_empty());
            tracing::warn!(job_id = job_id.as_deref().unwrap_or("-"), problem = %invalid, "invalid job, dead-lettered");
            telemetry::job_answered(None, Some(ErrorKind::InvalidJob), &Default::default());
            if let Some(job_id) = job_id {
                let result = JobResult::failed(
                    job_id,
                    None,
                    ErrorBody::new(ErrorKind::InvalidJob, invalid.to_string()),
                    &context.worker,
                );
                // The job is dead-lettered whether or not its answer gets out: a delivery that
                // can never succeed must not come back.
                if let Err(error) =
                    publisher.publish_result(&result, &destination, correlation_id.as_deref()).await
                {
                    tracing::error!(job_id = %result.job_id, %error, "the invalid_job result was not published");
                }
            }
            settle(&delivery.acker, Settlement::DeadLetter).await;
            lock(&unsettled).remove(&delivery.delivery_tag);
            return;
        }
    };
    // Every line logged for this job, here and in the pipeline's task, carries its ids.
    let span = tracing::info_span!("job", job_id = %job.job_id, asset_id = %job.asset_id);
    async move {
        let previous_deliveries = delivery_count(delivery.properties.headers());
        let processed = run_job(&job, &context).await;
        let mut result = JobResult::from_processed(&job, processed, &context.worker);
        let last_delivery = is_last_delivery(previous_deliveries, context.delivery_limit);
        let settlement = match &mut result.outcome.error {
            Some(error) if error.kind == ErrorKind::Transient && !last_delivery => Settlement::Requeue,
            Some(error) if error.kind == ErrorKind::Transient => {
                error.retryable = true;
                error.message = format!(
                    "{} (gave up after {} deliveries; the job may be enqueued again)",
                    error.message,
                    previous_deliveries + 1
                );
                Settlement::AckAfterPublish
            }
            _ => Settlement::AckAfterPublish,
        };
        let error_kind = result.outcome.error.as_ref().map(|error| error.kind);
        let settlement = match settlement {
            Settlement::AckAfterPublish => {
                match publisher.publish_result(&result, &destination, correlation_id.as_deref()).await {
                    Ok(()) => {
                        let data_type = result.outcome.data_type.or(job.data_type);
                        telemetry::job_answered(data_type, error_kind, &result.stats);
                        let outcome = error_kind.map_or("succeeded", ErrorKind::as_str);
                        let message = result.outcome.error.as_ref().map(|error| error.message.as_str());
                        tracing::info!(
                            outcome,
                            data_type = data_type.map_or("unknown", |t| t.as_str()),
                            total_ms = result.stats.total_ms,
                            bytes_fetched = result.stats.bytes_fetched,
                            error = message,
                            "job done"
                        );
                        Settlement::AckAfterPublish
                    }
                    Err(error) => {
                        // Unconfirmed: acking would lose the answer. Requeued, the job runs
                        // again (bounded by the delivery limit).
                        tracing::error!(%error, "the result was not published; the job goes back to the queue");
                        Settlement::Requeue
                    }
                }
            }
            other => {
                let message = result.outcome.error.as_ref().map(|error| error.message.as_str());
                tracing::warn!(error = message, deliveries = previous_deliveries + 1, "transient failure, requeued");
                other
            }
        };
        settle(&delivery.acker, settlement).await;
        lock(&unsettled).remove(&delivery.delivery_tag);
    }
    .instrument(span)
    .await;
}

/// Runs the pipeline behind a panic boundary (a bug costs this job an `internal` result, not
/// the worker).
async fn run_job(job: &Job, context: &Arc<JobContext>) -> Processed {
    let mut pipeline = context.pipeline.clone();
    pipeline.options.hint = job.data_type;
    let (task_context, source, job_id) = (Arc::clone(context), job.source.clone(), job.job_id.clone());
    let task = async move { process_source(&task_context.access, &source, &job_id, &pipeline).await };
    let handle = tokio::spawn(task.in_current_span());
    // A spawned task outlives the future that awaits it: a job abandoned at the drain deadline
    // or with a lost broker must stop its pipeline too (which kills its child).
    let _abort = AbortOnDrop(handle.abort_handle());
    handle.await.unwrap_or_else(|error| internal(format!("the job's task failed: {error}")))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn internal(message: String) -> Processed {
    Processed {
        outcome: Err(ErrorBody::new(ErrorKind::Internal, message)),
        size_bytes: None,
        stats: Default::default(),
    }
}

/// How a delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settlement {
    /// The result is confirmed: done.
    AckAfterPublish,
    /// Back to the queue for another attempt (the broker counts it against the limit).
    Requeue,
    /// Never retried: to the dead-letter queue.
    DeadLetter,
}

impl Settlement {
    /// The `settlement` label of `asset_worker_deliveries_total`.
    fn as_str(self) -> &'static str {
        match self {
            Settlement::AckAfterPublish => "ack",
            Settlement::Requeue => "requeue",
            Settlement::DeadLetter => "dead_letter",
        }
    }
}

async fn settle(acker: &Acker, settlement: Settlement) {
    let settled = match settlement {
        Settlement::AckAfterPublish => acker.ack(BasicAckOptions::default()).await,
        Settlement::Requeue => {
            acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await
        }
        Settlement::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
    };
    match settled {
        Ok(_) => metrics::counter!(metric::DELIVERIES, "settlement" => settlement.as_str()).increment(1),
        // The channel is gone: the broker requeues the delivery itself.
        Err(error) => tracing::error!(%error, ?settlement, "settling a delivery failed"),
    }
}

async fn requeue(acker: &Acker) {
    settle(acker, Settlement::Requeue).await;
}

/// How many times this message was delivered before and handed back (`x-delivery-count`,
/// set by quorum queues; absent on the first delivery).
fn delivery_count(headers: &Option<FieldTable>) -> u64 {
    let Some(value) = headers.as_ref().and_then(|headers| headers.inner().get("x-delivery-count")) else {
        return 0;
    };
    let count = match value {
        AMQPValue::LongLongInt(n) => i128::from(*n),
        AMQPValue::LongInt(n) => i128::from(*n),
        AMQPValue::LongUInt(n) => i128::from(*n),
        AMQPValue::ShortInt(n) => i128::from(*n),
        AMQPValue::ShortUInt(n) => i128::from(*n),
        AMQPValue::ShortShortInt(n) => i128::from(*n),
        AMQPValue::ShortShortUInt(n) => i128::from(*n),
        _ => 0,
    };
    u64::try_from(count).unwrap_or(0)
}

/// Whether a transient failure now must be answered rather than requeued. Counted
/// conservatively (`previous + 1 >= limit`): the worker gives up on the `limit`-th delivery,
/// before the broker could dead-letter the job silently with no result.
fn is_last_delivery(previous_deliveries: u64, delivery_limit: u32) -> bool {
    previous_deliveries + 1 >= u64::from(delivery_limit)
}

/// The unsettled map is only held for an insert or a remove; a poisoned lock still holds
/// valid data.
fn lock(unsettled: &Unsettled) -> std::sync::MutexGuard<'_, HashMap<DeliveryTag, Acker>> {
    unsettled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_count_header_is_read_whatever_its_integer_type() {
        let mut headers = FieldTable::default();
        assert_eq!(delivery_count(&None), 0);
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        assert_eq!(delivery_count(&Some(headers.clone())), 3);
        headers.insert("x-delivery-count".into(), AMQPValue::LongInt(-1));
        assert_eq!(delivery_count(&Some(headers)), 0);
    }

    #[test]
    fn the_last_delivery_is_answered_before_the_broker_dead_letters_it() {
        assert!(!is_last_delivery(0, 5));
        assert!(!is_last_delivery(3, 5));
        assert!(is_last_delivery(4, 5));
        assert!(is_last_delivery(9, 5));
        assert!(is_last_delivery(0, 1));
    }
}
