//! The write side over HTTP (SPEC 2.3, 2.4, 4.1): commands, classification, undo, history,
//! the status mapping of refusals, idempotency, concurrency and the feed.

use serde_json::{Value, json};

use crate::helpers::{Answer, Backend, spawn_app};

filiera_testkit::on_both_backends!(
    walkthrough_records_and_classifies,
    undo_voids_the_latest_command_and_history_shows_it,
    malformed_requests_get_problem_documents,
    dates_and_ids_are_refused_naming_the_expected_form,
    refusals_map_to_status_codes,
    retries_with_an_idempotency_key_write_nothing_new,
    concurrent_enrolments_with_one_key_make_one_beneficiary,
    racing_writers_one_wins_the_others_get_409,
    feed_pages_in_position_order,
    territories_stages_and_health,
);

fn types(history: &Value) -> Vec<String> {
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

async fn walkthrough_records_and_classifies(backend: Backend) {
    let app = spawn_app(backend).await;
    let answer = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10",
                   "referral": "employment_centre", "support_band": "high_support"}),
        )
        .await;
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    let id = answer.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        answer.headers["location"].to_str().unwrap(),
        format!("/v1/beneficiaries/{id}")
    );
    assert_eq!(answer.body["status"], "open");
    assert_eq!(answer.body["territory"], "LOM-BG-BERGAMO");
    assert_eq!(answer.body["support_band"], "high_support");
    assert_eq!(answer.body["version"], 1);

    let first = app.enter(&id, "socio_occupational", "2024-01-15").await;
    assert_eq!(first.status, 200, "{:#}", first.body);
    assert_eq!(first.body["transition"], "entry");
    assert_eq!(first.body["from_stage"], Value::Null);

    let up = app.enter(&id, "internship", "2024-04-01").await;
    assert_eq!(up.body["transition"], "progression");
    assert_eq!(up.body["from_stage"], "socio_occupational");
    assert_eq!(up.body["state"]["current_stage"], "internship");

    let again = app.enter(&id, "internship", "2024-07-01").await;
    assert_eq!(again.body["transition"], "reiteration");
    assert_eq!(again.body["state"]["stalled_reiterations"], 1);

    let down = app.enter(&id, "socio_occupational", "2024-09-01").await;
    assert_eq!(down.body["transition"], "regression");
    assert_eq!(down.body["state"]["counts"]["regressions"], 1);

    let moved = app
        .post(
            &format!("/v1/beneficiaries/{id}/territory"),
            json!({"territory": "LOM-LC-LECCO", "on": "2024-09-15"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{:#}", moved.body);
    assert_eq!(moved.body["territory"], "LOM-LC-LECCO");

    let exit = app
        .post(
            &format!("/v1/beneficiaries/{id}/stage/exit"),
            json!({"on": "2024-10-01", "outcome": "completed"}),
        )
        .await;
    assert_eq!(exit.status, 200, "{:#}", exit.body);
    assert_eq!(exit.body["current_stage"], Value::Null);

    let closed = app
        .post(
            &format!("/v1/beneficiaries/{id}/close"),
            json!({"on": "2024-10-02", "outcome": "dropped_out"}),
        )
        .await;
    assert_eq!(closed.body["status"], "closed");
    assert_eq!(closed.body["close_outcome"], "dropped_out");

    let reopened = app
        .post(
            &format!("/v1/beneficiaries/{id}/reopen"),
            json!({"on": "2025-01-07"}),
        )
        .await;
    assert_eq!(reopened.body["status"], "open");
    assert_eq!(reopened.body["spell_started_on"], "2025-01-07");
    assert_eq!(reopened.body["counts"]["spells"], 2);

    // Reiteration is judged across spells: the last entry was socio_occupational.
    let across = app.enter(&id, "socio_occupational", "2025-01-08").await;
    assert_eq!(across.body["transition"], "reiteration");

    let state = app.get(&format!("/v1/beneficiaries/{id}")).await;
    assert_eq!(state.status, 200);
    assert_eq!(state.body["id"], id.as_str());
    assert_eq!(state.body["current_stage"], "socio_occupational");

    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert_eq!(
        types(&history.body),
        [
            "Enrolled",
            "StageEntered",
            "StageExited",
            "StageEntered",
            "StageExited",
            "StageEntered",
            "StageExited",
            "StageEntered",
            "TerritoryChanged",
            "StageExited",
            "PathwayClosed",
            "PathwayReopened",
            "StageEntered",
        ]
    );
    let events = history.body["events"].as_array().unwrap();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence"], i as u64 + 1);
        assert_eq!(event["beneficiary_id"], id.as_str());
        assert_eq!(event["voided"], false);
        assert!(event["recorded_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(events[2]["data"]["outcome"], "moved_on");
    assert_eq!(events[7]["territory"], "LOM-BG-BERGAMO");
    assert_eq!(events[8]["territory"], "LOM-LC-LECCO");
    assert_eq!(
        events[8]["data"],
        json!({"from": "LOM-BG-BERGAMO", "to": "LOM-LC-LECCO", "on": "2024-09-15"})
    );
}

async fn undo_voids_the_latest_command_and_history_shows_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&id, "internship", "2024-02-01").await;
    let placed = app.enter(&id, "job_placement", "2024-05-01").await;
    assert_eq!(placed.body["transition"], "progression");

    let undone = app
        .post(
            &format!("/v1/beneficiaries/{id}/undo"),
            json!({"reason": "placement recorded on the wrong person"}),
        )
        .await;
    assert_eq!(undone.status, 200, "{:#}", undone.body);
    assert_eq!(undone.body["current_stage"], "internship");
    assert_eq!(undone.body["counts"]["corrections"], 1);

    // The undone entry no longer blocks an earlier date, and no longer counts for classification.
    let again = app.enter(&id, "internship", "2024-04-01").await;
    assert_eq!(again.status, 200, "{:#}", again.body);
    assert_eq!(again.body["transition"], "reiteration");

    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    let events = history.body["events"].as_array().unwrap();
    let voided: Vec<_> = events
        .iter()
        .map(|e| e["voided"].as_bool().unwrap())
        .collect();
    assert_eq!(voided, [false, false, true, true, false, false, false]);
    assert_eq!(events[4]["type"], "CommandUndone");
    assert_eq!(events[4]["data"]["undone_sequences"], json!([3, 4]));
    assert_eq!(
        events[4]["data"]["reason"],
        "placement recorded on the wrong person"
    );

    // Undo walks back command by command, down to the enrolment, which voids the beneficiary.
    for _ in 0..3 {
        let answer = app
            .post(
                &format!("/v1/beneficiaries/{id}/undo"),
                json!({"reason": "wrong file"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
    }
    let state = app.get(&format!("/v1/beneficiaries/{id}")).await;
    assert_eq!(state.body["status"], "voided");
    app.post(
        &format!("/v1/beneficiaries/{id}/undo"),
        json!({"reason": "again"}),
    )
    .await
    .problem(409, "beneficiary_voided");
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert!(
        history.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] != "CommandUndone")
            .all(|e| e["voided"] == true)
    );
}

/// Asserts a 422 `invalid_field` naming `field` whose detail says each of `says`.
#[track_caller]
fn assert_refused_naming(answer: &Answer, field: &str, says: &[&str]) {
    let problem = answer.problem(422, "invalid_field");
    assert_eq!(problem["field"], field, "{problem:#}");
    let detail = problem["detail"].as_str().unwrap();
    for part in says {
        assert!(detail.contains(part), "{detail:?} does not say {part:?}");
    }
}

/// A date in another form, or one that is no day of the calendar, is refused naming the field
/// and the expected form, in a body and in a query alike; a malformed beneficiary id is refused
/// naming `id` and the expected form (400), an unknown well-formed one is not found (404).
/// Nothing is written meanwhile.
async fn dates_and_ids_are_refused_naming_the_expected_form(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let before = app.store.head().await.unwrap();

    for (on, says) in [
        (
            "10/01/2024",
            &["`on`", "expected a date YYYY-MM-DD", "10/01/2024"][..],
        ),
        ("2024-1-10", &["expected a date YYYY-MM-DD"][..]),
        (
            "2024-02-30",
            &["`2024-02-30` is not a calendar date", "YYYY-MM-DD"][..],
        ),
    ] {
        let answer = app
            .post(
                "/v1/beneficiaries",
                json!({"territory": "LOM-BG", "on": on, "referral": "self"}),
            )
            .await;
        assert_refused_naming(&answer, "on", says);
        let answer = app
            .post(
                &format!("/v1/beneficiaries/{id}/stage"),
                json!({"stage": "internship", "on": on}),
            )
            .await;
        assert_refused_naming(&answer, "on", says);
    }
    let answer = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM-BG", "on": 20240110, "referral": "self"}),
        )
        .await;
    assert_refused_naming(&answer, "on", &["expected a date YYYY-MM-DD"]);
    let answer = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM-BG", "on": "2024-01-10", "referral": "self",
                   "person": {"fiscal_code": "RSSMRA80A01H501U", "given_name": "Maria",
                              "family_name": "Rossi", "birth_date": "1980-02-30"}}),
        )
        .await;
    assert_refused_naming(
        &answer,
        "person.birth_date",
        &["not a calendar date", "YYYY-MM-DD"],
    );

    for (query, field, says) in [
        (
            "from=10/01/2024",
            "from",
            &["`from`", "expected a date YYYY-MM-DD"][..],
        ),
        (
            "to=2024-02-30",
            "to",
            &["`to`", "not a calendar date", "YYYY-MM-DD"][..],
        ),
        (
            "known_at=2024-02-30",
            "known_at",
            &["not a calendar date"][..],
        ),
        (
            "known_at=10/01/2024",
            "known_at",
            &["RFC 3339", "YYYY-MM-DD"][..],
        ),
    ] {
        let answer = app.get(&format!("/v1/metrics?{query}")).await;
        assert_refused_naming(&answer, field, says);
    }
    let answer = app.get("/v1/audit/reiterations?to=31/12/2024").await;
    assert_refused_naming(&answer, "to", &["expected a date YYYY-MM-DD"]);

    for malformed in ["not-a-uuid", "12345", &id[..35]] {
        for path in [
            format!("/v1/beneficiaries/{malformed}"),
            format!("/v1/beneficiaries/{malformed}/history"),
            format!("/v1/beneficiaries/{malformed}/person"),
        ] {
            let answer = app.get(&path).await;
            let problem = answer.problem(400, "malformed_path");
            assert_eq!(problem["field"], "id", "{path}");
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("must be a UUID"),
                "{problem:#}"
            );
        }
        let answer = app
            .post(
                &format!("/v1/beneficiaries/{malformed}/stage"),
                json!({"stage": "internship", "on": "2024-02-01"}),
            )
            .await;
        assert_eq!(answer.problem(400, "malformed_path")["field"], "id");
    }
    let unknown = uuid::Uuid::new_v4();
    for path in [
        format!("/v1/beneficiaries/{unknown}"),
        format!("/v1/beneficiaries/{unknown}/history"),
    ] {
        app.get(&path).await.problem(404, "beneficiary_not_found");
    }
    // The id as enrolment answered it, in upper case, is the same beneficiary.
    let upper = app
        .get(&format!("/v1/beneficiaries/{}", id.to_uppercase()))
        .await;
    assert_eq!(upper.status, 200, "{:#}", upper.body);
    assert_eq!(upper.body["id"], id.as_str());
    assert_eq!(
        app.store.head().await.unwrap(),
        before,
        "nothing was written"
    );
}

