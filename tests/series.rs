//! Series and breakdown (SPEC 3.2): each point or child is the `/v1/metrics` document of its
//! part, and the online routes answer what the offline `filiera report --series month` /
//! `--breakdown` replay prints.

use chrono::{DateTime, Utc};
use filiera_domain::{MetricsQuery, TerritoryRegistry};
use filiera_http::reports::{BreakdownParams, SeriesParams};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};

filiera_testkit::on_both_backends!(
    a_series_is_the_metrics_of_each_month_and_matches_the_offline_replay,
    a_series_has_at_most_120_points,
    a_breakdown_is_the_metrics_of_each_child_and_matches_the_offline_replay,
);

/// Two beneficiaries in Lombardy (Bergamo, then Lecco) and one in Piedmont.
async fn history(app: &TestApp) {
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&a, "socio_occupational", "2024-01-15").await;
    app.enter(&a, "internship", "2024-02-20").await;
    let answer = app
        .post(
            &format!("/v1/beneficiaries/{a}/territory"),
            json!({"territory": "LOM-LC-LECCO", "on": "2024-03-01"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    app.enter(&a, "internship", "2024-03-05").await;
    let b = app.enrol("PIE-TO-TORINO", "2024-02-01").await;
    app.enter(&b, "internship", "2024-02-10").await;
    app.caught_up().await;
}

async fn get_ok(app: &TestApp, path: &str) -> Value {
    let answer = app.get(path).await;
    assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
    answer.body
}

fn known_at(document: &Value) -> DateTime<Utc> {
    document["query"]["known_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn a_series_is_the_metrics_of_each_month_and_matches_the_offline_replay(backend: Backend) {
    let app = spawn_app(backend).await;
    history(&app).await;
    let at = "2030-01-01T00:00:00Z";
    let series = get_ok(
        &app,
        &format!("/v1/metrics/series?territory=LOM&from=2024-01-15&to=2024-03-10&known_at={at}&interval=month"),
    )
    .await;
    assert_eq!(series["interval"], "month");
    let points = series["points"].as_array().unwrap();
    let periods: Vec<(&str, &str)> = points
        .iter()
        .map(|p| (p["from"].as_str().unwrap(), p["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        periods,
        [
            ("2024-01-15", "2024-01-31"),
            ("2024-02-01", "2024-02-29"),
            ("2024-03-01", "2024-03-10"),
        ]
    );
    for (point, (from, to)) in points.iter().zip(&periods) {
        let single = get_ok(
            &app,
            &format!("/v1/metrics?territory=LOM&from={from}&to={to}&known_at={at}"),
        )
        .await;
        assert_eq!(point["metrics"], single, "{from}..{to}");
    }
    // The months add up: the progression in February, the reiteration in March.
    assert_eq!(points[1]["metrics"]["transitions"]["progression"], 1);
    assert_eq!(points[2]["metrics"]["transitions"]["reiteration"], 1);
    // `interval` defaults to `month`.
    let default = get_ok(
        &app,
        &format!("/v1/metrics/series?territory=LOM&from=2024-01-15&to=2024-03-10&known_at={at}"),
    )
    .await;
    assert_eq!(default, series);

    // Offline: what `filiera report --series month` prints for the same options.
    let params = SeriesParams {
        territory: Some("LOM".into()),
        from: Some("2024-01-15".into()),
        to: Some("2024-03-10".into()),
        known_at: Some(at.into()),
        interval: Some("month".into()),
    };
    let query: MetricsQuery = params
        .into_query(&TerritoryRegistry::sample(), 2, Utc::now())
        .unwrap();
    let offline = filiera_projections::replay_series(&app.store, &query)
        .await
        .unwrap();
    assert_eq!(series, serde_json::to_value(offline).unwrap());

    // Without known_at, online and offline agree as of the instant the answer echoes.
    let now = get_ok(&app, "/v1/metrics/series?from=2024-01-01&to=2024-04-30").await;
    let query = MetricsQuery {
        known_at: known_at(&now["points"][0]["metrics"]),
        ..SeriesParams {
            from: Some("2024-01-01".into()),
            to: Some("2024-04-30".into()),
            ..SeriesParams::default()
        }
        .into_query(&TerritoryRegistry::sample(), 2, Utc::now())
        .unwrap()
    };
    let offline = filiera_projections::replay_series(&app.store, &query)
        .await
        .unwrap();
    assert_eq!(now, serde_json::to_value(offline).unwrap());
    assert_eq!(now["points"].as_array().unwrap().len(), 4);
}

async fn a_series_has_at_most_120_points(backend: Backend) {
    let app = spawn_app(backend).await;
    let ok = get_ok(&app, "/v1/metrics/series?from=2015-01-01&to=2024-12-31").await;
    assert_eq!(ok["points"].as_array().unwrap().len(), 120);
    let answer = app
        .get("/v1/metrics/series?from=2014-12-31&to=2024-12-31")
        .await;
    assert_eq!(answer.problem(422, "invalid_field")["field"], "from");
    // The default period (from 2000-01-01) is too long for a series.
    let answer = app.get("/v1/metrics/series").await;
    assert_eq!(answer.problem(422, "invalid_field")["field"], "from");
    for interval in ["week", "MONTH", ""] {
        let answer = app
            .get(&format!(
                "/v1/metrics/series?from=2024-01-01&to=2024-02-01&interval={interval}"
            ))
            .await;
        assert_eq!(
            answer.problem(422, "invalid_field")["field"],
            "interval",
            "{interval}"
        );
    }
    let answer = app
        .get("/v1/metrics/series?territory=ATLANTIS&from=2024-01-01&to=2024-02-01")
        .await;
    answer.problem(422, "unknown_territory");
}

async fn a_breakdown_is_the_metrics_of_each_child_and_matches_the_offline_replay(backend: Backend) {
    let app = spawn_app(backend).await;
    history(&app).await;
    let at = "2030-01-01T00:00:00Z";
    let registry = TerritoryRegistry::sample();
    for territory in [Some("LOM"), None, Some("LOM-BG-BERGAMO")] {
        let mut query = format!("from=2024-01-01&to=2024-12-31&known_at={at}");
        if let Some(t) = territory {
            query = format!("territory={t}&{query}");
        }
        let breakdown = get_ok(&app, &format!("/v1/metrics/breakdown?{query}")).await;
        assert_eq!(breakdown["territory"], json!(territory));
        let expected: Vec<String> = registry
            .children(territory.and_then(|t| registry.get(t)).as_ref())
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        let children = breakdown["children"].as_array().unwrap();
        let codes: Vec<&str> = children
            .iter()
            .map(|c| c["territory"].as_str().unwrap())
            .collect();
        assert_eq!(codes, expected);
        for child in children {
            let code = child["territory"].as_str().unwrap();
            let single = get_ok(
                &app,
                &format!(
                    "/v1/metrics?territory={code}&from=2024-01-01&to=2024-12-31&known_at={at}"
                ),
            )
            .await;
            assert_eq!(child["metrics"], single, "{code}");
        }

        // Offline: what `filiera report --breakdown` prints for the same options.
        let params: BreakdownParams = serde_urlencoded::from_str(&query).unwrap();
        let query = params.into_query(&registry, 2, Utc::now()).unwrap();
        let offline = filiera_projections::replay_breakdown(&app.store, &query)
            .await
            .unwrap();
        assert_eq!(breakdown, serde_json::to_value(offline).unwrap());
    }
    // Lombardy's children: Bergamo had the enrolment, Lecco the reiteration.
    let lom = get_ok(
        &app,
        &format!("/v1/metrics/breakdown?territory=LOM&from=2024-01-01&to=2024-12-31&known_at={at}"),
    )
    .await;
    let child = |code: &str| {
        lom["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["territory"] == code)
            .unwrap()["metrics"]
            .clone()
    };
    assert_eq!(child("LOM-BG")["enrolments"], 1);
    assert_eq!(child("LOM-LC")["transitions"]["reiteration"], 1);

    let answer = app.get("/v1/metrics/breakdown?territory=ATLANTIS").await;
    answer.problem(422, "unknown_territory");
}
