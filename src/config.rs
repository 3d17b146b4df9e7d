//! Typed settings: built-in defaults, then an optional TOML file (`ASSET_WORKER_CONFIG` or
//! `--config`), then `ASSET_WORKER_*` environment variables, each layer over the one before
//! (DESIGN §4). Validated once at start, with a message that names the bad setting; secrets
//! (the AMQP URL carries a password) are `SecretString`s, so `Debug` never prints them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

const MIB: u64 = 1 << 20;
/// The largest fetch budget: 4 TiB, what the budget's semaphore counts (KiB units in a u32).
const MAX_FETCH_BUDGET_MB: u64 = 4 << 20;

/// The longest a signed URL may live: S3 and GCS both refuse more than 7 days.
const MAX_URL_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Jobs in flight per core by default: enough that a storage 30 ms away keeps the parser
/// children busy. Measured through a delaying proxy in front of SeaweedFS (BENCHMARKS.md,
/// issue 8): on 2 cores, 32 in flight answered at 30 ms RTT 0.64–0.66 of the 0 ms rate, 64 in
/// flight 0.84–0.88, 96 in flight 0.92–0.93. 16 per core was enough while a job cost 1.5 ms of
/// CPU; at 0.4 ms the latency shows again.
const JOBS_IN_FLIGHT_PER_CORE: usize = 32;
/// Jobs a parser child serves by default before it is replaced. A child's start costs ~3 ms of
/// CPU (exec, loading, lock-down, on both sides of the pipe), more than parsing a small file:
/// at 100 it was a third of the CPU of a small job (0.21 → 0.135 ms at 1000, BENCHMARKS.md,
/// issue 8). What a job could leave behind for a later one is bounded by the children
/// scrubbing freed memory (see the pool) and by this count; Tika's server restarts its child
/// after 100,000 files, exiftool-vendored after 500. 1 gives a fresh process per job.
const DEFAULT_CHILD_MAX_JOBS: u32 = 1000;
/// The memory each parser child may parse in by default when no budget is set.
const DEFAULT_CHILD_MEMORY_MB: u64 = 1024;
/// The least memory cap a parser child is given: room for a job's reads (windows of up to
/// 8 MiB) and an ordinary parser's buffers, so that a valid file never fails by the cap.
/// The cap comes on top of the address space the child holds at start (its binary,
/// libraries and thread arena: ~100 MiB in a debug build), which is not counted here.
pub const MIN_CHILD_MEMORY_MB: u64 = 32;
/// Retry delays: each is a queue on the broker, so their number is bounded; a day is longer
/// than any blip worth waiting for.
const MAX_RETRY_DELAYS: usize = 8;
const MAX_RETRY_DELAY_SECONDS: u64 = 86_400;

