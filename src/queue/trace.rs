//! W3C Trace Context through the worker (OpenTelemetry's messaging conventions for RabbitMQ):
//! the backend that enqueues a job puts its trace in the message's `traceparent` (and
//! `tracestate`) headers; the worker logs the trace id on every line of that job and puts the
//! trace back on the result, as a child of the job's span, so the backend's trace runs
//! through the processing and back. No exporter: the ids are enough to join the logs of
//! every service that saw the job.
//!
//! ```text
//! traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//!              version-trace id (16 bytes)-parent span id (8 bytes)-flags
//! ```
//! A header that does not parse is ignored (the job runs untraced), as the standard asks.

use lapin::types::{AMQPValue, FieldTable, LongString};

/// The trace header and its vendor companion (W3C Trace Context §3).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// The most of `tracestate` carried on (the standard's 32 entries of at most 256 bytes fit).
const MAX_TRACESTATE_BYTES: usize = 8192;

/// The trace a job belongs to, as its message carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// The span of whoever published the job: 16 lower-case hex digits, not all zero.
    pub parent_id: String,
    /// Two hex digits (01: sampled).
    pub flags: String,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The trace in a message's headers, if it carries a valid `traceparent`.
    pub fn from_headers(headers: Option<&FieldTable>) -> Option<TraceContext> {
        let headers = headers?.inner();
        let parent = text(headers.get(TRACEPARENT)?)?;
        let mut context = TraceContext::parse(&parent)?;
        context.tracestate = headers
            .get(TRACESTATE)
            .and_then(text)
            .filter(|state| state.len() <= MAX_TRACESTATE_BYTES && state.is_ascii());
        Some(context)
    }

    /// Parses a version-00 `traceparent` (later versions are read by their first four fields,
    /// as the standard says).
    fn parse(value: &str) -> Option<TraceContext> {
        let mut fields = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let hex = |field: &str, len: usize| {
            field.len() == len && field.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zero = |field: &str| field.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || fields.next().is_none())
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(parent_id, 16)
            && !zero(parent_id)
            && hex(flags, 2);
        valid.then(|| TraceContext {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: flags.to_owned(),
            tracestate: None,
        })
    }

    /// The headers of the result: the same trace, with the worker's span for this job as the
    /// parent (a new span id), and the job's `tracestate` passed on.
    pub fn result_headers(&self) -> FieldTable {
        let span_id = loop {
            let id = format!("{:016x}", fastrand::u64(..));
            if id != "0000000000000000" {
                break id;
            }
        };
        let mut headers = FieldTable::default();
        let parent = format!("00-{}-{span_id}-{}", self.trace_id, self.flags);
        headers.insert(TRACEPARENT.into(), AMQPValue::LongString(LongString::from(parent)));
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE.into(), AMQPValue::LongString(LongString::from(state.as_str())));
        }
        headers
    }
}

/// A header's text (AMQP has two string types; publishers use either).
fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> FieldTable {
        let mut table = FieldTable::default();
        for (name, value) in pairs {
            table.insert((*name).into(), AMQPValue::LongString(LongString::from(*value)));
        }
        table
    }

    #[test]
    fn a_valid_traceparent_is_read_and_continued_with_a_new_span() {
        let job = headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "vendor=abc"),
        ]);
        let context = TraceContext::from_headers(Some(&job)).unwrap();
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.tracestate.as_deref(), Some("vendor=abc"));
        let result = context.result_headers();
        let continued = TraceContext::from_headers(Some(&result)).unwrap();
        assert_eq!(
            (continued.trace_id.as_str(), continued.flags.as_str()),
            (context.trace_id.as_str(), "01")
        );
        assert_ne!(continued.parent_id, context.parent_id, "the worker's own span");
        assert_eq!(continued.tracestate, context.tracestate);
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for value in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(
                TraceContext::from_headers(Some(&headers(&[("traceparent", value)]))),
                None,
                "{value:?}"
            );
        }
        // A later version may carry more fields.
        let later =
            headers(&[("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more")]);
        assert!(TraceContext::from_headers(Some(&later)).is_some());
        assert_eq!(TraceContext::from_headers(None), None);
    }
}
