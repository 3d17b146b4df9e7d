//! The parser child (the hidden `extract-child` subcommand): lock down, say `Ready`, then
//! answer jobs one at a time until the worker closes its stdin. It holds no path, URL, socket
//! or credential: the object's bytes come as answers to its own `Read` frames
//! ([`ChannelFile`]), and all it writes is frames on stdout (and, when it dies, the runtime's
//! last words on stderr, which the worker reads to tell a memory cap from a crash).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use super::lockdown;
use super::protocol::{self, JobAnswer, JobRequest, ReadRequest};
use crate::extract::{self, SourceFailed};
use crate::job::{ErrorBody, ErrorKind};

/// How often a child looks whether its parent is still there.
const ORPHAN_POLL: Duration = Duration::from_millis(200);
/// The first window of a job (sent with it) and the first read after a seek are this much; sequential reads double it up to
/// [`protocol::MAX_READ_BYTES`], a seek elsewhere starts over.
const FIRST_READ_BYTES: u64 = 64 * 1024;

/// Exit codes, for the worker's log when a child ends without an answer.
pub const EXIT_PROTOCOL: i32 = 2;
pub const EXIT_ORPHANED: i32 = 4;
pub const EXIT_LOCKDOWN: i32 = 5;

/// The body of the `extract-child` subcommand. `parent` is the pid of the worker that started
/// it (its parent at start when not given); `memory_bytes` its address-space cap.
pub fn child_main(parent: Option<u32>, memory_bytes: u64) -> i32 {
    let parent = parent.unwrap_or_else(std::os::unix::process::parent_id);
    // The first look is made before anything else: a worker killed while its child started
    // leaves a child that must not wait for work.
    if std::os::unix::process::parent_id() != parent {
        return EXIT_ORPHANED;
    }
    // Unbuffered handles of the two pipes (duplicated: std's own are buffered and locked).
    let pipes = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|input| Ok((File::from(input), File::from(io::stdout().as_fd().try_clone_to_owned()?))));
    let (mut input, mut output) = match pipes {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!("extract-child: its pipes are unusable: {e}");
            return EXIT_PROTOCOL;
        }
    };
    let protections = match lockdown::lock_down(memory_bytes, || exit_when_orphaned(parent)) {
        Ok(protections) => protections,
        Err(why) => {
            eprintln!("extract-child: not locked down, so not serving: {why}");
            return EXIT_LOCKDOWN;
        }
    };
    // Serialised on the stack: the memory cap holds already, and a 1 MiB one leaves no room.
    let mut ready = [0u8; 4096];
    let mut cursor = io::Cursor::new(&mut ready[..]);
    if serde_json::to_writer(&mut cursor, &protections).is_err() {
        eprintln!("extract-child: its protections do not fit its ready frame");
        return EXIT_PROTOCOL;
    }
    let ready_len = cursor.position() as usize;
    // Panics become answers; the default hook would only add noise on stderr.
    std::panic::set_hook(Box::new(|_| {}));
    if protocol::write_frame(&mut output, protocol::READY, &ready[..ready_len]).is_err() {
        return EXIT_PROTOCOL;
    }
    loop {
        let job = match protocol::read_frame(&mut input) {
            Ok(None) => return 0,
            Ok(Some((protocol::JOB, payload))) => serde_json::from_slice::<JobRequest>(&payload),
            Ok(Some((tag, _))) => {
                eprintln!("extract-child: a frame {tag:#04x} where a job was expected");
                return EXIT_PROTOCOL;
            }
            Err(e) => {
                eprintln!("extract-child: reading a job failed: {e}");
                return EXIT_PROTOCOL;
            }
        };
        let job = match job {
            Ok(job) => job,
            Err(e) => {
                eprintln!("extract-child: an unreadable job ({:?} at column {})", e.classify(), e.column());
                return EXIT_PROTOCOL;
            }
        };
        if let Err(why) = lockdown::limit_cpu_for_job(job.cpu_seconds) {
            eprintln!("extract-child: {why}");
            return EXIT_LOCKDOWN;
        }
        let answer = answer_job(&job, &input, &output);
        let retire = answer.retire;
        let written = serde_json::to_vec(&answer)
            .map_err(io::Error::from)
            .and_then(|payload| protocol::write_frame(&mut output, protocol::ANSWER, &payload));
        if written.is_err() {
            return EXIT_PROTOCOL;
        }
        if retire {
            return 0;
        }
    }
}

/// Extracts one object read through the channel, behind a panic boundary.
fn answer_job(job: &JobRequest, input: &File, output: &File) -> JobAnswer {
    let mut source = ChannelFile::new(job.size, input, output);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        source.receive_first_window().map_err(|e| extract::ExtractError::Io(e).to_body())?;
        extract::extract(&mut source, &job.options).map_err(|e| e.to_body())
    }));
    drop(source);
    match result {
        Ok(outcome) => JobAnswer { outcome, retire: false },
        Err(panic) => {
            let why = extract::panic_message(panic.as_ref());
            let error = ErrorBody::new(ErrorKind::Corrupt, format!("the parser failed on this file: {why}"));
            JobAnswer { outcome: Err(error), retire: true }
        }
    }
}

