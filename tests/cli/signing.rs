//! Display URLs over the broker (issue 11): a backend's signing request on `{prefix}.sign`
//! answered by a running worker, against the real RabbitMQ, SeaweedFS (STS + S3) and
//! fake-gcs-server; every URL is fetched to show it works.

use std::time::{Duration, Instant, SystemTime};

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};

use super::delegated::{EXTERNAL_ID, GCS_KEY_FILE, PNG, gcs_fixture};
use super::peers::{Seaweed, peer, unique};
use super::queue::{Prefix, SLOW_KEY, Worker, broker_at, slow_jobs_root};
use super::queue_faults::seaweed_worker_env;
use super::{root, wait_until};

/// A PNG uploaded to SeaweedFS; its `s3://` name.
fn s3_fixture(test: &str) -> String {
    let seaweed = Seaweed::connect();
    let key = format!("signing/{}/png_rgb8.png", unique(test));
    seaweed.upload_file(&key, &root().join(PNG));
    format!("s3://{}/{key}", seaweed.bucket)
}

/// The job source of an `s3://bucket/key` name, through the test role.
fn s3_source(object: &str) -> Value {
    let (bucket, key) = object.trim_start_matches("s3://").split_once('/').unwrap();
    json!({"provider": "s3", "region": "eu-central-1", "bucket": bucket, "key": key,
        "role_arn": peer("S3_ROLE_ARN"), "external_id": EXTERNAL_ID})
}

