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

/// `assess` lines take the body of `POST /v1/beneficiaries/{id}/assessment`; the export writes
/// the `NeedsAssessed` events like any other, and a refused assessment names its rule.
#[test]
fn import_records_assessments_and_export_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = r#"{"beneficiary": "A", "command": "enrol", "territory": "LOM-BG-BERGAMO", "on": "2021-03-01", "referral": "social_services"}
{"beneficiary": "A", "command": "assess", "on": "2021-03-02", "kind": "multidisciplinary", "occupability": "low", "team": ["social_services", "employment_centre"]}
{"beneficiary": "A", "command": "assess", "on": "2021-03-03", "kind": "multidisciplinary", "occupability": "high", "team": ["health_service"]}
"#;
    let output = run(filiera(dir.path()).args(["import", "-"]), Some(input));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains("team_too_small"), "{stderr}");

    let export = run(filiera(dir.path()).arg("export"), None);
    assert!(export.status.success());
    let events: Vec<Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    let assessed = &events[1];
    assert_eq!(assessed["type"], "NeedsAssessed");
    assert_eq!(assessed["sequence"], 2);
    assert_eq!(assessed["territory"], "LOM-BG-BERGAMO");
    assert_eq!(
        assessed["data"],
        serde_json::json!({"on": "2021-03-02", "kind": "multidisciplinary",
                           "occupability": "low",
                           "team": ["social_services", "employment_centre"]})
    );
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
    // Whole histories are generated until the count is reached, so it may go a little over.
    let generated: usize = report
        .split("Generated: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `Generated:` line: {report}"));
    assert!((2000..2100).contains(&generated), "{report}");
    assert!(report.contains("metrics, region (LOM)"), "{report}");
    assert!(report.contains("baseline"), "{report}");
    assert!(
        report.contains("SQLite: writes, 80 commands by 8 concurrent writer(s)"),
        "{report}"
    );
}

/// `filiera` over `data_dir` with no token secret configured: the embedded case.
fn embedded(data_dir: &std::path::Path) -> Command {
    let mut command = filiera(data_dir);
    command.env_remove("FILIERA_AUTH_SECRET");
    command
}

