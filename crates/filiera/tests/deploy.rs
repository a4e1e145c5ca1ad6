//! The deployment files of `deploy/` hold together, although this machine runs no container:
//! every YAML and JSON file parses; the Kubernetes manifests pass the Kubernetes schemas
//! (kubernetes-validate, offline, strict) and refer to each other rightly; every `FILIERA_*`
//! variable the compose file, the manifests, the image and the unit set is one `filiera
//! check-config` accepts, with the configuration file each of them mounts; the NATS cluster
//! configuration forms a three-node JetStream cluster with the local `nats-server`, takes the
//! stream definition with three replicas, and filiera's relay publishes into it with its user;
//! and every metric the Grafana dashboard and the alerts query is one a running `filiera serve`
//! exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use async_nats::ConnectOptions;
use filiera_relay::{STREAM_NAME, STREAM_SUBJECTS, StreamSettings};
use serde_json::Value;

/// The Kubernetes version the manifests are validated against: the oldest still commonly run.
const KUBERNETES_VERSION: &str = "1.30.0";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(relative: &str) -> Value {
    serde_json::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every YAML file of `deploy/` parsed, and the Kubernetes manifests of the kustomization
/// validated, by `tests/deploy/files.py` in the test Python environment.
struct Files {
    /// Path relative to `deploy/` → its documents.
    documents: BTreeMap<String, Vec<Value>>,
    validated: Vec<String>,
    errors: Vec<String>,
}

impl Files {
    fn load(manifests: &[PathBuf]) -> Self {
        let python = filiera_testkit::python::python().expect("the test Python environment");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deploy/files.py");
        let output = Command::new(python)
            .arg(script)
            .arg(deploy_dir())
            .arg(KUBERNETES_VERSION)
            .args(manifests)
            .output()
            .expect("python runs");
        assert!(
            output.status.success(),
            "files.py: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut value: Value = serde_json::from_slice(&output.stdout).expect("files.py's JSON");
        let strings = |value: &Value| -> Vec<String> {
            serde_json::from_value(value.clone()).expect("a list of strings")
        };
        Self {
            documents: serde_json::from_value(value["documents"].take()).expect("documents"),
            validated: strings(&value["validated"]),
            errors: strings(&value["errors"]),
        }
    }

    /// The one document of `relative`.
    fn one(&self, relative: &str) -> &Value {
        match self.documents.get(relative).map(Vec::as_slice) {
            Some([document]) => document,
            other => panic!("{relative}: expected one YAML document, found {other:?}"),
        }
    }
}

fn kustomization_resources() -> Vec<PathBuf> {
    // Read without Python first: the manifests to validate are the kustomization's resources.
    let text = read("kubernetes/kustomization.yaml");
    let mut resources = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("resources:") {
            inside = true;
        } else if inside {
            match line.trim().strip_prefix("- ") {
                Some(name) if line.starts_with("  ") => {
                    resources.push(deploy_dir().join("kubernetes").join(name));
                }
                _ => inside = false,
            }
        }
    }
    assert!(!resources.is_empty(), "no resources in kustomization.yaml");
    resources
}

fn str_of<'v>(value: &'v Value, what: &str) -> &'v str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// A value for every `${NAME}` a deployment file leaves to the operator: passwords as
/// `.env.example` says to make them, and secrets of the right shape.
fn operator_values() -> BTreeMap<&'static str, String> {
    let password = || format!("p{}", uuid::Uuid::new_v4().simple());
    BTreeMap::from([
        ("POSTGRES_PASSWORD", password()),
        ("FILIERA_RELAY_NATS_PASSWORD", password()),
        ("SIL_BERGAMO_NATS_PASSWORD", password()),
        ("NATS_ADMIN_PASSWORD", password()),
        ("GRAFANA_ADMIN_PASSWORD", password()),
        (
            "FILIERA_AUTH_SECRET",
            format!("s{}", uuid::Uuid::new_v4().simple()),
        ),
        // 32 bytes in standard base64.
        (
            "FILIERA_MASTER_KEY",
            "c2VjcmV0IG1hc3RlciBrZXkgb2YgdGhlIHRlc3QgISE=".to_owned(),
        ),
        ("SITE_ADDRESS", "filiera.localhost".to_owned()),
    ])
}

