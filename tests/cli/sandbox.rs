//! The child boundary: a file that hangs, blows the memory cap or crashes its parser costs that
//! file's answer and every other file still gets its own; and a parser child, as the OS sees
//! it, holds nothing of the worker's (environment, files, sockets) and runs locked down.

use std::process::{Command, Stdio};

use asset_worker::sandbox::{CHILD_SUBCOMMAND, MEMORY_FLAG, PARENT_FLAG};

use super::queue::{write_huge_pdf, write_text};
use super::{child_at_work, extract, is_alive, lines};

#[test]
fn the_time_limit_kills_the_child_and_reports_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.txt");
    // Seconds of parsing; the limit is 200 ms.
    write_text(&slow, 256);
    let output = extract(&["--timeout-ms", "200", slow.to_str().unwrap(), "fixtures/image/png_rgb8.png"]);
    assert_eq!(output.status.code(), Some(1));
    let answers = lines(&output);
    assert_eq!(answers[0]["status"], "failed");
    assert_eq!(answers[0]["error"]["kind"], "timeout", "{}", answers[0]);
    assert_eq!(answers[0]["error"]["retryable"], true);
    assert_eq!(answers[1]["status"], "succeeded", "the next file, on a fresh child: {}", answers[1]);
}

/// The child's CPU-time limit backs up the worker's wall clock, for a worker too busy to kill
/// on time. Driven here by the test as a worker that serves every range at once and never
/// looks at the clock: the child, given 1 s of CPU for a job that needs far more, dies of
/// SIGXCPU (the soft limit: not the SIGKILL of a hard one, which would read as out of memory),
/// and that death is answered `timeout`.
#[test]
fn a_child_past_its_cpu_limit_dies_of_sigxcpu_and_is_answered_timeout() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;

    use asset_worker::sandbox::protocol::{self, JobRequest, ReadRequest};

    let mut child = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .arg(CHILD_SUBCOMMAND)
        .arg(format!("--{PARENT_FLAG}={}", std::process::id()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut to_child, mut from_child) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let (tag, _) = protocol::read_frame(&mut from_child).unwrap().expect("a ready frame");
    assert_eq!(tag, protocol::READY);
    // 4 GiB of text, made up at whatever offset is asked: no parser gets through it in 1 s.
    let size = 4u64 << 30;
    let job = JobRequest { size, options: Default::default(), cpu_seconds: 1 };
    protocol::write_frame(&mut to_child, protocol::JOB, &serde_json::to_vec(&job).unwrap()).unwrap();
    let line = b"the quick brown fox jumps over the lazy dog 0123456789\n";
    let text_at = |range: std::ops::Range<u64>| -> Vec<u8> {
        range.map(|at| line[(at % line.len() as u64) as usize]).collect()
    };
    // The first window goes with the job, as the pool sends it.
    protocol::write_frame(&mut to_child, protocol::DATA, &text_at(0..64 * 1024)).unwrap();
    let mut reads = 0u64;
    while let Ok(Some((tag, payload))) = protocol::read_frame(&mut from_child) {
        assert_eq!(
            tag,
            protocol::READ,
            "answered within its CPU limit: {}",
            String::from_utf8_lossy(&payload)
        );
        let read = ReadRequest::decode(&payload).unwrap();
        let bytes: Vec<u8> = (read.offset..read.offset + read.want)
            .map(|at| line[(at % line.len() as u64) as usize])
            .collect();
        if protocol::write_frame(&mut to_child, protocol::DATA, &bytes).is_err() {
            break;
        }
        reads += 1;
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.signal(), Some(24), "SIGXCPU after {reads} reads: {status:?} {stderr}");
    let answer = asset_worker::sandbox::classify_death(status, &stderr, 1 << 30);
    assert_eq!(answer.kind, asset_worker::job::ErrorKind::Timeout, "{answer:?}");
    assert!(answer.message.contains("CPU time"), "{answer:?}");
}

