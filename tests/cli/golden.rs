//! Golden tests: `extract` over every fixture must print exactly the reviewed answer in
//! `fixtures/expected/<type>/<file>.json`. `UPDATE_GOLDEN=1 make test` rewrites them; the
//! diff is then reviewed against ffprobe, exiftool, pdfinfo and pydicom (`fixtures/reference/`).

use std::path::PathBuf;

use super::{extract, fixture_files, lines, root};

#[test]
fn every_fixture_matches_its_expected_answer() {
    let files = fixture_files();
    assert!(files.len() > 100, "only {} fixtures found", files.len());
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let output = extract(&args);
    let answers = lines(&output);
    assert_eq!(
        answers.len(),
        files.len(),
        "one line per file; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for (file, answer) in files.iter().zip(&answers) {
        assert_eq!(answer["path"], file.to_str().unwrap(), "answers come in input order");
        let expected_path = root().join("fixtures/expected").join(file.strip_prefix("fixtures").unwrap());
        let expected_path = expected_path.with_extension(format!(
            "{}.json",
            expected_path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        if update {
            std::fs::create_dir_all(expected_path.parent().unwrap()).unwrap();
            std::fs::write(&expected_path, serde_json::to_string_pretty(answer).unwrap() + "\n").unwrap();
            continue;
        }
        let expected: serde_json::Value = match std::fs::read_to_string(&expected_path) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => {
                mismatches.push(format!(
                    "{}: no expected answer at {}",
                    file.display(),
                    expected_path.display()
                ));
                continue;
            }
        };
        if &expected != answer {
            mismatches.push(format!(
                "{}:\n  expected {}\n  got      {}",
                file.display(),
                serde_json::to_string(&expected).unwrap(),
                serde_json::to_string(answer).unwrap()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} fixtures differ:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
    // Exit status: 1 because the hostile fixtures fail.
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn all_succeeded_exits_zero() {
    let output = extract(&["fixtures/image/png_rgb8.png", "fixtures/text/utf8_lf.txt"]);
    assert_eq!(output.status.code(), Some(0));
    let answers = lines(&output);
    assert_eq!(answers[0]["data_type"], "image");
    assert_eq!(answers[1]["data_type"], "text");
    assert!(answers.iter().all(|a| a["error"].is_null() && a["status"] == "succeeded"));
}

#[test]
fn a_missing_file_is_reported_not_fatal() {
    let output = extract(&["fixtures/nope.png", "fixtures/image/png_rgb8.png"]);
    assert_eq!(output.status.code(), Some(1));
    let answers = lines(&output);
    assert_eq!(answers[0]["error"]["kind"], "not_found");
    assert_eq!(answers[1]["status"], "succeeded");
}

/// A symbolic link loop is a path that leads to no file: `not_found`, never a retryable
/// `internal` (retrying cannot break the loop).
#[test]
fn a_symlink_loop_is_a_path_error_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("loop-a.png"), dir.path().join("loop-b.png"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    let output = extract(&[a.to_str().unwrap(), "fixtures/image/png_rgb8.png"]);
    assert_eq!(output.status.code(), Some(1));
    let answers = lines(&output);
    assert_eq!(answers[0]["error"]["kind"], "not_found", "{}", answers[0]);
    assert_eq!(answers[0]["error"]["retryable"], false);
    assert!(answers[0]["error"]["message"].as_str().unwrap().contains("symbolic links"), "{}", answers[0]);
    assert_eq!(answers[1]["status"], "succeeded");
}

#[test]
fn names_do_not_decide_the_type() {
    let output = extract(&["fixtures/hostile/png-named.jpg", "fixtures/hostile/text-named.mp4"]);
    let answers = lines(&output);
    assert_eq!(answers[0]["mime_type"], "image/png");
    assert_eq!(answers[1]["data_type"], "text");
}

#[test]
fn directories_are_walked_in_name_order() {
    let output = extract(&["fixtures/text"]);
    let paths: Vec<String> = lines(&output).iter().map(|a| a["path"].as_str().unwrap().to_owned()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert!(paths.len() >= 5);
    assert_eq!(paths, sorted);
}

/// `--count-frames` counts what Matroska and MPEG-TS do not store: each count equals ffprobe's
/// `-count_packets` in `fixtures/reference/`, and without the flag the count stays null (the
/// files are not read whole unasked).
#[test]
fn count_frames_counts_matroska_and_transport_streams_like_ffprobe() {
    let files: Vec<PathBuf> = fixture_files()
        .into_iter()
        .filter(|p| p.starts_with("fixtures/video"))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("mkv" | "webm" | "ts")))
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    let args: Vec<&str> = files.iter().map(|p| p.to_str().unwrap()).collect();
    let counted = lines(&extract(&[&["--count-frames"], &args[..]].concat()));
    let plain = lines(&extract(&args));
    for ((file, counted), plain) in files.iter().zip(&counted).zip(&plain) {
        let reference = root().join("fixtures/reference").join(file.strip_prefix("fixtures").unwrap());
        let reference = reference
            .with_file_name(format!("{}.ffprobe.json", reference.file_name().unwrap().to_string_lossy()));
        let probe: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&reference).unwrap()).unwrap();
        let video = probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "video").unwrap();
        let packets: u64 = video["nb_read_packets"].as_str().unwrap().parse().unwrap();
        assert_eq!(counted["metadata"]["frame_count"].as_u64(), Some(packets), "{}", file.display());
        assert!(counted["metadata"]["frame_rate_mode"].is_string(), "{}", file.display());
        assert!(plain["metadata"]["frame_count"].is_null(), "{}", file.display());
        assert!(plain["metadata"]["frame_rate_mode"].is_null(), "{}", file.display());
        // the rest of the answer is the same
        let strip = |answer: &serde_json::Value| {
            let mut metadata = answer["metadata"].clone();
            let map = metadata.as_object_mut().unwrap();
            map.remove("frame_count");
            map.remove("frame_rate_mode");
            metadata
        };
        assert_eq!(strip(counted), strip(plain), "{}", file.display());
    }
}
