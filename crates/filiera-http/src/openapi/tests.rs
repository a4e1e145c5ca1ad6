//! The OpenAPI document checked against itself, against the router, and against real answers:
//! every answer of a scenario over a SQLite store must be documented for its route and status
//! and conform to the documented schema.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::response::IntoResponse;
use chrono::Utc;
use filiera_domain::{PathwayServices, StageCatalogue, TerritoryRegistry};
use filiera_projections::{ProjectionSettings, Projections};
use filiera_store::Store;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::AppState;
use crate::problem::ApiError;

/// The document as JSON.
fn document() -> Value {
    serde_json::to_value(crate::openapi()).expect("the document serialises")
}

/// Follows local `$ref`s (`#/components/...`) until a node without one.
fn resolve<'a>(doc: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {reference}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"));
            resolve(doc, target)
        }
        None => node,
    }
}

/// Every `(path, method, operation)` of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            out.push((path.clone(), method.clone(), operation));
        }
    }
    out
}

/// A JSON Schema validator for `schema`, a node of `doc` whose `$ref`s point into `doc`.
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("invalid schema {schema}: {e}"))
}

/// Asserts that `instance` conforms to `schema`.
#[track_caller]
fn assert_valid(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let validator = validator(doc, schema);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance:#} does not conform to {schema}:\n{}",
        errors.join("\n")
    );
}

#[test]
fn document_is_openapi_3_1_about_filiera() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "filiera");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["info"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert!(
        doc.get("servers").is_none(),
        "servers are left to the deployment"
    );
    let spec: BTreeSet<&str> = [
        "/v1/beneficiaries",
        "/v1/beneficiaries/{id}/person",
        "/v1/access-log",
        "/v1/beneficiaries/{id}",
        "/v1/beneficiaries/{id}/history",
        "/v1/beneficiaries/{id}/stage",
        "/v1/beneficiaries/{id}/stage/exit",
        "/v1/beneficiaries/{id}/territory",
        "/v1/beneficiaries/{id}/close",
        "/v1/beneficiaries/{id}/reopen",
        "/v1/beneficiaries/{id}/undo",
        "/v1/beneficiaries/{id}/assessment",
        "/v1/territories",
        "/v1/stages",
        "/v1/providers",
        "/v1/metrics",
        "/v1/metrics/series",
        "/v1/metrics/breakdown",
        "/v1/providers/scorecard",
        "/v1/audit/reiterations",
        "/v1/reports/regional",
        "/v1/events",
        "/v1/events/stream",
        "/v1/projections",
        "/v1/projections/{name}/rebuild",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ]
    .into();
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(documented, spec);
}

#[test]
fn every_operation_is_described() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let at = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: operationId"));
        assert!(ids.insert(id.to_owned()), "{at}: operationId {id} twice");
        assert!(
            op["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{at}: summary"
        );
        assert!(
            op["tags"].as_array().is_some_and(|t| !t.is_empty()),
            "{at}: tag"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: a success answer"
        );
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(response["description"].is_string(), "{at} {status}");
            if status.starts_with('4') || status.starts_with('5') {
                // Errors are problem documents; only `/metrics`' bare 500 has no body.
                let Some(content) = response.get("content") else {
                    assert_eq!((path.as_str(), status.as_str()), ("/metrics", "500"));
                    continue;
                };
                let types: Vec<&String> = content.as_object().unwrap().keys().collect();
                assert_eq!(types, ["application/problem+json"], "{at} {status}");
                assert_eq!(
                    content["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{at} {status}"
                );
            }
        }
        for parameter in op["parameters"].as_array().into_iter().flatten() {
            assert!(parameter["description"].is_string(), "{at}: {parameter}");
        }
    }
}

