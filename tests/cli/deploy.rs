//! `deploy/` against the code: the image, the Kubernetes manifests, the KEDA autoscaler, the
//! RabbitMQ definitions and the compose stack must agree with what the worker reads, serves
//! and declares. Every failure names the file and the mismatch.
//!
//! The settings a manifest gives the worker are loaded by `Settings::load` itself (defaults
//! included, unknown `ASSET_WORKER_*` names refused) under figment's `Jail`, in a child
//! process whose whole environment is the manifest's. Not in this process: `Jail` sets
//! process-wide variables, and the other tests of this binary would hand them (a placeholder
//! AMQP URL, say) to the workers they spawn at that moment.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asset_worker::config::Settings;
use asset_worker::queue::topology::{self, Names};
use asset_worker::telemetry::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
use base64::Engine;
use figment::providers::{Format, Toml};
use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::root;

const K8S: &str = "deploy/k8s/base";
const DEPLOYMENT: &str = "deploy/k8s/base/deployment.yaml";
const KUSTOMIZATION: &str = "deploy/k8s/base/kustomization.yaml";
/// The Secrets the manifests read, with placeholder values; not applied.
const SECRET_EXAMPLE: &str = "deploy/k8s/base/secret.example.yaml";
/// Manifests outside the kustomization on purpose: the Secrets' placeholders, and the
/// PodMonitor that needs the Prometheus Operator.
const NOT_IN_KUSTOMIZATION: [&str; 3] = [SECRET_EXAMPLE, "deploy/k8s/base/podmonitor.yaml", PROMETHEUS_RULE];
/// The alerts, an example for the Prometheus Operator (not in the kustomization).
const PROMETHEUS_RULE: &str = "deploy/k8s/base/prometheusrule.yaml";
/// The cloud overlays (rendered with `kubectl kustomize`): each sets the region once and adds
/// the NetworkPolicy with its cloud's identity endpoint.
const OVERLAYS: [(&str, Cloud); 2] =
    [("deploy/k8s/overlays/eks", Cloud::Eks), ("deploy/k8s/overlays/gke", Cloud::Gke)];
const COMPOSE: &str = "deploy/compose.yaml";
const DOCKERFILE: &str = "deploy/Dockerfile";
const DOCKERIGNORE: &str = ".dockerignore";
const DEFINITIONS: &str = "deploy/rabbitmq/definitions.json";
/// The compose broker's definitions: DEFINITIONS plus the development users' password hashes
/// and an `admin` (the production file ships no password).
const COMPOSE_DEFINITIONS: &str = "deploy/rabbitmq/compose-definitions.json";
/// The one container of the worker's pod, and the compose service that runs it.
const WORKER: &str = "asset-worker";
const COMPOSE_WORKER: &str = "worker";

/// What the worker process itself may use besides its extraction children and temp files:
/// it measured 34 MiB RSS after 140 jobs (deploy/README.md, "Sizing").
const WORKER_BASE_BYTES: u64 = 128 << 20;
const MIB: u64 = 1 << 20;

/// The libtest name of the helper below, and how the parent passes it the environment.
const LOAD_SETTINGS_TEST: &str = "deploy::load_settings_in_a_clean_process";
const CHILD_ENV: &str = "ASSET_WORKER_TEST_DEPLOY_ENV";
const CHILD_OUT: &str = "ASSET_WORKER_TEST_DEPLOY_OUT";

// ---------------------------------------------------------------------------------------------
// Reading the files

/// One YAML or JSON document, with the file it came from (relative to the repository root).
struct Doc {
    file: String,
    value: Value,
}

impl Doc {
    /// The value at `path`, or `null`.
    fn at(&self, path: &[&str]) -> &Value {
        at(&self.value, path)
    }

    /// The string at `path`; a failure names the file and the path.
    fn str_at(&self, path: &[&str]) -> &str {
        self.at(path).as_str().unwrap_or_else(|| panic!("{}: no string at {}", self.file, path.join(".")))
    }

    fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }

    fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }
}

fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    path.iter().try_fold(value, |value, key| value.get(*key)).unwrap_or(&NULL)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn yaml_docs(relative: &str) -> Vec<Doc> {
    let values: Vec<Value> =
        serde_saphyr::from_multiple(&read(relative)).unwrap_or_else(|e| panic!("{relative}: not YAML: {e}"));
    values.into_iter().map(|value| Doc { file: relative.to_owned(), value }).collect()
}

fn json_doc(relative: &str) -> Doc {
    let value = serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: not JSON: {e}"));
    Doc { file: relative.to_owned(), value }
}

/// Every file under `dir` (relative to the root), sorted.
fn files_under(dir: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![root().join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// The Kubernetes objects of deploy/k8s (every document with a `kind`).
struct Kube {
    docs: Vec<Doc>,
}

fn kube() -> Kube {
    let docs = files_under(K8S)
        .iter()
        .filter(|file| file.ends_with(".yaml") && file.as_str() != KUSTOMIZATION)
        .flat_map(|file| yaml_docs(file))
        .collect();
    Kube { docs }
}

impl Kube {
    fn find(&self, kind: &str, name: &str) -> Option<&Doc> {
        self.docs.iter().find(|doc| doc.kind() == kind && doc.name() == name)
    }

    /// The one object of `kind`.
    fn only(&self, kind: &str) -> &Doc {
        let of_kind: Vec<&Doc> = self.docs.iter().filter(|doc| doc.kind() == kind).collect();
        assert_eq!(of_kind.len(), 1, "{K8S}: expected exactly one {kind}, found {}", of_kind.len());
        of_kind[0]
    }

    fn deployment(&self) -> &Doc {
        self.only("Deployment")
    }

    /// The worker's container in the Deployment.
    fn container(&self) -> &Value {
        let deployment = self.deployment();
        let containers = deployment.at(&["spec", "template", "spec", "containers"]).as_array();
        let containers = containers.unwrap_or_else(|| panic!("{DEPLOYMENT}: no containers"));
        assert_eq!(containers.len(), 1, "{DEPLOYMENT}: one container expected (the worker)");
        assert_eq!(containers[0]["name"], WORKER, "{DEPLOYMENT}: the container is not named {WORKER}");
        &containers[0]
    }

    fn pod_spec(&self) -> &Value {
        self.deployment().at(&["spec", "template", "spec"])
    }

    /// A key of a placeholder Secret (secret.example.yaml).
    fn secret_value(&self, name: &str, key: &str, referrer: &str) -> String {
        let secret = self
            .find("Secret", name)
            .filter(|doc| doc.file == SECRET_EXAMPLE)
            .unwrap_or_else(|| panic!("{referrer}: Secret {name} is not documented in {SECRET_EXAMPLE}"));
        let value = secret.at(&["stringData", key]).as_str();
        value
            .unwrap_or_else(|| {
                panic!("{SECRET_EXAMPLE}: Secret {name} has no stringData key {key} ({referrer} reads it)")
            })
            .to_owned()
    }

    /// The worker container's environment: its ConfigMaps (`envFrom`) and `env` entries, the
    /// Secrets' values taken from secret.example.yaml.
    fn worker_env(&self) -> BTreeMap<String, String> {
        let container = self.container();
        let mut env = BTreeMap::new();
        for source in container["envFrom"].as_array().into_iter().flatten() {
            let name = source["configMapRef"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{DEPLOYMENT}: envFrom other than a configMapRef: {source}"));
            let map = self
                .find("ConfigMap", name)
                .unwrap_or_else(|| panic!("{DEPLOYMENT}: ConfigMap {name} not found"));
            let data = map.at(&["data"]).as_object().unwrap_or_else(|| panic!("{}: no data", map.file));
            for (key, value) in data {
                let value = value.as_str().unwrap_or_else(|| {
                    panic!("{}: {key} is {value}, not a string (Kubernetes refuses it)", map.file)
                });
                env.insert(key.clone(), value.to_owned());
            }
        }
        for entry in container["env"].as_array().into_iter().flatten() {
            let name =
                entry["name"].as_str().unwrap_or_else(|| panic!("{DEPLOYMENT}: env entry without name"));
            let value = if let Some(value) = entry["value"].as_str() {
                value.to_owned()
            } else if let Some(secret) = entry["valueFrom"]["secretKeyRef"].as_object() {
                let (secret, key) = (secret["name"].as_str().unwrap(), secret["key"].as_str().unwrap());
                self.secret_value(secret, key, DEPLOYMENT)
            } else {
                panic!("{DEPLOYMENT}: env {name} is neither a value nor a secretKeyRef")
            };
            assert!(
                env.insert(name.to_owned(), value).is_none(),
                "{DEPLOYMENT}: {name} is set both by a ConfigMap and in env"
            );
        }
        env
    }
}

/// The compose file, and its worker service.
struct Compose {
    doc: Doc,
}

fn compose() -> Compose {
    let mut docs = yaml_docs(COMPOSE);
    assert_eq!(docs.len(), 1, "{COMPOSE}: one document expected");
    Compose { doc: docs.remove(0) }
}

impl Compose {
    fn service(&self, name: &str) -> &Value {
        let service = self.doc.at(&["services", name]);
        assert!(service.is_object(), "{COMPOSE}: no service {name}");
        service
    }

    fn worker(&self) -> &Value {
        self.service(COMPOSE_WORKER)
    }

    /// The worker service's `environment` (a map or a list of KEY=VALUE).
    fn worker_env(&self) -> BTreeMap<String, String> {
        let environment = &self.worker()["environment"];
        let scalar = |key: &str, value: &Value| match value {
            Value::String(text) => text.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            _ => panic!("{COMPOSE}: {key} of the worker is {value}"),
        };
        match environment {
            Value::Object(map) => map.iter().map(|(key, value)| (key.clone(), scalar(key, value))).collect(),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    let item = item.as_str().unwrap_or_else(|| panic!("{COMPOSE}: environment item {item}"));
                    let (key, value) = item.split_once('=').unwrap_or((item, ""));
                    (key.to_owned(), value.to_owned())
                })
                .collect(),
            _ => panic!("{COMPOSE}: the worker has no environment"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The settings a manifest gives the worker, as `Settings::load` reads them

/// The settings of `env`, loaded by `Settings::load` in a process whose environment is
/// exactly `env` (see the module doc); a refusal fails the test, naming `origin`.
fn settings_of(origin: &str, env: &BTreeMap<String, String>) -> Value {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([LOAD_SETTINGS_TEST, "--exact", "--ignored", "--test-threads=1", "--quiet"])
        .env_clear()
        .env(CHILD_ENV, serde_json::to_string(env).unwrap())
        .env(CHILD_OUT, out.path())
        .output()
        .unwrap();
    let answer: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path()).unwrap()).unwrap_or_else(|e| {
            panic!(
                "the settings helper answered nothing ({e}):\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
    if let Some(refusal) = answer["refused"].as_str() {
        panic!("{origin}: the worker would refuse to start: {refusal}");
    }
    answer["settings"].clone()
}

/// Not a test on its own: the process [`settings_of`] starts. Loads settings from the
/// environment it was handed, inside figment's `Jail` (which clears the rest), and writes
/// them, or the refusal, where it was told.
#[test]
#[ignore = "a helper process of the deploy tests, started by settings_of"]
#[allow(clippy::result_large_err)] // `Jail` closures return figment's error type: its API.
fn load_settings_in_a_clean_process() {
    let (Ok(env), Ok(out)) = (std::env::var(CHILD_ENV), std::env::var(CHILD_OUT)) else {
        eprintln!("nothing to do: deploy::settings_of runs this with an environment to load");
        return;
    };
    let env: BTreeMap<String, String> = serde_json::from_str(&env).unwrap();
    let mut answer = Value::Null;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (key, value) in &env {
            jail.set_env(key, value);
        }
        answer = match Settings::load(None) {
            Ok(settings) => {
                // What the worker runs with where a setting unset is derived from others.
                let mut resolved = json!(settings);
                resolved["pool_size"] = json!(settings.pool_size());
                resolved["memory_budget_mb"] = json!(settings.memory_budget_mb());
                resolved["fetch_budget_mb"] = json!(settings.fetch_budget_mb());
                json!({ "settings": resolved })
            }
            Err(error) => json!({ "refused": error.to_string() }),
        };
        Ok(())
    });
    std::fs::write(out, answer.to_string()).unwrap();
}

fn kube_settings() -> &'static Value {
    static SETTINGS: OnceLock<Value> = OnceLock::new();
    SETTINGS.get_or_init(|| settings_of(&format!("{DEPLOYMENT} with its ConfigMap"), &kube().worker_env()))
}

fn compose_settings() -> &'static Value {
    static SETTINGS: OnceLock<Value> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        settings_of(&format!("{COMPOSE} (service {COMPOSE_WORKER})"), &compose().worker_env())
    })
}

