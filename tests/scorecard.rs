//! Needs assessments and providers in the read side over HTTP (SPEC 2.5, 3, 3.1): the
//! assessment fields of `/v1/metrics`, the audit's additions and `/v1/providers/scorecard`,
//! each equal to the offline replay of `filiera report`.

use chrono::Utc;
use filiera_domain::{AuditQuery, MetricsQuery, TerritoryRegistry};
use filiera_http::reports::MetricsParams;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

filiera_testkit::on_both_backends!(assessments_and_providers_reach_every_report_as_offline,);

async fn post_ok(app: &TestApp, path: &str, body: Value) {
    let answer = app.post(path, body).await;
    assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let answer = app.get(path).await;
    assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
    answer.body
}

/// a: assessed by the équipe 20 days after enrolling (`low`), internship with coop-alfa,
/// completed, reviewed `medium`, then a job within 180 days. b: three internships in a row
/// with coop-beta and no assessment (flagged for reiterating).
async fn history(app: &TestApp) -> (String, String) {
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let at = |id: &str, suffix: &str| format!("/v1/beneficiaries/{id}{suffix}");
    post_ok(
        app,
        &at(&a, "/assessment"),
        json!({"on": "2024-01-30", "kind": "multidisciplinary", "occupability": "low",
               "team": ["social_services", "employment_centre"]}),
    )
    .await;
    post_ok(
        app,
        &at(&a, "/stage"),
        json!({"stage": "internship", "on": "2024-02-01", "provider": "coop-alfa"}),
    )
    .await;
    post_ok(
        app,
        &at(&a, "/stage/exit"),
        json!({"on": "2024-04-01", "outcome": "completed"}),
    )
    .await;
    post_ok(
        app,
        &at(&a, "/assessment"),
        json!({"on": "2024-04-10", "kind": "review", "occupability": "medium",
               "team": ["employment_centre"]}),
    )
    .await;
    post_ok(
        app,
        &at(&a, "/stage"),
        json!({"stage": "job_placement", "on": "2024-06-01"}),
    )
    .await;
    let b = app.enrol("LOM-BG-BERGAMO", "2024-02-01").await;
    for on in ["2024-02-05", "2024-03-05", "2024-04-05"] {
        post_ok(
            app,
            &at(&b, "/stage"),
            json!({"stage": "internship", "on": on, "provider": "coop-beta"}),
        )
        .await;
    }
    app.caught_up().await;
    (a, b)
}

async fn assessments_and_providers_reach_every_report_as_offline(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, b) = history(&app).await;
    let options = "territory=LOM&from=2024-01-01&to=2024-12-31&known_at=2030-01-01T00:00:00Z";

    let metrics = get_ok(&app, &format!("/v1/metrics?{options}")).await;
    assert_eq!(
        metrics["assessments"],
        json!({"initial": 0, "multidisciplinary": 1, "review": 1})
    );
    assert_eq!(metrics["time_to_assessment_days"]["median"], 20.0);
    assert_eq!(metrics["spells_without_assessment"], 1);
    let by = &metrics["transitions_by_occupability"];
    assert_eq!(by["low"]["entry"], 1);
    assert_eq!(by["medium"]["progression"], 1);
    assert_eq!(by["unassessed"]["entry"], 1);
    assert_eq!(by["unassessed"]["reiteration"], 2);

    let card = get_ok(&app, &format!("/v1/providers/scorecard?{options}")).await;
    let codes: Vec<&str> = card["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["coop-alfa", "coop-beta"]);
    let alfa = &card["providers"][0];
    assert_eq!(alfa["exits"]["completed"], 1);
    assert_eq!(alfa["placements_within_180_days"], 1);
    assert_eq!(alfa["occupability_change"]["improved"], 1);
    let beta = &card["providers"][1];
    assert_eq!(beta["episodes"], 3);
    assert_eq!(beta["transitions"]["reiteration"], 2);
    assert_eq!(beta["exits"]["moved_on"], 2);

    let audit = get_ok(
        &app,
        "/v1/audit/reiterations?territory=LOM&to=2024-12-31&known_at=2030-01-01T00:00:00Z",
    )
    .await;
    let flagged = audit["beneficiaries"].as_array().unwrap();
    let item = flagged.iter().find(|i| i["beneficiary_id"] == b.as_str());
    let item = item.unwrap_or_else(|| panic!("b is flagged: {audit:#}"));
    assert_eq!(item["occupability"], Value::Null);
    assert_eq!(item["transitions"][1]["provider"], "coop-beta");

    // Offline: what `filiera report` (`--providers`) prints for the same options.
    let query: MetricsQuery = MetricsParams {
        territory: Some("LOM".into()),
        from: Some("2024-01-01".into()),
        to: Some("2024-12-31".into()),
        known_at: Some("2030-01-01T00:00:00Z".into()),
    }
    .into_query(&TerritoryRegistry::sample(), 2, Utc::now())
    .unwrap();
    let offline = filiera_projections::replay_scorecard(&app.store, &query)
        .await
        .unwrap();
    assert_eq!(card, serde_json::to_value(offline).unwrap());
    let offline = filiera_projections::replay_report(&app.store, &query)
        .await
        .unwrap();
    assert_eq!(metrics, serde_json::to_value(offline).unwrap());
    let offline = filiera_projections::replay_audit(&app.store, &AuditQuery::from(&query))
        .await
        .unwrap();
    assert_eq!(audit, serde_json::to_value(offline).unwrap());
}