#[test]
fn request_bodies_are_closed_and_their_errors_documented() {
    let doc = document();
    let mut bodies = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let Some(body) = op.get("requestBody") else {
            continue;
        };
        let at = format!("{method} {path}");
        assert_eq!(body["required"], true, "{at}");
        let schema_ref = body["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: a named JSON body"));
        bodies.insert(schema_ref.rsplit('/').next().unwrap().to_owned());
        let schema = resolve(&doc, &body["content"]["application/json"]["schema"]);
        // The bodies `deny_unknown_fields`: an unknown member is a 422.
        assert_eq!(schema["additionalProperties"], false, "{at}");
        for status in ["400", "413", "415", "422", "500"] {
            assert!(op["responses"].get(status).is_some(), "{at}: {status}");
        }
        if path.contains("{id}") {
            assert!(op["responses"].get("404").is_some(), "{at}: 404");
        }
        let parameters = op["parameters"].as_array().expect("parameters");
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
            "{at}: Idempotency-Key"
        );
    }
    let expected: BTreeSet<String> = [
        "EnrolBody",
        "StageBody",
        "ExitBody",
        "TerritoryBody",
        "CloseBody",
        "ReopenBody",
        "UndoBody",
        "AssessmentBody",
    ]
    .map(String::from)
    .into();
    assert_eq!(bodies, expected);
}

#[test]
fn query_and_path_parameters_are_documented() {
    let doc = document();
    let names = |path: &str, method: &str| -> BTreeSet<(String, String)> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: parameters"))
            .iter()
            .map(|p| {
                (
                    p["in"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let set = |items: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        items
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(
        names("/v1/events", "get"),
        set(&[("query", "after"), ("query", "limit")])
    );
    assert_eq!(
        names("/v1/events/stream", "get"),
        set(&[
            ("query", "after"),
            ("query", "territory"),
            ("query", "type"),
            ("query", "access_token"),
            ("header", "Last-Event-ID"),
        ])
    );
    assert_eq!(
        names("/v1/metrics", "get"),
        set(&[
            ("query", "territory"),
            ("query", "from"),
            ("query", "to"),
            ("query", "known_at"),
        ])
    );
    assert_eq!(
        names("/v1/audit/reiterations", "get"),
        set(&[
            ("query", "territory"),
            ("query", "to"),
            ("query", "known_at")
        ])
    );
    assert_eq!(
        names("/v1/projections/{name}/rebuild", "post"),
        set(&[("path", "name")])
    );
    for (path, method, op) in operations(&doc) {
        if path.contains("{id}") {
            let id = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "id")
                .unwrap_or_else(|| panic!("{method} {path}: id"));
            assert_eq!(id["in"], "path");
            assert_eq!(id["schema"]["format"], "uuid");
        }
    }
}

#[test]
fn every_reference_resolves() {
    fn walk(doc: &Value, node: &Value) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let pointer = reference.strip_prefix('#').expect("local $ref");
                    assert!(doc.pointer(pointer).is_some(), "dangling {reference}");
                }
                map.values().for_each(|v| walk(doc, v));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
            _ => {}
        }
    }
    let doc = document();
    walk(&doc, &doc);
}

/// [`crate::api`] is the only list of routes: a bare `.route(...)` (or a nested or merged
/// router) in `lib.rs` would serve a path the document does not describe. The one exception is
/// the web dashboard's static files (`crate::dashboard`, ADR 0012), which are not an API and
/// are listed in the access table instead.
#[test]
fn routes_are_only_registered_with_their_description() {
    let code: Vec<&str> = include_str!("../lib.rs")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .filter(|line| line.trim() != ".merge(dashboard::router())")
        .collect();
    for bare in [
        ".route(",
        ".route_service(",
        ".nest(",
        ".nest_service(",
        ".merge(",
    ] {
        assert!(
            !code.iter().any(|line| line.contains(bare)),
            "lib.rs registers a route with `{bare}`: use `.routes(routes!(handler))` in `api()` \
             so that the OpenAPI document describes it"
        );
    }
}

