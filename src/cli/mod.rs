//! The one-shot commands of DESIGN §4: `extract` (files or objects in, one JSON line each
//! out), `sign` (a display URL through the same delegated access) and `check` (can this
//! integration read this object, and if not, why). The queue commands are in [`queue`].
//!
//! `extract` over local files needs no service and no network, so it is the first thing a new
//! user runs. Each file is read by a parser child of the same pool a worker uses
//! ([`crate::sandbox`]), several at once (one per core by default); lines come out in the
//! order the inputs were given. An `s3://` or `gs://` input goes through the same pipeline as
//! a queued job.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use serde::Serialize;

use crate::access::MintRequest;
use crate::access::providers::Access;
use crate::config::Settings;
use crate::extract::ExtractOptions;
use crate::job::{ErrorBody, ErrorKind, GcsSource, Outcome, S3Source, Source, Status};
use crate::pipeline::{Pipeline, Stats, extract_file, process_source};
use crate::sandbox::Pool;

pub mod queue;

/// Above this many files a progress bar is shown (on a terminal).
const PROGRESS_BAR_MIN_FILES: usize = 20;

/// One line of `extract`'s output: the fields of a result, for a path.
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// What fetching a remote object cost (absent for local files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

/// The delegated access an `s3://` or `gs://` input is read through.
#[derive(Debug, Clone, Default)]
pub struct AccessFlags {
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// The bucket's region; the worker's own region when unset.
    pub region: Option<String>,
    pub service_account: Option<String>,
}

/// What an input names.
#[derive(Debug, Clone)]
pub enum Input {
    Local(PathBuf),
    /// An object, shown as the user wrote it.
    Remote {
        shown: String,
        source: Source,
    },
}

/// An `s3://bucket/key` or `gs://bucket/object` argument as a job's source; `None` for a
/// local path.
pub fn parse_remote(arg: &str, flags: &AccessFlags, default_region: &str) -> Option<Result<Source, String>> {
    let (scheme, rest) = arg.split_once("://")?;
    let split = |rest: &str| match rest.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
            Ok((bucket.to_owned(), key.to_owned()))
        }
        _ => Err(format!("{arg}: expected {scheme}://BUCKET/KEY")),
    };
    Some(match scheme {
        "s3" => split(rest).and_then(|(bucket, key)| {
            let role_arn =
                flags.role_arn.clone().ok_or_else(|| format!("{arg}: --role-arn is required for s3://"))?;
            Ok(Source::S3(S3Source {
                region: flags.region.clone().unwrap_or_else(|| default_region.to_owned()),
                bucket,
                key,
                role_arn,
                external_id: flags.external_id.clone(),
            }))
        }),
        "gs" => split(rest).map(|(bucket, object)| {
            Source::Gcs(GcsSource { bucket, object, service_account: flags.service_account.clone() })
        }),
        other => Err(format!("{arg}: unknown scheme {other}://; use a path, s3:// or gs://")),
    })
}

/// The arguments of `extract` as inputs: objects parsed, directories walked.
pub fn parse_inputs(
    args: &[PathBuf],
    flags: &AccessFlags,
    default_region: &str,
) -> Result<Vec<Input>, String> {
    let mut inputs = Vec::new();
    for arg in args {
        match parse_remote(&arg.to_string_lossy(), flags, default_region) {
            Some(source) => {
                inputs.push(Input::Remote { shown: arg.to_string_lossy().into_owned(), source: source? })
            }
            None => inputs.extend(expand_paths(std::slice::from_ref(arg)).into_iter().map(Input::Local)),
        }
    }
    Ok(inputs)
}

/// The tokio runtime every command that talks to a cloud SDK or the broker runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Runs a consumer's loop as a task on `runtime`'s worker threads, not on the calling thread
/// as `block_on` would: every delivery and every finished job wakes the loop, and a loop on
/// the calling thread made each of those a hand-off to a third thread (BENCHMARKS.md, issue
/// 8). A panic in it is the caller's panic.
pub fn run_on_workers<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match runtime.block_on(runtime.spawn(future)) {
        Ok(output) => output,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the consumer's task ended without an answer: {error}"),
        },
    }
}

/// What reading remote objects needs: the providers and a pipeline (over the pool local files
/// use too). Built only when an input is remote.
pub struct RemoteContext {
    access: Access,
    pipeline: Pipeline,
}

