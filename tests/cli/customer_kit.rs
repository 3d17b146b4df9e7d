//! The customer's setup kit (issue 11, part 3), tested as a customer's admin would use it:
//! `deploy/customer/aws/asset-access-role.yaml` passes cfn-lint, and deployed as a
//! CloudFormation stack in moto for each scope it offers, gives a role the worker can use with
//! the right ExternalId and only with it, that reads what the scope grants and nothing else;
//! `deploy/customer/gcp/setup.sh --dry-run` prints the gcloud commands of docs/CUSTOMER-SETUP.md.
//!
//! What moto cannot show (moto 5.2.5): it grants AssumeRole *without* an ExternalId even when
//! the trust policy requires one (an absent `sts:ExternalId` satisfies its conditions), so
//! "missing ExternalId is refused" is shown by the trust policy moto created from the template
//! (read back below) and by the worker, which never sends a job without one; and it serves no
//! presigned GET while IAM auth is on (HTTP 500: it looks for an Authorization header), so the
//! worker's reads are proven by `check`'s HEAD, which moto authorizes as `s3:GetObject` against
//! the role's permission policy, Resource patterns included.

use std::process::Command;

use serde_json::{Value, json};

use super::delegated::{Worker, error_kind, s3_args};
use super::peers::{moto_admin, peer, unique};
use super::root;

const TEMPLATE: &str = "deploy/customer/aws/asset-access-role.yaml";
const GCP_SCRIPT: &str = "deploy/customer/gcp/setup.sh";

/// The peers' venv, where cfn-lint is installed (scripts/peers-requirements.in).
fn venv_bin(tool: &str) -> std::path::PathBuf {
    let script = std::path::PathBuf::from(peer("PEERS_SCRIPT"));
    script
        .parent()
        .and_then(std::path::Path::parent)
        .expect("scripts/ in the repository")
        .join(".venv/bin")
        .join(tool)
}

#[test]
fn the_cloudformation_template_passes_cfn_lint() {
    let output = Command::new(venv_bin("cfn-lint"))
        .arg(root().join(TEMPLATE))
        .output()
        .expect("cfn-lint runs (scripts/peers.sh install)");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && said.trim().is_empty(), "cfn-lint: {said}");
}

/// One stack of the template, as a customer would create it; moto's answer: the outputs, the
/// role's trust policy and its permission policies.
fn deploy(scope: &str, bucket: &str, extra: &[String]) -> (Value, String) {
    let external_id = unique("ext");
    let mut args = vec![
        "stack".to_owned(),
        unique("stack"),
        root().join(TEMPLATE).to_string_lossy().into_owned(),
        format!("PlatformPrincipalArn={}", peer("MOTO_USER_ARN")),
        format!("ExternalId={external_id}"),
        format!("Scope={scope}"),
        format!("BucketName={bucket}"),
        format!("RoleName={}", unique("role")),
    ];
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stack = moto_admin(&args);
    assert_eq!(stack["StackStatus"], "CREATE_COMPLETE", "{stack}");
    (stack, external_id)
}

/// A bucket and a key in it.
type Object<'a> = (&'a str, &'a str);
/// A scope, its parameter, objects it must let the worker read, objects it must not.
type ScopeCase<'a> = (&'a str, Option<String>, Vec<Object<'a>>, Vec<Object<'a>>);

/// `check` of `bucket/key` through the stack's role: its answer.
fn check(stack: &Value, external_id: &str, bucket: &str, key: &str) -> Value {
    let role = stack["RoleArn"].as_str().expect("the RoleArn output");
    Worker::moto().run(&s3_args("check", &format!("s3://{bucket}/{key}"), role, external_id)).answer()
}

#[test]
fn the_templates_role_reads_what_its_scope_grants_with_the_external_id_and_nothing_else() {
    let bucket = unique("kit");
    let elsewhere = unique("kit-other");
    moto_admin(&["bucket", &bucket, "granted/a.png", "granted/b.png", "other/a.png"]);
    moto_admin(&["bucket", &elsewhere, "granted/a.png"]);
    let cases: [ScopeCase; 4] = [
        (
            "prefix",
            Some("Prefix=granted/".into()),
            vec![(&bucket, "granted/a.png"), (&bucket, "granted/b.png")],
            vec![(&bucket, "other/a.png"), (&elsewhere, "granted/a.png")],
        ),
        (
            "object",
            Some("ObjectKey=granted/a.png".into()),
            vec![(&bucket, "granted/a.png")],
            vec![(&bucket, "granted/b.png"), (&bucket, "other/a.png")],
        ),
        ("bucket", None, vec![(&bucket, "other/a.png")], vec![(&elsewhere, "granted/a.png")]),
        ("all-buckets", None, vec![(&bucket, "other/a.png"), (&elsewhere, "granted/a.png")], vec![]),
    ];
    for (scope, parameter, readable, refused) in cases {
        let (stack, external_id) = deploy(scope, &bucket, &parameter.into_iter().collect::<Vec<_>>());

        // The trust policy: the platform's principal only, and only with the ExternalId.
        let trust = &stack["TrustPolicy"]["Statement"];
        assert_eq!(trust.as_array().map(Vec::len), Some(1), "{scope}: {trust}");
        assert_eq!(trust[0]["Principal"]["AWS"], peer("MOTO_USER_ARN"));
        assert_eq!(trust[0]["Action"], "sts:AssumeRole");
        assert_eq!(trust[0]["Condition"], json!({"StringEquals": {"sts:ExternalId": external_id}}));
        assert_eq!(stack["MaxSessionDuration"], 3600);
        // GetObject and nothing else.
        let statements = &stack["Policies"]["read-objects"]["Statement"];
        assert_eq!(statements.as_array().map(Vec::len), Some(1), "{scope}: {statements}");
        assert_eq!(statements[0]["Action"], "s3:GetObject", "{scope}");

        for (in_bucket, key) in readable {
            let answer = check(&stack, &external_id, in_bucket, key);
            assert_eq!(answer["status"], "succeeded", "{scope}: {in_bucket}/{key}: {answer}");
            assert_eq!(answer["scope"], json!({"get_object": true, "list_bucket": false}), "{scope}");
        }
        for (in_bucket, key) in refused {
            let answer = check(&stack, &external_id, in_bucket, key);
            assert_eq!(answer["access_granted"], true, "{scope}: {answer}");
            assert_eq!(error_kind(&answer), "access_denied", "{scope}: {in_bucket}/{key}: {answer}");
        }
        let wrong = check(&stack, "not-the-customers-id", &bucket, "granted/a.png");
        assert_eq!(wrong["access_granted"], false, "{scope}: {wrong}");
        assert_eq!(error_kind(&wrong), "access_denied", "{scope}: {wrong}");
    }
}