/// Docker Compose's interpolation: `$$` is a dollar, `${NAME}`, `${NAME:?message}` and
/// `${NAME:-default}` take the operator's value.
fn interpolate(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').expect("a closing brace");
            let expression = &after[..end];
            let name = expression
                .split([':', '-', '?'])
                .next()
                .expect("a variable name");
            let value = values
                .get(name)
                .unwrap_or_else(|| panic!("no value for ${{{name}}}"));
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            panic!("a bare `$` in a compose value: {text}");
        }
    }
    out.push_str(rest);
    out
}

/// The `${NAME}` references of a text.
fn references(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|after| {
            after
                .split(['}', ':', '-', '?'])
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Runs `filiera --config CONFIG check-config --json` with exactly `env` (and no other
/// `FILIERA_*` variable), and returns the report; fails with the command's complaint.
fn check_config(config: &Path, env: &BTreeMap<String, String>) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_filiera"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FILIERA_") {
            command.env_remove(key);
        }
    }
    // The file the deployment mounts, given as the option; the variable's in-container path is
    // checked against the mount by the callers.
    let env: BTreeMap<_, _> = env
        .iter()
        .filter(|(key, _)| key.as_str() != "FILIERA_CONFIG")
        .collect();
    let output = command
        .envs(env)
        .arg("--config")
        .arg(config)
        .args(["check-config", "--json"])
        .output()
        .expect("filiera runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "check-config refused {}: {}\n{stdout}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).expect("the JSON report")
}

fn assert_no_secret(report: &Value, values: &BTreeMap<&str, String>) {
    let text = report.to_string();
    for (name, value) in values {
        if name.contains("PASSWORD") || name.starts_with("FILIERA_") {
            assert!(!text.contains(value.as_str()), "{name} shown: {text}");
        }
    }
}

