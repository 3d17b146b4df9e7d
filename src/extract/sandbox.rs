//! The child-process boundary around extraction: a hostile file may cost one answer, never
//! the process that asked.
//!
//! Parsers of untrusted bytes can panic, overflow their stack, allocate by a declared length
//! or loop (CRATES.md lists known cases). `catch_unwind` only catches the first. So each file
//! is read by a child process of this same binary (the hidden `extract-child` subcommand):
//! the request goes in on stdin (never argv: it will carry signed URLs), one JSON answer comes
//! back on stdout, the child caps its own address space (`RLIMIT_AS`) before touching the
//! file, and the parent kills it at the wall-clock deadline. Whatever happens to the child
//! becomes that file's error: `timeout`, `too_large` (memory cap), or `corrupt` (a crash).
//!
//! A remote object is fetched by the child itself ([`crate::fetch`]), so that the extractor's
//! reads drive the ranged fetch and the fetched bytes die with the child. Its signed URL
//! travels only inside the request on stdin, and nothing the child prints repeats the request.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

use super::{ExtractOptions, Extracted};
use crate::access::SignedUrl;
use crate::fetch::{FetchSettings, RemoteFile};
use crate::job::{ErrorBody, ErrorKind};

/// The hidden subcommand a child runs.
pub const CHILD_SUBCOMMAND: &str = "extract-child";
/// The long flag of [`CHILD_SUBCOMMAND`] naming the pid of the process waiting for its answer.
pub const PARENT_FLAG: &str = "parent";

/// The most stdout a child may write: one answer, whose largest part is a PDF's page list.
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;
/// The most stderr kept from a child, to recognise how it died.
const MAX_STDERR_BYTES: u64 = 64 * 1024;
/// How often a waiting parent looks whether the child's job was abandoned.
pub const CANCEL_POLL: Duration = Duration::from_millis(50);
/// How often a child looks whether its parent is still there.
const ORPHAN_POLL: Duration = Duration::from_millis(200);

/// How much one extraction may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock time, from spawn to answer.
    pub timeout: Duration,
    /// Address space of the child (`RLIMIT_AS`), in bytes.
    pub memory_bytes: u64,
}

impl Default for Limits {
    /// 30 s and 1 GiB: far above what any header read needs (the fixtures need under 40 MiB),
    /// low enough that a few children at once cannot exhaust a worker's memory.
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(30), memory_bytes: 1024 * 1024 * 1024 }
    }
}

/// Where the child reads the bytes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildSource {
    /// A local file.
    File { path: PathBuf },
    /// A remote object, fetched range by range as the extractor reads it.
    Url {
        #[serde(with = "signed_url_in_request")]
        url: SignedUrl,
        fetch: FetchSettings,
    },
}

/// A signed URL inside the request: the one place it is written out in full, because the
/// child must send it. `SignedUrl` itself has no `Serialize`, so that nothing else can.
mod signed_url_in_request {
    use super::*;

    #[derive(Serialize)]
    struct Out<'a> {
        url: &'a str,
        expires_at: SystemTime,
    }

    #[derive(Deserialize)]
    struct In {
        url: String,
        expires_at: SystemTime,
    }

    pub fn serialize<S: serde::Serializer>(url: &SignedUrl, serializer: S) -> Result<S::Ok, S::Error> {
        Out { url: url.expose(), expires_at: url.expires_at }.serialize(serializer)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SignedUrl, D::Error> {
        let In { url, expires_at } = In::deserialize(deserializer)?;
        Ok(SignedUrl::new(url, expires_at))
    }
}

/// What the parent asks a child to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildRequest {
    pub source: ChildSource,
    pub options: ExtractOptions,
    pub limits: Limits,
}

/// The child's one answer: what it extracted (or why it could not), and what that cost.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildAnswer {
    pub outcome: Result<Extracted, ErrorBody>,
    pub stats: ChildStats,
}

/// What one extraction cost, for the result's `stats` (and `size_bytes`). Zero where the
/// child did not say (it died, or the step did not happen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStats {
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

