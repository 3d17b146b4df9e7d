//! Fetching, on the worker's runtime: a signed URL becomes a private store (memory for a small
//! object, an unnamed temp file for a larger one) that fills as the extractor reads it, so only
//! the bytes the parser touches cross the network (DESIGN §1, §7).
//!
//! One [`Fetcher`] serves every job of a worker: its HTTP client keeps a pool of keep-alive
//! connections per host, so a bucket's TLS handshake is paid once, not once per job. A
//! [`RemoteFile`] is one object: its first request (`open`) is a ranged GET of the first block,
//! which also tells the object's size (and so enforces the size cap before anything else is
//! read). After that the parser child asks for byte ranges ([`crate::sandbox::ByteSource`]);
//! each range that lands on blocks not yet fetched asks for the missing blocks with HTTP Range
//! requests, adjacent blocks coalesced into one request, plus a read-ahead that grows while the
//! reads are sequential and shrinks back on a seek. A multi-GB MP4 whose `moov` is at the end
//! costs its first block and its `moov`; an image costs its header. A server that ignores
//! Range (200 instead of 206) gets one streamed download of the whole body instead. Waiting on
//! the storage is an `await`: it holds no thread and no parser child.
//!
//! Larger objects land in an unnamed (`O_TMPFILE`) 0600 file in a 0700 directory, so they
//! vanish with the process however it ends, SIGKILL included; [`sweep_temp_dir`] removes what
//! a crash could leave on systems without unnamed files. What all jobs hold at once, in memory
//! and temp files, is bounded by one `FetchBudget` per worker. Later ranges carry
//! `If-Match` with the first answer's ETag, so a file is never stitched from two versions of
//! an object.
//!
//! The signed URL is a bearer credential: it appears only in the request line, and never
//! leaves this process (the parser child gets bytes, not URLs). Errors are built from status
//! codes, the storage's error *code* (never its message, which for a bad signature echoes the
//! string that was signed) and network errors stripped of their URL.

use std::fs::{self, DirBuilder, File, Permissions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, IF_MATCH, RANGE};
use reqwest::{Client, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::access::SignedUrl;
use crate::job::{ErrorBody, ErrorKind};
use crate::telemetry::metric;

/// The directory, under the configured temp dir, that holds every fetched file.
pub const PRIVATE_DIR_NAME: &str = "asset-worker-fetch";
/// The largest read-ahead: enough for a long video's `moov` in a few requests, small enough
/// that a seek right after it wastes little.
const MAX_READ_AHEAD_BYTES: u64 = 8 * 1024 * 1024;
/// The smallest block: smaller ones would only multiply requests (and the block map).
const MIN_BLOCK_BYTES: u64 = 4 * 1024;
/// Objects up to this size are held in memory: no temp file to create for the many small
/// images and documents, and at the default prefetch a worker holds at most tens of them.
pub const MAX_IN_MEMORY_BYTES: u64 = 1024 * 1024;
/// Pauses between attempts of one request that failed in passing (5xx, throttling, a reset).
const RETRY_DELAYS: [Duration; 3] =
    [Duration::from_millis(100), Duration::from_millis(400), Duration::from_millis(1600)];
/// Enough of an error answer to find its `<Code>`.
const MAX_ERROR_BODY_BYTES: usize = 4096;

/// How an object may be fetched; set by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchSettings {
    /// The configured temp dir; fetched bytes go to [`PRIVATE_DIR_NAME`] inside it.
    pub temp_dir: PathBuf,
    /// Objects larger than this are `too_large` before any byte of them is read.
    pub max_object_bytes: u64,
    /// The most bytes one job downloads. Ranged reads fetch only what the parser reads, so a
    /// 50 GB video costs its `moov`; a server that ignores Range, a text file or a PDF cost
    /// their whole size, and are refused past this.
    pub max_fetch_bytes: u64,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
    /// How long the storage may stay silent: waiting for an answer or for the next bytes.
    pub read_timeout: Duration,
    /// The unit of fetching and of the first request: what an image costs at least (4 KiB or
    /// more; less is taken as 4 KiB).
    pub block_bytes: u64,
    /// The fetched bytes every job of one [`Fetcher`] holds at once, in memory and in temp
    /// files: see `FetchBudget`.
    pub budget_bytes: u64,
}

impl Default for FetchSettings {
    /// Objects up to 1 TiB of which at most 4 GiB is fetched (the worker's configured defaults), 10 s to connect, 30 s of silence, 256 KiB
    /// blocks: the first block holds any image header and most audio headers in one round trip.
    fn default() -> Self {
        FetchSettings {
            temp_dir: std::env::temp_dir(),
            max_object_bytes: 1 << 40,
            max_fetch_bytes: 4 << 30,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            block_bytes: 256 * 1024,
            budget_bytes: 4 << 30,
        }
    }
}

impl FetchSettings {
    /// The fetch settings of a worker's configuration.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        FetchSettings {
            temp_dir: settings.temp_dir.clone(),
            max_object_bytes: settings.max_object_bytes,
            max_fetch_bytes: settings.max_fetch_bytes,
            connect_timeout: Duration::from_millis(settings.fetch_connect_timeout_ms),
            read_timeout: Duration::from_millis(settings.fetch_read_timeout_ms),
            block_bytes: settings.fetch_block_bytes,
            budget_bytes: settings.fetch_budget_mb().saturating_mul(1 << 20),
        }
    }
}

/// Why an object could not be fetched, in the categories the pipeline acts on (a 403 is
/// re-minted once, a transient failure is retried later, the rest is final). Messages name
/// the HTTP status and the storage's error code, never the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// 403 (or an expired session token): the URL expired, or the role may no longer read it.
    #[error("{0}")]
    AccessDenied(String),
    /// 404: no such bucket or key.
    #[error("{0}")]
    NotFound(String),
    /// The object is larger than [`FetchSettings::max_fetch_bytes`].
    #[error("{0}")]
    TooLarge(String),
    /// 5xx, throttling, a reset or a timeout that outlived the retries, or an object that
    /// changed while it was read: the same job may succeed later.
    #[error("{0}")]
    Transient(String),
    /// The storage answered in a way no signed GET should get (a redirect, a 400, a malformed
    /// `Content-Range`): a setting or the signer is wrong, and an operator must look.
    #[error("{0}")]
    UnexpectedResponse(String),
    /// This worker's side failed: the temp dir, the temp file, the HTTP client.
    #[error("{0}")]
    Local(String),
}