#[test]
fn kubernetes_manifests_pass_the_schemas_and_fit_together() {
    let resources = kustomization_resources();
    let files = Files::load(&resources);
    assert!(files.errors.is_empty(), "{:#?}", files.errors);
    assert_eq!(
        files.validated.len(),
        resources.len(),
        "{:?}",
        files.validated
    );

    // Every manifest of the folder is in the kustomization, and what it generates from exists.
    let kustomization = files.one("kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("kubernetes/{}", str_of(r, "resource")))
        .collect();
    let manifests: BTreeSet<String> = files
        .documents
        .keys()
        .filter(|path| path.starts_with("kubernetes/") && !path.ends_with("kustomization.yaml"))
        .cloned()
        .collect();
    assert_eq!(
        listed, manifests,
        "manifests missing from kustomization.yaml"
    );
    let config_map = &kustomization["configMapGenerator"][0];
    assert_eq!(config_map["name"], "filiera-config");
    assert_eq!(config_map["files"], serde_json::json!(["filiera.toml"]));
    let secret = &kustomization["secretGenerator"][0];
    assert_eq!(secret["name"], "filiera-secrets");
    assert_eq!(secret["envs"], serde_json::json!(["secrets.env"]));
    assert!(
        deploy_dir()
            .join("kubernetes/secrets.env.example")
            .is_file()
    );

    let deployment = files.one("kubernetes/deployment.yaml");
    let labels = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"],
        *labels
    );
    assert_eq!(deployment["spec"]["replicas"], 2);
    for (file, selector) in [
        ("kubernetes/service.yaml", &["spec", "selector"][..]),
        (
            "kubernetes/poddisruptionbudget.yaml",
            &["spec", "selector", "matchLabels"][..],
        ),
        (
            "kubernetes/networkpolicy.yaml",
            &["spec", "podSelector", "matchLabels"][..],
        ),
    ] {
        let found = selector
            .iter()
            .fold(files.one(file), |value, key| &value[*key]);
        assert_eq!(found, labels, "{file} selects other pods");
    }
    assert_eq!(
        files.one("kubernetes/poddisruptionbudget.yaml")["spec"]["minAvailable"],
        1
    );

    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    // The probes ask the endpoints the service has (`filiera serve` answers them in
    // compose_monitoring_matches_the_metrics_and_the_cluster_takes_the_stream).
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Sized from docs/performance.md: serve peaks at 460-481 MiB at 1M events.
    let mebibytes = |quantity: &Value| -> u64 {
        let text = str_of(quantity, "a memory quantity");
        if let Some(mib) = text.strip_suffix("Mi") {
            mib.parse().unwrap()
        } else if let Some(gib) = text.strip_suffix("Gi") {
            gib.parse::<u64>().unwrap() * 1024
        } else {
            panic!("memory quantity {text}: use Mi or Gi")
        }
    };
    let request = mebibytes(&container["resources"]["requests"]["memory"]);
    let limit = mebibytes(&container["resources"]["limits"]["memory"]);
    assert!(
        (512..=limit).contains(&request),
        "request {request} Mi, limit {limit} Mi"
    );
    let performance = std::fs::read_to_string(deploy_dir().join("../docs/performance.md")).unwrap();
    assert!(performance.contains("peak RSS of `serve` | **460 MiB**"));
    assert!(performance.contains("**481 MiB**"));

    // The port: the listen address, the container port, the Service and the NetworkPolicy.
    let env: BTreeMap<String, String> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                str_of(&e["name"], "env name").to_owned(),
                str_of(&e["value"], "env value").to_owned(),
            )
        })
        .collect();
    assert_eq!(env["FILIERA_LISTEN"], "0.0.0.0:8080");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(
        files.one("kubernetes/service.yaml")["spec"]["ports"][0]["targetPort"],
        container["ports"][0]["name"]
    );
    let policy = files.one("kubernetes/networkpolicy.yaml");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    let egress_ports: BTreeSet<u64> = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap().clone())
        .map(|port| port["port"].as_u64().unwrap())
        .collect();
    assert_eq!(egress_ports, BTreeSet::from([53, 4222, 5432]));

    // The configuration: FILIERA_CONFIG is where the ConfigMap is mounted, the Secret carries
    // the rest, and check-config takes the whole with the ConfigMap's file.
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .expect("the config volume mounted");
    assert_eq!(
        env["FILIERA_CONFIG"],
        format!("{}/filiera.toml", str_of(&mount["mountPath"], "mountPath"))
    );
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "filiera-config");
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "filiera-secrets"
    );
    let values = operator_values();
    let mut env = env;
    for line in read("kubernetes/secrets.env.example").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, example) = line.split_once('=').expect("NAME=value");
        let value = match values.get(name) {
            Some(value) => value.clone(),
            None => example.replace("PASSWORD", &values["POSTGRES_PASSWORD"]),
        };
        env.insert(name.to_owned(), value);
    }
    let report = check_config(&deploy_dir().join("kubernetes/filiera.toml"), &env);
    assert_eq!(report["store"]["kind"], "postgres");
    assert_eq!(report["nats_relay"]["enabled"], true);
    assert_eq!(report["listen"], "0.0.0.0:8080");
    assert!(report["unknown_variables"].as_array().unwrap().is_empty());
    assert_no_secret(&report, &values);
}

