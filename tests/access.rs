//! Authentication and authorisation (SPEC 5.1) over every route of the OpenAPI document:
//! refused tokens, each role in and out of its territories, the subscriber's filtered feed,
//! and the browser's way into the live stream, which never reaches the logs.
//!
//! The expectations below are written from SPEC 5.1 and docs/security.md, not read from the
//! access table, so that the table is checked rather than repeated.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use filiera_auth::{AuthSecret, Claims, Role, TokenKeys};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, Backend, TestApp, capture_trace_logs, spawn_app, test_keys, token};

filiera_testkit::on_both_backends!(
    every_route_refuses_missing_and_bad_tokens,
    every_route_by_role_and_scope,
    the_feed_is_filtered_to_a_subscribers_territories,
    commands_record_the_tokens_subject,
);

/// The in-scope and out-of-scope territories of the scoped principals below (operator and
/// subscriber of `LOM-BG`, evaluator of `LOM`).
const IN: &str = "LOM-BG-BERGAMO";
const OUT: &str = "PIE-TO-TORINO";

/// Every `(method, template)` of the served OpenAPI document: the route list.
async fn routes(app: &TestApp) -> Vec<(Method, String)> {
    let doc = app.get("/openapi.json").await.body;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.push((method.to_ascii_uppercase().parse().unwrap(), path.clone()));
        }
    }
    assert!(out.len() >= 21, "{out:?}");
    out
}

fn is_open(template: &str) -> bool {
    matches!(
        template,
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json"
    )
}

/// Sends a request with this `Authorization` value (or none) and reads the answer; the live
/// stream's endless body is not read (`Null`).
async fn send(
    app: &TestApp,
    authorization: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut request = app
        .anonymous
        .request(method, format!("{}{path}", app.address))
        .timeout(Duration::from_secs(30));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let streaming = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let body = if streaming {
        Value::Null
    } else {
        let bytes = response.bytes().await.expect("body");
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The tokens every protected route must refuse with 401, and what `detail` must say.
fn bad_tokens() -> Vec<(&'static str, Option<String>, &'static str)> {
    let now = chrono::Utc::now().timestamp() as u64;
    let expired = test_keys()
        .sign(&Claims {
            sub: "late".into(),
            role: Role::Administrator,
            territories: vec![],
            exp: now - 3600,
            iat: now - 7200,
        })
        .unwrap();
    let other_keys = TokenKeys::new(&AuthSecret::new(
        "not the server's secret, but long enough".into(),
    ))
    .unwrap();
    let wrong_signature = other_keys
        .issue(
            "mallory",
            Role::Administrator,
            &[],
            Duration::from_secs(600),
        )
        .unwrap();
    let claims = json!({"sub": "mallory", "role": "administrator", "exp": now + 600});
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    vec![
        ("missing", None, "needs a bearer token"),
        ("garbage", Some("garbage".into()), "invalid"),
        ("expired", Some(expired), "expired"),
        ("wrong signature", Some(wrong_signature), "signature"),
        ("alg none", Some(alg_none), "invalid"),
    ]
}

async fn every_route_refuses_missing_and_bad_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol(IN, "2024-01-10").await;
    for (method, template) in routes(&app).await {
        let path = template
            .replace("{id}", &id)
            .replace("{name}", "territory_metrics");
        let body = (method == Method::POST).then(|| json!({}));
        if is_open(&template) {
            let answer = send(&app, None, method.clone(), &path, None).await;
            assert_eq!(answer.status, 200, "{method} {template} is open");
            continue;
        }
        for (what, token, says) in bad_tokens() {
            let authorization = token.as_ref().map(|t| format!("Bearer {t}"));
            let answer = send(
                &app,
                authorization.as_deref(),
                method.clone(),
                &path,
                body.as_ref(),
            )
            .await;
            let at = format!("{method} {template} with a {what} token");
            assert_eq!(answer.status, 401, "{at}: {:#}", answer.body);
            answer.problem(401, "unauthenticated");
            let challenge = answer.headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{at}: {challenge}");
            let detail = answer.body["detail"].as_str().unwrap();
            assert!(detail.contains(says), "{at}: {detail}");
            if let Some(token) = &token {
                assert!(
                    !detail.contains(token.as_str()),
                    "{at}: the token is echoed"
                );
            }
        }
        // Not a bearer scheme at all.
        let basic = send(
            &app,
            Some("Basic YWRtaW46YWRtaW4="),
            method.clone(),
            &path,
            body.as_ref(),
        )
        .await;
        basic.problem(401, "unauthenticated");
    }
    // Nothing was written by any refused request.
    assert_eq!(app.whole_feed().await.len(), 1);
}

/// The principals of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Administrator,
    /// Operator of `LOM-BG`.
    Operator,
    /// Evaluator of every territory.
    Evaluator,
    /// Evaluator of `LOM`.
    ScopedEvaluator,
    /// Subscriber of `LOM-BG`.
    Subscriber,
}

