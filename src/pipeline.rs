//! One object, top-down (DESIGN §1): mint access through the customer's delegation, fetch the
//! first block, extract in a parser child of the pool while serving it the ranges it asks for,
//! report. The fetched bytes live in memory or an unnamed temp file of this process, dropped
//! before the result goes out; the signed URL never leaves this process.
//!
//! A 403 while fetching may only mean the URL expired between mint and use (a slow queue, a
//! clock skew), or that the customer revoked the sessions issued so far: the object is minted
//! once more, from new credentials, and tried again before the job is `access_denied`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::access::providers::Access;
use crate::access::{Fetchable, MintRequest, SignedUrl};
use crate::extract::{ExtractOptions, Extracted};
use crate::fetch::{FetchError, FetchSettings, Fetcher, RemoteFile};
use crate::job::{ErrorBody, ErrorKind, Source};
use crate::sandbox::{LocalFile, Pool};

/// How objects are processed, and what processes them; the same for every job of a worker.
/// Cloning shares the pool and the HTTP connections.
#[derive(Clone)]
pub struct Pipeline {
    pub pool: Pool,
    pub fetcher: Fetcher,
    /// The most one extraction may take.
    pub extract_timeout: Duration,
    /// The lifetime of the URL minted for a job.
    pub url_ttl: Duration,
    /// The most one object may take, minting, fetching and extracting (a re-mint included).
    pub job_timeout: Duration,
    pub options: ExtractOptions,
}

impl Pipeline {
    /// The pipeline of this worker's settings, over `pool`.
    pub fn new(pool: Pool, settings: &crate::config::Settings) -> Result<Self, FetchError> {
        Ok(Pipeline {
            pool,
            fetcher: Fetcher::new(&FetchSettings::from_settings(settings))?,
            extract_timeout: Duration::from_millis(settings.extract_timeout_ms),
            url_ttl: Duration::from_secs(settings.url_ttl_seconds),
            job_timeout: Duration::from_secs(settings.job_timeout_seconds),
            options: ExtractOptions { dicom_tags: settings.dicom_tags.clone(), ..ExtractOptions::default() },
        })
    }
}

/// What one extraction gave, and what it cost.
#[derive(Debug)]
pub struct Extraction {
    pub outcome: Result<Extracted, ErrorBody>,
    pub stats: ExtractionStats,
}

/// What one extraction cost, for the result's `stats` (and `size_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExtractionStats {
    /// Bytes downloaded (0 for a local file).
    pub bytes_fetched: u64,
    /// The object's or file's size, when it was learnt.
    pub size_bytes: Option<u64>,
    /// HTTP requests sent.
    pub requests: u32,
    /// Time waiting for the storage.
    pub fetch_ms: u64,
    /// Time extracting, fetch time excluded.
    pub extract_ms: u64,
}

impl Extraction {
    fn failed(error: ErrorBody) -> Self {
        Extraction { outcome: Err(error), stats: ExtractionStats::default() }
    }
}

/// Extracts a local file in a child of `pool`; the worker reads the file for it.
pub async fn extract_file(
    pool: &Pool,
    path: &Path,
    options: &ExtractOptions,
    timeout: Duration,
) -> Extraction {
    // Non-blocking, so that a FIFO does not wait for a writer; it is refused below.
    let opened = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path);
    match opened.and_then(|file| Ok((file.metadata()?, file))) {
        Ok((meta, file)) if meta.is_file() => {
            extract_open_file(pool, file, meta.len(), options, timeout).await
        }
        Ok(_) => Extraction::failed(ErrorBody::new(ErrorKind::UnsupportedType, "not a regular file")),
        Err(e) => Extraction::failed(open_error(path, &e)),
    }
}

/// Extracts a regular file of `size` bytes already open (the local provider opens its files
/// beneath its root) in a child of `pool`.
pub async fn extract_open_file(
    pool: &Pool,
    file: std::fs::File,
    size: u64,
    options: &ExtractOptions,
    timeout: Duration,
) -> Extraction {
    let extracted = pool.extract(&mut LocalFile(file), size, options, timeout).await;
    let stats = ExtractionStats {
        size_bytes: Some(size),
        extract_ms: millis(extracted.extract_time),
        ..Default::default()
    };
    Extraction { outcome: extracted.outcome, stats }
}

