//! The worker's loop (vector's AMQP source, mini-redis's shutdown): `basic_qos` →
//! `basic_consume` → one `select!` over shutdown, finished jobs and deliveries. Each delivery
//! becomes a task that runs the job, publishes its result with a confirm, **then** settles
//! the delivery by the ack policy of DESIGN §2:
//!
//! | outcome | result published | delivery |
//! |---|---|---|
//! | succeeded, or failed for good (`not_found`, `corrupt`, …) | yes | ack |
//! | `transient`, attempts left | no | copied to its retry queue (confirmed), then ack |
//! | `transient`, the retry queue did not take it | no | nack, requeue |
//! | `transient`, last allowed attempt | yes, `retryable: true` | ack |
//! | not a job (not JSON, wrong schema, unknown provider, no ExternalId) | `invalid_job`, if a job id is readable | reject, dead-lettered |
//! | the broker did not take the result (nack, returned) | no | nack, requeue |
//! | the broker refuses the result itself (over its `max_message_size`) | no | reject, dead-lettered, counted in `asset_worker_results_unpublishable_total` |
//! | the publisher's channel or connection died | no | none: the session ends and the broker gives the job out again |
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
//! re-declares the topology and consumes again. So does a dead publisher: when the broker
//! closes the results channel (a deleted results exchange, a refused message), every later
//! publish would fail and every job loop back to the queue while `/readyz` said 200, so the
//! first task that sees it ends the session. Before the tasks of a lost session are
//! abandoned, those already publishing and settling finish (a few milliseconds, bounded by
//! [`SETTLING_GRACE`]): a result refused by the broker is then sent once more alone
//! ([`ConfirmedPublisher::publish_alone`]) to tell *which* message was refused, and only that
//! job is dead-lettered; the others are acked on their answer or given back.
//!
//! Declaring the topology fails the same way when the broker goes away mid-declare, and is
//! retried the same way. Only a refusal of the declaration itself (406 PRECONDITION_FAILED: a
//! queue exists with other arguments) stops the worker: no retry can mend it.

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
use lapin::{Acker, BasicProperties, Channel, Connection};
use tokio::sync::{RwLock, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::publisher::{ConfirmedPublisher, Destination, Echo};
use super::reconnect::Backoff;
use super::signing::{self, Served, SignRules, Signing};
use super::topology::{self, Names};
use super::trace::TraceContext;
use super::{QueueError, connect, reply_to_allowed};
use crate::access::providers::Access;
use crate::config::Settings;
use crate::job::{ErrorBody, ErrorKind, InvalidJob, InvalidJobReason, Job, JobResult, WorkerInfo};
use crate::pipeline::{Pipeline, Processed, process_source};
use crate::telemetry::{self, Readiness, metric};

/// How long a broker session must have lasted for its loss to start the backoff afresh.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// How long to wait for deliveries the broker had already sent before the cancel took effect.
const PREFETCHED_GRACE: Duration = Duration::from_millis(500);

/// How long a lost session waits for the jobs that are publishing and settling before it
/// abandons them. On a dead channel or connection lapin fails their confirms at once; this
/// only bounds a connection that hangs without closing.
const SETTLING_GRACE: Duration = Duration::from_secs(5);

/// What the worker needs besides the broker, built once at start.
pub struct WorkerParts {
    pub access: Access,
    pub pipeline: Pipeline,
    /// Set while connected and consuming (`/readyz`).
    pub readiness: Readiness,
}

/// Everything a delivery's task (a job or a signing request) shares with the others, across
/// broker sessions.
struct JobContext {
    access: Access,
    /// Its pool of parser children bounds the CPU-bound part of jobs, however large the
    /// prefetch (which exceeds the cores to hide the latency of minting and fetching).
    pipeline: Pipeline,
    names: Names,
    worker: WorkerInfo,
    delivery_limit: u32,
    retry_delays_seconds: Vec<u64>,
    /// What a job's or a signing request's `reply_to` must start with.
    reply_to_prefix: String,
    /// The longest a display URL may live (`ASSET_WORKER_DISPLAY_URL_TTL_SECONDS`).
    display_url_ttl: Duration,
}

/// Deliveries taken but not yet acked, nacked or rejected: what shutdown hands back.
type Unsettled = Arc<Mutex<HashMap<DeliveryTag, Acker>>>;

/// One connection to the broker, with the topology declared, a confirmed publisher and a
/// consumer of the process queue subscribed with prefetch = `ASSET_WORKER_CONCURRENCY`.
/// (Also what the benchmark's no-op consumer runs on, so the two compare like for like.)
pub struct Session {
    /// Shared with the job tasks, which open a channel of their own on it to publish a
    /// refused result alone.
    pub connection: Arc<Connection>,
    pub channel: Channel,
    pub consumer: lapin::Consumer,
    pub publisher: ConfirmedPublisher,
    /// Signing requests, on channels of their own (`None` when `ASSET_WORKER_SIGN_PREFETCH`
    /// is 0).
    pub signing: Option<Signing>,
}

impl Session {
    pub async fn open(settings: &Settings, names: &Names) -> Result<Session, QueueError> {
        let connection = connect(settings).await?;
        let channel = connection.create_channel().await?;
        if settings.declare_topology {
            topology::declare(&channel, names, settings.delivery_limit, &settings.retry_delays_seconds)
                .await?;
        } else {
            topology::check(&channel, names, &settings.retry_delays_seconds, settings.sign_prefetch > 0)
                .await?;
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
        let signing = match settings.sign_prefetch {
            0 => None,
            prefetch => Some(Signing::open(&connection, names, prefetch).await?),
        };
        Ok(Session { connection: Arc::new(connection), channel, consumer, publisher, signing })
    }

    /// Closes what is still open; best effort (the broker requeues anything unsettled when
    /// the channel closes anyway).
    pub async fn close(self, reason: &str) {
        if let Some(signing) = self.signing {
            signing.close(reason).await;
        }
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
        retry_delays_seconds: settings.retry_delays_seconds.clone(),
        reply_to_prefix: settings.reply_to_prefix(),
        display_url_ttl: Duration::from_secs(settings.display_url_ttl_seconds),
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
                let retry_in_ms = wait.as_millis() as u64;
                if let QueueError::Connect(_) = error {
                    tracing::warn!(%error, retry_in_ms, "the broker is unreachable");
                } else {
                    // Connected, then lost it while declaring or subscribing (a reset, a node
                    // shutting down, a permission missing for now): a lost session.
                    tracing::warn!(%error, retry_in_ms, "the session with the broker failed while opening; retrying");
                }
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

/// What a job task holds of the session it was delivered on.
#[derive(Clone)]
struct SessionLink {
    publisher: ConfirmedPublisher,
    /// For a result sent again alone after the broker closed the publisher's channel.
    connection: Arc<Connection>,
    /// Tells the session's loop that the publisher is dead, so the session must end.
    lost: mpsc::UnboundedSender<QueueError>,
    /// Held shared by each task while it publishes and settles; the loop of a lost session
    /// takes it exclusively before abandoning the tasks, so a result on its way gets its
    /// answer (or its verdict) instead of being cut off between publish and settlement.
    settling: Arc<RwLock<()>>,
}

impl SessionLink {
    fn lose(&self, error: QueueError) {
        // The loop may have ended already (another task said it first): nothing to tell.
        let _ = self.lost.send(error);
    }
}

/// One session's loop: one `select!` over shutdown, a dead publisher, finished jobs and
/// deliveries.
async fn consume(
    mut session: Session,
    context: &Arc<JobContext>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    drain: Duration,
    readiness: &Readiness,
) -> SessionEnd {
    let unsettled: Unsettled = Arc::default();
    let mut in_flight = JoinSet::new();
    // Signing requests: their own tasks and deliveries (delivery tags count per channel).
    let signing_unsettled: Unsettled = Arc::default();
    let mut signing_in_flight = JoinSet::new();
    let (lost_sender, mut publisher_lost) = mpsc::unbounded_channel();
    let link = SessionLink {
        publisher: session.publisher.clone(),
        connection: Arc::clone(&session.connection),
        lost: lost_sender,
        settling: Arc::default(),
    };
    let lost = loop {
        tokio::select! {
            // Shutdown is checked first: once asked to stop, no new job starts even if a
            // delivery is ready at the same moment.
            biased;
            () = shutdown.as_mut() => break None,
            // A task's publish found the publisher's channel or connection dead: every later
            // result would fail too, so this session is over (the loop holds a sender itself,
            // so this never ends on its own).
            Some(error) = publisher_lost.recv() => break Some(error),
            // Reap finished tasks so the set holds only running jobs. A task that panicked
            // settled its delivery on the way out (settle_even_on_panic); an error here is
            // an abort, which only shutdown and a lost session do.
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a job task ended abnormally");
                }
            }
            Some(joined) = signing_in_flight.join_next(), if !signing_in_flight.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "a signing task ended abnormally");
                }
            }
            // A signing request: listed first so that a page never waits behind a job that is
            // ready at the same moment. Bounded by the signing prefetch, as jobs are by theirs.
            request = next_request(&mut session.signing) => match request {
                Some(Ok(delivery)) => {
                    let (tag, acker) = (delivery.delivery_tag, delivery.acker.clone());
                    lock(&signing_unsettled).insert(tag, acker.clone());
                    let publisher = session.signing.as_ref().map(|signing| signing.publisher.clone());
                    let task = serve_signing_request(
                        delivery,
                        Arc::clone(context),
                        link.clone(),
                        publisher.expect("a signing request comes with its publisher"),
                        Arc::clone(&signing_unsettled),
                    );
                    signing_in_flight.spawn(settle_even_on_panic(tag, acker, Arc::clone(&signing_unsettled), task));
                }
                Some(Err(error)) => break Some(QueueError::Broker(error)),
                None => break Some(QueueError::ConsumerCancelled { queue: context.names.sign.clone() }),
            },
            // The next job. No bound is needed here: the broker sends at most `prefetch`
            // unsettled deliveries, so the prefetch is the bound on jobs in flight.
            delivery = session.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    let (tag, acker) = (delivery.delivery_tag, delivery.acker.clone());
                    lock(&unsettled).insert(tag, acker.clone());
                    let task =
                        handle_delivery(delivery, Arc::clone(context), link.clone(), Arc::clone(&unsettled));
                    in_flight.spawn(settle_even_on_panic(tag, acker, Arc::clone(&unsettled), task));
                }
                Some(Err(error)) => break Some(QueueError::Broker(error)),
                None => break Some(QueueError::ConsumerCancelled { queue: context.names.process.clone() }),
            },
        }
    };
    if let Some(error) = lost {
        readiness.set(false);
        // Jobs publishing or settling finish first (see SETTLING_GRACE); the rest are
        // abandoned: their deliveries die with the channel and the broker hands them out again.
        let _settled = tokio::time::timeout(SETTLING_GRACE, link.settling.write()).await;
        // Unanswered signing requests go back with their channel, like jobs.
        for tasks in [&mut in_flight, &mut signing_in_flight] {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        session.close("connection lost").await;
        return SessionEnd::Lost(error);
    }
    readiness.set(false);
    tracing::info!("asked to stop: taking no more jobs");
    if let Some(signing) = &mut session.signing {
        stop_consuming(&signing.channel, &mut signing.consumer, &signing_unsettled).await;
    }
    stop_consuming(&session.channel, &mut session.consumer, &unsettled).await;
    // One deadline for both: a signing task stuck on its cloud must not add to the jobs'.
    tokio::join!(
        drain_in_flight(&mut signing_in_flight, &signing_unsettled, drain),
        drain_in_flight(&mut in_flight, &unsettled, drain),
    );
    session.close("worker stopping").await;
    SessionEnd::Shutdown
}