async fn malformed_requests_get_problem_documents(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = app.store.head().await.unwrap();

    app.post_raw(
        "/v1/beneficiaries",
        "application/json",
        b"{\"territory\": ".to_vec(),
    )
    .await
    .problem(400, "malformed_json");
    app.post_raw("/v1/beneficiaries", "text/plain", b"{}".to_vec())
        .await
        .problem(415, "unsupported_media_type");
    let body = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM", "on": "2024-01-01", "referral": "self", "nickname": "x"}),
        )
        .await;
    assert_eq!(body.problem(422, "invalid_field")["field"], "nickname");
    let body = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM", "referral": "self"}),
        )
        .await;
    assert_eq!(body.problem(422, "invalid_field")["field"], "on");
    let body = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM", "on": "10/01/2024", "referral": "self"}),
        )
        .await;
    assert_eq!(body.problem(422, "invalid_field")["field"], "on");
    let body = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM", "on": "2024-01-01", "referral": "neighbour"}),
        )
        .await;
    assert_eq!(body.problem(422, "invalid_field")["field"], "referral");
    let body = app.post("/v1/beneficiaries", json!([1, 2])).await;
    body.problem(422, "invalid_field");

    let huge = json!({"territory": "LOM", "on": "2024-01-01", "referral": "self",
                      "padding": "x".repeat(70 * 1024)});
    app.post("/v1/beneficiaries", huge)
        .await
        .problem(413, "payload_too_large");

    app.get("/v1/beneficiaries/not-a-uuid")
        .await
        .problem(400, "malformed_path");
    app.get(&format!("/v1/beneficiaries/{}", uuid::Uuid::new_v4()))
        .await
        .problem(404, "beneficiary_not_found");
    app.get(&format!(
        "/v1/beneficiaries/{}/history",
        uuid::Uuid::new_v4()
    ))
    .await
    .problem(404, "beneficiary_not_found");
    app.get("/v1/nothing-here").await.problem(404, "not_found");
    app.get("/v1/beneficiaries/x/stage")
        .await
        .problem(405, "method_not_allowed");
    let bad_key = app
        .post_with(
            "/v1/beneficiaries",
            json!({"territory": "LOM", "on": "2024-01-01", "referral": "self"}),
            Some(&"k".repeat(300)),
        )
        .await;
    assert_eq!(
        bad_key.problem(422, "invalid_field")["field"],
        "Idempotency-Key"
    );

    assert_eq!(
        app.store.head().await.unwrap(),
        before,
        "nothing was written"
    );
}