/// The cores this process may use (the cgroup's CPU quota included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Every setting of the worker. Field names are the environment variables without their
/// `ASSET_WORKER_` prefix (lower-cased) and the keys of the TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The broker, with credentials.
    #[serde(serialize_with = "serialize_secret")]
    pub amqp_url: SecretString,
    /// Queue and exchange names derive from it (`{prefix}.process`, `{prefix}.results`, …).
    pub queue_prefix: String,
    /// Enables the local provider over this folder (development and demos).
    pub local_root: Option<PathBuf>,
    /// Where fetched bytes are held while a job runs: a private folder (0700) is made inside.
    pub temp_dir: PathBuf,
    /// Jobs in flight at once (the consumer's prefetch). Well above the cores: a job waiting
    /// on the network holds no parser child, so this hides the storage's latency.
    pub concurrency: usize,
    /// Parser children at once: the CPU-bound part of jobs. Unset: one per core.
    pub pool_size: Option<usize>,
    /// The memory the parser children share: each child's address space (`RLIMIT_AS`) is this
    /// over `pool_size`. Unset: 1024 MiB per child. The pod's memory limit follows from it.
    pub memory_budget_mb: Option<u64>,
    /// Jobs a parser child serves before it is replaced by a fresh process (1: one per job).
    pub child_max_jobs: u32,
    /// Deliveries of one job before the broker dead-letters it (`x-delivery-limit` of the
    /// process queue). Fixed when the queue is first declared: changing it later makes the
    /// declaration fail until the queue is re-created.
    pub delivery_limit: u32,
    /// How long a job that failed transiently waits before its next attempt, by attempt (the
    /// last delay serves every later one). Each delay is a retry queue of its own
    /// (`{prefix}.retry.{N}s`) whose messages expire back into the process queue.
    pub retry_delays_seconds: Vec<u64>,
    /// The queues a job's `reply_to` may name (a prefix; unset: `{queue_prefix}.reply.`).
    /// RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to…`) is always allowed. Without a bound
    /// a job could make the worker publish into any queue of the vhost, its own process queue
    /// included.
    pub reply_to_prefix: Option<String>,
    /// On SIGTERM, how long in-flight jobs may run before they are handed back to the queue.
    /// Keep the pod's `terminationGracePeriodSeconds` above it.
    pub drain_timeout_seconds: u64,
    /// The most one job may take from delivery to answer: minting, fetching and extracting
    /// (a re-mint included). Past it the job is answered `timeout` and its child is killed.
    pub job_timeout_seconds: u64,
    /// Declare the queues and exchanges at start (needs the `configure` right on them). False:
    /// only check that they exist (passive declares), for a broker whose topology an operator
    /// pre-declared, so that the worker's user needs no `configure` right (deploy/README.md).
    pub declare_topology: bool,
    /// Health and metrics endpoint.
    pub http_addr: SocketAddr,
    /// The region the worker processes in, on any cloud: the value of its nodes'
    /// `topology.kubernetes.io/region` label (`eu-central-1` on EKS, `europe-west3` on GKE).
    /// Reported with every result; the Deployment pins its pods to it.
    pub region: String,
    /// The AWS region the worker's own identity calls STS in, and the region of an `s3://`
    /// object named on the command line without `--region`. Unset: `region`, which is right on
    /// AWS; elsewhere, the AWS region nearest the worker (`eu-central-1` for `europe-west3`).
    pub aws_region: Option<String>,
    /// Endpoint overrides for emulators, S3-compatible stores and VPC endpoints.
    pub s3_endpoint: Option<String>,
    pub s3_force_path_style: bool,
    pub sts_endpoint: Option<String>,
    pub gcs_endpoint: Option<String>,
    pub iam_credentials_endpoint: Option<String>,
    /// A service-account key that signs GCS jobs naming no service account (development).
    pub gcs_key_file: Option<PathBuf>,
    /// How long a signed URL minted for a job lives.
    pub url_ttl_seconds: u64,
    /// How long a display URL (`asset-worker sign`, the platform's frontend) lives: the
    /// longest a signing request gets, whatever its `ttl_seconds` asks.
    pub display_url_ttl_seconds: u64,
    /// Signing requests (`{prefix}.sign`) taken at once, on a channel of their own so that a
    /// backlog of jobs never delays a page's URLs. 0: this worker serves no signing requests.
    pub sign_prefetch: u16,
    /// Lifetime of an assumed-role session (STS allows 900 s to 12 h; a role's own maximum may be
    /// 1 h). A URL lives at most this minus a minute, so it must exceed the display TTL.
    pub session_duration_seconds: u64,
    /// The oldest an assumed-role session may be and still sign a new URL; older ones are
    /// replaced by a new AssumeRole. Bounds how long this worker keeps minting after a
    /// customer removes the platform from the role's trust policy (STS does not end the
    /// sessions it issued). docs/CUSTOMER-SETUP.md states it to customers.
    pub session_max_age_seconds: u64,
    /// The platform's web origin (`https://app.example`) whose browsers show assets:
    /// `asset-worker check` sends that origin's CORS preflight to the bucket.
    pub display_origin: Option<String>,
    /// Wall-clock limit of one extraction in a parser child.
    pub extract_timeout_ms: u64,
    /// Objects larger than this are refused before any byte is read.
    pub max_object_bytes: u64,
    /// The most bytes one job may download (ranged reads fetch only what parsers read).
    pub max_fetch_bytes: u64,
    /// The fetched bytes all jobs of this worker hold at once, in its memory and its temp dir
    /// together: the temp dir's size and the worker's share of the pod's memory follow from
    /// it, whatever `concurrency` is. A job that needs more waits for others to finish. Unset:
    /// enough that no job ever waits on storage that honours Range (S3, GCS), see
    /// [`Settings::fetch_budget_without_waits_mb`], also the least it may be.
    pub fetch_budget_mb: Option<u64>,
    /// Fetch timeouts: establishing a connection, and silence of the storage mid-answer.
    pub fetch_connect_timeout_ms: u64,
    pub fetch_read_timeout_ms: u64,
    /// The unit of ranged fetching (and the least any remote file costs).
    pub fetch_block_bytes: u64,
    /// DICOM keywords to report; unset means the default list without patient identifiers.
    pub dicom_tags: Option<Vec<String>>,
}