#[test]
fn the_schemas_refuse_what_the_api_refuses() {
    let doc = document();
    let schema = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let refused = |name: &str, instance: Value| {
        let validator = validator(&doc, &schema(name));
        assert!(!validator.is_valid(&instance), "{name} accepts {instance}");
    };
    refused(
        "EnrolBody",
        json!({"territory": "LOM", "on": "2024-01-10", "referral": "self", "extra": 1}),
    );
    refused("EnrolBody", json!({"territory": "LOM", "on": "2024-01-10"}));
    refused(
        "EnrolBody",
        json!({"territory": "LOM", "on": "10/01/2024", "referral": "self"}),
    );
    refused(
        "ExitBody",
        json!({"on": "2024-01-10", "outcome": "sideways"}),
    );
    refused("UndoBody", json!({}));
    refused(
        "AssessmentBody",
        json!({"on": "2024-01-10", "kind": "initial", "occupability": "low",
               "team": ["social_services", "neighbours"]}),
    );
    refused(
        "AssessmentBody",
        json!({"on": "2024-01-10", "kind": "initial", "occupability": "average",
               "team": ["social_services"]}),
    );
    // Everything the server checks of a body's shape is in its schema (issue 11).
    let enrol =
        |territory: &str| json!({"territory": territory, "on": "2024-01-10", "referral": "self"});
    refused("EnrolBody", enrol(""));
    refused("EnrolBody", enrol("LOM BG"));
    refused("EnrolBody", enrol(&"L".repeat(65)));
    refused(
        "EnrolBody",
        json!({"territory": "LOM", "on": "2024-02-30", "referral": "self"}),
    );
    refused(
        "EnrolBody",
        json!({"territory": "LOM", "on": "2024-01-10", "referral": "self",
               "person": {"fiscal_code": "RSSMRA80A01H501", "given_name": "M",
                          "family_name": "R"}}),
    );
    refused(
        "EnrolBody",
        json!({"territory": "LOM", "on": "2024-01-10", "referral": "self",
               "person": {"fiscal_code": "RSSMRA80A01H501U", "given_name": "  ",
                          "family_name": "R"}}),
    );
    refused("StageBody", json!({"stage": "", "on": "2024-01-10"}));
    refused(
        "StageBody",
        json!({"stage": "Internship", "on": "2024-01-10"}),
    );
    refused(
        "StageBody",
        json!({"stage": "internship", "on": "2024-01-10", "provider": " \t "}),
    );
    refused(
        "StageBody",
        json!({"stage": "internship", "on": "2024-01-10", "provider": "a\u{7}b"}),
    );
    refused(
        "StageBody",
        json!({"stage": "internship", "on": "2024-01-10", "provider": "x".repeat(501)}),
    );
    refused(
        "ExitBody",
        json!({"on": "2024-01-10", "outcome": "moved_on"}),
    );
    refused(
        "TerritoryBody",
        json!({"territory": "", "on": "2024-01-10"}),
    );
    refused("UndoBody", json!({"reason": "\u{3000}\n"}));
    refused(
        "AssessmentBody",
        json!({"on": "2024-01-10", "kind": "initial",
        "occupability": "low", "team": []}),
    );
    refused(
        "AssessmentBody",
        json!({"on": "2024-01-10", "kind": "initial",
        "occupability": "low", "team": ["social_services", "social_services"]}),
    );
    refused(
        "AssessmentBody",
        json!({"on": "2024-01-10", "kind": "multidisciplinary",
        "occupability": "low", "team": ["social_services"]}),
    );
    let accepted = |name: &str, instance: Value| {
        assert!(
            validator(&doc, &schema(name)).is_valid(&instance),
            "{name} refuses {instance}"
        );
    };
    accepted(
        "AssessmentBody",
        json!({"on": "2024-01-10", "kind": "multidisciplinary",
        "occupability": "low", "team": ["social_services", "health_service"]}),
    );
    accepted(
        "StageBody",
        json!({"stage": "internship", "on": "2024-01-10",
        "provider": " Coop Alfa, Bergamo "}),
    );
    accepted("UndoBody", json!({"reason": "recorded twice"}));
    refused("BeneficiaryView", json!({"version": 1, "status": "open"}));
    refused("FeedPage", json!({"events": "none", "next_after": 0}));
    refused(
        "Problem",
        json!({"title": "t", "status": 422, "detail": "d"}),
    );
    assert!(
        validator(&doc, &schema("ReopenBody")).is_valid(&json!({"on": "2024-01-10"})),
        "a valid body passes"
    );
}