async fn refusals_map_to_status_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let unknown = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "ATLANTIS", "on": "2024-01-01", "referral": "self"}),
        )
        .await;
    let problem = unknown.problem(422, "unknown_territory");
    assert_eq!(problem["field"], "territory");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/territories")
    );

    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let stage = app.enter(&id, "apprenticeship", "2024-01-11").await;
    let problem = stage.problem(422, "unknown_stage");
    assert_eq!(problem["field"], "stage");
    assert!(problem["detail"].as_str().unwrap().contains("internship"));

    app.enter(&id, "internship", "2024-03-01").await;
    let early = app.enter(&id, "job_placement", "2024-02-01").await;
    assert_eq!(early.problem(422, "out_of_order")["field"], "on");
    let future = app.enter(&id, "job_placement", "2999-01-01").await;
    assert_eq!(future.problem(422, "date_in_future")["field"], "on");
    let ancient = app
        .post(
            "/v1/beneficiaries",
            json!({"territory": "LOM", "on": "1999-12-31", "referral": "self"}),
        )
        .await;
    assert_eq!(ancient.problem(422, "date_too_early")["field"], "on");

    let same = app
        .post(
            &format!("/v1/beneficiaries/{id}/territory"),
            json!({"territory": "LOM-BG-BERGAMO", "on": "2024-03-02"}),
        )
        .await;
    assert_eq!(same.problem(422, "same_territory")["field"], "territory");
    let manual = app
        .post(
            &format!("/v1/beneficiaries/{id}/stage/exit"),
            json!({"on": "2024-03-02", "outcome": "moved_on"}),
        )
        .await;
    assert_eq!(manual.problem(422, "automatic_outcome")["field"], "outcome");

    app.post(
        &format!("/v1/beneficiaries/{id}/reopen"),
        json!({"on": "2024-03-02"}),
    )
    .await
    .problem(409, "pathway_open");
    app.post(
        &format!("/v1/beneficiaries/{id}/close"),
        json!({"on": "2024-03-02", "outcome": "employed"}),
    )
    .await;
    app.enter(&id, "internship", "2024-03-03")
        .await
        .problem(409, "pathway_closed");
    app.post(
        &format!("/v1/beneficiaries/{id}/stage/exit"),
        json!({"on": "2024-03-03", "outcome": "completed"}),
    )
    .await
    .problem(409, "pathway_closed");

    let ghost = uuid::Uuid::new_v4();
    app.enter(&ghost.to_string(), "internship", "2024-03-03")
        .await
        .problem(404, "beneficiary_not_found");
    app.post(
        &format!("/v1/beneficiaries/{ghost}/undo"),
        json!({"reason": "x"}),
    )
    .await
    .problem(404, "beneficiary_not_found");

    // Only the three accepted commands were written (enrol, stage, close = 1 + 1 + 2 events).
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert_eq!(history.body["events"].as_array().unwrap().len(), 4);
}

