//! `asset-worker check` catches what breaks customers (issue 11, part 2), through the real
//! binary against real peers: the bucket's CORS as a browser on the platform's origin meets
//! it (SeaweedFS, which implements PutBucketCors and answers preflights), a trust policy that
//! does not require the ExternalId (moto, with a role made without the condition), and a role
//! that may list the bucket (SeaweedFS's `noget` role).
//!
//! What the peers cannot show: SeaweedFS ignores ExternalId altogether, and moto 5.2.5 checks
//! an ExternalId that is sent but not one that is missing (`TrustCondition.verify_condition`
//! loops over the values present, so an absent `sts:ExternalId` satisfies `StringEquals`): on
//! both, `check` rightly reports that a session without the ExternalId was granted. The other
//! branch — STS refusing it, as AWS does for a trust policy with the condition — has no peer.

use serde_json::{Value, json};

use super::delegated::{EXTERNAL_ID, PNG, Worker, error_kind, s3_args};
use super::peers::{Seaweed, moto_admin, moto_assumed_role, peer, unique};
use super::root;

/// The kinds of an answer's warnings.
fn warning_kinds(answer: &Value) -> Vec<&str> {
    answer["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings list in {answer}"))
        .iter()
        .map(|warning| warning["kind"].as_str().expect("a warning kind"))
        .collect()
}

/// The message of the warning of `kind`.
fn warning<'a>(answer: &'a Value, kind: &str) -> &'a str {
    answer["warnings"]
        .as_array()
        .and_then(|warnings| warnings.iter().find(|w| w["kind"] == kind))
        .and_then(|w| w["message"].as_str())
        .unwrap_or_else(|| panic!("no {kind} warning in {answer}"))
}

#[test]
fn check_sends_the_browsers_preflight_and_prints_the_cors_rule_that_lets_it_pass() {
    // A bucket of this test's own: its CORS rules change under the test.
    let seaweed = Seaweed::connect();
    let bucket = unique("cors");
    seaweed.create_bucket(&bucket);
    seaweed.upload_to(&bucket, "page/a.png", std::fs::read(root().join(PNG)).expect("the fixture"));
    let object = format!("s3://{bucket}/page/a.png");
    let worker = Worker::seaweed();
    let role = peer("S3_ROLE_ARN");
    let check = |origin: &str| {
        let mut args = s3_args("check", &object, &role, EXTERNAL_ID);
        args.extend(["--origin", origin]);
        let run = worker.run(&args);
        run.assert_exit(1); // SeaweedFS takes sessions without the ExternalId: always a warning
        run.answer()
    };

    // No rule at all: SeaweedFS answers every origin (its built-in default; AWS and GCS refuse
    // a preflight to a bucket without CORS rules). `check` says what the store answers.
    let open = check("https://app.example");
    assert_eq!(open["cors"]["allowed"], true, "{open}");

    // A rule for the platform's origin: its browsers pass, and nothing is to be fixed.
    seaweed.put_cors(&bucket, &asset_worker::access::cors::s3_configuration("https://app.example"));
    let allowed = check("https://app.example");
    assert_eq!(allowed["cors"]["allowed"], true, "{allowed}");
    assert_eq!(allowed["cors"]["http_status"], 200);
    assert_eq!(allowed["cors"]["allow_origin"], "https://app.example");
    assert_eq!(allowed["cors"]["configuration"], Value::Null);
    assert!(!warning_kinds(&allowed).contains(&"cors_refused"), "{allowed}");

    // Another origin (from ASSET_WORKER_DISPLAY_ORIGIN): refused, with the rule that fixes it.
    let run = Worker::seaweed()
        .with("ASSET_WORKER_DISPLAY_ORIGIN", "https://labels.example:8443")
        .run(&s3_args("check", &object, &role, EXTERNAL_ID));
    run.assert_exit(1);
    let refused = run.answer();
    assert_eq!(refused["cors"]["origin"], "https://labels.example:8443");
    assert_eq!(refused["cors"]["allowed"], false, "{refused}");
    assert_eq!(refused["cors"]["http_status"], 403);
    let fix = refused["cors"]["configuration"].clone();
    assert_eq!(fix["CORSRules"][0]["AllowedOrigins"], json!(["https://labels.example:8443"]));
    assert_eq!(fix["CORSRules"][0]["AllowedMethods"], json!(["GET", "HEAD"]));
    assert_eq!(
        refused["cors"]["apply"],
        format!("aws s3api put-bucket-cors --bucket {bucket} --cors-configuration file://cors.json")
    );
    let message = warning(&refused, "cors_refused");
    assert!(message.contains("https://labels.example:8443") && message.contains(&bucket), "{message}");

    // The printed configuration, applied as printed, is what lets that browser pass.
    seaweed.put_cors(&bucket, &fix);
    let fixed = Worker::seaweed()
        .with("ASSET_WORKER_DISPLAY_ORIGIN", "https://labels.example:8443")
        .run(&s3_args("check", &object, &role, EXTERNAL_ID));
    assert_eq!(fixed.answer()["cors"]["allowed"], true, "{}", fixed.stdout);
}

