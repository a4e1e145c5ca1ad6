//! The benchmark behind `filiera bench` and `cargo bench -p filiera-bench`: how fast the read
//! model answers, against the naive approach of replaying raw events per query. A crate of its
//! own so that the production crates carry neither it nor its temporary files.
//!
//! 1. **Queries over a million events**, in memory: random but realistic histories (enrolments,
//!    entries, progressions, reiterations, regressions, exits, transfers, closures, reopenings,
//!    undos) written by the real aggregate, digested into one [`filiera_domain::Timeline`] per
//!    beneficiary — what the query cache holds — then folded for a region, the whole country,
//!    one ambito, a past `known_at`, and the audit list. The **baseline** is the same fold preceded by
//!    rebuilding the timelines from the raw events, as a per-query replay must.
//! 2. **On a real store** (a temporary SQLite file; a scratch PostgreSQL database when an admin
//!    URL is given): the runner's catch-up throughput from position 0, the offline replay's
//!    feed read, an end-to-end query through [`filiera_projections::Projections`], and the
//!    query cache's full load of every timeline of part 1 (written as a generation, as a
//!    rebuild would).
//!
//! Every figure is the median of several runs. To seed the store quickly, the generated events
//! are appended in bulk with [`filiera_store::Store::append_recorded`] (the store's triggers
//! still assign positions); the runner then reads them through
//! [`filiera_store::Store::read_feed`] like any other.
//!
//! # Layout
//! - this file: [`BenchOptions`], [`bench`] and the in-memory figures, [`BenchReport`].
//! - [`generate`]: the generated histories, reproducible from a seed (also `filiera generate`).
//! - `stores`: the figures on real stores (writes, catch-up, replay, cache load), on a
//!   temporary SQLite file and on scratch PostgreSQL databases (from `filiera-testkit`).
//! - `report`: timing, the machine, and the Markdown report.
//! - `error`: [`BenchError`].

mod error;
pub mod generate;
mod report;
pub mod scenarios;
mod stores;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use filiera_domain::{
    AuditQuery, MetricsQuery, TerritoryCode, reiteration_audit, territory_metrics,
};
use filiera_projections::Replay;
use serde::Serialize;

pub use error::BenchError;

use generate::{Territories, bench_services, generate};
use report::{approx_heap_bytes, measure, per_second};
use stores::{connect, scratch_database, store_bench, write_bench};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Events generated for the in-memory part (about five per beneficiary).
    pub events: usize,
    /// Runs per measurement; the median is reported.
    pub runs: usize,
    /// Events written to each real store for the runner and end-to-end figures (0: skip).
    pub store_events: usize,
    /// Measure on a temporary SQLite file.
    pub sqlite: bool,
    /// Measure on PostgreSQL too: a scratch database is created through this admin URL and
    /// dropped afterwards.
    pub postgres_admin_url: Option<String>,
    /// Load every generated timeline into each store and time the query cache's full load.
    pub cache_load: bool,
    /// Seed of the generator: the same seed generates the same histories.
    pub seed: u64,
    /// Commands written through `Store::execute` for the write-path figures (0: skip).
    pub write_commands: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            events: 1_000_000,
            runs: 5,
            store_events: 50_000,
            sqlite: true,
            postgres_admin_url: None,
            cache_load: true,
            seed: 20_250_630,
            write_commands: 4_000,
        }
    }
}

/// The figures, printable as Markdown.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The machine the figures were taken on.
    pub machine: Machine,
    /// Events and beneficiaries generated for the in-memory part.
    pub events: usize,
    pub beneficiaries: usize,
    pub lines: Vec<BenchLine>,
}

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct BenchLine {
    /// What was measured.
    pub name: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
    /// A derived figure (a throughput) or a remark.
    pub note: String,
}

/// Where the figures come from.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub os: String,
    pub sqlite: Option<String>,
    pub postgres: Option<String>,
    /// `release` or `debug`: only release figures mean anything.
    pub profile: &'static str,
}

