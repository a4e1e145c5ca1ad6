//! `filiera export --format ocel2|xes` read by PM4Py (the Python process-mining library, from
//! the workspace's test environment) as an analyst would: for the same generated history and
//! scope, the directly-follows counts PM4Py discovers between the stage entries of each
//! beneficiary equal `transition_matrix` of `filiera report --format json` without its `entry`
//! rows, and the traces, events, types and classifications it reads agree with the report's
//! counts and between the two formats. On both stores.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, ensure};
use filiera_testkit::{Backend, TestDb};
use serde_json::{Value, json};

use common::clean_command;

filiera_testkit::on_both_backends!(pm4py_reads_the_exports_as_the_report_counts);

/// A scratch database of `backend`: its URL and what keeps it alive.
async fn database(backend: Backend, dir: &Path) -> anyhow::Result<(String, Option<TestDb>)> {
    Ok(match backend {
        Backend::Sqlite => (format!("sqlite://{}", dir.join("store.db").display()), None),
        Backend::Postgres => {
            let db = TestDb::create().await?;
            (db.url.clone(), Some(db))
        }
    })
}

/// Runs `filiera` on `url` and answers its standard output.
fn filiera(url: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let mut command = clean_command();
    command.env("FILIERA_DATABASE_URL", url).args(args);
    output(&mut command)
}