/// The free-text schema and the domain's free-text rule agree: a reason the schema accepts is
/// recorded, one it refuses is refused naming `reason`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_schema_is_the_free_text_rule() {
    let mut c = Checker::new().await;
    let text = validator(&c.doc, &json!({"$ref": "#/components/schemas/Text"}));
    let enrolled = c
        .post(
            "/v1/beneficiaries",
            "/v1/beneficiaries",
            json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10", "referral": "self"}),
        )
        .await;
    let id = enrolled.body["id"].as_str().unwrap().to_owned();
    let samples = [
        "recorded twice".to_owned(),
        " padded ".to_owned(),
        "".to_owned(),
        "   ".to_owned(),
        "\u{a0}\u{3000}\u{2028}".to_owned(),
        "tab\tinside".to_owned(),
        "bell\u{7}".to_owned(),
        "c1\u{85}control".to_owned(),
        "è già stato registrato".to_owned(),
        "x".repeat(500),
        "x".repeat(501),
    ];
    for reason in samples {
        // One stage entry to undo for each sample.
        let entered = c
            .post(
                "/v1/beneficiaries/{id}/stage",
                &format!("/v1/beneficiaries/{id}/stage"),
                json!({"stage": "internship", "on": "2024-02-01"}),
            )
            .await;
        assert_eq!(entered.status, 200, "{:#}", entered.body);
        let answer = c
            .post(
                "/v1/beneficiaries/{id}/undo",
                &format!("/v1/beneficiaries/{id}/undo"),
                json!({ "reason": reason }),
            )
            .await;
        let valid = text.is_valid(&json!(reason));
        if valid {
            assert_eq!(answer.status, 200, "{reason:?}: {:#}", answer.body);
        } else {
            assert_eq!(answer.status, 422, "{reason:?}: {:#}", answer.body);
            assert_eq!(answer.body["field"], "reason", "{reason:?}");
            // Leave the entry for the next sample's undo to void.
            let undone = c
                .post(
                    "/v1/beneficiaries/{id}/undo",
                    &format!("/v1/beneficiaries/{id}/undo"),
                    json!({ "reason": "clean up" }),
                )
                .await;
            assert_eq!(undone.status, 200, "{:#}", undone.body);
        }
    }
}

/// The live stream's schema describes one server-sent event, its `data` a `FeedItem` in JSON
/// (not a bare string), in the form Schemathesis and OpenAPI 3.2's `itemSchema` read.
#[test]
fn the_stream_schema_describes_each_event() {
    let doc = document();
    let ok = &doc["paths"]["/v1/events/stream"]["get"]["responses"]["200"];
    let schema = resolve(&doc, &ok["content"]["text/event-stream"]["schema"]);
    assert_eq!(schema["type"], "object", "{schema:#}");
    assert_eq!(schema["required"], json!(["id", "data"]));
    let data = &schema["properties"]["data"];
    assert_eq!(data["type"], "string");
    assert_eq!(data["contentMediaType"], "application/json");
    assert_eq!(
        data["contentSchema"]["$ref"],
        "#/components/schemas/FeedItem"
    );
    assert!(doc["components"]["schemas"]["FeedItem"].is_object());
}

#[test]
fn the_event_type_schema_lists_every_event() {
    let doc = document();
    let names: Vec<&str> = doc["components"]["schemas"]["EventType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(names, filiera_domain::PathwayEvent::TYPES);
}

/// Asserts that `value` has exactly the members the named schema lists, and conforms to it.
#[track_caller]
fn assert_mirrors(doc: &Value, schema: &str, value: &Value) {
    let reference = json!({ "$ref": format!("#/components/schemas/{schema}") });
    assert_valid(doc, &reference, value, schema);
    let documented: BTreeSet<&String> = doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema}: properties"))
        .keys()
        .collect();
    let actual: BTreeSet<&String> = value.as_object().unwrap().keys().collect();
    assert_eq!(documented, actual, "the members of {schema}");
}

#[test]
fn mirrors_match_the_real_types() {
    use filiera_projections::{
        CacheStatus, ProjectionState, ProjectionStatus, RebuildStarted, RebuildStatus,
    };
    let doc = document();
    let rebuilding = RebuildStatus {
        generation: 2,
        position: 10,
        lag: 5,
        started_at: Utc::now(),
    };
    let cache = CacheStatus {
        generation: 1,
        position: 15,
    };
    let status = ProjectionStatus {
        name: "territory_metrics".into(),
        generation: 1,
        position: 15,
        head: 15,
        lag: 0,
        state: ProjectionState::Rebuilding,
        leader: true,
        rebuilding: Some(rebuilding.clone()),
        cache: Some(cache),
        error: Some("boom".into()),
    };
    let status = serde_json::to_value(&status).unwrap();
    assert_mirrors(&doc, "ProjectionStatus", &status);
    assert_mirrors(&doc, "RebuildStatus", &status["rebuilding"]);
    assert_mirrors(&doc, "CacheStatus", &status["cache"]);
    for state in [
        ProjectionState::Live,
        ProjectionState::CatchingUp,
        ProjectionState::Rebuilding,
        ProjectionState::Failing,
        ProjectionState::Stopped,
    ] {
        let state = serde_json::to_value(state).unwrap();
        assert_valid(
            &doc,
            &json!({"$ref": "#/components/schemas/ProjectionState"}),
            &state,
            "ProjectionState",
        );
    }
    let started = RebuildStarted {
        name: "territory_metrics".into(),
        generation: 2,
    };
    assert_mirrors(
        &doc,
        "RebuildStarted",
        &serde_json::to_value(started).unwrap(),
    );
    let relay = filiera_store::jobs::RelayStatus {
        leading: true,
        connected: false,
        position: 3,
        head: 5,
        lag: 2,
        published_total: 3,
        publish_errors_total: 1,
        last_error: Some("no route to NATS".into()),
    };
    assert_mirrors(&doc, "RelayStatus", &serde_json::to_value(relay).unwrap());
}

