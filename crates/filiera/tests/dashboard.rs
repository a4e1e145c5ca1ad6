//! The web dashboard in a real headless Chromium, driven over WebDriver (Debian's
//! `chromedriver`, which `.ci/run` installs), against a real `filiera serve` over an embedded
//! store seeded with a generated history.
//!
//! Every figure the pages show carries `data-metric` (its path in the API's document) and
//! `data-value`; the nearest `data-source` names the document. The test reads them all and
//! compares each with the API's JSON for the same query, its value and its formatted text.
//! Screenshots of each page land in `<target>/dashboard-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use filiera_auth::Role;
use serde_json::{Value, json};

/// The WebDriver server, killed on drop.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl Drop for ChromeDriver {
    /// `GET /shutdown` quits every session's browser with chromedriver (a test that fails
    /// before `Client::close` must not leave a Chromium behind); killed if it lingers.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        if let Ok(mut stream) = std::net::TcpStream::connect(address) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                stream,
                "GET /shutdown HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.read_to_end(&mut Vec::new());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

async fn chromedriver() -> ChromeDriver {
    assert!(
        Path::new(CHROMEDRIVER).exists(),
        "{CHROMEDRIVER} is missing: `apt-get install chromium chromium-driver` (.ci/run does)"
    );
    let port = filiera_testkit::free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = ChromeDriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    loop {
        let status = http.get(format!("{}/status", driver.url)).send().await;
        if let Ok(status) = status
            && let Ok(body) = status.json::<Value>().await
            && body["value"]["ready"] == true
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &ChromeDriver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--font-render-hinting=none", "--lang=en-GB",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// `<target>/dashboard-screenshots/`, beside the binary under test.
fn screenshot_dir() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_filiera"));
    let target = binary
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in <target>/<profile>/");
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("saved");
}

/// Waits until `condition` (a JavaScript expression) is true in the page.
async fn wait_until(client: &Client, condition: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = client
            .execute(&format!("return Boolean({condition});"), vec![])
            .await
            .expect("the script runs");
        if value == true {
            return;
        }
        if Instant::now() > deadline {
            let body = client
                .execute("return document.body.innerText;", vec![])
                .await
                .unwrap_or_default();
            panic!("the page never met `{condition}`; it shows:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page has drawn route `hash`.
async fn rendered(client: &Client, hash: &str) {
    wait_until(
        client,
        &format!("document.body.dataset.rendered === {}", json!(hash)),
    )
    .await;
}

/// One figure of the page.
#[derive(Debug)]
struct Figure {
    source: String,
    metric: String,
    value: Value,
    text: String,
}

async fn figures(client: &Client) -> Vec<Figure> {
    let found = client
        .execute(
            "return [...document.querySelectorAll('[data-metric]')].map((e) => ({
                source: e.closest('[data-source]')?.dataset.source ?? null,
                metric: e.dataset.metric,
                value: e.dataset.value,
                text: e.textContent,
            }));",
            vec![],
        )
        .await
        .expect("the figures");
    found
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| Figure {
            source: f["source"]
                .as_str()
                .expect("every figure has a source")
                .into(),
            metric: f["metric"].as_str().unwrap().into(),
            value: serde_json::from_str(f["value"].as_str().unwrap()).expect("JSON data-value"),
            text: f["text"].as_str().unwrap().into(),
        })
        .collect()
}

