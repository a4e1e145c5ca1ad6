//! The printable regional report as real processes over a generated history (reiterations,
//! regressions, closures, transfers, undos, in many territories): `GET /v1/reports/regional`
//! of `filiera serve` and `filiera report --format html` print the same bytes; every figure
//! the page marks with `data-metric` equals the JSON documents of `filiera report` for the
//! same query; and headless Chromium prints it to a PDF whose pages are rendered to PNG under
//! `target/report-screenshots/` for a look.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{clean_command, client, start_with};

/// The query of every report below.
const TERRITORY: &str = "LOM";
const KNOWN_AT: &str = "2100-01-01T00:00:00Z";

fn filiera(data_dir: &Path) -> Command {
    let mut command = clean_command();
    command.env("FILIERA_DATA_DIR", data_dir);
    command
}

fn succeed(command: &mut Command) -> Output {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A data folder holding a generated history, and its period (first and last effective
/// date).
fn generated_history() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("generated.ndjson");
    succeed(
        filiera(dir.path())
            .args(["generate", "--events", "3000", "--seed", "11", "-o"])
            .arg(&file),
    );
    succeed(filiera(dir.path()).arg("import").arg(&file));
    let dates: BTreeSet<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line["on"].as_str().map(str::to_owned))
        .collect();
    let from = dates.first().expect("dated commands").clone();
    let to = dates.last().unwrap().clone();
    (dir, from, to)
}

/// `filiera report` with the common query and `args`; its standard output.
fn report(dir: &Path, from: &str, to: &str, args: &[&str]) -> String {
    let output = succeed(
        filiera(dir)
            .args(["report", "--territory", TERRITORY, "--known-at", KNOWN_AT])
            .args(["--from", from, "--to", to])
            .args(args),
    );
    String::from_utf8(output.stdout).unwrap()
}

