//! A property-based fuzz of every operation of the served OpenAPI document (SPEC 5.3): each
//! `paths` × method entry of `/openapi.json` gets requests, sent with an administrator's token,
//! whose JSON bodies, query strings and path segments are generated from what the document says
//! about them, then bent: the documented members with odd values (control characters, huge
//! strings, numbers out of range, nested arrays, nulls), repeated keys as raw text, unknown
//! members, bytes that are no JSON, empty bodies and wrong content types; documented and
//! undocumented query parameters with percent-encoded garbage (`%FF`), repeats and very long
//! values; `{id}` a real beneficiary's or garbage. A route added to the API is fuzzed without
//! touching this file.
//!
//! Every answer must be below 500; every 4xx an `application/problem+json` document whose
//! `status` is the HTTP status, with `type`, `title` and `code`; and a refused request must leave
//! the feed head where it was. One app per backend serves all the cases; the live stream's body
//! is never read (it does not end). What the fuzz found is pinned by the plain tests below it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};

use crate::helpers::{Backend, TestApp, resolve, spawn_app};

/// Cases per operation on SQLite; `PROPTEST_CASES` overrides both counts to explore further.
const SQLITE_CASES: u32 = 128;
/// Cases per operation on PostgreSQL, where every request costs more.
const POSTGRES_CASES: u32 = 32;
/// Long enough for any answer, short enough that a hang fails instead of stalling CI.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn every_operation_on_sqlite() {
    fuzz(Backend::Sqlite, SQLITE_CASES);
}

#[test]
fn every_operation_on_postgres() {
    fuzz(Backend::Postgres, POSTGRES_CASES);
}

/// Found by the fuzz: an answer given before the request body was read (here 415) left hyper
/// closing the connection without a word, and the client's next request on it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_body_is_read_closes_the_connection_and_says_so() {
    let app = spawn_app(Backend::Sqlite).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let path = format!("/v1/beneficiaries/{id}/close");
    let unread = app
        .post_raw(&path, "text/plain", vec![b'x'; 60 * 1024])
        .await;
    unread.problem(415, "unsupported_media_type");
    assert_eq!(unread.headers["connection"], "close");
    // A body read whole keeps the connection open.
    let read = app
        .post_raw(&path, "application/json", b"{}".to_vec())
        .await;
    read.problem(422, "invalid_field");
    assert!(read.headers.get("connection").is_none());
}

/// Found by the fuzz: a `GET` carrying a body nobody reads was answered and its connection
/// closed with the body's bytes unread, so the kernel reset the connection and the client lost
/// part of the (large) answer. Such a body is now read and dropped first: the whole answer
/// arrives and the connection stays open; a body over the limit is still left unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_with_a_get_is_read_and_dropped_before_the_answer() {
    let app = spawn_app(Backend::Sqlite).await;
    app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let get_with = |bytes: usize| {
        app.client
            .get(format!("{}/v1/reports/regional", app.address))
            .header("content-type", "application/json")
            .body(vec![b'x'; bytes])
            .send()
    };
    for _ in 0..5 {
        let response = get_with(60 * 1024).await.expect("request");
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("connection").is_none());
        let page = response.text().await.expect("the whole report");
        assert!(page.trim_end().ends_with("</html>"), "a cut answer");
    }
    let over = get_with(4 * filiera_http::BODY_LIMIT)
        .await
        .expect("request");
    assert_eq!(over.status(), 200);
    assert_eq!(over.headers()["connection"], "close");
}