fn output(command: &mut Command) -> anyhow::Result<Vec<u8>> {
    let output = command.output().with_context(|| format!("{command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}

/// Generates `events` events with `seed` and imports them as batch `batch`.
fn import_generated(url: &str, dir: &Path, seed: &str, batch: &str) -> anyhow::Result<()> {
    let file = dir.join(format!("{batch}.ndjson"));
    let path = file.to_str().context("a UTF-8 path")?;
    output(clean_command().args(["generate", "--events", "800", "--seed", seed, "-o", path]))?;
    filiera(url, &["import", path, "--batch", batch])?;
    Ok(())
}

/// What the script `tests/python/process_mining.py` prints for the two exports of `scope`.
fn read_with_pm4py(url: &str, dir: &Path, name: &str, scope: &[&str]) -> anyhow::Result<Value> {
    let ocel = dir.join(format!("{name}.jsonocel"));
    let xes = dir.join(format!("{name}.xes"));
    for (format, file) in [("ocel2", &ocel), ("xes", &xes)] {
        let path = file.to_str().context("a UTF-8 path")?;
        let mut args = vec!["export", "--format", format, "-o", path];
        args.extend_from_slice(scope);
        filiera(url, &args)?;
    }
    let script = workspace_root().join("tests/python/process_mining.py");
    let stdout = output(
        Command::new(filiera_testkit::python::python()?)
            .arg(script)
            .arg(&ocel)
            .arg(&xes),
    )?;
    Ok(serde_json::from_slice(&stdout)?)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `rows` (`[from, to, count]` arrays) in one order, whatever order they came in.
fn sorted(rows: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut rows: Vec<Value> = rows.into_iter().collect();
    rows.sort_by_key(Value::to_string);
    rows
}

/// What the script read as `[from, to, count]` rows, sorted.
fn rows(log: &Value, key: &str) -> Vec<Value> {
    sorted(log[key].as_array().expect("rows").iter().cloned())
}

/// The report's matrix as `[from, to, count]` rows, sorted (entries, whose `from` is null,
/// kept or left out).
fn matrix(report: &Value, with_entries: bool) -> Vec<Value> {
    sorted(
        report["transition_matrix"]
            .as_array()
            .expect("a matrix")
            .iter()
            .filter(|cell| with_entries || !cell["from"].is_null())
            .map(|cell| json!([cell["from"], cell["to"], cell["count"]])),
    )
}

/// What PM4Py read of one log, checked against the report of the same scope. With `whole`
/// (every territory since 2000), traces are the report's enrolments and the directly-follows
/// counts its matrix without entries.
fn check_log(log: &Value, report: &Value, whole: bool, what: &str) {
    let types = &log["types"];
    let count = |name: &str| types[name].as_u64().unwrap_or(0);
    let t = &report["transitions"];
    let transitions: BTreeMap<String, u64> = ["entry", "progression", "reiteration", "regression"]
        .into_iter()
        .map(|k| (k.to_owned(), t[k].as_u64().expect("a count")))
        .filter(|(_, n)| *n > 0)
        .collect();
    let read: BTreeMap<String, u64> =
        serde_json::from_value(log["transitions"].clone()).expect("counts");
    assert_eq!(read, transitions, "{what}: stage entries by classification");
    let entered: u64 = transitions.values().sum();
    assert_eq!(count("StageEntered"), entered, "{what}: stage entries");
    assert_eq!(
        count("Enrolled"),
        report["enrolments"],
        "{what}: enrolments"
    );
    assert_eq!(count("PathwayReopened"), report["reopenings"], "{what}");
    let a = &report["assessments"];
    let assessed: u64 = ["initial", "multidisciplinary", "review"]
        .iter()
        .map(|k| a[k].as_u64().expect("a count"))
        .sum();
    assert_eq!(count("NeedsAssessed"), assessed, "{what}: assessments");
    assert!(
        !types
            .as_object()
            .expect("types")
            .contains_key("CommandUndone")
    );
    assert_eq!(
        rows(log, "matrix"),
        matrix(report, true),
        "{what}: stage entries by (from_stage, stage)"
    );
    assert_eq!(
        log["activities_of_entries"],
        json!([]),
        "{what}: activity = stage"
    );
    if whole {
        assert_eq!(
            log["traces"], report["enrolments"],
            "{what}: one trace each"
        );
        let closures: u64 = report["closures"]
            .as_object()
            .expect("closures")
            .values()
            .map(|n| n.as_u64().expect("a count"))
            .sum();
        assert_eq!(count("PathwayClosed"), closures, "{what}: closures");
        let exits: u64 = report["time_in_stage_days"]
            .as_object()
            .expect("stages")
            .values()
            .map(|d| d["closed"]["count"].as_u64().expect("a count"))
            .sum();
        assert_eq!(count("StageExited"), exits, "{what}: stage exits");
        assert_eq!(
            rows(log, "follows"),
            matrix(report, false),
            "{what}: directly-follows counts of the stage entries"
        );
        assert!(
            !matrix(report, false).is_empty(),
            "a history with transitions"
        );
    }
}

async fn pm4py_reads_the_exports_as_the_report_counts(backend: Backend) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (url, _db) = database(backend, dir.path()).await?;
    import_generated(&url, dir.path(), "7", "first")?;
    // A second history recorded after `known_at`: the exports as known at it leave it out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let known_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    import_generated(&url, dir.path(), "8", "second")?;

    let scopes: [(&str, Vec<&str>, bool); 3] = [
        ("whole", vec![], true),
        ("known", vec!["--known-at", &known_at], true),
        (
            "scoped",
            vec![
                "--territory",
                "LOM",
                "--from",
                "2022-01-01",
                "--to",
                "2024-06-30",
            ],
            false,
        ),
    ];
    let mut traces = Vec::new();
    for (name, scope, whole) in &scopes {
        let mut args = vec!["report", "--format", "json"];
        args.extend_from_slice(scope);
        let report: Value = serde_json::from_slice(&filiera(&url, &args)?)?;
        let read = read_with_pm4py(&url, dir.path(), name, scope)?;
        let (ocel, xes) = (&read["ocel"], &read["xes"]);
        check_log(ocel, &report, *whole, &format!("{name} OCEL 2.0"));
        check_log(xes, &report, *whole, &format!("{name} XES"));
        // The two formats hold the same log.
        for key in ["traces", "events", "types", "transitions"] {
            assert_eq!(ocel[key], xes[key], "{name}: {key} in OCEL 2.0 and XES");
        }
        for key in ["matrix", "follows"] {
            assert_eq!(
                rows(ocel, key),
                rows(xes, key),
                "{name}: {key} in OCEL 2.0 and XES"
            );
        }
        assert_eq!(ocel["beneficiaries"], ocel["traces"]);
        assert_eq!(ocel["ocel_events"], ocel["events"]);
        assert_eq!(xes["lifecycles"], json!(["complete", "start"]));
        assert!(ocel["providers"].as_u64().expect("a count") > 0, "{name}");
        traces.push(ocel["traces"].as_u64().expect("a count"));
    }
    // As known at the instant between the imports: only the first history.
    ensure!(
        traces[1] > 0 && traces[1] < traces[0],
        "traces now {} and as known between the imports {}",
        traces[0],
        traces[1]
    );
    Ok(())
}
