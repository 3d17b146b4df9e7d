//! The pool of warm parser children (Tika's and exiftool-vendored's model): started ahead of
//! need, one job at a time each, replaced when one fails, dies or has served
//! [`PoolSettings::max_jobs`] jobs. The worker serves each child the bytes it asks for from a
//! [`ByteSource`] (a local file, or a remote object fetched on the runtime), and kills the
//! child's whole process group at the job's deadline.
//!
//! The pool's size bounds the CPU-bound part of jobs; waiting on the network happens before a
//! child is taken (the first block) or while one is held by a parser that asked for more.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::lockdown::Protections;
use super::protocol::{self, JobAnswer, JobRequest, ReadRequest};
use super::{CHILD_SUBCOMMAND, MEMORY_FLAG, PARENT_FLAG, classify_death};
use crate::extract::{ExtractOptions, Extracted};
use crate::job::{ErrorBody, ErrorKind};
use crate::telemetry::metric;

/// The window sent with each job before the child asks (the child's first read size).
const FIRST_WINDOW_BYTES: u64 = 64 * 1024;
/// How long a new child may take to lock down and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The most stderr kept from a child, to recognise how it died.
const MAX_STDERR_BYTES: usize = 64 * 1024;
/// How long to wait for a dead child's last words on stderr.
const LAST_WORDS_WAIT: Duration = Duration::from_secs(1);
/// The capacity asked for the pipe that carries a child's bytes (Linux's default is 64 KiB,
/// less than a job frame with its first window, so the worker would wait for the child to
/// read before it could finish writing; 1 MiB is the most an unprivileged process may ask).
const DATA_PIPE_BYTES: usize = 1024 * 1024;

/// The child's only environment variable: glibc's allocator fills each chunk with the byte 165
/// when it is freed (and its complement when it is handed out), so what a parser copied of one
/// job's object into its own buffers does not wait in the free heap for a later job, which a
/// long-lived child (`max_jobs`) would otherwise keep. Without its per-thread cache: glibc
/// (2.36) neither scrubs a chunk freed into that cache nor one handed out of it, i.e. every
/// chunk up to 1,032 bytes (checked with a C program reading a freed chunk: 'A's kept with
/// `perturb` alone, 165 with both). Large chunks go back to the kernel when freed. Not secret;
/// memory still in use between jobs is not covered.
const SCRUB_FREED_MEMORY: &str = "glibc.malloc.perturb=165:glibc.malloc.tcache_count=0";

/// A byte source a child reads through the worker.
pub trait ByteSource {
    /// The bytes at `offset`: at least `need` (fewer only at the end), up to `want` of those
    /// already at hand; or why they can't be had.
    fn read_at(&mut self, read: ReadRequest) -> impl Future<Output = Result<Vec<u8>, ErrorBody>> + Send;
}

/// A local file, read by the worker on the child's behalf (the child gets no path).
pub struct LocalFile(pub std::fs::File);

impl ByteSource for LocalFile {
    /// All of `want`: a local file is at hand.
    async fn read_at(&mut self, read: ReadRequest) -> Result<Vec<u8>, ErrorBody> {
        read_at_most(&self.0, read.offset, read.want as usize)
            .map_err(|e| ErrorBody::new(ErrorKind::Internal, format!("reading the file failed: {e}")))
    }
}

/// Up to `len` bytes of `file` at `offset` (fewer only at its end). Page-cache reads of at most
/// one range: short enough to make on the runtime.
pub fn read_at_most(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buffer = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buffer.truncate(filled);
    Ok(buffer)
}

/// How the pool runs its children.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// This binary: a child is its hidden subcommand.
    pub exe: PathBuf,
    /// Children at once: the CPU-bound jobs at once.
    pub size: usize,
    /// Each child's address space (`RLIMIT_AS`): the pool's memory budget over its size.
    pub memory_bytes: u64,
    /// Jobs a child serves before it is replaced (1: a fresh process per job).
    pub max_jobs: u32,
}

impl PoolSettings {
    /// The pool of a worker's configuration: `pool_size` children sharing `memory_budget_mb`.
    pub fn from_settings(settings: &crate::config::Settings) -> std::io::Result<Self> {
        let size = settings.pool_size();
        Ok(PoolSettings {
            exe: std::env::current_exe()?,
            size,
            memory_bytes: settings.memory_budget_mb().saturating_mul(1024 * 1024) / size as u64,
            max_jobs: settings.child_max_jobs,
        })
    }
}

/// What one extraction in a child gave, and what it cost.
#[derive(Debug)]
pub struct ChildOutcome {
    pub outcome: Result<Extracted, ErrorBody>,
    /// From job sent to answer, less the time spent getting the bytes it asked for.
    pub extract_time: Duration,
}

