//! Hostile and slow clients over real sockets (SPEC 5.3): heads trickled or never sent, more
//! idle connections than the server serves at once, heads hyper cannot parse, over-long
//! targets, undecodable paths, repeated JSON keys and bodies that never arrive. Connection
//! handling does not depend on the store, so these run on SQLite only.

use std::time::Duration;

use filiera_http::ServeSettings;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Answer, Backend, TestApp, spawn_app, spawn_app_with};

/// Long enough for anything these tests wait for, short enough that a regression fails
/// instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

/// Settings with a short head deadline, so that the tests see it pass.
fn impatient() -> ServeSettings {
    ServeSettings {
        header_read_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..ServeSettings::default()
    }
}

/// A raw connection to the app.
async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    TcpStream::connect(address).await.expect("connect")
}

/// Reads until the server closes the connection; `None` when it sent nothing at all.
async fn read_to_close(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection in time");
    match read {
        Ok(_) if received.is_empty() => None,
        Ok(_) => Some(received),
        // Reset: the server closed while the client still had bytes on the way.
        Err(err) if received.is_empty() => {
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
            None
        }
        Err(err) => panic!("read failed after {} bytes: {err}", received.len()),
    }
}

/// Sends `request` as it is on a new connection and reads the answer up to the close.
async fn send_raw(app: &TestApp, request: &[u8]) -> Answer {
    let mut stream = connect(app).await;
    stream.write_all(request).await.expect("write");
    let received = read_to_close(&mut stream)
        .await
        .expect("the server answers before closing");
    parse_answer(&received)
}

/// An HTTP/1.1 answer as the bytes on the wire: status, headers, and a JSON body cut at its
/// `content-length`.
fn parse_answer(received: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("a header line");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a content-length");
    assert!(body.len() >= length, "body cut short: {text}");
    let body = serde_json::from_str(&body[..length]).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_dropped_unanswered() {
    let app = spawn_app_with(Backend::Sqlite, impatient()).await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    // 60 bytes at one every 300 ms: 18 s to send the head, far past its 1 s deadline.
    let head = b"GET /healthz HTTP/1.1\r\nHost: filiera.test\r\nAccept: */*\r\n\r\n";
    let trickle = tokio::spawn(async move {
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        true
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut received))
        .await
        .expect("the server drops the connection well before the head is complete");
    assert!(
        received.is_empty(),
        "no answer to a head that never completed: {:?}",
        String::from_utf8_lossy(&received)
    );
    if let Err(err) = read {
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    }
    trickle.abort();
    // The server still answers everyone else.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_lock_clients_out() {
    let app = spawn_app_with(
        Backend::Sqlite,
        ServeSettings {
            max_connections: 8,
            ..impatient()
        },
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect(&app).await);
    }
    // These take every connection the server serves: a ninth waits, unanswered, until the
    // idle ones reach their head deadline and are closed.
    let mut ninth = connect(&app).await;
    ninth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: filiera.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), ninth.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "the ninth connection is not served while eight are open"
    );
    // More idle ones queue behind; an ordinary client still gets through.
    for _ in 0..4 {
        idle.push(connect(&app).await);
    }
    let health = tokio::time::timeout(
        PATIENCE,
        app.client.get(format!("{}/healthz", app.address)).send(),
    )
    .await
    .expect("served once the idle connections time out")
    .expect("request");
    assert_eq!(health.status(), 200);
    let ninth = parse_answer(&read_to_close(&mut ninth).await.expect("an answer"));
    assert_eq!(ninth.status, 200);
    for mut connection in idle {
        assert!(
            read_to_close(&mut connection).await.is_none(),
            "an idle connection is closed without an answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_hyper_cannot_parse_get_problem_documents() {
    let app = spawn_app(Backend::Sqlite).await;

    let control = send_raw(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: filiera.test\r\nX-Note: a\x01b\r\n\r\n",
    )
    .await;
    control.problem(400, "malformed_request");
    assert_eq!(control.body["title"], "Malformed request");
    assert_eq!(control.headers["connection"], "close");

    let target = format!("/healthz?pad={}", "a".repeat(70 * 1024));
    let request = format!("GET {target} HTTP/1.1\r\nHost: filiera.test\r\n\r\n");
    let huge = send_raw(&app, request.as_bytes()).await;
    huge.problem(414, "uri_too_long");
    assert_eq!(huge.body["field"], "uri");

    // The server goes on answering.
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_targets_and_undecodable_paths_get_problem_documents() {
    let app = spawn_app(Backend::Sqlite).await;

    let target = format!("/v1/beneficiaries/{}", "a".repeat(10 * 1024));
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: filiera.test\r\nConnection: close\r\n\r\n");
    let long = send_raw(&app, request.as_bytes()).await;
    long.problem(414, "uri_too_long");
    assert_eq!(long.body["field"], "uri");

    let undecodable = send_raw(
        &app,
        b"GET /v1/beneficiaries/%FF HTTP/1.1\r\nHost: filiera.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    undecodable.problem(400, "malformed_path");
    assert_eq!(undecodable.body["field"], "id");

    let write = app
        .post_raw(
            "/v1/beneficiaries/%FF%FE/close",
            "application/json",
            br#"{"on": "2024-06-01", "outcome": "employed"}"#.to_vec(),
        )
        .await;
    write.problem(400, "malformed_path");
    let rebuild = app
        .post_raw(
            "/v1/projections/%C3%28/rebuild",
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    rebuild.problem(400, "malformed_path");
    assert_eq!(rebuild.body["field"], "name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_json_key_is_refused_and_nothing_is_written() {
    let app = spawn_app(Backend::Sqlite).await;
    // Either territory alone would be a valid enrolment.
    let body = br#"{"territory": "LOM-BG-BERGAMO", "territory": "LOM-LC-LECCO",
        "on": "2024-01-10", "referral": "social_services"}"#;
    let answer = app
        .post_raw("/v1/beneficiaries", "application/json", body.to_vec())
        .await;
    answer.problem(422, "invalid_field");
    assert_eq!(answer.body["field"], "territory", "{:#}", answer.body);
    assert!(app.whole_feed().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_answered_408() {
    let app = spawn_app_with(Backend::Sqlite, impatient()).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /v1/beneficiaries HTTP/1.1\r\nHost: filiera.test\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n\
              {\"territor",
        )
        .await
        .expect("write");
    let received = read_to_close(&mut stream)
        .await
        .expect("an answer once the body deadline passes");
    let answer = parse_answer(&received);
    answer.problem(408, "request_timeout");
    assert!(app.whole_feed().await.is_empty());
}