async fn retries_with_an_idempotency_key_write_nothing_new(backend: Backend) {
    let app = spawn_app(backend).await;
    let enrol = json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10", "referral": "self"});
    let first = app
        .post_with("/v1/beneficiaries", enrol.clone(), Some("enrol-1"))
        .await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let retry = app
        .post_with("/v1/beneficiaries", enrol.clone(), Some("enrol-1"))
        .await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let id = first.body["id"].as_str().unwrap().to_owned();

    let stage = json!({"stage": "internship", "on": "2024-02-01"});
    let path = format!("/v1/beneficiaries/{id}/stage");
    let entered = app.post_with(&path, stage.clone(), Some("stage-1")).await;
    assert_eq!(entered.body["transition"], "entry");
    // Meanwhile another command lands; the retry still answers what the first call answered.
    app.enter(&id, "job_placement", "2024-03-01").await;
    let retry = app.post_with(&path, stage.clone(), Some("stage-1")).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, entered.body);

    let reused = app
        .post_with(
            &path,
            json!({"stage": "socio_occupational", "on": "2024-03-01"}),
            Some("stage-1"),
        )
        .await;
    assert_eq!(
        reused.problem(422, "idempotency_key_reused")["field"],
        "Idempotency-Key"
    );

    let feed = app.whole_feed().await;
    let kinds: Vec<_> = feed.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Enrolled", "StageEntered", "StageExited", "StageEntered"]
    );
}