/// Runs the benchmark, calling `progress` with a line before each part.
pub async fn bench(
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let runs = options.runs.max(1);
    let services = bench_services();
    let (catalogue, registry) = (
        Arc::clone(&services.catalogue),
        Arc::clone(&services.territories),
    );
    let mut lines = Vec::new();

    progress(&format!("generating about {} events", options.events));
    let started = Instant::now();
    let histories = generate(options.events, options.seed, &services, &Territories::Bench).await;
    let events: usize = histories.iter().map(|h| h.events.len()).sum();
    let beneficiaries = histories.len();
    progress(&format!(
        "generated {events} events for {beneficiaries} beneficiaries in {:.1} s",
        started.elapsed().as_secs_f64()
    ));

    progress("digesting the events into timelines");
    let build = || {
        let mut replay = Replay::default();
        for history in &histories {
            for event in &history.events {
                replay.apply(history.id.clone(), event);
            }
        }
        replay
    };
    let (timing, replay) = measure(runs.min(3), &build);
    let timelines = replay.timelines();
    lines.push(timing.line(
        &format!("timelines built from {events} raw events (offline replay, in memory)"),
        format!(
            "{}; the map takes about {} MiB",
            per_second(events, timing.median),
            approx_heap_bytes(timelines) / (1024 * 1024)
        ),
    ));

    let period = |territory: Option<&str>, known_at: DateTime<Utc>| MetricsQuery {
        territory: territory.map(|t| TerritoryCode::parse(t).expect("a territory code")),
        from: date("2024-01-01"),
        to: date("2025-06-30"),
        known_at,
        threshold: 2,
    };
    let now = Utc::now();
    let past: DateTime<Utc> = "2024-09-30T12:00:00Z".parse().expect("an instant");
    let cases = [
        ("metrics, region (LOM)", period(Some("LOM"), now)),
        ("metrics, national (no territory)", period(None, now)),
        (
            "metrics, one ambito (LOM-MI-MILANO)",
            period(Some("LOM-MI-MILANO"), now),
        ),
        (
            "metrics, region, known_at in the past",
            period(Some("LOM"), past),
        ),
    ];
    progress("folding metrics from the cached timelines");
    for (name, query) in &cases {
        let (timing, metrics) = measure(runs, || {
            territory_metrics(timelines.values(), query, &catalogue, &registry)
        });
        let note = format!(
            "{} enrolments, {} stage entries in scope",
            metrics.enrolments,
            metrics
                .transition_matrix
                .iter()
                .map(|c| c.count)
                .sum::<u64>()
        );
        lines.push(timing.line(&format!("{name}, {beneficiaries} timelines cached"), note));
    }
    let audit = AuditQuery::from(&cases[0].1);
    let (timing, list) = measure(runs, || {
        reiteration_audit(timelines.values(), &audit, &catalogue, &registry)
    });
    lines.push(timing.line(
        "audit list, region (LOM)",
        format!("{} flagged beneficiaries", list.beneficiaries.len()),
    ));

    lines.extend(views_bench(
        timelines,
        runs,
        &catalogue,
        &registry,
        &mut progress,
    ));

    progress("baseline: replaying the raw events for each query");
    let (timing, _) = measure(runs.min(3), || {
        let replay = build();
        territory_metrics(
            replay.timelines().values(),
            &cases[0].1,
            &catalogue,
            &registry,
        )
    });
    lines.push(
        timing.line(
            "baseline: metrics, region, replaying the raw events per query (in memory)",
            "timelines rebuilt from the events, then the same fold; a real replay also reads and \
         decodes every event from the store (see the feed read below)"
                .to_owned(),
        ),
    );

    let mut machine = Machine::probe();
    if options.store_events > 0 || options.cache_load || options.write_commands > 0 {
        if options.sqlite {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            progress("SQLite: seeding the store");
            let store = connect(&url, &services).await?;
            machine.sqlite = Some(store.server_version().await?);
            // The write figures get a file of their own, so that their events do not swell the
            // store the read figures are taken on.
            let writes = format!("sqlite://{}", dir.path().join("writes.db").display());
            lines.extend(write_bench("SQLite", &writes, &services, options, &mut progress).await?);
            lines.extend(
                store_bench(
                    "SQLite",
                    &store,
                    &histories,
                    timelines,
                    options,
                    &mut progress,
                )
                .await?,
            );
        }
        if let Some(admin) = &options.postgres_admin_url {
            // Both scratch databases are dropped (with their connections) when they go, on
            // failure too.
            let db = scratch_database(admin).await?;
            progress("PostgreSQL: seeding the store");
            let store = connect(&db.url, &services).await?;
            machine.postgres = Some(store.server_version().await?);
            let writes = {
                let writes_db = scratch_database(admin).await?;
                write_bench(
                    "PostgreSQL",
                    &writes_db.url,
                    &services,
                    options,
                    &mut progress,
                )
                .await?
            };
            lines.extend(writes);
            lines.extend(
                store_bench(
                    "PostgreSQL",
                    &store,
                    &histories,
                    timelines,
                    options,
                    &mut progress,
                )
                .await?,
            );
            drop(store);
            drop(db);
        }
    }
    Ok(BenchReport {
        machine,
        events,
        beneficiaries,
        lines,
    })
}

