//! `filiera generate` and the bulk `filiera import` as real processes: a generated file
//! imported in batches gives exactly the streams its commands give one by one over HTTP, on
//! both stores, and generation is reproducible.

mod common;

use std::collections::HashMap;

use filiera_testkit::{Backend, TestDb};
use serde_json::Value;

use common::{clean_command, client, filiera, start};

filiera_testkit::on_both_backends!(a_generated_file_imports_as_over_http);

/// A scratch database of `backend`: its URL and what keeps it alive.
async fn database(backend: Backend, dir: &std::path::Path, name: &str) -> (String, Option<TestDb>) {
    match backend {
        Backend::Sqlite => (format!("sqlite://{}", dir.join(name).display()), None),
        Backend::Postgres => {
            let db = TestDb::create().await.expect("a scratch database");
            (db.url.clone(), Some(db))
        }
    }
}

fn generate(dir: &std::path::Path, seed: &str) -> std::path::PathBuf {
    let file = dir.join(format!("generated-{seed}.ndjson"));
    let output = clean_command()
        .args(["generate", "--events", "600", "--seed", seed, "-o"])
        .arg(&file)
        .output()
        .expect("filiera generate runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    file
}

/// The HTTP route and body of an import line.
fn route(line: &Value, ids: &HashMap<String, String>) -> (String, Value) {
    let mut body = line.as_object().expect("an object").clone();
    let reference = body.remove("beneficiary").expect("a reference");
    let command = body.remove("command").expect("a command");
    let id = || &ids[reference.as_str().expect("a text reference")];
    let path = match command.as_str().expect("a command name") {
        "enrol" => "/v1/beneficiaries".to_owned(),
        "stage" => format!("/v1/beneficiaries/{}/stage", id()),
        "exit" => format!("/v1/beneficiaries/{}/stage/exit", id()),
        "territory" => format!("/v1/beneficiaries/{}/territory", id()),
        "close" => format!("/v1/beneficiaries/{}/close", id()),
        "reopen" => format!("/v1/beneficiaries/{}/reopen", id()),
        "assess" => format!("/v1/beneficiaries/{}/assessment", id()),
        "undo" => format!("/v1/beneficiaries/{}/undo", id()),
        other => panic!("unknown command {other}"),
    };
    (path, Value::Object(body))
}

/// Each stream of an exported feed, in the order the streams first appear: (sequence, type,
/// territory, data) of every event. Ids and times differ between databases; the rest may not.
fn streams(feed: &[Value]) -> Vec<Vec<(i64, String, Value, Value)>> {
    let mut order: Vec<String> = Vec::new();
    let mut streams: HashMap<String, Vec<(i64, String, Value, Value)>> = HashMap::new();
    for item in feed {
        let id = item["beneficiary_id"].as_str().expect("an id").to_owned();
        if !streams.contains_key(&id) {
            order.push(id.clone());
        }
        streams.entry(id).or_default().push((
            item["sequence"].as_i64().expect("a sequence"),
            item["type"].as_str().expect("a type").to_owned(),
            item["territory"].clone(),
            item["data"].clone(),
        ));
    }
    order
        .into_iter()
        .map(|id| streams.remove(&id).unwrap_or_default())
        .collect()
}

fn export(database_url: &str) -> Vec<Value> {
    let output = filiera(database_url)
        .arg("export")
        .output()
        .expect("filiera export runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

async fn a_generated_file_imports_as_over_http(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = generate(dir.path(), "3");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(lines.len() > 100, "{} lines", lines.len());
    // Reproducible: the same seed writes the same file, another seed another.
    assert_eq!(
        std::fs::read_to_string(generate(dir.path(), "3")).unwrap(),
        text
    );
    assert_ne!(
        std::fs::read_to_string(generate(dir.path(), "4")).unwrap(),
        text
    );
    let kinds: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l["command"].as_str().unwrap())
        .collect();
    for kind in [
        "enrol",
        "stage",
        "exit",
        "territory",
        "close",
        "reopen",
        "assess",
        "undo",
    ] {
        assert!(kinds.contains(kind), "no `{kind}` line: {kinds:?}");
    }

    // Imported in batches.
    let (imported, _keep_imported) = database(backend, dir.path(), "imported.db").await;
    let output = filiera(&imported)
        .arg("import")
        .arg(&file)
        .output()
        .expect("filiera import runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["applied"], lines.len(), "{summary}");
    assert_eq!(summary["refused"], 0, "{summary}");

    // The same commands one by one over HTTP.
    let (served, _keep_served) = database(backend, dir.path(), "served.db").await;
    let client = client();
    let server = start(&served, &client).await;
    let mut ids: HashMap<String, String> = HashMap::new();
    for line in &lines {
        let (path, body) = route(line, &ids);
        let answer = client
            .post(format!("{}{path}", server.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let answer: Value = answer.json().await.unwrap();
        assert!(status.is_success(), "{path} {body}: {status} {answer}");
        if path == "/v1/beneficiaries" {
            let reference = line["beneficiary"].as_str().unwrap().to_owned();
            ids.insert(reference, answer["id"].as_str().unwrap().to_owned());
        }
    }
    drop(server);

    let (imported, served) = (streams(&export(&imported)), streams(&export(&served)));
    assert_eq!(imported.len(), ids.len());
    assert_eq!(imported, served);
}