fn serialize_secret<S: serde::Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            amqp_url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            queue_prefix: "assets".into(),
            local_root: None,
            temp_dir: std::env::temp_dir().join("asset-worker"),
            concurrency: JOBS_IN_FLIGHT_PER_CORE * cores(),
            pool_size: None,
            memory_budget_mb: None,
            child_max_jobs: DEFAULT_CHILD_MAX_JOBS,
            delivery_limit: 5,
            // An STS or storage blip heals in seconds, an outage in minutes: 4 retries span
            // about 13 minutes before the job is answered `transient`.
            retry_delays_seconds: vec![5, 30, 120, 600],
            reply_to_prefix: None,
            drain_timeout_seconds: 30,
            job_timeout_seconds: 120,
            declare_topology: true,
            http_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            region: "eu-central-1".into(),
            aws_region: None,
            s3_endpoint: None,
            s3_force_path_style: false,
            sts_endpoint: None,
            gcs_endpoint: None,
            iam_credentials_endpoint: None,
            gcs_key_file: None,
            url_ttl_seconds: 300,
            display_url_ttl_seconds: 900,
            // A request is a few milliseconds of CPU (or, on GCS, of signBlob calls): a few at
            // once keep the channel busy without starving the jobs' tasks.
            sign_prefetch: 8,
            session_duration_seconds: 3600,
            session_max_age_seconds: 900,
            display_origin: None,
            extract_timeout_ms: 30_000,
            max_object_bytes: 1 << 40,
            max_fetch_bytes: 4 << 30,
            fetch_budget_mb: None,
            fetch_connect_timeout_ms: 10_000,
            fetch_read_timeout_ms: 30_000,
            fetch_block_bytes: 256 * 1024,
            dicom_tags: None,
        }
    }
}

/// A setting that is missing, malformed or out of range, named so the operator can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Unreadable(String),
    #[error("configuration: {setting} ({env}) {problem}")]
    Invalid { setting: &'static str, env: String, problem: String },
}

