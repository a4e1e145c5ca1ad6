//! The personal-data vault over HTTP (SPEC 5.2): an identity given at enrolment is kept out
//! of every event and read back only by those in scope, each read logged; a fiscal code finds
//! its beneficiary in scope only; erasure makes the identity unreadable for good, is recorded
//! as `PersonalDataErased`, and changes no metric.

use filiera_auth::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, assert_no_identity_logged, fresh_fiscal_code, spawn_app, token};

filiera_testkit::on_both_backends!(
    an_identity_is_read_back_in_scope_and_every_read_is_logged,
    a_fiscal_code_finds_its_beneficiary_in_scope_only,
    erasure_makes_the_identity_unreadable_and_changes_no_metric,
    a_fiscal_code_belongs_to_one_beneficiary,
    a_malformed_identity_is_refused_and_nothing_is_written,
    no_identity_is_ever_logged,
);

/// Every identity of this test binary went through enrolment, reads, lookups, refusals and
/// erasure somewhere in the suite; none of it reached a log line (captured at debug level for
/// the whole binary).
async fn no_identity_is_ever_logged(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, code) = app.enrol_person("LOM-BG-BERGAMO").await;
    assert_eq!(
        app.get(&format!("/v1/beneficiaries/{id}/person"))
            .await
            .status,
        200
    );
    app.get(&format!("/v1/beneficiaries?fiscal_code={code}"))
        .await;
    app.post("/v1/beneficiaries", enrolment(&code)).await;
    let mut bad = enrolment(&fresh_fiscal_code());
    bad["person"]["family_name"] = json!("Bianchi\u{7}");
    app.post("/v1/beneficiaries", bad).await;
    let erased = app
        .send_as(
            Some(&token(Role::Administrator, &[])),
            Method::DELETE,
            &format!("/v1/beneficiaries/{id}/person"),
            None,
        )
        .await;
    assert_eq!(erased.status, 204);
    assert_no_identity_logged();
}

fn person(fiscal_code: &str) -> Value {
    json!({"fiscal_code": fiscal_code, "given_name": "Giulia", "family_name": "Bianchi",
           "birth_date": "1975-05-04"})
}

fn enrolment(fiscal_code: &str) -> Value {
    json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10", "referral": "social_services",
           "person": person(fiscal_code)})
}

async fn an_identity_is_read_back_in_scope_and_every_read_is_logged(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = fresh_fiscal_code();
    let enrolled = app.post("/v1/beneficiaries", enrolment(&code)).await;
    assert_eq!(enrolled.status, 201, "{:#}", enrolled.body);
    let id = enrolled.body["id"].as_str().unwrap().to_owned();

    // The identity is in no event, no feed item, no state.
    for text in [
        app.get(&format!("/v1/beneficiaries/{id}/history"))
            .await
            .body,
        app.get("/v1/events").await.body,
        enrolled.body.clone(),
    ]
    .map(|v| v.to_string())
    {
        assert!(!text.contains(&code), "{text}");
        assert!(!text.contains("Bianchi"), "{text}");
    }

    let operator = token(Role::Operator, &["LOM-BG"]);
    let read = app
        .get_as(&operator, &format!("/v1/beneficiaries/{id}/person"))
        .await;
    assert_eq!(read.status, 200, "{:#}", read.body);
    assert_eq!(read.body, person(&code));
    // Outside the operator's territories it does not exist; evaluators never see it.
    app.get_as(
        &token(Role::Operator, &["PIE"]),
        &format!("/v1/beneficiaries/{id}/person"),
    )
    .await
    .problem(404, "beneficiary_not_found");
    app.get_as(
        &token(Role::Evaluator, &[]),
        &format!("/v1/beneficiaries/{id}/person"),
    )
    .await
    .problem(403, "forbidden");

    let log = app.get(&format!("/v1/access-log?beneficiary={id}")).await;
    assert_eq!(log.status, 200, "{:#}", log.body);
    let entries = log.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "one read, one entry: {:#}", log.body);
    assert_eq!(entries[0]["action"], "read");
    assert_eq!(entries[0]["role"], "operator");
    assert_eq!(entries[0]["beneficiary_id"], id.as_str());
    assert!(
        entries[0]["subject"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    app.get_as(&operator, "/v1/access-log")
        .await
        .problem(403, "forbidden");
}

async fn a_fiscal_code_finds_its_beneficiary_in_scope_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, code) = app.enrol_person("LOM-BG-BERGAMO").await;
    // Any case, spaces ignored.
    let spaced = format!("{} {}", code[..8].to_ascii_lowercase(), &code[8..]);
    let query = |code: &str| format!("/v1/beneficiaries?fiscal_code={}", code.replace(' ', "%20"));
    let found = app
        .get_as(&token(Role::Operator, &["LOM-BG"]), &query(&spaced))
        .await;
    assert_eq!(found.status, 200, "{:#}", found.body);
    assert_eq!(found.body["beneficiaries"], json!([id]));
    let hidden = app
        .get_as(&token(Role::Operator, &["PIE"]), &query(&code))
        .await;
    assert_eq!(hidden.body["beneficiaries"], json!([]), "{:#}", hidden.body);
    let unknown = app.get(&query(&fresh_fiscal_code())).await;
    assert_eq!(unknown.body["beneficiaries"], json!([]));
    app.get(&query("NOT-A-CODE"))
        .await
        .problem(422, "invalid_field");
    // Lookups read no identity: nothing in the access log.
    let log = app.get("/v1/access-log").await;
    assert_eq!(log.body["entries"], json!([]), "{:#}", log.body);
}