fn u64_setting(settings: &Value, name: &str) -> u64 {
    settings[name].as_u64().unwrap_or_else(|| panic!("setting {name} is {}", settings[name]))
}

fn str_setting<'a>(settings: &'a Value, name: &str) -> &'a str {
    settings[name].as_str().unwrap_or_else(|| panic!("setting {name} is {}", settings[name]))
}

fn http_port(settings: &Value) -> u16 {
    str_setting(settings, "http_addr").parse::<SocketAddr>().unwrap().port()
}

/// The most memory one worker may need: itself, its parser children at their address-space
/// caps (the memory budget they share), and the temp dir (memory-backed) as large as it may
/// grow. Objects held in the worker's memory share the fetch budget with the temp dir, so a
/// temp dir of at least the budget covers both.
fn worst_case_memory(settings: &Value, temp_dir_bytes: u64) -> u64 {
    WORKER_BASE_BYTES + u64_setting(settings, "memory_budget_mb") * MIB + temp_dir_bytes
}

/// The temp dir must hold the fetch budget: the most fetched bytes all jobs hold at once.
fn least_temp_dir(settings: &Value) -> u64 {
    u64_setting(settings, "fetch_budget_mb") * MIB
}

// ---------------------------------------------------------------------------------------------
// Units of Kubernetes and Docker

/// A Kubernetes quantity ("3328Mi", "1Gi", "2", "500m") in its base unit.
fn quantity(file: &str, value: &Value) -> f64 {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Ei", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("m", 1e-3),
    ];
    let text = match value {
        Value::Number(number) => return number.as_f64().unwrap(),
        Value::String(text) => text.as_str(),
        _ => panic!("{file}: {value} is not a quantity"),
    };
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|number| (number, *factor)))
        .unwrap_or((text, 1.0));
    number.parse::<f64>().unwrap_or_else(|_| panic!("{file}: {text:?} is not a quantity")) * factor
}

/// A Docker size ("3328m", "1g", "512k", bytes): binary units, as Docker reads them.
fn docker_bytes(file: &str, value: &Value) -> u64 {
    let text = match value {
        Value::Number(number) => return number.as_u64().unwrap(),
        Value::String(text) => text.to_ascii_lowercase(),
        _ => panic!("{file}: {value} is not a size"),
    };
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (number, shift) = match text.chars().last() {
        Some('k') => (&text[..text.len() - 1], 10),
        Some('m') => (&text[..text.len() - 1], 20),
        Some('g') => (&text[..text.len() - 1], 30),
        Some('t') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    number.parse::<u64>().unwrap_or_else(|_| panic!("{file}: {value} is not a size")) << shift
}

/// A compose duration ("60s", "1m30s", "1m") in seconds.
fn compose_seconds(file: &str, text: &str) -> u64 {
    let mut seconds = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("{file}: {text:?} is not a duration"));
        seconds += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => panic!("{file}: {text:?} is not a duration in h/m/s"),
        };
        number.clear();
    }
    assert!(number.is_empty(), "{file}: {text:?} has no unit");
    seconds
}

// ---------------------------------------------------------------------------------------------
// The files themselves

#[test]
fn every_manifest_parses_and_the_kubernetes_ones_are_namespace_agnostic() {
    let files = files_under("deploy");
    for expected in [DOCKERFILE, COMPOSE, DEFINITIONS, DEPLOYMENT, KUSTOMIZATION, SECRET_EXAMPLE] {
        assert!(files.iter().any(|file| file == expected), "{expected} is missing");
    }
    for file in &files {
        if file.ends_with(".json") {
            json_doc(file);
        } else if file.ends_with(".yaml") || file.ends_with(".yml") {
            for doc in yaml_docs(file) {
                // Every Kubernetes object: the base's, the components' and the overlays'.
                if doc.at(&["kind"]).is_string()
                    && file.starts_with("deploy/k8s/")
                    && !file.ends_with("/kustomization.yaml")
                {
                    assert!(
                        doc.at(&["apiVersion"]).is_string(),
                        "{file}: a {} without apiVersion",
                        doc.kind()
                    );
                    assert!(!doc.name().is_empty(), "{file}: a {} without a name", doc.kind());
                    assert!(
                        doc.at(&["metadata", "namespace"]).is_null(),
                        "{file}: {} {} names a namespace; the manifests go where they are applied",
                        doc.kind(),
                        doc.name()
                    );
                }
            }
        }
    }

    // The kustomization applies every manifest but the deliberate exceptions, and only
    // files that exist.
    let kustomization = &yaml_docs(KUSTOMIZATION)[0];
    assert!(kustomization.at(&["namespace"]).is_null(), "{KUSTOMIZATION}: sets a namespace");
    let listed: BTreeSet<String> = kustomization
        .at(&["resources"])
        .as_array()
        .unwrap_or_else(|| panic!("{KUSTOMIZATION}: no resources"))
        .iter()
        .map(|resource| format!("{K8S}/{}", resource.as_str().unwrap()))
        .collect();
    let manifests: BTreeSet<String> = files_under(K8S)
        .into_iter()
        .filter(|file| {
            file.ends_with(".yaml") && file != KUSTOMIZATION && !NOT_IN_KUSTOMIZATION.contains(&file.as_str())
        })
        .collect();
    assert_eq!(listed, manifests, "{KUSTOMIZATION}: resources differ from the manifests in {K8S}");
}

// ---------------------------------------------------------------------------------------------
// Settings, ports, probes, shutdown

#[test]
fn every_setting_in_the_manifests_is_one_the_worker_accepts() {
    let kube_env = kube().worker_env();
    let compose_env = compose().worker_env();
    for (origin, env) in [(DEPLOYMENT, &kube_env), (COMPOSE, &compose_env)] {
        let names: Vec<&String> = env.keys().filter(|name| name.starts_with("ASSET_WORKER_")).collect();
        assert!(names.len() >= 5, "{origin}: only {names:?} set; the worker's settings are missing");
    }
    // Loaded by Settings::load, which refuses unknown names and bad values.
    let kube_settings = kube_settings();
    let compose_settings = compose_settings();
    assert!(
        str_setting(kube_settings, "amqp_url").starts_with("amqp"),
        "{SECRET_EXAMPLE}: the AMQP URL placeholder is not an amqp(s):// URL"
    );
    // The local stack runs the settings production runs, under the same names.
    let missing: Vec<&String> = kube_env
        .keys()
        .filter(|name| name.starts_with("ASSET_WORKER_") && !compose_env.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "{COMPOSE}: the worker lacks {missing:?}, which {DEPLOYMENT} sets");
    assert_eq!(
        str_setting(kube_settings, "region"),
        str_setting(compose_settings, "region"),
        "{COMPOSE} and {DEPLOYMENT}: different regions"
    );
}

#[test]
fn ports_and_probes_are_the_telemetry_endpoints() {
    let kube = kube();
    let port = http_port(kube_settings());
    let container = kube.container();
    let ports = container["ports"].as_array().unwrap_or_else(|| panic!("{DEPLOYMENT}: no container ports"));
    let named = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(u64::from(port)))
        .unwrap_or_else(|| panic!("{DEPLOYMENT}: no container port {port} (ASSET_WORKER_HTTP_ADDR)"));
    let port_name = named["name"].as_str().unwrap_or_else(|| panic!("{DEPLOYMENT}: port {port} has no name"));
    for (probe, path) in [("livenessProbe", HEALTHZ_PATH), ("readinessProbe", READYZ_PATH)] {
        let get = &container[probe]["httpGet"];
        assert_eq!(
            get["path"], path,
            "{DEPLOYMENT}: {probe} path is {}, the worker serves {path}",
            get["path"]
        );
        let probe_port = &get["port"];
        assert!(
            *probe_port == port_name || probe_port.as_u64() == Some(u64::from(port)),
            "{DEPLOYMENT}: {probe} port is {probe_port}, the worker listens on {port} ({port_name})"
        );
    }
    let annotations = kube.deployment().at(&["spec", "template", "metadata", "annotations"]);
    assert_eq!(annotations["prometheus.io/scrape"], "true", "{DEPLOYMENT}: not marked for scraping");
    assert_eq!(annotations["prometheus.io/port"], port.to_string(), "{DEPLOYMENT}: prometheus.io/port");
    assert_eq!(annotations["prometheus.io/path"], METRICS_PATH, "{DEPLOYMENT}: prometheus.io/path");
    let monitor = kube.only("PodMonitor");
    let endpoints = monitor.at(&["spec", "podMetricsEndpoints"]);
    assert_eq!(endpoints[0]["port"], port_name, "{}: scrapes another port", monitor.file);
    assert_eq!(endpoints[0]["path"], METRICS_PATH, "{}: scrapes another path", monitor.file);
    let labels = kube.deployment().at(&["spec", "template", "metadata", "labels"]);
    assert_selects(&monitor.file, monitor.at(&["spec", "selector", "matchLabels"]), labels);

    // Compose: the published port and the healthcheck's request.
    let compose = compose();
    let port = http_port(compose_settings());
    let worker = compose.worker();
    let published = worker["ports"].as_array().into_iter().flatten().any(|mapping| {
        mapping.as_str().is_some_and(|m| m.ends_with(&format!(":{port}")))
            || mapping["target"].as_u64() == Some(u64::from(port))
    });
    assert!(published, "{COMPOSE}: the worker's port {port} is not published");
    let check = healthcheck_command(&compose, COMPOSE_WORKER);
    assert!(
        check.contains(&format!("/dev/tcp/127.0.0.1/{port}"))
            && check.contains(&format!("GET {READYZ_PATH} ")),
        "{COMPOSE}: the worker's healthcheck does not ask {READYZ_PATH} on port {port}: {check}"
    );
}

/// Every label `selector` asks for is on `labels`.
fn assert_selects(file: &str, selector: &Value, labels: &Value) {
    let selector = selector.as_object().unwrap_or_else(|| panic!("{file}: no matchLabels"));
    assert!(!selector.is_empty(), "{file}: an empty selector selects everything");
    for (key, value) in selector {
        assert_eq!(
            &labels[key], value,
            "{file}: selects {key}={value}, which the worker's pods do not carry"
        );
    }
}

