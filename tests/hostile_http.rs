//! Hostile and slow clients over real sockets (SPEC 5.3): heads trickled or never sent, more
//! idle connections than the server serves at once, heads hyper cannot parse (alone or behind
//! a valid request), over-long targets, undecodable paths, repeated JSON keys, bodies that
//! never arrive, connections left idle after a response, clients that stop reading, and the
//! graceful shutdown with a live stream and a request in flight. Connection handling does not
//! depend on the store, so these run on SQLite only.

use std::time::{Duration, Instant};

use filiera_http::{SHUTDOWN_GRACE, ServeSettings};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{Answer, Backend, TestApp, spawn_app, spawn_app_until, spawn_app_with};

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
    split_answer(received)
        .unwrap_or_else(|| {
            panic!(
                "an incomplete answer: {}",
                String::from_utf8_lossy(received)
            )
        })
        .0
}

/// Every answer in `received`, one after the other on the same connection.
fn parse_answers(mut received: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while !received.is_empty() {
        let (answer, rest) = split_answer(received).unwrap_or_else(|| {
            panic!(
                "an incomplete answer: {}",
                String::from_utf8_lossy(received)
            )
        });
        answers.push(answer);
        received = rest;
    }
    answers
}

/// Reads one answer (head and `content-length` body) from a connection that stays open.
async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((answer, rest)) = split_answer(&received) {
            assert!(rest.is_empty(), "more than one answer");
            return answer;
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
    }
}