/// A child whose parent died (a worker killed with SIGKILL) has no one to answer: it exits
/// rather than parse on for nothing. Its stdin closes with the parent too, but a parser busy
/// on a hostile file does not read it; this thread notices within [`ORPHAN_POLL`]. Returns
/// once the thread runs (seccomp must not land on a thread still starting).
fn exit_when_orphaned(parent: u32) {
    let (started, running) = std::sync::mpsc::channel();
    let watchdog =
        thread::Builder::new().name("orphan-watchdog".into()).stack_size(64 * 1024).spawn(move || {
            let _ = started.send(());
            loop {
                thread::sleep(ORPHAN_POLL);
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(EXIT_ORPHANED);
                }
            }
        });
    match watchdog {
        Ok(_) => {
            let _ = running.recv();
        }
        Err(e) => eprintln!("extract-child: no orphan watchdog: {e}"),
    }
}

/// The object as the parser sees it: `Read + Seek` over `Read` frames to the worker. One
/// window of bytes is kept; it grows while reads are sequential. Its bytes are zeroed when
/// dropped, so nothing of one job's object is left in the buffer the next job's allocator may
/// hand out.
pub struct ChannelFile<'a> {
    size: u64,
    position: u64,
    window_start: u64,
    window: Vec<u8>,
    next_read: u64,
    /// Why the first window could not be had, until the parser reads.
    first_failure: Option<io::Error>,
    input: &'a File,
    output: &'a File,
}

impl<'a> ChannelFile<'a> {
    pub fn new(size: u64, input: &'a File, output: &'a File) -> Self {
        ChannelFile {
            size,
            position: 0,
            window_start: 0,
            window: Vec::new(),
            next_read: FIRST_READ_BYTES,
            first_failure: None,
            input,
            output,
        }
    }

    /// Asks the worker for the bytes at the current position: `need` for the parser's read,
    /// up to a window that grows while reads are sequential.
    fn fill(&mut self, need: u64) -> io::Result<()> {
        let sequential = self.position == self.window_start + self.window.len() as u64;
        self.next_read =
            if sequential { (self.next_read * 2).min(protocol::MAX_READ_BYTES) } else { FIRST_READ_BYTES };
        let left = self.size - self.position;
        let need = need.clamp(1, protocol::MAX_READ_BYTES).min(left);
        let want = self.next_read.max(need).min(left);
        let request = ReadRequest { offset: self.position, need, want };
        let mut output = self.output;
        protocol::write_frame(&mut output, protocol::READ, &request.encode())?;
        self.receive(self.position)
    }

    /// Takes the worker's answer to a read at `offset`: its bytes become the window.
    fn receive(&mut self, offset: u64) -> io::Result<()> {
        let mut input = self.input;
        let frame = protocol::read_frame(&mut input)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the worker went away"))?;
        self.window.fill(0);
        match frame {
            (protocol::DATA, bytes) if !bytes.is_empty() => {
                self.window = bytes;
                self.window_start = offset;
                Ok(())
            }
            (protocol::FAILED, payload) => {
                let error = serde_json::from_slice::<ErrorBody>(&payload).unwrap_or_else(|_| {
                    ErrorBody::new(ErrorKind::Internal, "the worker could not read the object")
                });
                Err(io::Error::other(SourceFailed(error)))
            }
            (tag, _) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the worker answered a read with frame {tag:#04x}"),
            )),
        }
    }

    /// Takes the first window, which the worker sends with the job unasked (a small file is
    /// then read without a single round trip). A failure is the first read's, so it is kept
    /// for the parser to meet where it would have.
    fn receive_first_window(&mut self) -> io::Result<()> {
        if self.size == 0 {
            return Ok(());
        }
        match self.receive(0) {
            Err(error) if SourceFailed::from_io(&error).is_some() => {
                self.first_failure = Some(error);
                Ok(())
            }
            other => other,
        }
    }
}

impl Read for ChannelFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.position >= self.size {
            return Ok(0);
        }
        let window_end = self.window_start + self.window.len() as u64;
        if !(self.window_start..window_end).contains(&self.position) {
            if let Some(failure) = self.first_failure.take() {
                return Err(failure);
            }
            self.fill(buf.len() as u64)?;
        }
        let from = (self.position - self.window_start) as usize;
        let count = buf.len().min(self.window.len() - from);
        buf[..count].copy_from_slice(&self.window[from..from + count]);
        self.position += count as u64;
        Ok(count)
    }
}

impl Seek for ChannelFile<'_> {
    fn seek(&mut self, target: SeekFrom) -> io::Result<u64> {
        let position = match target {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
        };
        let Some(position) = position else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the object"));
        };
        self.position = position;
        Ok(position)
    }
}

impl Drop for ChannelFile<'_> {
    fn drop(&mut self) {
        self.window.fill(0);
        std::hint::black_box(&self.window);
    }
}