/// A worker reading SeaweedFS (and fake-gcs-server with the test key) that says it serves
/// signing requests.
fn signing_worker(prefix: &Prefix, extra: &[(&str, &str)]) -> Worker {
    let mut env = seaweed_worker_env();
    env.push(("ASSET_WORKER_GCS_ENDPOINT".into(), peer("GCS_ENDPOINT")));
    env.push(("ASSET_WORKER_GCS_KEY_FILE".into(), root().join(GCS_KEY_FILE).display().to_string()));
    env.extend(extra.iter().map(|(name, value)| (name.to_string(), value.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let worker = prefix.spawn_worker_with(1, &env);
    let serving = wait_until(Duration::from_secs(30), || worker.log().contains("serving signing requests"));
    assert!(serving, "{}", worker.log());
    worker
}

/// The body of a URL, which must answer 200.
fn fetched(url: &str) -> Vec<u8> {
    reqwest::blocking::get(url)
        .and_then(|response| response.error_for_status()?.bytes())
        .unwrap_or_else(|e| panic!("GET of the display URL: {}", e.without_url()))
        .to_vec()
}

/// Seconds from now until an answer's `expires_at`.
fn seconds_left(expires_at: &Value) -> i64 {
    let at = humantime::parse_rfc3339(expires_at.as_str().expect("an expires_at")).unwrap();
    match at.duration_since(SystemTime::now()) {
        Ok(left) => left.as_secs() as i64,
        Err(past) => -(past.duration().as_secs() as i64),
    }
}

/// Publishes `body` to the prefix's signing queue with `properties`, then waits (`wait` at
/// most) for one message on `queue`, as a backend does with a reply queue of its own.
fn ask(
    prefix: &Prefix,
    body: &Value,
    properties: lapin::BasicProperties,
    queue: &str,
    wait: Duration,
) -> Option<lapin::message::Delivery> {
    let (sign, queue, body) = (format!("{}.sign", prefix.name), queue.to_owned(), body.to_string());
    broker_at(&prefix.amqp_url(), |channel| async move {
        channel
            .basic_publish(
                "".into(),
                sign.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await?
            .await?;
        let started = Instant::now();
        while started.elapsed() < wait {
            if let Some(message) =
                channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await?
            {
                return Ok(Some(message.delivery));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    })
}

/// The issue's test: 1,000 slow jobs queued, the worker busy with them (its children parsing,
/// its prefetch full), and a page's 100 URLs asked through `sign --via-broker` still come back
/// while the backlog is all but untouched: signing has its own channel and prefetch, so it
/// never waits behind jobs. Every URL reads the object.
#[test]
fn a_page_gets_its_urls_at_once_while_a_thousand_slow_jobs_wait() {
    let prefix = Prefix::new("sign-backlog");
    let slow_root = slow_jobs_root(&prefix);
    let object = s3_fixture("backlog");
    let jobs: Vec<String> = (0..1000)
        .map(|n| {
            json!({"schema": 1, "job_id": format!("slow-{n}"), "asset_id": "a",
                "source": {"provider": "local", "key": SLOW_KEY}})
            .to_string()
        })
        .collect();
    prefix.enqueue_raw(&jobs.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(prefix.message_count("process"), 1000);
    let worker = signing_worker(
        &prefix,
        &[("ASSET_WORKER_LOCAL_ROOT", slow_root.as_str()), ("ASSET_WORKER_CONCURRENCY", "16")],
    );
    let busy = wait_until(Duration::from_secs(60), || worker.log().contains("job done"));
    assert!(busy, "the worker never finished a slow job:\n{}", worker.log());

    let role = peer("S3_ROLE_ARN");
    let mut args = vec!["sign", "--via-broker", "--role-arn", &role, "--external-id", EXTERNAL_ID];
    args.extend(std::iter::repeat_n(object.as_str(), 100));
    let mut env = seaweed_worker_env();
    env.retain(|(name, _)| !name.starts_with("AWS_"));
    let output = prefix.command(&args).envs(env).output().unwrap();
    let backlog = prefix.message_count("process");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{}", worker.log());
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let urls = answer["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 100, "{answer}");
    assert!(urls.iter().all(|url| url["url"].is_string() && url.get("error").is_none()), "{answer}");
    assert_eq!(fetched(urls[0]["url"].as_str().unwrap()), std::fs::read(root().join(PNG)).unwrap());
    assert_eq!(fetched(urls[99]["url"].as_str().unwrap()), std::fs::read(root().join(PNG)).unwrap());
    assert!(
        backlog > 900,
        "the answer came only after {} of the 1,000 jobs were taken ({stderr})",
        1000 - backlog
    );
    eprintln!("signing: 100 URLs {stderr}with {backlog} jobs still queued");
}

/// A backend's request with a reply queue of its own: one answer (its `correlation_id`
/// echoed, transient, expiring unread), an entry per object in order — S3 and GCS signed and
/// readable, an object without its ExternalId and a local file refused each on its own — and
/// the lifetime asked for (a day) cut to ASSET_WORKER_DISPLAY_URL_TTL_SECONDS. A request the
/// worker cannot read is answered with its error; one whose `reply_to` the worker may not
/// publish to is dropped, saying so, and nothing is published there.
#[test]
fn a_batch_is_answered_in_order_each_object_signed_or_refused_never_longer_than_allowed() {
    let prefix = Prefix::new("sign-batch");
    let worker = signing_worker(&prefix, &[("ASSET_WORKER_DISPLAY_URL_TTL_SECONDS", "600")]);
    let s3_object = s3_fixture("batch");
    let gcs_object = gcs_fixture(&peer("GCS_ENDPOINT"));
    let (bucket, name) = gcs_object.trim_start_matches("gs://").split_once('/').unwrap();
    let mut no_external_id = s3_source(&s3_object);
    no_external_id.as_object_mut().unwrap().remove("external_id");
    let reply_queue = format!("{}.reply.page-1", prefix.name);
    let declared = reply_queue.clone();
    broker_at(&prefix.amqp_url(), |channel| async move {
        // Gone a minute after its last use, whatever becomes of the test.
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), lapin::types::AMQPValue::LongInt(60_000));
        channel.queue_declare(declared.as_str().into(), QueueDeclareOptions::default(), arguments).await
    });
    let request = json!({"schema": 1, "request_id": "page-1", "ttl_seconds": 86_400, "objects": [
        s3_source(&s3_object),
        {"provider": "gcs", "bucket": bucket, "object": name},
        no_external_id,
        {"provider": "local", "key": "image/png_rgb8.png"},
        s3_source(&s3_object),
    ]});
    let asking = |body: &Value, reply_to: &str, take_from: &str| {
        let properties = lapin::BasicProperties::default()
            .with_reply_to(reply_to.into())
            .with_correlation_id("corr-1".into());
        ask(&prefix, body, properties, take_from, Duration::from_secs(30))
    };

    let reply = asking(&request, &reply_queue, &reply_queue)
        .unwrap_or_else(|| panic!("no answer on {reply_queue}:\n{}", worker.log()));
    assert_eq!(reply.properties.correlation_id().as_ref().map(|id| id.as_str()), Some("corr-1"));
    assert_eq!(*reply.properties.delivery_mode(), Some(1), "answers hold bearer URLs: never persisted");
    assert!(reply.properties.expiration().is_some(), "an answer expires unread");
    let answer: Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(answer["request_id"], "page-1", "{answer}");
    let urls = answer["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 5, "{answer}");
    let png = std::fs::read(root().join(PNG)).unwrap();
    for signed in [&urls[0], &urls[1], &urls[4]] {
        assert_eq!(fetched(signed["url"].as_str().expect("a url")), png, "{signed}");
        let left = seconds_left(&signed["expires_at"]);
        assert!((500..=600).contains(&left), "asked a day, allowed 600 s: {left} s left ({signed})");
    }
    assert_eq!(urls[2]["error"]["kind"], "invalid_job", "{answer}");
    assert!(
        urls[2]["error"]["message"].as_str().unwrap().contains("objects[2] has no external_id"),
        "{answer}"
    );
    assert_eq!(urls[3]["error"]["kind"], "invalid_job", "{answer}");
    assert!(urls[3]["error"]["message"].as_str().unwrap().contains("local files have no URL"), "{answer}");

    let unreadable = json!({"schema": 2, "request_id": "page-2", "objects": [s3_source(&s3_object)]});
    let reply = asking(&unreadable, &reply_queue, &reply_queue).expect("an answer to an unreadable request");
    let answer: Value = serde_json::from_slice(&reply.data).unwrap();
    assert_eq!(
        (answer["request_id"].as_str(), answer["error"]["kind"].as_str()),
        (Some("page-2"), Some("invalid_job"))
    );
    assert!(answer["urls"].as_array().unwrap().is_empty(), "{answer}");

    let results = format!("{}.results", prefix.name);
    let properties = lapin::BasicProperties::default().with_reply_to(results.as_str().into());
    ask(&prefix, &request, properties, &results, Duration::ZERO);
    let dropped = wait_until(Duration::from_secs(30), || worker.log().contains("dropped unanswered"));
    assert!(dropped, "{}", worker.log());
    assert_eq!(prefix.message_count("results"), 0, "nothing is published outside the reply_to prefix");

    // A caller gone before its answer: the answer (full of URLs) is returned by the broker,
    // and logged by nobody: not the worker, not its AMQP client.
    let gone = format!("{}.reply.gone", prefix.name);
    let properties = lapin::BasicProperties::default().with_reply_to(gone.as_str().into());
    let no_wait = Duration::ZERO;
    assert!(
        ask(&prefix, &request, properties, &reply_queue, no_wait).is_none(),
        "an answer to a caller gone"
    );
    assert!(wait_until(Duration::from_secs(30), || worker.log().contains("its caller went away")));
    let log = worker.log();
    // Neither as text nor as a list of bytes (`{"schema` is 123, 34, 115, …).
    assert!(
        !log.to_ascii_lowercase().contains("x-amz-signature"),
        "a display URL in the worker's log:\n{log}"
    );
    assert!(!log.contains("123, 34, 115, 99, 104, 101, 109, 97, 34"), "an answer's body in the worker's log");
}

/// `sign --via-broker` where no worker ever ran on the prefix says so rather than waiting.
#[test]
fn signing_via_a_broker_without_the_signing_queue_says_no_worker_runs() {
    let prefix = Prefix::new("sign-none");
    let output = prefix
        .command(&[
            "sign",
            "--via-broker",
            "s3://bkt/k.png",
            "--role-arn",
            "arn:aws:iam::1:role/r",
            "--external-id",
            "x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("no queue {}.sign", prefix.name)), "{stderr}");
}

/// The README's backend example (Python, pika) run as written against a worker, with only
/// the names changed to this test's queue, bucket, key and role: 100 display URLs come back,
/// each with its expiry, and they read the object.
#[test]
fn the_readmes_python_backend_gets_a_pages_urls() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let example = readme.find("A backend in Python with pika").expect("the README's pika example");
    let code =
        readme[example..].split("```python\n").nth(1).and_then(|rest| rest.split("\n```").next()).unwrap();
    let prefix = Prefix::new("sign-pika");
    let worker = signing_worker(&prefix, &[]);
    let object = s3_fixture("pika");
    let (bucket, key) = object.trim_start_matches("s3://").split_once('/').unwrap();
    let mut code = code.to_owned();
    for (written, here) in [
        ("\"assets.sign\"".to_owned(), format!("\"{}.sign\"", prefix.name)),
        ("\"customer-bucket\"".to_owned(), format!("\"{bucket}\"")),
        ("f\"scans/{n}.png\"".to_owned(), format!("\"{key}\"")),
        ("arn:aws:iam::123456789012:role/HubDelegatedAccess".to_owned(), peer("S3_ROLE_ARN")),
    ] {
        assert!(code.contains(&written), "the README's example no longer names {written}");
        code = code.replace(&written, &here);
    }
    let output = std::process::Command::new(root().join(".venv/bin/python"))
        .args(["-c", &code])
        .env("AMQP_URL", prefix.amqp_url())
        .output()
        .expect("the peers' Python (scripts/peers.sh installs pika)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{}", String::from_utf8_lossy(&output.stderr), worker.log());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 100, "{stdout}");
    for line in &lines {
        let (url, expires_at) = line.split_once(' ').unwrap();
        assert!(url.starts_with("http") && humantime::parse_rfc3339(expires_at).is_ok(), "{line}");
    }
    let url = lines[0].split_once(' ').unwrap().0;
    assert_eq!(fetched(url), std::fs::read(root().join(PNG)).unwrap());
}