impl Who {
    const ALL: [Who; 5] = [
        Who::Administrator,
        Who::Operator,
        Who::Evaluator,
        Who::ScopedEvaluator,
        Who::Subscriber,
    ];

    fn token(self) -> String {
        match self {
            Who::Administrator => token(Role::Administrator, &[]),
            Who::Operator => token(Role::Operator, &["LOM-BG"]),
            Who::Evaluator => token(Role::Evaluator, &[]),
            Who::ScopedEvaluator => token(Role::Evaluator, &["LOM"]),
            Who::Subscriber => token(Role::Subscriber, &["LOM-BG"]),
        }
    }

    /// Whether the principal's territories include `IN` / `OUT`.
    fn covers(self, inside: bool) -> bool {
        match self {
            Who::Administrator | Who::Evaluator => true,
            Who::Operator | Who::Subscriber | Who::ScopedEvaluator => inside,
        }
    }
}

/// What SPEC 5.1 says the answer must be.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Allowed: the given status.
    Status(u16),
    /// Allowed, and either status (a second rebuild may find one running).
    Either(u16, u16),
    /// 403 with this code.
    Forbidden(&'static str),
    /// 404 `beneficiary_not_found`: out of scope reads as unknown.
    Hidden,
}

fn expect(who: Who, method: &Method, template: &str, inside: bool) -> Expect {
    use Expect::*;
    let role_refused = Forbidden("forbidden");
    match template {
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" => Status(200),
        "/v1/beneficiaries" if method == Method::GET => match who {
            // Out of scope, the lookup finds nothing rather than refusing.
            Who::Administrator | Who::Operator => Status(200),
            _ => role_refused,
        },
        "/v1/beneficiaries/{id}/person" if method == Method::DELETE => match who {
            Who::Administrator => Status(204),
            _ => role_refused,
        },
        "/v1/access-log" => match who {
            Who::Administrator => Status(200),
            _ => role_refused,
        },
        "/v1/beneficiaries" => match who {
            Who::Administrator => Status(201),
            Who::Operator if inside => Status(201),
            Who::Operator => Forbidden("territory_out_of_scope"),
            _ => role_refused,
        },
        t if t.starts_with("/v1/beneficiaries/{id}") => match who {
            Who::Administrator => Status(200),
            Who::Operator if inside => Status(200),
            Who::Operator => Hidden,
            _ => role_refused,
        },
        "/v1/territories" | "/v1/stages" | "/v1/providers" => match who {
            Who::Subscriber => role_refused,
            _ => Status(200),
        },
        "/v1/metrics"
        | "/v1/metrics/series"
        | "/v1/metrics/breakdown"
        | "/v1/providers/scorecard"
        | "/v1/audit/reiterations"
        | "/v1/reports/regional" => match who {
            Who::Subscriber => role_refused,
            w if w.covers(inside) => Status(200),
            _ => Forbidden("territory_out_of_scope"),
        },
        "/v1/events" => match who {
            Who::Administrator | Who::Subscriber => Status(200),
            _ => role_refused,
        },
        "/v1/events/stream" => match who {
            Who::Administrator => Status(200),
            Who::Subscriber if inside => Status(200),
            Who::Subscriber => Forbidden("territory_out_of_scope"),
            _ => role_refused,
        },
        "/v1/projections" => match who {
            Who::Administrator => Status(200),
            _ => role_refused,
        },
        "/v1/projections/{name}/rebuild" => match who {
            Who::Administrator => Either(202, 409),
            _ => role_refused,
        },
        other => panic!("{method} {other}: no expectation written for this route"),
    }
}