/// A child whose parent is gone before it first looks (a worker killed with SIGKILL while its
/// child started) exits at once rather than wait for work: the parent names itself on the
/// command line, so the child can't take its new reaper for it.
#[test]
fn a_child_whose_parent_died_while_it_started_exits_at_once() {
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .arg(CHILD_SUBCOMMAND)
        .arg(format!("--{PARENT_FLAG}={}", gone.id()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert!(output.stdout.is_empty(), "said it was ready for nobody: {:?}", output.stdout);
}

#[test]
fn the_memory_cap_is_reported_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.pdf");
    write_huge_pdf(&huge);
    let output = extract(&[
        "--memory-limit-mb",
        "128",
        huge.to_str().unwrap(),
        "fixtures/pdf/simple_letter_1page.pdf",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let answers = lines(&output);
    assert_eq!(answers[0]["error"]["kind"], "too_large", "{}", answers[0]);
    assert!(answers[0]["error"]["message"].as_str().unwrap().contains("128 MiB"), "{}", answers[0]);
    assert_eq!(answers[1]["status"], "succeeded", "the next file, on a fresh child: {}", answers[1]);
}

#[test]
fn hostile_files_cost_one_answer_each() {
    let files = [
        "fixtures/hostile/random_64k.bin",
        "fixtures/image/png_rgb8.png",
        "fixtures/hostile/mp4_mvhd_timescale_0.mp4",
        "fixtures/hostile/truncated_mp4_moov_at_end_2k.mp4",
        "fixtures/hostile/empty.bin",
        "fixtures/text/utf8_lf.txt",
    ];
    let output = extract(&files);
    let answers = lines(&output);
    assert_eq!(answers.len(), files.len());
    let kinds: Vec<&str> = answers.iter().map(|a| a["error"]["kind"].as_str().unwrap_or("none")).collect();
    assert_eq!(kinds, ["unsupported_type", "none", "corrupt", "corrupt", "unsupported_type", "none"]);
}

/// What a parser child holds, read from `/proc` while it parses a file: an environment with
/// none of the worker's variables (the broker's password, cloud credentials; only glibc's
/// setting that scrubs freed memory), no socket, no open file but its pipes (not even the file
/// it parses), `no_new_privs`, a seccomp filter, and not dumpable (owned by root, so other
/// processes of the worker's user can't read it).
#[test]
fn a_parser_child_holds_nothing_of_the_worker_and_runs_locked_down() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.txt");
    write_text(&slow, 256);
    let mut parent = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .args(["extract", "-j", "1"])
        .arg(&slow)
        .env("ASSET_WORKER_AMQP_URL", "amqp://worker:SECRET-BROKER-PASSWORD@127.0.0.1:5672/%2f")
        .env("AWS_SECRET_ACCESS_KEY", "SECRET-AWS-KEY")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let working = child_at_work(parent.id()).expect("no extraction child started parsing");
    let environ = std::fs::read(format!("/proc/{working}/environ")).unwrap();
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{working}/cmdline")).unwrap()).into_owned();
    let status = std::fs::read_to_string(format!("/proc/{working}/status")).unwrap();
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{working}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(format!("/proc/{working}/fd")).unwrap().uid()
    };
    parent.kill().unwrap();
    parent.wait().unwrap();

    // glibc parses its tunables in place: the ':' between the two reads as a NUL here.
    let environ = String::from_utf8_lossy(&environ);
    assert_eq!(
        environ.split_terminator('\0').collect::<Vec<_>>(),
        ["GLIBC_TUNABLES=glibc.malloc.perturb=165", "glibc.malloc.tcache_count=0"],
        "the child's environment"
    );
    assert!(!cmdline.contains("SECRET") && !cmdline.contains("slow.txt"), "{cmdline}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "no seccomp filter:\n{status}");
    assert!(fds.iter().all(|fd| fd.starts_with("pipe:") || fd == "/dev/null"), "open in the child: {fds:?}");
    assert!(!fds.iter().any(|fd| fd.contains("slow.txt")), "{fds:?}");
    // A process that is not dumpable has its /proc files owned by root.
    assert_eq!(owner, 0);
}

/// A child is replaced after `--child-max-jobs` jobs (and a fresh process per job with 1):
/// each job's child, as the pool logs it, and those retired are gone.
#[test]
fn a_child_is_replaced_after_its_max_jobs() {
    let files = ["fixtures/image/png_rgb8.png"; 6];
    let output = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .current_dir(super::root())
        .args(["extract", "-j", "1", "--child-max-jobs", "2"])
        .args(files)
        .env("RUST_LOG", "asset_worker::sandbox=debug")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let log = String::from_utf8_lossy(&output.stderr);
    let retired: Vec<(u32, u32)> = log
        .lines()
        .filter(|line| line.contains("extraction child retired") && line.contains("max_jobs"))
        .filter_map(|line| {
            let field =
                |name: &str| line.split(&format!("{name}=")).nth(1)?.split_whitespace().next()?.parse().ok();
            Some((field("pid")?, field("jobs")?))
        })
        .collect();
    assert_eq!(retired.len(), 3, "six jobs, two per child:\n{log}");
    assert!(retired.iter().all(|(_, jobs)| *jobs == 2), "{retired:?}");
    let mut pids: Vec<u32> = retired.iter().map(|(pid, _)| *pid).collect();
    pids.dedup();
    assert_eq!(pids.len(), 3, "a new process each time: {retired:?}");
    assert!(pids.iter().all(|pid| !is_alive(*pid)), "a retired child still runs: {pids:?}");
}

/// The child's flags are what the pool passes: a child started by hand with a memory cap and
/// its parent says it is ready, then ends at the end of its input.
#[test]
fn a_child_started_by_hand_says_ready_and_ends_with_its_input() {
    let child = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .arg(CHILD_SUBCOMMAND)
        .arg(format!("--{PARENT_FLAG}={}", std::process::id()))
        .arg(format!("--{MEMORY_FLAG}={}", 512u64 << 20))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let ready: serde_json::Value = serde_json::from_slice(&output.stdout[5..]).unwrap();
    assert_eq!(output.stdout[0], b'H');
    assert_eq!(ready["no_new_privs"], true, "{ready}");
    assert_eq!(ready["memory_bytes"], 512u64 << 20, "{ready}");
}

/// A file name that is not UTF-8 (Linux allows any bytes but `/` and NUL) is read like any
/// other: the child never sees the name, and the line names the file as lossily as a terminal
/// would show it.
#[test]
fn a_file_name_that_is_not_utf8_is_read_and_named() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"scan\xff.png");
    let path = dir.path().join(name);
    std::fs::copy(super::root().join("fixtures/image/png_rgb8.png"), &path).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .current_dir(super::root())
        .arg("extract")
        .arg(&path)
        .arg("fixtures/text/utf8_lf.txt")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let answers = lines(&output);
    assert_eq!(answers.len(), 2, "every file gets its line");
    assert!(answers[0]["path"].as_str().unwrap().ends_with("scan\u{FFFD}.png"), "{}", answers[0]);
    assert_eq!(answers[0]["data_type"], "image", "{}", answers[0]);
    assert_eq!(answers[1]["status"], "succeeded", "{}", answers[1]);
}

