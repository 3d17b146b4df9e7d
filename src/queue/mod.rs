//! AMQP, the worker's only door to the platform: the topology of DESIGN §2
//! ([`topology`]), results published with publisher confirms ([`publisher`]), and the
//! consumer loop that runs jobs and applies the ack policy ([`consumer`]), carrying each job's
//! W3C trace context through to its result ([`trace`]); and the signing requests that get a
//! page its display URLs ([`signing`]), served beside the jobs in the same session.
//!
//! Every name derives from `ASSET_WORKER_QUEUE_PREFIX`, so tests and tenants share a broker
//! without seeing each other's messages.

pub mod consumer;
pub mod publisher;
pub mod reconnect;
pub mod signing;
pub mod topology;
pub mod trace;

use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// What went wrong with the broker, by what the operator must do about it.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker can't be reached or refused our credentials: check `ASSET_WORKER_AMQP_URL`.
    #[error(
        "cannot connect to the broker at ASSET_WORKER_AMQP_URL (value not shown: it holds a password): {0}"
    )]
    // Not `#[source]`: the message already ends with lapin's, which names its own cause;
    // a source chain would print the same cause two more times.
    Connect(lapin::Error),
    /// The broker refused the declaration itself (AMQP 406 PRECONDITION_FAILED): a queue or
    /// exchange exists with other arguments (a changed `ASSET_WORKER_DELIVERY_LIMIT`, a classic
    /// queue where a quorum queue is expected). No retry can mend it: delete it or restore the
    /// setting. The worker exits on this one error (status 2).
    #[error(
        "declaring {name}: {source}; if it exists with other arguments, delete it or restore the setting"
    )]
    Topology {
        name: String,
        #[source]
        source: lapin::Error,
    },
    /// A declaration did not complete for any other reason: the connection reset, the node
    /// is shutting down, or the user may not configure the object (403 ACCESS_REFUSED, which an
    /// operator mends on the broker at run time, as with a vhost refused at connect). The
    /// session is lost: reconnect with backoff and declare again.
    #[error("declaring {name}: {source}")]
    DeclarationFailed {
        name: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker did not take a message (nack, returned unroutable) but the channel lives:
    /// it is not confirmed, so the caller must not ack; another attempt may succeed.
    #[error("publishing to {destination}: {problem}")]
    Publish { destination: String, problem: String },
    /// The broker took the message but no queue would (`mandatory`, returned): a `reply_to`
    /// queue that does not exist (its caller went away), an exchange with no queue bound.
    #[error("publishing to {destination}: no queue takes it (returned unroutable)")]
    Unroutable { destination: String },
    /// The broker closed the publishing channel refusing a message (406 PRECONDITION_FAILED:
    /// larger than its `max_message_size`). Every publish pending on that channel fails with
    /// this same error, so it may be this message or one beside it:
    /// [`publisher::ConfirmedPublisher::publish_alone`] tells which. Either way the channel is
    /// dead and the session must end.
    #[error("publishing to {destination}: the broker closed the channel refusing a message: {source}")]
    MessageRefused {
        destination: String,
        #[source]
        source: lapin::Error,
    },
    /// The publishing channel or its connection is gone (a deleted exchange, 404; permission
    /// withdrawn, 403; a reset): nothing more can be published on it. End the session.
    #[error("publishing to {destination}: the channel is gone: {source}")]
    PublisherLost {
        destination: String,
        #[source]
        source: lapin::Error,
    },
    /// The broker ended the subscription (the queue was deleted, or the node is going away).
    #[error("the broker cancelled the consumer of {queue} (was the queue deleted?)")]
    ConsumerCancelled { queue: String },
    /// The channel or connection failed while consuming.
    #[error("AMQP: {0}")]
    Broker(#[from] lapin::Error),
}

/// Whether the broker answered with PRECONDITION_FAILED (406): a refusal of what was asked
/// (a declaration that contradicts what exists, a message over `max_message_size`), which the
/// same request will meet again, unlike a lost connection.
fn is_precondition_failed(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    )
}

/// RabbitMQ's direct reply-to: the queue name a caller's `reply_to` carries when it uses it.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Whether the worker may publish an answer to `queue`: one under `reply_to_prefix`, or the
/// caller's direct reply-to. Without a bound a message could make the worker publish into any
/// queue of the vhost, its own process queue included.
pub fn reply_to_allowed(queue: &str, reply_to_prefix: &str) -> bool {
    queue.starts_with(reply_to_prefix) || queue.starts_with(DIRECT_REPLY_TO)
}

/// Opens a connection to the configured broker, named after this worker in the management UI.
pub async fn connect(settings: &Settings) -> Result<Connection, QueueError> {
    let properties = ConnectionProperties::default().with_connection_name(
        format!("asset-worker {} pid {}", env!("CARGO_PKG_VERSION"), std::process::id()).into(),
    );
    Connection::connect(settings.amqp_url.expose_secret(), properties).await.map_err(QueueError::Connect)
}

#[cfg(test)]
pub(crate) mod tests {
    use lapin::protocol::{AMQPError, AMQPErrorKind};

    /// The error lapin gives when the broker closes a channel or the connection with `kind`.
    pub(crate) fn broker_said(kind: AMQPErrorKind) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "test".into())).into()
    }
}