impl ChildAnswer {
    /// An answer from a child that told nothing about its costs.
    fn failed(error: ErrorBody) -> Self {
        ChildAnswer { outcome: Err(error), stats: ChildStats::default() }
    }
}

/// Runs one extraction in a child process of `exe` and returns its answer; a child that
/// gives none gets the error its fate stands for. Setting `cancelled` kills the child within
/// [`CANCEL_POLL`] (the job it served was abandoned: a drain deadline, a lost broker).
pub fn run_in_child(exe: &Path, request: &ChildRequest, cancelled: &AtomicBool) -> ChildAnswer {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        ChildAnswer::failed(ErrorBody::new(ErrorKind::Internal, format!("the extraction child {what}: {e}")))
    };
    let mut child = match Command::new(exe)
        .arg(CHILD_SUBCOMMAND)
        .arg(format!("--{PARENT_FLAG}={}", std::process::id()))
        // Its own process group: a Ctrl-C in the worker's terminal (sent to the whole
        // foreground group) is the worker's to handle by draining, not a crash of the parser.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return internal("could not be started", &e),
    };
    let request_json = serde_json::to_vec(request).expect("requests serialise");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A child that dies before reading its request closes the pipe; its exit status says more.
    let _ = stdin.write_all(&request_json);
    drop(stdin);
    // Both pipes are drained on threads so that a chatty child can't block on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout is piped"), MAX_ANSWER_BYTES);
    let stderr = drain(child.stderr.take().expect("stderr is piped"), MAX_STDERR_BYTES);
    let deadline = Instant::now() + request.limits.timeout;
    let status = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match child.wait_timeout(left.min(CANCEL_POLL)) {
            Ok(Some(status)) => break status,
            Ok(None) if cancelled.load(Ordering::Relaxed) => {
                let _ = child.kill();
                let _ = child.wait();
                return internal("was stopped", &"its job was abandoned");
            }
            Ok(None) if left.is_zero() => {
                let _ = child.kill();
                let _ = child.wait();
                return ChildAnswer::failed(ErrorBody::new(
                    ErrorKind::Timeout,
                    format!(
                        "extraction took longer than {:?} and was stopped (the time limit)",
                        request.limits.timeout
                    ),
                ));
            }
            Ok(None) => continue,
            Err(e) => return internal("could not be waited for", &e),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        return serde_json::from_slice::<ChildAnswer>(&stdout)
            .unwrap_or_else(|e| internal("gave an unreadable answer", &e));
    }
    ChildAnswer::failed(classify_death(status, &String::from_utf8_lossy(&stderr), &request.limits))
}

/// Reads a pipe to its end on a thread, keeping at most `cap` bytes.
fn drain(pipe: impl Read + Send + 'static, cap: u64) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut pipe = pipe;
        let _ = (&mut pipe).take(cap).read_to_end(&mut kept);
        let _ = io::copy(&mut pipe, &mut io::sink());
        kept
    })
}

/// Turns a child's abnormal end into the error its file gets.
fn classify_death(status: ExitStatus, stderr: &str, limits: &Limits) -> ErrorBody {
    use std::os::unix::process::ExitStatusExt;
    const SIGHUP: i32 = 1;
    const SIGINT: i32 = 2;
    const SIGABRT: i32 = 6;
    const SIGKILL: i32 = 9;
    const SIGTERM: i32 = 15;
    const SIGXCPU: i32 = 24;
    let mib = limits.memory_bytes / (1024 * 1024);
    if stderr.contains("memory allocation of") || stderr.contains("capacity overflow") {
        return ErrorBody::new(
            ErrorKind::TooLarge,
            format!("reading this file needs more memory than the {mib} MiB limit allows"),
        );
    }
    if stderr.contains("has overflowed its stack") {
        return ErrorBody::new(
            ErrorKind::Corrupt,
            "the file is nested too deeply to be read (stack overflow)",
        );
    }
    match status.signal() {
        Some(SIGXCPU) => {
            ErrorBody::new(ErrorKind::Timeout, "extraction used more CPU time than the time limit")
        }
        // The kernel's OOM killer (or an operator) killed it; memory is the likely cause.
        Some(SIGKILL) => ErrorBody::new(
            ErrorKind::TooLarge,
            format!("the extraction child was killed (likely out of memory; limit {mib} MiB)"),
        ),
        Some(SIGABRT) => ErrorBody::new(ErrorKind::Corrupt, "the parser aborted on this file"),
        // Stopped from outside (an operator, a supervisor): says nothing of the file.
        Some(signal @ (SIGHUP | SIGINT | SIGTERM)) => ErrorBody::new(
            ErrorKind::Internal,
            format!("the extraction child was stopped from outside (signal {signal})"),
        ),
        Some(signal) => {
            ErrorBody::new(ErrorKind::Corrupt, format!("the parser crashed on this file (signal {signal})"))
        }
        None => ErrorBody::new(
            ErrorKind::Internal,
            format!("the extraction child exited with {status} without an answer"),
        ),
    }
}