/// The app over a fresh SQLite store, and what keeps it alive.
struct TestApi {
    router: Router,
    /// An administrator's token, sent with every request of the scenario.
    token: String,
    projections: Projections,
    _dir: tempfile::TempDir,
}

async fn test_api() -> TestApi {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("filiera.db").display());
    let services = PathwayServices::new(
        Arc::new(StageCatalogue::default_catalogue()),
        Arc::new(TerritoryRegistry::sample()),
    );
    let store = Store::connect(&url, services).await.expect("connect");
    store.migrate().await.expect("migrate");
    filiera_projections::migrate(&store.database())
        .await
        .expect("read model migrations");
    filiera_vault::Vault::migrate(&store.database())
        .await
        .expect("vault migrations");
    let vault = filiera_vault::Vault::open(store.database(), filiera_vault::MasterKey::generate())
        .await
        .expect("the vault opens");
    let store = Arc::new(store);
    let settings = ProjectionSettings::from_services(store.services(), 2);
    let projections = Projections::start((*store).clone(), settings)
        .await
        .expect("projections start");
    let keys = filiera_auth::TokenKeys::new(&filiera_auth::AuthSecret::new(
        "the OpenAPI scenario's secret, long enough to sign".into(),
    ))
    .expect("a long secret");
    let token = keys
        .issue(
            "openapi-scenario",
            filiera_auth::Role::Administrator,
            &[],
            Duration::from_secs(3600),
        )
        .expect("a token");
    TestApi {
        token,
        router: crate::router(AppState::new(store, projections.clone(), keys).with_vault(vault)),
        projections,
        _dir: dir,
    }
}

/// One answer: status, media type without parameters, body (JSON or a string).
struct Answer {
    status: u16,
    media_type: String,
    body: Value,
}

/// Checks every answer against the document.
struct Checker {
    doc: Value,
    api: TestApi,
    /// `(method, path template, status)` seen, to make sure the scenario covers the document.
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
}

impl Checker {
    async fn new() -> Self {
        Self {
            doc: document(),
            api: test_api().await,
            seen: BTreeMap::new(),
        }
    }