impl FetchError {
    /// The wire category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FetchError::AccessDenied(_) => ErrorKind::AccessDenied,
            FetchError::NotFound(_) => ErrorKind::NotFound,
            FetchError::TooLarge(_) => ErrorKind::TooLarge,
            FetchError::Transient(_) => ErrorKind::Transient,
            FetchError::UnexpectedResponse(_) | FetchError::Local(_) => ErrorKind::Internal,
        }
    }

    /// The error as it goes on the wire.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.kind(), self.to_string())
    }
}

/// What fetching one object cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Body bytes received, retries included.
    pub bytes_fetched: u64,
    /// The object's size, once the first answer told it.
    pub size_bytes: Option<u64>,
    /// HTTP requests sent.
    pub requests: u32,
    /// Time spent waiting for the storage (requests, bodies, pauses between retries).
    pub fetch_time: Duration,
}

/// The HTTP side of fetching, shared by every job of a worker (cloning shares its connection
/// pools).
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: Client,
    settings: FetchSettings,
    budget: FetchBudget,
}

impl Fetcher {
    /// The client: timeouts from `settings`, and no redirects: the worker fetches only URLs it
    /// minted itself (§7).
    pub fn new(settings: &FetchSettings) -> Result<Self, FetchError> {
        let client = Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FetchError::Local(format!("cannot set up the HTTP client: {}", e.without_url())))?;
        let settings =
            FetchSettings { block_bytes: settings.block_bytes.max(MIN_BLOCK_BYTES), ..settings.clone() };
        let budget = FetchBudget::new(settings.budget_bytes);
        Ok(Fetcher { client, settings, budget })
    }

    /// The bytes the jobs of this fetcher hold now (in memory and temp files).
    pub fn budget_in_use(&self) -> u64 {
        self.budget.in_use()
    }

    /// The jobs of this fetcher waiting now for others to give back budget.
    pub fn budget_waiting(&self) -> usize {
        self.budget.waiting.load(Ordering::Relaxed)
    }

    /// The fetch of one object. Sends nothing yet; [`RemoteFile::open`] does.
    pub fn remote(&self, url: SignedUrl) -> RemoteFile {
        RemoteFile {
            url,
            read_ahead: ReadAhead::new(self.settings.block_bytes, MAX_READ_AHEAD_BYTES),
            settings: self.settings.clone(),
            client: self.client.clone(),
            opened: None,
            held: Held { permit: None, budget: self.budget.clone() },
            waiting_for_budget_since: None,
            stats: FetchStats::default(),
            failure: None,
        }
    }
}

/// The fetched bytes all jobs of a worker may hold at once, in memory and in temp files
/// together (setting `fetch_budget_mb`). Many jobs in flight hide the storage's latency, but a
/// temp dir sized for every one of them reading `max_fetch_bytes` would be tens of GiB of a
/// pod's memory (its tmpfs) for a worst case that never comes; one budget bounds the temp dir
/// and lets the number of jobs in flight follow the latency alone. A job takes its share
/// before it writes what a request brought (the block run it asked for; for the first
/// request, once the answer tells the size: the first block, a small object's whole size, or
/// a whole download's length) and gives it all back when it ends, with its store.
///
/// A job that cannot get its share waits, first come first served. The worker's budget is at
/// least what makes that impossible on storage that honours Range
/// (`Settings::fetch_budget_without_waits_mb`: only jobs in a parser child read past their
/// first block); a store that ignores Range can still make whole downloads wait. A job whose
/// time limit comes after a long wait is answered `transient` (tried again later), not
/// `timeout`: the object did nothing wrong.
#[derive(Debug, Clone)]
struct FetchBudget {
    /// One permit per [`BUDGET_UNIT`] bytes.
    permits: Arc<Semaphore>,
    total_units: u32,
    /// Jobs waiting for their share now.
    waiting: Arc<AtomicUsize>,
    /// The bytes jobs hold now. Not the semaphore's count: that also counts permits it has set
    /// aside for a job still waiting for the rest of its share.
    held_bytes: Arc<AtomicU64>,
}

/// The budget is counted in KiB: a semaphore takes at most `u32::MAX` permits at once, and a
/// whole download may be GiBs.
const BUDGET_UNIT: u64 = 1024;

impl FetchBudget {
    fn new(bytes: u64) -> Self {
        let total_units = units(bytes);
        FetchBudget {
            permits: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            waiting: Arc::new(AtomicUsize::new(0)),
            held_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    fn total_bytes(&self) -> u64 {
        u64::from(self.total_units) * BUDGET_UNIT
    }

    fn in_use(&self) -> u64 {
        self.held_bytes.load(Ordering::Relaxed)
    }

    fn count_taken(&self, bytes: u64) {
        self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
        metrics::gauge!(metric::FETCH_BUDGET_HELD).increment(bytes as f64);
    }

    fn count_given_back(&self, bytes: u64) {
        self.held_bytes.fetch_sub(bytes, Ordering::Relaxed);
        metrics::gauge!(metric::FETCH_BUDGET_HELD).decrement(bytes as f64);
    }

    /// Counts one job as waiting until the guard drops (its share came, or the job was cut
    /// off while waiting).
    fn wait(&self) -> Waiting {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(metric::FETCH_BUDGET_WAITING).increment(1.0);
        Waiting(self.waiting.clone())
    }
}

/// One job counted as waiting for budget. The gauges move by increments, not by a value read
/// and then set, so that jobs ending at once cannot leave a stale reading behind.
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(metric::FETCH_BUDGET_WAITING).decrement(1.0);
    }
}

/// `bytes` in budget units, rounded up.
fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(BUDGET_UNIT)).unwrap_or(u32::MAX)
}

/// The share of the budget one job holds; given back when the job's [`RemoteFile`] drops.
struct Held {
    permit: Option<OwnedSemaphorePermit>,
    budget: FetchBudget,
}

impl Held {
    fn units(&self) -> u32 {
        self.permit.as_ref().map_or(0, |permit| permit.num_permits() as u32)
    }

    fn bytes(&self) -> u64 {
        u64::from(self.units()) * BUDGET_UNIT
    }

    fn add(&mut self, permit: OwnedSemaphorePermit) {
        self.budget.count_taken(permit.num_permits() as u64 * BUDGET_UNIT);
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let bytes = self.bytes();
        if self.permit.take().is_some() {
            self.budget.count_given_back(bytes);
        }
    }
}

