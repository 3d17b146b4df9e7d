//! Integration tests of the `asset-worker` binary: every test runs the real binary as a user
//! would, over the committed fixtures. One test binary, one module per capability.

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

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