#[test]
fn token_issue_signs_with_the_data_folders_secret_and_checks_its_arguments() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let issued = run(
        embedded(dir.path()).args([
            "token",
            "issue",
            "--role",
            "operator",
            "--territory",
            "LOM-BG",
            "--subject",
            "anna",
            "--ttl",
            "2h",
        ]),
        None,
    );
    let stderr = String::from_utf8_lossy(&issued.stderr);
    assert!(issued.status.success(), "{stderr}");
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "{token}");
    // The secret was generated owner-only, and the token verifies with it.
    let path = dir.path().join("auth-secret");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&path).unwrap();
    assert!(
        !stderr.contains(secret.trim()),
        "the secret is printed: {stderr}"
    );
    let (secret, _) = filiera_auth::load_or_generate(None, dir.path()).unwrap();
    let keys = filiera_auth::TokenKeys::new(&secret).unwrap();
    let principal = keys
        .verify(&token, &filiera_domain::TerritoryRegistry::sample())
        .unwrap();
    assert_eq!(principal.subject, "anna");
    assert_eq!(principal.role, filiera_auth::Role::Operator);
    assert_eq!(principal.territories[0].as_str(), "LOM-BG");

    for (args, complaint) in [
        (
            &["--role", "operator", "--territory", "ATLANTIS"][..],
            "unknown territory `ATLANTIS`",
        ),
        (
            &["--role", "operator"][..],
            "needs at least one --territory",
        ),
        (
            &["--role", "subscriber"][..],
            "needs at least one --territory",
        ),
        (
            &["--role", "administrator", "--territory", "LOM"][..],
            "drop --territory",
        ),
        (&["--role", "root"][..], "unknown role `root`"),
        (&["--role", "evaluator", "--ttl", "soon"][..], "--ttl"),
    ] {
        let refused = run(
            embedded(dir.path()).args(["token", "issue"]).args(args),
            None,
        );
        assert!(!refused.status.success(), "{args:?}");
        assert!(refused.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
    // An evaluator without territories reads every territory.
    let evaluator = run(
        embedded(dir.path()).args(["token", "issue", "--role", "evaluator"]),
        None,
    );
    assert!(evaluator.status.success());
}

/// The README's first steps from an empty folder: the first `serve` prints the command that
/// issues an administrator's token; that command's token opens the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_how_to_get_an_administrators_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = filiera_testkit::free_port();
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("exec \"$0\" serve 2>&1")
        .arg(env!("CARGO_BIN_EXE_filiera"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FILIERA_") {
            shell.env_remove(key);
        }
    }
    shell
        .env("FILIERA_DATA_DIR", dir.path())
        .env("FILIERA_LISTEN", format!("127.0.0.1:{port}"))
        .env("FILIERA_LOG", "info");
    let server = filiera_testkit::ChildLines::spawn(&mut shell).unwrap();
    let printed = server.lines_for(std::time::Duration::from_secs(3));
    let command = printed
        .iter()
        .find(|line| line.contains("token issue --role administrator"))
        .unwrap_or_else(|| panic!("no token command among {printed:#?}"))
        .trim()
        .to_owned();
    assert!(
        command.starts_with(&format!(
            "FILIERA_DATA_DIR={} filiera token issue",
            dir.path().display()
        )),
        "{command}"
    );
    let secret = std::fs::read_to_string(dir.path().join("auth-secret")).unwrap();
    assert!(
        printed.iter().all(|line| !line.contains(secret.trim())),
        "the secret is printed"
    );

    let issued = run(
        embedded(dir.path()).args(["token", "issue", "--role", "administrator"]),
        None,
    );
    assert!(issued.status.success());
    let token = String::from_utf8(issued.stdout).unwrap().trim().to_owned();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let without = client
        .get(format!("{base}/v1/territories"))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);
    let with = client
        .get(format!("{base}/v1/territories"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    // A second start finds the secret and says nothing about it.
    drop(server);
    let port = filiera_testkit::free_port();
    shell.env("FILIERA_LISTEN", format!("127.0.0.1:{port}"));
    let again = filiera_testkit::ChildLines::spawn(&mut shell).unwrap();
    let printed = again.lines_for(std::time::Duration::from_secs(2));
    assert!(
        printed.iter().all(|line| !line.contains("token issue")),
        "{printed:#?}"
    );
}

/// A data folder into which [`HISTORY`] was imported.
fn imported_history() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("legacy.ndjson");
    std::fs::write(&file, HISTORY).unwrap();
    let imported = run(filiera(dir.path()).arg("import").arg(&file), None);
    assert!(imported.status.success());
    dir
}

