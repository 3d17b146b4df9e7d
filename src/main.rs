//! The `asset-worker` binary: parse the command line and dispatch a subcommand.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use asset_worker::access::providers::Access;
use asset_worker::cli::queue as queue_cli;
use asset_worker::cli::{
    AccessFlags, RemoteContext, check, extract_files, parse_inputs, parse_remote, runtime,
};
use asset_worker::config::Settings;
use asset_worker::display::sign_one;
use asset_worker::extract::ExtractOptions;
use asset_worker::job::DataType;
use asset_worker::sandbox::{self, CHILD_SUBCOMMAND, MEMORY_FLAG, PARENT_FLAG, Pool, PoolSettings};

#[derive(Parser)]
#[command(
    name = "asset-worker",
    version,
    about = "Extracts metadata from images, video, audio, PDF, DICOM and text"
)]
struct Cli {
    /// A TOML settings file (else ASSET_WORKER_CONFIG); ASSET_WORKER_* variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How to reach an `s3://` or `gs://` object: the customer's delegation.
#[derive(Args, Clone, Default)]
struct AccessArgs {
    /// The customer's role to assume (s3://).
    #[arg(long, value_name = "ARN")]
    role_arn: Option<String>,
    /// The ExternalId the customer's role requires (s3://).
    #[arg(long, value_name = "ID")]
    external_id: Option<String>,
    /// The bucket's region (s3://; default: the worker's, ASSET_WORKER_REGION).
    #[arg(long)]
    region: Option<String>,
    /// The customer's service account to sign as (gs://).
    #[arg(long, value_name = "EMAIL")]
    service_account: Option<String>,
}

impl AccessArgs {
    fn flags(&self) -> AccessFlags {
        AccessFlags {
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            region: self.region.clone(),
            service_account: self.service_account.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print one JSON line of metadata per file or object (directories are walked; s3:// and
    /// gs:// objects are read through delegated access). No services needed for files.
    Extract {
        /// Files, directories, s3://BUCKET/KEY or gs://BUCKET/OBJECT.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Breaks ties when the bytes fit more than one type (e.g. an empty file as text).
        #[arg(long, value_name = "TYPE")]
        data_type: Option<DataType>,
        /// Wall-clock limit per file; the child reading it is killed after this.
        #[arg(long, default_value_t = 30_000, value_name = "MS", env = "ASSET_WORKER_EXTRACT_TIMEOUT_MS")]
        timeout_ms: u64,
        /// Memory a file's child process may parse in: address space on top of what the
        /// child holds at start (at least 32 MiB).
        #[arg(long, default_value_t = 1024, value_name = "MIB",
              value_parser = clap::value_parser!(u64).range(asset_worker::config::MIN_CHILD_MEMORY_MB..))]
        memory_limit_mb: u64,
        /// Files read at once (default: one per core).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// Files a parser child reads before it is replaced by a fresh one (1: one per file).
        #[arg(long, value_name = "N", env = "ASSET_WORKER_CHILD_MAX_JOBS")]
        child_max_jobs: Option<u32>,
        /// DICOM keywords to report in `tags`, comma-separated (default: a list without
        /// patient identifiers).
        #[arg(long, value_delimiter = ',', value_name = "KEYWORDS", env = "ASSET_WORKER_DICOM_TAGS")]
        dicom_tags: Option<Vec<String>>,
        /// Count the video frames of MKV/WebM and MPEG-TS files (frame_count, frame_rate_mode),
        /// like `ffprobe -count_frames`: this reads each such file whole, where the default
        /// reads its headers. MP4, MOV and AVI index their frames and are always counted.
        #[arg(long)]
        count_frames: bool,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print display URLs (one JSON line per object: url, expires_at, or error) minted through
    /// the same delegated access; with --via-broker, asked of a running worker instead (one
    /// signing request, its answer printed whole). Exit 0 if every object was signed.
    Sign {
        /// s3://BUCKET/KEY or gs://BUCKET/OBJECT, one or more.
        #[arg(required = true)]
        objects: Vec<String>,
        /// Lifetime of the URLs (default and most: ASSET_WORKER_DISPLAY_URL_TTL_SECONDS, 15
        /// minutes; a worker shortens a longer one to its own).
        #[arg(long, value_name = "SECONDS")]
        ttl_seconds: Option<u64>,
        /// Send the request to `{prefix}.sign` and print the worker's answer: an operator's
        /// check of the signing service (the broker from ASSET_WORKER_AMQP_URL).
        #[arg(long)]
        via_broker: bool,
        /// With --via-broker: how long to wait for the answer.
        #[arg(long, default_value_t = 10_000, value_name = "MS")]
        timeout_ms: u64,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Verify an integration: can the role be assumed (or the account signed as), is the
    /// object readable, and if not, the error a job would get; does the role require its
    /// ExternalId, may it list the bucket, and (with --origin) would a browser on the
    /// platform's page be allowed by the bucket's CORS. Exit 0 if readable and no warning.
    Check {
        /// s3://BUCKET/KEY or gs://BUCKET/OBJECT.
        object: String,
        /// The platform's web origin (https://HOST) to send the bucket a CORS preflight from
        /// (default ASSET_WORKER_DISPLAY_ORIGIN; none: no CORS check).
        #[arg(long, value_name = "ORIGIN")]
        origin: Option<String>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// The queue worker: consume jobs from {prefix}.process, publish results, until SIGTERM
    /// or SIGINT (then drain in-flight jobs and exit 0).
    Run,
    /// Publish jobs to {prefix}.process (confirmed) and print their job ids, one a line:
    /// a job per s3:// or gs:// object (with the access flags), per `--local` key, else one
    /// per line of stdin (raw job JSON, sent as is: bad messages too, for testing).
    Enqueue {
        /// s3://BUCKET/KEY or gs://BUCKET/OBJECT, read through the access flags below.
        objects: Vec<String>,
        /// Keys under ASSET_WORKER_LOCAL_ROOT (the worker's local provider).
        #[arg(long = "local", value_name = "KEY", num_args = 1..)]
        local: Vec<String>,
        /// The data type hint of the jobs.
        #[arg(long, value_name = "TYPE")]
        data_type: Option<DataType>,
        #[command(flatten)]
        access: AccessArgs,
    },
    /// Print results from {prefix}.results as JSON lines, acking each. Exit 1 if fewer than
    /// `--count` arrived before the timeout.
    Results {
        /// Stop after this many (default: until the timeout).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// Give up after this long.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Internal: extract one file described on stdin, answer on stdout (the sandbox child).
    #[command(name = CHILD_SUBCOMMAND, hide = true)]
    ExtractChild {
        /// The pid of the process waiting for the answer: the child exits when it is gone.
        #[arg(long = PARENT_FLAG)]
        parent: Option<u32>,
        #[arg(long = MEMORY_FLAG, default_value_t = 1 << 30)]
        memory_bytes: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The worker logs JSON lines for log pipelines; the other commands plain text for people.
    if !matches!(cli.command, Command::ExtractChild { .. }) {
        asset_worker::telemetry::init_logging(matches!(cli.command, Command::Run));
    }
    let result = match cli.command {
        Command::ExtractChild { parent, memory_bytes } => {
            return ExitCode::from(sandbox::child::child_main(parent, memory_bytes) as u8);
        }
        Command::Extract {
            paths,
            data_type,
            timeout_ms,
            memory_limit_mb,
            jobs,
            child_max_jobs,
            dicom_tags,
            count_frames,
            access,
        } => {
            let options = ExtractOptions { hint: data_type, dicom_tags, count_frames };
            let parallel =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let run = asset_worker::cli::ExtractRun {
                options,
                timeout: Duration::from_millis(timeout_ms),
                parallel,
            };
            run_extract(cli.config, paths, access, run, memory_limit_mb, child_max_jobs)
        }
        Command::Sign { objects, ttl_seconds, via_broker: false, access, .. } => {
            run_sign(cli.config, &objects, ttl_seconds, &access)
        }
        Command::Sign { objects, ttl_seconds, via_broker: true, timeout_ms, access } => {
            run_sign_via_broker(cli.config, &objects, ttl_seconds, Duration::from_millis(timeout_ms), &access)
        }
        Command::Check { object, origin, access } => run_check(cli.config, &object, origin, &access),
        Command::Run => run_worker(cli.config),
        Command::Enqueue { objects, local, data_type, access } => {
            run_enqueue(cli.config, &objects, &local, data_type, &access)
        }
        Command::Results { count, timeout } => run_results(cli.config, count, Duration::from_secs(timeout)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("asset-worker: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_extract(
    config: Option<PathBuf>,
    paths: Vec<PathBuf>,
    access: AccessArgs,
    run: asset_worker::cli::ExtractRun,
    memory_limit_mb: u64,
    child_max_jobs: Option<u32>,
) -> anyhow::Result<bool> {
    let any_remote = paths.iter().any(|p| p.to_string_lossy().contains("://"));
    // Settings (endpoints, identities) matter only for objects: files need none.
    let settings = if any_remote { Some(Settings::load(config.as_deref())?) } else { None };
    let region = settings.as_ref().map_or("eu-central-1", |s| s.aws_region());
    let inputs = parse_inputs(&paths, &access.flags(), region).map_err(anyhow::Error::msg)?;
    let runtime = runtime()?;
    let pool_settings = PoolSettings {
        exe: std::env::current_exe()?,
        size: run.parallel.clamp(1, inputs.len().max(1)),
        memory_bytes: memory_limit_mb.saturating_mul(1024 * 1024),
        max_jobs: child_max_jobs.unwrap_or(Settings::default().child_max_jobs).max(1),
    };
    let pool = runtime.block_on(async { Pool::start(pool_settings) });
    let remote = match &settings {
        Some(settings) => {
            let mut settings = settings.clone();
            settings.extract_timeout_ms = run.timeout.as_millis() as u64;
            settings.dicom_tags = run.options.dicom_tags.clone();
            Some(runtime.block_on(RemoteContext::new(&settings, pool.clone()))?)
        }
        None => None,
    };
    let all_succeeded =
        extract_files(&inputs, &run, runtime.handle(), &pool, remote.as_ref(), &mut std::io::stdout().lock());
    drop((remote, pool));
    runtime.shutdown_timeout(Duration::from_secs(1));
    all_succeeded
}

fn remote_object(
    config: Option<PathBuf>,
    object: &str,
    access: &AccessArgs,
) -> anyhow::Result<(Settings, tokio::runtime::Runtime, Access, asset_worker::job::Source)> {
    let settings = Settings::load(config.as_deref())?;
    let source = remote_source(&settings, object, access)?;
    let runtime = runtime()?;
    let providers = runtime.block_on(Access::from_settings(&settings))?;
    Ok((settings, runtime, providers, source))
}

/// `object` (s3://… or gs://…) as a job's source, with the access flags.
fn remote_source(
    settings: &Settings,
    object: &str,
    access: &AccessArgs,
) -> anyhow::Result<asset_worker::job::Source> {
    parse_remote(object, &access.flags(), settings.aws_region())
        .unwrap_or_else(|| Err(format!("{object}: expected s3://BUCKET/KEY or gs://BUCKET/OBJECT")))
        .map_err(anyhow::Error::msg)
}

fn run_sign(
    config: Option<PathBuf>,
    objects: &[String],
    ttl_seconds: Option<u64>,
    access: &AccessArgs,
) -> anyhow::Result<bool> {
    let settings = Settings::load(config.as_deref())?;
    let sources = objects
        .iter()
        .map(|object| remote_source(&settings, object, access))
        .collect::<Result<Vec<_>, _>>()?;
    let ttl_seconds = ttl_seconds.unwrap_or(settings.display_url_ttl_seconds);
    if ttl_seconds > settings.display_url_ttl_seconds {
        anyhow::bail!(
            "--ttl-seconds {ttl_seconds} exceeds ASSET_WORKER_DISPLAY_URL_TTL_SECONDS ({}); raise that setting \
             (and ASSET_WORKER_SESSION_DURATION_SECONDS with it) for longer display URLs",
            settings.display_url_ttl_seconds
        );
    }
    let runtime = runtime()?;
    let providers = runtime.block_on(Access::from_settings(&settings))?;
    let ttl = Duration::from_secs(ttl_seconds);
    let request_id = format!("sign-{}", std::process::id());
    let mut all_signed = true;
    for source in &sources {
        let signed = runtime.block_on(sign_one(&providers, source, ttl, &request_id));
        all_signed &= signed.error.is_none();
        println!("{}", serde_json::to_string(&signed)?);
    }
    Ok(all_signed)
}

fn run_sign_via_broker(
    config: Option<PathBuf>,
    objects: &[String],
    ttl_seconds: Option<u64>,
    timeout: Duration,
    access: &AccessArgs,
) -> anyhow::Result<bool> {
    let settings = Settings::load(config.as_deref())?;
    let sources = objects
        .iter()
        .map(|object| remote_source(&settings, object, access))
        .collect::<Result<Vec<_>, _>>()?;
    let (answer, took) =
        runtime()?.block_on(queue_cli::sign_via_broker(&settings, &sources, ttl_seconds, timeout))?;
    eprintln!("asset-worker: answered in {} ms by {}", took.as_millis(), answer.worker.host);
    println!("{}", serde_json::to_string(&answer)?);
    Ok(answer.error.is_none() && answer.urls.iter().all(|url| url.error.is_none()))
}

fn run_check(
    config: Option<PathBuf>,
    object: &str,
    origin: Option<String>,
    access: &AccessArgs,
) -> anyhow::Result<bool> {
    if let Some(origin) = &origin {
        asset_worker::access::cors::check_origin(origin)
            .map_err(|problem| anyhow::anyhow!("--origin {problem}"))?;
    }
    let (settings, runtime, providers, source) = remote_object(config, object, access)?;
    let origin = origin.or_else(|| settings.display_origin.clone());
    let fetch = asset_worker::fetch::FetchSettings::from_settings(&settings);
    let answer = runtime.block_on(check(&providers, object, &source, &fetch, origin.as_deref()));
    println!("{}", serde_json::to_string(&answer)?);
    Ok(answer.passed())
}

fn run_worker(config: Option<PathBuf>) -> anyhow::Result<bool> {
    let settings = Settings::load(config.as_deref())?;
    let runtime = runtime()?;
    let outcome = asset_worker::cli::run_on_workers(&runtime, async move {
        // Installed before connecting: a SIGTERM during start-up still shuts down cleanly.
        let shutdown = shutdown_signal()?;
        queue_cli::run_worker(&settings, shutdown).await
    });
    // Blocking threads (the cloud SDKs' file reads) are not waited for long.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome.map(|()| true)
}

/// Resolves on the first SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

fn run_enqueue(
    config: Option<PathBuf>,
    objects: &[String],
    local: &[String],
    data_type: Option<DataType>,
    access: &AccessArgs,
) -> anyhow::Result<bool> {
    let settings = Settings::load(config.as_deref())?;
    let bodies = if !objects.is_empty() || !local.is_empty() {
        let mut sources = Vec::with_capacity(objects.len());
        for object in objects {
            let source = parse_remote(object, &access.flags(), settings.aws_region())
                .unwrap_or_else(|| Err(format!("{object}: expected s3://BUCKET/KEY or gs://BUCKET/OBJECT")))
                .map_err(anyhow::Error::msg)?;
            sources.push((object.clone(), source));
        }
        let mut bodies = queue_cli::new_jobs(sources, data_type);
        bodies.extend(queue_cli::local_jobs(local, data_type));
        // Jobs built from flags are checked as the worker will check them (an s3:// object
        // without --external-id would only come back as invalid_job).
        for body in &bodies {
            asset_worker::job::Job::parse(body).map_err(|invalid| anyhow::anyhow!("{invalid}"))?;
        }
        bodies
    } else {
        let mut bodies = Vec::new();
        for line in std::io::stdin().lines() {
            let line = line?;
            if !line.trim().is_empty() {
                bodies.push(line.into_bytes());
            }
        }
        bodies
    };
    let ids = runtime()?.block_on(queue_cli::enqueue(&settings, &bodies))?;
    let mut out = std::io::stdout().lock();
    for id in ids {
        writeln!(out, "{}", id.as_deref().unwrap_or("-"))?;
    }
    Ok(true)
}

fn run_results(config: Option<PathBuf>, count: Option<usize>, timeout: Duration) -> anyhow::Result<bool> {
    let settings = Settings::load(config.as_deref())?;
    let printed =
        runtime()?.block_on(queue_cli::results(&settings, count, timeout, &mut std::io::stdout().lock()))?;
    if let Some(count) = count
        && printed < count
    {
        eprintln!("asset-worker: {printed} of {count} results arrived within {} s", timeout.as_secs());
        return Ok(false);
    }
    Ok(true)
}
