//! Trace ids and OTLP export: a request's problem document, its log line and the span exported
//! to an OpenTelemetry collector name the same W3C trace id (the caller's, from `traceparent`);
//! spans still buffered at SIGTERM reach the collector before the process exits.
//!
//! The collector here is a plain OTLP/HTTP receiver decoding the wire format with the
//! OpenTelemetry project's own protobuf definitions (`opentelemetry-proto`): no collector binary
//! is installable on the machines this suite runs on.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use common::{clean_command, client};
use filiera_testkit::free_port;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::Value;

/// One span as the collector received it.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    parent_span_id: String,
    attributes: Vec<(String, String)>,
}

/// An OTLP/HTTP receiver on a free port, keeping every span it is sent.
struct Collector {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(Arc::clone(&spans));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    /// The spans of `trace_id` received so far.
    fn trace(&self, trace_id: &str) -> Vec<Received> {
        let spans = self.spans.lock().expect("not poisoned");
        spans
            .iter()
            .filter(|span| span.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

async fn receive(
    State(spans): State<Arc<Mutex<Vec<Received>>>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut received = spans.lock().expect("not poisoned");
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service = text_attributes(&resource.attributes)
            .into_iter()
            .find_map(|(key, value)| (key == "service.name").then_some(value))
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(Received {
                service: service.clone(),
                name: span.name.clone(),
                trace_id: hex::encode(&span.trace_id),
                parent_span_id: hex::encode(&span.parent_span_id),
                attributes: text_attributes(&span.attributes),
            });
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn text_attributes(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Vec<(String, String)> {
    attributes
        .iter()
        .filter_map(
            |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                AnyValue::StringValue(text) => Some((attribute.key.clone(), text.clone())),
                _ => None,
            },
        )
        .collect()
}

/// A `filiera serve` on its own embedded store, its standard error in a file.
struct Serve {
    server: common::Server,
    log: tempfile::NamedTempFile,
    _data: tempfile::TempDir,
}

impl Serve {
    async fn start(mut command: Command) -> Self {
        let data = tempfile::tempdir().expect("a data folder");
        let log = tempfile::NamedTempFile::new().expect("a log file");
        command.env("FILIERA_DATA_DIR", data.path());
        let stderr = log.reopen().expect("the log file");
        let server = common::start_on(command, free_port(), stderr, &client()).await;
        Self {
            server,
            log,
            _data: data,
        }
    }

    fn base(&self) -> &str {
        &self.server.base
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit (bounded) and returns the logs.
    async fn terminate(mut self) -> String {
        let child = &mut self.server.child;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("the child's status") {
                assert!(status.success(), "serve exited with {status}");
                return self.logs();
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("random bytes");
    hex::encode(buffer)
}

/// `GET /v1/metrics` with a date that is not one: a problem document, sent with `traceparent`
/// when one is given.
async fn refused_query(client: &reqwest::Client, base: &str, traceparent: Option<&str>) -> Value {
    let mut request = client.get(format!("{base}/v1/metrics?from=2024-13-01"));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.expect("the server answers");
    assert!(response.status().is_client_error(), "{response:?}");
    response.json().await.expect("a problem document")
}

fn is_trace_id(value: &Value) -> bool {
    value.as_str().is_some_and(|id| {
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

#[tokio::test]
async fn a_problem_document_its_log_line_and_its_exported_span_share_the_callers_trace_id() {
    let collector = Collector::start().await;
    let mut command = clean_command();
    command
        .env("FILIERA_OTLP_ENDPOINT", &collector.endpoint)
        // One line per request (tower-http's), so that the request's trace id is logged.
        .env("FILIERA_LOG", "info,sqlx=warn,tower_http=debug")
        // Nothing leaves before the shutdown: the spans reach the collector only if the exit
        // flushes them.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    let serve = Serve::start(command).await;
    let client = client();

    let trace_id = random_hex(16);
    let caller_span = random_hex(8);
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let joined = refused_query(&client, serve.base(), Some(&traceparent)).await;
    assert_eq!(joined["code"], "invalid_field", "{joined}");
    assert_eq!(joined["trace_id"], trace_id.as_str(), "{joined}");

    let started = refused_query(&client, serve.base(), None).await;
    assert!(is_trace_id(&started["trace_id"]), "{started}");
    assert_ne!(started["trace_id"], trace_id.as_str());
    let started_id = started["trace_id"].as_str().expect("a trace id").to_owned();

    assert!(
        collector.trace(&trace_id).is_empty(),
        "spans left before the shutdown although the batch delay is ten minutes"
    );
    let logs = serve.terminate().await;
    for id in [&trace_id, &started_id] {
        assert!(
            logs.lines()
                .any(|line| line.contains(&format!("trace_id={id}"))),
            "no log line names trace {id}:\n{logs}"
        );
    }

    let joined_spans = collector.trace(&trace_id);
    let request = joined_spans
        .iter()
        .find(|span| span.name == "request")
        .unwrap_or_else(|| panic!("no request span of the caller's trace: {joined_spans:?}"));
    assert_eq!(request.service, "filiera");
    assert_eq!(
        request.parent_span_id, caller_span,
        "the request span is not the caller's child"
    );
    assert!(
        request
            .attributes
            .contains(&("path".to_owned(), "/v1/metrics".to_owned())),
        "{request:?}"
    );
    let started_spans = collector.trace(&started_id);
    assert!(
        started_spans
            .iter()
            .any(|span| span.name == "request" && span.parent_span_id.is_empty()),
        "no root request span for the trace the server started: {started_spans:?}"
    );
}

#[tokio::test]
async fn without_an_endpoint_problem_documents_still_carry_trace_ids() {
    // The suite's usual FILIERA_LOG=warn: no request span is logged, yet every request has one.
    let serve = Serve::start(clean_command()).await;
    let trace_id = random_hex(16);
    let document = refused_query(
        &client(),
        serve.base(),
        Some(&format!("00-{trace_id}-{}-00", random_hex(8))),
    )
    .await;
    assert_eq!(document["trace_id"], trace_id.as_str(), "{document}");
    let document = refused_query(&client(), serve.base(), Some("00-not-a-traceparent")).await;
    assert!(is_trace_id(&document["trace_id"]), "{document}");
}

#[tokio::test]
async fn an_otlp_endpoint_that_is_not_a_url_stops_the_start_by_name() {
    let data = tempfile::tempdir().expect("a data folder");
    let mut command = tokio::process::Command::from(clean_command());
    command
        .env("FILIERA_OTLP_ENDPOINT", "collector:4318")
        .env("FILIERA_DATA_DIR", data.path())
        .arg("serve")
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("serve stopped at once instead of running")
        .expect("filiera runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FILIERA_OTLP_ENDPOINT"), "{stderr}");
}
