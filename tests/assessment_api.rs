//! Needs assessments over HTTP (SPEC 2.5): `POST /v1/beneficiaries/{id}/assessment`, its
//! refusals, undo, the state's `occupability`, and the event in histories and the feed.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

filiera_testkit::on_both_backends!(
    an_assessment_is_recorded_and_shown_in_the_state,
    each_refusal_names_its_rule_and_writes_nothing,
    undo_voids_an_assessment_and_the_latest_one_wins,
    history_and_feed_show_the_assessment,
    a_retried_assessment_writes_nothing_new,
);

fn assessment(on: &str, kind: &str, occupability: &str, team: &[&str]) -> Value {
    json!({"on": on, "kind": kind, "occupability": occupability, "team": team})
}

async fn assess(app: &TestApp, id: &str, body: Value) -> crate::helpers::Answer {
    app.post(&format!("/v1/beneficiaries/{id}/assessment"), body)
        .await
}

async fn an_assessment_is_recorded_and_shown_in_the_state(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let state = app.get(&format!("/v1/beneficiaries/{id}")).await;
    assert_eq!(state.body["occupability"], Value::Null);

    let answer = assess(
        &app,
        &id,
        assessment(
            "2024-01-12",
            "multidisciplinary",
            "low",
            &["social_services", "employment_centre", "health_service"],
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["id"], id.as_str());
    assert_eq!(answer.body["version"], 2);
    assert_eq!(answer.body["occupability"], "low");
    assert_eq!(answer.body["status"], "open");
    assert_eq!(answer.body["latest_on"], "2024-01-12");
    // No classification changes: no stage, no entry counted.
    assert_eq!(answer.body["current_stage"], Value::Null);
    assert_eq!(answer.body["counts"]["stage_entries"], 0);

    let state = app.get(&format!("/v1/beneficiaries/{id}")).await;
    assert_eq!(state.body, answer.body);

    // A stage entry afterwards is classified as if there were no assessment.
    let entered = app.enter(&id, "internship", "2024-01-12").await;
    assert_eq!(entered.body["transition"], "entry");
    assert_eq!(entered.body["state"]["occupability"], "low");
}

async fn each_refusal_names_its_rule_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&id, "internship", "2024-03-01").await;
    let before = app.store.head().await.unwrap();

    for (body, code, field) in [
        (
            assessment("2024-03-02", "initial", "medium", &[]),
            "empty_team",
            "team",
        ),
        (
            assessment(
                "2024-03-02",
                "review",
                "medium",
                &["third_sector", "social_services", "third_sector"],
            ),
            "duplicate_team_member",
            "team",
        ),
        (
            assessment(
                "2024-03-02",
                "multidisciplinary",
                "medium",
                &["social_services"],
            ),
            "team_too_small",
            "team",
        ),
        (
            assessment(
                "2024-03-02",
                "multidisciplinary",
                "medium",
                &["social_services", "social_services"],
            ),
            "duplicate_team_member",
            "team",
        ),
        (
            assessment("2024-02-01", "initial", "medium", &["social_services"]),
            "out_of_order",
            "on",
        ),
        (
            assessment("2999-01-01", "initial", "medium", &["social_services"]),
            "date_in_future",
            "on",
        ),
        (
            assessment("1999-12-31", "initial", "medium", &["social_services"]),
            "date_too_early",
            "on",
        ),
    ] {
        let answer = assess(&app, &id, body.clone()).await;
        let problem = answer.problem(422, code);
        assert_eq!(problem["field"], field, "{body}");
        if field == "team" {
            assert!(
                problem["detail"].as_str().unwrap().contains("`team`"),
                "{problem}"
            );
        }
    }

    // Values outside the enumerations, and unknown members, are shape errors naming the field.
    for (body, field) in [
        (
            json!({"on": "2024-03-02", "kind": "annual", "occupability": "low",
                   "team": ["social_services"]}),
            "kind",
        ),
        (
            json!({"on": "2024-03-02", "kind": "initial", "occupability": "average",
                   "team": ["social_services"]}),
            "occupability",
        ),
        (
            json!({"on": "2024-03-02", "kind": "initial", "occupability": "low",
                   "team": ["neighbours"]}),
            "team",
        ),
        (
            json!({"on": "2024-03-02", "kind": "initial", "occupability": "low"}),
            "team",
        ),
        (
            json!({"on": "2024-03-02", "kind": "initial", "occupability": "low",
                   "team": ["social_services"], "score": 3}),
            "score",
        ),
    ] {
        let answer = assess(&app, &id, body.clone()).await;
        let problem = answer.problem(422, "invalid_field");
        assert!(
            problem["field"].as_str().unwrap().starts_with(field),
            "{body}: {problem}"
        );
    }

    let ghost = uuid::Uuid::new_v4().to_string();
    assess(
        &app,
        &ghost,
        assessment("2024-03-02", "initial", "low", &["social_services"]),
    )
    .await
    .problem(404, "beneficiary_not_found");
    assert_eq!(
        app.store.head().await.unwrap(),
        before,
        "nothing was written"
    );

    // A closed spell refuses it.
    app.post(
        &format!("/v1/beneficiaries/{id}/close"),
        json!({"on": "2024-04-01", "outcome": "employed"}),
    )
    .await;
    assess(
        &app,
        &id,
        assessment("2024-04-02", "review", "high", &["employment_centre"]),
    )
    .await
    .problem(409, "pathway_closed");
}