/// The body of the hidden `extract-child` subcommand: read one request from stdin, cap own
/// resources, extract, print one answer. Returns the process exit code. `parent` is the pid
/// of the process that started it (its parent at start when not given).
pub fn child_main(parent: Option<u32>) -> i32 {
    exit_when_orphaned(parent.unwrap_or_else(std::os::unix::process::parent_id));
    let mut input = Vec::new();
    if let Err(e) = io::stdin().take(MAX_ANSWER_BYTES).read_to_end(&mut input) {
        eprintln!("extract-child: reading the request failed: {e}");
        return 2;
    }
    let request: ChildRequest = match serde_json::from_slice(&input) {
        Ok(request) => request,
        Err(e) => {
            // Not `{e}`: serde's messages quote the offending value, which may be the URL.
            eprintln!(
                "extract-child: unreadable request ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            );
            return 2;
        }
    };
    cap_own_resources(&request.limits);
    // Panics become answers below; the default hook would only add noise on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let answer = match std::panic::catch_unwind(|| answer_request(&request)) {
        Ok(answer) => answer,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            ChildAnswer::failed(ErrorBody::new(
                ErrorKind::Corrupt,
                format!("the parser failed on this file: {why}"),
            ))
        }
    };
    let mut stdout = io::stdout().lock();
    let written =
        serde_json::to_writer(&mut stdout, &answer).map_err(io::Error::from).and_then(|()| stdout.flush());
    if written.is_err() { 3 } else { 0 }
}

/// A child whose parent died (a worker killed with SIGKILL) has no one to answer: it exits
/// rather than read on for nothing, and its unnamed temp file goes with it. Started first,
/// before the address-space cap, with a small stack, so that even a 1 MiB cap leaves it
/// running. The parent names itself (`--parent`): a child that read its own parent's pid
/// would miss a parent killed while it started (it would read its new reaper's, and CI saw
/// such a child read on for seconds); a parent already gone is seen at the first look.
fn exit_when_orphaned(parent: u32) {
    let watchdog =
        thread::Builder::new().name("orphan-watchdog".into()).stack_size(64 * 1024).spawn(move || {
            loop {
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(4);
                }
                thread::sleep(ORPHAN_POLL);
            }
        });
    if let Err(e) = watchdog {
        eprintln!("extract-child: no orphan watchdog: {e}");
    }
}

fn answer_request(request: &ChildRequest) -> ChildAnswer {
    match &request.source {
        ChildSource::File { path } => extract_file(path, &request.options),
        ChildSource::Url { url, fetch } => fetch_and_extract(url, fetch, &request.options),
    }
}

fn extract_file(path: &Path, options: &ExtractOptions) -> ChildAnswer {
    let started = Instant::now();
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return ChildAnswer::failed(open_error(path, &e)),
    };
    let size_bytes = file.metadata().ok().map(|meta| meta.len());
    let outcome = super::extract(&mut file, options).map_err(|e| e.to_body());
    let stats = ChildStats { size_bytes, extract_ms: millis(started.elapsed()), ..ChildStats::default() };
    ChildAnswer { outcome, stats }
}