    /// Sends a request and asserts that the answer is documented for `template` and conforms to
    /// its schema.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.api.token));
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = self
            .api
            .router
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let media_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
            .to_owned();
        let (body, empty) = if media_type == "text/event-stream" {
            // Endless: the headers are the answer.
            (Value::Null, false)
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (body, bytes.is_empty())
        };
        let at = format!("{method} {uri} ({template}) → {status}");
        let operation = &self.doc["paths"][template][method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{at}: undocumented route");
        let response = operation["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{at}: undocumented status; body {body:#}"));
        let response = resolve(&self.doc, response).clone();
        if empty {
            // No content (204): the document must not promise one.
            assert!(
                response["content"].is_null(),
                "{at}: a body is documented: {response}"
            );
        } else {
            let schema = &response["content"][&media_type]["schema"];
            assert!(
                schema.is_object(),
                "{at}: {media_type} is not documented: {response}"
            );
            if !body.is_null() {
                assert_valid(&self.doc, schema, &body, &at);
            }
        }
        self.seen
            .entry((method.to_ascii_lowercase(), template.to_owned()))
            .or_default()
            .insert(status);
        Answer {
            status,
            media_type,
            body,
        }
    }

    async fn get(&mut self, template: &str, uri: &str) -> Answer {
        self.call("GET", template, uri, None, Vec::new()).await
    }

    async fn post(&mut self, template: &str, uri: &str, body: Value) -> Answer {
        self.call(
            "POST",
            template,
            uri,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_conform_to_the_document() {
    let mut c = Checker::new().await;
    let enrolled = c
        .post(
            "/v1/beneficiaries",
            "/v1/beneficiaries",
            json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10",
                   "referral": "social_services", "support_band": "medium"}),
        )
        .await;
    assert_eq!(enrolled.status, 201, "{:#}", enrolled.body);
    let id = enrolled.body["id"].as_str().unwrap().to_owned();
    let at = |suffix: &str| format!("/v1/beneficiaries/{id}{suffix}");

    let stage = "/v1/beneficiaries/{id}/stage";
    for (code, on) in [
        ("socio_occupational", "2024-01-15"),
        ("socio_occupational", "2024-02-01"),
        ("socio_occupational", "2024-03-01"),
        ("internship", "2024-04-01"),
    ] {
        let answer = c
            .post(
                stage,
                &at("/stage"),
                json!({"stage": code, "on": on, "provider": "Coop"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
    }
    let steps = [
        (
            "/v1/beneficiaries/{id}/stage/exit",
            "/stage/exit",
            json!({"on": "2024-05-01", "outcome": "completed"}),
        ),
        (
            "/v1/beneficiaries/{id}/territory",
            "/territory",
            json!({"territory": "LOM-MI-MILANO", "on": "2024-05-02"}),
        ),
        (
            "/v1/beneficiaries/{id}/assessment",
            "/assessment",
            json!({"on": "2024-05-10", "kind": "multidisciplinary", "occupability": "medium",
                   "team": ["social_services", "employment_centre"]}),
        ),
        (
            "/v1/beneficiaries/{id}/close",
            "/close",
            json!({"on": "2024-06-01", "outcome": "employed"}),
        ),
        (
            "/v1/beneficiaries/{id}/reopen",
            "/reopen",
            json!({"on": "2024-07-01"}),
        ),
        (
            "/v1/beneficiaries/{id}/undo",
            "/undo",
            json!({"reason": "recorded by mistake"}),
        ),
    ];
    for (template, suffix, body) in steps {
        let answer = c.post(template, &at(suffix), body).await;
        assert_eq!(answer.status, 200, "{template}: {:#}", answer.body);
    }

    // A second beneficiary stalled in a stage, for the audit list.
    let other = c
        .post(
            "/v1/beneficiaries",
            "/v1/beneficiaries",
            json!({"territory": "LOM-LC-LECCO", "on": "2024-01-10", "referral": "self"}),
        )
        .await;
    let other = other.body["id"].as_str().unwrap().to_owned();
    for on in ["2024-02-01", "2024-03-01", "2024-04-01"] {
        let answer = c
            .post(
                stage,
                &format!("/v1/beneficiaries/{other}/stage"),
                json!({"stage": "internship", "on": on}),
            )
            .await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
    }

    assert_eq!(c.get("/v1/beneficiaries/{id}", &at("")).await.status, 200);
    let history = c
        .get("/v1/beneficiaries/{id}/history", &at("/history"))
        .await;
    assert!(history.body["events"].as_array().unwrap().len() > 5);
    let feed = c.get("/v1/events", "/v1/events?after=0&limit=5").await;
    assert_eq!(feed.body["events"].as_array().unwrap().len(), 5);
    let stream = c
        .get(
            "/v1/events/stream",
            "/v1/events/stream?after=0&territory=LOM&type=stage_entered",
        )
        .await;
    assert_eq!(
        (stream.status, stream.media_type.as_str()),
        (200, "text/event-stream")
    );
    assert_eq!(
        c.get("/v1/territories", "/v1/territories").await.status,
        200
    );
    assert_eq!(c.get("/v1/stages", "/v1/stages").await.status, 200);
    assert_eq!(
        c.get("/v1/providers", "/v1/providers?territory=LOM-BG")
            .await
            .status,
        200
    );

    c.api
        .projections
        .wait_until_caught_up(Duration::from_secs(20))
        .await
        .expect("projections catch up");
    let metrics = c
        .get(
            "/v1/metrics",
            "/v1/metrics?territory=LOM&from=2024-01-01&to=2024-12-31",
        )
        .await;
    assert_eq!(metrics.status, 200, "{:#}", metrics.body);
    assert!(metrics.body["time_in_stage_days"]["internship"].is_object());
    let series = c
        .get(
            "/v1/metrics/series",
            "/v1/metrics/series?territory=LOM&from=2024-01-01&to=2024-12-31&interval=month",
        )
        .await;
    assert_eq!(series.status, 200, "{:#}", series.body);
    assert_eq!(series.body["points"].as_array().unwrap().len(), 12);
    let breakdown = c
        .get(
            "/v1/metrics/breakdown",
            "/v1/metrics/breakdown?territory=LOM&from=2024-01-01&to=2024-12-31",
        )
        .await;
    assert_eq!(breakdown.status, 200, "{:#}", breakdown.body);
    assert!(!breakdown.body["children"].as_array().unwrap().is_empty());
    let scorecard = c
        .get(
            "/v1/providers/scorecard",
            "/v1/providers/scorecard?territory=LOM&from=2024-01-01&to=2024-12-31",
        )
        .await;
    assert_eq!(scorecard.status, 200, "{:#}", scorecard.body);
    assert_eq!(scorecard.body["providers"][0]["provider"], "Coop");
    let audit = c
        .get(
            "/v1/audit/reiterations",
            "/v1/audit/reiterations?to=2024-12-31",
        )
        .await;
    assert_eq!(audit.status, 200, "{:#}", audit.body);
    assert_eq!(audit.body["beneficiaries"].as_array().unwrap().len(), 1);
    let report = c
        .get(
            "/v1/reports/regional",
            "/v1/reports/regional?territory=LOM&from=2024-01-01&to=2024-12-31&lang=en",
        )
        .await;
    assert_eq!(
        (report.status, report.media_type.as_str()),
        (200, "text/html")
    );
    assert!(
        report
            .body
            .as_str()
            .is_some_and(|page| page.starts_with("<!DOCTYPE html>"))
    );
    assert_eq!(
        c.get("/v1/projections", "/v1/projections").await.status,
        200
    );
    let rebuild = c
        .post(
            "/v1/projections/{name}/rebuild",
            "/v1/projections/territory_metrics/rebuild",
            json!({}),
        )
        .await;
    assert_eq!(rebuild.status, 202, "{:#}", rebuild.body);

    // The personal-data vault (SPEC 5.2).
    let person = json!({"fiscal_code": "RSSMRA80A01H501U", "given_name": "Maria",
                        "family_name": "Rossi", "birth_date": "1980-01-01"});
    let with_person = c
        .post(
            "/v1/beneficiaries",
            "/v1/beneficiaries",
            json!({"territory": "LOM-BG-BERGAMO", "on": "2024-01-10",
                   "referral": "social_services", "person": person}),
        )
        .await;
    assert_eq!(with_person.status, 201, "{:#}", with_person.body);
    let person_id = with_person.body["id"].as_str().unwrap().to_owned();
    let person_at = format!("/v1/beneficiaries/{person_id}/person");
    let read = c.get("/v1/beneficiaries/{id}/person", &person_at).await;
    assert_eq!(read.body, person);
    let found = c
        .get(
            "/v1/beneficiaries",
            "/v1/beneficiaries?fiscal_code=rssmra80a01h501u",
        )
        .await;
    assert_eq!(found.body["beneficiaries"], json!([person_id]));
    let log = c.get("/v1/access-log", "/v1/access-log?limit=10").await;
    assert_eq!(log.status, 200, "{:#}", log.body);
    let erased = c
        .call(
            "DELETE",
            "/v1/beneficiaries/{id}/person",
            &person_at,
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(erased.status, 204, "{:#}", erased.body);
    assert_eq!(
        c.get("/v1/beneficiaries/{id}/person", &person_at)
            .await
            .status,
        410
    );

    assert_eq!(c.get("/healthz", "/healthz").await.status, 200);
    assert_eq!(c.get("/readyz", "/readyz").await.status, 200);
    let prometheus = c.get("/metrics", "/metrics").await;
    assert_eq!(
        (prometheus.status, prometheus.media_type.as_str()),
        (200, "text/plain")
    );
    let served = c.get("/openapi.json", "/openapi.json").await;
    let mut expected = crate::openapi();
    crate::openapi::describe_registries(
        &mut expected,
        &PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(TerritoryRegistry::sample()),
        ),
    );
    assert_eq!(
        served.body,
        serde_json::to_value(expected).unwrap(),
        "the served document is the generated one, with the registries' codes"
    );

    // Problems, each documented for its route and conforming to `Problem`.
    let enrol = "/v1/beneficiaries";
    let problems = [
        (
            c.call(
                "POST",
                enrol,
                enrol,
                Some("application/json"),
                b"{".to_vec(),
            )
            .await,
            400,
        ),
        (
            c.call("POST", enrol, enrol, Some("text/plain"), b"{}".to_vec())
                .await,
            415,
        ),
        (
            c.call(
                "POST",
                enrol,
                enrol,
                Some("application/json"),
                vec![b' '; crate::BODY_LIMIT + 1],
            )
            .await,
            413,
        ),
        (
            c.post(
                enrol,
                enrol,
                json!({"territory": "LOM", "on": "2024-01-10", "referral": "self", "extra": 1}),
            )
            .await,
            422,
        ),
        (
            c.get(
                "/v1/beneficiaries/{id}",
                &format!("/v1/beneficiaries/{}", uuid::Uuid::new_v4()),
            )
            .await,
            404,
        ),
        (
            c.post(
                "/v1/beneficiaries/{id}/close",
                &at("/close"),
                json!({"on": "2024-08-01", "outcome": "other"}),
            )
            .await,
            409,
        ),
        (c.get("/v1/events", "/v1/events?limit=0").await, 422),
        (
            c.get("/v1/events/stream", "/v1/events/stream?type=Nope")
                .await,
            422,
        ),
        (c.get("/v1/metrics", "/v1/metrics?from=soon").await, 422),
        (
            c.get(
                "/v1/metrics/series",
                "/v1/metrics/series?from=2024-01-01&to=2024-12-31&interval=week",
            )
            .await,
            422,
        ),
        (
            c.get(
                "/v1/metrics/breakdown",
                "/v1/metrics/breakdown?territory=ATLANTIS",
            )
            .await,
            422,
        ),
        (
            c.get("/v1/providers", "/v1/providers?territory=ATLANTIS")
                .await,
            422,
        ),
        (
            c.get(
                "/v1/providers/scorecard",
                "/v1/providers/scorecard?to=yesterday",
            )
            .await,
            422,
        ),
        (
            c.get(
                "/v1/audit/reiterations",
                "/v1/audit/reiterations?where=here",
            )
            .await,
            422,
        ),
        (
            c.get("/v1/reports/regional", "/v1/reports/regional?lang=fr")
                .await,
            422,
        ),
        (
            c.post(
                "/v1/projections/{name}/rebuild",
                "/v1/projections/nothing/rebuild",
                json!({}),
            )
            .await,
            404,
        ),
    ];
    for (answer, status) in problems {
        assert_eq!(answer.status, status, "{:#}", answer.body);
        assert_eq!(answer.media_type, "application/problem+json");
    }

    // The scenario visited every documented operation.
    let documented: BTreeSet<(String, String)> = operations(&c.doc)
        .into_iter()
        .map(|(path, method, _)| (method, path))
        .collect();
    let visited: BTreeSet<(String, String)> = c.seen.keys().cloned().collect();
    assert_eq!(visited, documented);
    c.api.projections.shutdown().await;
}

#[tokio::test]
async fn every_problem_conforms_to_the_problem_schema() {
    let doc = document();
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let errors = [
        ApiError::malformed("the body is not valid JSON"),
        ApiError::invalid("on", "`on`: premature end of input"),
        ApiError::invalid("", "the body must be a JSON object"),
        ApiError::beneficiary_not_found(),
        ApiError::concurrent_write(),
        ApiError::idempotency_key_reused(),
        ApiError::Internal("disk on fire".into()),
        ApiError::Unavailable(filiera_store::Outage::DiskFull),
        ApiError::Unavailable(filiera_store::Outage::StorageFailure),
        ApiError::Unavailable(filiera_store::Outage::Unreachable),
    ];
    for error in errors {
        let response = error.into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_valid(&doc, &problem, &body, "problem");
        assert_eq!(
            body["type"],
            format!("/problems/{}", body["code"].as_str().unwrap())
        );
    }
}
