//! What operators see of a running worker: JSON log lines (`tracing`), Prometheus metrics
//! (the `metrics` facade, rendered by metrics-exporter-prometheus) and the HTTP endpoints
//! that probes and scrapers call, on `ASSET_WORKER_HTTP_ADDR`:
//!
//! | path | answers |
//! |---|---|
//! | `/healthz` | 200 while the process serves requests (liveness: a restart would not help otherwise) |
//! | `/readyz` | 200 while connected to the broker and consuming; 503 while (re)connecting or draining, or while parser children fail to start; the body also says which protections the parser children run under |
//! | `/metrics` | Prometheus text format, the metrics of [`metric`] |
//!
//! Labels are bounded: an outcome is `succeeded` or one of the nine error kinds, a data type
//! one of six (or `unknown`), a stage one of four. Job ids, keys and buckets are never labels
//! (unbounded), and a signed URL is never anywhere: logs name jobs by id and asset id only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::job::{DataType, ErrorKind};
use crate::pipeline::Stats;

/// Liveness probe path.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness probe path.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus scrape path.
pub const METRICS_PATH: &str = "/metrics";

/// The log filter when `RUST_LOG` is not set: our own events from `info`, other crates'
/// only when something is wrong.
const DEFAULT_LOG_FILTER: &str = "warn,asset_worker=info";

/// The most connections the endpoints serve at once (a kubelet's probes and a scraper or two
/// need a handful).
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection is kept, requests and keep-alive together.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How often histograms are compacted (the exporter leaves this to its user).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Histogram buckets for the `_seconds` metrics: from a signing request's millisecond and a
/// local file's few to the minutes a large remote video may take.
const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Every metric the worker exports, by name (dashboards and alerts are written against these).
pub mod metric {
    /// Jobs answered, by `outcome` (`succeeded` or an error kind) and `data_type`.
    pub const JOBS: &str = "asset_worker_jobs_total";
    /// Time per stage of a job (`stage`: sign, fetch, extract, total).
    pub const STAGE_SECONDS: &str = "asset_worker_stage_seconds";
    /// Bytes downloaded from customers' buckets.
    pub const BYTES_FETCHED: &str = "asset_worker_fetched_bytes_total";
    /// Jobs running now (taken from the queue, not yet settled).
    pub const IN_FLIGHT: &str = "asset_worker_jobs_in_flight";
    /// Deliveries settled, jobs and signing requests, by `settlement` (ack, retry_later,
    /// requeue, dead_letter).
    pub const DELIVERIES: &str = "asset_worker_deliveries_total";
    /// Broker connections re-established after a loss.
    pub const RECONNECTS: &str = "asset_worker_broker_reconnects_total";
    /// Results the broker refused even when sent alone (larger than its `max_message_size`):
    /// their jobs were dead-lettered unanswered.
    pub const RESULTS_UNPUBLISHABLE: &str = "asset_worker_results_unpublishable_total";
    /// 1 while connected and consuming, else 0 (what `/readyz` answers).
    pub const READY: &str = "asset_worker_ready";
    /// Parser children started (the pool's warm-up and every replacement).
    pub const CHILDREN_STARTED: &str = "asset_worker_children_started_total";
    /// Parser children retired, by `reason` (max_jobs, died, timeout, panicked, abandoned,
    /// protocol, start_failed).
    pub const CHILDREN_RETIRED: &str = "asset_worker_children_retired_total";
    /// 1 for each protection the parser children reported as holding, else 0 (`protection`:
    /// no_new_privs, not_dumpable, no_core_files, landlock, seccomp).
    pub const CHILD_PROTECTION: &str = "asset_worker_child_protection";
    /// Answers whose job's `reply_to` queue did not exist, sent to the results exchange instead.
    pub const REPLIES_UNROUTABLE: &str = "asset_worker_replies_unroutable_total";
    /// Connections to the health and metrics endpoints closed on arrival: the cap was reached.
    pub const HTTP_REFUSED: &str = "asset_worker_http_connections_refused_total";
    /// Signing requests, by `outcome`: answered, invalid (answered with the request's error),
    /// caller_gone (no queue by its reply_to), no_reply_to and unanswered (dropped).
    pub const SIGN_REQUESTS: &str = "asset_worker_sign_requests_total";
    /// Display URLs asked for, by `outcome`: signed, or the error kind of the object.
    pub const DISPLAY_URLS: &str = "asset_worker_display_urls_total";
    /// From a signing request's delivery to its answer's confirm.
    pub const SIGN_SECONDS: &str = "asset_worker_sign_request_seconds";
    /// Fetched bytes the jobs hold now, in memory and temp files (at most the fetch budget,
    /// `ASSET_WORKER_FETCH_BUDGET_MB`).
    pub const FETCH_BUDGET_HELD: &str = "asset_worker_fetch_budget_held_bytes";
    /// Jobs waiting now for other jobs to give back budget before they can fetch.
    pub const FETCH_BUDGET_WAITING: &str = "asset_worker_fetch_budget_waiting_jobs";
    /// Jobs whose time limit came while they waited for budget (answered `transient`).
    pub const FETCH_BUDGET_STARVED: &str = "asset_worker_fetch_budget_starved_total";
}

