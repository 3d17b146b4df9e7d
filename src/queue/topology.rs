//! The queues and exchanges of DESIGN §2, declared idempotently at start by every process
//! that uses them (worker, `enqueue`, `results`), so none depends on another having run first.
//!
//! ```text
//! {p}.process  quorum, x-delivery-limit ──dead letters──▶ {p}.dlx (fanout) ──▶ {p}.process.dead
//! {p}.results  (fanout exchange) ──▶ {p}.results  quorum
//! {p}.retry.{N}s  quorum, x-message-ttl N s ──expired, dead letters──▶ {p}.process
//! {p}.sign     classic, x-message-ttl 30 s (signing requests; answers go to each reply_to)
//! ```
//! A job that failed transiently is published to the retry queue of its delay and acked; no
//! one consumes a retry queue, so the job waits there until it expires back into the process
//! queue (RabbitMQ's own delayed retry, with at-least-once dead-lettering: a node failure
//! while it moves loses nothing).
//! The signing queue is classic, not quorum: a request is worth something for the seconds a
//! page waits for it, so it is not replicated or written to disk before it is served (a
//! quorum queue's consensus round would add to every page's wait), and one not taken within
//! [`SIGN_REQUEST_TTL_MS`] expires unanswered: its caller has given up.
//! Fanout exchanges: routing keys carry no meaning here, and any queue an operator binds
//! (an audit log, a second consumer) gets every message.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::QueueError;

/// Every queue and exchange name of one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Jobs in (quorum queue; published to through the default exchange).
    pub process: String,
    /// Where jobs go that were rejected or delivered too often.
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Results out: the exchange the worker publishes to, and the queue bound to it.
    pub results_exchange: String,
    pub results_queue: String,
    /// Signing requests in (display URLs, DESIGN §2); answers go to each request's `reply_to`.
    pub sign: String,
    /// `{prefix}.retry`: each delay's queue is this with `.{N}s` ([`Names::retry_queue`]).
    retry_prefix: String,
}

impl Names {
    /// The names under `prefix` (`ASSET_WORKER_QUEUE_PREFIX`).
    pub fn new(prefix: &str) -> Names {
        Names {
            process: format!("{prefix}.process"),
            dead_letter_exchange: format!("{prefix}.dlx"),
            dead_letter_queue: format!("{prefix}.process.dead"),
            results_exchange: format!("{prefix}.results"),
            results_queue: format!("{prefix}.results"),
            sign: format!("{prefix}.sign"),
            retry_prefix: format!("{prefix}.retry"),
        }
    }

    /// The queue where a job waits `delay_seconds` before its next attempt.
    pub fn retry_queue(&self, delay_seconds: u64) -> String {
        format!("{}.{delay_seconds}s", self.retry_prefix)
    }
}

/// How long a signing request waits in `{prefix}.sign` for a worker before it expires.
pub const SIGN_REQUEST_TTL_MS: i64 = 30_000;

/// Declares the whole topology. Declaring what exists with the same arguments is a no-op;
/// with other arguments the broker closes the channel (406) and the error,
/// [`QueueError::Topology`], names the object. Any other failure (a reset, a node shutting
/// down mid-declare, 403) is [`QueueError::DeclarationFailed`]: a lost session, not a refusal.
pub async fn declare(
    channel: &Channel,
    names: &Names,
    delivery_limit: u32,
    retry_delays_seconds: &[u64],
) -> Result<(), QueueError> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    for exchange in [&names.dead_letter_exchange, &names.results_exchange] {
        channel
            .exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(declaring(format!("exchange {exchange}")))?;
    }
    let mut process_arguments = quorum();
    process_arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(i32::try_from(delivery_limit).unwrap_or(i32::MAX)),
    );
    process_arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead_letter_exchange.as_str().into()),
    );
    let mut sign_arguments = FieldTable::default();
    sign_arguments.insert("x-queue-type".into(), AMQPValue::LongString("classic".into()));
    sign_arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(SIGN_REQUEST_TTL_MS));
    let mut queues = vec![
        (names.process.clone(), process_arguments),
        (names.dead_letter_queue.clone(), quorum()),
        (names.results_queue.clone(), quorum()),
        (names.sign.clone(), sign_arguments),
    ];
    for delay in retry_delays_seconds {
        let mut arguments = quorum();
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt((*delay * 1000) as i64));
        arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        arguments
            .insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(names.process.as_str().into()));
        // Quorum queues dead-letter at most once unless told otherwise; at-least-once needs
        // publishers held back (not messages dropped) when the queue is full.
        arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
        arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
        let queue = names.retry_queue(*delay);
        if !queues.iter().any(|(name, _)| *name == queue) {
            queues.push((queue, arguments));
        }
    }
    for (queue, arguments) in queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                arguments,
            )
            .await
            .map_err(declaring(format!("queue {queue}")))?;
    }
    for (queue, exchange) in [
        (&names.dead_letter_queue, &names.dead_letter_exchange),
        (&names.results_queue, &names.results_exchange),
    ] {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(declaring(format!("binding {exchange} → {queue}")))?;
    }
    Ok(())
}

/// Checks that the topology's exchanges and queues exist, declaring nothing: passive
/// declares, which need no `configure` right, for a broker where an operator pre-declared
/// them (`ASSET_WORKER_DECLARE_TOPOLOGY=false`, deploy/rabbitmq/definitions.json). Arguments
/// are not compared. A missing object (404) is reported with its name and retried like any
/// failed session (an operator may be importing the definitions); only 406 stops the worker.
/// The signing queue is required only of a worker that serves it (`signing`).
pub async fn check(
    channel: &Channel,
    names: &Names,
    retry_delays_seconds: &[u64],
    signing: bool,
) -> Result<(), QueueError> {
    let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    for exchange in [&names.dead_letter_exchange, &names.results_exchange] {
        channel
            .exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, passive, FieldTable::default())
            .await
            .map_err(declaring(format!("exchange {exchange}")))?;
    }
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let retry_queues = retry_delays_seconds.iter().map(|delay| names.retry_queue(*delay));
    let queues = [names.process.clone(), names.dead_letter_queue.clone(), names.results_queue.clone()];
    let sign_queue = signing.then(|| names.sign.clone());
    for queue in queues.into_iter().chain(sign_queue).chain(retry_queues) {
        channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .map_err(declaring(format!("queue {queue}")))?;
    }
    Ok(())
}

/// The error of declaring `name`, by whether the broker refused it (406: exit) or the
/// session failed under it (anything else: reconnect).
fn declaring(name: String) -> impl FnOnce(lapin::Error) -> QueueError {
    move |source| {
        if super::is_precondition_failed(&source) {
            QueueError::Topology { name, source }
        } else {
            QueueError::DeclarationFailed { name, source }
        }
    }
}

/// Quorum queues: replicated, and the only kind that counts deliveries (`x-delivery-count`),
/// which the ack policy's retry budget relies on.
fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::broker_said;
    use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

    #[test]
    fn only_a_precondition_failed_is_a_refusal_the_rest_is_a_lost_session() {
        let refused =
            declaring("queue q".into())(broker_said(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)));
        assert!(matches!(refused, QueueError::Topology { .. }), "{refused:?}");
        let lost = [
            broker_said(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)),
            broker_said(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)),
            broker_said(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)),
            std::io::Error::from(std::io::ErrorKind::ConnectionReset).into(),
        ];
        for error in lost {
            let error = declaring("queue q".into())(error);
            assert!(matches!(error, QueueError::DeclarationFailed { .. }), "{error:?}");
        }
    }
}