/// A remote object read through a private store that fills, block by block, as it is read.
/// The first error a read met is kept ([`RemoteFile::failure`]) because parsers wrap I/O
/// errors in their own and would report a fetch that failed as a corrupt file.
pub struct RemoteFile {
    url: SignedUrl,
    settings: FetchSettings,
    client: Client,
    /// Declared before `held`: the store (and its temp file) is gone before its share of the
    /// budget is given back.
    opened: Option<Opened>,
    held: Held,
    /// When the request waiting for its share of the budget began to wait; still set if the
    /// job was cut off by its time limit while waiting.
    waiting_for_budget_since: Option<Instant>,
    read_ahead: ReadAhead,
    stats: FetchStats,
    failure: Option<FetchError>,
}

/// What the first answer established.
struct Opened {
    size: u64,
    /// The version every later range must come from (`If-Match`); `None` if the storage gave
    /// no strong ETag, or everything is already here.
    etag: Option<String>,
    blocks: BlockMap,
    store: Store,
}

/// Where the fetched bytes of one object are held.
enum Store {
    Memory(Vec<u8>),
    /// Unnamed and 0600: no other process can open it, and it dies with this one.
    File(File),
}

impl Store {
    /// Memory for a small object, a temp file for the rest.
    fn for_size(size: Option<u64>, settings: &FetchSettings) -> Result<Store, FetchError> {
        match size {
            Some(size) if size <= MAX_IN_MEMORY_BYTES => Ok(Store::Memory(vec![0; size as usize])),
            _ => {
                let dir = private_dir(&settings.temp_dir)?;
                let file = tempfile::tempfile_in(&dir)
                    .and_then(|file| {
                        // O_TMPFILE files get 0666 minus the umask; no name can reach it, but make
                        // the mode say so too.
                        file.set_permissions(Permissions::from_mode(0o600))?;
                        Ok(file)
                    })
                    .map_err(|e| {
                        FetchError::Local(format!("cannot create a temp file in {}: {e}", dir.display()))
                    })?;
                Ok(Store::File(file))
            }
        }
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> Result<(), FetchError> {
        match self {
            Store::Memory(bytes) => {
                let end = offset as usize + data.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[offset as usize..end].copy_from_slice(data);
                Ok(())
            }
            // A page-cache write of at most one body chunk: short enough for the runtime.
            Store::File(file) => file.write_all_at(data, offset).map_err(|e| temp_file_error(&e)),
        }
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, FetchError> {
        match self {
            Store::Memory(bytes) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(len).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
            Store::File(file) => {
                crate::sandbox::pool::read_at_most(file, offset, len).map_err(|e| temp_file_error(&e))
            }
        }
    }

    /// Forgets what was written (a streamed download that starts over).
    fn clear(&mut self) -> Result<(), FetchError> {
        match self {
            Store::Memory(bytes) => {
                bytes.clear();
                Ok(())
            }
            Store::File(file) => file.set_len(0).map_err(|e| temp_file_error(&e)),
        }
    }
}

/// How one attempt at a request failed.
enum Failure {
    /// In passing (5xx, throttling, a reset, a timeout): the same request may succeed.
    Retry(FetchError),
    /// For good, as far as this fetch goes.
    Stop(FetchError),
}

/// What one request is for: the first block, or the rest of a range of missing blocks.
enum Request<'a> {
    First,
    Range { remaining: &'a mut Range<u64>, etag: Option<&'a str> },
}

impl RemoteFile {
    /// Sends the first request, if it has not been sent, and returns the object's size.
    pub async fn open(&mut self) -> Result<u64, FetchError> {
        if let Some(opened) = &self.opened {
            return Ok(opened.size);
        }
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        match self.with_retries(Request::First).await {
            Ok(Some(opened)) => {
                self.stats.size_bytes = Some(opened.size);
                let size = opened.size;
                self.opened = Some(opened);
                Ok(size)
            }
            Ok(None) => Err(self.fail(FetchError::Local("the first request opened nothing".into()))),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// The bytes `offset..offset + len` (fewer at the object's end), fetched if missing.
    pub async fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, FetchError> {
        self.read_at_least(offset, len as u64, len as u64).await
    }

    /// The bytes at `offset`: `need` of them, fetched if missing (with the read-ahead), and
    /// then as many more, up to `want`, as are already here. Fewer only at the object's end.
    pub async fn read_at_least(&mut self, offset: u64, need: u64, want: u64) -> Result<Vec<u8>, FetchError> {
        if let Some(failure) = &self.failure {
            return Err(failure.clone());
        }
        let size = self.open().await?;
        if offset >= size || need == 0 {
            return Ok(Vec::new());
        }
        let need = need.min(size - offset).min(MAX_READ_AHEAD_BYTES);
        let wanted = offset..offset + need;
        self.read_ahead.note_read(&wanted);
        if let Err(error) = self.ensure_present(wanted).await {
            return Err(self.fail(error));
        }
        let opened = self.opened.as_ref().expect("opened above");
        let end = opened.blocks.present_until(offset + need, offset.saturating_add(want).min(size));
        let bytes = opened.store.read_at(offset, (end - offset) as usize);
        self.read_ahead.note_served(end);
        bytes.map_err(|error| self.fail(error))
    }

    /// What the fetch has cost so far.
    pub fn stats(&self) -> FetchStats {
        self.stats
    }

    /// The first error a read met, if any: when set, whatever the extractor made of its bytes
    /// is not the file's truth.
    pub fn failure(&self) -> Option<&FetchError> {
        self.failure.as_ref()
    }

    fn fail(&mut self, error: FetchError) -> FetchError {
        self.failure.get_or_insert(error).clone()
    }

    /// The answer of a job whose `time_limit` came while it waited for its share of the budget,
    /// for at least half of that limit: other jobs held it, so the object is tried again later
    /// (not `timeout`, which is final). A job that spent most of its time parsing and only the
    /// end waiting keeps its `timeout`: a parser that hangs must not be retried for it.
    pub fn budget_starved(&self, time_limit: Duration) -> Option<FetchError> {
        let since = self.waiting_for_budget_since?;
        let waited = since.elapsed();
        (waited >= time_limit / 2).then(|| {
            FetchError::Transient(format!(
                "the worker's fetch budget ({} MiB, setting fetch_budget_mb) stayed held by other jobs \
                 for the last {:.1} s of this job's time limit; it is tried again later",
                self.held.budget.total_bytes() >> 20,
                waited.as_secs_f64()
            ))
        })
    }

    /// Makes this job hold at least `bytes` of the budget, waiting for other jobs to give
    /// theirs back if it must. More than the whole budget is `too_large` at once: no wait
    /// would give it.
    async fn hold_at_least(&mut self, bytes: u64) -> Result<(), FetchError> {
        let wanted = units(bytes);
        let more = wanted.saturating_sub(self.held.units());
        if more == 0 {
            return Ok(());
        }
        let budget = &self.held.budget;
        if wanted > budget.total_units {
            return Err(FetchError::TooLarge(format!(
                "reading this object needs more than the {} MiB that all jobs of the worker share \
                 (setting fetch_budget_mb)",
                budget.total_bytes() >> 20
            )));
        }
        let permits = budget.permits.clone();
        let permit = match permits.clone().try_acquire_many_owned(more) {
            Ok(permit) => permit,
            Err(_) => {
                let _waiting = self.held.budget.wait();
                self.waiting_for_budget_since = Some(Instant::now());
                let permit = permits
                    .acquire_many_owned(more)
                    .await
                    .map_err(|_| FetchError::Local("the fetch budget was closed".into()))?;
                self.waiting_for_budget_since = None;
                permit
            }
        };
        self.held.add(permit);
        Ok(())
    }

    /// Sends `request` until it succeeds, stops, or has failed in passing once more than there
    /// are [`RETRY_DELAYS`]; the time it takes counts as fetch time. A range's `remaining`
    /// start advances past the bytes already written, so a retry resumes where a cut stopped.
    async fn with_retries(&mut self, mut request: Request<'_>) -> Result<Option<Opened>, FetchError> {
        let started = Instant::now();
        let mut delays = RETRY_DELAYS.iter();
        let result = loop {
            let attempt = match &mut request {
                Request::First => self.first_request().await.map(Some),
                Request::Range { remaining, etag } => self.fetch_range(remaining, *etag).await.map(|()| None),
            };
            match attempt {
                Ok(value) => break Ok(value),
                Err(Failure::Stop(error)) => break Err(error),
                Err(Failure::Retry(error)) => match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => {
                        let attempts = RETRY_DELAYS.len() + 1;
                        break Err(FetchError::Transient(format!(
                            "{error} (gave up after {attempts} attempts)"
                        )));
                    }
                },
            }
        };
        self.stats.fetch_time += started.elapsed();
        result
    }

    /// The ranged GET of the first block: it tells the size (206), that the server ignores
    /// Range (200: then it is the whole download), or that the object is empty (416).
    async fn first_request(&mut self) -> Result<Opened, Failure> {
        let block = self.settings.block_bytes;
        let response = self.send(0..block, None).await?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = content_range(response.headers()).map_err(Failure::Stop)?;
                let Some(size) = range.total else {
                    return Err(Failure::Stop(FetchError::UnexpectedResponse(
                        "the storage did not tell the object's size (Content-Range total `*`)".into(),
                    )));
                };
                self.stats.size_bytes = Some(size);
                self.check_size(size)?;
                let first = 0..block.min(size);
                if range.bytes != first {
                    return Err(Failure::Stop(mismatched_range(&first, &range)));
                }
                let etag = strong_etag(response.headers());
                // A small object is held in memory whole; a larger one costs what is written.
                let share = if size <= MAX_IN_MEMORY_BYTES { size } else { first.end };
                self.hold_at_least(share).await.map_err(Failure::Stop)?;
                let mut store = Store::for_size(Some(size), &self.settings).map_err(Failure::Stop)?;
                self.copy_range(response, &mut store, &mut first.clone()).await?;
                let mut blocks = BlockMap::new(size, block);
                blocks.mark(first);
                Ok(Opened { size, etag, blocks, store })
            }
            StatusCode::OK => {
                let length = header_u64(response.headers(), CONTENT_LENGTH.as_str());
                if let Some(length) = length {
                    self.stats.size_bytes = Some(length);
                    self.check_size(length)?;
                    // The whole body is the download: it must fit the job's cap, and its share of
                    // the budget is taken at once (a download that stalls half-way for budget
                    // would hold half for nothing).
                    self.check_fetch_cap(length).map_err(Failure::Stop)?;
                    self.hold_at_least(length).await.map_err(Failure::Stop)?;
                }
                let mut store = Store::for_size(length, &self.settings).map_err(Failure::Stop)?;
                let size = self.copy_whole_body(response, &mut store).await?;
                Ok(Opened { size, etag: None, blocks: BlockMap::complete(size, block), store })
            }
            StatusCode::RANGE_NOT_SATISFIABLE => match unsatisfied_total(response.headers()) {
                // Range "bytes=0-…" is unsatisfiable only when there is no byte 0.
                Ok(None | Some(0)) => Ok(Opened {
                    size: 0,
                    etag: None,
                    blocks: BlockMap::complete(0, block),
                    store: Store::Memory(Vec::new()),
                }),
                Ok(Some(size)) => Err(Failure::Stop(FetchError::UnexpectedResponse(format!(
                    "the storage refused the range of the first block of a {size}-byte object (HTTP 416)"
                )))),
                Err(error) => Err(Failure::Stop(error)),
            },
            _ => Err(self.status_failure(response).await),
        }
    }