/// A job in flight at SIGTERM must be able to end with an answer inside the drain: a drain
/// shorter than the job timeout hands long jobs back at every rollout, each time spending one
/// of the job's deliveries. `origin` names the file for the message.
fn assert_drain_outlasts_a_job(origin: &str, settings: &Value) {
    let drain = u64_setting(settings, "drain_timeout_seconds");
    let job = u64_setting(settings, "job_timeout_seconds");
    assert!(
        drain > job,
        "{origin}: ASSET_WORKER_DRAIN_TIMEOUT_SECONDS {drain} is not above ASSET_WORKER_JOB_TIMEOUT_SECONDS {job}: \
         a job in flight at SIGTERM would be handed back and burn a delivery"
    );
}

#[test]
fn shutdown_waits_longer_than_the_drain() {
    let kube = kube();
    assert_drain_outlasts_a_job(DEPLOYMENT, kube_settings());
    assert_drain_outlasts_a_job(COMPOSE, compose_settings());
    let drain = u64_setting(kube_settings(), "drain_timeout_seconds");
    let grace = kube.pod_spec()["terminationGracePeriodSeconds"].as_u64().unwrap_or_else(|| {
        panic!("{DEPLOYMENT}: no terminationGracePeriodSeconds (the default 30 s is no margin)")
    });
    assert!(
        grace > drain,
        "{DEPLOYMENT}: terminationGracePeriodSeconds {grace} is not above ASSET_WORKER_DRAIN_TIMEOUT_SECONDS {drain}"
    );
    let compose = compose();
    let drain = u64_setting(compose_settings(), "drain_timeout_seconds");
    let grace = compose.worker()["stop_grace_period"]
        .as_str()
        .map(|text| compose_seconds(COMPOSE, text))
        .unwrap_or_else(|| panic!("{COMPOSE}: the worker has no stop_grace_period (the default 10 s)"));
    assert!(grace > drain, "{COMPOSE}: stop_grace_period {grace}s is not above the drain timeout {drain}s");
}

// ---------------------------------------------------------------------------------------------
// The pod: hardening, temp dir, resources

#[test]
fn the_pod_runs_as_non_root_on_a_read_only_root_without_capabilities() {
    let kube = kube();
    let pod = kube.pod_spec();
    let container = kube.container();
    let either = |key: &str| {
        let value = &container["securityContext"][key];
        if value.is_null() { pod["securityContext"][key].clone() } else { value.clone() }
    };
    assert_eq!(either("runAsNonRoot"), true, "{DEPLOYMENT}: runAsNonRoot is not set");
    let uid = either("runAsUser").as_u64().unwrap_or_else(|| panic!("{DEPLOYMENT}: no numeric runAsUser"));
    assert_ne!(uid, 0, "{DEPLOYMENT}: runAsUser is root");
    assert_eq!(
        uid,
        dockerfile_user().0,
        "{DEPLOYMENT}: runAsUser differs from the image's USER ({DOCKERFILE})"
    );
    assert_eq!(
        either("seccompProfile")["type"],
        "RuntimeDefault",
        "{DEPLOYMENT}: seccomp is not RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{DEPLOYMENT}: the root filesystem is writable");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{DEPLOYMENT}: privilege escalation allowed");
    let dropped = security["capabilities"]["drop"].as_array().cloned().unwrap_or_default();
    assert!(dropped.contains(&json!("ALL")), "{DEPLOYMENT}: capabilities are not all dropped");
    assert!(security["capabilities"]["add"].is_null(), "{DEPLOYMENT}: adds capabilities");
    // A Service named like the worker would make Kubernetes inject ASSET_WORKER_SERVICE_HOST &c.,
    // which the worker refuses as unknown settings.
    assert_eq!(pod["enableServiceLinks"], false, "{DEPLOYMENT}: enableServiceLinks must be false");
    // Customers' bytes stay in the region the worker says it is in.
    let region = str_setting(kube_settings(), "region");
    assert_eq!(
        pinned_regions(pod),
        [json!([region])],
        "{DEPLOYMENT}: the pods are not pinned to region {region}"
    );

    // The service account named for cloud identity exists, with its identity annotations.
    let account =
        pod["serviceAccountName"].as_str().unwrap_or_else(|| panic!("{DEPLOYMENT}: no serviceAccountName"));
    let account = kube
        .find("ServiceAccount", account)
        .unwrap_or_else(|| panic!("{DEPLOYMENT}: ServiceAccount {account} is not among the manifests"));
    for annotation in ["eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account"] {
        assert!(
            account.at(&["metadata", "annotations", annotation]).is_string(),
            "{}: no {annotation}",
            account.file
        );
    }

    // Compose: the same hardening.
    let compose = compose();
    let worker = compose.worker();
    assert_eq!(worker["read_only"], true, "{COMPOSE}: the worker's root filesystem is writable");
    assert!(
        worker["cap_drop"].as_array().is_some_and(|caps| caps.contains(&json!("ALL"))),
        "{COMPOSE}: the worker keeps capabilities"
    );
    assert!(worker["user"].is_null() || worker["user"] != "root", "{COMPOSE}: the worker runs as root");
}

#[test]
fn the_temp_dir_is_in_memory_and_memory_holds_the_worst_case() {
    let kube = kube();
    let settings = kube_settings();
    let temp_dir = str_setting(settings, "temp_dir");
    let container = kube.container();
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|mount| mount["mountPath"] == temp_dir)
        .unwrap_or_else(|| panic!("{DEPLOYMENT}: nothing is mounted at ASSET_WORKER_TEMP_DIR {temp_dir}"));
    let volume = kube.pod_spec()["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|volume| volume["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{DEPLOYMENT}: volume {} is not defined", mount["name"]));
    let empty_dir = &volume["emptyDir"];
    assert_eq!(
        empty_dir["medium"], "Memory",
        "{DEPLOYMENT}: the temp dir {temp_dir} is not a memory-backed emptyDir"
    );
    // The worker refuses a budget below POOL_SIZE x MAX_FETCH_BYTES + CONCURRENCY x 1 MiB
    // (settings_of would have failed): the temp dir must hold it.
    let budget = least_temp_dir(settings);
    let size = quantity(DEPLOYMENT, &empty_dir["sizeLimit"]) as u64;
    assert!(
        size >= budget,
        "{DEPLOYMENT}: the temp dir's sizeLimit ({} MiB) is below FETCH_BUDGET_MB ({} MiB)",
        size / MIB,
        budget / MIB
    );
    let limits = &container["resources"]["limits"];
    let requests = &container["resources"]["requests"];
    let memory = quantity(DEPLOYMENT, &limits["memory"]) as u64;
    let needed = worst_case_memory(settings, size);
    assert!(
        memory >= needed,
        "{DEPLOYMENT}: the memory limit ({} MiB) is below base + MEMORY_BUDGET_MB + FETCH_BUDGET_MB ({} MiB)",
        memory / MIB,
        needed / MIB
    );
    for resource in ["cpu", "memory"] {
        let (request, limit) =
            (quantity(DEPLOYMENT, &requests[resource]), quantity(DEPLOYMENT, &limits[resource]));
        assert!(
            request > 0.0 && request <= limit,
            "{DEPLOYMENT}: {resource} request {request} vs limit {limit}"
        );
    }

    // Compose: a tmpfs at the temp dir, and a memory limit that holds the same worst case.
    let compose = compose();
    let settings = compose_settings();
    let temp_dir = str_setting(settings, "temp_dir");
    let tmpfs = compose.worker()["tmpfs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|entry| entry.split(':').next() == Some(temp_dir))
        .unwrap_or_else(|| panic!("{COMPOSE}: no tmpfs at ASSET_WORKER_TEMP_DIR {temp_dir}"));
    let size = tmpfs
        .split_once(':')
        .and_then(|(_, options)| options.split(',').find_map(|option| option.strip_prefix("size=")))
        .map(|size| docker_bytes(COMPOSE, &json!(size)))
        .unwrap_or_else(|| {
            panic!("{COMPOSE}: the tmpfs at {temp_dir} has no size (it would be half the host's memory)")
        });
    assert!(size >= least_temp_dir(settings), "{COMPOSE}: the tmpfs is smaller than FETCH_BUDGET_MB");
    let memory = docker_bytes(COMPOSE, &compose.worker()["mem_limit"]);
    assert!(
        memory >= worst_case_memory(settings, size),
        "{COMPOSE}: mem_limit ({} MiB) is below the worst case ({} MiB)",
        memory / MIB,
        worst_case_memory(settings, size) / MIB
    );
}

#[test]
fn the_disruption_budget_covers_the_workers() {
    let kube = kube();
    let pdb = kube.only("PodDisruptionBudget");
    let labels = kube.deployment().at(&["spec", "template", "metadata", "labels"]);
    assert_selects(&pdb.file, pdb.at(&["spec", "selector", "matchLabels"]), labels);
    assert_selects(DEPLOYMENT, kube.deployment().at(&["spec", "selector", "matchLabels"]), labels);
    assert!(
        pdb.at(&["spec", "minAvailable"]).is_null(),
        "{}: minAvailable blocks every drain while KEDA runs a single replica; use maxUnavailable",
        pdb.file
    );
    assert!(!pdb.at(&["spec", "maxUnavailable"]).is_null(), "{}: no maxUnavailable", pdb.file);
}

// ---------------------------------------------------------------------------------------------
// Autoscaling

#[test]
fn keda_scales_on_the_process_queue_counting_unacked_jobs() {
    let kube = kube();
    let settings = kube_settings();
    let scaled = kube.only("ScaledObject");
    let file = &scaled.file;
    assert_eq!(
        scaled.str_at(&["spec", "scaleTargetRef", "name"]),
        kube.deployment().name(),
        "{file}: scales another object"
    );
    let triggers =
        scaled.at(&["spec", "triggers"]).as_array().unwrap_or_else(|| panic!("{file}: no triggers"));
    assert_eq!(triggers.len(), 1, "{file}: one trigger expected");
    let trigger = &triggers[0];
    let metadata = &trigger["metadata"];
    assert_eq!(trigger["type"], "rabbitmq", "{file}: not the rabbitmq scaler");
    let queue = Names::new(str_setting(settings, "queue_prefix")).process;
    assert_eq!(
        metadata["queueName"], queue,
        "{file}: scales on {}, the worker consumes {queue}",
        metadata["queueName"]
    );
    assert_eq!(metadata["mode"], "QueueLength", "{file}: mode");
    // Only the management API (http) counts unacknowledged messages, and only while
    // excludeUnacknowledged is false: jobs in workers' hands must count as load.
    assert_eq!(metadata["protocol"], "http", "{file}: over AMQP the jobs in flight are not counted");
    assert_eq!(metadata["excludeUnacknowledged"], "false", "{file}: excludeUnacknowledged must be \"false\"");
    // Each replica holds CONCURRENCY unacked jobs: a target at or below that keeps scaling a
    // busy fleet out even when nothing waits.
    let value: f64 = metadata["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{file}: value is {}, not a number in a string", metadata["value"]));
    let concurrency = u64_setting(settings, "concurrency");
    assert!(
        value > concurrency as f64,
        "{file}: value {value} is not above ASSET_WORKER_CONCURRENCY {concurrency}"
    );
    let min = scaled.at(&["spec", "minReplicaCount"]).as_u64().unwrap_or(0);
    let max = scaled
        .at(&["spec", "maxReplicaCount"])
        .as_u64()
        .unwrap_or_else(|| panic!("{file}: no maxReplicaCount"));
    assert!(min <= max && max > 0, "{file}: replicas {min}..{max}");
    assert!(
        kube.deployment().at(&["spec", "replicas"]).is_null(),
        "{DEPLOYMENT}: sets replicas, which fights KEDA's HPA on every apply"
    );

    // The TriggerAuthentication and its Secret: the management API of the worker's vhost, as
    // a monitoring-only user of the definitions.
    let auth_name = trigger["authenticationRef"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{file}: no authenticationRef"));
    let auth = kube
        .find("TriggerAuthentication", auth_name)
        .unwrap_or_else(|| panic!("{file}: TriggerAuthentication {auth_name} not found"));
    let mut params = BTreeMap::new();
    for reference in auth.at(&["spec", "secretTargetRef"]).as_array().into_iter().flatten() {
        let (parameter, secret, key) = (
            reference["parameter"].as_str().unwrap(),
            reference["name"].as_str().unwrap(),
            reference["key"].as_str().unwrap(),
        );
        params.insert(parameter.to_owned(), kube.secret_value(secret, key, &auth.file));
    }
    let host = params.get("host").unwrap_or_else(|| panic!("{}: no host parameter", auth.file));
    let url = reqwest::Url::parse(host).unwrap_or_else(|e| panic!("{SECRET_EXAMPLE}: KEDA host {host}: {e}"));
    assert!(
        url.scheme() == "https",
        "{SECRET_EXAMPLE}: the KEDA host is not the management API over TLS (https): its password would cross the network in clear"
    );
    let definitions = definitions();
    let vhost = definitions_vhost(&definitions);
    assert_eq!(
        url.path().trim_matches('/'),
        vhost,
        "{SECRET_EXAMPLE}: KEDA looks in another vhost than {DEFINITIONS}'s"
    );
    let user = params.get("username").unwrap_or_else(|| panic!("{}: no username parameter", auth.file));
    let keda = definitions_user(&definitions, user);
    assert!(
        keda["tags"].as_array().is_some_and(|t| t.contains(&json!("monitoring"))),
        "{DEFINITIONS}: {user} is not a monitoring user"
    );
    let permission = definitions_permission(&definitions, user, vhost);
    for right in ["configure", "write", "read"] {
        assert_eq!(
            permission[right], "^$",
            "{DEFINITIONS}: {user} needs no {right} right to read queue lengths"
        );
    }
    // And the worker's AMQP URL points at the same vhost.
    let amqp_url: AMQPUri = str_setting(settings, "amqp_url").parse().unwrap();
    assert_eq!(amqp_url.vhost, vhost, "{SECRET_EXAMPLE}: the worker's AMQP URL is for another vhost");
}

// ---------------------------------------------------------------------------------------------
// The cloud overlays: region and network

/// The cloud an overlay targets: what its workload identity needs from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cloud {
    /// IRSA (token file + STS over 443) or EKS Pod Identity (its node agent); never the
    /// instance metadata service, which hands out the node's role.
    Eks,
    /// Workload Identity, served by the GKE metadata server at the metadata address.
    Gke,
}