impl Settings {
    /// Defaults, then `file` (if given, else `ASSET_WORKER_CONFIG` if set), then the
    /// environment; validated.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("ASSET_WORKER_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = &file {
            if !file.is_file() {
                return Err(ConfigError::Unreadable(format!("no config file at {}", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        // `ASSET_WORKER_CONFIG` names the file, and `ASSET_WORKER_TEST_*` belongs to the test
        // harness (the peers' endpoints); neither is a setting. Any other unknown
        // `ASSET_WORKER_*` variable is refused: it is a typo that would silently do nothing.
        let env = Env::prefixed("ASSET_WORKER_")
            .ignore(&["config"])
            .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"));
        figment = figment.merge(env);
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Unreadable(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, problem: String| ConfigError::Invalid {
            setting,
            env: format!("ASSET_WORKER_{}", setting.to_ascii_uppercase()),
            problem,
        };
        let region_ok = !self.region.is_empty()
            && self.region.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(invalid(
                "region",
                format!("is {:?}; expected a region name like eu-central-1 or europe-west3", self.region),
            ));
        }
        if !is_aws_region(self.aws_region()) {
            let problem = match &self.aws_region {
                Some(aws_region) => format!("is {aws_region:?}; expected an AWS region like eu-central-1"),
                None => format!(
                    "is unset and ASSET_WORKER_REGION {:?} is not an AWS region: set it to the AWS region \
                     the worker calls STS in (the one nearest, e.g. eu-central-1)",
                    self.region
                ),
            };
            return Err(invalid("aws_region", problem));
        }
        if !self.queue_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || self.queue_prefix.is_empty()
        {
            return Err(invalid(
                "queue_prefix",
                format!("is {:?}; use letters, digits, - _ .", self.queue_prefix),
            ));
        }
        if self.concurrency == 0 || self.concurrency > usize::from(u16::MAX) {
            return Err(invalid("concurrency", format!("is {}; must be 1 to 65535", self.concurrency)));
        }
        if !(1..=1024).contains(&self.pool_size()) {
            return Err(invalid("pool_size", format!("is {}; must be 1 to 1024", self.pool_size())));
        }
        if self.child_max_jobs == 0 {
            return Err(invalid("child_max_jobs", "must be at least 1 (1: a fresh child per job)".into()));
        }
        if self.memory_budget_mb() / (self.pool_size() as u64) < MIN_CHILD_MEMORY_MB {
            return Err(invalid(
                "memory_budget_mb",
                format!(
                    "is {} MiB for {} children; each needs at least {MIN_CHILD_MEMORY_MB} MiB",
                    self.memory_budget_mb(),
                    self.pool_size()
                ),
            ));
        }
        let least_budget_mb = self.fetch_budget_without_waits_mb();
        if !(least_budget_mb..=MAX_FETCH_BUDGET_MB).contains(&self.fetch_budget_mb()) {
            return Err(invalid(
                "fetch_budget_mb",
                format!(
                    "is {} MiB; it must be {least_budget_mb} to {MAX_FETCH_BUDGET_MB} MiB. The least is \
                     POOL_SIZE x MAX_FETCH_BYTES + CONCURRENCY x max(FETCH_BLOCK_BYTES, 1 MiB): below it, \
                     jobs in parser children could each hold part of the budget and wait for the rest. \
                     To use less memory, lower ASSET_WORKER_MAX_FETCH_BYTES or ASSET_WORKER_CONCURRENCY",
                    self.fetch_budget_mb(),
                ),
            ));
        }
        if self.job_timeout_seconds == 0 {
            return Err(invalid("job_timeout_seconds", "must be at least 1".into()));
        }
        if self.reply_to_prefix.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("reply_to_prefix", "is empty: it would allow any queue".into()));
        }
        if self.delivery_limit == 0 {
            return Err(invalid("delivery_limit", "must be at least 1".into()));
        }
        let delays_ok = (1..=MAX_RETRY_DELAYS).contains(&self.retry_delays_seconds.len())
            && self.retry_delays_seconds.iter().all(|delay| (1..=MAX_RETRY_DELAY_SECONDS).contains(delay));
        if !delays_ok {
            return Err(invalid(
                "retry_delays_seconds",
                format!(
                    "is {:?}; give 1 to {MAX_RETRY_DELAYS} delays of 1 to {MAX_RETRY_DELAY_SECONDS} s, e.g. [5,30,120]",
                    self.retry_delays_seconds
                ),
            ));
        }
        for (setting, seconds) in [
            ("url_ttl_seconds", self.url_ttl_seconds),
            ("display_url_ttl_seconds", self.display_url_ttl_seconds),
        ] {
            if seconds == 0 || seconds > MAX_URL_TTL_SECONDS {
                return Err(invalid(
                    setting,
                    format!("is {seconds}; must be 1 to {MAX_URL_TTL_SECONDS} (7 days)"),
                ));
            }
        }
        if !(900..=43_200).contains(&self.session_duration_seconds) {
            return Err(invalid(
                "session_duration_seconds",
                format!("is {}; STS allows 900 to 43200", self.session_duration_seconds),
            ));
        }
        if self.session_duration_seconds < self.display_url_ttl_seconds + 360 {
            return Err(invalid(
                "session_duration_seconds",
                format!(
                    "is {}; it must be at least the display URL lifetime ({} s) plus 6 minutes, or display URLs \
                     would be cut short by their credentials",
                    self.session_duration_seconds, self.display_url_ttl_seconds
                ),
            ));
        }
        if self.session_max_age_seconds == 0 {
            return Err(invalid("session_max_age_seconds", "must be at least 1".into()));
        }
        if let Some(origin) = &self.display_origin
            && let Err(problem) = crate::access::cors::check_origin(origin)
        {
            return Err(invalid("display_origin", problem));
        }
        if !self.temp_dir.is_absolute() {
            return Err(invalid(
                "temp_dir",
                format!("is {}; must be an absolute path", self.temp_dir.display()),
            ));
        }
        for (setting, endpoint) in [
            ("s3_endpoint", &self.s3_endpoint),
            ("sts_endpoint", &self.sts_endpoint),
            ("gcs_endpoint", &self.gcs_endpoint),
            ("iam_credentials_endpoint", &self.iam_credentials_endpoint),
        ] {
            if let Some(endpoint) = endpoint
                && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
            {
                return Err(invalid(setting, format!("is {endpoint:?}; expected an http(s):// URL")));
            }
        }
        if !self.amqp_url.expose_secret().starts_with("amqp://")
            && !self.amqp_url.expose_secret().starts_with("amqps://")
        {
            return Err(invalid(
                "amqp_url",
                "must start with amqp:// or amqps:// (value not shown: it holds a password)".into(),
            ));
        }
        Ok(())
    }

    /// The AWS region of the worker's own STS calls: `aws_region`, else `region`.
    pub fn aws_region(&self) -> &str {
        self.aws_region.as_deref().unwrap_or(&self.region)
    }

    /// Parser children at once.
    pub fn pool_size(&self) -> usize {
        self.pool_size.unwrap_or_else(cores)
    }

    /// The prefix a job's `reply_to` queue must have.
    pub fn reply_to_prefix(&self) -> String {
        self.reply_to_prefix.clone().unwrap_or_else(|| format!("{}.reply.", self.queue_prefix))
    }

    /// The memory the parser children share, in MiB.
    pub fn memory_budget_mb(&self) -> u64 {
        self.memory_budget_mb.unwrap_or(DEFAULT_CHILD_MEMORY_MB * self.pool_size() as u64)
    }

    /// The fetch budget, in MiB; unset: [`Settings::fetch_budget_without_waits_mb`], also
    /// the least it may be.
    pub fn fetch_budget_mb(&self) -> u64 {
        self.fetch_budget_mb.unwrap_or_else(|| self.fetch_budget_without_waits_mb())
    }

    /// What every job in flight can hold without waiting when the storage honours Range (S3
    /// and GCS do). A job fetches past its first block only while a parser child reads it,
    /// and at most `pool_size` jobs are in children: those may each read up to
    /// `max_fetch_bytes`, every other job holds its first block (or its whole object, held in
    /// memory up to 1 MiB). Only a store that ignores Range (one download of the whole object,
    /// before any child) can make jobs wait at this size. Less is refused: children whose
    /// jobs each hold part of the budget and wait for more would wait each other out.
    pub fn fetch_budget_without_waits_mb(&self) -> u64 {
        let opened_share = self.fetch_block_bytes.max(crate::fetch::MAX_IN_MEMORY_BYTES);
        let bytes = (self.pool_size() as u64)
            .saturating_mul(self.max_fetch_bytes)
            .saturating_add((self.concurrency as u64).saturating_mul(opened_share));
        bytes.div_ceil(MIB)
    }
}

/// Whether `name` has the shape of an AWS region (`eu-central-1`, `us-gov-west-1`): two
/// letters, words, a number. GKE's `europe-west3` has not, so a worker moved to another cloud
/// without `ASSET_WORKER_AWS_REGION` stops at start instead of calling a nonexistent STS host.
fn is_aws_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

#[cfg(test)]
// `Jail::expect_with` takes closures returning figment's (large) error type: its API, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file("worker.toml", "region = \"eu-west-1\"\nqueue_prefix = \"from-file\"\n")?;
            jail.set_env("ASSET_WORKER_QUEUE_PREFIX", "from-env");
            jail.set_env("ASSET_WORKER_S3_FORCE_PATH_STYLE", "true");
            let settings = Settings::load(Some(Path::new("worker.toml"))).expect("valid");
            assert_eq!(settings.region, "eu-west-1");
            assert_eq!(settings.queue_prefix, "from-env");
            assert!(settings.s3_force_path_style);
            assert_eq!(settings.url_ttl_seconds, 300);
            Ok(())
        });
    }

    #[test]
    fn a_bad_setting_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_URL_TTL_SECONDS", "999999999");
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(message.contains("ASSET_WORKER_URL_TTL_SECONDS"), "{message}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_CONCURRENCY", "many");
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(message.contains("CONCURRENCY") && message.contains("ASSET_WORKER_"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn the_fetch_budget_is_at_least_what_no_job_waits_for() {
        // Unset: two children reading 512 MiB each, and 64 other jobs' first MiB.
        let settings = Settings {
            pool_size: Some(2),
            concurrency: 64,
            max_fetch_bytes: 512 << 20,
            ..Settings::default()
        };
        assert_eq!(settings.fetch_budget_mb(), 2 * 512 + 64);
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_POOL_SIZE", "2");
            jail.set_env("ASSET_WORKER_CONCURRENCY", "64");
            jail.set_env("ASSET_WORKER_MAX_FETCH_BYTES", (512u64 << 20).to_string());
            jail.set_env("ASSET_WORKER_FETCH_BUDGET_MB", "1087");
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(
                message.contains("ASSET_WORKER_FETCH_BUDGET_MB") && message.contains("1088 to"),
                "{message}"
            );
            jail.set_env("ASSET_WORKER_FETCH_BUDGET_MB", "1088");
            assert_eq!(Settings::load(None).expect("valid").fetch_budget_mb(), 1088);
            // A block above 1 MiB is what each job in flight holds first.
            jail.set_env("ASSET_WORKER_FETCH_BLOCK_BYTES", (2u64 << 20).to_string());
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(message.contains("must be 1152 to"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn sessions_are_re_assumed_every_15_minutes_unless_configured() {
        assert_eq!(Settings::default().session_max_age_seconds, 900);
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_SESSION_MAX_AGE_SECONDS", "60");
            jail.set_env("ASSET_WORKER_DISPLAY_ORIGIN", "https://app.example");
            let settings = Settings::load(None).expect("valid");
            assert_eq!(settings.session_max_age_seconds, 60);
            assert_eq!(settings.display_origin.as_deref(), Some("https://app.example"));
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_SESSION_MAX_AGE_SECONDS", "0");
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(message.contains("ASSET_WORKER_SESSION_MAX_AGE_SECONDS"), "{message}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_DISPLAY_ORIGIN", "https://app.example/labeling");
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(message.contains("ASSET_WORKER_DISPLAY_ORIGIN"), "{message}");
            Ok(())
        });
    }

    #[test]
    fn the_processing_region_may_be_any_cloud_s_but_sts_needs_an_aws_one() {
        Jail::expect_with(|jail| {
            jail.set_env("ASSET_WORKER_REGION", "europe-west3");
            let message = Settings::load(None).unwrap_err().to_string();
            assert!(
                message.contains("ASSET_WORKER_AWS_REGION") && message.contains("europe-west3"),
                "{message}"
            );
            jail.set_env("ASSET_WORKER_AWS_REGION", "eu-central-1");
            let settings = Settings::load(None).expect("valid");
            assert_eq!((settings.region.as_str(), settings.aws_region()), ("europe-west3", "eu-central-1"));
            jail.set_env("ASSET_WORKER_AWS_REGION", "europe-west3");
            assert!(Settings::load(None).unwrap_err().to_string().contains("ASSET_WORKER_AWS_REGION"));
            Ok(())
        });
        for aws in ["eu-central-1", "eu-south-2", "us-gov-west-1", "cn-northwest-1", "il-central-1"] {
            assert!(is_aws_region(aws), "{aws}");
        }
        for other in ["europe-west3", "westeurope", "eu-central", "eu--1", "EU-central-1"] {
            assert!(!is_aws_region(other), "{other}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let settings =
            Settings { amqp_url: SecretString::from("amqp://u:hunter2@h/%2f"), ..Settings::default() };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