/// Found by the fuzz: with an `Idempotency-Key`, an enrolment naming a fiscal code already
/// taken skipped the check made before writing, was stored, then undone: two events for a 409.
/// Only the retry of the request that stored the code may pass (and is answered from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_fiscal_code_is_refused_before_writing_even_with_an_idempotency_key() {
    let app = spawn_app(Backend::Sqlite).await;
    let code = crate::helpers::fresh_fiscal_code();
    let body = json!({
        "territory": "LOM-BG-BERGAMO", "on": "2024-01-10", "referral": "social_services",
        "person": {"fiscal_code": code, "given_name": "Maria", "family_name": "Rossi"}
    });
    let first = app
        .post_with("/v1/beneficiaries", body.clone(), Some("first"))
        .await;
    assert_eq!(first.status, 201, "{:#}", first.body);
    let head = app.store.head().await.expect("head");

    let mut other = body.clone();
    other["on"] = json!("2024-01-11");
    for (key, body) in [("second", &body), ("first", &other), ("second", &other)] {
        let answer = app
            .post_with("/v1/beneficiaries", body.clone(), Some(key))
            .await;
        let code = if key == "first" {
            "idempotency_key_reused"
        } else {
            "fiscal_code_taken"
        };
        assert_eq!(answer.body["code"], code, "{key}: {:#}", answer.body);
        assert_eq!(app.store.head().await.expect("head"), head, "{key}");
    }
    let retry = app
        .post_with("/v1/beneficiaries", body, Some("first"))
        .await;
    assert_eq!(retry.status, 201, "{:#}", retry.body);
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(app.store.head().await.expect("head"), head);
}

/// Spawns one app, reads its document, and runs `cases` generated requests against each of
/// its operations.
fn fuzz(backend: Backend, cases: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let cases = filiera_testkit::proptest_cases(cases);
    let started = Instant::now();
    let (app, operations, vocabulary) = runtime.block_on(prepare(backend));
    let statuses = std::sync::Mutex::new(BTreeMap::<u16, u32>::new());
    for operation in &operations {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        });
        let result = runner.run(&case(operation, &vocabulary), |case| {
            runtime
                .block_on(exchange(&app, operation, &case))
                .map(|status| *statuses.lock().unwrap().entry(status).or_default() += 1)
                .map_err(TestCaseError::fail)
        });
        if let Err(failure) = result {
            panic!("{} {}: {failure}", operation.method, operation.template);
        }
    }
    eprintln!(
        "fuzz on {backend:?}: {} operations × {cases} cases in {:.1?}; answers by status: {:?}",
        operations.len(),
        started.elapsed(),
        statuses.lock().unwrap()
    );
    runtime.block_on(async move { drop(app) });
}

/// The shape of a parameter or a body member, as far as the fuzz cares.
#[derive(Debug, Clone)]
enum Kind {
    Text,
    Date,
    Uuid,
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Enum(Vec<String>),
    /// Each member: name, kind, whether it is required.
    Object(Vec<(String, Kind, bool)>),
    Any,
}

/// One operation of the document.
#[derive(Debug)]
struct Operation {
    method: Method,
    /// The path as documented, `{id}` and all.
    template: String,
    /// The documented query parameters.
    query: Vec<(String, Kind)>,
    /// The documented JSON body, if the operation takes one.
    body: Option<Kind>,
}

/// Values the app knows, so that some generated requests get past parsing: real ids,
/// territory, stage and projection codes, enumerated values.
#[derive(Debug)]
struct Vocabulary {
    ids: Vec<String>,
    words: Vec<String>,
    /// Values for a member or parameter of this name: `territory` codes, `stage` codes, …
    by_name: BTreeMap<String, Vec<String>>,
    projections: Vec<String>,
}

/// One generated request.
#[derive(Clone)]
struct Case {
    path: String,
    query: Option<String>,
    content_type: Option<&'static str>,
    idempotency_key: Option<String>,
    body: Option<Vec<u8>>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = self.body.as_ref().map(|bytes| {
            let text = String::from_utf8_lossy(bytes);
            let shown: String = text.chars().take(400).collect();
            format!("{} bytes: {shown:?}", bytes.len())
        });
        f.debug_struct("Case")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("idempotency_key", &self.idempotency_key)
            .field("body", &body)
            .finish()
    }
}

