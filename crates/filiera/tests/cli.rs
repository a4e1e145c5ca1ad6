//! The operator CLI run as a real process over an embedded store in a temporary folder.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `filiera` with a clean configuration pointing at `data_dir`.
fn filiera(data_dir: &std::path::Path) -> Command {
    let mut command = common::clean_command();
    command.env("FILIERA_DATA_DIR", data_dir);
    command
}

fn run(command: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("filiera runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("filiera ends")
}

const HISTORY: &str = r#"{"beneficiary": "B1", "command": "enrol", "territory": "LOM-BG-BERGAMO", "on": "2021-03-01", "referral": "social_services"}
{"beneficiary": "B2", "command": "enrol", "territory": "LOM-LC-LECCO", "on": "2021-04-01", "referral": "self", "support_band": "high_support"}
{"beneficiary": "B1", "command": "stage", "stage": "socio_occupational", "on": "2021-03-15"}
{"beneficiary": "B1", "command": "stage", "stage": "internship", "on": "2021-09-01", "provider": "Coop"}

{"beneficiary": "B2", "command": "stage", "stage": "internship", "on": "2021-05-01"}
{"beneficiary": "B2", "command": "territory", "territory": "LOM-BG-BERGAMO", "on": "2021-06-01"}
{"beneficiary": "B1", "command": "close", "on": "2022-01-10", "outcome": "employed"}
{"beneficiary": "B2", "command": "exit", "on": "2021-07-01", "outcome": "interrupted"}
{"beneficiary": "B2", "command": "undo", "reason": "exit recorded twice in the old system"}
"#;

#[test]
fn import_is_idempotent_and_export_lists_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.ndjson");
    std::fs::write(&file, HISTORY).unwrap();

    let first = run(filiera(dir.path()).arg("import").arg(&file), None);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(summary["applied"], 9);
    assert_eq!(summary["replayed"], 0);
    assert_eq!(summary["beneficiaries"], 2);

    let again = run(filiera(dir.path()).arg("import").arg(&file), None);
    assert!(again.status.success());
    let summary: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["applied"], 0);
    assert_eq!(summary["replayed"], 9);

    let export = run(filiera(dir.path()).arg("export"), None);
    assert!(export.status.success());
    let events: Vec<Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // enrol 1 + 1, B1: stage 1, stage 2, close 2; B2: stage 1, territory 1, exit 1, undo 1
    assert_eq!(events.len(), 11);
    let positions: Vec<i64> = events
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    let undo = events.last().unwrap();
    assert_eq!(undo["type"], "CommandUndone");
    assert_eq!(undo["data"]["undone_sequences"], serde_json::json!([4]));
    let b1_types: Vec<&str> = events
        .iter()
        .filter(|e| e["beneficiary_id"] == events[0]["beneficiary_id"])
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        b1_types,
        [
            "Enrolled",
            "StageEntered",
            "StageExited",
            "StageEntered",
            "StageExited",
            "PathwayClosed"
        ]
    );

    let tail = run(
        filiera(dir.path())
            .args(["export", "--after"])
            .arg(positions[8].to_string()),
        None,
    );
    assert_eq!(String::from_utf8(tail.stdout).unwrap().lines().count(), 2);
}

#[test]
fn import_stops_at_a_refused_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = r#"{"beneficiary": "X", "command": "enrol", "territory": "LOM", "on": "2021-03-01", "referral": "other"}
{"beneficiary": "X", "command": "stage", "stage": "apprenticeship", "on": "2021-03-02"}
{"beneficiary": "X", "command": "stage", "stage": "internship", "on": "2021-03-02"}
"#;
    let output = run(filiera(dir.path()).args(["import", "-"]), Some(input));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("unknown_stage"), "{stderr}");

    let keep_going = run(
        filiera(dir.path()).args(["import", "-", "--keep-going", "--batch", "retry"]),
        Some(input),
    );
    assert!(keep_going.status.success());
    let summary: Value = serde_json::from_slice(&keep_going.stdout).unwrap();
    assert_eq!(
        (summary["applied"].as_u64(), summary["refused"].as_u64()),
        (Some(2), Some(1))
    );

    // A refused enrolment with --keep-going: its later lines are refused too, the rest goes on.
    let refused_enrolment = r#"{"beneficiary": "A", "command": "enrol", "territory": "ATLANTIS", "on": "2021-03-01", "referral": "other"}
{"beneficiary": "A", "command": "stage", "stage": "internship", "on": "2021-03-02"}
{"beneficiary": "B", "command": "enrol", "territory": "LOM", "on": "2021-03-01", "referral": "other"}
"#;
    let output = run(
        filiera(dir.path()).args(["import", "-", "--keep-going", "--batch", "atlantis"]),
        Some(refused_enrolment),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (summary["applied"].as_u64(), summary["refused"].as_u64()),
        (Some(1), Some(2))
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2 (beneficiary `A`): skipped"),
        "{stderr}"
    );

    let malformed = run(
        filiera(dir.path()).args(["import", "-"]),
        Some("{\"beneficiary\": \"Y\", \"command\": \"teleport\"}\n"),
    );
    assert!(!malformed.status.success());
    assert!(String::from_utf8_lossy(&malformed.stderr).contains("line 1"));
    let orphan = run(
        filiera(dir.path()).args(["import", "-", "--batch", "orphan"]),
        Some("{\"beneficiary\": \"Z\", \"command\": \"reopen\", \"on\": \"2021-01-01\"}\n"),
    );
    assert!(String::from_utf8_lossy(&orphan.stderr).contains("no earlier `enrol`"));
}

#[test]
fn a_bad_configuration_stops_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        filiera(dir.path())
            .env("FILIERA_LISTEN", "not-an-address")
            .arg("serve"),
        None,
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not-an-address"));
}

#[test]
fn bench_measures_a_small_generated_history() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(
        filiera(dir.path()).current_dir(dir.path()).args([
            "bench",
            "--events",
            "2000",
            "--runs",
            "1",
            "--store-events",
            "200",
            "--write-commands",
            "80",
        ]),
        None,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("Generated: 2000 events"), "{report}");
    assert!(report.contains("metrics, region (LOM)"), "{report}");
    assert!(report.contains("baseline"), "{report}");
    assert!(
        report.contains("SQLite: writes, 80 commands by 8 concurrent writer(s)"),
        "{report}"
    );
}
