//! The web dashboard (ADR 0012): a small client-side app, embedded in the binary, that reads the
//! public JSON API with the signed-in user's bearer token.
//!
//! `GET /` answers the page and `GET /assets/{*path}` its scripts, styles and the vendored
//! chart library (`assets/vendor/VENDORED.md`). They hold no data, so the access table lists
//! them as open; every figure the page shows comes from the API, under the token's role and
//! territories. They are not part of the OpenAPI document: they are not an API.
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts, styles and connections to
//! this origin only, no inline script), `X-Content-Type-Options: nosniff`, no referrer, and an
//! `ETag` with `Cache-Control: no-cache`, so that a browser revalidates (a cheap 304) and never
//! runs the scripts of an older binary.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::problem::ApiError;

/// The route templates of the dashboard, open in [`crate::access::RULES`].
pub const ROUTES: [&str; 2] = [INDEX_ROUTE, ASSET_ROUTE];
/// The page.
pub const INDEX_ROUTE: &str = "/";
/// Its scripts, styles and vendored library.
pub const ASSET_ROUTE: &str = "/assets/{*path}";

/// What the page may load: only this origin's scripts, styles, images and API; no inline
/// script or style, no plugin, no framing, no form posted elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// The path under `/assets/` (the page itself is `index.html`, served at `/`).
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const MARKDOWN: &str = "text/markdown; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// Every file of the dashboard, embedded at compile time.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("i18n.js", JS),
    asset!("format.js", JS),
    asset!("charts.js", JS),
    asset!("pages.js", JS),
    asset!("feed.js", JS),
    asset!("dom.js", JS),
    asset!("dashboard.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("vendor/chart.umd.min.js", JS),
    asset!("vendor/chart.js.LICENSE.md", MARKDOWN),
    asset!("vendor/VENDORED.md", MARKDOWN),
];

/// The dashboard's routes, merged into the API's router (inside the access middleware).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(INDEX_ROUTE, get(index))
        .route(ASSET_ROUTE, get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve(
        find("index.html").expect("index.html is embedded"),
        &headers,
    )
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match find(&path).filter(|a| a.path != "index.html") {
        Some(asset) => serve(asset, &headers),
        None => ApiError::problem(
            StatusCode::NOT_FOUND,
            "not_found",
            "Not found",
            format!("the dashboard has no asset `{path}`"),
            Some("path".into()),
        )
        .into_response(),
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// The strong `ETag` of each asset (a digest of its bytes), computed once.
fn etag(asset: &'static Asset) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                format!("\"{}\"", hex::encode(&digest[..16]))
            })
            .collect()
    });
    let index = ASSETS
        .iter()
        .position(|a| std::ptr::eq(a, asset))
        .expect("an asset of the table");
    &tags[index]
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(tag).expect("a hex digest is a header value"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module the page imports, and every file it names, is embedded: a file added to
    /// `assets/` but not to [`ASSETS`] would answer 404 in the browser.
    #[test]
    fn every_referenced_asset_is_embedded() {
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "vendor");
        for name in on_disk {
            assert!(find(&name).is_some(), "assets/{name} is not in ASSETS");
        }
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap_or("");
            if !asset.path.ends_with(".js") && !asset.path.ends_with(".html") {
                continue;
            }
            for (start, _) in text.match_indices("/assets/") {
                let rest = &text[start + "/assets/".len()..];
                let end = rest.find(['"', '\'', '`']).unwrap_or(rest.len());
                let name = &rest[..end];
                if !name.is_empty() && !name.contains('$') {
                    assert!(find(name).is_some(), "{} names {name}", asset.path);
                }
            }
            for line in text
                .lines()
                .filter(|l| l.trim_start().starts_with("import "))
            {
                if let Some(start) = line.find("'./") {
                    let rest = &line[start + 3..];
                    let name = &rest[..rest.find('\'').unwrap()];
                    assert!(find(name).is_some(), "{} imports {name}", asset.path);
                }
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script() {
        let page = std::str::from_utf8(find("index.html").unwrap().body).unwrap();
        for (start, _) in page.match_indices("<script") {
            let tag = &page[start..start + page[start..].find('>').unwrap()];
            assert!(tag.contains("src="), "inline script: {tag}");
        }
        assert!(!page.contains(" style="), "inline style attribute");
        for (start, _) in page.match_indices(" on") {
            let word: String = page[start + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !page[start + 1 + word.len()..].starts_with('='),
                "inline event handler {word}"
            );
        }
    }

    /// The vendored files are the ones `assets/vendor/VENDORED.md` names, byte for byte.
    #[test]
    fn vendored_files_match_their_recorded_digests() {
        let record = std::str::from_utf8(find("vendor/VENDORED.md").unwrap().body).unwrap();
        let mut checked = 0;
        for line in record.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line
                .split('|')
                .map(|c| c.trim().trim_matches('`'))
                .collect();
            let (file, digest) = (cells[1], cells[5]);
            let asset = find(&format!("vendor/{file}")).expect("a recorded file is embedded");
            assert_eq!(hex::encode(Sha256::digest(asset.body)), digest, "{file}");
            checked += 1;
        }
        assert_eq!(checked, 2, "VENDORED.md lists the library and its licence");
    }
}
