//! The child-process boundary: a file that hangs or blows the memory cap costs that file's
//! answer, and every other file still gets its own.

use super::{extract, lines};

#[test]
fn the_time_limit_kills_the_child_and_reports_timeout() {
    let output = extract(&["--timeout-ms", "1", "fixtures/image/png_rgb8.png"]);
    assert_eq!(output.status.code(), Some(1));
    let answer = &lines(&output)[0];
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["error"]["kind"], "timeout");
    assert_eq!(answer["error"]["retryable"], true);
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