/// The value at `path` in an API document: object keys; in arrays the element whose
/// `territory`, `provider` or `beneficiary_id` is the segment, else the index; `FROM>TO` a
/// transition matrix cell (0 when absent); `*` the sum of an object's values; `#` a length.
fn resolve(document: &Value, path: &str) -> Value {
    let mut here = document.clone();
    for segment in path.split('.') {
        here = match (&here, segment) {
            (Value::Object(map), "*") => json!(map.values().filter_map(Value::as_u64).sum::<u64>()),
            (Value::Array(items), "#") => json!(items.len()),
            (Value::Array(items), cell) if cell.contains('>') => {
                let (from, to) = cell.split_once('>').unwrap();
                let from = if from == "entry" {
                    Value::Null
                } else {
                    json!(from)
                };
                items
                    .iter()
                    .find(|c| c["from"] == from && c["to"] == to)
                    .map_or(json!(0), |c| c["count"].clone())
            }
            (Value::Array(items), key) => items
                .iter()
                .find(|item| {
                    ["territory", "provider", "beneficiary_id"]
                        .iter()
                        .any(|field| item[*field] == key)
                })
                .cloned()
                .or_else(|| {
                    key.parse::<usize>()
                        .ok()
                        .and_then(|i| items.get(i).cloned())
                })
                .unwrap_or_else(|| panic!("{path}: no item {key}")),
            (Value::Object(map), key) => map
                .get(key)
                .cloned()
                .unwrap_or_else(|| panic!("{path}: no member {key} in {here}")),
            _ => panic!("{path}: cannot descend into {here} with {segment}"),
        };
    }
    here
}

/// The number a figure's text shows, in `lang`'s notation; `None` for "—".
fn shown_number(text: &str, lang: &str) -> Option<f64> {
    let text = text.trim();
    if text == "—" {
        return None;
    }
    let (group, decimal) = if lang == "it" { ('.', ',') } else { (',', '.') };
    let cleaned: String = text
        .chars()
        .filter(|c| *c != group && *c != '%' && !c.is_whitespace() && *c != '\u{a0}')
        .map(|c| if c == decimal { '.' } else { c })
        .map(|c| if c == '−' { '-' } else { c })
        .collect();
    Some(
        cleaned
            .parse()
            .unwrap_or_else(|_| panic!("`{text}` is a number")),
    )
}

