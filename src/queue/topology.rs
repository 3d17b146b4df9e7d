//! The queues and exchanges of DESIGN §2, declared idempotently at start by every process
//! that uses them (worker, `enqueue`, `results`), so none depends on another having run first.
//!
//! ```text
//! {p}.process  quorum, x-delivery-limit ──dead letters──▶ {p}.dlx (fanout) ──▶ {p}.process.dead
//! {p}.results  (fanout exchange) ──▶ {p}.results  quorum
//! ```
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
        }
    }
}

/// Declares the whole topology. Declaring what exists with the same arguments is a no-op;
/// with other arguments the broker closes the channel and the error names the object.
pub async fn declare(channel: &Channel, names: &Names, delivery_limit: u32) -> Result<(), QueueError> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    for exchange in [&names.dead_letter_exchange, &names.results_exchange] {
        channel
            .exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(|source| QueueError::Topology { name: format!("exchange {exchange}"), source })?;
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
    for (queue, arguments) in [
        (&names.process, process_arguments),
        (&names.dead_letter_queue, quorum()),
        (&names.results_queue, quorum()),
    ] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                arguments,
            )
            .await
            .map_err(|source| QueueError::Topology { name: format!("queue {queue}"), source })?;
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
            .map_err(|source| QueueError::Topology {
                name: format!("binding {exchange} → {queue}"),
                source,
            })?;
    }
    Ok(())
}

/// Checks that the topology's exchanges and queues exist, declaring nothing: passive
/// declares, which need no `configure` right, for a broker where an operator pre-declared
/// them (`ASSET_WORKER_DECLARE_TOPOLOGY=false`, deploy/rabbitmq/definitions.json). Arguments
/// are not compared; a missing object fails with its name.
pub async fn check(channel: &Channel, names: &Names) -> Result<(), QueueError> {
    let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    for exchange in [&names.dead_letter_exchange, &names.results_exchange] {
        channel
            .exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, passive, FieldTable::default())
            .await
            .map_err(|source| QueueError::Topology { name: format!("exchange {exchange}"), source })?;
    }
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    for queue in [&names.process, &names.dead_letter_queue, &names.results_queue] {
        channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .map_err(|source| QueueError::Topology { name: format!("queue {queue}"), source })?;
    }
    Ok(())
}

/// Quorum queues: replicated, and the only kind that counts deliveries (`x-delivery-count`),
/// which the ack policy's retry budget relies on.
fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments
}
