//! What a parser child does to itself before its first job, so that a parser bug turned
//! exploit in one customer's file reaches nothing: no file, no socket, no other process, no
//! credential (its environment holds none of the worker's variables: the worker starts it with
//! only the allocator's scrubbing setting).
//!
//! In order: no core files and not dumpable (no `/proc/PID/mem`, `/proc/PID/fd` or ptrace by
//! siblings of the same user), `no_new_privs`, Landlock (no filesystem access at all, no TCP
//! bind or connect, no signals or abstract sockets outside its domain), then a seccomp
//! allow-list of the system calls a parser needs: memory, reading and writing the two pipes it
//! already holds, time, and its own CPU limit; anything else fails with `EPERM`. The address
//! space cap is set just before seccomp (which then forbids changing it), once everything
//! that allocates for the set-up is done, on top of the address space the child holds by then
//! (see [`address_space_bytes`]).
//!
//! Landlock and seccomp are best effort where the kernel lacks them (an old kernel, a
//! container runtime that forbids seccomp), and the child says which protections hold in its
//! `Ready` frame; the worker logs them and exports them as a metric. Failing to set a
//! resource limit or `no_new_privs` is fatal: the child does not serve without them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which protections hold in a child, as it reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protections {
    pub no_new_privs: bool,
    pub not_dumpable: bool,
    pub no_core_files: bool,
    /// `full`, `partial` (an older Landlock ABI: some rights stay unchecked) or `none`.
    pub landlock: String,
    /// The seccomp allow-list is installed on every thread.
    pub seccomp: bool,
    /// The memory cap, in bytes: the address space parsing may add to what the child holds
    /// once locked down (`RLIMIT_AS` is the two together).
    pub memory_bytes: u64,
    /// Why a best-effort protection is missing, for the operator's log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Protections {
    /// Each protection's name and whether it holds (`landlock` holds only when `full`).
    pub fn as_list(&self) -> [(&'static str, bool); 5] {
        [
            ("no_new_privs", self.no_new_privs),
            ("not_dumpable", self.not_dumpable),
            ("no_core_files", self.no_core_files),
            ("landlock", self.landlock == "full"),
            ("seccomp", self.seccomp),
        ]
    }
}

/// Locks the calling process down and caps its memory at `memory_bytes`; `start_watchdog`
/// (which must return once its thread runs) is called between Landlock (which binds only the
/// calling thread and the threads it starts later) and seccomp (which is synchronised to
/// every thread), so the watchdog thread is bound by both. Errors name what failed.
pub fn lock_down(memory_bytes: u64, start_watchdog: impl FnOnce()) -> Result<Protections, String> {
    use rlimit::{Resource, setrlimit};
    let mut notes = Vec::new();
    setrlimit(Resource::CORE, 0, 0).map_err(|e| format!("could not set RLIMIT_CORE: {e}"))?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("could not make the process not dumpable: {e}"))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| format!("could not set no_new_privs: {e}"))?;
    // Built before anything is locked: building allocates, and it may fail.
    let filter = syscall_filter();
    // Opened before Landlock forbids opening it; read once the watchdog runs.
    let status = std::fs::File::open("/proc/self/status")
        .map_err(|e| format!("could not open /proc/self/status to measure the address space: {e}"))?;
    let landlock = match restrict_with_landlock() {
        Ok(status) => status,
        Err(why) => {
            notes.push(format!("landlock: {why}"));
            "none".to_owned()
        }
    };
    start_watchdog();
    let mut protections = Protections {
        no_new_privs: rustix::thread::no_new_privs().unwrap_or(false),
        not_dumpable: true,
        no_core_files: true,
        landlock,
        seccomp: false,
        memory_bytes,
        notes,
    };
    protections.notes.reserve(1);
    // From here on every allocation counts against the cap, and seccomp forbids moving it.
    let limit = address_space_bytes(status)?.saturating_add(memory_bytes);
    setrlimit(Resource::AS, limit, limit).map_err(|e| format!("could not set RLIMIT_AS: {e}"))?;
    match filter.and_then(|program| {
        seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("not installed: {e}"))
    }) {
        Ok(()) => protections.seccomp = true,
        Err(why) => protections.notes.push(format!("seccomp: {why}")),
    }
    Ok(protections)
}

