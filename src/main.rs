//! The `asset-worker` binary: parse the command line and dispatch a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use asset_worker::cli::{ExtractRun, expand_paths, extract_files};
use asset_worker::extract::ExtractOptions;
use asset_worker::extract::sandbox::{self, CHILD_SUBCOMMAND, Limits};
use asset_worker::job::DataType;

#[derive(Parser)]
#[command(
    name = "asset-worker",
    version,
    about = "Extracts metadata from images, video, audio, PDF, DICOM and text"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one JSON line of metadata per file (directories are walked). No services needed.
    Extract {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Breaks ties when the bytes fit more than one type (e.g. an empty file as text).
        #[arg(long, value_name = "TYPE")]
        data_type: Option<DataType>,
        /// Wall-clock limit per file; the child reading it is killed after this.
        #[arg(long, default_value_t = 30_000, value_name = "MS", env = "ASSET_WORKER_EXTRACT_TIMEOUT_MS")]
        timeout_ms: u64,
        /// Address-space limit per file's child process.
        #[arg(long, default_value_t = 1024, value_name = "MIB", env = "ASSET_WORKER_EXTRACT_MEMORY_MB")]
        memory_limit_mb: u64,
        /// Files read at once (default: one per core).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// DICOM keywords to report in `tags`, comma-separated (default: a list without
        /// patient identifiers).
        #[arg(long, value_delimiter = ',', value_name = "KEYWORDS", env = "ASSET_WORKER_DICOM_TAGS")]
        dicom_tags: Option<Vec<String>>,
    },
    /// Internal: extract one file described on stdin, answer on stdout (the sandbox child).
    #[command(name = CHILD_SUBCOMMAND, hide = true)]
    ExtractChild,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ExtractChild => ExitCode::from(sandbox::child_main() as u8),
        Command::Extract { paths, data_type, timeout_ms, memory_limit_mb, jobs, dicom_tags } => {
            let run = ExtractRun {
                options: ExtractOptions { hint: data_type, dicom_tags },
                limits: Limits {
                    timeout: Duration::from_millis(timeout_ms),
                    memory_bytes: memory_limit_mb.saturating_mul(1024 * 1024),
                },
                parallel: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            };
            let files = expand_paths(&paths);
            match extract_files(&files, &run, &mut std::io::stdout().lock()) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("asset-worker: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
