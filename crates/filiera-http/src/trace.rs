//! The W3C trace context of a request: its span takes the caller's trace from a `traceparent`
//! header (or starts one), and its trace id goes into the request's log lines (the span's
//! `trace_id` field) and into its problem documents, so that a user quoting an error and an
//! operator reading logs or a tracing backend point at the same request.
//!
//! The ids come from the OpenTelemetry layer the binary installs (`filiera::telemetry`); where
//! none is installed (in-process tests), requests simply have no trace id.

use axum::http::{HeaderMap, Request};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The span of one request, child of the caller's trace when it sent a valid `traceparent`.
pub(crate) fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    let caller = TraceContextPropagator::new().extract(&Headers(request.headers()));
    if caller.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started: then it has no trace to
        // join anyway.
        let _ = span.set_parent(caller);
    }
    if let Some(trace_id) = trace_id(&span) {
        span.record("trace_id", tracing::field::display(&trace_id));
    }
    span
}

/// The trace id of the request being served, as 32 lowercase hex digits.
pub(crate) fn current_trace_id() -> Option<String> {
    trace_id(&tracing::Span::current())
}

fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Request headers as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}