/// Enrols the beneficiaries the cases point at, and reads the operations and the vocabulary
/// from the running app.
async fn prepare(backend: Backend) -> (TestApp, Vec<Operation>, Arc<Vocabulary>) {
    let app = spawn_app(backend).await;
    let (with_person, fiscal_code) = app.enrol_person("LOM-BG-BERGAMO").await;
    let plain = app.enrol("LOM-LC-LECCO", "2024-02-01").await;
    let entered = app.enter(&plain, "internship", "2024-02-10").await;
    assert_eq!(entered.status, 200, "{:#}", entered.body);

    let doc = app.get("/openapi.json").await.body;
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| resolve(&doc, p))
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    let name = p["name"].as_str().expect("a parameter name").to_owned();
                    (name, kind_of(&doc, &p["schema"]))
                })
                .collect();
            let body = operation["requestBody"]["content"]
                .get("application/json")
                .map(|content| kind_of(&doc, &content["schema"]));
            operations.push(Operation {
                method: method.to_ascii_uppercase().parse().expect("a method"),
                template: path.clone(),
                query,
                body,
            });
        }
    }
    assert!(operations.len() >= 21, "{operations:?}");

    let fiscal_codes = vec![fiscal_code, "RSSMRA80A01H501U".to_owned()];
    let mut words = fiscal_codes.clone();
    let mut by_name = BTreeMap::from([("fiscal_code".to_owned(), fiscal_codes)]);
    for (path, key, member) in [
        ("/v1/territories", "code", "territory"),
        ("/v1/stages", "code", "stage"),
        ("/v1/events?limit=1000", "type", "type"),
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {:#}", answer.body);
        let mut found = Vec::new();
        strings_under(&answer.body, key, &mut found);
        words.extend(found.iter().cloned());
        by_name.insert(member.to_owned(), found);
    }
    let mut projections = Vec::new();
    strings_under(
        &app.get("/v1/projections").await.body,
        "name",
        &mut projections,
    );
    assert!(!projections.is_empty());
    for schema in doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .values()
    {
        for value in schema["enum"].as_array().into_iter().flatten() {
            words.extend(value.as_str().map(str::to_owned));
        }
    }
    words.extend(projections.iter().cloned());
    words.sort();
    words.dedup();
    let vocabulary = Vocabulary {
        ids: vec![with_person, plain],
        words,
        by_name,
        projections,
    };
    (app, operations, Arc::new(vocabulary))
}