/// The pool. Cloning shares it.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PoolSettings,
    slots: Semaphore,
    idle: Mutex<Vec<ChildProcess>>,
    protections: OnceLock<Protections>,
    /// The last child this pool started failed to (until one starts again).
    failing: AtomicBool,
}

impl Pool {
    /// Starts the pool and its children (on the current tokio runtime).
    pub fn start(settings: PoolSettings) -> Pool {
        let size = settings.size.max(1);
        let pool = Pool {
            inner: Arc::new(Inner {
                settings: PoolSettings { size, ..settings },
                slots: Semaphore::new(size),
                idle: Mutex::new(Vec::new()),
                protections: OnceLock::new(),
                failing: AtomicBool::new(false),
            }),
        };
        for _ in 0..size {
            pool.replenish();
        }
        pool
    }

    /// The protections the children reported, once one has.
    pub fn protections(&self) -> Option<&Protections> {
        self.inner.protections.get()
    }

    /// Whether the last child started failed to start (a binary replaced under the worker, a
    /// lock-down the kernel refuses): every job would fail, so the worker is not ready.
    pub fn children_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    /// Waits until a child has said which protections hold (at most [`READY_TIMEOUT`]): what
    /// a worker logs at start.
    pub async fn wait_ready(&self) -> Option<&Protections> {
        if self.protections().is_none() {
            let _slot = self.inner.slots.acquire().await.ok()?;
            if let Ok(child) = self.take_child().await {
                self.give_back(child);
            }
        }
        self.protections()
    }

    /// Extracts the metadata of the `size`-byte object `source` serves, in a child, within
    /// `timeout` from the moment a child is free. Whatever happens to the child becomes this object's error: `timeout` past the
    /// deadline (the child's process group is killed), `too_large` for the memory cap,
    /// `corrupt` for a crash. Dropping the future kills the child too (an abandoned job).
    pub async fn extract(
        &self,
        source: &mut impl ByteSource,
        size: u64,
        options: &ExtractOptions,
        timeout: Duration,
    ) -> ChildOutcome {
        let failed = |error: ErrorBody| ChildOutcome { outcome: Err(error), extract_time: Duration::ZERO };
        // The time limit runs from here: waiting for a free child is the pool's, not the file's.
        let Ok(_slot) = self.inner.slots.acquire().await else {
            return failed(ErrorBody::new(ErrorKind::Internal, "the extraction pool is closed"));
        };
        let child = match self.take_child().await {
            Ok(child) => child,
            Err(error) => return failed(error),
        };
        // Until it answers, the child is leased: a dropped future (an abandoned job) retires it.
        let mut lease = Lease { pool: self, child: Some(child) };
        let child = lease.child.as_mut().expect("just leased");
        let request = JobRequest { size, options: options.clone(), cpu_seconds: cpu_seconds(timeout) };
        child.stderr_tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        let serving = Instant::now();
        let mut waited = Duration::ZERO;
        let served = tokio::time::timeout(timeout, child.serve(&request, source, &mut waited)).await;
        let extract_time = serving.elapsed().saturating_sub(waited);
        let mut child = lease.child.take().expect("still leased");
        let outcome = match served {
            Ok(Ok(answer)) => {
                child.jobs += 1;
                if answer.retire || child.jobs >= self.inner.settings.max_jobs {
                    self.retire(child, if answer.retire { "panicked" } else { "max_jobs" });
                } else {
                    self.give_back(child);
                }
                answer.outcome
            }
            Ok(Err(ServeError::Died)) => {
                let error = child.cause_of_death(self.inner.settings.memory_bytes).await;
                self.retire(child, "died");
                Err(error)
            }
            Ok(Err(ServeError::Protocol(why))) => {
                self.retire(child, "protocol");
                Err(ErrorBody::new(
                    ErrorKind::Internal,
                    format!("the extraction child broke the protocol: {why}"),
                ))
            }
            Err(_) => {
                self.retire(child, "timeout");
                Err(ErrorBody::new(
                    ErrorKind::Timeout,
                    format!("extraction took longer than {timeout:?} and was stopped (the time limit)"),
                ))
            }
        };
        ChildOutcome { outcome, extract_time }
    }

    /// An idle child (ready, or readied now), or a new one.
    async fn take_child(&self) -> Result<ChildProcess, ErrorBody> {
        let idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let child = match idle {
            Some(child) => child,
            None => self.spawn().map_err(|e| {
                self.inner.failing.store(true, Ordering::Relaxed);
                // Not the file's fault: another delivery (another worker) may succeed.
                ErrorBody::new(
                    ErrorKind::Transient,
                    format!("the extraction child could not be started: {e}"),
                )
            })?,
        };
        self.until_ready(child).await
    }