#[test]
fn a_job_without_the_external_id_never_reaches_the_templates_role() {
    let bucket = unique("kit-none");
    moto_admin(&["bucket", &bucket, "a.png"]);
    let (stack, _) = deploy("bucket", &bucket, &[]);
    let role = stack["RoleArn"].as_str().expect("the RoleArn output");
    let run = Worker::moto().run(&["check", &format!("s3://{bucket}/a.png"), "--role-arn", role]);
    run.assert_exit(1);
    let answer = run.answer();
    assert_eq!(answer["access_granted"], false);
    assert_eq!(error_kind(&answer), "invalid_job", "{answer}");
}

#[test]
fn the_templates_cors_output_is_the_rule_check_prints() {
    let bucket = unique("kit-cors");
    let (stack, _) = deploy("bucket", &bucket, &["DisplayOrigin=https://app.example".into()]);
    let output: Value =
        serde_json::from_str(stack["BucketCorsConfiguration"].as_str().expect("the CORS output"))
            .expect("the CORS output is JSON");
    assert_eq!(output, asset_worker::access::cors::s3_configuration("https://app.example"));
    let (without, _) = deploy("bucket", &bucket, &[]);
    assert!(without.get("BucketCorsConfiguration").is_none(), "{without}");
}

fn gcp_dry_run(args: &[&str]) -> (Option<i32>, String, String) {
    let output =
        Command::new(root().join(GCP_SCRIPT)).arg("--dry-run").args(args).output().expect("bash runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_gcp_script_prints_the_grants_and_the_cors_rule_check_prints() {
    let base = [
        "--project",
        "customer-proj",
        "--bucket",
        "customer-bucket",
        "--platform-account",
        "worker@platform-proj.iam.gserviceaccount.com",
    ];
    let (code, out, err) = gcp_dry_run(&base);
    assert_eq!(code, Some(0), "{err}");
    let account = "labeling-platform-reader@customer-proj.iam.gserviceaccount.com";
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with(
            "gcloud iam service-accounts create labeling-platform-reader --project=customer-proj"
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "gcloud storage buckets add-iam-policy-binding gs://customer-bucket --member=serviceAccount:{account} --role=roles/storage.objectViewer"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "gcloud iam service-accounts add-iam-policy-binding {account} --project=customer-proj --member=serviceAccount:worker@platform-proj.iam.gserviceaccount.com --role=roles/iam.serviceAccountTokenCreator"
        )
    );
    assert!(!out.contains("cors"), "no --origin, no CORS: {out}");
    assert_eq!(lines.last(), Some(&format!("# Give the platform this service account: {account}").as_str()));

    let mut with_all = base.to_vec();
    with_all.extend(["--prefix", "datasets/2026/", "--origin", "https://app.example"]);
    let (code, out, err) = gcp_dry_run(&with_all);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(r#"--condition=expression=resource.name.startsWith\(\"projects/_/buckets/customer-bucket/objects/datasets/2026/\"\)"#),
        "{out}"
    );
    let cors = out
        .split("cat > cors.json <<'JSON'\n")
        .nth(1)
        .and_then(|rest| rest.split("\nJSON\n").next())
        .expect("the cors.json it writes");
    let cors: Value = serde_json::from_str(cors).expect("cors.json is JSON");
    assert_eq!(cors, asset_worker::access::cors::gcs_configuration("https://app.example"));
    assert!(
        out.contains("gcloud storage buckets update gs://customer-bucket --cors-file=cors.json"),
        "{out}"
    );

    for (flag, bad) in
        [("--origin", "https://app.example/page"), ("--bucket", "Bad_Bucket!"), ("--prefix", "a\"b")]
    {
        let mut args = base.to_vec();
        args.extend([flag, bad]);
        let (code, out, err) = gcp_dry_run(&args);
        assert_eq!(code, Some(2), "{flag} {bad}: {out}");
        assert!(err.contains(flag), "{err}");
    }
    let (code, _, err) = gcp_dry_run(&["--bucket", "customer-bucket"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("required"), "{err}");
}

/// shellcheck (Debian's `shellcheck`) where it is installed; CI machines without it rely on
/// the developer's run.
#[test]
fn the_gcp_script_passes_shellcheck_where_installed() {
    match Command::new("shellcheck").arg(root().join(GCP_SCRIPT)).output() {
        Ok(output) => assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("shellcheck is not installed"),
        Err(e) => panic!("shellcheck: {e}"),
    }
}
