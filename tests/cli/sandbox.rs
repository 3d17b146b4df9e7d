//! The child-process boundary: a file that hangs or blows the memory cap costs that file's
//! answer, and every other file still gets its own.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use asset_worker::extract::sandbox::{CHILD_SUBCOMMAND, ChildRequest, ChildSource, Limits, PARENT_FLAG};

use super::queue::write_text;
use super::{extract, extraction_children, is_alive, lines, parent_of, send_signal, wait_until};

#[test]
fn the_time_limit_kills_the_child_and_reports_timeout() {
    let output = extract(&["--timeout-ms", "1", "fixtures/image/png_rgb8.png"]);
    assert_eq!(output.status.code(), Some(1));
    let answer = &lines(&output)[0];
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["error"]["kind"], "timeout");
    assert_eq!(answer["error"]["retryable"], true);
}

/// The child's CPU-time limit backs up the parent's wall clock. With the parent stopped
/// (SIGSTOP) past its deadline, as a parent starved on a loaded machine is, the child ends on
/// its own CPU limit and the answer is still `timeout`: not the `too_large` of a SIGKILL,
/// which Linux sends instead of SIGXCPU when the hard limit equals the soft one (CI saw it).
#[test]
fn a_child_past_its_cpu_limit_is_a_timeout_even_when_its_parent_is_late() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.txt");
    // About 3.5 s of reading in a debug build; the CPU soft limit is 1 s (900 ms + 1, whole).
    write_text(&slow, 256);
    let parent = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .args(["extract", "--timeout-ms", "900"])
        .arg(&slow)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = parent.id();
    let mut children = Vec::new();
    let started = wait_until(Duration::from_secs(30), || {
        children = extraction_children(|child| parent_of(child) == Some(pid));
        !children.is_empty()
    });
    assert!(started, "no extraction child started");
    send_signal("STOP", &pid.to_string());
    let ended = wait_until(Duration::from_secs(30), || !is_alive(children[0]));
    send_signal("CONT", &pid.to_string());
    assert!(ended, "the child outlived its CPU limit");
    let output = parent.wait_with_output().unwrap();
    let answer = &lines(&output)[0];
    assert_eq!(answer["error"]["kind"], "timeout", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("CPU time"), "{answer}");
}

/// A child whose parent is gone before it first looks (a worker killed with SIGKILL while its
/// child started) exits at once rather than read its file for nobody: the parent names itself
/// on the command line, so the child can't take its new reaper for it (CI saw one read on).
#[test]
fn a_child_whose_parent_died_while_it_started_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow.txt");
    write_text(&slow, 256);
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let request = ChildRequest {
        source: ChildSource::File { path: slow },
        options: Default::default(),
        limits: Limits::default(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_asset-worker"))
        .arg(CHILD_SUBCOMMAND)
        .arg(format!("--{PARENT_FLAG}={}", gone.id()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&serde_json::to_vec(&request).unwrap()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    assert!(output.stdout.is_empty(), "answered for nobody: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn the_memory_cap_is_reported_as_too_large() {
    // Text extraction allocates 64 KiB chunk buffers; 1 MiB of address space cannot hold them
    // (the cap is set after the child has started, so only new allocations fail).
    let output = extract(&["--memory-limit-mb", "1", "fixtures/text/utf8_lf.txt"]);
    assert_eq!(output.status.code(), Some(1));
    let answer = &lines(&output)[0];
    assert_eq!(answer["error"]["kind"], "too_large", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("1 MiB"), "{answer}");
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