/// Fetches the object as the extractor reads it. A fetch failure decides the answer even
/// when the extractor carried on: parsers wrap I/O errors as "corrupt", and some stop at the
/// first unreadable byte as if it were the end (a duration counted short would be a lie).
fn fetch_and_extract(url: &SignedUrl, settings: &FetchSettings, options: &ExtractOptions) -> ChildAnswer {
    let started = Instant::now();
    let mut remote = match RemoteFile::new(url.clone(), settings) {
        Ok(remote) => remote,
        Err(error) => return ChildAnswer::failed(error.to_body()),
    };
    let outcome = match remote.open() {
        Ok(_) => super::extract(&mut remote, options).map_err(|e| e.to_body()),
        Err(error) => Err(error.to_body()),
    };
    let outcome = match remote.failure() {
        Some(failure) => Err(failure.to_body()),
        None => outcome,
    };
    let fetched = remote.stats();
    // The temp file goes before the answer does.
    drop(remote);
    let stats = ChildStats {
        bytes_fetched: fetched.bytes_fetched,
        size_bytes: fetched.size_bytes,
        requests: fetched.requests,
        fetch_ms: millis(fetched.fetch_time),
        extract_ms: millis(started.elapsed().saturating_sub(fetched.fetch_time)),
    };
    ChildAnswer { outcome, stats }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The error for a local file that can't be opened, named by what the user must fix.
pub fn open_error(path: &Path, error: &io::Error) -> ErrorBody {
    let kind = match error.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::AccessDenied,
        _ => ErrorKind::Internal,
    };
    ErrorBody::new(kind, format!("cannot open {}: {error}", path.display()))
}

/// Limits the child applies to itself before it reads a byte of the file. Failing to set one
/// is not fatal (some containers forbid it); the parent's deadline still holds.
fn cap_own_resources(limits: &Limits) {
    use rlimit::{Resource, setrlimit};
    let memory = limits.memory_bytes;
    let (cpu_soft, cpu_hard) = cpu_limit_seconds(limits.timeout);
    for (resource, soft, hard, name) in [
        (Resource::AS, memory, memory, "RLIMIT_AS"),
        (Resource::CORE, 0, 0, "RLIMIT_CORE"),
        (Resource::CPU, cpu_soft, cpu_hard, "RLIMIT_CPU"),
    ] {
        if let Err(e) = setrlimit(resource, soft, hard) {
            eprintln!("extract-child: could not set {name}: {e}");
        }
    }
}

/// The child's CPU-time limit (soft, hard), a backstop behind the parent's wall clock for a
/// parent too busy to kill on time. The soft limit sends SIGXCPU, which [`classify_death`]
/// reports as `timeout`; the hard one sends SIGKILL, which reads as the OOM killer's work.
/// Linux checks the hard limit first, so with the two equal a child past its time was
/// answered `too_large` (seen in CI on a loaded machine): the hard limit stays a second above.
fn cpu_limit_seconds(timeout: Duration) -> (u64, u64) {
    let soft = timeout.as_secs() + 1;
    (soft, soft + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_limit_signals_sigxcpu_before_sigkill() {
        for timeout in [Duration::ZERO, Duration::from_millis(980), Duration::from_secs(30)] {
            let (soft, hard) = cpu_limit_seconds(timeout);
            assert!(soft as f64 > timeout.as_secs_f64(), "{timeout:?}: soft {soft} s");
            assert!(hard > soft, "{timeout:?}: hard {hard} s must leave SIGXCPU its turn");
        }
    }

    #[test]
    fn a_child_killed_by_its_cpu_limit_is_a_timeout() {
        use std::os::unix::process::ExitStatusExt;
        let limits = Limits::default();
        let sigxcpu = ExitStatus::from_raw(24);
        assert_eq!(classify_death(sigxcpu, "", &limits).kind, ErrorKind::Timeout);
        let sigkill = ExitStatus::from_raw(9);
        assert_eq!(classify_death(sigkill, "", &limits).kind, ErrorKind::TooLarge);
    }
}