/// A beneficiary in `territory` prepared by the administrator so that the command of
/// `template` succeeds on it, and that command's path and body.
async fn prepare(
    app: &TestApp,
    method: &Method,
    template: &str,
    territory: &str,
) -> (String, Option<Value>) {
    if template == "/v1/beneficiaries" && method == Method::GET {
        let (_, fiscal_code) = app.enrol_person(territory).await;
        return (format!("{template}?fiscal_code={fiscal_code}"), None);
    }
    if template == "/v1/beneficiaries/{id}/person" {
        let (id, _) = app.enrol_person(territory).await;
        return (format!("/v1/beneficiaries/{id}/person"), None);
    }
    if template == "/v1/beneficiaries" {
        return (
            template.into(),
            Some(json!({"territory": territory, "on": "2024-01-10", "referral": "self"})),
        );
    }
    // Covered by the operator and the subscriber (`LOM-BG`) and the scoped evaluator (`LOM`).
    let region = if territory == IN { "LOM-BG" } else { "PIE" };
    let query = match template {
        "/v1/metrics"
        | "/v1/metrics/series"
        | "/v1/metrics/breakdown"
        | "/v1/providers/scorecard"
        | "/v1/reports/regional" => {
            format!("?territory={region}&from=2024-01-01&to=2024-12-31")
        }
        "/v1/audit/reiterations" => format!("?territory={region}&to=2024-12-31"),
        "/v1/events/stream" => format!("?territory={region}"),
        _ => String::new(),
    };
    if !template.contains("{id}") {
        let path = template.replace("{name}", "territory_metrics");
        let body = template.ends_with("/rebuild").then(|| json!({}));
        return (format!("{path}{query}"), body);
    }
    let id = app.enrol(territory, "2024-01-10").await;
    let at = |suffix: &str| format!("/v1/beneficiaries/{id}{suffix}");
    let admin = |path: String, body: Value| async move {
        let answer = app.post(&path, body).await;
        assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
    };
    let body = match template.strip_prefix("/v1/beneficiaries/{id}").unwrap() {
        "" | "/history" => None,
        "/stage" => Some(json!({"stage": "internship", "on": "2024-02-01"})),
        "/stage/exit" => {
            admin(
                at("/stage"),
                json!({"stage": "internship", "on": "2024-02-01"}),
            )
            .await;
            Some(json!({"on": "2024-03-01", "outcome": "completed"}))
        }
        "/territory" => {
            let to = if territory == IN {
                "LOM-BG-VALLE-BREMBANA"
            } else {
                // Into the operator's territories, from outside them: still not theirs.
                IN
            };
            Some(json!({"territory": to, "on": "2024-03-01"}))
        }
        "/close" => Some(json!({"on": "2024-03-01", "outcome": "employed"})),
        "/reopen" => {
            admin(
                at("/close"),
                json!({"on": "2024-03-01", "outcome": "employed"}),
            )
            .await;
            Some(json!({"on": "2024-04-01"}))
        }
        "/assessment" => Some(json!({"on": "2024-02-01", "kind": "multidisciplinary",
                                     "occupability": "medium",
                                     "team": ["social_services", "employment_centre"]})),
        "/undo" => {
            admin(
                at("/stage"),
                json!({"stage": "internship", "on": "2024-02-01"}),
            )
            .await;
            Some(json!({"reason": "recorded by mistake"}))
        }
        other => panic!("no preparation written for /v1/beneficiaries/{{id}}{other}"),
    };
    (
        at(template.strip_prefix("/v1/beneficiaries/{id}").unwrap()),
        body,
    )
}