/// The cloud metadata address (AWS IMDS, GCE/GKE metadata server).
const METADATA: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);
/// EKS Pod Identity's node agent.
const EKS_POD_IDENTITY_AGENT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 170, 23);
/// An address of a public cloud API or bucket (S3 in eu-central-1).
const PUBLIC_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(52, 219, 170, 1);

/// An overlay as `kubectl kustomize` renders it (what `kubectl apply -k` sends), with the
/// placeholder Secrets of the base beside it.
fn rendered(overlay: &str) -> Kube {
    let output = Command::new("kubectl")
        .args(["kustomize", root().join(overlay).to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| panic!("kubectl (its built-in kustomize renders {overlay}): {e}"));
    assert!(
        output.status.success(),
        "{overlay}: kubectl kustomize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let values: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{overlay}: rendered YAML: {e}"));
    let mut docs: Vec<Doc> =
        values.into_iter().map(|value| Doc { file: overlay.to_owned(), value }).collect();
    docs.extend(yaml_docs(SECRET_EXAMPLE));
    Kube { docs }
}

/// The region values the pod's required node affinity allows, if every term pins one.
fn pinned_regions(pod: &Value) -> Vec<Value> {
    let terms = at(
        pod,
        &["affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"],
    );
    terms
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|term| term["matchExpressions"].as_array().into_iter().flatten())
        .filter(|e| e["key"] == "topology.kubernetes.io/region" && e["operator"] == "In")
        .map(|e| e["values"].clone())
        .collect()
}

/// An IPv4 CIDR ("10.0.0.0/8") as (network, prefix length); `None` for IPv6.
fn ipv4_cidr(file: &str, cidr: &str) -> Option<(u32, u32)> {
    let (address, length) = cidr.split_once('/').unwrap_or_else(|| panic!("{file}: {cidr} is not a CIDR"));
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    Some((u32::from(address), length.parse().unwrap_or_else(|_| panic!("{file}: {cidr}"))))
}

fn in_cidr(file: &str, cidr: &str, ip: std::net::Ipv4Addr) -> bool {
    ipv4_cidr(file, cidr).is_some_and(|(network, length)| {
        let mask = if length == 0 { 0 } else { u32::MAX << (32 - length) };
        u32::from(ip) & mask == network & mask
    })
}

/// Whether the NetworkPolicy lets the worker open a TCP connection to `ip`:`port` outside the
/// cluster's pods (ipBlocks, or a rule with no `to` at all).
fn egress_allows(policy: &Doc, ip: std::net::Ipv4Addr, port: u16) -> bool {
    policy.at(&["spec", "egress"]).as_array().into_iter().flatten().any(|rule| {
        let ports = rule["ports"].as_array().cloned().unwrap_or_default();
        let port_ok = ports.is_empty()
            || ports.iter().any(|p| {
                p["port"].as_u64() == Some(u64::from(port))
                    && p["protocol"].as_str().unwrap_or("TCP") == "TCP"
            });
        let peers = rule["to"].as_array().cloned().unwrap_or_default();
        let peer_ok = peers.is_empty()
            || peers.iter().any(|peer| {
                let block = &peer["ipBlock"];
                block["cidr"].as_str().is_some_and(|cidr| in_cidr(&policy.file, cidr, ip))
                    && !block["except"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|except| in_cidr(&policy.file, except.as_str().unwrap(), ip))
            });
        port_ok && peer_ok
    })
}

#[test]
fn each_cloud_overlay_pins_its_region_and_fences_the_network() {
    let secret_url: AMQPUri =
        kube().secret_value("asset-worker-amqp", "url", SECRET_EXAMPLE).parse().unwrap();
    for (overlay, cloud) in OVERLAYS {
        let kube = rendered(overlay);
        let settings = settings_of(overlay, &kube.worker_env());
        let pod = kube.pod_spec();

        // Region: the processing region is the one the nodes are pinned to; on GKE, STS is
        // called in an AWS region of its own (Settings::load refused a non-AWS one already).
        let region = str_setting(&settings, "region");
        assert_eq!(pinned_regions(pod), [json!([region])], "{overlay}: the pods are not pinned to {region}");
        let aws_region = settings["aws_region"].as_str();
        match cloud {
            Cloud::Eks => assert!(
                aws_region.is_none_or(|aws| aws == region),
                "{overlay}: on EKS the AWS region is the region the nodes are in"
            ),
            Cloud::Gke => assert!(
                aws_region.is_some_and(|aws| aws != region),
                "{overlay}: a GKE region ({region}) needs ASSET_WORKER_AWS_REGION for STS"
            ),
        }

        // Shutdown: a job in flight ends within the drain, the drain within the grace period.
        assert_drain_outlasts_a_job(overlay, &settings);
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        let drain = u64_setting(&settings, "drain_timeout_seconds");
        assert!(
            grace > drain,
            "{overlay}: terminationGracePeriodSeconds {grace} is not above the drain {drain}"
        );

        // NetworkPolicy: selects the worker, both directions.
        let policy = kube.only("NetworkPolicy");
        let labels = kube.deployment().at(&["spec", "template", "metadata", "labels"]);
        assert_selects(overlay, policy.at(&["spec", "podSelector", "matchLabels"]), labels);
        assert_eq!(
            policy.at(&["spec", "policyTypes"]),
            &json!(["Ingress", "Egress"]),
            "{overlay}: the NetworkPolicy must restrict both directions"
        );
        // Ingress: the metrics port only, from the monitoring namespace only.
        let port = http_port(&settings);
        let ingress = policy.at(&["spec", "ingress"]).as_array().cloned().unwrap_or_default();
        assert_eq!(ingress.len(), 1, "{overlay}: one ingress rule expected (metrics)");
        assert_eq!(
            ingress[0]["ports"],
            json!([{"port": port, "protocol": "TCP"}]),
            "{overlay}: ingress ports"
        );
        assert_eq!(
            ingress[0]["from"],
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]),
            "{overlay}: ingress from elsewhere than the monitoring namespace"
        );
        // Egress: DNS, the broker's namespace on the AMQP URL's port, 443 anywhere public, and
        // the metadata address only where the cloud's identity needs it.
        let egress = policy.at(&["spec", "egress"]).as_array().cloned().unwrap_or_default();
        let broker_namespace = secret_url.authority.host.split('.').nth(1).unwrap_or_default();
        let broker = egress.iter().any(|rule| {
            rule["to"].as_array().into_iter().flatten().any(|peer| {
                peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == broker_namespace
            }) && rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["port"].as_u64() == Some(u64::from(secret_url.authority.port)))
        });
        assert!(broker, "{overlay}: no egress to the broker ({SECRET_EXAMPLE}'s AMQP URL)");
        let dns = egress.iter().any(|rule| {
            ["UDP", "TCP"].iter().all(|protocol| {
                rule["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p["port"] == 53 && p["protocol"] == *protocol)
            })
        });
        assert!(dns, "{overlay}: no egress to DNS (53 over UDP and TCP)");
        assert!(egress_allows(policy, PUBLIC_ADDRESS, 443), "{overlay}: no HTTPS to cloud APIs and buckets");
        assert!(!egress_allows(policy, PUBLIC_ADDRESS, 80), "{overlay}: plain HTTP to the internet allowed");
        for rule in &egress {
            for p in rule["ports"].as_array().into_iter().flatten() {
                let allowed = [53, 443, 5671, 5672, 80, 988];
                assert!(
                    p["port"].as_u64().is_some_and(|port| allowed.contains(&port)),
                    "{overlay}: egress to port {} is more than the worker needs",
                    p["port"]
                );
            }
        }
        match cloud {
            Cloud::Eks => {
                for port in [80, 443] {
                    assert!(
                        !egress_allows(policy, METADATA, port),
                        "{overlay}: the instance metadata service is reachable on {port} (the node's role)"
                    );
                }
                assert!(
                    egress_allows(policy, EKS_POD_IDENTITY_AGENT, 80),
                    "{overlay}: EKS Pod Identity's agent is not reachable"
                );
            }
            Cloud::Gke => assert!(
                egress_allows(policy, METADATA, 80),
                "{overlay}: Workload Identity needs the metadata server"
            ),
        }
    }
}