#[test]
fn an_origin_that_is_not_one_is_a_usage_error() {
    let object = format!("s3://{}/any.png", peer("S3_BUCKET"));
    let run = Worker::seaweed().run(&[
        "check",
        &object,
        "--role-arn",
        &peer("S3_ROLE_ARN"),
        "--external-id",
        EXTERNAL_ID,
        "--origin",
        "https://app.example/labeling",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--origin"), "{}", run.stderr);
}

#[test]
fn check_reports_the_scope_a_role_has_beyond_get_object() {
    let seaweed = Seaweed::connect();
    let key = format!("check/{}/a.png", unique("scope"));
    seaweed.upload_file(&key, &root().join(PNG));
    let object = format!("s3://{}/{key}", seaweed.bucket);
    let worker = Worker::seaweed();

    // `worker`: GetObject on the bucket's objects, no listing. Readable, nothing broader.
    let run = worker.run(&s3_args("check", &object, &peer("S3_ROLE_ARN"), EXTERNAL_ID));
    let answer = run.answer();
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(answer["scope"], json!({"get_object": true, "list_bucket": false}));
    assert!(!warning_kinds(&answer).contains(&"broader_than_needed"), "{answer}");

    // `noget`: may list the bucket but not read it: narrower than the platform needs (the
    // error) and broader where it does not need it (the warning).
    let run = worker.run(&s3_args("check", &object, &peer("S3_NOGET_ROLE_ARN"), EXTERNAL_ID));
    run.assert_exit(1);
    let answer = run.answer();
    assert_eq!(error_kind(&answer), "access_denied", "{answer}");
    assert_eq!(answer["scope"], json!({"get_object": false, "list_bucket": true}));
    let message = warning(&answer, "broader_than_needed");
    assert!(message.contains("s3:ListBucket") && message.contains(&seaweed.bucket), "{message}");
}

#[test]
fn check_warns_when_the_trust_policy_does_not_require_the_external_id() {
    let bucket = unique("deputy");
    moto_admin(&["bucket", &bucket, "a.png"]);
    let role_name = unique("no-external-id");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": peer("MOTO_USER_ARN")}, "Action": "sts:AssumeRole"}]});
    let read = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/*")}]});
    let created = moto_admin(&["role", &role_name, &trust.to_string(), &read.to_string()]);
    let role = created["RoleArn"].as_str().expect("a role ARN");

    let run = Worker::moto().run(&s3_args("check", &format!("s3://{bucket}/a.png"), role, "any-id-at-all"));
    run.assert_exit(1);
    let answer = run.answer();
    assert_eq!(answer["status"], "succeeded", "the object itself is readable: {answer}");
    assert_eq!(answer["external_id_enforced"], false);
    assert_eq!(answer["scope"], json!({"get_object": true, "list_bucket": false}));
    assert_eq!(warning_kinds(&answer), ["external_id_not_required"]);
    let message = warning(&answer, "external_id_not_required");
    assert!(message.contains(role) && message.contains("sts:ExternalId"), "{message}");

    // The probe was a real AssumeRole without any ExternalId, and the scope probe one without
    // the platform's session policy; the job's own session had both.
    let probe = moto_assumed_role(&format!("asset-worker-check-{}-no-external-id", run.pid));
    assert!(probe["external_id"].is_null() || probe["external_id"] == "", "{probe}");
    let scope = moto_assumed_role(&format!("asset-worker-check-{}-scope", run.pid));
    assert_eq!(scope["external_id"], "any-id-at-all");
    assert!(scope["policy"].is_null() || scope["policy"] == "", "{scope}");
    let job = moto_assumed_role(&format!("asset-worker-check-{}", run.pid));
    assert_eq!(job["external_id"], "any-id-at-all");
    assert!(job["policy"].as_str().is_some_and(|p| p.contains("s3:GetObject")), "{job}");
}

/// GCS: the preflight goes to the signed URL's host too. fake-gcs-server answers every origin
/// (`Access-Control-Allow-Origin: *`; it keeps no bucket CORS rules), so this shows the GCS
/// path end to end and a check that passes: readable, nothing to warn of, exit 0. The GCS
/// `cors.json` a refusal prints is tested beside the setup script (customer_kit.rs).
#[test]
fn a_gcs_check_that_passes_exits_0_with_its_preflight() {
    let endpoint = peer("GCS_ENDPOINT");
    let object = super::delegated::gcs_fixture(&endpoint);
    let run = Worker::gcs_at(&endpoint).run(&["check", &object, "--origin", "https://app.example"]);
    run.assert_exit(0);
    let answer = run.answer();
    assert_eq!(answer["status"], "succeeded", "{answer}");
    assert_eq!(answer["cors"]["allowed"], true);
    assert_eq!(answer["cors"]["allow_origin"], "*");
    assert_eq!(answer["scope"]["get_object"], true);
    assert_eq!(answer["external_id_enforced"], Value::Null);
    assert_eq!(answer["warnings"], json!([]));
}