async fn erasure_makes_the_identity_unreadable_and_changes_no_metric(backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, code) = app.enrol_person("LOM-BG-BERGAMO").await;
    assert_eq!(app.enter(&id, "internship", "2024-02-01").await.status, 200);
    app.caught_up().await;
    let metrics = "/v1/metrics?territory=LOM&from=2024-01-01&to=2024-12-31";
    let before = app.get(metrics).await.body;

    let path = format!("/v1/beneficiaries/{id}/person");
    let erased = app
        .send_as(
            Some(&token(Role::Administrator, &[])),
            Method::DELETE,
            &path,
            None,
        )
        .await;
    assert_eq!(erased.status, 204, "{:#}", erased.body);

    app.get(&path).await.problem(410, "personal_data_erased");
    let found = app
        .get(&format!("/v1/beneficiaries?fiscal_code={code}"))
        .await;
    assert_eq!(found.body["beneficiaries"], json!([]));
    let history = app
        .get(&format!("/v1/beneficiaries/{id}/history"))
        .await
        .body;
    let last = history["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["type"], "PersonalDataErased", "{history:#}");
    assert!(!history.to_string().contains(&code));

    app.caught_up().await;
    let after = app.get(metrics).await.body;
    assert_eq!(before["enrolments"], 1, "{before:#}");
    assert_eq!(
        strip_echo(before),
        strip_echo(after),
        "erasure changed the metrics"
    );
    // Once only.
    app.send_as(
        Some(&token(Role::Administrator, &[])),
        Method::DELETE,
        &path,
        None,
    )
    .await
    .problem(410, "personal_data_erased");
    // Operators cannot erase.
    app.send_as(
        Some(&token(Role::Operator, &["LOM-BG"])),
        Method::DELETE,
        &path,
        None,
    )
    .await
    .problem(403, "forbidden");
}

/// The metrics document without the query echo (its `known_at` moves with the clock).
fn strip_echo(mut metrics: Value) -> Value {
    if let Some(object) = metrics.as_object_mut() {
        object.remove("query");
    }
    metrics
}

async fn a_fiscal_code_belongs_to_one_beneficiary(backend: Backend) {
    let app = spawn_app(backend).await;
    let code = fresh_fiscal_code();
    let first = app
        .post_with("/v1/beneficiaries", enrolment(&code), Some("first"))
        .await;
    assert_eq!(first.status, 201, "{:#}", first.body);
    let head = app.store.head().await.unwrap();
    app.post("/v1/beneficiaries", enrolment(&code))
        .await
        .problem(409, "fiscal_code_taken");
    assert_eq!(
        app.store.head().await.unwrap(),
        head,
        "a refusal writes nothing"
    );
    // The retry of the first request answers it again.
    let retry = app
        .post_with("/v1/beneficiaries", enrolment(&code), Some("first"))
        .await;
    assert_eq!(retry.status, 201, "{:#}", retry.body);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(app.store.head().await.unwrap(), head);
}

async fn a_malformed_identity_is_refused_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = enrolment("RSSMRA80A01H50");
    let answer = app.post("/v1/beneficiaries", body.clone()).await;
    answer.problem(422, "invalid_field");
    assert_eq!(
        answer.body["field"], "person.fiscal_code",
        "{:#}",
        answer.body
    );
    body["person"]["fiscal_code"] = json!(fresh_fiscal_code());
    body["person"]["given_name"] = json!("");
    let answer = app.post("/v1/beneficiaries", body.clone()).await;
    answer.problem(422, "invalid_field");
    assert_eq!(
        answer.body["field"], "person.given_name",
        "{:#}",
        answer.body
    );
    body["person"]["nickname"] = json!("x");
    app.post("/v1/beneficiaries", body)
        .await
        .problem(422, "invalid_field");
    assert_eq!(app.store.head().await.unwrap(), 0);
}