/// The alerts read metrics the worker exports, outcomes it reports and the broker's name for
/// the dead-letter queue.
#[test]
fn the_alerts_watch_what_the_worker_exports() {
    use asset_worker::telemetry::metric;
    let rules = yaml_docs(PROMETHEUS_RULE);
    let rule = &rules[0];
    let alerts: BTreeMap<&str, &str> = rule
        .at(&["spec", "groups"])
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .map(|r| (r["alert"].as_str().unwrap(), r["expr"].as_str().unwrap()))
        .collect();
    let names = Names::new(str_setting(kube_settings(), "queue_prefix"));
    let vhost = definitions_vhost(&definitions()).to_owned();
    let expect = |alert: &str, needles: &[&str]| {
        let expr = alerts.get(alert).unwrap_or_else(|| panic!("{PROMETHEUS_RULE}: no alert {alert}"));
        for needle in needles {
            assert!(expr.contains(needle), "{PROMETHEUS_RULE}: {alert} does not use {needle}: {expr}");
        }
    };
    let dead = format!("queue=\"{}\"", names.dead_letter_queue);
    let vhost = format!("vhost=\"{vhost}\"");
    expect("AssetWorkerDeadLettersGrowing", &[&dead, &vhost]);
    let outcomes = format!(
        "outcome=~\"{}|{}\"",
        asset_worker::job::ErrorKind::Internal.as_str(),
        asset_worker::job::ErrorKind::Timeout.as_str()
    );
    expect("AssetWorkerJobsFailing", &[metric::JOBS, &outcomes]);
    expect("AssetWorkerNoReadyReplica", &[metric::READY]);
    expect("AssetWorkerBrokerReconnectsFlapping", &[metric::RECONNECTS]);
    expect("AssetWorkerFetchBudgetStarved", &[metric::FETCH_BUDGET_STARVED]);
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ definitions

fn definitions() -> Doc {
    json_doc(DEFINITIONS)
}

/// The one vhost the definitions declare; every object in them belongs to it.
fn definitions_vhost(definitions: &Doc) -> &str {
    let vhosts = definitions.at(&["vhosts"]).as_array().unwrap_or_else(|| panic!("{DEFINITIONS}: no vhosts"));
    assert_eq!(vhosts.len(), 1, "{DEFINITIONS}: one vhost expected");
    vhosts[0]["name"].as_str().unwrap()
}

fn definitions_user<'a>(definitions: &'a Doc, name: &str) -> &'a Value {
    let users = definitions.at(&["users"]).as_array().into_iter().flatten();
    users
        .into_iter()
        .find(|user| user["name"] == name)
        .unwrap_or_else(|| panic!("{DEFINITIONS}: no user {name}"))
}

fn definitions_permission<'a>(definitions: &'a Doc, user: &str, vhost: &str) -> &'a Value {
    let permissions = definitions.at(&["permissions"]).as_array().into_iter().flatten();
    let mut found = permissions.into_iter().filter(|p| p["user"] == user && p["vhost"] == vhost);
    let permission =
        found.next().unwrap_or_else(|| panic!("{DEFINITIONS}: {user} has no permissions on {vhost}"));
    assert!(found.next().is_none(), "{DEFINITIONS}: {user} has two permission entries on {vhost}");
    permission
}

/// Whether `password` is the one behind a RabbitMQ `rabbit_password_hashing_sha256` hash:
/// base64 of a 4-byte salt followed by SHA-256(salt ++ password).
fn password_matches(user: &Value, password: &str) -> bool {
    assert_eq!(
        user["hashing_algorithm"], "rabbit_password_hashing_sha256",
        "{DEFINITIONS}: {}",
        user["name"]
    );
    let hash =
        base64::engine::general_purpose::STANDARD.decode(user["password_hash"].as_str().unwrap()).unwrap();
    let (salt, digest) = hash.split_at(4);
    Sha256::new().chain_update(salt).chain_update(password).finalize().as_slice() == digest
}

/// An anchored alternation of `names`, the form the worker's permissions take.
fn names_pattern(names: &[&str]) -> String {
    let names: BTreeSet<String> = names.iter().map(|name| name.replace('.', "\\.")).collect();
    format!("^({})$", names.into_iter().collect::<Vec<_>>().join("|"))
}

#[test]
fn the_definitions_declare_what_the_topology_code_declares() {
    let definitions = definitions();
    let vhost = definitions_vhost(&definitions);
    let settings = kube_settings();
    let names = Names::new(str_setting(settings, "queue_prefix"));
    let delivery_limit = u64_setting(settings, "delivery_limit");
    for kind in ["queues", "exchanges", "bindings"] {
        for object in definitions.at(&[kind]).as_array().into_iter().flatten() {
            assert_eq!(object["vhost"], vhost, "{DEFINITIONS}: {kind} entry {object} is in another vhost");
        }
    }

    // Queues: quorum, durable; the process queue with its delivery limit and dead-letter exchange.
    // The signing queue: classic, its requests expiring. The retry queues: one per default delay, expiring back into the process queue.
    let quorum = json!({"x-queue-type": "quorum"});
    let retry_queues: Vec<(String, Value)> = Settings::default()
        .retry_delays_seconds
        .iter()
        .map(|delay| {
            let arguments = json!({
                "x-queue-type": "quorum",
                "x-message-ttl": delay * 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.process,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            });
            (names.retry_queue(*delay), arguments)
        })
        .collect();
    let mut expected: BTreeMap<&str, Value> = [
        (
            names.process.as_str(),
            json!({
                "x-queue-type": "quorum",
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": names.dead_letter_exchange,
            }),
        ),
        (names.dead_letter_queue.as_str(), quorum.clone()),
        (names.results_queue.as_str(), quorum),
        (
            names.sign.as_str(),
            json!({"x-queue-type": "classic", "x-message-ttl": asset_worker::queue::topology::SIGN_REQUEST_TTL_MS}),
        ),
    ]
    .into();
    expected.extend(retry_queues.iter().map(|(name, arguments)| (name.as_str(), arguments.clone())));
    let queues = definitions.at(&["queues"]).as_array().unwrap_or_else(|| panic!("{DEFINITIONS}: no queues"));
    let declared: BTreeSet<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(
        declared,
        expected.keys().copied().collect(),
        "{DEFINITIONS}: queues differ from topology.rs's"
    );
    for queue in queues {
        let name = queue["name"].as_str().unwrap();
        assert_eq!(queue["durable"], true, "{DEFINITIONS}: queue {name} is not durable");
        assert_eq!(queue["auto_delete"], false, "{DEFINITIONS}: queue {name} is auto-delete");
        assert_eq!(queue["arguments"], expected[name], "{DEFINITIONS}: arguments of queue {name}");
    }

    // Exchanges: fanout, durable.
    let exchanges =
        definitions.at(&["exchanges"]).as_array().unwrap_or_else(|| panic!("{DEFINITIONS}: no exchanges"));
    let declared: BTreeSet<&str> = exchanges.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> =
        [names.dead_letter_exchange.as_str(), names.results_exchange.as_str()].into();
    assert_eq!(declared, expected, "{DEFINITIONS}: exchanges differ from topology.rs's");
    for exchange in exchanges {
        let name = exchange["name"].as_str().unwrap();
        assert_eq!(exchange["type"], "fanout", "{DEFINITIONS}: exchange {name} is not fanout");
        assert_eq!(exchange["durable"], true, "{DEFINITIONS}: exchange {name} is not durable");
        assert_eq!(exchange["auto_delete"], false, "{DEFINITIONS}: exchange {name} is auto-delete");
        assert_eq!(exchange["internal"], false, "{DEFINITIONS}: exchange {name} is internal");
        assert_eq!(exchange["arguments"], json!({}), "{DEFINITIONS}: exchange {name} has arguments");
    }

    // Bindings: each exchange to its queue, no routing key.
    let bindings =
        definitions.at(&["bindings"]).as_array().unwrap_or_else(|| panic!("{DEFINITIONS}: no bindings"));
    let declared: BTreeSet<(&str, &str, &str, &str)> = bindings
        .iter()
        .map(|b| {
            assert_eq!(b["arguments"], json!({}), "{DEFINITIONS}: binding {b} has arguments");
            let field = |key: &str| {
                b[key].as_str().unwrap_or_else(|| panic!("{DEFINITIONS}: binding {b} has no {key}"))
            };
            (field("source"), field("destination"), field("destination_type"), field("routing_key"))
        })
        .collect();
    let expected: BTreeSet<(&str, &str, &str, &str)> = [
        (names.dead_letter_exchange.as_str(), names.dead_letter_queue.as_str(), "queue", ""),
        (names.results_exchange.as_str(), names.results_queue.as_str(), "queue", ""),
    ]
    .into();
    assert_eq!(declared, expected, "{DEFINITIONS}: bindings differ from topology.rs's");

    // The worker's user may touch exactly what it uses, the topology being pre-declared (the
    // manifests set ASSET_WORKER_DECLARE_TOPOLOGY=false: passive declares need no right):
    // configure nothing; write to the results exchange and to the default exchange (a job's
    // reply_to, a signing request's answer); read the queues it consumes (jobs, signing
    // requests), and not the results (its name is the results exchange's, which is why the
    // worker binds nothing).
    assert!(
        !kube_settings()["declare_topology"].as_bool().unwrap(),
        "{DEPLOYMENT}: ASSET_WORKER_DECLARE_TOPOLOGY must be false: {DEFINITIONS} grants no configure right"
    );
    let amqp_url: AMQPUri = str_setting(compose_settings(), "amqp_url").parse().unwrap();
    let worker = amqp_url.authority.userinfo.username.as_str();
    let permission = definitions_permission(&definitions, worker, vhost);
    let n = &names;
    let expected = [
        ("configure", "^$".to_owned()),
        ("write", names_pattern(&["amq.default", &n.results_exchange])),
        ("read", names_pattern(&[&n.process, &n.sign])),
    ];
    for (right, pattern) in expected {
        assert_eq!(permission[right], pattern, "{DEFINITIONS}: the {right} permission of {worker}");
    }
    assert_eq!(
        definitions_user(&definitions, worker)["tags"],
        json!([]),
        "{DEFINITIONS}: {worker} needs no tags"
    );
}

/// A vhost pair and a user imported for one test run, deleted when it ends (passed or not).
struct Imported {
    ctl: std::path::PathBuf,
    vhosts: [String; 2],
    user: String,
}