/// What the server answers for the report and the audit list.
struct Online {
    pages: Vec<(&'static str, String)>,
    audit: Value,
}

async fn online(dir: &Path, from: &str, to: &str) -> Online {
    let client = client();
    let server = start_with(filiera(dir), &client).await;
    // The read model catches up with the imported feed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = common::get(&client, format!("{}/v1/projections", server.base)).await;
        let projections = status["projections"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !projections.is_empty() && projections.iter().all(|p| p["lag"] == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up: {status:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let query = format!("territory={TERRITORY}&from={from}&to={to}&known_at={KNOWN_AT}");
    let mut pages = Vec::new();
    for lang in ["it", "en"] {
        let response = client
            .get(format!(
                "{}/v1/reports/regional?{query}&lang={lang}",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/html; charset=utf-8"
        );
        pages.push((lang, response.text().await.unwrap()));
    }
    let audit = common::get(
        &client,
        format!(
            "{}/v1/audit/reiterations?territory={TERRITORY}&to={to}&known_at={KNOWN_AT}",
            server.base
        ),
    )
    .await;
    Online { pages, audit }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_is_the_same_online_and_offline_and_holds_the_json_figures() {
    let (dir, from, to) = generated_history();
    let online = online(dir.path(), &from, &to).await;

    // Online == offline, byte for byte, in both languages.
    for (lang, page) in &online.pages {
        let offline = report(
            dir.path(),
            &from,
            &to,
            &["--format", "html", "--lang", lang],
        );
        assert_eq!(page, &offline, "lang={lang}");
    }

    // Every figure marked in the page equals the JSON documents for the same query.
    let series_from = {
        let query = filiera_domain::MetricsQuery {
            territory: None,
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            known_at: KNOWN_AT.parse().unwrap(),
            threshold: 2,
        };
        filiera_domain::metrics::regional_series_query(&query)
            .from
            .to_string()
    };
    let documents = Documents {
        metrics: json(&report(dir.path(), &from, &to, &[])),
        breakdown: json(&report(dir.path(), &from, &to, &["--breakdown"])),
        series: json(&report(
            dir.path(),
            &series_from,
            &to,
            &["--series", "month"],
        )),
        audit: online.audit,
    };
    // The history is one worth reporting on.
    let metrics = &documents.metrics;
    for path in [
        "/enrolments",
        "/transitions/progression",
        "/transitions/reiteration",
        "/transitions/regression",
        "/reiteration/flagged",
        "/closures/employed",
    ] {
        assert!(
            metrics.pointer(path).unwrap().as_u64().unwrap() > 0,
            "{path}"
        );
    }
    assert!(documents.breakdown["children"].as_array().unwrap().len() >= 2);
    for (lang, page) in &online.pages {
        let figures = marked_figures(page);
        let mut checked = BTreeSet::new();
        for (path, shown) in &figures {
            let expected = documents
                .resolve(path)
                .unwrap_or_else(|| panic!("{path} names nothing in the JSON documents"));
            compare(lang, path, shown, &expected);
            checked.insert(path.as_str());
        }
        for path in [
            "enrolments",
            "active_at_end",
            "progressivity_index",
            "reiteration.flagged",
            "transitions.reiteration",
            "transitions.regression",
            "transition_matrix.(entry).socio_occupational",
            "transition_matrix.internship.socio_occupational",
            "reiteration.distribution.3+",
            "time_in_stage_days.internship.closed.median",
            "time_in_pathway_days.open.p90",
            "closures.employed",
            "audit.beneficiaries",
        ] {
            assert!(checked.contains(path), "{path} is not in the page");
        }
        let prefixed = |prefix: &str| checked.iter().filter(|p| p.starts_with(prefix)).count();
        assert!(prefixed("breakdown.") >= 2 * 8, "lang={lang}");
        assert!(prefixed("series.") >= 8, "lang={lang}");
        assert!(prefixed("audit.") >= 2, "lang={lang}");
        assert!(figures.len() > 100, "lang={lang}: {}", figures.len());
    }

    // Headless Chromium prints it to PDF: pages with the report's text on them.
    let out = screenshots_dir();
    for (lang, page) in &online.pages {
        let html = out.join(format!("regional-{lang}.html"));
        std::fs::write(&html, page).unwrap();
        let pdf = out.join(format!("regional-{lang}.pdf"));
        print_to_pdf(&html, &pdf);
        let info = tool("pdfinfo", &[pdf.as_os_str()]);
        let pages: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .expect("pdfinfo prints the page count")
            .trim()
            .parse()
            .unwrap();
        assert!(pages >= 2, "{info}");
        assert!(info.contains("A4"), "{info}");
        let text = tool("pdftotext", &[pdf.as_os_str(), "-".as_ref()]);
        let title = match *lang {
            "it" => "Rapporto di monitoraggio regionale",
            _ => "Regional monitoring report",
        };
        assert!(text.contains(title), "{text}");
        let enrolments = metrics["enrolments"].as_u64().unwrap();
        assert!(
            text.contains(&enrolments.to_string()) || enrolments >= 1000,
            "{text}"
        );
        // Every page has text on it (no page left empty by a bad break).
        for page in 1..=pages {
            let n = page.to_string();
            let on_page = tool(
                "pdftotext",
                &[
                    "-f".as_ref(),
                    n.as_ref(),
                    "-l".as_ref(),
                    n.as_ref(),
                    pdf.as_os_str(),
                    "-".as_ref(),
                ],
            );
            assert!(on_page.trim().len() > 40, "page {page} of {pages} is empty");
        }
        let prefix = out.join(format!("regional-{lang}-page"));
        tool(
            "pdftoppm",
            &[
                "-png".as_ref(),
                "-r".as_ref(),
                "60".as_ref(),
                pdf.as_os_str(),
                prefix.as_os_str(),
            ],
        );
        let first = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&format!("regional-{lang}-page")))
            .count();
        assert_eq!(first as u32, pages);
    }
}

#[test]
fn html_takes_no_other_document() {
    let dir = tempfile::tempdir().unwrap();
    for other in [
        &["--breakdown"][..],
        &["--series", "month"],
        &["--providers"],
    ] {
        let output = filiera(dir.path())
            .args(["report", "--format", "html"])
            .args(other)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{other:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--format html"), "{stderr}");
    }
    let output = filiera(dir.path())
        .args(["report", "--format", "html", "--lang", "fr"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("`it` or `en`"));
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("a JSON document")
}

/// The JSON documents the page's figures come from.
struct Documents {
    metrics: Value,
    breakdown: Value,
    series: Value,
    audit: Value,
}

impl Documents {
    /// The value a `data-metric` path names (see `filiera_report::regional`).
    fn resolve(&self, path: &str) -> Option<Value> {
        if let Some(rest) = path.strip_prefix("breakdown.") {
            let (child, rest) = rest.split_once('.')?;
            let child = self.breakdown["children"]
                .as_array()?
                .iter()
                .find(|c| c["territory"] == child)?;
            return in_metrics(&child["metrics"], rest);
        }
        if let Some(rest) = path.strip_prefix("series.") {
            let (from, rest) = rest.split_once('.')?;
            let point = self.series["points"]
                .as_array()?
                .iter()
                .find(|p| p["from"] == from)?;
            return in_metrics(&point["metrics"], rest);
        }
        if path == "audit.beneficiaries" {
            let n = self.audit["beneficiaries"].as_array()?.len();
            // The audit list is exactly the beneficiaries the metrics flag.
            assert_eq!(
                Some(n as u64),
                self.metrics["reiteration"]["flagged"].as_u64()
            );
            return Some(n.into());
        }
        if let Some(rest) = path.strip_prefix("audit.") {
            let (id, field) = rest.split_once('.')?;
            let entry = self.audit["beneficiaries"]
                .as_array()?
                .iter()
                .find(|b| b["beneficiary_id"] == id)?;
            return Some(entry[field].clone());
        }
        in_metrics(&self.metrics, path)
    }
}

/// A value of one metrics document; an object stands for the sum of its values, a matrix
/// cell for its count (0 when absent).
fn in_metrics(metrics: &Value, path: &str) -> Option<Value> {
    if let Some(rest) = path.strip_prefix("transition_matrix.") {
        let (from, to) = rest.split_once('.')?;
        let from = match from {
            "(entry)" => Value::Null,
            code => code.into(),
        };
        let count = metrics["transition_matrix"]
            .as_array()?
            .iter()
            .find(|c| c["from"] == from && c["to"] == to)
            .map_or(0, |c| c["count"].as_u64().unwrap());
        return Some(count.into());
    }
    let mut value = metrics;
    for key in path.split('.') {
        value = value.get(key)?;
    }
    match value {
        Value::Object(map) => Some(
            map.values()
                .map(|v| v.as_u64().expect("counts"))
                .sum::<u64>()
                .into(),
        ),
        other => Some(other.clone()),
    }
}

/// Every `data-metric="PATH"` element's text.
fn marked_figures(page: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = page;
    while let Some(at) = rest.find("data-metric=\"") {
        rest = &rest[at + "data-metric=\"".len()..];
        let (path, after) = rest.split_once('"').expect("a closing quote");
        let text_start = after.find('>').expect("the end of the tag") + 1;
        let text_end = after[text_start..].find('<').expect("an element's end") + text_start;
        out.push((path.to_owned(), after[text_start..text_end].to_owned()));
        rest = &after[text_end..];
    }
    out
}

/// Checks a number as shown (in the page's language, rounded) against the JSON value.
fn compare(lang: &str, path: &str, shown: &str, expected: &Value) {
    if expected.is_null() {
        assert_eq!(shown, "\u{2014}", "{path}: null shown as {shown:?}");
        return;
    }
    let expected = expected
        .as_f64()
        .unwrap_or_else(|| panic!("{path}: {expected} is not a number"));
    let (thousands, decimal) = match lang {
        "it" => ('.', ','),
        _ => (',', '.'),
    };
    let normal: String = shown
        .chars()
        .filter(|c| *c != thousands)
        .map(|c| match c {
            c if c == decimal => '.',
            '\u{2212}' => '-',
            c => c,
        })
        .collect();
    let value: f64 = normal
        .parse()
        .unwrap_or_else(|_| panic!("{path}: {shown:?} is not a number"));
    let places = normal.split_once('.').map_or(0, |(_, f)| f.len());
    let tolerance = 0.5 * 10f64.powi(-(places as i32)) + 1e-6;
    assert!(
        (value - expected).abs() <= tolerance,
        "{path}: shown {shown:?}, the JSON says {expected}"
    );
}

/// `target/report-screenshots/` of the workspace, emptied.
fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
        let _ = std::fs::remove_file(entry.path());
    }
    dir.canonicalize().unwrap()
}

/// Prints `html` to `pdf` with headless Chromium (Debian's `chromium`, installed by `.ci/run`).
fn print_to_pdf(html: &Path, pdf: &Path) {
    let profile = tempfile::tempdir().unwrap();
    // `timeout` (coreutils): a browser that hangs fails the test instead of stalling the suite.
    let output = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs (Debian's `chromium` package; .ci/run installs it)");
    assert!(
        output.status.success() && pdf.exists(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a poppler tool (`poppler-utils`, installed by `.ci/run`); its standard output.
fn tool(name: &str, args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} runs (poppler-utils; .ci/run installs it): {e}"));
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
