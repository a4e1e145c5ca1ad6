//! Schemathesis, the schema-driven API tester, against a real `filiera serve` over an embedded
//! store: it reads `/openapi.json`, generates requests valid and invalid against it, and checks
//! every answer. The run fails on any failure Schemathesis reports; what it checks and why a
//! few operations have their `positive_data_acceptance` replaced is in
//! `tests/schemathesis/schemathesis.toml`, `tests/schemathesis/hooks.py` and docs/openapi.md.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// The checks of the run: no server error, every answer documented for its operation, in the
/// documented media type and schema, invalid data refused, valid data accepted unless the
/// state it meets or a documented business rule refuses it (`business_rule_refusals_only`,
/// `tests/schemathesis/hooks.py`, in place of Schemathesis's `positive_data_acceptance`).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,negative_data_rejection,business_rule_refusals_only";

/// `filiera` over the embedded store in `data_dir`, its token secret generated there, as the
/// README's first steps run it.
fn embedded(data_dir: &Path) -> Command {
    let mut command = common::clean_command();
    command
        .env_remove("FILIERA_AUTH_SECRET")
        .env("FILIERA_DATA_DIR", data_dir);
    command
}

fn output(command: &mut Command) -> Output {
    let out = command
        .stdin(Stdio::null())
        .output()
        .expect("the command runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A history for the GET routes to answer from: the returned beneficiary is enrolled with
/// personal data, assessed, through two stages, moved, closed and reopened; others are enrolled
/// elsewhere, one with an undo.
async fn seed(client: &reqwest::Client, base: &str) -> String {
    let post = |path: String, body: Value| {
        let request = client.post(format!("{base}{path}")).json(&body);
        async move {
            let answer = request.send().await.expect("the server answers");
            let status = answer.status();
            let body: Value = answer.json().await.expect("JSON");
            assert!(status.is_success(), "{path}: {status} {body:#}");
            body
        }
    };
    let enrolled = post(
        "/v1/beneficiaries".into(),
        json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10",
               "referral": "social_services", "support_band": "medium",
               "person": {"fiscal_code": "RSSMRA80A01H501U", "given_name": "Mario",
                          "family_name": "Rossi", "birth_date": "1980-01-01"}}),
    )
    .await;
    let id = enrolled["id"].as_str().expect("an id").to_owned();
    let at = |suffix: &str| format!("/v1/beneficiaries/{id}{suffix}");
    post(
        at("/assessment"),
        json!({"on": "2024-01-12", "kind": "multidisciplinary", "occupability": "low",
               "team": ["social_services", "employment_centre"]}),
    )
    .await;
    post(
        at("/stage"),
        json!({"stage": "socio_occupational", "on": "2024-01-15"}),
    )
    .await;
    post(
        at("/stage"),
        json!({"stage": "internship", "on": "2024-03-01", "provider": "Coop Alfa"}),
    )
    .await;
    post(
        at("/territory"),
        json!({"territory": "LOM-LC-LECCO", "on": "2024-04-01"}),
    )
    .await;
    post(
        at("/close"),
        json!({"on": "2024-06-30", "outcome": "employed"}),
    )
    .await;
    post(at("/reopen"), json!({"on": "2024-09-01"})).await;
    for (territory, on) in [("LOM-MI", "2024-02-01"), ("LOM-BG", "2024-05-01")] {
        let other = post(
            "/v1/beneficiaries".into(),
            json!({"territory": territory, "on": on, "referral": "self"}),
        )
        .await;
        let other = other["id"].as_str().expect("an id").to_owned();
        post(
            format!("/v1/beneficiaries/{other}/stage"),
            json!({"stage": "internship", "on": on}),
        )
        .await;
        post(
            format!("/v1/beneficiaries/{other}/undo"),
            json!({"reason": "entered twice"}),
        )
        .await;
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_against_the_served_document() {
    let st = filiera_testkit::python::script("st").expect("the test environment's Schemathesis");
    let dir = tempfile::tempdir().unwrap();
    let token = String::from_utf8(
        output(embedded(dir.path()).args(["token", "issue", "--role", "administrator"])).stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let client = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let server = common::start_with(embedded(dir.path()), &client).await;
    let beneficiary = seed(&client, &server.base).await;

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let reports = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis");
    let _ = std::fs::remove_dir_all(&reports);
    let junit = reports.join("junit.xml");
    let started = std::time::Instant::now();
    let run = tokio::task::spawn_blocking({
        let base = server.base.clone();
        let junit = junit.clone();
        let hypothesis = reports.join("hypothesis");
        move || {
            Command::new(st)
                .current_dir(&config)
                .env("FILIERA_BENEFICIARY", &beneficiary)
                .env("NO_COLOR", "1")
                // Hypothesis's own files go to the reports, not into the source tree.
                .env("HYPOTHESIS_STORAGE_DIRECTORY", &hypothesis)
                .arg("--config-file")
                .arg(config.join("schemathesis.toml"))
                .arg("run")
                .arg(format!("{base}/openapi.json"))
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args(["--checks", CHECKS])
                .arg("--report-junit-path")
                .arg(&junit)
                .args(["--report", "junit"])
                .arg("--no-color")
                .stdin(Stdio::null())
                .output()
                .expect("Schemathesis runs")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("output.txt"), format!("{stdout}\n{stderr}")).unwrap();
    assert!(
        run.status.success(),
        "Schemathesis reports failures ({:?}, {:.0?}); the whole output is in {}:\n{stdout}\n{stderr}",
        run.status,
        started.elapsed(),
        reports.display()
    );

    // It did test every operation of the document.
    let doc: Value = common::get(&client, format!("{}/openapi.json", server.base)).await;
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    let report = std::fs::read_to_string(&junit).expect("the JUnit report");
    let tested = report.matches("<testcase ").count();
    assert!(
        tested >= operations,
        "{tested} operations tested of {operations}:\n{stdout}"
    );
}