/// Fetches the first block of `url` (holding no child while the storage answers), then
/// extracts in a child of `pool`, fetching what else it asks for. A fetch failure decides the
/// answer even when the parser carried on: parsers wrap I/O errors as "corrupt", and some stop
/// at the first unreadable byte as if it were the end (a duration counted short would be a
/// lie).
pub async fn extract_url(
    pool: &Pool,
    fetcher: &Fetcher,
    url: SignedUrl,
    options: &ExtractOptions,
    timeout: Duration,
) -> Extraction {
    let started = Instant::now();
    let mut remote = fetcher.remote(url);
    let opened = tokio::time::timeout(timeout, remote.open()).await;
    let mut extraction = match opened {
        Err(_) => Extraction::failed(timed_out(
            &remote,
            timeout,
            ErrorBody::new(
                ErrorKind::Timeout,
                format!("the object's first bytes did not arrive within {timeout:?} (the time limit)"),
            ),
        )),
        Ok(Err(error)) => Extraction::failed(error.to_body()),
        Ok(Ok(size)) => {
            let left = timeout.saturating_sub(started.elapsed());
            let extracted = pool.extract(&mut remote, size, options, left).await;
            let outcome = match (remote.failure(), extracted.outcome) {
                (Some(failure), _) => Err(failure.to_body()),
                (None, Err(error)) if error.kind == ErrorKind::Timeout => {
                    Err(timed_out(&remote, left, error))
                }
                (None, outcome) => outcome,
            };
            Extraction {
                outcome,
                stats: ExtractionStats { extract_ms: millis(extracted.extract_time), ..Default::default() },
            }
        }
    };
    let fetched = remote.stats();
    extraction.stats.bytes_fetched = fetched.bytes_fetched;
    extraction.stats.size_bytes = fetched.size_bytes;
    extraction.stats.requests = fetched.requests;
    extraction.stats.fetch_ms = millis(fetched.fetch_time);
    extraction
}

/// What `time_limit` passing means for `remote`'s job: if it came while the job waited for its
/// share of the fetch budget (for half the limit or more), the object did nothing wrong, and
/// the job is `transient` (counted; the consumer logs it with the retry) instead of a final
/// `timeout`.
fn timed_out(remote: &RemoteFile, time_limit: Duration, timeout: ErrorBody) -> ErrorBody {
    match remote.budget_starved(time_limit) {
        Some(starved) => {
            metrics::counter!(crate::telemetry::metric::FETCH_BUDGET_STARVED).increment(1);
            starved.to_body()
        }
        None => timeout,
    }
}

/// The error for a local file that can't be opened, named by what the user must fix.
pub fn open_error(path: &Path, error: &std::io::Error) -> ErrorBody {
    ErrorBody::new(
        crate::access::local::path_error_kind(error),
        format!("cannot open {}: {error}", path.display()),
    )
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
    pipeline: &Pipeline,
) -> Processed {
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut size_bytes = None;
    let mut request = MintRequest::new(job_id, pipeline.url_ttl);
    let mut outcome = Err(ErrorBody::new(ErrorKind::Internal, "the object was never tried"));
    let deadline = started + pipeline.job_timeout;
    let past_deadline = |doing: &str| {
        ErrorBody::new(
            ErrorKind::Timeout,
            format!(
                "the job's deadline of {} s (ASSET_WORKER_JOB_TIMEOUT_SECONDS) passed while {doing}",
                pipeline.job_timeout.as_secs_f64()
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
        let cut_short = left < pipeline.extract_timeout;
        let timeout = left.min(pipeline.extract_timeout);
        let answer = match fetchable {
            Fetchable::Url(url) => {
                extract_url(&pipeline.pool, &pipeline.fetcher, url, &pipeline.options, timeout).await
            }
            Fetchable::File { file, size } => {
                extract_open_file(&pipeline.pool, file, size, &pipeline.options, timeout).await
            }
        };
        add_extraction_stats(&mut stats, &answer.stats);
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

fn add_extraction_stats(stats: &mut Stats, child: &ExtractionStats) {
    stats.bytes_fetched += child.bytes_fetched;
    stats.fetch_ms += child.fetch_ms;
    stats.extract_ms += child.extract_ms;
}

/// What is left until `deadline` (zero once it passed).
fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn elapsed_ms(since: Instant) -> u64 {
    millis(since.elapsed())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