async fn undo_voids_an_assessment_and_the_latest_one_wins(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let first = assess(
        &app,
        &id,
        assessment("2024-01-12", "initial", "low", &["social_services"]),
    )
    .await;
    assert_eq!(first.body["occupability"], "low");
    let second = assess(
        &app,
        &id,
        assessment(
            "2024-03-01",
            "review",
            "high",
            &["employment_centre", "third_sector"],
        ),
    )
    .await;
    assert_eq!(second.body["occupability"], "high");

    let undone = app
        .post(
            &format!("/v1/beneficiaries/{id}/undo"),
            json!({"reason": "review recorded on the wrong person"}),
        )
        .await;
    assert_eq!(undone.status, 200, "{:#}", undone.body);
    assert_eq!(undone.body["occupability"], "low");
    assert_eq!(undone.body["counts"]["corrections"], 1);
    // Its date no longer blocks an earlier one.
    assert_eq!(undone.body["latest_on"], "2024-01-12");

    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    let events = history.body["events"].as_array().unwrap();
    assert_eq!(events[3]["type"], "CommandUndone");
    assert_eq!(events[3]["data"]["undone_sequences"], json!([3]));
    assert_eq!(events[2]["voided"], true);
    assert_eq!(events[1]["voided"], false);

    let undone = app
        .post(
            &format!("/v1/beneficiaries/{id}/undo"),
            json!({"reason": "no assessment yet"}),
        )
        .await;
    assert_eq!(undone.body["occupability"], Value::Null);
    assert_eq!(undone.body["status"], "open");
}

async fn history_and_feed_show_the_assessment(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("PIE-TO-TORINO", "2024-01-10").await;
    let body = assessment(
        "2024-01-20",
        "multidisciplinary",
        "medium",
        &["employment_centre", "social_services"],
    );
    assert_eq!(assess(&app, &id, body.clone()).await.status, 200);

    let data = json!({"on": "2024-01-20", "kind": "multidisciplinary", "occupability": "medium",
                      "team": ["employment_centre", "social_services"]});
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    let event = &history.body["events"][1];
    assert_eq!(event["type"], "NeedsAssessed");
    assert_eq!(event["sequence"], 2);
    assert_eq!(event["territory"], "PIE-TO-TORINO");
    assert_eq!(event["voided"], false);
    assert_eq!(event["data"], data);

    let feed = app.whole_feed().await;
    let item = feed
        .iter()
        .find(|e| e["type"] == "NeedsAssessed")
        .expect("the assessment is in the feed");
    assert_eq!(item["beneficiary_id"], id.as_str());
    assert_eq!(item["data"], data);
    assert!(item.get("voided").is_none());
}

async fn a_retried_assessment_writes_nothing_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-LC-LECCO", "2024-01-10").await;
    let path = format!("/v1/beneficiaries/{id}/assessment");
    let body = assessment("2024-01-11", "initial", "high", &["third_sector"]);
    let first = app.post_with(&path, body.clone(), Some("assess-1")).await;
    assert_eq!(first.status, 200, "{:#}", first.body);
    let retry = app.post_with(&path, body, Some("assess-1")).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let reused = app
        .post_with(
            &path,
            assessment("2024-01-11", "initial", "low", &["third_sector"]),
            Some("assess-1"),
        )
        .await;
    assert_eq!(
        reused.problem(422, "idempotency_key_reused")["field"],
        "Idempotency-Key"
    );
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert_eq!(history.body["events"].as_array().unwrap().len(), 2);
}
