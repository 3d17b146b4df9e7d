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

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

use super::{ExtractOptions, Extracted};
use crate::job::{ErrorBody, ErrorKind};

/// The hidden subcommand a child runs.
pub const CHILD_SUBCOMMAND: &str = "extract-child";

/// The most stdout a child may write: one answer, whose largest part is a PDF's page list.
const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;
/// The most stderr kept from a child, to recognise how it died.
const MAX_STDERR_BYTES: u64 = 64 * 1024;

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
}

/// What the parent asks a child to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildRequest {
    pub source: ChildSource,
    pub options: ExtractOptions,
    pub limits: Limits,
}

/// The child's one answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ChildAnswer {
    Extracted(Extracted),
    Failed(ErrorBody),
}

/// Runs one extraction in a child process of `exe` and returns its answer, or the error its
/// fate stands for.
pub fn run_in_child(exe: &Path, request: &ChildRequest) -> Result<Extracted, ErrorBody> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        ErrorBody::new(ErrorKind::Internal, format!("the extraction child {what}: {e}"))
    };
    let mut child = Command::new(exe)
        .arg(CHILD_SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| internal("could not be started", &e))?;
    let request_json = serde_json::to_vec(request).expect("requests serialise");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // A child that dies before reading its request closes the pipe; its exit status says more.
    let _ = stdin.write_all(&request_json);
    drop(stdin);
    // Both pipes are drained on threads so that a chatty child can't block on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout is piped"), MAX_ANSWER_BYTES);
    let stderr = drain(child.stderr.take().expect("stderr is piped"), MAX_STDERR_BYTES);
    let status = match child.wait_timeout(request.limits.timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ErrorBody::new(
                ErrorKind::Timeout,
                format!(
                    "extraction took longer than {:?} and was stopped (the time limit)",
                    request.limits.timeout
                ),
            ));
        }
        Err(e) => return Err(internal("could not be waited for", &e)),
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        return match serde_json::from_slice::<ChildAnswer>(&stdout) {
            Ok(ChildAnswer::Extracted(extracted)) => Ok(extracted),
            Ok(ChildAnswer::Failed(error)) => Err(error),
            Err(e) => Err(internal("gave an unreadable answer", &e)),
        };
    }
    Err(classify_death(status, &String::from_utf8_lossy(&stderr), &request.limits))
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
    const SIGABRT: i32 = 6;
    const SIGKILL: i32 = 9;
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
/// resources, extract, print one answer. Returns the process exit code.
pub fn child_main() -> i32 {
    let mut input = Vec::new();
    if let Err(e) = io::stdin().take(MAX_ANSWER_BYTES).read_to_end(&mut input) {
        eprintln!("extract-child: reading the request failed: {e}");
        return 2;
    }
    let request: ChildRequest = match serde_json::from_slice(&input) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("extract-child: unreadable request: {e}");
            return 2;
        }
    };
    cap_own_resources(&request.limits);
    // Panics become answers below; the default hook would only add noise on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let answer = match std::panic::catch_unwind(|| extract_request(&request)) {
        Ok(Ok(extracted)) => ChildAnswer::Extracted(extracted),
        Ok(Err(error)) => ChildAnswer::Failed(error),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown cause".into());
            ChildAnswer::Failed(ErrorBody::new(
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

fn extract_request(request: &ChildRequest) -> Result<Extracted, ErrorBody> {
    match &request.source {
        ChildSource::File { path } => {
            let mut file = std::fs::File::open(path).map_err(|e| open_error(path, &e))?;
            super::extract(&mut file, &request.options).map_err(|e| e.to_body())
        }
    }
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
    let cpu_seconds = limits.timeout.as_secs() + 1;
    for (resource, value, name) in [
        (Resource::AS, memory, "RLIMIT_AS"),
        (Resource::CORE, 0, "RLIMIT_CORE"),
        (Resource::CPU, cpu_seconds, "RLIMIT_CPU"),
    ] {
        if let Err(e) = setrlimit(resource, value, value) {
            eprintln!("extract-child: could not set {name}: {e}");
        }
    }
}
