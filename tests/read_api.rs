//! The read side over HTTP (SPEC 3): metrics, audit, bitemporal replay, projection status and
//! rebuild; every document compared with the offline replay of the same store.

use std::time::Duration;

use chrono::{DateTime, Utc};
use filiera_domain::{AuditQuery, MetricsQuery, TerritoryRegistry};
use filiera_http::reports::{AuditParams, MetricsParams};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

filiera_testkit::on_both_backends!(
    metrics_count_by_attribution_and_match_the_offline_replay,
    known_at_reproduces_what_was_known_before_an_undo_and_a_backdated_record,
    audit_lists_flagged_beneficiaries_with_evidence,
    bad_queries_are_refused_naming_the_parameter,
    projections_report_status_and_rebuild_without_downtime,
    new_events_reach_the_projection_live,
);

/// The offline replay (what `filiera report` prints) for the same parameters.
async fn offline(app: &TestApp, params: MetricsParams, now: DateTime<Utc>) -> Value {
    let query: MetricsQuery = params
        .into_query(&TerritoryRegistry::sample(), 2, now)
        .expect("valid query");
    let metrics = filiera_projections::replay_report(&app.store, &query)
        .await
        .expect("replay");
    serde_json::to_value(metrics).unwrap()
}

/// GET /v1/metrics and the offline replay of the same query; asserts they are identical.
async fn metrics(app: &TestApp, query: &str) -> Value {
    app.caught_up().await;
    let answer = app.get(&format!("/v1/metrics?{query}")).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let known_at: DateTime<Utc> = answer.body["query"]["known_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let params: MetricsParams = serde_urlencoded::from_str(query).unwrap();
    let params = MetricsParams {
        known_at: params.known_at.or(Some(known_at.to_rfc3339())),
        ..params
    };
    let replayed = offline(app, params, known_at).await;
    assert_eq!(answer.body, replayed, "online projection == offline replay");
    answer.body
}

fn stats(count: u64, value: Option<f64>) -> Value {
    json!({"count": count, "mean": value, "median": value, "p90": value})
}

async fn post(app: &TestApp, id: &str, action: &str, body: Value) {
    let answer = app
        .post(&format!("/v1/beneficiaries/{id}/{action}"), body)
        .await;
    assert_eq!(answer.status, 200, "{action}: {:#}", answer.body);
}

async fn metrics_count_by_attribution_and_match_the_offline_replay(backend: Backend) {
    let app = spawn_app(backend).await;
    // A: Bergamo, progresses, moves to Lecco, reiterates there, gets a job.
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&a, "socio_occupational", "2024-01-15").await;
    app.enter(&a, "internship", "2024-04-01").await;
    post(
        &app,
        &a,
        "territory",
        json!({"territory": "LOM-LC-LECCO", "on": "2024-05-01"}),
    )
    .await;
    app.enter(&a, "internship", "2024-06-01").await;
    post(
        &app,
        &a,
        "close",
        json!({"on": "2024-08-01", "outcome": "employed"}),
    )
    .await;
    // B: Torino, one internship still open.
    let b = app.enrol("PIE-TO-TORINO", "2024-02-01").await;
    app.enter(&b, "internship", "2024-02-10").await;

    let lombardy = metrics(&app, "territory=LOM&from=2024-01-01&to=2024-12-31").await;
    assert_eq!(lombardy["enrolments"], 1);
    assert_eq!(
        lombardy["transitions"],
        json!({"entry": 1, "progression": 1, "reiteration": 1, "regression": 0})
    );
    // (progression - regression) / (progression + reiteration + regression) = 1 / 2
    assert_eq!(lombardy["progressivity_index"], 0.5);
    assert_eq!(lombardy["closures"]["employed"], 1);
    // 2024-01-10 → 2024-08-01: 21 + 29 + 31 + 30 + 31 + 30 + 31 + 1 = 204 days.
    assert_eq!(
        lombardy["time_in_pathway_days"]["closed"],
        stats(1, Some(204.0))
    );
    // socio_occupational 2024-01-15 → 2024-04-01 = 77 days; internship 04-01 → 06-01 = 61.
    assert_eq!(
        lombardy["time_in_stage_days"]["socio_occupational"]["closed"],
        stats(1, Some(77.0))
    );
    assert_eq!(
        lombardy["active_at_end"],
        json!({"socio_occupational": 0, "internship": 0, "job_placement": 0, "waiting": 0})
    );

    // The reiteration happened after the move: Lecco has it, Bergamo has the rest.
    let lecco = metrics(&app, "territory=LOM-LC&from=2024-01-01&to=2024-12-31").await;
    assert_eq!(lecco["enrolments"], 0);
    assert_eq!(lecco["transitions"]["reiteration"], 1);
    assert_eq!(lecco["transitions"]["progression"], 0);
    let bergamo = metrics(
        &app,
        "territory=LOM-BG-BERGAMO&from=2024-01-01&to=2024-12-31",
    )
    .await;
    assert_eq!(bergamo["enrolments"], 1);
    assert_eq!(bergamo["transitions"]["reiteration"], 0);
    assert_eq!(bergamo["closures"]["employed"], 1);

    let turin = metrics(&app, "territory=PIE-TO&from=2024-01-01&to=2024-12-31").await;
    assert_eq!(turin["active_at_end"]["internship"], 1);
    // 2024-02-01 → 2024-12-31 = 334 days; the internship from 2024-02-10 = 325 days.
    assert_eq!(turin["time_in_pathway_days"]["open"], stats(1, Some(334.0)));
    assert_eq!(
        turin["time_in_stage_days"]["internship"]["open"],
        stats(1, Some(325.0))
    );
    assert_eq!(turin["progressivity_index"], Value::Null);

    // Period edges: the reiteration on 2024-06-01 is in [06-01, 06-01] and not in [06-02, …].
    let day = metrics(&app, "from=2024-06-01&to=2024-06-01").await;
    assert_eq!(day["transitions"]["reiteration"], 1);
    let after = metrics(&app, "from=2024-06-02&to=2024-12-31").await;
    assert_eq!(after["transitions"]["reiteration"], 0);

    let everything = metrics(&app, "").await;
    assert_eq!(everything["enrolments"], 2);
    assert_eq!(everything["query"]["territory"], Value::Null);
    assert_eq!(everything["query"]["from"], "2000-01-01");
}

