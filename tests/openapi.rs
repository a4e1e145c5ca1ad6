//! `GET /openapi.json` (SPEC 4.1): the served OpenAPI 3.1 document against the README's table of
//! routes and against the running app. One backend is enough: the document does not depend on
//! the store.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, resolve, spawn_app};

/// The `(method, path)` pairs of the README's "HTTP API" table, e.g. `("get", "/healthz")`.
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme = include_str!("../README.md");
    let table = readme
        .split("## HTTP API")
        .nth(1)
        .expect("the README has an HTTP API section");
    let mut routes = BTreeSet::new();
    for row in table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let first_cell = row.split('|').nth(1).expect("a first cell");
        for quoted in first_cell.split('`').skip(1).step_by(2) {
            let (method, path) = quoted
                .split_once(' ')
                .unwrap_or_else(|| panic!("`METHOD /path` in {row}"));
            routes.insert((method.to_ascii_lowercase(), path.to_owned()));
        }
    }
    routes
}

/// Every `(method, path)` the document describes.
fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            routes.insert((method.clone(), path.clone()));
        }
    }
    routes
}

async fn served_document(app: &TestApp) -> Value {
    let answer = app.get("/openapi.json").await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    assert_eq!(answer.content_type(), "application/json");
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_openapi_3_1_and_lists_the_readme_routes() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = served_document(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "filiera");

    // The README's table and the document list the same routes, each with its method.
    let readme = readme_routes();
    assert!(readme.len() >= 20, "{readme:?}");
    assert_eq!(documented_routes(&doc), readme);

    // Invalid input is answered with a problem document, in the document too.
    let mut with_422 = 0;
    for (method, path) in documented_routes(&doc) {
        let operation = &doc["paths"][&path][&method];
        if let Some(response) = operation["responses"].get("422") {
            with_422 += 1;
            let response = resolve(&doc, response);
            assert_eq!(
                response["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{method} {path}"
            );
        }
    }
    assert!(with_422 >= 11, "{with_422} routes document a 422");
    let problem = &doc["components"]["schemas"]["Problem"];
    for member in ["type", "title", "status", "detail", "code", "field"] {
        assert!(
            problem["properties"].get(member).is_some(),
            "Problem.{member}"
        );
    }

    // The request bodies refuse unknown members, as the API does.
    for body in [
        "EnrolBody",
        "StageBody",
        "ExitBody",
        "TerritoryBody",
        "CloseBody",
        "ReopenBody",
        "UndoBody",
    ] {
        assert_eq!(
            doc["components"]["schemas"][body]["additionalProperties"], false,
            "{body}"
        );
    }
    let enrol = &doc["paths"]["/v1/beneficiaries"]["post"];
    assert_eq!(
        enrol["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/EnrolBody"
    );
    assert_eq!(
        enrol["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/BeneficiaryView"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = served_document(&app).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for (method, path) in documented_routes(&doc) {
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{id}", &unknown)
                .replace("{name}", "no_such_projection")
        );
        let request = match method.as_str() {
            "get" => app.client.get(&url),
            "post" => app.client.post(&url).json(&json!({})),
            "delete" => app.client.delete(&url),
            other => panic!("{other} {path}: a method the API does not use"),
        };
        // Only the headers: the live stream never ends.
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let documented = doc["paths"][&path][&method]["responses"]
            .get(status.to_string())
            .is_some();
        assert!(documented, "{method} {path}: {status} is not documented");
        if status == 404 || status == 405 {
            let body: Value = response.json().await.expect("a problem document");
            assert!(
                !matches!(
                    body["code"].as_str(),
                    Some("not_found" | "method_not_allowed")
                ),
                "{method} {path} is documented but not routed: {body:#}"
            );
        }
    }
}
