//! Signing requests over the broker (DESIGN §2 "Signing requests"): the platform's backend
//! asks for a page's display URLs on `{prefix}.sign` (RPC: `reply_to`, `correlation_id`) and
//! gets one answer per request ([`crate::display`]).
//!
//! Requests have a channel, a prefetch (`ASSET_WORKER_SIGN_PREFETCH`) and a confirm channel
//! of their own: a backlog of jobs, which fills the jobs' prefetch and their publisher's
//! confirms, never delays a page. The answer is sent to the request's `reply_to` (bounded as a
//! job's is, RabbitMQ's direct reply-to allowed) as a transient message that expires after
//! [`ANSWER_TTL_MS`] unread: it holds bearer URLs, which a broker should neither write to disk
//! nor keep for a caller that went away.
//!
//! A request is acked once its answer is confirmed or cannot be delivered (no queue by its
//! `reply_to`: the caller gave up), and rejected when it cannot be answered at all (no
//! usable `reply_to`, the broker refused the answer); the signing queue has no dead-letter
//! queue, since a stale request is worth nothing. Each case is a log line and a count in
//! `asset_worker_sign_requests_total{outcome}`.

use std::time::Instant;

use lapin::message::Delivery;
use lapin::options::BasicConsumeOptions;
use lapin::options::BasicQosOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

use super::QueueError;
use super::publisher::{ConfirmedPublisher, Destination};
use super::topology::Names;
use super::trace::TraceContext;
use crate::display::{SignAnswer, SignRequest, sign_batch};
use crate::telemetry::metric;

/// How long an answer waits unread in its caller's queue before the broker drops it.
pub const ANSWER_TTL_MS: u32 = 60_000;

/// The signing side of a broker session: its consumer and its publisher, each on a channel
/// of its own.
pub struct Signing {
    pub channel: Channel,
    pub consumer: lapin::Consumer,
    pub publisher: ConfirmedPublisher,
}

impl Signing {
    /// Subscribes to `{prefix}.sign` with `prefetch` requests at once.
    pub async fn open(connection: &Connection, names: &Names, prefetch: u16) -> Result<Signing, QueueError> {
        let channel = connection.create_channel().await?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                names.sign.as_str().into(),
                format!("asset-worker-sign-{}", std::process::id()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let publisher = ConfirmedPublisher::open(connection).await?;
        tracing::info!(queue = %names.sign, prefetch, "serving signing requests");
        Ok(Signing { channel, consumer, publisher })
    }

    /// Closes both channels; best effort, as for the session.
    pub async fn close(self, reason: &str) {
        self.publisher.close().await;
        let _ = self.channel.close(200, reason.into()).await;
    }
}

/// What became of a request.
pub(super) enum Served {
    /// Answered, or its caller is gone: ack.
    Settled,
    /// It could not be answered: reject (dropped; the caller times out and may ask again).
    Unanswered,
    /// The publisher's channel or connection died: the session must end.
    Lost(QueueError),
}

/// What serving a request needs of the worker.
pub(super) struct SignRules<'a> {
    pub access: &'a crate::access::providers::Access,
    pub max_ttl: std::time::Duration,
    pub worker: &'a crate::job::WorkerInfo,
    /// What a `reply_to` must start with, as a job's (direct reply-to is always allowed).
    pub reply_to_prefix: &'a str,
}

/// Reads, signs and answers one request.
pub(super) async fn serve(
    delivery: &Delivery,
    rules: &SignRules<'_>,
    publisher: &ConfirmedPublisher,
) -> Served {
    let started = Instant::now();
    let properties = &delivery.properties;
    let reply_to =
        properties.reply_to().as_ref().map(|queue| queue.as_str().to_owned()).filter(|q| !q.is_empty());
    let Some(reply_to) = reply_to.filter(|queue| super::reply_to_allowed(queue, rules.reply_to_prefix))
    else {
        tracing::warn!(
            reply_to = properties.reply_to().as_ref().map(|queue| queue.as_str()),
            "a signing request without a reply_to this worker may publish to (ASSET_WORKER_REPLY_TO_PREFIX, or direct reply-to): dropped unanswered"
        );
        return counted("no_reply_to", Served::Unanswered);
    };
    let answer = match SignRequest::parse(&delivery.data) {
        Ok(request) => {
            let answer = sign_batch(rules.access, &request, rules.max_ttl, rules.worker).await;
            for url in &answer.urls {
                let outcome = url.error.as_ref().map_or("signed", |error| error.kind.as_str());
                metrics::counter!(metric::DISPLAY_URLS, "outcome" => outcome).increment(1);
            }
            answer
        }
        Err(invalid) => {
            tracing::warn!(request_id = invalid.request_id.as_deref(), problem = %invalid, "invalid signing request");
            SignAnswer::refused(&invalid, rules.worker)
        }
    };
    let body = match serde_json::to_vec(&answer) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "a signing answer does not serialise");
            return counted("unanswered", Served::Unanswered);
        }
    };
    let mut reply = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(1)
        .with_expiration(ANSWER_TTL_MS.to_string().into());
    if let Some(correlation_id) = properties.correlation_id() {
        reply = reply.with_correlation_id(correlation_id.clone());
    }
    if let Some(trace) = TraceContext::from_headers(properties.headers().as_ref()) {
        reply = reply.with_headers(trace.result_headers());
    }
    let request_id = answer.request_id.as_deref().unwrap_or("-");
    match publisher.publish(&Destination::Queue(reply_to.clone()), &body, reply).await {
        Ok(()) => {
            let seconds = started.elapsed().as_secs_f64();
            metrics::histogram!(metric::SIGN_SECONDS).record(seconds);
            let outcome = if answer.error.is_some() { "invalid" } else { "answered" };
            tracing::debug!(
                request_id,
                urls = answer.urls.len(),
                ms = seconds * 1000.0,
                "signing request answered"
            );
            counted(outcome, Served::Settled)
        }
        Err(QueueError::Unroutable { .. }) => {
            tracing::warn!(request_id, %reply_to, "no queue takes the signing request's reply_to (its caller went away)");
            counted("caller_gone", Served::Settled)
        }
        Err(error @ QueueError::Publish { .. }) => {
            tracing::error!(request_id, %error, "the signing answer was not published");
            counted("unanswered", Served::Unanswered)
        }
        Err(error) => {
            tracing::error!(request_id, %error, "the signing answer was not published");
            counted("unanswered", Served::Lost(error))
        }
    }
}

fn counted(outcome: &'static str, served: Served) -> Served {
    metrics::counter!(metric::SIGN_REQUESTS, "outcome" => outcome).increment(1);
    served
}