/// What `filiera report ARGS` prints over `dir`; it must succeed.
fn report(dir: &std::path::Path, args: &[&str]) -> String {
    let output = run(filiera(dir).arg("report").args(args), None);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn report_prints_a_monthly_series_and_a_breakdown() {
    let dir = imported_history();
    let report = |args: &[&str]| {
        let common = ["--territory", "LOM", "--known-at", "2100-01-01"];
        report(dir.path(), &[&common[..], args].concat())
    };
    let period = ["--from", "2021-03-10", "--to", "2021-05-31"];
    let series: Value =
        serde_json::from_str(&report(&[&period[..], &["--series", "month"]].concat())).unwrap();
    assert_eq!(series["interval"], "month");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    assert_eq!(points[0]["from"], "2021-03-10");
    assert_eq!(points[2]["to"], "2021-05-31");
    // Each point is the plain report of its part of the period.
    let april: Value =
        serde_json::from_str(&report(&["--from", "2021-04-01", "--to", "2021-04-30"])).unwrap();
    assert_eq!(points[1]["metrics"], april);
    assert_eq!(april["enrolments"], 1);

    let breakdown: Value =
        serde_json::from_str(&report(&[&period[..], &["--breakdown"]].concat())).unwrap();
    assert_eq!(breakdown["territory"], "LOM");
    // B2 enrolled in Lecco on 2021-04-01; B1 before the period.
    let lecco = breakdown["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["territory"] == "LOM-LC")
        .unwrap();
    assert_eq!(lecco["metrics"]["enrolments"], 1);

    let csv = report(&[&period[..], &["--series", "month", "--format", "csv"]].concat());
    assert!(csv.starts_with("from,to,metric,value\n"), "{csv}");
    assert!(
        csv.contains("\n2021-04-01,2021-04-30,enrolments,1\n"),
        "{csv}"
    );
    let csv = report(&[&period[..], &["--breakdown", "--format", "csv"]].concat());
    assert!(csv.starts_with("territory,metric,value\n"), "{csv}");
    assert!(csv.contains("\nLOM-LC,enrolments,1\n"), "{csv}");

    // Refused like the API: another interval, or more than 120 months.
    let refused = run(
        filiera(dir.path()).args(["report", "--series", "week", "--from", "2021-01-01"]),
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("interval"));
    let refused = run(
        filiera(dir.path()).args(["report", "--series", "month"]),
        None,
    );
    assert!(!refused.status.success());
}

#[test]
fn report_prints_the_provider_scorecard() {
    let dir = imported_history();
    let report = |args: &[&str]| {
        let common = [
            "--providers",
            "--territory",
            "LOM",
            "--from",
            "2021-01-01",
            "--to",
            "2022-12-31",
            "--known-at",
            "2100-01-01",
        ];
        report(dir.path(), &[&common[..], args].concat())
    };
    // B1's internship with Coop from 2021-09-01 ends when the pathway closes `employed` on
    // 2022-01-10 (131 days): a placement on the day of the exit.
    let card: Value = serde_json::from_str(&report(&[])).unwrap();
    assert_eq!(card["query"]["territory"], "LOM");
    let providers = card["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 1, "{card:#}");
    let coop = &providers[0];
    assert_eq!(coop["provider"], "Coop");
    assert_eq!(coop["episodes"], 1);
    assert_eq!(coop["transitions"]["progression"], 1);
    assert_eq!(coop["exits"]["pathway_closed"], 1);
    assert_eq!(coop["time_in_stage_days"]["median"], 131.0);
    assert_eq!(coop["placements_within_180_days"], 1);
    assert_eq!(coop["placement_rate"], 1.0);
    assert_eq!(coop["occupability_change"]["unknown"], 1);

    let csv = report(&["--format", "csv"]);
    assert!(csv.starts_with("provider,metric,value\n"), "{csv}");
    assert!(
        csv.contains("\nCoop,placements_within_180_days,1\n"),
        "{csv}"
    );

    // One document at a time.
    let refused = run(
        filiera(dir.path()).args(["report", "--providers", "--breakdown"]),
        None,
    );
    assert!(!refused.status.success());
}

/// `filiera bench --json` on a small history, on both stores: one document with every
/// scenario, each throughput beside its baseline (figures are not checked, only that they were
/// measured and agree with each other).
#[test]
fn bench_json_prints_every_scenario_beside_its_baseline() {
    let admin = filiera_testkit::pg_admin_url();
    for postgres in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut command = filiera(dir.path());
        command.current_dir(dir.path()).args([
            "bench",
            "--json",
            "--events",
            "3000",
            "--clients",
            "4",
            "--ingest-commands",
            "24",
            "--query-runs",
            "3",
        ]);
        if postgres {
            command.args(["--postgres-admin-url", &admin]);
        }
        let output = run(&mut command, None);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            report["store"],
            if postgres { "postgres" } else { "sqlite" }
        );
        let events = report["events"].as_f64().unwrap();
        assert!((3000.0..3200.0).contains(&events), "{report}");
        let scenarios = &report["scenarios"];
        for name in ["import", "replay", "rebuild", "ingest"] {
            let scenario = &scenarios[name];
            let (value, baseline, ratio) = (
                scenario["value"].as_f64().unwrap(),
                scenario["baseline"].as_f64().unwrap(),
                scenario["ratio"].as_f64().unwrap(),
            );
            assert!(value > 0.0 && baseline > 0.0, "{name}: {scenario}");
            assert!(
                (ratio - value / baseline).abs() < 0.01 + ratio * 0.01,
                "{name}: {scenario}"
            );
        }
        for name in ["import", "replay", "rebuild"] {
            assert!(scenarios[name]["peak_rss_mib"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(scenarios["ingest"]["commands"], 24);
        assert_eq!(scenarios["ingest"]["events"], 24, "one event per command");
        assert_eq!(scenarios["ingest"]["clients"], 4);
        let query = &scenarios["query"];
        for field in [
            "region_p50_ms",
            "region_p99_ms",
            "ambito_p50_ms",
            "ambito_p99_ms",
            "breakdown_p99_ms",
            "series24_p99_ms",
        ] {
            assert!(query[field].as_f64().unwrap() > 0.0, "{field}: {query}");
        }
        assert!(query["region_p99_ms"].as_f64() >= query["region_p50_ms"].as_f64());
        assert_eq!(query["breakdown_children"], 600);
        assert!(scenarios["memory"]["peak_rss_mib"].as_f64().unwrap() > 0.0);
    }
}

/// The CSV report names every matrix cell of the JSON one; a first entry (`from: null`) reads
/// `entry>` like the `transitions.entry` it is counted in, never an empty `>`.
#[test]
fn report_csv_names_first_entries() {
    let dir = tempfile::tempdir().unwrap();
    let imported = run(filiera(dir.path()).args(["import", "-"]), Some(HISTORY));
    assert!(imported.status.success());
    let report = |format: &str| {
        let output = run(
            filiera(dir.path()).args(["report", "--format", format]),
            None,
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let json: Value = serde_json::from_str(&report("json")).unwrap();
    let csv = report("csv");
    let cells = json["transition_matrix"].as_array().unwrap();
    assert!(cells.iter().any(|c| c["from"].is_null()), "{json}");
    let rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.starts_with("transition_matrix."))
        .collect();
    assert_eq!(rows.len(), cells.len(), "{csv}");
    for cell in cells {
        let from = cell["from"].as_str().unwrap_or("entry");
        let row = format!(
            "transition_matrix.{from}>{},{}",
            cell["to"].as_str().unwrap(),
            cell["count"]
        );
        assert!(rows.contains(&row.as_str()), "{row} in {csv}");
    }
    assert!(!csv.contains("transition_matrix.>"), "{csv}");
}

/// `filiera --help` reads like a tool's help: what it is for, the everyday commands, each
/// subcommand on one short line, and none of the source's doc-comment markup.
#[test]
fn top_level_help_reads_like_a_tool() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(filiera(dir.path()).arg("--help"), None);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(
        help.starts_with("Record labour-inclusion pathways"),
        "{help}"
    );
    assert!(help.contains("Everyday commands:"), "{help}");
    for command in [
        "serve", "migrate", "import", "report", "rebuild", "tail", "token", "keys", "bench",
        "export", "generate", "backup",
    ] {
        let line = help
            .lines()
            .find(|l| {
                l.strip_prefix("  ")
                    .is_some_and(|l| l.starts_with(&format!("{command} ")))
            })
            .unwrap_or_else(|| panic!("`{command}` is listed in {help}"));
        assert!(line.len() <= 90, "one short line: {line}");
    }
    for artefact in ["`", "///", "//!", "The filiera binary:", "[`"] {
        assert!(!help.contains(artefact), "`{artefact}` in {help}");
    }
    let short = run(filiera(dir.path()).arg("-h"), None);
    let short = String::from_utf8(short.stdout).unwrap();
    assert!(
        short.lines().next().is_some_and(|l| l.len() <= 90),
        "{short}"
    );
}

/// The scope options choose the events of the process-mining formats: the NDJSON export (every
/// stored event) refuses them and they refuse `--after`, rather than one silently ignoring the
/// other; a scope the report would refuse is refused the same way.
#[test]
fn export_refuses_options_of_another_format() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["export", "--territory", "LOM"], "--territory"),
        (&["export", "--format", "xes", "--after", "3"], "--after"),
        (
            &["export", "--format", "ocel2", "--territory", "NOWHERE"],
            "NOWHERE",
        ),
    ];
    for (args, named) in cases {
        let output = run(filiera(dir.path()).args(args), None);
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