#[test]
fn compose_sets_only_settings_filiera_reads() {
    let files = Files::load(&[]);
    // The Compose Specification's schema takes the file (files.py).
    assert!(files.errors.is_empty(), "{:#?}", files.errors);
    let compose = files.one("compose/compose.yaml");
    let text = read("compose/compose.yaml");
    let values = operator_values();

    // Every value left to the operator is listed in .env.example.
    let example: BTreeSet<String> = read("compose/.env.example")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split('=').next().unwrap().to_owned())
        .collect();
    let wanted = references(&text);
    assert!(
        wanted.is_subset(&example),
        "not in .env.example: {:?}",
        wanted.difference(&example).collect::<Vec<_>>()
    );

    let services = compose["services"].as_object().unwrap();
    for needed in [
        "postgres",
        "nats-1",
        "nats-2",
        "nats-3",
        "nats-setup",
        "filiera-1",
        "filiera-2",
        "caddy",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(needed), "no service {needed}");
    }
    assert!(str_of(&services["postgres"]["image"], "image").starts_with("postgres:16"));
    for replica in ["filiera-1", "filiera-2"] {
        let service = &services[replica];
        assert_eq!(service["build"]["dockerfile"], "deploy/Dockerfile");
        assert_eq!(service["read_only"], true);
        let env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), interpolate(str_of(v, k), &values)))
            .collect();
        // FILIERA_CONFIG names the file the service mounts there.
        let mounted = service["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| str_of(v, "volume"))
            .find_map(|v| {
                let mut parts = v.split(':');
                let (host, container) = (parts.next()?, parts.next()?);
                (container == env["FILIERA_CONFIG"]).then(|| host.to_owned())
            })
            .expect("FILIERA_CONFIG is mounted");
        let report = check_config(&deploy_dir().join("compose").join(mounted), &env);
        assert_eq!(report["store"]["kind"], "postgres", "{report}");
        assert_eq!(
            report["store"]["url"],
            "postgres://filiera:***@postgres:5432/filiera"
        );
        assert_eq!(
            report["nats_relay"]["url"],
            "nats://filiera-relay:***@nats:4222"
        );
        assert_eq!(report["listen"], "0.0.0.0:8080");
        assert_no_secret(&report, &values);
    }
    // `nats`, the relay's address, is every node's name on the network filiera shares with them.
    for node in ["nats-1", "nats-2", "nats-3"] {
        assert_eq!(
            services[node]["networks"]["backend"]["aliases"],
            serde_json::json!(["nats"]),
            "{node}"
        );
    }
    // Caddy proxies to both replicas' listen port; Prometheus scrapes both.
    let caddyfile = read("compose/Caddyfile");
    assert!(caddyfile.contains("reverse_proxy filiera-1:8080 filiera-2:8080"));
    assert!(caddyfile.contains("health_uri /readyz"));
    assert!(caddyfile.contains("tls internal"));
    let prometheus = files.one("compose/prometheus.yml");
    assert_eq!(
        prometheus["scrape_configs"][0]["static_configs"][0]["targets"],
        serde_json::json!(["filiera-1:8080", "filiera-2:8080"])
    );
    // Grafana: the datasource the dashboard names is provisioned, and the dashboards folder is
    // the one compose mounts.
    let datasource =
        &files.one("compose/grafana/provisioning/datasources/prometheus.yaml")["datasources"][0];
    let dashboard = read_json("compose/grafana/dashboards/filiera.json");
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], datasource["uid"], "{panel}");
        }
    }
    let provider =
        &files.one("compose/grafana/provisioning/dashboards/filiera.yaml")["providers"][0];
    let grafana_volumes = services["grafana"]["volumes"].to_string();
    assert!(grafana_volumes.contains(&format!(
        "./grafana/dashboards:{}:ro",
        str_of(&provider["options"]["path"], "path")
    )));

    // The image and the systemd unit set known variables too, with the file they ship.
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("COPY deploy/filiera.toml /etc/filiera/filiera.toml"));
    let image_env: BTreeMap<String, String> = dockerfile
        .split("\nENV ")
        .nth(1)
        .expect("an ENV instruction")
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("USER"))
        .flat_map(|l| l.trim().trim_end_matches('\\').split_whitespace())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(image_env["FILIERA_CONFIG"], "/etc/filiera/filiera.toml");
    let report = check_config(&deploy_dir().join("filiera.toml"), &image_env);
    assert_eq!(report["listen"], "0.0.0.0:8080");
}