/// The next signing request, or never when this worker serves none.
async fn next_request(signing: &mut Option<Signing>) -> Option<lapin::Result<Delivery>> {
    match signing {
        Some(signing) => signing.consumer.next().await,
        None => std::future::pending().await,
    }
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

/// Runs a delivery's task ([`handle_delivery`], [`serve_signing_request`]) behind a panic
/// boundary. A bug that panics a task must not leave its delivery unsettled, holding a
/// prefetch slot until shutdown (two such messages would stop a 2-slot worker): the delivery
/// is dead-lettered (it would panic again on every delivery), with a log line and
/// `asset_worker_deliveries_total{settlement="dead_letter"}`.
async fn settle_even_on_panic(
    tag: DeliveryTag,
    acker: Acker,
    unsettled: Unsettled,
    task: impl Future<Output = ()>,
) {
    use futures_lite::FutureExt;
    let handled = std::panic::AssertUnwindSafe(task).catch_unwind().await;
    if let Err(panic) = handled {
        let why = crate::extract::panic_message(panic.as_ref());
        tracing::error!(panic = %why, "a delivery's task panicked; its delivery is dead-lettered");
        if acker.usable() {
            settle(&acker, Settlement::DeadLetter).await;
        }
        lock(&unsettled).remove(&tag);
    }
}

/// One signing request, start to settlement ([`signing::serve`]): acked when answered (or
/// its caller is gone), rejected when it cannot be answered, left to the broker when the
/// session is lost.
async fn serve_signing_request(
    delivery: Delivery,
    context: Arc<JobContext>,
    link: SessionLink,
    publisher: ConfirmedPublisher,
    unsettled: Unsettled,
) {
    let rules = SignRules {
        access: &context.access,
        max_ttl: context.display_url_ttl,
        worker: &context.worker,
        reply_to_prefix: &context.reply_to_prefix,
    };
    let settlement = match signing::serve(&delivery, &rules, &publisher).await {
        Served::Settled => Settlement::AckAfterPublish,
        // Nothing to dead-letter into: a signing request is worth nothing once its page is gone.
        Served::Unanswered => Settlement::DeadLetter,
        Served::Lost(error) => {
            link.lose(error);
            return;
        }
    };
    settle(&delivery.acker, settlement).await;
    lock(&unsettled).remove(&delivery.delivery_tag);
}

/// One delivery, start to settlement. Never panics on the message's content: every path
/// settles the delivery or leaves it for shutdown (or the broker, when the session is lost)
/// to hand back.
async fn handle_delivery(
    delivery: Delivery,
    context: Arc<JobContext>,
    link: SessionLink,
    unsettled: Unsettled,
) {
    let _in_flight = InFlight::start();
    let results_exchange = Destination::Exchange(context.names.results_exchange.clone());
    let reply_to = delivery.properties.reply_to().as_ref().map(|queue| queue.as_str().to_owned());
    let reply_to = reply_to.filter(|queue| !queue.is_empty());
    let reply_allowed = |queue: &str| reply_to_allowed(queue, &context.reply_to_prefix);
    let destination = match &reply_to {
        Some(queue) if reply_allowed(queue) => Destination::Queue(queue.clone()),
        _ => results_exchange.clone(),
    };
    let echo = Echo {
        correlation_id: delivery.properties.correlation_id().as_ref().map(|id| id.as_str().to_owned()),
        trace: TraceContext::from_headers(delivery.properties.headers().as_ref()),
    };
    let parsed = Job::parse(&delivery.data).and_then(|job| match &reply_to {
        Some(queue) if !reply_allowed(queue) => Err(InvalidJob {
            job_id: Some(job.job_id),
            reason: InvalidJobReason::ReplyToRefused(queue.clone()),
        }),
        _ => Ok(job),
    });
    let job = match parsed {
        Ok(job) => job,
        Err(invalid) => {
            let job_id = invalid
                .job_id
                .clone()
                .or_else(|| delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned()))
                .filter(|id| !id.is_empty());
            tracing::warn!(
                job_id = job_id.as_deref().unwrap_or("-"),
                trace_id = echo.trace.as_ref().map(|trace| trace.trace_id.as_str()),
                problem = %invalid,
                "invalid job, dead-lettered"
            );
            telemetry::job_answered(None, Some(ErrorKind::InvalidJob), &Default::default());
            let _settling = link.settling.read().await;
            if let Some(job_id) = job_id {
                let mut result = JobResult::failed(
                    job_id,
                    None,
                    ErrorBody::new(ErrorKind::InvalidJob, invalid.to_string()),
                    &context.worker,
                );
                // The job is dead-lettered whether or not its answer gets out: a delivery that
                // can never succeed must not come back.
                let sent = send_answer(&link, &mut result, &destination, &results_exchange, &echo).await;
                if let Some(error) = sent.problem() {
                    tracing::error!(job_id = %result.job_id, error = %error, "the invalid_job result was not published");
                }
            }
            settle(&delivery.acker, Settlement::DeadLetter).await;
            lock(&unsettled).remove(&delivery.delivery_tag);
            return;
        }
    };
    // Every line logged for this job, here and in the pipeline's task, carries its ids.
    // … and the trace the backend started, when its message carried one.
    let trace_id = echo.trace.as_ref().map(|trace| trace.trace_id.as_str());
    let span = tracing::info_span!("job", job_id = %job.job_id, asset_id = %job.asset_id, trace_id);
    async move {
        let previous_attempts = previous_attempts(delivery.properties.headers());
        let processed = run_job(&job, &context).await;
        // From here on the job is settling: a lost session waits for it (SessionLink::settling).
        let _settling = link.settling.read().await;
        let mut result = JobResult::from_processed(&job, processed, &context.worker);
        result.attempt = previous_attempts + 1;
        let last_attempt = is_last_delivery(previous_attempts, context.delivery_limit);
        let settlement = match &mut result.outcome.error {
            Some(error) if error.kind == ErrorKind::Transient && !last_attempt => Settlement::RetryLater,
            Some(error) if error.kind == ErrorKind::Transient => {
                error.retryable = true;
                error.message = format!(
                    "{} (gave up after {} attempts; the job may be enqueued again)",
                    error.message,
                    previous_attempts + 1
                );
                Settlement::AckAfterPublish
            }
            _ => Settlement::AckAfterPublish,
        };
        let error_kind = result.outcome.error.as_ref().map(|error| error.kind);
        let settlement = match settlement {
            Settlement::AckAfterPublish => {
                match send_answer(&link, &mut result, &destination, &results_exchange, &echo).await {
                    Sent::Confirmed => {
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
                        Some(Settlement::AckAfterPublish)
                    }
                    Sent::NotTaken(error) => {
                        // Unconfirmed: acking would lose the answer. Requeued, the job runs
                        // again (bounded by the delivery limit).
                        tracing::error!(%error, "the result was not published; the job goes back to the queue");
                        Some(Settlement::Requeue)
                    }
                    Sent::Unpublishable(error) => {
                        // Sent alone and refused again: it would be refused on every delivery.
                        let result_bytes = serde_json::to_vec(&result).map_or(0, |body| body.len());
                        metrics::counter!(metric::RESULTS_UNPUBLISHABLE).increment(1);
                        tracing::error!(
                            %error,
                            result_bytes,
                            "the broker refuses this job's result (larger than its max_message_size?); the job is dead-lettered unanswered"
                        );
                        Some(Settlement::DeadLetter)
                    }
                    Sent::SessionLost => {
                        tracing::warn!("the result was not published: the session is lost and the broker gives the job out again");
                        None
                    }
                }
            }
            Settlement::RetryLater => {
                let message = result.outcome.error.as_ref().map(|error| error.message.as_str());
                let delay = retry_delay(&context.retry_delays_seconds, previous_attempts);
                let queue = context.names.retry_queue(delay);
                match retry_later(&link, &delivery, result.attempt, &queue).await {
                    Ok(()) => {
                        tracing::warn!(
                            error = message,
                            attempt = result.attempt,
                            retry_in_seconds = delay,
                            "transient failure, retried later"
                        );
                        Some(Settlement::RetryLater)
                    }
                    Err(error @ (QueueError::Publish { .. } | QueueError::Unroutable { .. })) => {
                        tracing::error!(%error, "the job could not be put in its retry queue; it goes back to the queue now");
                        Some(Settlement::Requeue)
                    }
                    Err(error) => {
                        link.lose(error);
                        None
                    }
                }
            }
            other => Some(other),
        };
        // Unsettled when the session is lost: the broker requeues it as the connection closes.
        if let Some(settlement) = settlement {
            settle(&delivery.acker, settlement).await;
            lock(&unsettled).remove(&delivery.delivery_tag);
        }
    }
    .instrument(span)
    .await;
}