/// The address space the process holds now (`VmSize`), which the memory cap comes on top of.
///
/// Why not the cap alone: a child holds ~100 MiB of address space before it reads a byte
/// (debug build: the binary's 35 MiB of mappings, libraries, and 64 MiB that glibc reserves,
/// `PROT_NONE`, for the arena of the watchdog thread's first allocation; a release build
/// less). A cap below that made every fresh allocation fail, so that whether a file read
/// depended on whether its parser happened to find room in the heap already mapped: a valid
/// PNG succeeded or failed by the luck of the heap. On top of the start, the cap is what
/// parsing may add, the same for every build.
fn address_space_bytes(mut status: std::fs::File) -> Result<u64, String> {
    use std::io::Read;
    let mut text = String::new();
    status.read_to_string(&mut text).map_err(|e| format!("could not read /proc/self/status: {e}"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmSize:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| "/proc/self/status has no VmSize".to_owned())
}

/// Sets the CPU-time backstop for the next job: `seconds` more than the CPU time used so far.
/// Only the soft limit moves (SIGXCPU, answered `timeout`); the hard limit stays where it was,
/// since a process may lower its hard limit but never raise it again, and a reused child needs
/// a new soft limit for every job.
pub fn limit_cpu_for_job(seconds: u64) -> Result<(), String> {
    use rlimit::{Resource, getrlimit, setrlimit};
    let used = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let used_seconds = u64::try_from(used.tv_sec).unwrap_or(0) + 1;
    let (_, hard) = getrlimit(Resource::CPU).map_err(|e| format!("could not read RLIMIT_CPU: {e}"))?;
    let soft = used_seconds.saturating_add(seconds).min(hard);
    setrlimit(Resource::CPU, soft, hard).map_err(|e| format!("could not set RLIMIT_CPU: {e}"))
}

/// No filesystem right, no TCP, no signal or abstract socket beyond its own domain: a ruleset
/// that handles every right of the newest ABI the crate knows and grants none. Best effort:
/// the kernel enforces what it knows.
fn restrict_with_landlock() -> Result<String, String> {
    use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope};
    let abi = ABI::V6;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|ruleset| ruleset.handle_access(AccessNet::from_all(abi)))
        .and_then(|ruleset| ruleset.scope(Scope::from_all(abi)))
        .and_then(|ruleset| ruleset.create())
        .and_then(|ruleset| ruleset.restrict_self())
        .map_err(|e| e.to_string())?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => "full",
        RulesetStatus::PartiallyEnforced => "partial",
        RulesetStatus::NotEnforced => "none",
    }
    .to_owned())
}

/// The system calls a parser child makes once it is locked down: memory management, reading
/// and writing the pipes it holds, clocks and sleeps (the orphan watchdog), its own CPU limit
/// (`prlimit64` on itself, for `RLIMIT_CPU` only), and what `abort` and a stack-overflow report
/// need (signals to itself). No `open`, `socket`, `connect`, `clone`, `execve`, `ptrace`,
/// `kill` of others.
fn syscall_filter() -> Result<seccompiler::BpfProgram, String> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
        TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("{e}"))?;
    let always: &[libc::c_long] = &[
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        libc::SYS_futex,
        libc::SYS_sched_yield,
        libc::SYS_getrandom,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_getppid,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        // A thread's start and end (the watchdog's, should seccomp land while it starts).
        libc::SYS_rseq,
        libc::SYS_set_robust_list,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    let condition = |arg, value| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, value)
            .map_err(|e| e.to_string())
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = always.iter().map(|call| (*call, Vec::new())).collect();
    // prlimit64(0 = itself, RLIMIT_CPU, …): the per-job CPU limit; no other resource, no other
    // process. (An exploit may raise its own soft CPU limit: the worker's wall clock still
    // kills it.)
    let own_cpu_limit = SeccompRule::new(vec![condition(0, 0)?, condition(1, libc::RLIMIT_CPU as u64)?])
        .map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_prlimit64, vec![own_cpu_limit]);
    // tgkill(own pid, …): `abort` raising SIGABRT on itself.
    let own_pid = u64::from(std::process::id());
    let to_itself = SeccompRule::new(vec![condition(0, own_pid)?]).map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_tgkill, vec![to_itself]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch)
            .map_err(|e| e.to_string())?;
    seccompiler::BpfProgram::try_from(filter).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_space_at_start_is_measured() {
        let status = std::fs::File::open("/proc/self/status").unwrap();
        let bytes = address_space_bytes(status).unwrap();
        // A test binary maps itself and its libraries: megabytes, not nothing, not terabytes.
        assert!((1 << 20..1 << 40).contains(&bytes), "{bytes}");
    }
}
