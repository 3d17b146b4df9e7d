//! The boundary between the worker and the parsers of untrusted bytes (DESIGN §1, §7).
//!
//! Parsers of customers' files can panic, overflow their stack, allocate by a declared length,
//! loop, or be exploited. So they run in children of this same binary (the hidden
//! `extract-child` subcommand), started ahead of need by a [`Pool`], that can reach nothing: no
//! environment, no path, no URL, no socket, not dumpable, locked down by Landlock and a seccomp
//! allow-list ([`lockdown`]), with an address-space cap. A child reads the object only by
//! asking the worker for byte ranges over its stdin/stdout ([`protocol`]); the worker holds the
//! signed URL, fetches on its own runtime and serves the ranges. Whatever happens to a child
//! becomes that one object's error: `timeout` (the worker's wall clock, or the child's CPU
//! backstop), `too_large` (the memory cap), `corrupt` (a crash); the next job gets a fresh
//! child.

pub mod child;
pub mod lockdown;
pub mod pool;
pub mod protocol;

use std::process::ExitStatus;

pub use lockdown::Protections;
pub use pool::{ByteSource, ChildOutcome, LocalFile, Pool, PoolSettings};

use crate::job::{ErrorBody, ErrorKind};

/// The hidden subcommand a child runs.
pub const CHILD_SUBCOMMAND: &str = "extract-child";
/// The long flag of [`CHILD_SUBCOMMAND`] naming the pid of the worker that waits for it.
pub const PARENT_FLAG: &str = "parent";
/// The long flag of [`CHILD_SUBCOMMAND`] giving its address-space cap in bytes.
pub const MEMORY_FLAG: &str = "memory-bytes";

/// Turns a child's abnormal end into the error its job gets; `memory_bytes` is its cap.
pub fn classify_death(status: ExitStatus, stderr: &str, memory_bytes: u64) -> ErrorBody {
    use std::os::unix::process::ExitStatusExt;
    const SIGHUP: i32 = 1;
    const SIGINT: i32 = 2;
    const SIGABRT: i32 = 6;
    const SIGKILL: i32 = 9;
    const SIGTERM: i32 = 15;
    const SIGXCPU: i32 = 24;
    let mib = memory_bytes / (1024 * 1024);
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
            format!("the extraction child exited with {status} without an answer: {}", stderr.trim()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_killed_by_its_cpu_limit_is_a_timeout() {
        use std::os::unix::process::ExitStatusExt;
        let sigxcpu = ExitStatus::from_raw(24);
        assert_eq!(classify_death(sigxcpu, "", 1 << 30).kind, ErrorKind::Timeout);
        let sigkill = ExitStatus::from_raw(9);
        assert_eq!(classify_death(sigkill, "", 1 << 30).kind, ErrorKind::TooLarge);
        let oom = classify_death(ExitStatus::from_raw(6), "memory allocation of 99 bytes failed", 1 << 20);
        assert_eq!((oom.kind, oom.message.contains("1 MiB")), (ErrorKind::TooLarge, true));
    }
}