    fn check_size(&self, size: u64) -> Result<(), Failure> {
        let cap = self.settings.max_object_bytes;
        if size > cap {
            return Err(Failure::Stop(FetchError::TooLarge(format!(
                "the object is {size} bytes, more than the {cap}-byte limit (setting max_object_bytes); \
                 nothing of it was read"
            ))));
        }
        Ok(())
    }

    /// Refuses a fetch that would take the job past [`FetchSettings::max_fetch_bytes`].
    fn check_fetch_cap(&self, more: u64) -> Result<(), FetchError> {
        let cap = self.settings.max_fetch_bytes;
        if self.stats.bytes_fetched.saturating_add(more) > cap {
            return Err(FetchError::TooLarge(format!(
                "reading this object needs more than {cap} bytes (setting max_fetch_bytes)"
            )));
        }
        Ok(())
    }

    /// Makes sure every byte of `wanted` is in the store, fetching the missing blocks and the
    /// read-ahead.
    async fn ensure_present(&mut self, wanted: Range<u64>) -> Result<(), FetchError> {
        let Some(opened) = &self.opened else { return Ok(()) };
        if opened.blocks.is_present(&wanted) {
            return Ok(());
        }
        let runs = opened.blocks.runs_to_fetch(&wanted, self.read_ahead.next_window());
        let etag = opened.etag.clone();
        let in_memory = matches!(opened.store, Store::Memory(_));
        for run in runs {
            self.check_fetch_cap(run.end - run.start)?;
            if !in_memory {
                self.hold_at_least(self.held.bytes() + (run.end - run.start)).await?;
            }
            let mut remaining = run.clone();
            // A body that breaks mid-way is resumed where it stopped: no byte is fetched twice.
            self.with_retries(Request::Range { remaining: &mut remaining, etag: etag.as_deref() }).await?;
            if let Some(opened) = &mut self.opened {
                opened.blocks.mark(run);
            }
        }
        Ok(())
    }