/// The first answer in `received` and the bytes after it; `None` while it is incomplete.
fn split_answer(received: &[u8]) -> Option<(Answer, &[u8])> {
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&received[..head_end]).expect("an ASCII head");
    let body = &received[head_end + 4..];
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
    if body.len() < length {
        return None;
    }
    let (body, rest) = body.split_at(length);
    let body = serde_json::from_slice(body).unwrap_or(Value::Null);
    let answer = Answer {
        status,
        headers,
        body,
    };
    Some((answer, rest))
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
        format!(
            "GET /v1/beneficiaries/%FF HTTP/1.1\r\nHost: filiera.test\r\n\
             Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            app.token
        )
        .as_bytes(),
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
            format!(
                "POST /v1/beneficiaries HTTP/1.1\r\nHost: filiera.test\r\n\
                 Authorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n\
                 {{\"territor",
                app.token
            )
            .as_bytes(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_behind_a_valid_one_gets_its_own_problem_document() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut stream = connect(&app).await;
    // Both in one write: hyper answers the first, then finds the second unparsable.
    stream
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: filiera.test\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: filiera.test\r\nX-Note: a\x01b\r\n\r\n",
        )
        .await
        .expect("write");
    let received = read_to_close(&mut stream).await.expect("answers");
    let answers = parse_answers(&received);
    assert_eq!(answers.len(), 2, "{}", String::from_utf8_lossy(&received));
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].body["status"], "ok");
    answers[1].problem(400, "malformed_request");
    assert_eq!(answers[1].headers["connection"], "close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_after_a_response_is_closed_after_the_keep_alive_timeout() {
    let keep_alive = Duration::from_millis(500);
    let app = spawn_app_with(
        Backend::Sqlite,
        ServeSettings {
            keep_alive_timeout: keep_alive,
            header_read_timeout: Duration::from_secs(30),
            ..ServeSettings::default()
        },
    )
    .await;
    let mut stream = connect(&app).await;
    let mut answered = Instant::now();
    // `/readyz` asks the store, so its answer is not ready when hyper first polls for it.
    for path in ["/healthz", "/readyz", "/healthz"] {
        // Within the keep-alive timeout the connection is reused.
        tokio::time::sleep(keep_alive / 4).await;
        let request = format!("GET {path} HTTP/1.1\r\nHost: filiera.test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        assert_eq!(read_answer(&mut stream).await.status, 200, "{path}");
        answered = Instant::now();
    }
    assert!(
        read_to_close(&mut stream).await.is_none(),
        "closed without a word"
    );
    // Counted from the answer's arrival, a little after the server's timer started.
    let idle = answered.elapsed() + Duration::from_millis(50);
    assert!(
        idle >= keep_alive && idle < Duration::from_secs(5),
        "closed after {idle:?} idle, not after the keep-alive timeout ({keep_alive:?}) nor \
         the header timeout (30 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_is_not_idle_while_it_waits_for_events() {
    let app = spawn_app_with(
        Backend::Sqlite,
        ServeSettings {
            keep_alive_timeout: Duration::from_millis(200),
            header_read_timeout: Duration::from_millis(200),
            ..ServeSettings::default()
        },
    )
    .await;
    // The stream asked for right behind another request: the connection has been between
    // requests once, and no byte arrives after the first response.
    let mut stream = connect(&app).await;
    let requests = format!(
        "GET /healthz HTTP/1.1\r\nHost: filiera.test\r\n\r\n\
         GET /v1/events/stream HTTP/1.1\r\nHost: filiera.test\r\n\
         Authorization: Bearer {}\r\n\r\n",
        app.token
    );
    stream.write_all(requests.as_bytes()).await.expect("write");
    // Far past both timeouts, with nothing sent either way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let mut received = String::new();
    let mut chunk = [0u8; 4096];
    while !received.contains(&id) {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the event arrives")
            .expect("read");
        assert!(n > 0, "the stream was closed: {received}");
        received.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");
    assert!(received.contains("text/event-stream"), "{received}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let write_timeout = Duration::from_secs(1);
    let app = spawn_app_with(
        Backend::Sqlite,
        ServeSettings {
            write_timeout,
            // Only the write timeout can free the one connection the server serves.
            keep_alive_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(60),
            max_connections: 1,
            ..ServeSettings::default()
        },
    )
    .await;
    // Asked on a connection of its own that closes: `app.client` would keep it, and with it the
    // only connection the server serves.
    let document = send_raw(
        &app,
        b"GET /openapi.json HTTP/1.1\r\nHost: filiera.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(document.status, 200);
    let document_len: usize = document.headers["content-length"]
        .to_str()
        .ok()
        .and_then(|len| len.parse().ok())
        .expect("a length");
    // Enough pipelined requests for the OpenAPI document to fill every buffer on the way many
    // times over, on a socket that takes little and never reads.
    let requests = (16 * 1024 * 1024 / document_len).max(64);
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let address = app
        .address
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let mut slow = socket.connect(address).await.expect("connect");
    let request = b"GET /openapi.json HTTP/1.1\r\nHost: filiera.test\r\n\r\n".repeat(requests);
    let (mut slow_reader, mut slow_writer) = slow.split();
    // The server may stop reading requests once its writes block: send what it takes.
    let _ = tokio::time::timeout(Duration::from_secs(2), slow_writer.write_all(&request)).await;

    let stalled_from = Instant::now();
    let health = tokio::time::timeout(
        PATIENCE,
        send_raw(
            &app,
            b"GET /healthz HTTP/1.1\r\nHost: filiera.test\r\nConnection: close\r\n\r\n",
        ),
    )
    .await
    .expect("served once the slow reader is dropped");
    assert_eq!(health.status, 200);
    assert!(
        stalled_from.elapsed() >= write_timeout / 2,
        "the slow reader held the only connection for a while: {:?}",
        stalled_from.elapsed()
    );
    // The slow reader finds its connection closed, most of its answers never sent.
    let mut received = Vec::new();
    let read = tokio::time::timeout(PATIENCE, slow_reader.read_to_end(&mut received))
        .await
        .expect("the slow reader's connection is closed");
    if let Err(err) = read {
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    }
    assert!(
        received.len() < requests * document_len / 2,
        "{} of {} bytes",
        received.len(),
        requests * document_len
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_live_streams_and_lets_requests_in_flight_finish() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // No drain delay: the shutdown proper is under test here (the drain is tested with real
    // processes in crates/filiera/tests/rolling_restart.rs).
    let settings = ServeSettings {
        drain_delay: Duration::ZERO,
        ..ServeSettings::default()
    };
    let (app, served) = spawn_app_until(Backend::Sqlite, settings, async {
        let _ = stopped.await;
    })
    .await;
    let response = app
        .client
        .get(format!("{}/v1/events/stream", app.address))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let mut live = response.bytes_stream();

    // A request in flight: its handler is reading the body (hyper says `100 Continue` when it
    // starts), which has not all arrived.
    let body =
        br#"{"territory": "LOM-BG-BERGAMO", "on": "2024-01-10", "referral": "social_services"}"#;
    let mut in_flight = connect(&app).await;
    let head = format!(
        "POST /v1/beneficiaries HTTP/1.1\r\nHost: filiera.test\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        app.token,
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.expect("write");
    let mut interim = [0u8; 25];
    tokio::time::timeout(PATIENCE, in_flight.read_exact(&mut interim))
        .await
        .expect("100 Continue in time")
        .expect("read");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    in_flight.write_all(&body[..10]).await.expect("write");

    let shutdown_from = Instant::now();
    stop.send(()).expect("the server is running");
    // The live stream ends.
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = live.next().await {}
    })
    .await
    .expect("the live stream ends on shutdown");
    // The request in flight is served, and its connection closed.
    in_flight.write_all(&body[10..]).await.expect("write");
    let answer = parse_answer(&read_to_close(&mut in_flight).await.expect("an answer"));
    assert_eq!(answer.status, 201, "{:#}", answer.body);
    assert_eq!(answer.headers["connection"], "close");

    let result = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(2), served)
        .await
        .expect("serve_with returns within the grace period")
        .expect("the server task did not panic");
    result.expect("serve_with returns Ok");
    assert!(shutdown_from.elapsed() < SHUTDOWN_GRACE + Duration::from_secs(2));
    // Nothing is accepted any more.
    let address = app.address.trim_start_matches("http://");
    assert!(TcpStream::connect(address).await.is_err());
    assert_eq!(
        app.store.head().await.expect("head"),
        1,
        "the enrolment was written"
    );
}