    /// Reads a new child's `Ready` frame, once.
    async fn until_ready(&self, mut child: ChildProcess) -> Result<ChildProcess, ErrorBody> {
        if child.ready {
            return Ok(child);
        }
        let frame = tokio::time::timeout(READY_TIMEOUT, protocol::receive(&mut child.stdout)).await;
        let protections = match frame {
            Ok(Ok((protocol::READY, payload))) => serde_json::from_slice::<Protections>(&payload).ok(),
            _ => None,
        };
        let Some(protections) = protections else {
            let said = child.last_words().await;
            let status = child.process.try_wait().ok().flatten();
            metrics::counter!(metric::CHILDREN_RETIRED, "reason" => "start_failed").increment(1);
            tracing::error!(status = ?status, stderr = %said.trim(), "an extraction child failed to start");
            self.inner.failing.store(true, Ordering::Relaxed);
            return Err(ErrorBody::new(
                ErrorKind::Transient,
                format!("the extraction child failed to start: {}", said.trim()),
            ));
        };
        child.ready = true;
        self.inner.failing.store(false, Ordering::Relaxed);
        self.note_protections(protections);
        Ok(child)
    }

    /// The first report is logged and exported; later ones only when they differ (a
    /// protection that comes and goes would be a finding).
    fn note_protections(&self, protections: Protections) {
        match self.inner.protections.get() {
            Some(known) if *known == protections => {}
            Some(_) => tracing::warn!(?protections, "an extraction child reported other protections"),
            None => {
                for (name, holds) in protections.as_list() {
                    metrics::gauge!(metric::CHILD_PROTECTION, "protection" => name).set(if holds {
                        1.0
                    } else {
                        0.0
                    });
                }
                tracing::debug!(
                    no_new_privs = protections.no_new_privs,
                    not_dumpable = protections.not_dumpable,
                    landlock = %protections.landlock,
                    seccomp = protections.seccomp,
                    memory_mib = protections.memory_bytes / (1024 * 1024),
                    notes = ?protections.notes,
                    "extraction children locked down"
                );
                let _ = self.inner.protections.set(protections);
            }
        }
    }

    fn give_back(&self, child: ChildProcess) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.inner.settings.size {
            idle.push(child);
        }
    }

    /// Kills a child (its dropping does) and starts its replacement.
    fn retire(&self, child: ChildProcess, reason: &'static str) {
        metrics::counter!(metric::CHILDREN_RETIRED, "reason" => reason).increment(1);
        tracing::debug!(pid = child.pid, jobs = child.jobs, reason, "extraction child retired");
        drop(child);
        self.replenish();
    }

    /// Starts a child into the idle list: it locks itself down while the pool does other
    /// work, and the next job that takes it reads its `Ready` (usually waiting already). Not
    /// while the runtime shuts down: there is no next job then.
    fn replenish(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        match self.spawn() {
            Ok(child) => self.give_back(child),
            // The next job tries again, and fails visibly if it can't either.
            Err(error) => {
                self.inner.failing.store(true, Ordering::Relaxed);
                tracing::error!(%error, "an extraction child could not be started");
            }
        }
    }

    fn spawn(&self) -> std::io::Result<ChildProcess> {
        let settings = &self.inner.settings;
        let mut process = Command::new(&settings.exe)
            .arg(CHILD_SUBCOMMAND)
            .arg(format!("--{PARENT_FLAG}={}", std::process::id()))
            .arg(format!("--{MEMORY_FLAG}={}", settings.memory_bytes))
            // Nothing of the worker's environment: the broker's password, cloud credentials
            // and token paths stay with the worker.
            .env_clear()
            .env("GLIBC_TUNABLES", SCRUB_FREED_MEMORY)
            // Its own process group: killed whole at a deadline, and a Ctrl-C in the worker's
            // terminal (sent to the foreground group) is the worker's to handle by draining.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = process.id().unwrap_or(0);
        let stdin = process.stdin.take().expect("stdin is piped");
        // Best effort: a smaller pipe only costs a few more wake-ups.
        if let Err(error) = rustix::pipe::fcntl_setpipe_size(&stdin, DATA_PIPE_BYTES) {
            tracing::debug!(%error, "the pipe to an extraction child keeps its default size");
        }
        // Buffered: a frame's header and payload come in one read.
        let stdout = BufReader::new(process.stdout.take().expect("stdout is piped"));
        let mut stderr = process.stderr.take().expect("stderr is piped");
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        let stderr_reader = tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = stderr.read(&mut buffer).await {
                let mut tail = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                tail.extend_from_slice(&buffer[..read]);
                let excess = tail.len().saturating_sub(MAX_STDERR_BYTES);
                tail.drain(..excess);
            }
        });
        metrics::counter!(metric::CHILDREN_STARTED).increment(1);
        Ok(ChildProcess { process, pid, stdin, stdout, stderr_tail, stderr_reader, jobs: 0, ready: false })
    }
}