    /// One attempt at fetching `remaining`; advances its start by the bytes written.
    async fn fetch_range(&mut self, remaining: &mut Range<u64>, etag: Option<&str>) -> Result<(), Failure> {
        let size = self.opened.as_ref().map_or(0, |opened| opened.size);
        let response = self.send(remaining.clone(), etag).await?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {
                let range = content_range(response.headers()).map_err(Failure::Stop)?;
                if range.total.is_some_and(|total| total != size) {
                    return Err(Failure::Stop(object_changed("its size changed")));
                }
                if range.bytes != *remaining {
                    return Err(Failure::Stop(mismatched_range(remaining, &range)));
                }
                // The store is moved out for the copy: the copy also counts into `self.stats`.
                let Some(mut opened) = self.opened.take() else {
                    return Err(Failure::Stop(FetchError::Local("a range fetched before the first".into())));
                };
                let copied = self.copy_range(response, &mut opened.store, remaining).await;
                self.opened = Some(opened);
                copied
            }
            StatusCode::OK => Err(Failure::Stop(FetchError::UnexpectedResponse(
                "the storage answered a Range request with the whole object (HTTP 200) after \
                 answering the first one with a range"
                    .into(),
            ))),
            StatusCode::RANGE_NOT_SATISFIABLE => Err(Failure::Stop(object_changed("it became shorter"))),
            _ => Err(self.status_failure(response).await),
        }
    }

    /// Sends a GET for `range` (clipped by the server to the object's end).
    async fn send(&mut self, range: Range<u64>, etag: Option<&str>) -> Result<Response, Failure> {
        let mut request = self
            .client
            .get(self.url.expose())
            .header(RANGE, format!("bytes={}-{}", range.start, range.end.saturating_sub(1)));
        if let Some(etag) = etag {
            request = request.header(IF_MATCH, etag);
        }
        self.stats.requests += 1;
        request.send().await.map_err(|e| self.network_failure(e))
    }

    /// Copies a 206 body into the store at `remaining`, advancing `remaining.start`.
    async fn copy_range(
        &mut self,
        mut response: Response,
        store: &mut Store,
        remaining: &mut Range<u64>,
    ) -> Result<(), Failure> {
        while remaining.start < remaining.end {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    return Err(Failure::Retry(FetchError::Transient(
                        "the storage closed the connection before the whole range arrived".into(),
                    )));
                }
                Err(e) => return Err(self.network_failure(e)),
            };
            // A body longer than its range is the storage's error; what it owes is all we keep.
            let take = (chunk.len() as u64).min(remaining.end - remaining.start) as usize;
            store.write_at(&chunk[..take], remaining.start).map_err(Failure::Stop)?;
            remaining.start += take as u64;
            self.stats.bytes_fetched += take as u64;
        }
        Ok(())
    }

    /// Streams a 200 body (the server ignores Range) into the store, at most the size cap;
    /// returns its length.
    async fn copy_whole_body(&mut self, mut response: Response, store: &mut Store) -> Result<u64, Failure> {
        // A retry starts the download over.
        store.clear().map_err(Failure::Stop)?;
        let cap = self.settings.max_fetch_bytes;
        let mut written = 0u64;
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(written),
                Err(e) => return Err(self.network_failure(e)),
            };
            if written + chunk.len() as u64 > cap {
                return Err(Failure::Stop(FetchError::TooLarge(format!(
                    "the object is more than the {cap}-byte limit (setting max_fetch_bytes); \
                     the storage ignores Range requests, so its first {cap} bytes were read"
                ))));
            }
            // Without a Content-Length the share grows with the body.
            self.hold_at_least(written + chunk.len() as u64).await.map_err(Failure::Stop)?;
            store.write_at(&chunk, written).map_err(Failure::Stop)?;
            written += chunk.len() as u64;
            self.stats.bytes_fetched += chunk.len() as u64;
        }
    }

    /// The failure an error status stands for, named with the storage's error code.
    async fn status_failure(&self, mut response: Response) -> Failure {
        let status = response.status();
        let mut body = Vec::new();
        // The code helps an admin ("ExpiredToken", "SlowDown"); an unreadable body is no loss.
        while body.len() < MAX_ERROR_BODY_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY_BYTES)]),
                _ => break,
            }
        }
        classify_status(status, error_code(&body).as_deref())
    }

    fn network_failure(&self, error: reqwest::Error) -> Failure {
        let error = error.without_url();
        if error.is_builder() {
            return Failure::Stop(FetchError::UnexpectedResponse(format!(
                "the signed URL could not be requested: {}",
                self.scrub(&crate::extract::error_chain(&error))
            )));
        }
        let what = if error.is_connect() && error.is_timeout() {
            format!(
                "could not connect to the storage within {:?} (setting fetch_connect_timeout_ms)",
                self.settings.connect_timeout
            )
        } else if error.is_connect() {
            "could not connect to the storage".to_owned()
        } else if error.is_timeout() {
            format!(
                "the storage sent nothing for {:?} (setting fetch_read_timeout_ms)",
                self.settings.read_timeout
            )
        } else {
            "the connection to the storage failed".to_owned()
        };
        let cause = self.scrub(&crate::extract::error_chain(&error));
        Failure::Retry(FetchError::Transient(format!("{what}: {cause}")))
    }

    /// Belt and braces for messages built from other crates' errors: no URL, no query string.
    fn scrub(&self, message: &str) -> String {
        let url = self.url.expose();
        let mut message = message.replace(url, &self.url.redacted());
        if let Some((_, query)) = url.split_once('?')
            && !query.is_empty()
        {
            message = message.replace(query, "<signature redacted>");
        }
        message
    }
}

/// The parser child reads a remote object through the worker: each range it asks for is
/// fetched (if missing) and served from the store.
impl crate::sandbox::ByteSource for RemoteFile {
    async fn read_at(&mut self, read: crate::sandbox::protocol::ReadRequest) -> Result<Vec<u8>, ErrorBody> {
        self.read_at_least(read.offset, read.need, read.want).await.map_err(|error| error.to_body())
    }
}