/// Log lines: one JSON object per line on stderr for the worker (`json`), plain text for the
/// interactive commands. `RUST_LOG` overrides the default filter, within the ceiling on other
/// crates (`third_party_ceiling`).
/// A second call is a no-op (tests run several commands in one process).
pub fn init_logging(json: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let filter = filter.and(tracing_subscriber::filter::filter_fn(third_party_ceiling));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = if json {
        // Event fields flattened beside `message`; the job span's fields (job_id, asset_id)
        // under `span`, on every line logged inside it.
        layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        layer.with_target(false).with_filter(filter).boxed()
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Other crates may log at `info` and above only, whatever `RUST_LOG` asks: below that, the
/// AWS SDK traces canonical requests with the session token in them, HTTP clients trace
/// headers, and a signed URL or credential must never reach a log line (DESIGN §1).
fn third_party_ceiling(metadata: &tracing::Metadata<'_>) -> bool {
    // lapin logs every message the broker returns, body and all, at `warn`: a job's result, or
    // a signing answer full of bearer URLs. The worker handles returns itself and logs them
    // without the body (`reply_to_unroutable`, `caller_gone`).
    if metadata.target() == "lapin::returned_messages" {
        return false;
    }
    metadata.target().starts_with("asset_worker") || *metadata.level() <= tracing::Level::INFO
}

/// Whether the worker is ready: shared by the consumer (which sets it) and `/readyz`; and a
/// line on its parser children's protections, for the same body, and whether they fail to
/// start (then every job would fail: not ready either).
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    parsers: Arc<std::sync::OnceLock<String>>,
    parsers_failing: Arc<std::sync::OnceLock<ParsersFailing>>,
}

/// Asked at each `/readyz`: whether the parser children fail to start.
type ParsersFailing = Box<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("ready", &self.ready).field("parsers", &self.parsers).finish()
    }
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
        metrics::gauge!(metric::READY).set(if ready { 1.0 } else { 0.0 });
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Says, once, under which protections the parser children run (a line of `/readyz`).
    pub fn describe_parsers(&self, line: String) {
        let _ = self.parsers.set(line);
    }

    /// Makes `/readyz` ask `failing` whether the parser children fail to start (the pool's
    /// `children_failing`), once.
    pub fn watch_parsers(&self, failing: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.parsers_failing.set(Box::new(failing));
    }

    /// `/readyz`'s status and body.
    fn answer(&self) -> (StatusCode, String) {
        let parsers = self.parsers.get().map_or("parser children: not started yet", String::as_str);
        if self.parsers_failing.get().is_some_and(|failing| failing()) {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: parser children fail to start (see the log)\n{parsers}\n"),
            )
        } else if self.is_ready() {
            (StatusCode::OK, format!("ready\n{parsers}\n"))
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: connecting to the broker or draining\n{parsers}\n"),
            )
        }
    }
}