#[test]
fn every_filiera_variable_named_in_deploy_is_one_filiera_reads() {
    // Names in deploy/ that look like settings but are not filiera's: the stream, and the
    // nats-server's environment variable holding the relay user's password.
    let not_settings = ["FILIERA_EVENTS", "FILIERA_RELAY_NATS_PASSWORD"];
    let mut unknown = Vec::new();
    let mut seen = BTreeSet::new();
    for entry in walk(&deploy_dir()) {
        let text = std::fs::read_to_string(&entry).unwrap();
        for (at, _) in text.match_indices("FILIERA_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let name = name.trim_end_matches('_').to_owned();
            // `FILIERA_*` in prose is no name.
            if name == "FILIERA" || not_settings.contains(&name.as_str()) {
                continue;
            }
            seen.insert(name.clone());
            unknown.push((entry.clone(), name));
        }
    }
    // Ask the binary which of them it does not read (check-config fails naming them).
    let mut command = common::clean_command();
    command.env_remove("FILIERA_LOG");
    for name in &seen {
        // Known settings left blank count as unset; the configuration file stays the default.
        if name != "FILIERA_CONFIG" {
            command.env(name, "");
        }
    }
    let data_dir = tempfile::tempdir().unwrap();
    let output = command
        .env("FILIERA_DATA_DIR", data_dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    unknown.retain(|(_, name)| stderr.contains(&format!("{name} is not a filiera setting")));
    assert!(
        unknown.is_empty(),
        "unknown variables in deploy/: {unknown:?}"
    );
    assert!(output.status.success(), "{stderr}");
    for expected in [
        "FILIERA_DATABASE_URL",
        "FILIERA_NATS_URL",
        "FILIERA_AUTH_SECRET",
        "FILIERA_MASTER_KEY",
        "FILIERA_CONFIG",
    ] {
        assert!(seen.contains(expected), "{expected} never set in deploy/");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The three nodes of `deploy/nats/cluster.conf` as local processes: the same file with the
/// ports, the store folder and the route hosts rewritten; killed on drop.
struct NatsCluster {
    client_ports: Vec<u16>,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    passwords: BTreeMap<&'static str, String>,
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nats/cluster.conf should hold `{from}` once"
    );
    text.replacen(from, to, 1)
}

impl NatsCluster {
    async fn start(passwords: BTreeMap<&'static str, String>) -> anyhow::Result<Self> {
        let text = read("nats/cluster.conf");
        let dir = tempfile::tempdir()?;
        let client_ports: Vec<u16> = (0..3).map(|_| filiera_testkit::free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| filiera_testkit::free_port()).collect();
        let mut children = Vec::new();
        for node in 0..3 {
            let mut config = text.clone();
            config = replace_once(
                &config,
                "listen: 0.0.0.0:4222",
                &format!("listen: 127.0.0.1:{}", client_ports[node]),
            );
            config = replace_once(&config, "http: 0.0.0.0:8222\n", "");
            config = replace_once(
                &config,
                "store_dir: \"/data\"",
                &format!(
                    "store_dir: \"{}\"",
                    dir.path().join(format!("js{node}")).display()
                ),
            );
            config = replace_once(
                &config,
                "listen: 0.0.0.0:6222",
                &format!("listen: 127.0.0.1:{}", route_ports[node]),
            );
            for (other, port) in route_ports.iter().enumerate() {
                config = replace_once(
                    &config,
                    &format!("nats-route://nats-{}:6222", other + 1),
                    &format!("nats-route://127.0.0.1:{port}"),
                );
            }
            let path = dir.path().join(format!("nats-{}.conf", node + 1));
            std::fs::write(&path, config)?;
            let log = std::fs::File::create(dir.path().join(format!("nats-{}.log", node + 1)))?;
            let binary =
                std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
            let child = Command::new(binary)
                .arg("-c")
                .arg(&path)
                .env("NATS_SERVER_NAME", format!("nats-{}", node + 1))
                .envs(passwords.iter().map(|(k, v)| (*k, v.as_str())))
                .env(
                    "PATH",
                    format!(
                        "{}:/usr/sbin:/sbin",
                        std::env::var("PATH").unwrap_or_default()
                    ),
                )
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("spawn nats-server (apt-get install nats-server)")?;
            children.push(child);
        }
        Ok(Self {
            client_ports,
            dir,
            children,
            passwords,
        })
    }

    fn logs(&self) -> String {
        (1..=3)
            .map(|n| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("nats-{n}.log")))
                    .unwrap_or_default();
                format!("--- nats-{n}\n{log}")
            })
            .collect()
    }

    /// `user`'s URL of node `node`, as the deployments give `FILIERA_NATS_URL`: one address,
    /// the client learning the others from the cluster.
    fn url(&self, node: usize, user: &str, password_variable: &str) -> String {
        format!(
            "nats://{user}:{}@127.0.0.1:{}",
            self.passwords[password_variable], self.client_ports[node]
        )
    }

    async fn admin(&self) -> anyhow::Result<async_nats::Client> {
        let addresses: Vec<String> = self
            .client_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = ConnectOptions::with_user_and_password(
                "nats-admin".to_owned(),
                self.passwords["NATS_ADMIN_PASSWORD"].clone(),
            )
            .connection_timeout(Duration::from_secs(2))
            .connect(addresses.as_slice())
            .await;
            match attempt {
                Ok(client) => return Ok(client),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => bail!("nats-admin cannot connect: {err}\n{}", self.logs()),
            }
        }
    }
}

