//! The `asset-worker extract` command: local files in, one JSON line per file out (DESIGN §4).
//!
//! It needs no service and no network, so it is the first thing a new user runs. Each file is
//! read by a sandboxed child ([`crate::extract::sandbox`]), several at once (one per core by
//! default); lines come out in the order the files were given.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use serde::Serialize;

use crate::extract::ExtractOptions;
use crate::extract::sandbox::{ChildRequest, ChildSource, Limits, open_error, run_in_child};
use crate::job::{DataType, ErrorBody, Status};

/// Above this many files a progress bar is shown (on a terminal).
const PROGRESS_BAR_MIN_FILES: usize = 20;

/// One line of `extract`'s output: the fields of a result, for a path.
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub status: Status,
    pub data_type: Option<DataType>,
    pub mime_type: Option<String>,
    pub size_bytes: Option<u64>,
    pub metadata: Option<serde_json::Value>,
    pub error: Option<ErrorBody>,
}

/// How to run `extract`.
#[derive(Debug, Clone)]
pub struct ExtractRun {
    pub options: ExtractOptions,
    pub limits: Limits,
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

/// Extracts every file, writing one JSON line per file to `out` in input order. Returns
/// whether all of them succeeded.
pub fn extract_files(files: &[PathBuf], run: &ExtractRun, out: &mut dyn Write) -> anyhow::Result<bool> {
    let exe = std::env::current_exe()?;
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel();
    let progress = (files.len() >= PROGRESS_BAR_MIN_FILES && std::io::stderr().is_terminal())
        .then(|| indicatif::ProgressBar::new(files.len() as u64));
    let mut all_succeeded = true;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..run.parallel.clamp(1, files.len().max(1)) {
            let sender = sender.clone();
            let (next, exe) = (&next, &exe);
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(index) else { break };
                    if sender.send((index, extract_one(exe, path, run))).is_err() {
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
                all_succeeded &= report.status == Status::Succeeded;
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

/// Extracts one local file in a sandboxed child.
pub fn extract_one(exe: &Path, path: &Path, run: &ExtractRun) -> FileReport {
    let shown = path.display().to_string();
    let size_bytes = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => {
            return failed(
                shown,
                None,
                ErrorBody::new(crate::job::ErrorKind::UnsupportedType, "not a regular file"),
            );
        }
        Err(e) => return failed(shown, None, open_error(path, &e)),
    };
    let request = ChildRequest {
        source: ChildSource::File { path: path.to_path_buf() },
        options: run.options.clone(),
        limits: run.limits,
    };
    match run_in_child(exe, &request).outcome {
        Ok(extracted) => FileReport {
            path: shown,
            status: Status::Succeeded,
            data_type: Some(extracted.data_type),
            mime_type: Some(extracted.mime_type),
            size_bytes: Some(size_bytes),
            metadata: Some(extracted.metadata),
            error: None,
        },
        Err(error) => failed(shown, Some(size_bytes), error),
    }
}

fn failed(path: String, size_bytes: Option<u64>, error: ErrorBody) -> FileReport {
    FileReport {
        path,
        status: Status::Failed,
        data_type: None,
        mime_type: None,
        size_bytes,
        metadata: None,
        error: Some(error),
    }
}