/// What became of a result the worker tried to send.
enum Sent {
    /// The broker confirmed it: the job may be acked.
    Confirmed,
    /// The broker did not take it, but the channel lives: another attempt may succeed.
    NotTaken(QueueError),
    /// Sent alone, the broker refused it again (406): every attempt would be refused.
    Unpublishable(QueueError),
    /// The publisher's channel or connection died: the session's loop has been told.
    SessionLost,
}

impl Sent {
    /// What to log when a result did not get out and the job will not be answered by this
    /// attempt (nothing for a lost session: its loop logs the cause).
    fn problem(self) -> Option<QueueError> {
        match self {
            Sent::NotTaken(error) | Sent::Unpublishable(error) => Some(error),
            Sent::Confirmed | Sent::SessionLost => None,
        }
    }
}

/// Publishes a result on the session's publisher. A dead publisher ends the session; when
/// the broker closed its channel refusing a message, the result is sent again alone, which
/// tells whether it is this one that the broker refuses (see the publisher module).
async fn send_result(link: &SessionLink, result: &JobResult, destination: &Destination, echo: &Echo) -> Sent {
    let error = match link.publisher.publish_result(result, destination, echo).await {
        Ok(()) => return Sent::Confirmed,
        Err(error @ (QueueError::Publish { .. } | QueueError::Unroutable { .. })) => {
            return Sent::NotTaken(error);
        }
        Err(error) => error,
    };
    let refused = matches!(error, QueueError::MessageRefused { .. });
    // The shared channel is dead whichever message it was: the next session opens another
    // and re-declares what may have gone (a deleted results exchange).
    link.lose(error);
    if !refused {
        return Sent::SessionLost;
    }
    match ConfirmedPublisher::publish_alone(&link.connection, result, destination, echo).await {
        Ok(()) => Sent::Confirmed,
        Err(error @ QueueError::MessageRefused { .. }) => Sent::Unpublishable(error),
        Err(error @ (QueueError::Publish { .. } | QueueError::Unroutable { .. })) => Sent::NotTaken(error),
        Err(_) => Sent::SessionLost,
    }
}