impl RemoteContext {
    /// Providers and pipeline from the worker's settings (the environment).
    pub async fn new(settings: &Settings, pool: Pool) -> anyhow::Result<Self> {
        // Fetched bytes live in unnamed files; anything named there was left by a crash on a
        // system without O_TMPFILE.
        crate::fetch::sweep_temp_dir(&settings.temp_dir)?;
        let access = Access::from_settings(settings).await?;
        Ok(RemoteContext { access, pipeline: Pipeline::new(pool, settings)? })
    }
}

/// How to run `extract`.
#[derive(Debug, Clone)]
pub struct ExtractRun {
    pub options: ExtractOptions,
    /// The most one file's extraction may take.
    pub timeout: Duration,
    /// Files extracted at once.
    pub parallel: usize,
}

/// Expands directories (recursively, in name order, hidden entries skipped) into files.
pub fn expand_paths(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        collect(input, &mut files, true);
    }
    files
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, given: bool) {
    // Directory symlinks are not followed while walking: a link loop can't trap the walk.
    let is_dir = if given { path.is_dir() } else { path.symlink_metadata().is_ok_and(|m| m.is_dir()) };
    if !is_dir {
        files.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        files.push(path.to_path_buf()); // reported as unreadable by the extraction itself
        return;
    };
    let mut children: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        collect(&child, files, false);
    }
}