/// One JetStream API request and its JSON answer.
async fn jetstream_api(
    client: &async_nats::Client,
    subject: String,
    body: Vec<u8>,
) -> anyhow::Result<Value> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.clone(), body.into()),
    )
    .await
    .with_context(|| format!("{subject}: no answer"))??;
    Ok(serde_json::from_slice(&reply.payload)?)
}

/// The stream definition as the relay expects it: its name and subjects, and the retention and
/// duplicate window it would create the stream with, now with three replicas.
fn check_stream_definition(definition: &Value) {
    let defaults = StreamSettings::default();
    assert_eq!(definition["name"], STREAM_NAME);
    assert_eq!(definition["subjects"], serde_json::json!([STREAM_SUBJECTS]));
    assert_eq!(definition["num_replicas"], 3);
    assert_eq!(definition["storage"], "file");
    assert_eq!(definition["retention"], "limits");
    assert_eq!(definition["discard"], "old");
    assert_eq!(
        definition["max_age"].as_u64(),
        Some(defaults.max_age.as_nanos() as u64)
    );
    assert_eq!(
        definition["duplicate_window"].as_u64(),
        Some(defaults.duplicate_window.as_nanos() as u64)
    );
    assert_eq!(definition["max_bytes"], defaults.max_bytes);
}