/// Sends a job's answer to `destination`; when that is the job's `reply_to` and no queue by
/// that name takes it (its caller went away), to the results exchange instead, with
/// `reply_to_unroutable` naming the queue: an answer is not lost for want of its caller, nor
/// its job sent round until the delivery limit dead-letters it unanswered.
async fn send_answer(
    link: &SessionLink,
    result: &mut JobResult,
    destination: &Destination,
    results_exchange: &Destination,
    echo: &Echo,
) -> Sent {
    match (send_result(link, result, destination, echo).await, destination) {
        (Sent::NotTaken(QueueError::Unroutable { .. }), Destination::Queue(queue)) => {
            tracing::warn!(reply_to = %queue, "no queue takes the job's reply_to; its answer goes to the results exchange");
            metrics::counter!(metric::REPLIES_UNROUTABLE).increment(1);
            result.reply_to_unroutable = Some(queue.clone());
            send_result(link, result, results_exchange, echo).await
        }
        (sent, _) => sent,
    }
}

/// Runs the pipeline behind a panic boundary (a bug costs this job an `internal` result, not
/// the worker).
async fn run_job(job: &Job, context: &Arc<JobContext>) -> Processed {
    let mut pipeline = context.pipeline.clone();
    pipeline.options = pipeline.options.for_job(job);
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
    /// Back to the queue for another attempt at once (the broker counts it against the
    /// limit): when the retry queue could not take it.
    Requeue,
    /// Copied to its retry queue (confirmed), then acked: the next attempt comes after the
    /// delay, and the copy carries the attempts made so far.
    RetryLater,
    /// Never retried: to the dead-letter queue.
    DeadLetter,
}