async fn concurrent_enrolments_with_one_key_make_one_beneficiary(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let enrol = json!({"territory": "LOM-LC-LECCO", "on": "2024-01-10", "referral": "other"});
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            let enrol = enrol.clone();
            tokio::spawn(async move {
                app.post_with("/v1/beneficiaries", enrol, Some("same-key"))
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let answer = task.await.unwrap();
        assert!(
            answer.status == 201 || answer.status == 409,
            "{} {:#}",
            answer.status,
            answer.body
        );
        if answer.status == 201 {
            ids.insert(answer.body["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(ids.len(), 1, "every success names the same beneficiary");
    assert_eq!(app.whole_feed().await.len(), 1);
}

async fn racing_writers_one_wins_the_others_get_409(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let stage = ["internship", "socio_occupational"][i % 2];
                app.enter(&id, stage, "2024-02-01").await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            200 => won += 1,
            409 => {
                answer.problem(409, "concurrent_write");
            }
            other => panic!("unexpected {other}: {:#}", answer.body),
        }
    }
    assert!(won >= 1);
    // Every success wrote its events exactly once, with no gap in the sequence.
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    let events = history.body["events"].as_array().unwrap();
    let entries = events
        .iter()
        .filter(|e| e["type"] == "StageEntered")
        .count();
    assert_eq!(entries, won);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence"], i as u64 + 1);
    }
}

async fn feed_pages_in_position_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let b = app.enrol("PIE-TO-TORINO", "2024-01-11").await;
    app.enter(&a, "internship", "2024-02-01").await;
    app.enter(&b, "socio_occupational", "2024-02-02").await;
    app.enter(&a, "job_placement", "2024-03-01").await;

    let first = app.get("/v1/events?limit=2").await;
    assert_eq!(first.status, 200);
    let page = first.body["events"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(first.body["next_after"], page[1]["position"]);
    let rest = app
        .get(&format!("/v1/events?after={}", first.body["next_after"]))
        .await;
    let rest = rest.body["events"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 4);

    let all: Vec<Value> = page.iter().cloned().chain(rest).collect();
    let positions: Vec<i64> = all
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(all[0]["type"], "Enrolled");
    assert_eq!(all[0]["beneficiary_id"], a.as_str());
    assert_eq!(all[0]["territory"], "LOM-BG-BERGAMO");
    assert_eq!(all[0]["data"]["territory"], "LOM-BG-BERGAMO");
    assert_eq!(all[1]["territory"], "PIE-TO-TORINO");
    // Per stream, feed order is sequence order.
    let a_sequences: Vec<u64> = all
        .iter()
        .filter(|e| e["beneficiary_id"] == a.as_str())
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(a_sequences, [1, 2, 3, 4]);

    let empty = app.get(&format!("/v1/events?after={}", positions[5])).await;
    assert_eq!(empty.body["events"], json!([]));
    assert_eq!(empty.body["next_after"], positions[5]);
    // Every page names the feed's last position, whatever part of it the page holds.
    assert_eq!(first.body["head"], positions[5]);
    assert_eq!(empty.body["head"], positions[5]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("after=-1", "after"),
        ("after=abc", "after"),
        ("afterr=1", "afterr"),
    ] {
        let answer = app.get(&format!("/v1/events?{query}")).await;
        assert_eq!(
            answer.problem(422, "invalid_field")["field"],
            field,
            "{query}"
        );
    }
}

async fn territories_stages_and_health(backend: Backend) {
    let app = spawn_app(backend).await;
    let territories = app.get("/v1/territories").await;
    assert_eq!(territories.status, 200);
    let roots = territories.body["territories"].as_array().unwrap();
    let lombardia = roots.iter().find(|t| t["code"] == "LOM").unwrap();
    assert_eq!(lombardia["name"], "Lombardia");
    assert!(
        lombardia["children"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "LOM-BG")
    );
    let stages = app.get("/v1/stages").await;
    assert_eq!(stages.body["stages"][1]["code"], "internship");
    assert_eq!(stages.body["stages"][1]["level"], 2);
    assert_eq!(app.get("/healthz").await.status, 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(ready.body["store"], expected);

    // Prometheus text: aggregate figures only, routes as templates, never a beneficiary id.
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.get(&format!("/v1/beneficiaries/{id}")).await;
    // A made-up method must not mint a new series.
    let odd = reqwest::Method::from_bytes(b"ZZZ1").unwrap();
    let answer = app
        .client
        .request(odd, format!("{}/v1/territories", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 405);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("filiera_feed_head_position 1"), "{text}");
    assert!(
        text.contains(r#"route="/v1/beneficiaries/{id}",status="200""#),
        "{text}"
    );
    assert!(!text.contains(&id), "{text}");
    assert!(!text.contains("ZZZ1"), "{text}");
    assert!(text.contains(r#"method="other""#), "{text}");
    // Latency by route template: the one GET of the beneficiary is one observation.
    assert!(
        text.contains(
            r#"filiera_http_request_duration_seconds_count{method="GET",route="/v1/beneficiaries/{id}"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"filiera_http_request_duration_seconds_bucket{method="GET",route="/v1/beneficiaries/{id}",le="10"} 1"#),
        "{text}"
    );
    // The projection's checkpoint, lag and leadership, read at the scrape.
    for series in [
        "filiera_projection_position",
        "filiera_projection_lag_events",
        "filiera_projection_leader",
    ] {
        assert!(
            text.contains(&format!(r#"{series}{{projection="territory_metrics"}} "#)),
            "{series}: {text}"
        );
    }
}