impl Imported {
    fn ctl(&self, args: &[&str]) {
        let output = Command::new(&self.ctl).args(args).output().unwrap();
        assert!(output.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Imported {
    fn drop(&mut self) {
        for vhost in &self.vhosts {
            let _ = Command::new(&self.ctl).args(["delete_vhost", vhost]).output();
        }
        let _ = Command::new(&self.ctl).args(["delete_user", &self.user]).output();
    }
}

/// The definitions on a real broker, and the code's own declaration against them: RabbitMQ
/// compares a re-declaration with what exists (queue arguments, exchange type and flags) and
/// refuses any difference, and it checks the worker user's permissions on every operation.
/// Imported under a vhost and user of this run's own (renamed; the password hash is the
/// compose file's development one), so nothing of anyone else's is touched. The declaration is
/// made as the broker's own test user (granted the run's vhosts): the worker's user may not.
/// Needs `rabbitmqctl` on this machine.
#[test]
fn the_definitions_import_into_rabbitmq_and_the_worker_can_use_them() {
    // The broker's own tool comes with the broker every test here needs (DESIGN §6): without
    // it the test fails rather than skip.
    let ctl = super::peers::rabbitmqctl()
        .expect("rabbitmqctl (installed with rabbitmq-server; scripts/rabbitmq.sh)");
    let definitions = definitions();
    let vhost = definitions_vhost(&definitions).to_owned();
    // The worker's user and password: the compose stack's AMQP URL and its definitions.
    let compose_url: AMQPUri = str_setting(compose_settings(), "amqp_url").parse().unwrap();
    let (user, password) =
        (&compose_url.authority.userinfo.username, &compose_url.authority.userinfo.password);
    let compose_definitions = json_doc(COMPOSE_DEFINITIONS);
    assert!(
        password_matches(definitions_user(&compose_definitions, user), password),
        "{COMPOSE}: the password of {user} is not the one {COMPOSE_DEFINITIONS} hashes"
    );

    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let run = format!("deploy-test-{}-{nanos:x}", std::process::id());
    let imported =
        Imported { ctl, vhosts: [format!("{run}-defs"), format!("{run}-empty")], user: run.clone() };
    let [with_topology, empty] = &imported.vhosts;
    let in_vhost = |object: &Value, vhost: &str| {
        let mut object = object.clone();
        object["vhost"] = json!(vhost);
        object
    };
    let mut renamed = definitions.value.clone();
    renamed["vhosts"] = json!([{"name": with_topology}, {"name": empty}]);
    let mut worker_user = definitions_user(&compose_definitions, user).clone();
    worker_user["name"] = json!(run);
    renamed["users"] = json!([worker_user]);
    let mut permission = definitions_permission(&definitions, user, &vhost).clone();
    permission["user"] = json!(run);
    renamed["permissions"] = json!([in_vhost(&permission, with_topology), in_vhost(&permission, empty)]);
    for kind in ["queues", "exchanges", "bindings"] {
        let objects = definitions.value[kind].as_array().into_iter().flatten();
        renamed[kind] = objects.map(|object| in_vhost(object, with_topology)).collect();
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), renamed.to_string()).unwrap();
    // Debian's rabbitmqctl reads it as the `rabbitmq` user (only dev password hashes inside).
    std::fs::set_permissions(file.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    imported.ctl(&["import_definitions", file.path().to_str().unwrap()]);

    let settings = kube_settings();
    let names = Names::new(str_setting(settings, "queue_prefix"));
    let delivery_limit = u32::try_from(u64_setting(settings, "delivery_limit")).unwrap();
    let retry_delays = Settings::default().retry_delays_seconds;
    // The broker the other tests use (ASSET_WORKER_AMQP_URL, else 127.0.0.1:5672), whose user
    // plays the operator here.
    let broker: AMQPUri = std::env::var("ASSET_WORKER_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
        .parse()
        .unwrap();
    let operator = &broker.authority.userinfo;
    for vhost in [with_topology, empty] {
        imported.ctl(&["set_permissions", "-p", vhost, &operator.username, ".*", ".*", ".*"]);
    }
    let url_of = |user: &str, password: &str, vhost: &str| {
        format!("amqp://{user}:{password}@{}:{}/{vhost}", broker.authority.host, broker.authority.port)
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let connect = |url: String| async move {
            let settings = Settings { amqp_url: url.into(), ..Settings::default() };
            asset_worker::queue::connect(&settings)
                .await
                .unwrap_or_else(|e| panic!("{DEFINITIONS}: cannot connect: {e}"))
        };
        let worker = connect(url_of(&run, password, with_topology)).await;
        let admin = connect(url_of(&operator.username, &operator.password, with_topology)).await;

        // 1. The imported topology is there (the import is asynchronous): what the worker checks
        // at start with ASSET_WORKER_DECLARE_TOPOLOGY=false, with its own rights…
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match topology::check(&worker.create_channel().await.unwrap(), &names, &retry_delays, true).await
            {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => panic!("{DEFINITIONS}: not imported: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        // …and the code's declaration is equivalent to it…
        topology::declare(&admin.create_channel().await.unwrap(), &names, delivery_limit, &retry_delays)
            .await
            .unwrap_or_else(|e| {
                panic!("{DEFINITIONS} differs from src/queue/topology.rs on a real broker: {e}")
            });
        // …which the broker does check: another delivery limit is refused.
        let refused = topology::declare(
            &admin.create_channel().await.unwrap(),
            &names,
            delivery_limit + 1,
            &retry_delays,
        )
        .await;
        assert!(
            refused.is_err(),
            "the broker accepted another x-delivery-limit: the comparison above proves nothing"
        );

        // 2. The worker user can do its job: take a job, dead-letter a bad one, publish results
        // to the exchange and to a reply_to queue (through the default exchange).
        let publisher = asset_worker::queue::publisher::ConfirmedPublisher::open(&worker).await.unwrap();
        let properties = asset_worker::queue::publisher::json_properties(Some("deploy-test"));
        use asset_worker::queue::publisher::Destination;
        for destination in [
            Destination::Queue(names.process.clone()),
            Destination::Exchange(names.results_exchange.clone()),
            Destination::Queue(names.results_queue.clone()),
        ] {
            publisher.publish(&destination, b"{}", properties.clone()).await.unwrap_or_else(|e| {
                panic!("{DEFINITIONS}: the worker may not publish to {destination}: {e}")
            });
        }
        let channel = worker.create_channel().await.unwrap();
        let job = channel
            .basic_get(names.process.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{DEFINITIONS}: the worker may not read {}: {e}", names.process))
            .expect("the job just published");
        job.delivery.acker.reject(BasicRejectOptions { requeue: false }).await.unwrap();
        // The worker may read neither the dead letters nor the results (operators and the
        // platform do): the operator counts them.
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let count = |queue: String, expected: u32| {
            let admin = &admin;
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let channel = admin.create_channel().await.unwrap();
                    let declared = channel
                        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                        .await
                        .unwrap();
                    if declared.message_count() == expected {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{DEFINITIONS}: {queue} holds {} messages, not {expected}",
                        declared.message_count()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        count(names.dead_letter_queue.clone(), 1).await;
        count(names.results_queue.clone(), 2).await;
        for queue in [&names.results_queue, &names.dead_letter_queue] {
            let channel = worker.create_channel().await.unwrap();
            let read = channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await;
            assert!(read.is_err(), "{DEFINITIONS}: the worker's user may read {queue}");
        }

        // 3. No configure right: the worker may declare nothing, of its prefix or another's…
        for prefix_names in [names.clone(), Names::new("not-the-prefix")] {
            let refused = topology::declare(
                &worker.create_channel().await.unwrap(),
                &prefix_names,
                delivery_limit,
                &retry_delays,
            )
            .await;
            assert!(
                refused.is_err(),
                "{DEFINITIONS}: the worker's user may declare {} (it needs no configure right)",
                prefix_names.process
            );
        }
        let _ = worker.close(200, "deploy test done".into()).await;
        let _ = admin.close(200, "deploy test done".into()).await;

        // …and where nothing was pre-declared, its start-up check names what is missing.
        let worker = connect(url_of(&run, password, empty)).await;
        let missing =
            topology::check(&worker.create_channel().await.unwrap(), &names, &retry_delays, true).await;
        let message = missing.expect_err("the check passed in an empty vhost").to_string();
        assert!(message.contains(&names.dead_letter_exchange), "the check's error names nothing: {message}");
        let _ = worker.close(200, "deploy test done".into()).await;
    });
}

/// The production definitions carry no usable password and no administrator; the compose
/// broker's are the same plus development password hashes and an `admin`.
#[test]
fn the_shipped_definitions_hold_no_password_and_compose_adds_only_dev_users() {
    let production = definitions();
    let compose = json_doc(COMPOSE_DEFINITIONS);
    for user in production.at(&["users"]).as_array().into_iter().flatten() {
        assert_eq!(
            user["password_hash"], "",
            "{DEFINITIONS}: user {} has a password hash; set passwords on the broker (deploy/README.md)",
            user["name"]
        );
        assert!(
            !user["tags"].as_array().into_iter().flatten().any(|t| t == "administrator"),
            "{DEFINITIONS}: user {} is an administrator",
            user["name"]
        );
    }
    let mut stripped = compose.value.clone();
    let users = stripped["users"].as_array_mut().unwrap();
    users.retain(|u| u["name"] != "admin");
    for user in users.iter_mut() {
        assert_ne!(user["password_hash"], "", "{COMPOSE_DEFINITIONS}: user {} cannot log in", user["name"]);
        user["password_hash"] = json!("");
    }
    let admin_permission = |p: &Value| p["user"] == "admin";
    stripped["permissions"].as_array_mut().unwrap().retain(|p| !admin_permission(p));
    assert_eq!(
        stripped, production.value,
        "{COMPOSE_DEFINITIONS}: differs from {DEFINITIONS} beyond the users' hashes and `admin`"
    );
}

// ---------------------------------------------------------------------------------------------
// The image

/// The Dockerfile's instructions (continuations joined, comments dropped), by stage.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = read(DOCKERFILE);
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for instruction in logical.into_iter().filter(|i| !i.trim().is_empty()) {
        let (keyword, rest) = instruction.split_once(char::is_whitespace).unwrap_or((&instruction, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().unwrap().push((keyword, rest.trim().to_owned()));
    }
    stages
}

/// The image a `FROM` line names (`IMAGE [AS name]`), with the global `ARG` defaults (before
/// the first FROM) substituted, as a build without `--build-arg` would.
fn dockerfile_image(from: &str) -> String {
    let mut image = from.split_whitespace().next().unwrap_or_default().to_owned();
    let stages = dockerfile_stages();
    // Substituted in order, so an ARG may use the ones before it.
    let mut args: Vec<(String, String)> = Vec::new();
    for (keyword, rest) in &stages[0] {
        if keyword == "ARG"
            && let Some((name, default)) = rest.split_once('=')
        {
            let mut value = default.to_owned();
            for (earlier, earlier_value) in &args {
                value = value.replace(&format!("${{{earlier}}}"), earlier_value);
            }
            args.push((name.to_owned(), value));
        }
    }
    for (name, value) in &args {
        image = image.replace(&format!("${{{name}}}"), value);
    }
    image
}

/// The final stage's USER as (uid, gid).
fn dockerfile_user() -> (u64, Option<u64>) {
    let stages = dockerfile_stages();
    let last = stages.last().unwrap();
    let user = last
        .iter()
        .rev()
        .find(|(keyword, _)| keyword == "USER")
        .map(|(_, user)| user.as_str())
        .unwrap_or_else(|| panic!("{DOCKERFILE}: the final stage has no USER: it would run as root"));
    let (uid, gid) = user.split_once(':').map_or((user, None), |(uid, gid)| (uid, Some(gid)));
    let numeric = |id: &str| {
        id.parse::<u64>().unwrap_or_else(|_| {
            panic!("{DOCKERFILE}: USER {user} is not numeric (runAsNonRoot cannot verify a name)")
        })
    };
    (numeric(uid), gid.map(numeric))
}

#[test]
fn the_image_runs_the_worker_as_non_root_with_the_ca_roots() {
    let stages = dockerfile_stages();
    assert!(stages.len() >= 3, "{DOCKERFILE}: not a multi-stage build");
    let last = stages.last().unwrap();
    let (uid, gid) = dockerfile_user();
    assert!(uid != 0 && gid != Some(0), "{DOCKERFILE}: USER is root");
    let find = |keyword: &str| {
        last.iter().filter(|(k, _)| k == keyword).map(|(_, rest)| rest.as_str()).collect::<Vec<_>>()
    };
    let exec_form = |keyword: &str| -> Vec<String> {
        let values = find(keyword);
        assert_eq!(values.len(), 1, "{DOCKERFILE}: one {keyword} expected in the final stage");
        serde_json::from_str(values[0])
            .unwrap_or_else(|_| panic!("{DOCKERFILE}: {keyword} is not in exec form (JSON)"))
    };
    let entrypoint = exec_form("ENTRYPOINT");
    assert!(
        entrypoint.len() == 1 && entrypoint[0].ends_with("/asset-worker"),
        "{DOCKERFILE}: ENTRYPOINT is {entrypoint:?}"
    );
    assert_eq!(exec_form("CMD"), ["run"], "{DOCKERFILE}: CMD is not `run`");
    let port = http_port(kube_settings());
    assert!(
        find("EXPOSE").iter().any(|exposed| exposed
            .split_whitespace()
            .any(|p| p.trim_end_matches("/tcp") == port.to_string())),
        "{DOCKERFILE}: does not EXPOSE {port} (ASSET_WORKER_HTTP_ADDR of the manifests)"
    );
    // The final stage holds the binary only.
    let copies = find("COPY");
    assert_eq!(copies.len(), 1, "{DOCKERFILE}: the final stage copies more than the binary: {copies:?}");
    let copy: Vec<&str> = copies[0].split_whitespace().collect();
    assert!(copy[0].starts_with("--from="), "{DOCKERFILE}: the final stage copies from the build context");
    assert!(
        copy[1].ends_with("/release/asset-worker"),
        "{DOCKERFILE}: copies {} instead of the release binary",
        copy[1]
    );
    assert_eq!(
        copy.last().unwrap(),
        &entrypoint[0],
        "{DOCKERFILE}: the binary is not where ENTRYPOINT runs it"
    );

    // The builder's Rust is the pinned toolchain.
    let channel: String = figment::Figment::from(Toml::file(root().join("rust-toolchain.toml")))
        .extract_inner("toolchain.channel")
        .unwrap();
    let pinned = stages[0]
        .iter()
        .find_map(|(keyword, rest)| (keyword == "ARG").then(|| rest.strip_prefix("RUST_VERSION=")).flatten())
        .unwrap_or_else(|| panic!("{DOCKERFILE}: no ARG RUST_VERSION=… before the first FROM"));
    assert_eq!(
        pinned, channel,
        "{DOCKERFILE}: builds with Rust {pinned}, rust-toolchain.toml pins {channel}"
    );
    // Base images: fully qualified (podman and buildah have no implicit docker.io), the
    // builder on the pinned toolchain.
    let builder_from = dockerfile_image(&stages[1][0].1);
    assert!(
        builder_from.starts_with(&format!("docker.io/library/rust:{channel}-")),
        "{DOCKERFILE}: the builder is {builder_from}"
    );
    for stage in &stages[1..] {
        let image = dockerfile_image(&stage[0].1);
        let registry = image.split('/').next().unwrap();
        assert!(
            image.contains('/') && (registry.contains('.') || registry.contains(':')),
            "{DOCKERFILE}: FROM {image} is not qualified with its registry (docker.io/library/…)"
        );
    }
    for service in ["rabbitmq", "seaweedfs"] {
        let image = compose().service(service)["image"].as_str().unwrap().to_owned();
        assert!(
            image.starts_with("docker.io/"),
            "{COMPOSE}: image {image} is not qualified with its registry"
        );
    }

    // The TLS stacks the lock file holds trust the system's roots: the image must carry them.
    #[derive(serde::Deserialize)]
    struct Package {
        name: String,
    }
    let packages: Vec<Package> =
        figment::Figment::from(Toml::file(root().join("Cargo.lock"))).extract_inner("package").unwrap();
    let native: Vec<&str> = packages
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| ["rustls-native-certs", "rustls-platform-verifier", "openssl-probe"].contains(name))
        .collect();
    let base = &dockerfile_image(&last[0].1);
    if !native.is_empty() && !base.contains("distroless") {
        assert!(
            last.iter().any(|(keyword, rest)| keyword == "RUN" && rest.contains("ca-certificates")),
            "{DOCKERFILE}: Cargo.lock has {native:?} (system CA roots) but the image on {base} installs no ca-certificates"
        );
    }

    // The build context: what the builder copies is in it; the big and private things are not.
    let ignore = read(DOCKERIGNORE);
    let patterns: Vec<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for (keyword, rest) in &stages[1] {
        if keyword == "COPY" && !rest.starts_with("--from") {
            let sources: Vec<&str> = rest.split_whitespace().collect();
            for source in &sources[..sources.len() - 1] {
                assert!(
                    !ignored(&patterns, source.trim_end_matches('/')),
                    "{DOCKERIGNORE}: excludes {source}, which {DOCKERFILE} copies"
                );
            }
        }
    }
    for heavy in ["target", ".venv", ".peers", "fixtures", ".git"] {
        assert!(ignored(&patterns, heavy), "{DOCKERIGNORE}: sends {heavy}/ to the build");
    }
}

/// Whether .dockerignore's `patterns` exclude the top-level entry `name`: the last pattern
/// that matches decides, `!` re-includes; patterns here are top-level names or `*`.
fn ignored(patterns: &[&str], name: &str) -> bool {
    let mut excluded = false;
    for pattern in patterns {
        let (negated, pattern) = pattern.strip_prefix('!').map_or((false, *pattern), |p| (true, p));
        let pattern = pattern.trim_start_matches("./").trim_end_matches('/');
        if pattern == "*" || pattern == name {
            excluded = !negated;
        }
    }
    excluded
}

// ---------------------------------------------------------------------------------------------
// The compose stack

fn healthcheck_command(compose: &Compose, service: &str) -> String {
    let test = &compose.service(service)["healthcheck"]["test"];
    let parts: Vec<&str> = match test {
        Value::String(command) => vec![command.as_str()],
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => panic!("{COMPOSE}: service {service} has no healthcheck"),
    };
    assert!(parts.len() > 1 && parts[0] != "NONE", "{COMPOSE}: service {service} has no healthcheck");
    parts.join(" ")
}

/// Every volume of a compose service, as [`compose_volume`] reads each.
fn compose_volumes(service: &Value) -> Vec<(std::path::PathBuf, &str, bool)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(compose_volume)
        .collect()
}

/// A compose volume `SOURCE:TARGET[:MODE]`, the source resolved from deploy/.
fn compose_volume(entry: &str) -> (std::path::PathBuf, &str, bool) {
    let mut parts = entry.split(':');
    let (source, target) =
        (parts.next().unwrap(), parts.next().unwrap_or_else(|| panic!("{COMPOSE}: volume {entry}")));
    let read_only = parts.next().is_some_and(|mode| mode.split(',').any(|m| m == "ro"));
    (root().join("deploy").join(source), target, read_only)
}

#[test]
fn the_compose_stack_starts_in_order_and_speaks_the_definitions() {
    let compose = compose();
    for service in ["rabbitmq", "seaweedfs", COMPOSE_WORKER] {
        healthcheck_command(&compose, service);
    }
    let worker = compose.worker();
    for dependency in ["rabbitmq", "seaweedfs"] {
        assert_eq!(
            worker["depends_on"][dependency]["condition"], "service_healthy",
            "{COMPOSE}: the worker does not wait for {dependency} to be healthy"
        );
    }
    let context = root().join("deploy").join(worker["build"]["context"].as_str().unwrap_or("."));
    let dockerfile = context.join(worker["build"]["dockerfile"].as_str().unwrap_or("Dockerfile"));
    assert_eq!(
        dockerfile.canonicalize().ok(),
        root().join(DOCKERFILE).canonicalize().ok(),
        "{COMPOSE}: the worker is not built from {DOCKERFILE}"
    );
    assert_eq!(
        context.canonicalize().ok(),
        root().canonicalize().ok(),
        "{COMPOSE}: the build context is not the repository root"
    );

    // The fixtures, read-only, where the local provider looks.
    let settings = compose_settings();
    let local_root =
        settings["local_root"].as_str().unwrap_or_else(|| panic!("{COMPOSE}: no ASSET_WORKER_LOCAL_ROOT"));
    let volumes = compose_volumes(worker);
    let fixtures = volumes
        .iter()
        .find(|(_, target, _)| *target == local_root)
        .unwrap_or_else(|| panic!("{COMPOSE}: nothing is mounted at ASSET_WORKER_LOCAL_ROOT {local_root}"));
    assert_eq!(
        fixtures.0.canonicalize().ok(),
        root().join("fixtures").canonicalize().ok(),
        "{COMPOSE}: {local_root} is not fixtures/"
    );
    assert!(fixtures.2, "{COMPOSE}: the fixtures are mounted writable");

    // RabbitMQ loads the definitions the worker's URL expects.
    let rabbitmq = compose.service("rabbitmq");
    let mounts = compose_volumes(rabbitmq);
    let conf = mounts
        .iter()
        .find(|(_, target, _)| target.starts_with("/etc/rabbitmq/conf.d/"))
        .unwrap_or_else(|| panic!("{COMPOSE}: no configuration file mounted into /etc/rabbitmq/conf.d/"));
    let conf_text = std::fs::read_to_string(&conf.0).unwrap_or_else(|e| panic!("{}: {e}", conf.0.display()));
    let loaded = conf_text
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("load_definitions")
                .map(|rest| rest.trim().trim_start_matches('=').trim())
        })
        .unwrap_or_else(|| panic!("{}: no load_definitions", conf.0.display()));
    let definitions_mount = mounts.iter().find(|(_, target, _)| *target == loaded).unwrap_or_else(|| {
        panic!("{COMPOSE}: nothing is mounted at {loaded}, which the RabbitMQ configuration loads")
    });
    assert_eq!(
        definitions_mount.0.canonicalize().ok(),
        root().join(COMPOSE_DEFINITIONS).canonicalize().ok(),
        "{COMPOSE}: RabbitMQ loads another definitions file than {COMPOSE_DEFINITIONS}"
    );
    let definitions = json_doc(COMPOSE_DEFINITIONS);
    let url: AMQPUri = str_setting(settings, "amqp_url").parse().unwrap();
    assert_eq!(
        url.authority.host, "rabbitmq",
        "{COMPOSE}: the worker's AMQP URL is not the rabbitmq service"
    );
    assert_eq!(
        url.vhost,
        definitions_vhost(&definitions),
        "{COMPOSE}: the worker's vhost is not {DEFINITIONS}'s"
    );
    let user = &url.authority.userinfo.username;
    assert!(
        password_matches(definitions_user(&definitions, user), &url.authority.userinfo.password),
        "{COMPOSE}: the worker's password is not the one {DEFINITIONS} hashes for {user}"
    );

    // SeaweedFS: the test peers' configuration, and the worker's identity is one of its users.
    let seaweedfs = compose.service("seaweedfs");
    let mut configs = BTreeMap::new();
    for (source, target, _) in compose_volumes(seaweedfs) {
        assert!(source.is_file(), "{COMPOSE}: {} does not exist", source.display());
        configs.insert(target.to_owned(), source);
    }
    let command: Vec<&str> =
        seaweedfs["command"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let flag = |name: &str| {
        command
            .iter()
            .find_map(|arg| arg.strip_prefix(&format!("-{name}=")))
            .unwrap_or_else(|| panic!("{COMPOSE}: seaweedfs has no -{name}"))
    };
    let s3_config = configs
        .get(flag("s3.config"))
        .unwrap_or_else(|| panic!("{COMPOSE}: -s3.config is not a mounted file"));
    let identities: Value = serde_json::from_str(&std::fs::read_to_string(s3_config).unwrap()).unwrap();
    let env = compose.worker_env();
    let key =
        env.get("AWS_ACCESS_KEY_ID").unwrap_or_else(|| panic!("{COMPOSE}: the worker has no AWS identity"));
    let known = identities["identities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["credentials"].as_array().into_iter().flatten())
        .any(|c| {
            c["accessKey"] == key.as_str()
                && Some(&c["secretKey"]) == env.get("AWS_SECRET_ACCESS_KEY").map(|s| json!(s)).as_ref()
        });
    assert!(known, "{COMPOSE}: the worker's AWS keys are not an identity of {}", s3_config.display());
    let port = flag("s3.port");
    for endpoint in ["s3_endpoint", "sts_endpoint"] {
        assert_eq!(
            settings[endpoint].as_str(),
            Some(format!("http://seaweedfs:{port}").as_str()),
            "{COMPOSE}: ASSET_WORKER_{} is not SeaweedFS's S3 port",
            endpoint.to_ascii_uppercase()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The image, built and run here

/// The image the test builds (deploy/image.sh, with the debug binary this test run built).
const TEST_IMAGE: &str = "localhost/asset-worker:deploy-test";

/// Why the image cannot be run here (then the test is skipped, saying so), or `None`.
fn cannot_run_containers() -> Option<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    if uid.as_deref() != Some("0") {
        return Some(format!("not root (uid {uid:?}): mmdebstrap and podman's root storage need it"));
    }
    match Command::new("podman").arg("info").output() {
        Err(e) => Some(format!("no podman ({e}): apt-get install podman buildah runc mmdebstrap")),
        Ok(output) if !output.status.success() => {
            Some(format!("podman cannot run here: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
        Ok(_) => None,
    }
}

/// This process's soft and hard limit on `resource` ("Max open files"), from /proc.
fn own_limit(resource: &str) -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line =
        limits.lines().find(|line| line.starts_with(resource)).unwrap_or_else(|| panic!("no {resource}"));
    let fields: Vec<&str> = line[resource.len()..].split_whitespace().collect();
    let number = |field: &str| if field == "unlimited" { "-1".to_owned() } else { field.to_owned() };
    format!("{}:{}", number(fields[0]), number(fields[1]))
}

/// The podman flags every container of the test gets on this machine, and why:
/// - `--runtime runc`: podman prefers crun when it is installed (Debian's podman recommends it),
///   and crun refuses this machine's cgroups ("cgroups in hybrid mode not supported, drop all
///   controllers from cgroupv2"); runc runs them.
/// - `--ulimit nofile=…`: as root podman raises a container's RLIMIT_NOFILE to 1048576 by
///   default, above this machine's hard limit (it is itself a container without
///   CAP_SYS_RESOURCE): runc fails with `error setting rlimit type 7: operation not
///   permitted`. The container gets this process's own limits instead.
/// - `--ulimit nproc=4096`: likewise RLIMIT_NPROC (type 6), which runc could not set even to
///   this process's own hard limit (96369 here: 32768 worked, 50000 did not). 4096 processes of
///   uid 65532 is far above what the worker needs (its parser children and threads).
fn podman_run_flags() -> Vec<String> {
    vec![
        "--runtime".into(),
        "runc".into(),
        "--ulimit".into(),
        format!("nofile={}", own_limit("Max open files")),
        "--ulimit".into(),
        "nproc=4096:4096".into(),
    ]
}

/// A container, removed when the test ends (passed or not).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "--force", "--time", "0", &self.0]).output();
    }
}

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman").args(args).output().unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

/// `GET path` on 127.0.0.1:`port`: the status and the body, or `None` while nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// The image as the Deployment runs it: built by deploy/image.sh (the debug binary of this
/// run, so CI does not build a release), run read-only with every capability dropped,
/// no-new-privileges, uid 65532, a tmpfs temp dir of the emptyDir's size and the ConfigMap's
/// environment, on the host's network to reach the machine's RabbitMQ. It must answer jobs,
/// say `/readyz` 200 (and which protections its parser children hold in there), and exit 0 on
/// SIGTERM within the grace period.
#[test]
fn the_image_runs_as_the_deployment_does() {
    if let Some(why) = cannot_run_containers() {
        eprintln!("SKIPPED the_image_runs_as_the_deployment_does: {why}");
        return;
    }
    let started = Instant::now();
    let build = Command::new(root().join("deploy/image.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_asset-worker"), "--tag", TEST_IMAGE])
        .output()
        .unwrap();
    assert!(build.status.success(), "deploy/image.sh failed:\n{}", String::from_utf8_lossy(&build.stderr));
    let built_in = started.elapsed();
    let flags = podman_run_flags();
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();

    // The image's own configuration is the Dockerfile's.
    let inspect = podman(&["image", "inspect", "--format", "{{json .Config}}", TEST_IMAGE]);
    let config: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let (uid, gid) = dockerfile_user();
    assert_eq!(config["User"], format!("{uid}:{}", gid.unwrap_or(uid)), "deploy/image.sh: USER");
    assert_eq!(config["Entrypoint"], json!(["/usr/local/bin/asset-worker"]), "deploy/image.sh: ENTRYPOINT");
    assert_eq!(config["Cmd"], json!(["run"]), "deploy/image.sh: CMD");

    // Probe: can this machine run a container at all?
    let mut probe = vec!["run", "--rm"];
    probe.extend(&flag_refs);
    probe.extend(["--entrypoint", "/bin/true", TEST_IMAGE]);
    let probed = podman(&probe);
    if !probed.status.success() {
        eprintln!(
            "SKIPPED the_image_runs_as_the_deployment_does: podman cannot run containers here: {}",
            String::from_utf8_lossy(&probed.stderr).trim()
        );
        return;
    }

    // The jobs, through the machine's broker, under a prefix of this test's own; `enqueue`
    // declares the topology as the operator would have, so the worker (DECLARE_TOPOLOGY=false,
    // the ConfigMap's) only checks it.
    let prefix = super::queue::Prefix::new("image");
    let fixtures: Vec<std::path::PathBuf> = ["image", "video", "audio", "pdf", "dicom", "text"]
        .iter()
        .filter_map(|kind| {
            super::fixture_files().into_iter().find(|f| f.starts_with(format!("fixtures/{kind}")))
        })
        .collect();
    let keys: Vec<String> =
        fixtures.iter().map(|f| f.strip_prefix("fixtures").unwrap().display().to_string()).collect();
    let ids = prefix.enqueue_local(&keys.iter().map(String::as_str).collect::<Vec<_>>());

    // The ConfigMap's environment, pointed at this machine's broker and the test's prefix.
    let kube = kube();
    let mut env = kube.worker_env();
    let broker = std::env::var("ASSET_WORKER_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.insert("ASSET_WORKER_AMQP_URL".into(), broker);
    env.insert("ASSET_WORKER_QUEUE_PREFIX".into(), prefix.name.clone());
    env.insert("ASSET_WORKER_HTTP_ADDR".into(), format!("127.0.0.1:{port}"));
    env.insert("ASSET_WORKER_LOCAL_ROOT".into(), "/srv/fixtures".into());
    let settings = settings_of("the image test's environment", &env);
    let temp_dir = str_setting(&settings, "temp_dir").to_owned();
    let volume = kube.pod_spec()["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["emptyDir"]["medium"] == "Memory")
        .cloned()
        .unwrap();
    let tmpfs_bytes = quantity(DEPLOYMENT, &volume["emptyDir"]["sizeLimit"]) as u64;
    let grace = kube.pod_spec()["terminationGracePeriodSeconds"].as_u64().unwrap();
    let env_file = tempfile::NamedTempFile::new().unwrap();
    let lines: String = env.iter().map(|(key, value)| format!("{key}={value}\n")).collect();
    std::fs::write(env_file.path(), lines).unwrap();

    let name = format!("asset-worker-deploy-test-{}", std::process::id());
    let container = Container(name.clone());
    let fixtures_mount = format!("{}:/srv/fixtures:ro", root().join("fixtures").display());
    let tmpfs = format!("{temp_dir}:size={tmpfs_bytes},mode=1777");
    let user = format!("{uid}:{}", gid.unwrap_or(uid));
    let mut run = vec!["run", "--detach", "--name", &name];
    run.extend(&flag_refs);
    run.extend([
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        &user,
        "--tmpfs",
        &tmpfs,
        "--volume",
        &fixtures_mount,
        "--env-file",
        env_file.path().to_str().unwrap(),
        TEST_IMAGE,
        "run",
    ]);
    let ran = podman(&run);
    assert!(ran.status.success(), "podman run: {}", String::from_utf8_lossy(&ran.stderr));
    let logs = || String::from_utf8_lossy(&podman(&["logs", &container.0]).stderr).into_owned();

    // Ready, and saying which protections hold in here.
    let mut readyz = None;
    super::wait_until(Duration::from_secs(60), || {
        readyz = http_get(port, READYZ_PATH);
        readyz.as_ref().is_some_and(|(status, _)| *status == 200)
    });
    let (status, body) = readyz.unwrap_or_else(|| panic!("/readyz never answered:\n{}", logs()));
    assert_eq!(status, 200, "/readyz: {body}\n{}", logs());
    eprintln!("the image's /readyz: {}", body.trim().replace('\n', " | "));
    let protections = body
        .lines()
        .find(|l| l.starts_with("parser children:"))
        .unwrap_or_else(|| panic!("/readyz names no protections: {body}"));
    for protection in ["landlock", "seccomp on", "no_new_privs on", "not dumpable on"] {
        assert!(
            protections.contains(protection),
            "/readyz: {protection} does not hold in the container: {protections}"
        );
    }

    // Every job answered, as the fixtures' reviewed answers say.
    let results = super::queue::by_job_id(prefix.results(ids.len(), 120));
    assert_eq!(results.len(), ids.len(), "results missing; the container's log:\n{}", logs());
    for ((id, fixture), key) in ids.iter().zip(&fixtures).zip(&keys) {
        let expected = super::queue::expected(fixture);
        for field in ["status", "data_type", "metadata", "error"] {
            assert_eq!(results[id][field], expected[field], "{field} of {key} from the image");
        }
    }

    // SIGTERM, as the kubelet sends it: exit 0 within the grace period.
    let stopping = Instant::now();
    let killed = podman(&["kill", "--signal", "TERM", &container.0]);
    assert!(killed.status.success(), "podman kill: {}", String::from_utf8_lossy(&killed.stderr));
    let mut exit = None;
    super::wait_until(Duration::from_secs(grace), || {
        let state = podman(&["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", &container.0]);
        let text = String::from_utf8_lossy(&state.stdout).trim().to_owned();
        exit = text.strip_prefix("false ").map(str::to_owned);
        exit.is_some()
    });
    let exit = exit.unwrap_or_else(|| panic!("still running {grace} s after SIGTERM:\n{}", logs()));
    assert_eq!(exit, "0", "exit status after SIGTERM:\n{}", logs());
    eprintln!(
        "image built in {:.1} s, stopped in {:.1} s (grace {grace} s)",
        built_in.as_secs_f64(),
        stopping.elapsed().as_secs_f64()
    );
}