/// Extracts every input, writing one JSON line per input to `out` in input order. Returns
/// whether all of them succeeded.
pub fn extract_files(
    inputs: &[Input],
    run: &ExtractRun,
    runtime: &tokio::runtime::Handle,
    pool: &Pool,
    remote: Option<&RemoteContext>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel();
    let progress = (inputs.len() >= PROGRESS_BAR_MIN_FILES && std::io::stderr().is_terminal())
        .then(|| indicatif::ProgressBar::new(inputs.len() as u64));
    let mut all_succeeded = true;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..run.parallel.clamp(1, inputs.len().max(1)) {
            let sender = sender.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(input) = inputs.get(index) else { break };
                    let report = match input {
                        Input::Local(path) => runtime.block_on(extract_one(pool, path, run)),
                        Input::Remote { shown, source } => {
                            runtime.block_on(extract_remote(shown, source, index, remote))
                        }
                    };
                    if sender.send((index, report)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        // Reports arrive in completion order; hold each until those before it are written.
        let mut waiting = BTreeMap::new();
        let mut next_to_write = 0;
        for (index, report) in receiver {
            waiting.insert(index, report);
            while let Some(report) = waiting.remove(&next_to_write) {
                all_succeeded &= report.outcome.status == Status::Succeeded;
                serde_json::to_writer(&mut *out, &report)?;
                out.write_all(b"\n")?;
                next_to_write += 1;
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
            }
        }
        out.flush()?;
        Ok(())
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(all_succeeded)
}

/// Reads one object through delegated access, as a queued job would.
async fn extract_remote(
    shown: &str,
    source: &Source,
    index: usize,
    remote: Option<&RemoteContext>,
) -> FileReport {
    let Some(remote) = remote else {
        let error = ErrorBody::new(ErrorKind::Internal, "remote inputs need a RemoteContext");
        return FileReport { path: shown.to_owned(), outcome: Outcome::failed(error, None), stats: None };
    };
    let job_id = format!("cli-{}-{index}", std::process::id());
    let processed = process_source(&remote.access, source, &job_id, &remote.pipeline).await;
    let outcome = Outcome::new(processed.outcome, processed.size_bytes);
    FileReport { path: shown.to_owned(), outcome, stats: Some(processed.stats) }
}

/// Extracts one local file in a child of the pool.
pub async fn extract_one(pool: &Pool, path: &Path, run: &ExtractRun) -> FileReport {
    let extraction = extract_file(pool, path, &run.options, run.timeout).await;
    let outcome = Outcome::new(extraction.outcome, extraction.stats.size_bytes);
    FileReport { path: path.display().to_string(), outcome, stats: None }
}

/// `check`'s answer: whether a job for this object would succeed in reaching it, and if not,
/// the error it would get; then what else would hurt the customer (`warnings`): a trust policy
/// without the ExternalId condition, a role that may do more than read objects, a bucket whose
/// CORS rules keep the platform's page from showing the asset. Passed: readable, no warning.
#[derive(Debug, Serialize)]
pub struct CheckAnswer {
    pub source: String,
    pub status: Status,
    /// The role was assumed (S3) or the URL signed (GCS): the delegation itself works.
    pub access_granted: bool,
    pub size_bytes: Option<u64>,
    pub content_type: Option<String>,
    pub error: Option<ErrorBody>,
    /// S3: whether the role refuses a session without the ExternalId (null: not tried,
    /// because the role could not be assumed at all, or not S3).
    pub external_id_enforced: Option<bool>,
    /// What the delegation allows, as far as could be tried without writing anything.
    pub scope: Scope,
    /// The browser's preflight from `--origin`, when one was given.
    pub cors: Option<CorsReport>,
    /// What the customer's admin should change, even where the object is readable.
    pub warnings: Vec<Warning>,
}

impl CheckAnswer {
    /// Whether the integration is as it should be: the object is readable and nothing warns.
    pub fn passed(&self) -> bool {
        self.status == Status::Succeeded && self.warnings.is_empty()
    }

    fn warn(&mut self, kind: &'static str, message: String) {
        self.warnings.push(Warning { kind, message });
    }
}

/// The platform needs GetObject, and nothing more.
#[derive(Debug, Default, Serialize)]
pub struct Scope {
    /// The object could be read (HEAD through the job's own session); null when unknown.
    pub get_object: Option<bool>,
    /// The role, without the platform's session policy, may list the bucket (S3).
    pub list_bucket: Option<bool>,
}

/// A CORS preflight's outcome and, when it failed, the bucket configuration that fixes it.
#[derive(Debug, Serialize)]
pub struct CorsReport {
    #[serde(flatten)]
    pub preflight: crate::access::cors::Preflight,
    /// S3's `CORSConfiguration` JSON or GCS's `cors.json`, for this origin.
    pub configuration: Option<serde_json::Value>,
    /// The command that applies `configuration` (saved as cors.json).
    pub apply: Option<String>,
}

/// One thing to fix: `kind` for programs, `message` for the admin (it names the fix).
#[derive(Debug, Serialize)]
pub struct Warning {
    pub kind: &'static str,
    pub message: String,
}

/// Verifies an integration: delegation first, then the object itself, then the guards
/// (ExternalId required, scope) and, with `origin`, the bucket's CORS for the display page.
/// Nothing is written anywhere: every probe is an AssumeRole, a HEAD, a one-key list or an
/// OPTIONS.
pub async fn check(
    access: &Access,
    shown: &str,
    source: &Source,
    fetch: &crate::fetch::FetchSettings,
    origin: Option<&str>,
) -> CheckAnswer {
    let mut answer = CheckAnswer {
        source: shown.to_owned(),
        status: Status::Failed,
        access_granted: false,
        size_bytes: None,
        content_type: None,
        error: None,
        external_id_enforced: None,
        scope: Scope::default(),
        cors: None,
        warnings: Vec::new(),
    };
    let job_id = format!("check-{}", std::process::id());
    let request = MintRequest::new(job_id.clone(), std::time::Duration::from_secs(300));
    let minted = match access.mint(source, &request).await {
        Ok(minted) => minted,
        Err(error) => {
            answer.error = Some(ErrorBody::new(error.kind(), error.to_string()));
            return answer;
        }
    };
    answer.access_granted = true;
    let object = match (source, &minted) {
        // S3 answers a HEAD with what a GET would get, and tells a wrong region apart.
        (Source::S3(s3), _) => access
            .s3()
            .check_object(s3, &job_id)
            .await
            .map(|object| (object.size_bytes, object.content_type))
            .map_err(|error| ErrorBody::new(error.kind(), error.to_string())),
        (_, crate::access::Fetchable::Url(url)) => {
            let fetch = crate::fetch::FetchSettings { block_bytes: 4096, ..fetch.clone() };
            match crate::fetch::Fetcher::new(&fetch) {
                Ok(fetcher) => fetcher
                    .remote(url.clone())
                    .open()
                    .await
                    .map(|size| (Some(size), None))
                    .map_err(|e| e.to_body()),
                Err(error) => Err(error.to_body()),
            }
        }
        (_, crate::access::Fetchable::File { size, .. }) => Ok((Some(*size), None)),
    };
    match object {
        Ok((size_bytes, content_type)) => {
            answer.status = Status::Succeeded;
            answer.size_bytes = size_bytes;
            answer.content_type = content_type;
            answer.scope.get_object = Some(true);
        }
        Err(error) => {
            if error.kind == ErrorKind::AccessDenied {
                answer.scope.get_object = Some(false);
            }
            answer.error = Some(error);
        }
    }
    if let Source::S3(s3) = source {
        check_s3_guards(access.s3(), s3, &job_id, &mut answer).await;
    }
    if let (Some(origin), crate::access::Fetchable::Url(url)) = (origin, &minted) {
        check_cors(source, url, origin, &mut answer).await;
    }
    answer
}

/// The confused-deputy guard and the scope of an S3 role.
async fn check_s3_guards(
    s3: &crate::access::aws::S3Access,
    source: &S3Source,
    job_id: &str,
    answer: &mut CheckAnswer,
) {
    let role = &source.role_arn;
    match s3.external_id_enforced(source, job_id).await {
        Ok(enforced) => answer.external_id_enforced = Some(enforced),
        Err(error) => answer.warn(
            "external_id_unchecked",
            format!("whether {role} requires its ExternalId could not be checked: {error}"),
        ),
    }
    if answer.external_id_enforced == Some(false) {
        answer.warn(
            "external_id_not_required",
            format!(
                "the role {role} can be assumed WITHOUT an ExternalId: its trust policy lacks the condition \
                 that stops another customer of the platform from naming this role (the confused deputy). \
                 Fix: add \"Condition\": {{\"StringEquals\": {{\"sts:ExternalId\": \"<your ExternalId>\"}}}} to \
                 the trust policy's statement that allows the platform's account sts:AssumeRole \
                 (deploy/customer/aws/ does)"
            ),
        );
    }
    match s3.may_list_bucket(source, job_id).await {
        Ok(may_list) => answer.scope.list_bucket = Some(may_list),
        Err(error) => answer.warn(
            "scope_unchecked",
            format!("whether {role} may list bucket {} could not be checked: {error}", source.bucket),
        ),
    }
    if answer.scope.list_bucket == Some(true) {
        answer.warn(
            "broader_than_needed",
            format!(
                "the role {role} may list bucket {bucket} (s3:ListBucket): the platform only needs \
                 s3:GetObject on the objects it reads. Fix: remove s3:ListBucket on arn:aws:s3:::{bucket} \
                 from the role's policies",
                bucket = source.bucket
            ),
        );
    }
}

/// Sends the browser's preflight for the minted URL; if the origin would be refused, the
/// bucket configuration to apply and the command that applies it.
async fn check_cors(source: &Source, url: &crate::access::SignedUrl, origin: &str, answer: &mut CheckAnswer) {
    let preflight = match crate::access::cors::preflight(url, origin).await {
        Ok(preflight) => preflight,
        Err(error) => {
            answer.warn("cors_unchecked", format!("the CORS preflight from {origin} failed: {error}"));
            return;
        }
    };
    let mut report = CorsReport { preflight, configuration: None, apply: None };
    if !report.preflight.allowed {
        let (bucket, configuration, apply) = match source {
            Source::Gcs(gcs) => (
                &gcs.bucket,
                crate::access::cors::gcs_configuration(origin),
                format!("gcloud storage buckets update gs://{} --cors-file=cors.json", gcs.bucket),
            ),
            Source::S3(s3) => (
                &s3.bucket,
                crate::access::cors::s3_configuration(origin),
                format!(
                    "aws s3api put-bucket-cors --bucket {} --cors-configuration file://cors.json",
                    s3.bucket
                ),
            ),
            Source::Local(_) => return,
        };
        answer.warn(
            "cors_refused",
            format!(
                "a browser on {origin} would be refused the asset: bucket {bucket} answered its preflight \
                 with HTTP {} and Access-Control-Allow-Origin {:?}. Fix: save `cors.configuration` as \
                 cors.json and run `{apply}` (it replaces the bucket's CORS rules: add this rule to any \
                 the bucket already has)",
                report.preflight.http_status,
                report.preflight.allow_origin.as_deref().unwrap_or("(none)")
            ),
        );
        report.configuration = Some(configuration);
        report.apply = Some(apply);
    }
    answer.cors = Some(report);
}
