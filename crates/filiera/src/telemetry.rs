//! Logs and traces: `tracing` to standard error, filtered by `FILIERA_LOG`, and the same spans
//! as OpenTelemetry spans, exported over OTLP/HTTP when `otlp_endpoint` is set.
//!
//! The OpenTelemetry layer is installed even without an endpoint, and sees the spans of level
//! `info` and above whatever `FILIERA_LOG` says: it gives every request span a W3C trace id (the caller's, from a `traceparent` header, or a new one), which the HTTP layer
//! writes into the request's log lines and into its problem documents. Without an endpoint the
//! spans end there; with one, a batch processor on its own thread sends them to
//! `{otlp_endpoint}/v1/traces`.

use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The `service.name` of exported spans unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "filiera";

/// How long the exit waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The installed telemetry: keep it until the process exits; dropping it sends the spans still
/// buffered (waiting up to 5 s for the collector) and stops the exporter.
#[must_use = "dropping it at once stops the export"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if !self.exporting {
            return;
        }
        if let Err(error) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!(%error, "the last spans could not be exported");
        }
    }
}

/// Installs the global subscriber with the given log filter (e.g. `info,sqlx=warn`), exporting
/// spans to the OTLP/HTTP collector at `otlp_endpoint` (its base URL) when one is given.
pub fn init(filter: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("FILIERA_LOG `{filter}` is not a valid tracing filter"))?;
    let mut provider = SdkTracerProvider::builder().with_resource(resource());
    if let Some(endpoint) = otlp_endpoint {
        provider = provider.with_batch_exporter(exporter(endpoint)?);
    }
    let provider = provider.build();
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_filter(filter);
    // Spans whatever FILIERA_LOG says, so that every request has a trace id; warnings and
    // errors become events of the span they happen in.
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|metadata| {
            let level = *metadata.level();
            level <= Level::INFO && (metadata.is_span() || level <= Level::WARN)
        }));
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    Ok(Telemetry {
        provider,
        exporting: otlp_endpoint.is_some(),
    })
}

/// `service.name` (`OTEL_SERVICE_NAME`, default `filiera`) and `service.version`.
fn resource() -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| SERVICE_NAME.to_owned());
    Resource::builder_empty()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The OTLP/HTTP (protobuf) span exporter to `{endpoint}/v1/traces`.
fn exporter(endpoint: &str) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let url = traces_url(endpoint)?;
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.as_str())
        .build()
        .with_context(|| format!("FILIERA_OTLP_ENDPOINT `{endpoint}`: no OTLP exporter"))
}

/// The traces URL of an OTLP/HTTP base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` reads it.
pub fn traces_url(endpoint: &str) -> anyhow::Result<reqwest::Url> {
    let endpoint = endpoint.trim();
    let parsed = reqwest::Url::parse(endpoint).with_context(|| {
        format!("FILIERA_OTLP_ENDPOINT `{endpoint}` is not a URL (e.g. http://collector:4318)")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        anyhow::bail!(
            "FILIERA_OTLP_ENDPOINT `{endpoint}` must be an http:// or https:// URL with a host \
             (e.g. http://collector:4318)"
        );
    }
    let mut url = parsed;
    url.set_path(&format!("{}/v1/traces", url.path().trim_end_matches('/')));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_traces_path_is_appended_to_the_base_url() {
        assert_eq!(
            traces_url("http://collector:4318").unwrap().as_str(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example.org/base/")
                .unwrap()
                .as_str(),
            "https://otel.example.org/base/v1/traces"
        );
    }

    #[test]
    fn an_endpoint_that_is_not_an_http_url_is_refused_by_name() {
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "not a url",
        ] {
            let error = traces_url(bad).unwrap_err().to_string();
            assert!(error.contains("FILIERA_OTLP_ENDPOINT"), "{bad}: {error}");
        }
    }
}