/// What a schema describes; `null` alternatives are left out.
fn kind_of(doc: &Value, schema: &Value) -> Kind {
    let schema = resolve(doc, schema);
    let alternatives = schema.get("oneOf").or_else(|| schema.get("anyOf"));
    if let Some(alternatives) = alternatives.and_then(Value::as_array) {
        return alternatives
            .iter()
            .map(|s| kind_of(doc, s))
            .find(|k| !matches!(k, Kind::Any))
            .unwrap_or(Kind::Any);
    }
    if let Some(values) = schema["enum"].as_array() {
        return Kind::Enum(
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        );
    }
    let ty = match &schema["type"] {
        Value::String(ty) => ty.as_str(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ => "",
    };
    match (ty, schema["format"].as_str()) {
        ("object", _) => {
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            Kind::Object(
                schema["properties"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| {
                        let needed = required.iter().any(|r| r == name.as_str());
                        (name.clone(), kind_of(doc, s), needed)
                    })
                    .collect(),
            )
        }
        ("integer", _) => Kind::Integer {
            min: schema["minimum"].as_i64(),
            max: schema["maximum"].as_i64(),
        },
        ("string", Some("date")) => Kind::Date,
        ("string", Some("uuid")) => Kind::Uuid,
        ("string", _) => Kind::Text,
        _ => Kind::Any,
    }
}

/// Every string found under `key` anywhere in `value`.
fn strings_under(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                match member {
                    Value::String(s) if name == key => out.push(s.clone()),
                    other => strings_under(other, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| strings_under(i, key, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// The requests generated for one operation.
fn case(operation: &Operation, vocabulary: &Arc<Vocabulary>) -> BoxedStrategy<Case> {
    let segments: Vec<BoxedStrategy<String>> = operation
        .template
        .split('/')
        .map(|segment| match segment {
            "{id}" => path_id(vocabulary),
            "{name}" => prop_oneof![
                3 => prop::sample::select(vocabulary.projections.clone()),
                2 => url_text(16, false),
            ]
            .boxed(),
            s if s.starts_with('{') => url_text(16, false),
            s => Just(s.to_owned()).boxed(),
        })
        .collect();
    let path = segments.prop_map(|segments| segments.join("/"));
    (
        path,
        query_string(&operation.query, vocabulary),
        content_type(),
        idempotency_key(),
        body(operation.body.as_ref(), vocabulary),
    )
        .prop_map(|(path, query, content_type, idempotency_key, body)| Case {
            path,
            query,
            content_type,
            idempotency_key,
            body,
        })
        .boxed()
}

/// A `{id}` segment: a real beneficiary, an unknown UUID, or garbage.
fn path_id(vocabulary: &Arc<Vocabulary>) -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vocabulary.ids.clone()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        2 => url_text(24, false),
        1 => long_text(),
    ]
    .boxed()
}

/// Text as it may appear in a URL: unreserved characters, lone or broken `%`, `%XX` of any
/// byte (so invalid UTF-8 once decoded, like `%FF`), and characters the client encodes itself.
/// In a path segment, `/` and `?` are left out so that the text stays one segment.
fn url_text(max_atoms: usize, in_query: bool) -> BoxedStrategy<String> {
    let mut odd = vec![
        "%",
        "%G",
        "%%",
        "%0",
        "+",
        "!",
        "$",
        "'",
        "(",
        ")",
        "*",
        ",",
        ";",
        ":",
        "@",
        "%00",
        "%0A",
        "%0D%0A",
        "%FF",
        "%FF%FE",
        "%C3%28",
        "%E2%82",
        "%F0%9F%98%80",
        "%2F",
        "%3F",
        "%26",
        "%3D",
        "%23",
        "%20",
        ".",
        "..",
    ];
    if in_query {
        odd.extend(["=", "&", "/", "?", "&&", "=="]);
    }
    let atom = prop_oneof![
        4 => "[A-Za-z0-9._~-]{1,4}",
        2 => any::<u8>().prop_map(|b| format!("%{b:02X}")),
        2 => prop::sample::select(odd).prop_map(str::to_owned),
        1 => any::<char>()
            .prop_filter("kept in the URL", |c| !matches!(c, '#' | '/' | '?' | '\\'))
            .prop_map(String::from),
    ];
    prop::collection::vec(atom, 0..max_atoms)
        .prop_map(|atoms| atoms.concat())
        .boxed()
}

/// A very long URL text, around and beyond the 8 KiB target limit.
fn long_text() -> BoxedStrategy<String> {
    (
        prop::sample::select(vec!["a", "%FF", "%00", "%C3%A9", "0"]),
        1usize..3000,
    )
        .prop_map(|(unit, n)| unit.repeat(n))
        .boxed()
}

/// A plausible value for a parameter or member of this kind, as text: right often enough to
/// get past parsing, at the edges or just wrong otherwise.
fn plausible_text(kind: &Kind, name: &str, vocabulary: &Arc<Vocabulary>) -> BoxedStrategy<String> {
    match kind {
        Kind::Integer { min, max } => {
            let mut edges = vec![
                "0",
                "-1",
                "1",
                "9223372036854775807",
                "9223372036854775808",
                "-9223372036854775809",
                "2147483648",
                "1e3",
                "+5",
                " 5",
                "0x10",
                "05",
                "1.5",
                "",
                "NaN",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
            for bound in [min, max].into_iter().flatten() {
                edges.extend([bound - 1, *bound, bound + 1].map(|b| b.to_string()));
            }
            prop_oneof![
                2 => prop::sample::select(edges),
                1 => any::<i64>().prop_map(|n| n.to_string()),
                1 => (0i64..2000).prop_map(|n| n.to_string()),
            ]
            .boxed()
        }
        Kind::Date => prop_oneof![
            2 => prop::sample::select(
                ["2024-01-10", "2024-02-15", "2024-03-01", "2024-06-30"].map(str::to_owned).to_vec()
            ),
            2 => prop::sample::select(
                [
                    "2024-01-10", "2024-03-01", "2024-02-29", "2023-02-29", "2024-13-01",
                    "2024-00-10", "0000-01-01", "0001-01-01", "9999-12-31", "+275760-09-13",
                    "-0001-01-01", "262143-12-31", "2024-1-1", "20240110", "2024-01-10T00:00:00Z",
                    "2100-01-01", "",
                ]
                .map(str::to_owned)
                .to_vec()
            ),
            1 => (any::<i32>(), 0u32..14, 0u32..33)
                .prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
        ]
        .boxed(),
        Kind::Uuid => {
            let ids = vocabulary.ids.clone();
            prop_oneof![
                2 => prop::sample::select(ids.clone()),
                1 => prop::sample::select(ids).prop_map(|id| id.to_uppercase().replace('-', "")),
                1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
                1 => any::<u128>().prop_map(|n| format!("urn:uuid:{}", uuid::Uuid::from_u128(n))),
            ]
            .boxed()
        }
        Kind::Enum(values) if !values.is_empty() => prop_oneof![
            3 => prop::sample::select(values.clone()),
            1 => prop::sample::select(values.clone()).prop_map(|v| v.to_uppercase()),
        ]
        .boxed(),
        _ if vocabulary.by_name.get(name).is_some_and(|v| !v.is_empty()) => prop_oneof![
            3 => prop::sample::select(vocabulary.by_name[name].clone()),
            1 => prop::sample::select(vocabulary.words.clone()),
        ]
        .boxed(),
        _ => prop_oneof![
            3 => prop::sample::select(vocabulary.words.clone()),
            1 => prop::sample::select(
                [
                    "2024-01-10T10:00:00Z", "2024-01-10T10:00:00.123456789+02:00",
                    "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
                    "2024-01-10", "now", "LOM", "LOM-", "-", "lom-bg",
                ]
                .map(str::to_owned)
                .to_vec()
            ),
        ]
        .boxed(),
    }
}

/// A query string: documented and undocumented parameters, odd values, repeats, bare names;
/// `None` for no `?` at all.
fn query_string(
    documented: &[(String, Kind)],
    vocabulary: &Arc<Vocabulary>,
) -> BoxedStrategy<Option<String>> {
    let undocumented_name = prop_oneof![
        2 => prop::sample::select(
            [
                "x", "", "limit", "after", "before", "territory", "territory[]", "TERRITORY",
                "access_token", "fiscal_code", "known_at", "from", "to", "type", "%FF", "a%00b",
                "beneficiary", "interval", "threshold",
            ]
            .map(str::to_owned)
            .to_vec()
        ),
        1 => url_text(6, true),
    ];
    let undocumented = (undocumented_name, url_text(16, true)).boxed();
    let pair = if documented.is_empty() {
        undocumented
    } else {
        let vocabulary = vocabulary.clone();
        let documented =
            prop::sample::select(documented.to_vec()).prop_flat_map(move |(name, kind)| {
                let value = prop_oneof![
                    3 => plausible_text(&kind, &name, &vocabulary),
                    2 => url_text(16, true),
                    1 => long_text(),
                ];
                (Just(name), value)
            });
        prop_oneof![4 => documented, 1 => undocumented].boxed()
    };
    let item = (pair, prop::bool::weighted(0.05)).prop_map(|((name, value), bare)| {
        if bare {
            name
        } else {
            format!("{name}={value}")
        }
    });
    (
        prop::collection::vec(item, 0..6),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(mut items, repeat, omitted)| {
            if repeat && let Some(first) = items.first().cloned() {
                items.push(first);
            }
            (!(omitted && items.is_empty())).then(|| items.join("&"))
        })
        .boxed()
}

fn content_type() -> BoxedStrategy<Option<&'static str>> {
    prop_oneof![
        8 => Just(Some("application/json")),
        3 => prop::sample::select(vec![
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/json; charset=latin1; x=\"\"",
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/",
            ";",
            "",
        ])
        .prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn idempotency_key() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        8 => Just(None),
        2 => prop::sample::select(vec!["fuzz-1", "fuzz-2"]).prop_map(|k| Some(k.to_owned())),
        1 => prop::sample::select(vec![
            String::new(),
            " ".to_owned(),
            "a b".to_owned(),
            "k".repeat(256),
            "é".to_owned(),
        ])
        .prop_map(Some),
    ]
    .boxed()
}

/// A request body: none, empty, bytes that are no JSON, any JSON, the documented object with
/// odd values or a repeated key, raw text JSON parsers disagree on, or too large.
fn body(shape: Option<&Kind>, vocabulary: &Arc<Vocabulary>) -> BoxedStrategy<Option<Vec<u8>>> {
    let members = match shape {
        Some(Kind::Object(members)) => members.clone(),
        _ => vec![("x".to_owned(), Kind::Any, false)],
    };
    let names: Vec<String> = members.iter().map(|(name, ..)| name.clone()).collect();
    let valid = valid_object(members.clone(), vocabulary.clone());
    let object = documented_object(members, vocabulary.clone());
    let serialize = |v: Value| Some(serde_json::to_vec(&v).expect("serialisable"));
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        1 => prop::collection::vec(any::<u8>(), 1..256).prop_map(Some),
        2 => odd_json(vocabulary.clone()).prop_map(serialize),
        6 => object.clone().prop_map(move |m| serialize(Value::Object(m))),
        3 => valid.prop_map(move |m| serialize(Value::Object(m))),
        2 => (object.clone(), any::<prop::sample::Index>(), odd_json(vocabulary.clone()))
            .prop_map(repeated_key),
        2 => (object.clone(), prop::sample::select(names), raw_fragment())
            .prop_map(|(m, name, fragment)| Some(with_raw_member(&m, &name, &fragment))),
        1 => raw_document().prop_map(|raw| Some(raw.into_bytes())),
        1 => (object, 65_000usize..70_000).prop_map(|(mut m, n)| {
            m.insert("padding".into(), Value::String("x".repeat(n)));
            Some(serde_json::to_vec(&Value::Object(m)).expect("serialisable"))
        }),
    ]
    .boxed()
}

/// The required members and some optional ones, all with plausible values only: often a
/// request the API accepts, so that the fuzz also runs on past validation.
fn valid_object(
    members: Vec<(String, Kind, bool)>,
    vocabulary: Arc<Vocabulary>,
) -> BoxedStrategy<Map<String, Value>> {
    let present: Vec<_> = members
        .into_iter()
        .map(|(name, kind, required)| {
            let value = plausible_json(&kind, &name, &vocabulary);
            let value = if required {
                value.prop_map(Some).boxed()
            } else {
                prop::option::weighted(0.3, value).boxed()
            };
            value.prop_map(move |value| value.map(|v| (name.clone(), v)))
        })
        .collect();
    present
        .prop_map(|present| present.into_iter().flatten().collect())
        .boxed()
}

/// The documented members, each there three times in four, with plausible or odd values,
/// and now and then an unknown member.
fn documented_object(
    members: Vec<(String, Kind, bool)>,
    vocabulary: Arc<Vocabulary>,
) -> BoxedStrategy<Map<String, Value>> {
    let present: Vec<_> = members
        .into_iter()
        .map(|(name, kind, _)| {
            prop::option::weighted(0.75, member_value(&kind, &name, &vocabulary))
                .prop_map(move |value| value.map(|v| (name.clone(), v)))
        })
        .collect();
    let unknown = prop_oneof![
        4 => Just(Vec::new()),
        1 => prop::collection::vec((odd_key(), odd_json(vocabulary.clone())), 1..3),
    ];
    (present, unknown)
        .prop_map(|(present, unknown)| {
            let mut object = Map::new();
            object.extend(present.into_iter().flatten());
            object.extend(unknown);
            object
        })
        .boxed()
}

fn member_value(kind: &Kind, name: &str, vocabulary: &Arc<Vocabulary>) -> BoxedStrategy<Value> {
    let plausible = match kind {
        Kind::Object(members) => documented_object(members.clone(), vocabulary.clone())
            .prop_map(Value::Object)
            .boxed(),
        _ => plausible_json(kind, name, vocabulary),
    };
    prop_oneof![3 => plausible, 1 => odd_json(vocabulary.clone())].boxed()
}

/// A value of the member's kind that the API may well accept.
fn plausible_json(kind: &Kind, name: &str, vocabulary: &Arc<Vocabulary>) -> BoxedStrategy<Value> {
    match kind {
        Kind::Object(members) => valid_object(members.clone(), vocabulary.clone())
            .prop_map(Value::Object)
            .boxed(),
        Kind::Integer { .. } => plausible_text(kind, name, vocabulary)
            .prop_map(|text| text.parse::<i64>().map_or(Value::String(text), Value::from))
            .boxed(),
        Kind::Any => odd_json(vocabulary.clone()),
        _ => plausible_text(kind, name, vocabulary)
            .prop_map(Value::String)
            .boxed(),
    }
}

/// Strings nobody should send: control characters, bidirectional overrides, lone
/// replacement characters, injections, huge lengths.
fn odd_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        2 => prop::collection::vec(
            prop_oneof![0u32..0x20, Just(0x7f), Just(0x85), Just(0x2028), Just(0x202e)],
            0..16
        )
        .prop_map(|codes| codes.into_iter().filter_map(char::from_u32).collect()),
        2 => prop::sample::select(vec![
            "", " ", "\u{0}", "\u{202e}LOM-BG", "\u{feff}", "\u{fffd}", "💥", "null",
            "../../etc/passwd", "'; DROP TABLE events; --", "<script>", "%FF",
            "2024-01-10\u{0}", "LOM-BG\n", "RSSMRA80A01H501U\u{0}", "  LOM-BG  ",
        ])
        .prop_map(str::to_owned),
        1 => (prop::sample::select(vec!["x", "é", "\u{0}", "💥"]), 1usize..20_000)
            .prop_map(|(unit, n)| unit.repeat(n)),
    ]
    .boxed()
}