/// The private directory under `temp_dir`, created 0700 if missing. An existing one that is a
/// symlink or open to other users is refused: fetched bytes are customers' data.
pub fn private_dir(temp_dir: &Path) -> Result<PathBuf, FetchError> {
    let dir = temp_dir.join(PRIVATE_DIR_NAME);
    let refuse = |why: String| FetchError::Local(format!("the fetch temp dir {}: {why}", dir.display()));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| refuse(format!("cannot be created: {e}")))?;
    let meta = fs::symlink_metadata(&dir).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_dir() {
        return Err(refuse("is not a directory (a symlink?); remove it".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!("is open to other users (mode {mode:o}); make it 0700 or remove it")));
    }
    Ok(dir)
}

/// Removes whatever a crash left in the private directory under `temp_dir` (named temp files
/// exist only where the OS has no unnamed ones). Run it at start-up, before any fetch.
/// Returns how many entries were removed.
pub fn sweep_temp_dir(temp_dir: &Path) -> io::Result<usize> {
    let dir = temp_dir.join(PRIVATE_DIR_NAME);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
        } else {
            fs::remove_file(&path)?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Which blocks of the object are in the temp file.
#[derive(Debug)]
struct BlockMap {
    size: u64,
    block: u64,
    present: Vec<bool>,
}

impl BlockMap {
    fn new(size: u64, block: u64) -> Self {
        let count = size.div_ceil(block);
        BlockMap { size, block, present: vec![false; usize::try_from(count).unwrap_or(usize::MAX)] }
    }

    fn complete(size: u64, block: u64) -> Self {
        let mut map = BlockMap::new(size, block);
        map.present.fill(true);
        map
    }

    /// How far from `from` (a present position) the bytes are present, up to `limit`.
    fn present_until(&self, from: u64, limit: u64) -> u64 {
        let mut end = from;
        while end < limit {
            let index = (end / self.block) as usize;
            if !self.present.get(index).copied().unwrap_or(false) {
                break;
            }
            end = self.block_range(index).end;
        }
        end.min(limit).max(from)
    }

    /// The blocks that hold `range`.
    fn blocks_of(&self, range: &Range<u64>) -> Range<usize> {
        let end = range.end.min(self.size);
        if range.start >= end {
            return 0..0;
        }
        (range.start / self.block) as usize..end.div_ceil(self.block) as usize
    }

    fn is_present(&self, range: &Range<u64>) -> bool {
        self.present[self.blocks_of(range)].iter().all(|present| *present)
    }

    /// Marks the blocks `range` covers; a range always covers whole blocks (or ends at the
    /// object's end), since fetches are made of whole blocks.
    fn mark(&mut self, range: Range<u64>) {
        let blocks = self.blocks_of(&range);
        self.present[blocks].fill(true);
    }

    fn block_range(&self, index: usize) -> Range<u64> {
        let start = index as u64 * self.block;
        start..(start + self.block).min(self.size)
    }

    /// The byte ranges to request so that `wanted` is present: its missing blocks, adjacent
    /// ones coalesced, the last run extended by read-ahead up to `window` bytes from the
    /// start of `wanted` — but only through blocks that are missing, and only when that run
    /// reaches the end of `wanted` (read-ahead continues a read, it does not fill holes).
    fn runs_to_fetch(&self, wanted: &Range<u64>, window: u64) -> Vec<Range<u64>> {
        let ahead_end = wanted.end.max(wanted.start.saturating_add(window));
        let wanted_blocks = self.blocks_of(wanted);
        let all_blocks = self.blocks_of(&(wanted.start..ahead_end));
        let mut runs: Vec<Range<u64>> = Vec::new();
        for index in all_blocks {
            let block = self.block_range(index);
            let beyond_wanted = index >= wanted_blocks.end;
            match runs.last_mut() {
                _ if self.present[index] && beyond_wanted => break,
                _ if self.present[index] => {}
                Some(run) if run.end == block.start => run.end = block.end,
                _ if beyond_wanted => break,
                _ => runs.push(block),
            }
        }
        runs
    }
}

/// The read-ahead window: one block after a seek, doubling with each fetch while the reads
/// stay sequential, up to a maximum.
#[derive(Debug)]
struct ReadAhead {
    base: u64,
    max: u64,
    window: u64,
    /// Where the previous read ended: a read that starts elsewhere followed a seek.
    last_read_end: Option<u64>,
}

impl ReadAhead {
    fn new(base: u64, max: u64) -> Self {
        ReadAhead { base, max: max.max(base), window: base, last_read_end: None }
    }

    /// Called on every read: a read that does not continue the previous one resets the window.
    fn note_read(&mut self, read: &Range<u64>) {
        if self.last_read_end != Some(read.start) {
            self.window = self.base;
        }
        self.last_read_end = Some(read.end);
    }

    /// A read was served up to `end` (more than it needed, when those bytes were here): the
    /// next read that starts there still continues it.
    fn note_served(&mut self, end: u64) {
        self.last_read_end = Some(end);
    }

    /// The window for a fetch that is about to be made; the next one (if reads stay
    /// sequential) gets twice as much.
    fn next_window(&mut self) -> u64 {
        let window = self.window;
        self.window = self.window.saturating_mul(2).min(self.max);
        window
    }
}

/// A parsed `Content-Range: bytes START-END/TOTAL` (END inclusive on the wire, exclusive here).
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    bytes: Range<u64>,
    /// `None` for `*` (unknown).
    total: Option<u64>,
}

fn content_range(headers: &HeaderMap) -> Result<ContentRange, FetchError> {
    let value = headers.get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    parse_content_range(value).ok_or_else(|| malformed_content_range(value))
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end) = (parse_decimal(start)?, parse_decimal(end)?);
    let total = if total == "*" { None } else { Some(parse_decimal(total)?) };
    if end < start || total.is_some_and(|total| end >= total) {
        return None;
    }
    Some(ContentRange { bytes: start..end.checked_add(1)?, total })
}

/// The total of a 416's `Content-Range: bytes */TOTAL`; `None` when the header is absent.
fn unsatisfied_total(headers: &HeaderMap) -> Result<Option<u64>, FetchError> {
    let Some(value) = headers.get(CONTENT_RANGE) else { return Ok(None) };
    let value = value.to_str().unwrap_or("");
    parse_unsatisfied_total(value).map(Some).ok_or_else(|| malformed_content_range(value))
}

fn parse_unsatisfied_total(value: &str) -> Option<u64> {
    parse_decimal(value.trim().strip_prefix("bytes */")?)
}

/// Digits only: no sign, no spaces, no overflow.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(parse_decimal)
}

