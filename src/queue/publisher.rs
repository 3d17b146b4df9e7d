//! Confirmed publishing: a message counts as sent only when the broker has confirmed it
//! (stored it in the queue's replicas). The consumer acks a job only after its result is
//! confirmed, so a crash between the two duplicates a result, never loses one.
//!
//! A failed publish says what the caller must do ([`QueueError`]): the broker did not take
//! the message but the channel lives (`Publish`: try again later); the channel or connection
//! is gone (`PublisherLost`: end the session); or the broker closed the channel refusing a
//! message (`MessageRefused`, 406). RabbitMQ fails every publish pending on a channel it closes
//! with the same error, so `MessageRefused` alone cannot say *which* message was refused:
//! [`ConfirmedPublisher::publish_alone`] sends one again on a channel of its own, where a
//! second refusal can only be that message's.

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Connection};

use super::QueueError;
use super::trace::TraceContext;
use crate::job::JobResult;

/// AMQP `delivery_mode` that makes the broker keep a message across restarts.
const PERSISTENT: u8 = 2;

/// A channel in confirm mode. Cheap to clone; lapin's channel is safe to share between tasks,
/// and each publish waits only for its own confirm.
#[derive(Clone)]
pub struct ConfirmedPublisher {
    channel: Channel,
}

/// What a result carries back from its job's message: the caller's `correlation_id` (for
/// RPC-style callers) and the job's trace, continued ([`TraceContext::result_headers`]).
#[derive(Debug, Clone, Default)]
pub struct Echo {
    pub correlation_id: Option<String>,
    pub trace: Option<TraceContext>,
}

/// Where a message goes: an exchange, or a queue by name through the default exchange
/// (a job's `reply_to`, the process queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Exchange(String),
    Queue(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Exchange(name) => write!(f, "exchange {name}"),
            Destination::Queue(name) => write!(f, "queue {name}"),
        }
    }
}

impl ConfirmedPublisher {
    /// Opens a channel of its own on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection) -> Result<ConfirmedPublisher, QueueError> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(ConfirmedPublisher { channel })
    }

    /// Publishes a job's result, with what it echoes of the job's message.
    pub async fn publish_result(
        &self,
        result: &JobResult,
        destination: &Destination,
        echo: &Echo,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_vec(result).map_err(|e| QueueError::Publish {
            destination: destination.to_string(),
            problem: format!("the result does not serialise: {e}"),
        })?;
        let mut properties = json_properties(Some(&result.job_id));
        if let Some(correlation_id) = &echo.correlation_id {
            // Echoed from the job's own properties, so it fits a short string already.
            if let Ok(correlation_id) = lapin::types::ShortString::try_new(correlation_id.as_str()) {
                properties = properties.with_correlation_id(correlation_id);
            }
        }
        if let Some(trace) = &echo.trace {
            properties = properties.with_headers(trace.result_headers());
        }
        self.publish(destination, &body, properties).await
    }

    /// Publishes one result on a confirm channel of its own, opened on `connection` and closed
    /// after: a `MessageRefused` from here is this message's own (nothing else was pending on
    /// the channel), so the job can be settled for good rather than sent round again.
    pub async fn publish_alone(
        connection: &Connection,
        result: &JobResult,
        destination: &Destination,
        echo: &Echo,
    ) -> Result<(), QueueError> {
        let alone = ConfirmedPublisher::open(connection).await.map_err(|error| match error {
            QueueError::Broker(source) => {
                QueueError::PublisherLost { destination: destination.to_string(), source }
            }
            other => other,
        })?;
        let published = alone.publish_result(result, destination, echo).await;
        alone.close().await;
        published
    }

    /// Publishes `body` and waits for the broker's confirm. `mandatory`: a message no queue
    /// takes (a deleted `reply_to` queue, an unbound exchange) is an error, not a silent loss —
    /// except to RabbitMQ's direct reply-to, which is no queue: the broker hands the message to
    /// the caller's channel, and with `mandatory` it also returns it as unroutable (seen on
    /// RabbitMQ 3.10: every answer delivered *and* returned), which would send a job's answer a
    /// second time to the results exchange. A caller gone from direct reply-to loses its answer,
    /// as with any RPC over it.
    pub async fn publish(
        &self,
        destination: &Destination,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), QueueError> {
        let (exchange, routing_key) = match destination {
            Destination::Exchange(name) => (name.as_str(), ""),
            Destination::Queue(name) => ("", name.as_str()),
        };
        let failed = |problem: String| QueueError::Publish { destination: destination.to_string(), problem };
        let confirmation = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: !is_direct_reply_to(destination),
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
            .map_err(|source| channel_failed(destination, source))?
            .await
            .map_err(|source| channel_failed(destination, source))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => {
                Err(QueueError::Unroutable { destination: destination.to_string() })
            }
            Confirmation::Nack(_) => Err(failed("the broker refused it (nack)".into())),
            Confirmation::NotRequested => Err(failed("the channel is not in confirm mode".into())),
        }
    }

    /// Closes the channel, after every publish has been confirmed.
    pub async fn close(&self) {
        // Best effort at shutdown: a failure here changes nothing for the jobs.
        let _ = self.channel.close(200, "worker stopping".into()).await;
    }
}

/// Whether `destination` is a caller's direct reply-to pseudo-queue.
fn is_direct_reply_to(destination: &Destination) -> bool {
    matches!(destination, Destination::Queue(name) if name.starts_with(super::DIRECT_REPLY_TO))
}

/// A publish that failed in lapin (not a nack or a return): the channel is closed or closing,
/// refusing a message (406) or for another reason (a missing exchange, a lost connection).
fn channel_failed(destination: &Destination, source: lapin::Error) -> QueueError {
    let destination = destination.to_string();
    if super::is_precondition_failed(&source) {
        QueueError::MessageRefused { destination, source }
    } else {
        QueueError::PublisherLost { destination, source }
    }
}

/// Persistent JSON, with `message_id` = the job id (DESIGN §2) so consumers can deduplicate.
/// An id longer than an AMQP short string (255 bytes; the worker refuses such jobs, `enqueue`
/// may send one to test it) is left out rather than allowed to panic the publisher.
pub fn json_properties(job_id: Option<&str>) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT);
    match job_id.and_then(|id| lapin::types::ShortString::try_new(id).ok()) {
        Some(job_id) => properties.with_message_id(job_id),
        None => properties,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::broker_said;
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};

    #[test]
    fn a_refused_message_is_told_from_a_dead_channel() {
        let results = Destination::Exchange("assets.results".into());
        let refused =
            channel_failed(&results, broker_said(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)));
        assert!(matches!(refused, QueueError::MessageRefused { .. }), "{refused:?}");
        let closed =
            lapin::ErrorKind::InvalidChannelState(lapin::ChannelState::Closed, "basic.publish").into();
        for gone in [broker_said(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)), closed] {
            let error = channel_failed(&results, gone);
            assert!(matches!(error, QueueError::PublisherLost { .. }), "{error:?}");
        }
    }
}
