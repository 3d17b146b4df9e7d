//! One object, top-down (DESIGN §1): mint access through the customer's delegation, fetch and
//! extract in the sandboxed child, report. The fetched bytes live in an unnamed temp file of
//! the child, so they are gone when the child is, whatever way it ends.
//!
//! A 403 while fetching may only mean the URL expired between mint and use (a slow queue, a
//! clock skew), or that the customer revoked the sessions issued so far: the object is minted
//! once more, from new credentials, and tried again before the job is `access_denied`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::access::providers::Access;
use crate::access::{Fetchable, MintRequest};
use crate::extract::sandbox::{ChildAnswer, ChildRequest, ChildSource, ChildStats, Limits, run_in_child};
use crate::extract::{ExtractOptions, Extracted};
use crate::fetch::FetchSettings;
use crate::job::{ErrorBody, ErrorKind, Source};

/// How objects are processed; the same for every job of a worker.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// This binary: the sandboxed child is a subcommand of it.
    pub exe: PathBuf,
    pub limits: Limits,
    pub fetch: FetchSettings,
    /// The lifetime of the URL minted for a job.
    pub url_ttl: Duration,
    /// The most one object may take, minting, fetching and extracting (a re-mint included).
    pub job_timeout: Duration,
    pub options: ExtractOptions,
}

impl PipelineSettings {
    /// The pipeline of this worker's settings, with this binary as the child.
    pub fn from_settings(settings: &crate::config::Settings) -> std::io::Result<Self> {
        Ok(PipelineSettings {
            exe: std::env::current_exe()?,
            limits: settings.extract_limits(),
            fetch: settings.fetch_settings(),
            url_ttl: Duration::from_secs(settings.url_ttl_seconds),
            job_timeout: Duration::from_secs(settings.job_timeout_seconds),
            options: ExtractOptions { hint: None, dicom_tags: settings.dicom_tags.clone() },
        })
    }
}

/// The `stats` of a result (DESIGN §2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub bytes_fetched: u64,
    pub sign_ms: u64,
    pub fetch_ms: u64,
    pub extract_ms: u64,
    pub total_ms: u64,
}

/// What became of one object.
#[derive(Debug)]
pub struct Processed {
    pub outcome: Result<Extracted, ErrorBody>,
    /// The object's size, when the fetch (or the local file) told it.
    pub size_bytes: Option<u64>,
    pub stats: Stats,
}

/// Processes the object `source` names, for the job `job_id` (its id names the cloud session).
pub async fn process_source(
    access: &Access,
    source: &Source,
    job_id: &str,
    settings: &PipelineSettings,
) -> Processed {
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut size_bytes = None;
    let mut request = MintRequest::new(job_id, settings.url_ttl);
    let mut outcome = Err(ErrorBody::new(ErrorKind::Internal, "the object was never tried"));
    let deadline = started + settings.job_timeout;
    let past_deadline = |doing: &str| {
        ErrorBody::new(
            ErrorKind::Timeout,
            format!(
                "the job's deadline of {} s (ASSET_WORKER_JOB_TIMEOUT_SECONDS) passed while {doing}",
                settings.job_timeout.as_secs_f64()
            ),
        )
    };
    for attempt in 0..2 {
        let signing = Instant::now();
        let minted = tokio::time::timeout(time_left(deadline), access.mint(source, &request)).await;
        stats.sign_ms += elapsed_ms(signing);
        let fetchable = match minted {
            Ok(Ok(fetchable)) => fetchable,
            Ok(Err(error)) => {
                outcome = Err(ErrorBody::new(error.kind(), error.to_string()));
                break;
            }
            Err(_) => {
                outcome = Err(past_deadline("minting access to the object"));
                break;
            }
        };
        let remote = matches!(fetchable, Fetchable::Url(_));
        // The child's wall-clock limit is cut to what is left of the job's deadline, so a job
        // past it leaves no child behind.
        let left = time_left(deadline);
        let cut_short = left < settings.limits.timeout;
        let answer = run_child(fetchable, settings, left.min(settings.limits.timeout)).await;
        add_child_stats(&mut stats, &answer.stats);
        size_bytes = answer.stats.size_bytes.or(size_bytes);
        outcome = answer.outcome;
        if cut_short && matches!(&outcome, Err(error) if error.kind == ErrorKind::Timeout) {
            outcome = Err(past_deadline("fetching and extracting"));
        }
        let denied = matches!(&outcome, Err(error) if error.kind == ErrorKind::AccessDenied);
        if !(remote && denied && attempt == 0) {
            break;
        }
        // The second try does without any cached session: the refusal may be the customer
        // revoking the sessions issued so far, which a new one is not.
        request.fresh_credentials = true;
    }
    stats.total_ms = elapsed_ms(started);
    if let Err(error) = &mut outcome
        && error.kind == ErrorKind::AccessDenied
        && matches!(source, Source::S3(_) | Source::Gcs(_))
    {
        // Refused twice, the second time with a fresh URL: not an expiry, but the delegation.
        error.message = format!("{} refused a freshly minted URL too: {}", describe(source), error.message);
    }
    Processed { outcome, size_bytes, stats }
}

/// The object and the identity it is read as, for messages an admin can act on.
fn describe(source: &Source) -> String {
    match source {
        Source::S3(s3) => format!("s3://{}/{} read as {}", s3.bucket, s3.key, s3.role_arn),
        Source::Gcs(gcs) => format!(
            "gs://{}/{} read as {}",
            gcs.bucket,
            gcs.object,
            gcs.service_account.as_deref().unwrap_or("the worker's key")
        ),
        Source::Local(local) => format!("local file {:?}", local.key),
    }
}

/// Runs the sandboxed child on a blocking thread: it waits on a process.
async fn run_child(fetchable: Fetchable, settings: &PipelineSettings, timeout: Duration) -> ChildAnswer {
    let source = match fetchable {
        Fetchable::Url(url) => ChildSource::Url { url, fetch: settings.fetch.clone() },
        Fetchable::File(path) => ChildSource::File { path },
    };
    let limits = Limits { timeout, ..settings.limits };
    let request = ChildRequest { source, options: settings.options.clone(), limits };
    let exe = settings.exe.clone();
    // Dropped with this future when its job is abandoned (the drain deadline, a lost broker):
    // then the child is killed rather than left to run out its time for nobody.
    let cancel = CancelOnDrop::default();
    let cancelled = Arc::clone(&cancel.0);
    tokio::task::spawn_blocking(move || run_in_child(&exe, &request, &cancelled)).await.unwrap_or_else(|e| {
        ChildAnswer {
            outcome: Err(ErrorBody::new(ErrorKind::Internal, format!("the extraction task failed: {e}"))),
            stats: ChildStats::default(),
        }
    })
}

/// Sets its flag when dropped.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn add_child_stats(stats: &mut Stats, child: &ChildStats) {
    stats.bytes_fetched += child.bytes_fetched;
    stats.fetch_ms += child.fetch_ms;
    stats.extract_ms += child.extract_ms;
}

/// What is left until `deadline` (zero once it passed).
fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}
