//! asset-worker: reads customers' assets through delegated access and extracts metadata.
//!
//! # Layout
//!
//! - [`job`]: the wire types (data types, statuses, error kinds) shared by every part.
//! - [`extract`]: one file's bytes in, its metadata out.
//!   - [`extract::sniff`]: the format from magic numbers, never from the name.
//!   - [`extract::image`], [`extract::video`], [`extract::audio`], [`extract::pdf`],
//!     [`extract::dicom`], [`extract::text`]: one extractor per data type, headers only.
//!   - [`extract::isobmff`]: the MP4/MOV/HEIF box reader that video, audio and image share.
//!   - [`extract::pdf_objects`]: a PDF's objects by range, from its cross-reference data.
//! - [`access`]: delegated access: a job's source → a short-lived signed URL (S3 through an
//!   assumed role, GCS through an impersonated service account) or a local file.
//! - [`config`]: typed settings: defaults → TOML file → `ASSET_WORKER_*` environment.
//! - [`fetch`]: a signed URL → memory or a private temp file that fills, range by range, as
//!   the parser asks: only the bytes it touches are downloaded, on the worker's runtime.
//! - [`sandbox`]: the pool of warm, locked-down parser children that read objects only
//!   through byte ranges the worker serves them: a hostile file costs one answer.
//! - [`pipeline`]: one object top-down: mint → first block → extract in a pool child → report.
//! - [`display`]: display URLs for the platform's page, a batch per request, through the
//!   same delegated access (served over the broker by [`queue::signing`], and by `sign`).
//! - [`queue`]: AMQP: topology (with the retry queues), confirmed publisher, the consumer
//!   loop, its ack policy and reconnection with backoff, each job's trace context.
//! - [`telemetry`]: JSON logs, Prometheus metrics, `/healthz` `/readyz` `/metrics`.
//! - [`cli`]: the one-shot subcommands (`extract`, `sign`, `check`) and the queue ones
//!   (`run`, `enqueue`, `results`).

pub mod access;
pub mod cli;
pub mod config;
pub mod display;
pub mod extract;
pub mod fetch;
pub mod job;
pub mod pipeline;
pub mod queue;
pub mod sandbox;
pub mod telemetry;