/// Installs the Prometheus recorder (once per process) and describes every metric.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    metrics::describe_counter!(metric::JOBS, "Jobs answered, by outcome and data type.");
    metrics::describe_histogram!(
        metric::STAGE_SECONDS,
        metrics::Unit::Seconds,
        "Time per stage of a job (sign, fetch, extract, total)."
    );
    metrics::describe_counter!(
        metric::BYTES_FETCHED,
        metrics::Unit::Bytes,
        "Bytes downloaded from customers' buckets."
    );
    metrics::describe_gauge!(metric::IN_FLIGHT, "Jobs taken from the queue and not yet settled.");
    metrics::describe_counter!(metric::DELIVERIES, "Deliveries settled, by settlement.");
    metrics::describe_counter!(metric::RECONNECTS, "Broker connections re-established after a loss.");
    metrics::describe_counter!(
        metric::RESULTS_UNPUBLISHABLE,
        "Results the broker refused even sent alone; their jobs were dead-lettered unanswered."
    );
    metrics::describe_gauge!(metric::READY, "1 while connected to the broker and consuming.");
    metrics::describe_counter!(metric::CHILDREN_STARTED, "Parser children started.");
    metrics::describe_counter!(metric::CHILDREN_RETIRED, "Parser children retired, by reason.");
    metrics::describe_gauge!(
        metric::CHILD_PROTECTION,
        "1 for each protection the parser children reported as holding, by protection."
    );
    metrics::describe_counter!(
        metric::REPLIES_UNROUTABLE,
        "Answers whose job's reply_to queue did not exist, sent to the results exchange instead."
    );
    metrics::describe_counter!(
        metric::HTTP_REFUSED,
        "Connections to the health and metrics endpoints closed on arrival (too many at once)."
    );
    metrics::describe_counter!(metric::SIGN_REQUESTS, "Signing requests, by outcome.");
    metrics::describe_counter!(
        metric::DISPLAY_URLS,
        "Display URLs asked for, by outcome (signed or error kind)."
    );
    metrics::describe_histogram!(
        metric::SIGN_SECONDS,
        metrics::Unit::Seconds,
        "From a signing request's delivery to its answer's confirm."
    );
    metrics::describe_gauge!(
        metric::FETCH_BUDGET_HELD,
        metrics::Unit::Bytes,
        "Fetched bytes the jobs hold now, in memory and temp files (at most the fetch budget)."
    );
    metrics::describe_gauge!(
        metric::FETCH_BUDGET_WAITING,
        "Jobs waiting now for other jobs to give back fetch budget."
    );
    metrics::describe_counter!(
        metric::FETCH_BUDGET_STARVED,
        "Jobs whose time limit came while they waited for fetch budget (answered transient)."
    );
    // Present from the start, so a scrape before the first job shows zeros, not nothing.
    metrics::counter!(metric::RECONNECTS).absolute(0);
    metrics::gauge!(metric::FETCH_BUDGET_WAITING).set(0.0);
    metrics::counter!(metric::FETCH_BUDGET_STARVED).absolute(0);
    metrics::gauge!(metric::FETCH_BUDGET_HELD).set(0.0);
    metrics::counter!(metric::HTTP_REFUSED).absolute(0);
    metrics::counter!(metric::RESULTS_UNPUBLISHABLE).absolute(0);
    metrics::gauge!(metric::IN_FLIGHT).set(0.0);
    metrics::gauge!(metric::READY).set(0.0);
    Ok(handle)
}

/// Binds `addr` (failing at start, with the address, if it is taken) and serves the three
/// endpoints in the background. Returns the bound address (port 0 picks a free one).
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: PrometheusHandle,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding ASSET_WORKER_HTTP_ADDR={addr} for health and metrics: {e}"))?;
    let bound = listener.local_addr()?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let router = Router::new()
        .route(HEALTHZ_PATH, get(|| async { "ok\n" }))
        .route(
            READYZ_PATH,
            get(move || {
                let answer = readiness.answer();
                async move { answer }
            }),
        )
        .route(
            METRICS_PATH,
            get(move || {
                let text = metrics.render();
                async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
            }),
        );
    tokio::spawn(serve_bounded(listener, router));
    Ok(bound)
}

/// The endpoints' accept loop, bounded so that no client can take them away from the probes:
/// at most [`MAX_CONNECTIONS`] at once (more are closed as they arrive, and counted), a
/// request's head must arrive within [`HEAD_TIMEOUT`] (a client that opens a connection and
/// sends nothing, or one byte a second, is closed), and no connection lives longer than
/// [`CONNECTION_LIFETIME`] (a scraper's keep-alive reconnects). axum's own `serve` sets none
/// of these, so this loop drives hyper's HTTP/1 server itself, as axum's "serve with hyper"
/// example does.
async fn serve_bounded(listener: tokio::net::TcpListener, router: Router) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::warn!(%error, "accepting a connection to the health and metrics endpoints");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!(metric::HTTP_REFUSED).increment(1);
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // Errors are the client's (a reset, a timeout): nothing for the worker's log.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

/// Records one answered job: its outcome, its data type and what each stage cost.
pub fn job_answered(data_type: Option<DataType>, error: Option<ErrorKind>, stats: &Stats) {
    let outcome = error.map_or("succeeded", ErrorKind::as_str);
    let data_type = data_type.map_or("unknown", DataType::as_str);
    metrics::counter!(metric::JOBS, "outcome" => outcome, "data_type" => data_type).increment(1);
    for (stage, ms) in [
        ("sign", stats.sign_ms),
        ("fetch", stats.fetch_ms),
        ("extract", stats.extract_ms),
        ("total", stats.total_ms),
    ] {
        metrics::histogram!(metric::STAGE_SECONDS, "stage" => stage).record(ms as f64 / 1000.0);
    }
    metrics::counter!(metric::BYTES_FETCHED).increment(stats.bytes_fetched);
}