async fn every_route_by_role_and_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut checked = 0;
    for (method, template) in routes(&app).await {
        for inside in [true, false] {
            for who in Who::ALL {
                let territory = if inside { IN } else { OUT };
                let (path, body) = prepare(&app, &method, &template, territory).await;
                let bearer = format!("Bearer {}", who.token());
                let authorization = (!is_open(&template)).then_some(bearer.as_str());
                let before = app.store.head().await.unwrap();
                let answer = send(&app, authorization, method.clone(), &path, body.as_ref()).await;
                let expected = expect(who, &method, &template, inside);
                let at = format!(
                    "{who:?} {method} {path} ({}): {} {:#}",
                    if inside { "in scope" } else { "out of scope" },
                    answer.status,
                    answer.body
                );
                match expected {
                    Expect::Status(status) => assert_eq!(answer.status, status, "{at}"),
                    Expect::Either(a, b) => {
                        assert!([a, b].contains(&answer.status), "{at}")
                    }
                    Expect::Forbidden(code) => {
                        answer.problem(403, code);
                        if code == "territory_out_of_scope" {
                            assert_eq!(answer.body["field"], "territory", "{at}");
                        }
                    }
                    Expect::Hidden => {
                        answer.problem(404, "beneficiary_not_found");
                    }
                }
                if answer.status >= 400 {
                    // A refusal writes nothing.
                    assert_eq!(app.store.head().await.unwrap(), before, "{at}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 22 * 10, "{checked}");

    // A scoped caller must name a territory of its own for aggregates; an unscoped one need
    // not.
    for path in [
        "/v1/metrics",
        "/v1/audit/reiterations",
        "/v1/metrics/breakdown",
        "/v1/providers/scorecard",
        "/v1/metrics/series?from=2024-01-01",
        "/v1/reports/regional",
    ] {
        app.get_as(&Who::Operator.token(), path)
            .await
            .problem(403, "territory_out_of_scope");
        app.get_as(&Who::ScopedEvaluator.token(), path)
            .await
            .problem(403, "territory_out_of_scope");
        assert_eq!(app.get_as(&Who::Evaluator.token(), path).await.status, 200);
    }
    // An unknown territory is still 422, whoever asks.
    let unknown = app
        .post_as(
            &Who::Operator.token(),
            "/v1/beneficiaries",
            json!({"territory": "ATLANTIS", "on": "2024-01-10", "referral": "self"}),
        )
        .await;
    unknown.problem(422, "unknown_territory");
}

async fn the_feed_is_filtered_to_a_subscribers_territories(backend: Backend) {
    let app = spawn_app(backend).await;
    for territory in [IN, OUT, "LOM-BG-VALLE-IMAGNA", "LOM-MI-MILANO", OUT] {
        let id = app.enrol(territory, "2024-01-10").await;
        app.enter(&id, "internship", "2024-02-01").await;
    }
    let everything = app.whole_feed().await;
    let in_scope: Vec<&Value> = everything
        .iter()
        .filter(|e| {
            e["territory"]
                .as_str()
                .is_some_and(|t| t.starts_with("LOM-BG"))
        })
        .collect();
    assert_eq!(in_scope.len(), 4);

    // Page by page, small pages: only the subscriber's items, all of them, in feed order.
    let subscriber = Who::Subscriber.token();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get_as(&subscriber, &format!("/v1/events?after={after}&limit=1"))
            .await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        let next = page.body["next_after"].as_i64().unwrap();
        seen.extend(page.body["events"].as_array().unwrap().clone());
        if next == after {
            break;
        }
        after = next;
    }
    assert_eq!(seen.iter().collect::<Vec<_>>(), in_scope);

    // The live stream, with the header and without a territory: the same items.
    let response = app
        .anonymous
        .get(format!("{}/v1/events/stream", app.address))
        .bearer_auth(&subscriber)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let items = read_events(response, in_scope.len()).await;
    assert_eq!(items.iter().collect::<Vec<_>>(), in_scope);
}

/// Reads `n` SSE events' JSON data from a live stream.
async fn read_events(response: reqwest::Response, n: usize) -> Vec<Value> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < n {
            let chunk = body.next().await.expect("stream open").expect("chunk");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let data: String = frame
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if !data.is_empty() {
                    out.push(serde_json::from_str(&data).expect("JSON data"));
                }
            }
        }
    })
    .await
    .expect("the events within 10 s");
    out
}