/// Keys of unknown members.
fn odd_key() -> BoxedStrategy<String> {
    prop_oneof![
        1 => prop::sample::select(vec![
            "", "ON", "on ", "__proto__", "constructor", "territory\u{0}", "person.fiscal_code",
            "$ref", "id", "sequence", "position", "recorded_at",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

/// Any JSON value, with odd leaves and nested arrays and objects.
fn odd_json(vocabulary: Arc<Vocabulary>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1e308),
            json!(-0.0),
            json!(5e-324),
            json!(0),
            json!(-1),
            json!(2_147_483_648_i64),
        ]),
        odd_string().prop_map(Value::String),
        prop::sample::select(vocabulary.words.clone()).prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(odd_key(), inner, 0..6)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// The object as text with one of its members (or `on`) written twice, the first time with
/// another value.
fn repeated_key(
    (object, index, other): (Map<String, Value>, prop::sample::Index, Value),
) -> Option<Vec<u8>> {
    let (name, value) = if object.is_empty() {
        ("on".to_owned(), json!("2024-01-10"))
    } else {
        let (name, value) = object
            .iter()
            .nth(index.index(object.len()))
            .expect("a member");
        (name.clone(), value.clone())
    };
    let first = format!("{}:{other}", Value::String(name.clone()));
    let text = Value::Object(object).to_string();
    let raw = if text == "{}" {
        format!("{{{first},{}:{value}}}", Value::String(name))
    } else {
        format!("{{{first},{}", &text[1..])
    };
    Some(raw.into_bytes())
}

/// The object as text with the member `name` set to a raw fragment.
fn with_raw_member(object: &Map<String, Value>, name: &str, fragment: &str) -> Vec<u8> {
    let mut object = object.clone();
    object.remove(name);
    let member = format!("{}:{fragment}", Value::String(name.to_owned()));
    let text = Value::Object(object).to_string();
    let raw = if text == "{}" {
        format!("{{{member}}}")
    } else {
        format!("{{{member},{}", &text[1..])
    };
    raw.into_bytes()
}

/// Values as raw text that are no JSON, or JSON that parsers read differently.
fn raw_fragment() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "1e999", "-1e999", "123456789012345678901234567890", "-0", "1e-400", "NaN",
            "Infinity", "undefined", "'single'", "\"\\ud800\"", "\"\\udfff\\ud800\"",
            "\"\\u0000\"", "\"unterminated", "[1,]", "{,}", "01", "tru", "\"\\x41\"",
            "\"a\"/*c*/", "\"a\u{1}b\"", "\"\\uZZZZ\"", "0x10", ".5", "1.", "+1",
        ])
        .prop_map(str::to_owned),
        1 => (1usize..400).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        1 => (1usize..400).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n))),
    ]
    .boxed()
}