/// The series, breakdown and scorecard (SPEC 3.1, 3.2) against a single metrics query, each
/// folded in one pass, and the naive way (one fold per month or child) as their baseline.
fn views_bench(
    timelines: &std::collections::HashMap<String, filiera_domain::Timeline>,
    runs: usize,
    catalogue: &filiera_domain::StageCatalogue,
    registry: &filiera_domain::TerritoryRegistry,
    progress: &mut impl FnMut(&str),
) -> Vec<BenchLine> {
    use filiera_domain::metrics::series::{breakdown_queries, series_queries};
    use filiera_domain::{provider_scorecard, territory_metrics_many};
    progress("series, breakdown and scorecard");
    let query = |territory: &str, from: &str| MetricsQuery {
        territory: TerritoryCode::parse(territory),
        from: date(from),
        to: date("2025-06-30"),
        known_at: Utc::now(),
        threshold: 2,
    };
    let mut lines = Vec::new();
    let single = |q: &MetricsQuery| {
        measure(runs, || {
            territory_metrics(timelines.values(), q, catalogue, registry)
        })
        .0
    };
    let many = |qs: &[MetricsQuery], runs: usize| {
        measure(runs, || {
            territory_metrics_many(timelines.values(), qs, catalogue, registry)
        })
        .0
    };
    let naive = |qs: &[MetricsQuery]| {
        measure(1, || {
            qs.iter()
                .map(|q| territory_metrics(timelines.values(), q, catalogue, registry))
                .collect::<Vec<_>>()
        })
        .0
    };

    let lom = query("LOM", "2023-07-01");
    let months = series_queries(&lom);
    let base = single(&lom);
    lines.push(base.line(
        "metrics, region (LOM), 24 months as one period",
        "the budget of the two lines below: × 3".to_owned(),
    ));
    lines.push(many(&months, runs).line(
        "series, region (LOM), 24 months, one pass",
        format!("{} documents folded together", months.len()),
    ));
    lines.push(naive(&months).line(
        "baseline: series, region (LOM), 24 separate folds",
        "one fold per month (one run)".to_owned(),
    ));

    let synthetic = query(generate::SYNTHETIC, "2024-01-01");
    let children = breakdown_queries(&synthetic, registry);
    lines.push(single(&synthetic).line(
        "metrics, synthetic region (SYN, 600 ambiti)",
        "the budget of the two lines below: × 3".to_owned(),
    ));
    lines.push(many(&children, runs).line(
        "breakdown, synthetic region, 600 ambiti, one pass",
        format!("{} documents folded together", children.len()),
    ));
    lines.push(naive(&children).line(
        "baseline: breakdown, synthetic region, 600 separate folds",
        "one fold per ambito (one run)".to_owned(),
    ));

    let region = query("LOM", "2024-01-01");
    let (timing, card) = measure(runs, || {
        provider_scorecard(timelines.values(), &region, catalogue, registry)
    });
    lines.push(timing.line(
        "provider scorecard, region (LOM)",
        format!("{} providers", card.providers.len()),
    ));
    lines
}

/// A date of the generated histories and queries.
pub(crate) fn date(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}