async fn commands_record_the_tokens_subject(backend: Backend) {
    let app = spawn_app(backend).await;
    let operator = Who::Operator.token();
    let enrolled = app
        .post_as(
            &operator,
            "/v1/beneficiaries",
            json!({"territory": IN, "on": "2024-01-10", "referral": "self"}),
        )
        .await;
    assert_eq!(enrolled.status, 201, "{:#}", enrolled.body);
    let id = enrolled.body["id"].as_str().unwrap().to_owned();
    app.enter(&id, "internship", "2024-02-01").await;
    let history = app
        .store
        .history(id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let principals: Vec<Option<&str>> = history.iter().map(|e| e.principal.as_deref()).collect();
    assert_eq!(
        principals,
        [Some("test-operator"), Some("test-administrator")]
    );
}

/// A browser's `EventSource` sends no header: the token rides in `?access_token=` on the live
/// stream (only there), and appears in no log line, even at the `trace` level.
#[tokio::test]
async fn browsers_stream_with_an_access_token_that_is_never_logged() {
    let capture = capture_trace_logs();
    let app = spawn_app(Backend::Sqlite).await;
    let id = app.enrol(IN, "2024-01-10").await;
    app.enrol(OUT, "2024-01-10").await;
    let token = Who::Subscriber.token();
    let response = app
        .anonymous
        .get(format!(
            "{}/v1/events/stream?territory=LOM-BG&access_token={token}",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let items = read_events(response, 1).await;
    assert_eq!(items[0]["beneficiary_id"], id.as_str());

    // Out of scope through the query too.
    let refused = send(
        &app,
        None,
        Method::GET,
        &format!("/v1/events/stream?territory=PIE&access_token={token}"),
        None,
    )
    .await;
    refused.problem(403, "territory_out_of_scope");
    // Only the stream takes it: the page of the feed wants the header.
    let page = send(
        &app,
        None,
        Method::GET,
        &format!("/v1/events?access_token={token}"),
        None,
    )
    .await;
    page.problem(401, "unauthenticated");
    // A refused token in the query or in the header is not logged either.
    let wrong = format!("{token}x");
    send(
        &app,
        None,
        Method::GET,
        &format!("/v1/events/stream?access_token={wrong}"),
        None,
    )
    .await
    .problem(401, "unauthenticated");
    send(
        &app,
        Some(&format!("Bearer {wrong}")),
        Method::GET,
        "/v1/territories",
        None,
    )
    .await
    .problem(401, "unauthenticated");

    let logs = capture.written();
    assert!(
        logs.contains("/v1/events/stream"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("token not accepted"), "{logs}");
    for part in token.split('.') {
        assert!(
            !logs.contains(part),
            "a part of the token is in the logs:\n{logs}"
        );
    }
    assert!(!logs.contains("access_token"), "{logs}");
}