/// The `filiera_*` series a PromQL expression names.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in expression.match_indices("filiera_") {
        let before = expression[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = expression[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_cluster_takes_the_stream_and_the_dashboard_queries_real_metrics()
-> anyhow::Result<()> {
    let definition = read_json("nats/FILIERA_EVENTS.json");
    check_stream_definition(&definition);

    let values = operator_values();
    let passwords: BTreeMap<&'static str, String> = values
        .iter()
        .filter(|(name, _)| {
            matches!(
                **name,
                "FILIERA_RELAY_NATS_PASSWORD" | "SIL_BERGAMO_NATS_PASSWORD" | "NATS_ADMIN_PASSWORD"
            )
        })
        .map(|(name, value)| (*name, value.clone()))
        .collect();
    let cluster = NatsCluster::start(passwords).await?;
    let admin = cluster.admin().await?;

    // The operator applies the definition (what `nats stream add --config` sends) once the
    // cluster has elected its metadata leader.
    let create = format!("$JS.API.STREAM.CREATE.{STREAM_NAME}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        let answer = jetstream_api(&admin, create.clone(), serde_json::to_vec(&definition)?).await;
        match answer {
            Ok(answer) if answer.get("error").is_none() => break answer,
            other if Instant::now() >= deadline => {
                bail!(
                    "the cluster never took the stream: {other:?}\n{}",
                    cluster.logs()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    check_stream_definition(&created["config"]);
    let info_subject = format!("$JS.API.STREAM.INFO.{STREAM_NAME}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = jetstream_api(&admin, info_subject.clone(), Vec::new()).await?;
        let replicas = info["cluster"]["replicas"].as_array().map_or(0, |r| {
            r.iter().filter(|peer| peer["current"] == true).count()
        });
        if info["cluster"]["leader"].is_string() && replicas == 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the stream never had a leader and two current replicas: {info}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // filiera relays into it with the relay user, through nats-3 (any node serves the stream,
    // wherever its leader is), as the deployments do: one address.
    let client = common::client();
    let data_dir = tempfile::tempdir()?;
    let mut command = common::clean_command();
    command.env("FILIERA_DATA_DIR", data_dir.path()).env(
        "FILIERA_NATS_URL",
        cluster.url(2, "filiera-relay", "FILIERA_RELAY_NATS_PASSWORD"),
    );
    let server = common::start_with(command, &client).await;
    for territory in ["LOM-BG-BERGAMO", "LOM-BG-VALLE-BREMBANA", "LOM-BG-BERGAMO"] {
        let key = uuid::Uuid::new_v4().to_string();
        let (status, _, body) =
            common::enrol_with_key(&client, &server.base, territory, &key).await;
        ensure!(status == 201, "enrolment answered {status}: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        let info = jetstream_api(&admin, info_subject.clone(), Vec::new()).await?;
        if info["state"]["messages"] == 3 {
            break info;
        }
        ensure!(
            Instant::now() < deadline,
            "the relay never published the 3 events: {info}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The relay used the stream as the operator made it.
    assert_eq!(info["config"]["num_replicas"], 3, "{info}");

    // The subscriber's account reads its territory's events through its durable consumer.
    let sil = ConnectOptions::with_user_and_password(
        "sil-bergamo".to_owned(),
        values["SIL_BERGAMO_NATS_PASSWORD"].clone(),
    )
    .custom_inbox_prefix("_INBOX_sil-bergamo")
    .connect(format!("nats://127.0.0.1:{}", cluster.client_ports[1]))
    .await?;
    let stream = async_nats::jetstream::new(sil)
        .get_stream(STREAM_NAME)
        .await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("sil-bergamo".to_owned()),
            filter_subject: "filiera.events.LOM-BG-BERGAMO.>".to_owned(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await?;
    let mut subjects = Vec::new();
    while let Some(message) = futures::StreamExt::next(&mut messages).await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        subjects.push(message.subject.to_string());
        message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    assert_eq!(
        subjects,
        [
            "filiera.events.LOM-BG-BERGAMO.enrolled",
            "filiera.events.LOM-BG-BERGAMO.enrolled"
        ]
    );

    // Every series the dashboard and the alerts query is one this server exports (a request
    // was answered, the relay runs, the projection has a checkpoint).
    let deadline = Instant::now() + Duration::from_secs(30);
    let exported = loop {
        let text = client
            .get(format!("{}/metrics", server.base))
            .send()
            .await?
            .text()
            .await?;
        if text.contains("filiera_relay_leader 1") && text.contains("filiera_relay_lag_events 0") {
            break text;
        }
        ensure!(
            Instant::now() < deadline,
            "the relay never led with no lag:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exported: BTreeSet<String> = exported
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let dashboard = read_json("compose/grafana/dashboards/filiera.json");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queried.extend(metric_names(str_of(&target["expr"], "expr")));
        }
    }
    let alerts = Files::load(&[]);
    for rule in alerts.one("compose/alerts.yml")["groups"][0]["rules"]
        .as_array()
        .unwrap()
    {
        queried.extend(metric_names(str_of(&rule["expr"], "expr")));
    }
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\n{exported:?}"
    );
    // Everything the issue asks the dashboard to show is there.
    for wanted in [
        "filiera_http_requests_total",
        "filiera_http_request_duration_seconds_bucket",
        "filiera_feed_head_position",
        "filiera_projection_lag_events",
        "filiera_relay_lag_events",
        "filiera_projection_leader",
        "filiera_relay_leader",
        "filiera_relay_publish_errors_total",
    ] {
        assert!(
            queried.contains(wanted),
            "the dashboard never shows {wanted}"
        );
    }
    // The projection of this replica leads (it is alone) and is caught up.
    assert!(exported.contains("filiera_projection_leader"));

    // The probes' endpoints answer.
    for probe in ["/healthz", "/readyz"] {
        let status = client
            .get(format!("{}{probe}", server.base))
            .send()
            .await?
            .status();
        assert_eq!(status, 200, "{probe}");
    }
    drop(server);
    drop(cluster);
    Ok(())
}