/// The memory cap comes on top of what a child holds at start (~100 MiB of address space in a
/// debug build, 64 MiB of it glibc's arena reservation for the watchdog thread), so that even
/// the smallest cap reads every valid fixture, the same way every time: with the cap as the
/// whole address space, a valid PNG failed or not by the luck of the heap, and 87 of 116
/// fixtures failed under 32 MiB. The hostile ones answer the same too: none may allocate by a
/// declared length (a 1 GiB DICOM element in 264 bytes, a 4 GiB Matroska element in 95).
#[test]
fn the_smallest_memory_cap_reads_every_fixture_as_the_default_does() {
    let dirs = [
        "fixtures/image",
        "fixtures/video",
        "fixtures/audio",
        "fixtures/pdf",
        "fixtures/dicom",
        "fixtures/hostile",
    ];
    let default = lines(&extract(&dirs));
    let capped =
        lines(&extract(&[&["--memory-limit-mb", "32", "--child-max-jobs", "1"][..], &dirs].concat()));
    assert_eq!(capped.len(), default.len());
    for (small, large) in capped.iter().zip(&default) {
        assert_eq!(small, large, "32 MiB vs 1 GiB");
    }
    let below = extract(&["--memory-limit-mb", "16", "fixtures/image/png_rgb8.png"]);
    assert_eq!(below.status.code(), Some(2), "a cap below the minimum is a usage error");
}
