//! Integration tests of the `asset-worker` binary: every test runs the real binary as a user
//! would, over the committed fixtures. One test binary, one module per capability.

mod broker;
mod broker_faults;
mod check;
mod customer_kit;
mod delegated;
mod deploy;
mod fetch;
mod gcs_access;
mod golden;
mod peers;
mod queue;
mod queue_faults;
mod s3_access;
mod sandbox;
mod signing;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The repository root, where `fixtures/` lives.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `asset-worker extract` with `args` from the repository root.
pub fn extract(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .arg("extract")
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

/// The JSON lines of an `extract` run.
pub fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

/// Every fixture file (not the docs, scripts or expectations beside them), relative to the
/// root, in a stable order.
pub fn fixture_files() -> Vec<PathBuf> {
    const TYPES: [&str; 7] = ["image", "video", "audio", "pdf", "dicom", "text", "hostile"];
    let mut files = Vec::new();
    for kind in TYPES {
        let dir = root().join("fixtures").join(kind);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let docs = matches!(path.extension().and_then(|e| e.to_str()), Some("md" | "json" | "sh"));
            if path.is_file() && !docs {
                files.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// Polls `condition` every 50 ms until it holds or `limit` passes; says whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Running extraction children (`asset-worker extract-child`) for which `belongs` holds.
pub fn extraction_children(belongs: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("extract-child") && is_alive(pid) && belongs(pid)
        })
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name (state first, then the parent's
/// pid), or nothing once the process is gone.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Whether a process still runs (a zombie awaiting its reaper counts as gone).
pub fn is_alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields.first().is_some_and(|state| state != "Z"))
}

/// The parent of a process, while it runs.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// CPU time a process has used so far, in clock ticks (utime + stime), while it runs.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid)?;
    // After the command name: state is field 3 of stat(5), utime 14 and stime 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A parser child of `parent` that has started parsing (used at least 0.2 s of CPU: a warm
/// child of the pool waits for work without using any), within 30 s.
pub fn child_at_work(parent: u32) -> Option<u32> {
    let mut working = None;
    wait_until(Duration::from_secs(30), || {
        working = extraction_children(|child| parent_of(child) == Some(parent))
            .into_iter()
            .find(|child| cpu_ticks(*child).is_some_and(|ticks| ticks >= 20));
        working.is_some()
    });
    working
}

/// A pool of `size` parser children of this test binary's `asset-worker`, on the current
/// runtime. `marker` goes into each child's memory cap (1 GiB + marker bytes), so a test can
/// tell its own children (`/proc/PID/cmdline`) from those of tests running beside it.
pub fn test_pool(size: usize, marker: u64) -> asset_worker::sandbox::Pool {
    asset_worker::sandbox::Pool::start(asset_worker::sandbox::PoolSettings {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_asset-worker")),
        size,
        memory_bytes: (1 << 30) + marker,
        max_jobs: 100,
    })
}

/// The running children of pools made by [`test_pool`] with `marker`.
pub fn marked_children(marker: u64) -> Vec<u32> {
    let flag = format!("--memory-bytes={}", (1u64 << 30) + marker);
    extraction_children(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        cmdline.split(|b| *b == 0).any(|arg| arg == flag.as_bytes())
    })
}

/// A multi-threaded tokio runtime, as the worker's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

/// `kill -NAME -- TARGET`: a pid, or a process group as `-PGID`.
pub fn send_signal(name: &str, target: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), "--", target]).status().unwrap();
    assert!(status.success(), "kill -{name} -- {target}");
}