/// Checks every figure against the API's documents; returns how many were checked.
fn check(figures: &[Figure], documents: &[(&str, &Value)], lang: &str) -> usize {
    assert!(!figures.is_empty(), "the page shows figures");
    for figure in figures {
        let document = documents
            .iter()
            .find(|(name, _)| *name == figure.source)
            .unwrap_or_else(|| panic!("no API document for source {}", figure.source))
            .1;
        let expected = resolve(document, &figure.metric);
        match (&expected, &figure.value) {
            (Value::Number(a), Value::Number(b)) => assert!(
                (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9,
                "{}: page {b}, API {a}",
                figure.metric
            ),
            _ => assert_eq!(figure.value, expected, "{}", figure.metric),
        }
        // The text shows the same number, rounded as displayed.
        if let Value::Number(n) = &expected {
            let shown = shown_number(&figure.text, lang)
                .unwrap_or_else(|| panic!("{}: `{}` for {n}", figure.metric, figure.text));
            let scale = if figure.text.contains('%') {
                100.0
            } else {
                1.0
            };
            let decimals = figure
                .text
                .rsplit_once(if lang == "it" { ',' } else { '.' })
                .map_or(0, |(_, d)| d.chars().filter(char::is_ascii_digit).count());
            let tolerance = 0.5 * 10f64.powi(-(decimals as i32)) + 1e-9;
            assert!(
                (shown - n.as_f64().unwrap() * scale).abs() <= tolerance,
                "{}: shows `{}` for {n}",
                figure.metric,
                figure.text
            );
        } else if expected.is_null() {
            assert_eq!(figure.text.trim(), "—", "{}", figure.metric);
        }
    }
    figures.len()
}

/// The API's answer to `path?query` with `token`.
async fn api(base: &str, token: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let query: Vec<_> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
    let encoded = serde_urlencoded::to_string(&query).expect("a query string");
    let response = reqwest::Client::new()
        .get(format!("{base}{path}?{encoded}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(response.status(), 200, "{path} {query:?}");
    response.json().await.expect("JSON")
}

/// A period query and the hash route that shows it.
struct Query<'a> {
    territory: &'a str,
    from: &'a str,
    to: &'a str,
    known_at: &'a str,
}

impl Query<'_> {
    fn params(&self) -> Vec<(&str, &str)> {
        vec![
            ("territory", self.territory),
            ("from", self.from),
            ("to", self.to),
            ("known_at", self.known_at),
        ]
    }

    fn hash(&self, page: &str) -> String {
        let query = serde_urlencoded::to_string(self.params()).unwrap();
        format!("#/{page}?{query}")
    }
}

/// Chooses the query in the page's filter form and submits it.
/// The API's documents behind the overview of `query`: the metrics and the monthly series.
async fn overview_documents(base: &str, token: &str, query: &Query<'_>) -> (Value, Value) {
    let metrics = api(base, token, "/v1/metrics", &query.params()).await;
    let mut series_params = query.params();
    series_params.push(("interval", "month"));
    let series = api(base, token, "/v1/metrics/series", &series_params).await;
    (metrics, series)
}

/// Types `token` into the sign-in form and sends it.
async fn submit_token(client: &Client, token: &str) {
    let field = client.find(Locator::Id("token")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(token).await.unwrap();
    client
        .find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Signs in with `token` and waits for the overview it opens on.
async fn sign_in(client: &Client, token: &str) {
    submit_token(client, token).await;
    wait_until(
        client,
        "document.body.dataset.rendered?.startsWith('#/overview')",
    )
    .await;
}

async fn choose(client: &Client, query: &Query<'_>) {
    client
        .find(Locator::Id("f-territory"))
        .await
        .expect("the territory picker")
        .select_by_value(query.territory)
        .await
        .expect("the territory is offered");
    client
        .execute(
            "document.getElementById('f-from').value = arguments[0];
             document.getElementById('f-to').value = arguments[1];
             document.getElementById('f-known_at').value = arguments[2];",
            vec![json!(query.from), json!(query.to), json!(query.known_at)],
        )
        .await
        .expect("the dates are set");
    client
        .find(Locator::Id("f-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Runs `filiera ARGS` with `dir` as its data folder; it must succeed.
fn filiera(dir: &Path, args: &[&str]) {
    let output = common::clean_command()
        .env("FILIERA_DATA_DIR", dir)
        .args(args)
        .output()
        .expect("filiera runs");
    assert!(
        output.status.success(),
        "filiera {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until every projection has read the whole feed, so the page and the API agree.
async fn caught_up(base: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = api(base, token, "/v1/projections", &[]).await;
        let lagging = status["projections"]
            .as_array()
            .expect("projections")
            .iter()
            .any(|p| p["lag"].as_i64() != Some(0));
        if !lagging {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "projections never caught up: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_apis_figures_in_a_real_browser() {
    // A known history: a generated file (fixed seed) imported into an embedded store.
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.ndjson");
    let history = history.to_str().unwrap();
    filiera(
        dir.path(),
        &[
            "generate", "--events", "8000", "--seed", "11", "-o", history,
        ],
    );
    filiera(dir.path(), &["import", history]);
    let mut command = common::clean_command();
    command.env("FILIERA_DATA_DIR", dir.path());
    let server = common::start_with(command, &reqwest::Client::new()).await;
    let base = server.base.clone();
    let admin = common::admin_token();
    caught_up(&base, &admin).await;

    let driver = chromedriver().await;
    let client = browser(&driver).await;
    client.set_window_size(1440, 1000).await.unwrap();

    // Sign-in screen, in English.
    client.goto(&format!("{base}/?lang=en")).await.unwrap();
    rendered(&client, "signin").await;
    assert_eq!(
        client
            .execute("return document.documentElement.lang;", vec![])
            .await
            .unwrap(),
        "en"
    );
    screenshot(&client, "signin").await;
    submit_token(&client, "not a token").await;
    wait_until(
        &client,
        "!document.getElementById('signin-error').hidden && \
         document.getElementById('token').getAttribute('aria-invalid') === 'true'",
    )
    .await;
    sign_in(&client, &admin).await;

    // Overview of a region over a year, then of one of its provinces over another period.
    let region = Query {
        territory: "LOM",
        from: "2024-01-01",
        to: "2024-12-31",
        known_at: "",
    };
    choose(&client, &region).await;
    rendered(&client, &region.hash("overview")).await;
    let (metrics, series) = overview_documents(&base, &admin, &region).await;
    let before = figures(&client).await;
    let checked = check(&before, &[("metrics", &metrics), ("series", &series)], "en");
    assert!(checked > 60, "the overview shows {checked} figures");
    for needed in [
        "enrolments",
        "active_at_end.*",
        "progressivity_index",
        "reiteration.flagged",
        "reiteration.distribution.3+",
        "time_in_pathway_days.open.median",
        "points.11.metrics.enrolments",
    ] {
        assert!(
            before.iter().any(|f| f.metric == needed),
            "the overview shows {needed}"
        );
    }
    assert!(
        before
            .iter()
            .any(|f| f.metric.starts_with("transition_matrix.") && f.value != json!(0)),
        "the matrix shows transitions"
    );
    // Each chart is drawn, beside its data table.
    let canvases = client
        .execute(
            "return [...document.querySelectorAll('canvas')].filter((c) => c.width > 0 && \
             c.getAttribute('role') === 'img' && c.getAttribute('aria-label')).length;",
            vec![],
        )
        .await
        .unwrap();
    assert!(canvases.as_u64().unwrap() >= 6, "{canvases} charts");
    client.set_window_size(1440, 1960).await.unwrap();
    screenshot(&client, "overview").await;
    client.set_window_size(1440, 1000).await.unwrap();

    let province = Query {
        territory: "LOM-BG",
        from: "2023-03-01",
        to: "2023-08-31",
        known_at: "",
    };
    choose(&client, &province).await;
    rendered(&client, &province.hash("overview")).await;
    let (metrics_after, series_after) = overview_documents(&base, &admin, &province).await;
    assert_ne!(
        metrics["enrolments"], metrics_after["enrolments"],
        "the two queries differ, so the switch is seen"
    );
    let after = figures(&client).await;
    check(
        &after,
        &[("metrics", &metrics_after), ("series", &series_after)],
        "en",
    );
    let enrolments = |figures: &[Figure]| {
        figures
            .iter()
            .find(|f| f.metric == "enrolments")
            .unwrap()
            .value
            .clone()
    };
    assert_ne!(enrolments(&before), enrolments(&after));
    assert_eq!(
        after
            .iter()
            .filter(|f| f.metric.ends_with(".metrics.enrolments"))
            .count(),
        6,
        "six months"
    );

    // A refused query shows its problem document: title, detail and the field.
    let backwards = Query {
        territory: "LOM",
        from: "2024-05-01",
        to: "2024-02-01",
        known_at: "",
    };
    choose(&client, &backwards).await;
    rendered(&client, &backwards.hash("overview")).await;
    let problem = client
        .find(Locator::Css("[role=alert].problem"))
        .await
        .expect("the problem is shown")
        .text()
        .await
        .unwrap();
    assert!(
        problem.contains("Field: from") && problem.contains("is after"),
        "{problem}"
    );
    choose(&client, &region).await;
    rendered(&client, &region.hash("overview")).await;

    // Breakdown of the region's provinces, through the navigation (which keeps the query).
    client
        .find(Locator::Css("#sidebar a[data-route=breakdown]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    rendered(&client, &region.hash("breakdown")).await;
    let breakdown = api(&base, &admin, "/v1/metrics/breakdown", &region.params()).await;
    let shown = figures(&client).await;
    check(&shown, &[("breakdown", &breakdown)], "en");
    let children = breakdown["children"].as_array().unwrap();
    assert!(children.len() >= 3);
    assert_eq!(
        shown.len(),
        children.len() * 8,
        "eight figures per territory"
    );
    // Sorted by enrolments, most first; a click on that header sorts ascending, Enter on it
    // (the keyboard) descending again.
    let order = || async {
        client
            .execute(
                "return [...document.querySelectorAll('#breakdown tbody tr')].map((r) => r.dataset.row);",
                vec![],
            )
            .await
            .unwrap()
    };
    let sorted = |descending: bool| {
        let mut rows: Vec<(u64, String)> = children
            .iter()
            .map(|c| {
                (
                    c["metrics"]["enrolments"].as_u64().unwrap(),
                    c["territory"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        rows.sort_by_key(|(n, _)| *n);
        if descending {
            rows.reverse();
        }
        rows.into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    };
    let enrolments_in = |codes: &Value| {
        codes
            .as_array()
            .unwrap()
            .iter()
            .map(|code| {
                resolve(
                    &breakdown,
                    &format!("children.{}.metrics.enrolments", code.as_str().unwrap()),
                )
                .as_u64()
                .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(enrolments_in(&order().await), sorted(true));
    let header = client
        .find(Locator::Css("#breakdown button[data-sort=enrolments]"))
        .await
        .unwrap();
    header.click().await.unwrap();
    assert_eq!(enrolments_in(&order().await), sorted(false));
    let by_flagged = client
        .find(Locator::Css("#breakdown button[data-sort=flagged]"))
        .await
        .unwrap();
    by_flagged.send_keys("\u{E007}").await.unwrap();
    let flagged_in = |codes: &Value| {
        codes
            .as_array()
            .unwrap()
            .iter()
            .map(|code| {
                resolve(
                    &breakdown,
                    &format!(
                        "children.{}.metrics.reiteration.flagged",
                        code.as_str().unwrap()
                    ),
                )
                .as_u64()
                .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let flagged = flagged_in(&order().await);
    assert!(flagged.windows(2).all(|w| w[0] >= w[1]), "{flagged:?}");
    header.send_keys("\u{E007}").await.unwrap();
    assert_eq!(enrolments_in(&order().await), sorted(true));
    let aria = client
        .execute(
            "return document.querySelector('#breakdown th[aria-sort]').textContent + ' ' + \
             document.querySelector('#breakdown th[aria-sort]').getAttribute('aria-sort');",
            vec![],
        )
        .await
        .unwrap();
    assert!(aria.as_str().unwrap().ends_with("descending"), "{aria}");
    screenshot(&client, "breakdown").await;

    // Provider scorecard.
    client
        .find(Locator::Css("#sidebar a[data-route=providers]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    rendered(&client, &region.hash("providers")).await;
    let scorecard = api(&base, &admin, "/v1/providers/scorecard", &region.params()).await;
    let shown = figures(&client).await;
    check(&shown, &[("scorecard", &scorecard)], "en");
    assert!(!scorecard["providers"].as_array().unwrap().is_empty());
    screenshot(&client, "providers").await;

    // Reiteration audit, each flagged beneficiary with its evidence.
    client
        .find(Locator::Css("#sidebar a[data-route=audit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let audit_query = [("territory", "LOM"), ("to", "2024-12-31")];
    let audit_hash = format!(
        "#/audit?{}",
        serde_urlencoded::to_string([("territory", "LOM"), ("to", "2024-12-31"), ("known_at", "")])
            .unwrap()
    );
    rendered(&client, &audit_hash).await;
    let audit = api(&base, &admin, "/v1/audit/reiterations", &audit_query).await;
    let flagged = audit["beneficiaries"].as_array().unwrap();
    assert!(!flagged.is_empty(), "the history flags someone");
    let shown = figures(&client).await;
    check(&shown, &[("audit", &audit)], "en");
    assert!(shown.iter().any(|f| f.metric == "beneficiaries.#"));
    for person in flagged {
        let id = person["beneficiary_id"].as_str().unwrap();
        let evidence = shown
            .iter()
            .filter(|f| {
                f.metric
                    .starts_with(&format!("beneficiaries.{id}.transitions."))
            })
            .count();
        assert_eq!(
            evidence,
            person["transitions"].as_array().unwrap().len() * 3,
            "{id}"
        );
    }
    client
        .execute(
            "document.querySelector('details.evidence').open = true;",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&client, "audit").await;

    // Live feed: an event written now appears.
    client
        .find(Locator::Css("#sidebar a[data-route=feed]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(&client, "document.body.dataset.rendered === '#/feed'").await;
    wait_until(
        &client,
        "document.querySelectorAll('#feed-rows tr').length > 0",
    )
    .await;
    let enrolled: Value = reqwest::Client::new()
        .post(format!("{base}/v1/beneficiaries"))
        .bearer_auth(&admin)
        .json(&json!({"territory": "LOM-BG-BERGAMO", "on": "2025-01-15", "referral": "self"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = enrolled["id"].as_str().expect("an enrolment").to_owned();
    wait_until(
        &client,
        &format!("document.querySelector('#feed-rows tr[data-beneficiary=\"{id}\"]')"),
    )
    .await;
    screenshot(&client, "feed").await;

    // Italian (the default), on a tablet: the same figures in Italian notation.
    client.set_window_size(820, 1180).await.unwrap();
    client
        .goto(&format!("{base}/{}", region.hash("overview")))
        .await
        .unwrap();
    rendered(&client, &region.hash("overview")).await;
    assert_eq!(
        client
            .execute("return document.documentElement.lang;", vec![])
            .await
            .unwrap(),
        "it"
    );
    let italian = figures(&client).await;
    check(
        &italian,
        &[("metrics", &metrics), ("series", &series)],
        "it",
    );
    let fits = client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, true, "no horizontal scrolling on a tablet");
    screenshot(&client, "overview-tablet-it").await;

    // A token the server refuses sends back to the sign-in screen, saying why.
    let forged = common::token(Role::Evaluator, &["LOM"]);
    let (head, _) = forged.rsplit_once('.').unwrap();
    client
        .execute(
            "sessionStorage.setItem('filiera.token', arguments[0]);",
            vec![json!(format!("{head}.AAAA"))],
        )
        .await
        .unwrap();
    client.refresh().await.unwrap();
    rendered(&client, "signin").await;
    let message = client
        .find(Locator::Id("signin-error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(message.contains("token"), "{message}");

    // An evaluator of one province: the picker offers its territories only, the overview
    // opens on it with the API's figures for its token, and the feed is not for this role.
    let evaluator = common::token(Role::Evaluator, &["LOM-BG"]);
    sign_in(&client, &evaluator).await;
    let offered = client
        .execute(
            "return [...document.querySelectorAll('#f-territory option')].map((o) => o.value);",
            vec![],
        )
        .await
        .unwrap();
    let offered: Vec<&str> = offered
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(offered[0], "LOM-BG", "{offered:?}");
    assert!(
        offered.len() > 1
            && offered
                .iter()
                .all(|c| c.starts_with("LOM-BG-") || *c == "LOM-BG")
    );
    let chosen = client
        .execute(
            "return ['from', 'to'].map((n) => document.getElementById('f-' + n).value);",
            vec![],
        )
        .await
        .unwrap();
    let scoped = Query {
        territory: "LOM-BG",
        from: chosen[0].as_str().unwrap(),
        to: chosen[1].as_str().unwrap(),
        known_at: "",
    };
    let (metrics, series) = overview_documents(&base, &evaluator, &scoped).await;
    check(
        &figures(&client).await,
        &[("metrics", &metrics), ("series", &series)],
        "it",
    );
    let routes = client
        .execute(
            "return [...document.querySelectorAll('#sidebar a')].map((a) => a.dataset.route);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        routes,
        json!(["overview", "breakdown", "providers", "audit"])
    );
    client
        .execute("location.hash = '#/feed';", vec![])
        .await
        .unwrap();
    rendered(&client, "#/feed").await;
    client
        .find(Locator::Css("[role=alert].problem"))
        .await
        .expect("the page says the role cannot open it");

    client.close().await.unwrap();
    drop(server);
}

/// The page and its assets are open, typed, cached by validation and locked down by a
/// Content-Security-Policy; an unknown asset is a 404 problem document.
#[tokio::test]
async fn the_dashboards_files_are_open_and_locked_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = common::clean_command();
    command.env("FILIERA_DATA_DIR", dir.path());
    let http = reqwest::Client::new();
    let server = common::start_with(command, &http).await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/dashboard.css", "text/css; charset=utf-8"),
        (
            "/assets/vendor/chart.umd.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let response = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}: no token needed");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let etag = headers["etag"].clone();
        let again = http
            .get(format!("{}{path}", server.base))
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let page = http
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<html lang=\"it\">"));
    let missing = http
        .get(format!("{}/assets/nothing.js", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["field"], "path");
    // The dashboard is not part of the API's document.
    let doc: Value = http
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/").is_none());
    assert!(doc["paths"].get("/assets/{path}").is_none());
}
