//! `GET /v1/reports/regional`: the printable regional report over HTTP is the page the offline
//! replay renders for the same data (byte for byte), it is guarded like `GET /v1/metrics`, and
//! the OpenAPI document describes its `text/html` answer. The figures against the JSON
//! documents and the PDF are checked with the binary in `crates/filiera/tests/regional_report.rs`.

use filiera_contract::ReportLang;
use filiera_domain::MetricsQuery;
use filiera_report::{DataAsOf, RegionalReport, render_regional};
use serde_json::json;

use crate::helpers::{Backend, TestApp, services, spawn_app, token};

filiera_testkit::on_both_backends!(
    the_route_renders_what_the_offline_replay_renders,
    the_route_is_guarded_like_the_metrics,
);

/// Two beneficiaries in Lombardy (one reiterating, one regressing) and one in Piedmont.
async fn history(app: &TestApp) {
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&a, "internship", "2024-01-15").await;
    app.enter(&a, "internship", "2024-02-20").await;
    app.enter(&a, "internship", "2024-03-20").await;
    let b = app.enrol("LOM-LC-LECCO", "2024-02-01").await;
    app.enter(&b, "internship", "2024-02-10").await;
    app.enter(&b, "socio_occupational", "2024-03-01").await;
    let answer = app
        .post(
            &format!("/v1/beneficiaries/{b}/close"),
            json!({"on": "2024-04-01", "outcome": "dropped_out"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let c = app.enrol("PIE-TO-TORINO", "2024-02-01").await;
    app.enter(&c, "socio_occupational", "2024-02-10").await;
    app.caught_up().await;
}

/// The page and its content type, as the administrator.
async fn page(app: &TestApp, query: &str) -> (u16, String, String) {
    let (status, content_type, _, body) = page_with_policy(app, query).await;
    (status, content_type, body)
}

/// The status, content type, Content-Security-Policy and body of a report request.
async fn page_with_policy(app: &TestApp, query: &str) -> (u16, String, String, String) {
    let response = app
        .client
        .get(format!("{}/v1/reports/regional?{query}", app.address))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, policy) = (header("content-type"), header("content-security-policy"));
    (
        status,
        content_type,
        policy,
        response.text().await.expect("a body"),
    )
}

async fn the_route_renders_what_the_offline_replay_renders(backend: Backend) {
    let app = spawn_app(backend).await;
    history(&app).await;
    let known_at = "2030-01-01T00:00:00Z";
    for (lang, code) in [(ReportLang::It, "it"), (ReportLang::En, "en")] {
        let (status, content_type, online) = page(
            &app,
            &format!("territory=LOM&from=2024-01-01&to=2024-06-30&known_at={known_at}&lang={code}"),
        )
        .await;
        assert_eq!(status, 200, "{online}");
        assert_eq!(content_type, "text/html; charset=utf-8");
        let (_, _, policy, _) = page_with_policy(&app, "territory=LOM").await;
        assert!(
            policy.starts_with("default-src 'none';") && !policy.contains("script-src"),
            "the report page may run no script: {policy}"
        );

        let query = MetricsQuery {
            territory: filiera_domain::TerritoryCode::parse("LOM"),
            from: "2024-01-01".parse().unwrap(),
            to: "2024-06-30".parse().unwrap(),
            known_at: known_at.parse().unwrap(),
            threshold: 2,
        };
        let snapshot = filiera_projections::replay_regional(&app.store, &query)
            .await
            .unwrap();
        assert_eq!(snapshot.position, app.store.head().await.unwrap());
        let services = services();
        let offline = render_regional(&RegionalReport {
            documents: &snapshot.documents,
            data_as_of: DataAsOf {
                position: snapshot.position,
                recorded_at: snapshot.recorded_at,
            },
            catalogue: &services.catalogue,
            registry: &services.territories,
            lang,
        });
        assert_eq!(online, offline);
        assert!(online.starts_with("<!DOCTYPE html>"), "{online}");
        assert!(online.contains(&format!("<html lang=\"{code}\">")));
        // Self-contained: no script and nothing fetched from elsewhere.
        for outside in ["<script", "src=", "href=", "@import", "url("] {
            assert!(!online.contains(outside), "{outside} in the page");
        }
        // The data is as of the feed head, with the time the head event was stored.
        let head = app.store.head().await.unwrap();
        let recorded_at = snapshot.recorded_at.expect("a head event");
        assert!(online.contains(&format!(
            "{} (",
            recorded_at.format("%Y-%m-%d %H:%M:%S UTC")
        )));
        assert!(online.contains(&format!(" {head})")));
    }
    // The figures of the region are those of `GET /v1/metrics` for the same query: two
    // reiterations, a regression, one flagged beneficiary, two children.
    let (_, _, html) = page(
        &app,
        &format!("territory=LOM&from=2024-01-01&to=2024-06-30&known_at={known_at}&lang=en"),
    )
    .await;
    let metrics = app
        .get(&format!(
            "/v1/metrics?territory=LOM&from=2024-01-01&to=2024-06-30&known_at={known_at}"
        ))
        .await
        .body;
    assert_eq!(metrics["transitions"]["reiteration"], 2);
    assert_eq!(metrics["reiteration"]["flagged"], 1);
    for (path, value) in [
        ("enrolments", &metrics["enrolments"]),
        (
            "transitions.reiteration",
            &metrics["transitions"]["reiteration"],
        ),
        (
            "transitions.regression",
            &metrics["transitions"]["regression"],
        ),
        ("reiteration.flagged", &metrics["reiteration"]["flagged"]),
        ("audit.beneficiaries", &metrics["reiteration"]["flagged"]),
        ("breakdown.LOM-BG.enrolments", &json!(1)),
        ("breakdown.LOM-LC.transitions.regression", &json!(1)),
        ("series.2024-02-01.enrolments", &json!(1)),
    ] {
        assert!(
            html.contains(&format!("data-metric=\"{path}\">{value}<")),
            "{path} = {value} not in the page"
        );
    }
}

async fn the_route_is_guarded_like_the_metrics(backend: Backend) {
    let app = spawn_app(backend).await;
    history(&app).await;
    let path = "/v1/reports/regional?territory=LOM-BG&from=2024-01-01&to=2024-06-30";
    // No token: 401, as for `/v1/metrics`.
    let anonymous = app
        .anonymous
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // A scoped caller reads its own territories, not others', and must name one.
    let operator = token(filiera_auth::Role::Operator, &["LOM-BG"]);
    let evaluator = token(filiera_auth::Role::Evaluator, &["LOM"]);
    for who in [&operator, &evaluator] {
        let own = app.get_as(who, path).await;
        assert_eq!(own.status, 200);
        assert_eq!(own.content_type(), "text/html");
        app.get_as(who, "/v1/reports/regional?territory=PIE")
            .await
            .problem(403, "territory_out_of_scope");
        app.get_as(who, "/v1/reports/regional")
            .await
            .problem(403, "territory_out_of_scope");
    }
    let subscriber = token(filiera_auth::Role::Subscriber, &["LOM"]);
    app.get_as(&subscriber, path)
        .await
        .problem(403, "forbidden");
    // Bad input names its parameter.
    let answer = app.get("/v1/reports/regional?lang=fr").await;
    answer.problem(422, "invalid_field");
    assert_eq!(answer.body["field"], "lang");
    let answer = app
        .get("/v1/reports/regional?from=2024-05-01&to=2024-01-01")
        .await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.body["field"], "from");
    // The OpenAPI document describes the HTML answer and the parameters.
    let doc = app.get("/openapi.json").await.body;
    let operation = &doc["paths"]["/v1/reports/regional"]["get"];
    assert!(
        operation["responses"]["200"]["content"]["text/html"].is_object(),
        "{operation:#}"
    );
    let params: Vec<&str> = operation["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["territory", "from", "to", "known_at", "lang"]);
    assert!(operation["responses"]["401"].is_object(), "{operation:#}");
}