/// The ETag to send back in `If-Match`; weak ones can't match by the strong comparison
/// If-Match uses, so they are not sent.
fn strong_etag(headers: &HeaderMap) -> Option<String> {
    let etag = headers.get(ETAG)?.to_str().ok()?.trim();
    (!etag.is_empty() && !etag.starts_with("W/")).then(|| etag.to_owned())
}

/// The `<Code>` of an S3 or GCS XML error answer, if it looks like one (letters and digits).
fn error_code(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<Code>")? + "<Code>".len();
    let code = &text[start..start + text[start..].find("</Code>")?];
    let plausible =
        !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    plausible.then(|| code.to_owned())
}

/// What an error status means for this fetch.
fn classify_status(status: StatusCode, code: Option<&str>) -> Failure {
    let answer = match code {
        Some(code) => format!("HTTP {} {code}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    };
    // An expired session token is a 400 on S3 and GCS; re-minting cures it like an expired URL.
    let expired_token = matches!(code, Some("ExpiredToken" | "TokenRefreshRequired"));
    let denied_because = match code {
        Some("SignatureDoesNotMatch") => {
            "the URL's signature does not verify (a wrong key signed it, or it was altered)"
        }
        Some("InvalidAccessKeyId") => "the storage does not know the key that signed the URL",
        _ if expired_token => "the credentials behind the signed URL expired",
        _ => {
            "the signed URL expired, or the role may not read the object (s3:GetObject / storage.objects.get)"
        }
    };
    match status.as_u16() {
        401 | 403 => Failure::Stop(FetchError::AccessDenied(format!(
            "the storage refused to read the object ({answer}): {denied_because}"
        ))),
        400 if expired_token => Failure::Stop(FetchError::AccessDenied(format!(
            "the storage refused to read the object ({answer}): {denied_because}"
        ))),
        404 | 410 => Failure::Stop(FetchError::NotFound(format!(
            "the object does not exist ({answer}): check the job's bucket and key"
        ))),
        412 => Failure::Stop(object_changed(&format!("its ETag no longer matches, {answer}"))),
        // S3's `RequestTimeout` is a 400: the connection sat idle too long.
        408 | 429 | 500..=599 => Failure::Retry(FetchError::Transient(format!(
            "the storage is unavailable or throttling ({answer})"
        ))),
        400 if code == Some("RequestTimeout") => {
            Failure::Retry(FetchError::Transient(format!("the storage timed the request out ({answer})")))
        }
        300..=399 => Failure::Stop(FetchError::UnexpectedResponse(format!(
            "the storage redirected the signed GET ({answer}): the URL was signed for another \
             region or endpoint than the bucket's"
        ))),
        _ => Failure::Stop(FetchError::UnexpectedResponse(format!(
            "the storage refused the signed GET ({answer}); check how URLs are signed for this provider"
        ))),
    }
}

fn object_changed(how: &str) -> FetchError {
    FetchError::Transient(format!("the object changed while it was read ({how}); try again"))
}

fn mismatched_range(asked: &Range<u64>, got: &ContentRange) -> FetchError {
    FetchError::UnexpectedResponse(format!(
        "the storage sent bytes {}..{} for a request of bytes {}..{}",
        got.bytes.start, got.bytes.end, asked.start, asked.end
    ))
}

fn malformed_content_range(value: &str) -> FetchError {
    let shown: String = value.chars().take(80).collect();
    FetchError::UnexpectedResponse(format!("the storage sent a malformed Content-Range: {shown:?}"))
}

fn temp_file_error(error: &io::Error) -> FetchError {
    FetchError::Local(format!("writing or reading the fetch temp file failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1024;

    /// Ranges as (start, end) pairs, to compare with literals.
    fn spans(runs: Vec<Range<u64>>) -> Vec<(u64, u64)> {
        runs.into_iter().map(|run| (run.start, run.end)).collect()
    }

    fn map(size: u64, block: u64, present: &[usize]) -> BlockMap {
        let mut map = BlockMap::new(size, block);
        for &index in present {
            map.present[index] = true;
        }
        map
    }

    #[test]
    fn missing_blocks_are_coalesced_into_one_request() {
        let map = map(10 * KIB, KIB, &[]);
        assert_eq!(spans(map.runs_to_fetch(&(100..3500), 0)), [(0, 4 * KIB)]);
    }

    #[test]
    fn present_blocks_split_the_requests() {
        let map = map(10 * KIB, KIB, &[1, 2]);
        assert_eq!(spans(map.runs_to_fetch(&(0..5 * KIB), 0)), [(0, KIB), (3 * KIB, 5 * KIB)]);
        assert!(map.is_present(&(KIB..3 * KIB)));
        assert!(!map.is_present(&(KIB..3 * KIB + 1)));
    }

    #[test]
    fn read_ahead_extends_the_last_run_through_missing_blocks_only() {
        let map = map(10 * KIB, KIB, &[6]);
        // Wanted: block 2; window 8 KiB → blocks 2..10, but block 6 is present: stop there.
        assert_eq!(spans(map.runs_to_fetch(&(2 * KIB..2 * KIB + 10), 8 * KIB)), [(2 * KIB, 6 * KIB)]);
    }

    #[test]
    fn read_ahead_does_not_fill_holes_after_a_present_tail() {
        // Wanted blocks 0..2; block 1 is present, block 0 missing: fetch block 0 only.
        let map = map(10 * KIB, KIB, &[1]);
        assert_eq!(spans(map.runs_to_fetch(&(0..2 * KIB), 8 * KIB)), [(0, KIB)]);
    }

    #[test]
    fn runs_stop_at_the_object_end_with_a_short_last_block() {
        let map = map(2500, KIB, &[]);
        assert_eq!(spans(map.runs_to_fetch(&(2100..2400), 8 * KIB)), [(2 * KIB, 2500)]);
        assert_eq!(spans(map.runs_to_fetch(&(0..10), 64 * KIB)), [(0, 2500)]);
        let mut map = map;
        map.mark(2 * KIB..2500);
        assert!(map.is_present(&(2048..2500)));
        assert!(map.is_present(&(2600..2700)), "nothing to fetch past the end");
    }

    #[test]
    fn present_bytes_run_to_the_first_missing_block_or_the_limit() {
        let blocks = map(10 * KIB, 4 * KIB, &[0, 1]);
        assert_eq!(blocks.present_until(100, 10 * KIB), 8 * KIB, "through blocks 0 and 1");
        assert_eq!(blocks.present_until(100, 5 * KIB), 5 * KIB, "no further than asked");
        assert_eq!(map(10 * KIB, 4 * KIB, &[0, 1, 2]).present_until(0, 10 * KIB), 10 * KIB);
    }

    #[test]
    fn empty_and_complete_maps_need_nothing() {
        assert!(BlockMap::new(0, KIB).runs_to_fetch(&(0..0), KIB).is_empty());
        assert!(BlockMap::complete(5000, KIB).is_present(&(0..5000)));
    }

    #[test]
    fn a_read_after_a_larger_serving_still_continues_it() {
        // The parser child asks for 64 KiB and is given what is here, up to 8 MiB; its next
        // read starts where that ended, and must not reset the read-ahead like a seek.
        let mut read_ahead = ReadAhead::new(256 * KIB, 8 * 1024 * KIB);
        read_ahead.note_read(&(0..64 * KIB));
        assert_eq!(read_ahead.next_window(), 256 * KIB);
        read_ahead.note_served(1024 * KIB);
        read_ahead.note_read(&(1024 * KIB..1088 * KIB));
        assert_eq!(read_ahead.next_window(), 512 * KIB, "sequential: the window grew");
    }

    #[test]
    fn read_ahead_doubles_while_sequential_and_resets_on_a_seek() {
        let mut ahead = ReadAhead::new(256 * KIB, 8 * 1024 * KIB);
        ahead.note_read(&(0..100));
        assert_eq!(ahead.next_window(), 256 * KIB);
        let mut position = 100;
        let mut windows = Vec::new();
        for _ in 0..8 {
            ahead.note_read(&(position..position + 100));
            position += 100;
            windows.push(ahead.next_window() / KIB);
        }
        assert_eq!(windows, [512, 1024, 2048, 4096, 8192, 8192, 8192, 8192]);
        ahead.note_read(&(1_000_000..1_000_100)); // a seek
        assert_eq!(ahead.next_window(), 256 * KIB);
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(
            parse_content_range("bytes 0-262143/1000000"),
            Some(ContentRange { bytes: 0..262_144, total: Some(1_000_000) })
        );
        assert_eq!(
            parse_content_range("bytes 900-999/*"),
            Some(ContentRange { bytes: 900..1000, total: None })
        );
        assert_eq!(parse_unsatisfied_total("bytes */0"), Some(0));
    }

    #[test]
    fn malformed_content_ranges_are_refused() {
        for bad in [
            "",
            "bytes",
            "0-99/100",
            "items 0-99/100",
            "bytes 0-99",
            "bytes 99-0/100",
            "bytes 0-100/100",
            "bytes -1-5/100",
            "bytes +0-5/100",
            "bytes 0-5/-100",
            "bytes 0-18446744073709551615/*",
            "bytes 0-99999999999999999999/*",
            "bytes 0 -99/100",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
        assert_eq!(parse_unsatisfied_total("bytes 0-1/2"), None);
        assert_eq!(parse_unsatisfied_total("bytes */x"), None);
    }

    #[test]
    fn error_codes_are_read_from_xml_only_when_plausible() {
        let body = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>x</Message></Error>";
        assert_eq!(error_code(body).as_deref(), Some("SlowDown"));
        assert_eq!(error_code(b"<Code>has space</Code>"), None);
        assert_eq!(error_code(b"<Code>unterminated"), None);
        assert_eq!(error_code(b"not xml"), None);
    }

    fn kind_of(status: u16, code: Option<&str>) -> (ErrorKind, bool) {
        match classify_status(StatusCode::from_u16(status).unwrap(), code) {
            Failure::Retry(error) => (error.kind(), true),
            Failure::Stop(error) => (error.kind(), false),
        }
    }

    #[test]
    fn statuses_map_to_the_categories_the_pipeline_acts_on() {
        assert_eq!(kind_of(403, Some("AccessDenied")), (ErrorKind::AccessDenied, false));
        assert_eq!(kind_of(400, Some("ExpiredToken")), (ErrorKind::AccessDenied, false));
        assert_eq!(kind_of(404, Some("NoSuchKey")), (ErrorKind::NotFound, false));
        assert_eq!(kind_of(503, Some("SlowDown")), (ErrorKind::Transient, true));
        assert_eq!(kind_of(500, None), (ErrorKind::Transient, true));
        assert_eq!(kind_of(429, None), (ErrorKind::Transient, true));
        assert_eq!(kind_of(400, Some("RequestTimeout")), (ErrorKind::Transient, true));
        // A changed object is not retried in place: the whole job is.
        assert_eq!(kind_of(412, Some("PreconditionFailed")), (ErrorKind::Transient, false));
        assert_eq!(kind_of(301, Some("PermanentRedirect")), (ErrorKind::Internal, false));
        assert_eq!(kind_of(400, Some("AuthorizationQueryParametersError")), (ErrorKind::Internal, false));
    }

    #[test]
    fn a_large_object_goes_to_an_unnamed_private_file_a_small_one_to_memory() {
        let base = tempfile::tempdir().unwrap();
        let settings = FetchSettings { temp_dir: base.path().to_path_buf(), ..FetchSettings::default() };
        let Store::File(file) = Store::for_size(Some(MAX_IN_MEMORY_BYTES + 1), &settings).unwrap() else {
            panic!("a large object is held in a file");
        };
        let dir = base.path().join(PRIVATE_DIR_NAME);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "no name in the directory (O_TMPFILE)");
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(Store::for_size(Some(MAX_IN_MEMORY_BYTES), &settings).unwrap(), Store::Memory(_)));
        assert!(matches!(Store::for_size(None, &settings).unwrap(), Store::File(_)), "unknown size: a file");
    }

    #[test]
    fn a_store_serves_what_was_written_and_no_more() {
        let base = tempfile::tempdir().unwrap();
        let settings = FetchSettings { temp_dir: base.path().to_path_buf(), ..FetchSettings::default() };
        for size in [Some(10), None] {
            let mut store = Store::for_size(size, &settings).unwrap();
            store.write_at(b"0123456789", 0).unwrap();
            assert_eq!(store.read_at(2, 3).unwrap(), b"234");
            assert_eq!(store.read_at(8, 100).unwrap(), b"89", "clipped at the end");
            assert_eq!(store.read_at(20, 4).unwrap(), b"", "past the end");
        }
    }

    #[test]
    fn the_private_dir_is_0700_and_swept() {
        let base = tempfile::tempdir().unwrap();
        let dir = private_dir(base.path()).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        fs::write(dir.join(".tmpLEFTOVER"), b"x").unwrap();
        assert_eq!(sweep_temp_dir(base.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(sweep_temp_dir(&base.path().join("missing")).unwrap(), 0);
        fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(private_dir(base.path()), Err(FetchError::Local(m)) if m.contains("0700")));
    }
}
