//! [`RelayMetrics`]: the relay's Prometheus series, registered in the caller's registry.

use prometheus::{IntCounter, IntGauge, Registry};

/// The relay's Prometheus series (docs/events.md, "Metrics").
#[derive(Clone)]
pub(crate) struct RelayMetrics {
    /// `filiera_relay_lag_events`: feed events not yet published (head − checkpoint).
    pub(crate) lag: IntGauge,
    /// `filiera_relay_position`: the checkpoint.
    pub(crate) position: IntGauge,
    /// `filiera_relay_published_total`: messages this process published and saw acknowledged.
    pub(crate) published: IntCounter,
    /// `filiera_relay_publish_errors_total`: failed publish attempts (and failed sessions).
    pub(crate) errors: IntCounter,
    /// `filiera_relay_leader`: 1 while this process runs the relay.
    pub(crate) leader: IntGauge,
}

impl RelayMetrics {
    /// Creates the series and registers them in `registry`.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            lag: IntGauge::new(
                "filiera_relay_lag_events",
                "Feed events not yet published to NATS JetStream (feed head minus relay checkpoint).",
            )?,
            position: IntGauge::new(
                "filiera_relay_position",
                "Global feed position of the last event published to NATS JetStream and acknowledged.",
            )?,
            published: IntCounter::new(
                "filiera_relay_published_total",
                "Events this process published to NATS JetStream and saw acknowledged.",
            )?,
            errors: IntCounter::new(
                "filiera_relay_publish_errors_total",
                "Failed attempts to publish to NATS JetStream (each is retried with backoff).",
            )?,
            leader: IntGauge::new(
                "filiera_relay_leader",
                "1 while this process is the one running the NATS relay, else 0.",
            )?,
        };
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.position.clone()))?;
        registry.register(Box::new(metrics.published.clone()))?;
        registry.register(Box::new(metrics.errors.clone()))?;
        registry.register(Box::new(metrics.leader.clone()))?;
        Ok(metrics)
    }
}
