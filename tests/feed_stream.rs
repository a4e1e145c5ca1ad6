//! `GET /v1/events/stream`: the feed as server-sent events, live and resumable.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app};

filiera_testkit::on_both_backends!(
    stream_delivers_history_then_live_events,
    stream_resumes_after_last_event_id,
    stream_filters_by_territory_and_type,
    stream_carries_needs_assessments,
);

/// A server-sent event: its id and JSON data.
#[derive(Debug)]
struct Sse {
    id: i64,
    data: Value,
}

/// Reads SSE frames from a response, skipping comments (keep-alives).
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Self {
        let mut request = app
            .client
            .get(format!("{}/v1/events/stream{query}", app.address));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.expect("stream");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event, failing the test if none arrives within a few seconds.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(Duration::from_secs(10), self.next_inner())
            .await
            .expect("an event within 10 s")
    }

    async fn next_inner(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().expect("numeric id"));
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return Sse {
                        id,
                        data: serde_json::from_str(&data).expect("JSON data"),
                    };
                }
                continue;
            }
            let chunk = self.body.next().await.expect("stream open").expect("chunk");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn stream_delivers_history_then_live_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let mut stream = SseReader::open(&app, "", None).await;
    let first = stream.next().await;
    assert_eq!(first.data["type"], "Enrolled");
    assert_eq!(first.data["beneficiary_id"], a.as_str());
    assert_eq!(first.id, first.data["position"].as_i64().unwrap());

    // Written after the subscription: arrives live, in feed order.
    app.enter(&a, "socio_occupational", "2024-01-15").await;
    app.enter(&a, "internship", "2024-03-01").await;
    let kinds: Vec<_> = [
        stream.next().await,
        stream.next().await,
        stream.next().await,
    ]
    .into_iter()
    .map(|e| {
        assert!(e.id > first.id);
        e.data["type"].as_str().unwrap().to_owned()
    })
    .collect();
    assert_eq!(kinds, ["StageEntered", "StageExited", "StageEntered"]);
}

async fn stream_resumes_after_last_event_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&a, "internship", "2024-02-01").await;
    app.enter(&a, "job_placement", "2024-03-01").await;
    let feed = app.whole_feed().await;
    let second = feed[1]["position"].as_i64().unwrap();

    let mut resumed = SseReader::open(&app, "?after=0", Some(second)).await;
    let next = resumed.next().await;
    assert_eq!(next.id, feed[2]["position"].as_i64().unwrap());
    assert_eq!(next.data, feed[2]);

    let mut by_query = SseReader::open(&app, &format!("?after={second}"), None).await;
    assert_eq!(by_query.next().await.data, feed[2]);

    let bad = app.get("/v1/events/stream?after=-3").await;
    assert_eq!(bad.problem(422, "invalid_field")["field"], "after");
    let bad = app
        .client
        .get(format!("{}/v1/events/stream", app.address))
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
}

async fn stream_filters_by_territory_and_type(backend: Backend) {
    let app = spawn_app(backend).await;
    let bergamo = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    let torino = app.enrol("PIE-TO-TORINO", "2024-01-10").await;
    app.enter(&torino, "internship", "2024-02-01").await;
    app.enter(&bergamo, "internship", "2024-02-01").await;

    let mut lombardy = SseReader::open(&app, "?territory=LOM&type=stage_entered", None).await;
    let event = lombardy.next().await;
    assert_eq!(event.data["type"], "StageEntered");
    assert_eq!(event.data["beneficiary_id"], bergamo.as_str());

    app.enter(&torino, "job_placement", "2024-03-01").await;
    app.enter(&bergamo, "job_placement", "2024-03-01").await;
    let event = lombardy.next().await;
    assert_eq!(event.data["beneficiary_id"], bergamo.as_str());
    assert_eq!(event.data["data"]["stage"], "job_placement");

    let unknown = app.get("/v1/events/stream?territory=ATLANTIS").await;
    assert_eq!(
        unknown.problem(422, "unknown_territory")["field"],
        "territory"
    );
    let unknown = app.get("/v1/events/stream?type=Exploded").await;
    assert_eq!(unknown.problem(422, "invalid_field")["field"], "type");
}

/// A needs assessment streams like any event, and can be picked by its type (SPEC 2.5).
async fn stream_carries_needs_assessments(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.enrol("LOM-BG-BERGAMO", "2024-01-10").await;
    app.enter(&id, "internship", "2024-02-01").await;

    let mut assessments = SseReader::open(&app, "?type=needs_assessed", None).await;
    let answer = app
        .post(
            &format!("/v1/beneficiaries/{id}/assessment"),
            serde_json::json!({"on": "2024-02-02", "kind": "review", "occupability": "high",
                               "team": ["employment_centre"]}),
        )
        .await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    let event = assessments.next().await;
    assert_eq!(event.data["type"], "NeedsAssessed");
    assert_eq!(event.data["beneficiary_id"], id.as_str());
    assert_eq!(event.data["territory"], "LOM-BG-BERGAMO");
    assert_eq!(
        event.data["data"],
        serde_json::json!({"on": "2024-02-02", "kind": "review", "occupability": "high",
                           "team": ["employment_centre"]})
    );
    assert_eq!(event.id, event.data["position"].as_i64().unwrap());
}
