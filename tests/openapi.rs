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

/// The served document names the codes of this service's registries: the territories of
/// `GET /v1/territories` and the stages of `GET /v1/stages`, and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_lists_the_registries_codes() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = served_document(&app).await;
    let codes = |schema: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} has no enum"))
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    fn walk(nodes: &Value, out: &mut BTreeSet<String>) {
        for node in nodes.as_array().unwrap() {
            out.insert(node["code"].as_str().unwrap().to_owned());
            walk(&node["children"], out);
        }
    }
    let mut territories = BTreeSet::new();
    walk(
        &app.get("/v1/territories").await.body["territories"],
        &mut territories,
    );
    assert!(territories.len() > 5, "{territories:?}");
    assert_eq!(codes("RegisteredTerritory"), territories);
    let stages: BTreeSet<String> = app.get("/v1/stages").await.body["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes("CataloguedStage"), stages);
    // Without `[[providers]]`, a provider is free text.
    let provider = &doc["components"]["schemas"]["ProviderName"];
    assert!(provider["enum"].is_null(), "{provider}");
    assert!(provider["pattern"].is_string(), "{provider}");
    // Bodies and query parameters name territories through the registry's schema.
    for (path, method) in [
        ("/v1/beneficiaries", "post"),
        ("/v1/metrics", "get"),
        ("/v1/events/stream", "get"),
    ] {
        let operation = &doc["paths"][path][method];
        let uses = operation
            .to_string()
            .contains("#/components/schemas/RegisteredTerritory")
            || resolve(
                &doc,
                &operation["requestBody"]["content"]["application/json"]["schema"],
            )["properties"]["territory"]["$ref"]
                == "#/components/schemas/RegisteredTerritory";
        assert!(uses, "{method} {path}");
    }
}