async fn known_at_reproduces_what_was_known_before_an_undo_and_a_backdated_record(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&a, "internship", "2024-02-01").await;
    let history = app.get(&format!("/v1/beneficiaries/{a}/history")).await;
    let before = history.body["events"][1]["recorded_at"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(20)).await;

    post(&app, &a, "undo", json!({"reason": "wrong beneficiary"})).await;
    // A record backdated to before everything else, stored after the report of `before`.
    app.enrol("LOM-LC-LECCO", "2023-06-01").await;

    let then = metrics(&app, &format!("known_at={}", urlencode(&before))).await;
    // The same instant with an unencoded `+00:00` offset (a space on arrival) means the same.
    let unencoded = before.replace('Z', "+00:00").replace(':', "%3A");
    let same = app.get(&format!("/v1/metrics?known_at={unencoded}")).await;
    assert_eq!(same.status, 200, "{:#}", same.body);
    assert_eq!(same.body["enrolments"], then["enrolments"]);
    assert_eq!(then["transitions"]["entry"], 1, "{then:#}");
    assert_eq!(then["enrolments"], 1);
    assert_eq!(then["corrections"], 0);
    assert_eq!(then["active_at_end"]["internship"], 1);

    let now = metrics(&app, "").await;
    assert_eq!(now["transitions"]["entry"], 0);
    assert_eq!(now["enrolments"], 2);
    assert_eq!(
        now["corrections"], 1,
        "counted on the day the undo was recorded"
    );
    assert_eq!(now["active_at_end"]["waiting"], 2);

    // An enrolment recorded by mistake and undone: the beneficiary counts for nothing, but the
    // correction is counted, in the territory it was enrolled in.
    let mistake = app.enrol("PIE-TO-TORINO", "2024-01-10").await;
    post(
        &app,
        &mistake,
        "undo",
        json!({"reason": "duplicate record"}),
    )
    .await;
    let today = Utc::now().date_naive();
    let piemonte = metrics(&app, &format!("territory=PIE&from={today}&to={today}")).await;
    assert_eq!(piemonte["corrections"], 1);
    assert_eq!(piemonte["enrolments"], 0);
    assert_eq!(piemonte["active_at_end"]["waiting"], 0);

    // A date means the end of that day: today includes everything.
    let end_of_today = metrics(&app, &format!("known_at={today}")).await;
    assert_eq!(end_of_today["enrolments"], 2);
}

fn urlencode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