/// Whole bodies as raw text: not an object, several documents, byte-order marks, deep nesting.
fn raw_document() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "\u{feff}{}", "{} {}", "[]", "\"string\"", "null", "0", "{\"a\":1}garbage", "{",
            "}", "{\"on\":}", "{\"on\" \"x\"}", " ", "\n", "{\"\u{0}\":1}", "[{}]",
        ])
        .prop_map(str::to_owned),
        1 => (100usize..20_000).prop_map(|n| "[".repeat(n) + &"]".repeat(n)),
        1 => (100usize..10_000).prop_map(|n| "{\"a\":".repeat(n) + "1" + &"}".repeat(n)),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// The exchange
// ---------------------------------------------------------------------------------------------

/// Sends one case and checks its answer: not a 5xx, every 4xx a problem document, nothing
/// written unless the request succeeded. Returns the status.
async fn exchange(app: &TestApp, operation: &Operation, case: &Case) -> Result<u16, String> {
    let head = || async { app.store.head().await.map_err(|e| format!("head: {e}")) };
    let before = head().await?;
    let mut url = format!("{}{}", app.address, case.path);
    if let Some(query) = &case.query {
        url.push('?');
        url.push_str(query);
    }
    let mut request = app
        .client
        .request(operation.method.clone(), &url)
        .timeout(PATIENCE);
    if let Some(content_type) = case.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(key) = &case.idempotency_key {
        let value = HeaderValue::from_bytes(key.as_bytes()).expect("a header value");
        request = request.header("idempotency-key", value);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e:?}"))?;
    let status = response.status();
    let media_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_owned();
    // The live stream never ends: its headers are enough.
    let body = if status.is_success() && media_type == "text/event-stream" {
        drop(response);
        Value::Null
    } else {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{status}: body unreadable: {e:?}"))?;
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes).chars().take(500).collect())
        })
    };
    let at = format!("{} {url:.300} answered {status}", operation.method);
    if status.is_server_error() {
        return Err(format!("{at}: {body:#}"));
    }
    if status.is_client_error() {
        if media_type != "application/problem+json" {
            return Err(format!("{at} as {media_type:?}: {body:#}"));
        }
        let code = body["code"].as_str().unwrap_or_default();
        let well_formed = !code.is_empty()
            && body["status"] == status.as_u16()
            && body["title"].as_str().is_some_and(|t| !t.is_empty())
            && body["type"] == format!("/problems/{code}");
        if !well_formed {
            return Err(format!("{at}: not a problem document: {body:#}"));
        }
    }
    let after = head().await?;
    if !status.is_success() && after != before {
        return Err(format!(
            "{at}, yet the feed head moved from {before} to {after}: {body:#}"
        ));
    }
    Ok(status.as_u16())
}
