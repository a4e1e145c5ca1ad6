//! The provider registry over HTTP (SPEC 2.5): `GET /v1/providers` and the check of
//! `StageEntered.provider` when `[[providers]]` are configured.

use filiera_domain::{ProviderDef, ProviderRegistry, TerritoryRegistry};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with_providers};

filiera_testkit::on_both_backends!(
    providers_are_listed_by_code_and_filtered_by_territory,
    a_stage_entry_must_name_a_configured_provider,
    without_providers_any_provider_is_accepted,
);

/// `coop.alfa` of the province of Bergamo, `bg-town` of the ambito of Bergamo and Torino,
/// `Ente-2` of anywhere.
fn registry() -> ProviderRegistry {
    let def = |code: &str, name: &str, territories: &[&str]| ProviderDef {
        code: code.into(),
        name: name.into(),
        territories: territories.iter().map(|t| (*t).to_owned()).collect(),
    };
    ProviderRegistry::new(
        vec![
            def("coop.alfa", "Cooperativa Alfa", &["LOM-BG"]),
            def("bg-town", "Consorzio Città", &["LOM-BG-BERGAMO", "PIE-TO"]),
            def("Ente-2", "Ente di formazione", &[]),
        ],
        &TerritoryRegistry::sample(),
    )
    .expect("a valid registry")
}

async fn codes(app: &TestApp, query: &str) -> Vec<String> {
    let answer = app.get(&format!("/v1/providers{query}")).await;
    assert_eq!(answer.status, 200, "{query}: {:#}", answer.body);
    answer.body["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .map(|p| p["code"].as_str().expect("a code").to_owned())
        .collect()
}

async fn providers_are_listed_by_code_and_filtered_by_territory(backend: Backend) {
    let app = spawn_app_with_providers(backend, registry()).await;
    // The served OpenAPI document says which providers a stage entry may name.
    let doc = app.get("/openapi.json").await.body;
    let mut documented: Vec<String> = doc["components"]["schemas"]["ProviderName"]["enum"]
        .as_array()
        .expect("the providers as an enum")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    documented.sort();
    assert_eq!(documented, codes(&app, "").await);
    let all = app.get("/v1/providers").await;
    assert_eq!(all.status, 200, "{:#}", all.body);
    assert_eq!(
        all.body,
        json!({"providers": [
            {"code": "Ente-2", "name": "Ente di formazione", "territories": []},
            {"code": "bg-town", "name": "Consorzio Città",
             "territories": ["LOM-BG-BERGAMO", "PIE-TO"]},
            {"code": "coop.alfa", "name": "Cooperativa Alfa", "territories": ["LOM-BG"]},
        ]})
    );
    // A provider covers the territories it lists and those below them; one listing none
    // covers everything.
    for (territory, expected) in [
        ("LOM-BG-BERGAMO", vec!["Ente-2", "bg-town", "coop.alfa"]),
        ("LOM-BG-VALLE-BREMBANA", vec!["Ente-2", "coop.alfa"]),
        ("LOM-BG", vec!["Ente-2", "coop.alfa"]),
        ("LOM", vec!["Ente-2"]),
        ("PIE-TO-TORINO", vec!["Ente-2", "bg-town"]),
        ("SIC", vec!["Ente-2"]),
    ] {
        assert_eq!(
            codes(&app, &format!("?territory={territory}")).await,
            expected,
            "{territory}"
        );
    }
    let unknown = app.get("/v1/providers?territory=ATLANTIS").await;
    let problem = unknown.problem(422, "unknown_territory");
    assert_eq!(problem["field"], "territory");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("GET /v1/territories"),
        "{problem:#}"
    );
    app.get("/v1/providers?region=LOM")
        .await
        .problem(422, "invalid_field");
    // Reference data, like the territories: every reading role, whatever its territories.
    let evaluator = crate::helpers::token(filiera_auth::Role::Evaluator, &["PIE"]);
    let answer = app
        .get_as(&evaluator, "/v1/providers?territory=LOM-BG")
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
}

async fn enter_with(app: &TestApp, id: &str, provider: &str) -> crate::helpers::Answer {
    app.post(
        &format!("/v1/beneficiaries/{id}/stage"),
        json!({"stage": "internship", "on": "2024-02-01", "provider": provider}),
    )
    .await
}

fn history_types(history: &Value) -> Vec<&str> {
    history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("a type"))
        .collect()
}

async fn a_stage_entry_must_name_a_configured_provider(backend: Backend) {
    let app = spawn_app_with_providers(backend, registry()).await;
    // Milano: no provider lists it, and that refuses nothing.
    let id = app.enrol("LOM-MI-MILANO", "2024-01-10").await;

    let refused = enter_with(&app, &id, "Cooperativa Il Sentiero").await;
    let problem = refused.problem(422, "unknown_provider");
    assert_eq!(problem["field"], "provider");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("`Cooperativa Il Sentiero`"), "{detail}");
    assert!(detail.contains("GET /v1/providers"), "{detail}");
    // Codes are compared as written.
    enter_with(&app, &id, "COOP.ALFA")
        .await
        .problem(422, "unknown_provider");
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert_eq!(
        history_types(&history.body),
        ["Enrolled"],
        "nothing written"
    );

    let accepted = enter_with(&app, &id, "coop.alfa").await;
    assert_eq!(accepted.status, 200, "{:#}", accepted.body);
    assert_eq!(accepted.body["transition"], "entry");
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert_eq!(history_types(&history.body), ["Enrolled", "StageEntered"]);
    assert_eq!(history.body["events"][1]["data"]["provider"], "coop.alfa");
    // An entry without a provider needs none.
    let plain = app.enter(&id, "job_placement", "2024-03-01").await;
    assert_eq!(plain.status, 200, "{:#}", plain.body);
}

async fn without_providers_any_provider_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.get("/v1/providers").await.body,
        json!({"providers": []})
    );
    assert!(codes(&app, "?territory=LOM").await.is_empty());
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let accepted = enter_with(&app, &id, "Cooperativa Il Sentiero").await;
    assert_eq!(accepted.status, 200, "{:#}", accepted.body);
    let history = app.get(&format!("/v1/beneficiaries/{id}/history")).await;
    assert_eq!(
        history.body["events"][1]["data"]["provider"],
        "Cooperativa Il Sentiero"
    );
    // An empty provider is refused as before, registry or not.
    enter_with(&app, &id, " ")
        .await
        .problem(422, "invalid_field");
}