async fn audit_lists_flagged_beneficiaries_with_evidence(backend: Backend) {
    let app = spawn_app(backend).await;
    let stuck = app.enrol("LOM-BG-VALLE-BREMBANA", "2024-01-10").await;
    app.enter(&stuck, "internship", "2024-01-15").await;
    app.enter(&stuck, "internship", "2024-04-15").await;
    app.enter(&stuck, "internship", "2024-07-15").await;
    let moving = app.enrol("LOM-BG-VALLE-BREMBANA", "2024-01-10").await;
    app.enter(&moving, "socio_occupational", "2024-01-15").await;
    app.enter(&moving, "internship", "2024-04-15").await;
    app.caught_up().await;

    let answer = app
        .get("/v1/audit/reiterations?territory=LOM-BG&to=2024-12-31")
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.body["threshold"], 2);
    let flagged = answer.body["beneficiaries"].as_array().unwrap();
    assert_eq!(flagged.len(), 1);
    let entry = &flagged[0];
    assert_eq!(entry["beneficiary_id"], stuck.as_str());
    assert_eq!(entry["territory"], "LOM-BG-VALLE-BREMBANA");
    assert_eq!(entry["stalled_reiterations"], 2);
    assert_eq!(entry["total_reiterations"], 2);
    assert_eq!(entry["current_stage"], "internship");
    assert_eq!(entry["occupability"], Value::Null);
    assert_eq!(
        entry["transitions"],
        json!([
            {"stage": "internship", "on": "2024-01-15", "classification": "entry", "provider": null},
            {"stage": "internship", "on": "2024-04-15", "classification": "reiteration", "provider": null},
            {"stage": "internship", "on": "2024-07-15", "classification": "reiteration", "provider": null},
        ])
    );
    // At mid-year only one reiteration had happened: nobody is flagged yet.
    let earlier = app
        .get("/v1/audit/reiterations?territory=LOM-BG&to=2024-05-01")
        .await;
    assert_eq!(earlier.body["beneficiaries"], json!([]));
    // Elsewhere, nobody.
    let elsewhere = app.get("/v1/audit/reiterations?territory=PIE").await;
    assert_eq!(elsewhere.body["beneficiaries"], json!([]));

    // The same list as the offline fold, and consistent with the metrics' `flagged`.
    let query: AuditQuery = AuditParams {
        territory: Some("LOM-BG".into()),
        to: Some("2024-12-31".into()),
        known_at: answer.body["query"]["known_at"].as_str().map(str::to_owned),
    }
    .into_query(&TerritoryRegistry::sample(), 2, Utc::now())
    .unwrap();
    let offline = filiera_projections::replay_audit(&app.store, &query)
        .await
        .unwrap();
    assert_eq!(answer.body, serde_json::to_value(offline).unwrap());
    let m = metrics(&app, "territory=LOM-BG&to=2024-12-31").await;
    assert_eq!(m["reiteration"]["flagged"], 1);
    assert_eq!(
        m["reiteration"]["distribution"],
        json!({"0": 1, "1": 0, "2": 1, "3+": 0})
    );
}

async fn bad_queries_are_refused_naming_the_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    for (query, code, field) in [
        ("territory=ATLANTIS", "unknown_territory", "territory"),
        ("from=2024-13-01", "invalid_field", "from"),
        ("to=yesterday", "invalid_field", "to"),
        ("from=2024-06-01&to=2024-01-01", "invalid_field", "from"),
        ("known_at=last-week", "invalid_field", "known_at"),
        ("territroy=LOM", "invalid_field", "territroy"),
        ("territory=LOM&territory=PIE", "invalid_field", "territory"),
    ] {
        let answer = app.get(&format!("/v1/metrics?{query}")).await;
        assert_eq!(answer.problem(422, code)["field"], field, "{query}");
    }
    let answer = app.get("/v1/audit/reiterations?to=2024-02-30").await;
    assert_eq!(answer.problem(422, "invalid_field")["field"], "to");
    let answer = app.post("/v1/projections/nope/rebuild", json!({})).await;
    answer.problem(404, "unknown_projection");
}

async fn projections_report_status_and_rebuild_without_downtime(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&a, "internship", "2024-02-01").await;
    app.enter(&a, "internship", "2024-03-01").await;
    let before = metrics(&app, "territory=LOM").await;

    let status = app.get("/v1/projections").await;
    assert_eq!(status.status, 200);
    let projection = &status.body["projections"][0];
    assert_eq!(projection["name"], "territory_metrics");
    assert_eq!(projection["lag"], 0);
    assert_eq!(projection["state"], "live");
    assert_eq!(projection["leader"], true);
    assert_eq!(projection["position"], projection["head"]);
    let generation = projection["generation"].as_i64().unwrap();

    let started = app
        .client
        .post(format!(
            "{}/v1/projections/territory_metrics/rebuild",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["generation"], generation + 1);

    // Queries answer throughout; once swapped, the new generation gives the same document.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let during = app.get("/v1/metrics?territory=LOM").await;
        assert_eq!(during.status, 200);
        assert_eq!(during.body["transitions"], before["transitions"]);
        let status = app.get("/v1/projections").await;
        let projection = &status.body["projections"][0];
        if projection["generation"] == generation + 1 && projection["rebuilding"].is_null() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rebuild never swapped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = metrics(&app, "territory=LOM").await;
    let strip = |mut v: Value| {
        v["query"]["known_at"] = Value::Null;
        v
    };
    assert_eq!(strip(after), strip(before));
}

async fn new_events_reach_the_projection_live(backend: Backend) {
    let app = spawn_app(backend).await;
    app.caught_up().await;
    let id = app.enrol("LOM-LC-LECCO", "2024-01-10").await;
    // No explicit catch-up: the runner is woken by the commit and the cache refreshed by the
    // query. Poll with a generous deadline; the figure itself is measured by `filiera bench`.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = app.get("/v1/metrics?territory=LOM-LC").await;
        if answer.body["enrolments"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "enrolment of {id} never reached the projection"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