impl Settlement {
    /// The `settlement` label of `asset_worker_deliveries_total`.
    fn as_str(self) -> &'static str {
        match self {
            Settlement::AckAfterPublish => "ack",
            Settlement::Requeue => "requeue",
            Settlement::RetryLater => "retry_later",
            Settlement::DeadLetter => "dead_letter",
        }
    }
}

async fn settle(acker: &Acker, settlement: Settlement) {
    let settled = match settlement {
        Settlement::AckAfterPublish | Settlement::RetryLater => acker.ack(BasicAckOptions::default()).await,
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

/// The header a job copied to a retry queue carries: the attempts made before it.
const ATTEMPTS_HEADER: &str = "x-asset-worker-attempts";

/// Attempts made at this job before this delivery: those its retries carried
/// ([`ATTEMPTS_HEADER`]) and this message's own deliveries handed back (a lost worker).
fn previous_attempts(headers: &Option<FieldTable>) -> u64 {
    header_count(headers, ATTEMPTS_HEADER) + header_count(headers, "x-delivery-count")
}

/// The delay before the attempt after `previous_attempts + 1` failed: the list's entry for
/// this retry, its last for any later one.
fn retry_delay(delays_seconds: &[u64], previous_attempts: u64) -> u64 {
    let index =
        usize::try_from(previous_attempts).unwrap_or(usize::MAX).min(delays_seconds.len().saturating_sub(1));
    delays_seconds.get(index).copied().unwrap_or(1)
}

/// Publishes the job as it came (body, ids, `reply_to`, headers) to `retry_queue`, with the
/// attempts made so far, and waits for the broker's confirm. The broker's own counters
/// (`x-delivery-count`, `x-death`) stay behind: the copy is a new message.
async fn retry_later(
    link: &SessionLink,
    delivery: &Delivery,
    attempts: u64,
    retry_queue: &str,
) -> Result<(), QueueError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    let mut kept = FieldTable::default();
    for (name, value) in headers.inner() {
        if !matches!(
            name.as_str(),
            "x-delivery-count"
                | "x-death"
                | "x-first-death-exchange"
                | "x-first-death-queue"
                | "x-first-death-reason"
                | "x-last-death-exchange"
                | "x-last-death-queue"
                | "x-last-death-reason"
        ) {
            kept.insert(name.clone(), value.clone());
        }
    }
    kept.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongLongInt(i64::try_from(attempts).unwrap_or(i64::MAX)));
    headers = kept;
    let source = &delivery.properties;
    let mut properties = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(content_type) = source.content_type() {
        properties = properties.with_content_type(content_type.clone());
    }
    if let Some(message_id) = source.message_id() {
        properties = properties.with_message_id(message_id.clone());
    }
    if let Some(reply_to) = source.reply_to() {
        properties = properties.with_reply_to(reply_to.clone());
    }
    if let Some(correlation_id) = source.correlation_id() {
        properties = properties.with_correlation_id(correlation_id.clone());
    }
    link.publisher.publish(&Destination::Queue(retry_queue.to_owned()), &delivery.data, properties).await
}

/// A count the broker or the worker put in a header (absent: 0; whatever integer type).
fn header_count(headers: &Option<FieldTable>, name: &str) -> u64 {
    let Some(value) = headers.as_ref().and_then(|headers| headers.inner().get(name)) else {
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
    fn attempts_are_read_from_both_counts_whatever_their_integer_type() {
        let mut headers = FieldTable::default();
        assert_eq!(previous_attempts(&None), 0);
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        assert_eq!(previous_attempts(&Some(headers.clone())), 3);
        headers.insert(ATTEMPTS_HEADER.into(), AMQPValue::LongInt(2));
        assert_eq!(
            previous_attempts(&Some(headers.clone())),
            5,
            "two retries, then three deliveries handed back"
        );
        headers.insert("x-delivery-count".into(), AMQPValue::LongInt(-1));
        assert_eq!(previous_attempts(&Some(headers)), 2);
    }

    #[test]
    fn each_retry_waits_its_delay_and_later_ones_the_last() {
        let delays = [5, 30, 120];
        let waits: Vec<u64> = (0..5).map(|previous| retry_delay(&delays, previous)).collect();
        assert_eq!(waits, [5, 30, 120, 120, 120]);
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