/// A child out of the pool for one job; dropped before the job ended, it is retired (killed,
/// and replaced).
struct Lease<'a> {
    pool: &'a Pool,
    child: Option<ChildProcess>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            self.pool.retire(child, "abandoned");
        }
    }
}

/// The CPU-time backstop for a job: its time limit's whole seconds plus one, so a child past
/// it ends on SIGXCPU (`timeout`) even if the worker is too busy to kill it on time.
fn cpu_seconds(timeout: Duration) -> u64 {
    timeout.as_secs() + 1
}

/// Why serving a job ended without an answer.
enum ServeError {
    /// The child's stdout closed: it died.
    Died,
    /// It said something out of turn.
    Protocol(String),
}

/// One child, as the worker holds it. Dropped, it is killed with its whole process group.
struct ChildProcess {
    process: Child,
    pid: u32,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<Vec<u8>>>,
    stderr_reader: JoinHandle<()>,
    jobs: u32,
    ready: bool,
}

impl ChildProcess {
    /// Sends the job and serves the child's reads until it answers. `waited` adds up the time
    /// spent getting bytes from the source.
    async fn serve(
        &mut self,
        request: &JobRequest,
        source: &mut impl ByteSource,
        waited: &mut Duration,
    ) -> Result<JobAnswer, ServeError> {
        let job = serde_json::to_vec(request).expect("jobs serialise");
        protocol::send(&mut self.stdin, protocol::JOB, &job).await.map_err(|_| ServeError::Died)?;
        // The first window goes with the job, unasked: every parser starts at byte 0, and a
        // small file is then read without a round trip. It costs no fetch: `need` is one
        // byte, of the block the worker fetched before it took the child.
        if request.size > 0 {
            let first = ReadRequest { offset: 0, need: 1, want: FIRST_WINDOW_BYTES.min(request.size) };
            self.serve_read(first, source, waited).await?;
        }
        loop {
            let (tag, payload) = protocol::receive(&mut self.stdout).await.map_err(|_| ServeError::Died)?;
            match tag {
                protocol::READ => {
                    let read = ReadRequest::decode(&payload)
                        .ok_or_else(|| ServeError::Protocol("a malformed read".into()))?;
                    self.serve_read(read, source, waited).await?;
                }
                protocol::ANSWER => {
                    return serde_json::from_slice(&payload)
                        .map_err(|e| ServeError::Protocol(format!("an unreadable answer: {e}")));
                }
                other => return Err(ServeError::Protocol(format!("frame {other:#04x} during a job"))),
            }
        }
    }

    /// Answers one read with the bytes or the reason there are none.
    async fn serve_read(
        &mut self,
        read: ReadRequest,
        source: &mut impl ByteSource,
        waited: &mut Duration,
    ) -> Result<(), ServeError> {
        let fetching = Instant::now();
        let read = source.read_at(read).await;
        *waited += fetching.elapsed();
        let sent = match read {
            Ok(bytes) => protocol::send(&mut self.stdin, protocol::DATA, &bytes).await,
            Err(error) => {
                let error = serde_json::to_vec(&error).expect("errors serialise");
                protocol::send(&mut self.stdin, protocol::FAILED, &error).await
            }
        };
        sent.map_err(|_| ServeError::Died)
    }

    /// What the child wrote on stderr before it died (waiting briefly for the pipe's end).
    async fn last_words(&mut self) -> String {
        let _ = tokio::time::timeout(LAST_WORDS_WAIT, &mut self.stderr_reader).await;
        let tail = self.stderr_tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&tail).into_owned()
    }

    /// The error a dead child's job gets, from its exit status and last words.
    async fn cause_of_death(&mut self, memory_bytes: u64) -> ErrorBody {
        let status = match tokio::time::timeout(LAST_WORDS_WAIT, self.process.wait()).await {
            Ok(Ok(status)) => status,
            _ => {
                return ErrorBody::new(ErrorKind::Internal, "the extraction child stopped answering");
            }
        };
        let said = self.last_words().await;
        classify_death(status, &said, memory_bytes)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Not yet reaped, so its pid (and process group id) can't have been reused.
        if matches!(self.process.try_wait(), Ok(None))
            && let Some(pid) = Pid::from_raw(self.pid as i32)
        {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        self.stderr_reader.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_backstop_is_above_the_time_limit() {
        for timeout in [Duration::ZERO, Duration::from_millis(980), Duration::from_secs(30)] {
            assert!(cpu_seconds(timeout) as f64 > timeout.as_secs_f64(), "{timeout:?}");
        }
    }
}
