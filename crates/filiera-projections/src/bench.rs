//! The benchmark behind `filiera bench` and `cargo bench -p filiera-projections`: how fast the
//! read model answers, against the naive approach of replaying raw events per query.
//!
//! 1. **Queries over a million events**, in memory: random but realistic histories (enrolments,
//!    entries, progressions, reiterations, regressions, exits, transfers, closures, reopenings,
//!    undos) written by the real aggregate, digested into one [`Timeline`] per beneficiary —
//!    what the query cache holds — then folded for a region, the whole country, one ambito, a
//!    past `known_at`, and the audit list. The **baseline** is the same fold preceded by
//!    rebuilding the timelines from the raw events, as a per-query replay must.
//! 2. **On a real store** (a temporary SQLite file; a scratch PostgreSQL database when an admin
//!    URL is given): the runner's catch-up throughput from position 0, the offline replay's
//!    feed read, an end-to-end query through [`crate::Projections`], and the query cache's full
//!    load of every timeline of part 1 (written as a generation, as a rebuild would).
//!
//! Every figure is the median of several runs. To seed the store quickly, the generated events
//! are inserted straight into the store's `events` table in the shape its cqrs-es adapters
//! write (the store's triggers still assign positions); the runner then reads them through
//! [`filiera_store::Store::read_feed`] like any other.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate as _, DomainEvent as _};
use filiera_domain::{
    AuditQuery, CloseOutcome, ExitOutcome, FixedClock, MetricsQuery, Pathway, PathwayCommand,
    PathwayServices, PathwayStatus, RecordedEvent, Referral, StageCatalogue, TerritoryCode,
    TerritoryRegistry, Timeline, reiteration_audit, territory_metrics,
};
use filiera_store::{Store, StoreOptions};
use serde::Serialize;
use sqlx::{Connection as _, Executor as _, PgConnection};
use uuid::Uuid;

use crate::cache::{Freshness, TimelineCache};
use crate::read_model::ReadModel;
use crate::runner::Runner;
use crate::{ProjectionError, ProjectionSettings, Projections, Replay, TERRITORY_METRICS};

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
) -> Result<BenchReport, ProjectionError> {
    let runs = options.runs.max(1);
    let services = bench_services();
    let (catalogue, registry) = (
        Arc::clone(&services.catalogue),
        Arc::clone(&services.territories),
    );
    let mut lines = Vec::new();

    progress(&format!("generating about {} events", options.events));
    let started = Instant::now();
    let histories = generate(options.events, options.seed, &services).await;
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
            machine.sqlite = Some(sqlx_version(&store).await?);
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
            let db = ScratchDb::create(admin).await?;
            progress("PostgreSQL: seeding the store");
            let result = async {
                let store = connect(&db.url, &services).await?;
                machine.postgres = Some(sqlx_version(&store).await?);
                let writes_db = ScratchDb::create(admin).await?;
                let writes = write_bench(
                    "PostgreSQL",
                    &writes_db.url,
                    &services,
                    options,
                    &mut progress,
                )
                .await;
                writes_db.drop_database().await;
                let mut writes = writes?;
                writes.extend(
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
                Ok::<_, ProjectionError>(writes)
            }
            .await;
            db.drop_database().await;
            lines.extend(result?);
        }
    }
    Ok(BenchReport {
        machine,
        events,
        beneficiaries,
        lines,
    })
}

/// The write path: commands through [`Store::execute`] (load, decide, commit with the
/// commit-order-safe position), by one writer and by eight concurrent writers on distinct
/// beneficiaries, in a scratch stream family of the store at `url`.
async fn write_bench(
    backend: &str,
    url: &str,
    services: &PathwayServices,
    options: &BenchOptions,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<BenchLine>, ProjectionError> {
    let mut lines = Vec::new();
    if options.write_commands == 0 {
        return Ok(lines);
    }
    let store = Store::connect_with(
        url,
        services.clone(),
        StoreOptions {
            max_connections: 10,
            ..StoreOptions::default()
        },
    )
    .await?;
    store.migrate().await?;
    crate::migrate(&store.database()).await?;
    for writers in [1usize, 8] {
        progress(&format!(
            "{backend}: {} commands by {writers} writer(s)",
            options.write_commands
        ));
        let per_writer = options.write_commands / writers;
        let head = store.head().await?;
        let started = Instant::now();
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { write_commands(&store, per_writer).await })
            })
            .collect();
        let mut commands = 0;
        for task in tasks {
            commands += task.await??;
        }
        let elapsed = started.elapsed();
        let events = store.read_feed(head, u32::MAX).await?.len();
        lines.push(Timing::of(vec![elapsed]).line(
            &format!("{backend}: writes, {commands} commands by {writers} concurrent writer(s)"),
            format!(
                "{}; {} events/s; each command: load the stream, decide, commit",
                per_second(commands, elapsed).replace("events", "commands"),
                (events as f64 / elapsed.as_secs_f64()).round()
            ),
        ));
    }
    Ok(lines)
}

/// Writes `count` commands: enrolments each followed by three stage entries.
async fn write_commands(store: &Store, count: usize) -> Result<usize, ProjectionError> {
    let ctx = || filiera_store::CommandContext::new("bench");
    let mut written = 0;
    let mut beneficiary = Uuid::new_v4();
    while written < count {
        let command = match written % 4 {
            0 => {
                beneficiary = Uuid::new_v4();
                PathwayCommand::Enrol {
                    territory: "LOM-BG-BERGAMO".into(),
                    on: date("2024-01-10"),
                    referral: Referral::SocialServices,
                    support_band: None,
                }
            }
            n => PathwayCommand::EnterStage {
                stage: ["socio_occupational", "internship", "job_placement"][n - 1].into(),
                on: date("2024-02-01"),
                provider: None,
            },
        };
        match store.execute(beneficiary, command, ctx()).await? {
            Ok(_) => written += 1,
            Err(rejection) => {
                return Err(ProjectionError::Corrupt(format!(
                    "bench command refused: {rejection:?}"
                )));
            }
        }
    }
    Ok(written)
}

/// The store figures for one backend.
async fn store_bench(
    backend: &str,
    store: &Store,
    histories: &[History],
    timelines: &HashMap<String, Timeline>,
    options: &BenchOptions,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<BenchLine>, ProjectionError> {
    let runs = options.runs.max(1);
    let mut lines = Vec::new();
    let settings = ProjectionSettings::from_services(store.services(), 2);
    let model = ReadModel::new(store);
    if options.store_events > 0 {
        let seeded = seed(store, histories, options.store_events).await?;
        progress(&format!("{backend}: {seeded} events seeded; catching up"));

        // The first run catches the active generation up; the others rebuild from position 0.
        let mut catch_up = Vec::new();
        for run in 0..runs {
            let mut runner = Runner::new(store, TERRITORY_METRICS, settings.batch_size)?;
            if run > 0 && model.start_rebuild(TERRITORY_METRICS).await?.is_err() {
                return Err(ProjectionError::Corrupt("a rebuild was left over".into()));
            }
            let started = Instant::now();
            loop {
                let step = runner.step().await?;
                if (run == 0 && !step.more_to_do()) || step.swapped.is_some() {
                    break;
                }
            }
            catch_up.push(started.elapsed());
            while runner.step().await?.purged > 0 {}
        }
        let timing = Timing::of(catch_up);
        lines.push(timing.line(
            &format!(
                "{backend}: runner catch-up from position 0, {seeded} events, batches of {}",
                settings.batch_size
            ),
            per_second(seeded, timing.median),
        ));

        let mut reads = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            Replay::load(store).await?;
            reads.push(started.elapsed());
        }
        let timing = Timing::of(reads);
        lines.push(timing.line(
            &format!("{backend}: offline replay of {seeded} events (feed read + timelines)"),
            format!(
                "{}; extrapolated to {} events: {:.1} s per query for the naive replay",
                per_second(seeded, timing.median),
                timelines.values().map(|t| t.entries().len()).sum::<usize>(),
                timing.median.as_secs_f64() / seeded as f64
                    * timelines.values().map(|t| t.entries().len()).sum::<usize>() as f64
            ),
        ));

        let projections = Projections::start(store.clone(), settings.clone()).await?;
        projections
            .wait_until_caught_up(Duration::from_secs(600))
            .await?;
        let query = MetricsQuery {
            territory: TerritoryCode::parse("LOM"),
            from: date("2024-01-01"),
            to: date("2025-06-30"),
            known_at: Utc::now(),
            threshold: 2,
        };
        let mut queries = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            projections.metrics(query.clone()).await?;
            queries.push(started.elapsed());
        }
        projections.shutdown().await;
        lines.push(Timing::of(queries).line(
            &format!("{backend}: metrics, region, end to end through Projections"),
            "cache refresh (one statement) + fold, store of the line above".to_owned(),
        ));
    }
    if options.cache_load {
        progress(&format!(
            "{backend}: writing {} timelines as a generation",
            timelines.len()
        ));
        let written = load_generation(store, &model, timelines).await?;
        lines.push(Timing::of(vec![written]).line(
            &format!(
                "{backend}: writing {} timelines into a new generation",
                timelines.len()
            ),
            format!(
                "{} rows/s, in transactions of 5,000 rows",
                (timelines.len() as f64 / written.as_secs_f64()).round()
            ),
        ));
        progress(&format!("{backend}: loading the query cache"));
        let mut loads = Vec::new();
        for _ in 0..runs.min(3) {
            let cache = Arc::new(TimelineCache::new(TERRITORY_METRICS, model.clone()));
            let started = Instant::now();
            cache.refresh(Freshness::Current).await?;
            loads.push(started.elapsed());
            let loaded = cache.read(|state| state.timelines.len()).await?;
            if loaded != timelines.len() {
                return Err(ProjectionError::Corrupt(format!(
                    "{loaded} timelines loaded, {} written",
                    timelines.len()
                )));
            }
        }
        lines.push(
            Timing::of(loads).line(
                &format!(
                    "{backend}: query cache full load, {} timelines",
                    timelines.len()
                ),
                "at start-up and after a rebuild's swap; queries meanwhile answer from the old map"
                    .to_owned(),
            ),
        );

        // The API's path over the million events: a handle whose cache holds that generation.
        let projections = Projections::start(store.clone(), settings.clone()).await?;
        let query = |territory: &str| MetricsQuery {
            territory: TerritoryCode::parse(territory),
            from: date("2024-01-01"),
            to: date("2025-06-30"),
            known_at: Utc::now(),
            threshold: 2,
        };
        projections.metrics(query("LOM")).await?;
        for territory in ["LOM", "LOM-MI-MILANO"] {
            let mut samples = Vec::new();
            for _ in 0..runs {
                let started = Instant::now();
                projections.metrics(query(territory)).await?;
                samples.push(started.elapsed());
            }
            lines.push(Timing::of(samples).line(
                &format!(
                    "{backend}: metrics, {territory}, end to end through Projections, {} timelines",
                    timelines.len()
                ),
                "what `GET /v1/metrics` costs over the million events, minus HTTP".to_owned(),
            ));
        }
        projections.shutdown().await;
    }
    Ok(lines)
}

/// Writes every timeline into a new generation, swapped in as the active one, with the
/// runner's own batch statement; returns how long the writes took.
async fn load_generation(
    store: &Store,
    model: &ReadModel,
    timelines: &HashMap<String, Timeline>,
) -> Result<Duration, ProjectionError> {
    model.initialize(TERRITORY_METRICS).await?;
    let generation = match model.start_rebuild(TERRITORY_METRICS).await? {
        Ok(generation) => generation,
        Err(_) => return Err(ProjectionError::Corrupt("a rebuild was left over".into())),
    };
    let active = model
        .generations(TERRITORY_METRICS)
        .await?
        .active
        .ok_or_else(|| ProjectionError::Corrupt("no active generation".into()))?;
    // Checkpoints past the real head, so that the swap accepts the generation.
    let mut position = active.position.max(store.head().await?);
    let mut old = 0;
    let rows: Vec<(String, String)> = timelines
        .iter()
        .map(|(id, t)| crate::read_model::encode(id, t))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for chunk in rows.chunks(5_000) {
        position += 1;
        if !model
            .commit_batch(TERRITORY_METRICS, generation, old, position, chunk)
            .await?
        {
            return Err(ProjectionError::Corrupt("lost a batch".into()));
        }
        old = position;
    }
    let written = started.elapsed();
    if !model
        .swap(TERRITORY_METRICS, active.generation, generation, position)
        .await?
    {
        return Err(ProjectionError::Corrupt("could not swap".into()));
    }
    while model.purge_retired(TERRITORY_METRICS, 5_000).await? > 0 {}
    Ok(written)
}

// ---------------------------------------------------------------------------------------------
// Generating histories

/// One generated beneficiary.
struct History {
    id: String,
    events: Vec<RecordedEvent>,
}

/// Where beneficiaries are enrolled: the sample registry's ambiti (most of them in Lombardia),
/// and a few regions without ambiti in the sample.
const TERRITORIES: &[(&str, u32)] = &[
    ("LOM-BG-BERGAMO", 14),
    ("LOM-BG-VALLE-BREMBANA", 6),
    ("LOM-BG-VALLE-IMAGNA", 5),
    ("LOM-LC-LECCO", 10),
    ("LOM-MI-MILANO", 25),
    ("PIE-TO-TORINO", 12),
    ("VEN", 8),
    ("EMR", 8),
    ("LAZ", 6),
    ("CAM", 6),
];

const STAGES: [&str; 3] = ["socio_occupational", "internship", "job_placement"];

/// The default catalogue, the sample registry, and the clock of the generated histories.
fn bench_services() -> PathwayServices {
    PathwayServices {
        clock: Arc::new(FixedClock(date("2025-06-30"))),
        ..PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(TerritoryRegistry::sample()),
        )
    }
}

/// Generates histories through the real aggregate until about `events` events.
async fn generate(events: usize, seed: u64, services: &PathwayServices) -> Vec<History> {
    let mut rng = SplitMix(seed);
    let mut histories = Vec::with_capacity(events / 5 + 1);
    let mut total = 0;
    while total < events {
        let history = generate_one(&mut rng, services).await;
        total += history.events.len();
        histories.push(history);
    }
    histories
}

async fn generate_one(rng: &mut SplitMix, services: &PathwayServices) -> History {
    let id = Uuid::from_u64_pair(rng.next(), rng.next()).to_string();
    let last_day = date("2025-06-30");
    let mut day = date("2021-01-04") + Days::new(rng.below(1_600));
    let mut at = day.and_hms_opt(8, 0, 0).expect("a time").and_utc();
    let mut pathway = Pathway::default();
    let mut events: Vec<RecordedEvent> = Vec::new();
    let target = 2 + rng.below(7) as usize;
    let territory = pick_territory(rng);
    let mut command = PathwayCommand::Enrol {
        territory: territory.to_owned(),
        on: day,
        referral: Referral::SocialServices,
        support_band: None,
    };
    for _ in 0..40 {
        let before = pathway.version();
        let sink = EventSink::default();
        let accepted = pathway.handle(command, services, &sink).await.is_ok();
        let written = sink.collect().await;
        if accepted {
            at = at.max(day.and_hms_opt(9, 0, 0).expect("a time").and_utc())
                + TimeDelta::minutes(rng.below(480) as i64 + 1);
            for (sequence, event) in (before + 1..).zip(written) {
                events.push(RecordedEvent {
                    sequence,
                    recorded_at: at,
                    event,
                });
            }
        }
        if events.len() >= target {
            break;
        }
        day = day + Days::new(rng.below(60) + 1);
        if day > last_day {
            break;
        }
        let Some(next) = next_command(rng, &pathway, day) else {
            break;
        };
        command = next;
    }
    History { id, events }
}

/// A plausible next command for the pathway's state.
fn next_command(rng: &mut SplitMix, pathway: &Pathway, on: NaiveDate) -> Option<PathwayCommand> {
    let state = pathway.state();
    match state.status {
        PathwayStatus::Closed => {
            (rng.below(100) < 30).then_some(PathwayCommand::ReopenPathway { on })
        }
        PathwayStatus::Open => {
            let roll = rng.below(100);
            Some(match roll {
                0..=54 => {
                    // Mostly forward, sometimes the same level again, sometimes back.
                    let current = state
                        .last_stage
                        .as_ref()
                        .and_then(|s| STAGES.iter().position(|c| *c == s.as_str()));
                    let stage = match (current, rng.below(100)) {
                        (None, _) => rng.below(2) as usize,
                        (Some(i), 0..=49) => (i + 1).min(2),
                        (Some(i), 50..=79) => i,
                        (Some(_), _) => rng.below(3) as usize,
                    };
                    PathwayCommand::EnterStage {
                        stage: STAGES[stage].to_owned(),
                        on,
                        provider: None,
                    }
                }
                55..=64 if state.current_stage.is_some() => PathwayCommand::ExitStage {
                    on,
                    outcome: if rng.below(2) == 0 {
                        ExitOutcome::Completed
                    } else {
                        ExitOutcome::Interrupted
                    },
                },
                65..=72 => PathwayCommand::ChangeTerritory {
                    territory: pick_territory(rng).to_owned(),
                    on,
                },
                73..=86 => PathwayCommand::ClosePathway {
                    on,
                    outcome: CloseOutcome::ALL[rng.below(5) as usize],
                },
                87..=92 => PathwayCommand::Undo {
                    reason: "corrected by the operator".to_owned(),
                },
                _ => PathwayCommand::EnterStage {
                    stage: STAGES[rng.below(3) as usize].to_owned(),
                    on,
                    provider: None,
                },
            })
        }
        PathwayStatus::NotEnrolled | PathwayStatus::Voided => None,
    }
}

fn pick_territory(rng: &mut SplitMix) -> &'static str {
    let total: u32 = TERRITORIES.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(u64::from(total)) as u32;
    for (code, weight) in TERRITORIES {
        if roll < *weight {
            return code;
        }
        roll -= weight;
    }
    TERRITORIES[0].0
}

/// SplitMix64: small, fast, reproducible; no dependency for a benchmark.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), bias negligible for small `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Stores

async fn connect(url: &str, services: &PathwayServices) -> Result<Store, ProjectionError> {
    let options = StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(url, services.clone(), options).await?;
    store.migrate().await?;
    crate::migrate(&store.database()).await?;
    Ok(store)
}

/// Inserts the events of the first histories, about `limit` of them, interleaved in recording
/// order as a real feed is, straight into the store's `events` table (see the module docs).
async fn seed(
    store: &Store,
    histories: &[History],
    limit: usize,
) -> Result<usize, ProjectionError> {
    let mut rows: Vec<(&str, &RecordedEvent)> = Vec::new();
    for history in histories {
        if rows.len() >= limit {
            break;
        }
        rows.extend(history.events.iter().map(|e| (history.id.as_str(), e)));
    }
    rows.sort_by_key(|(id, e)| (e.recorded_at, *id, e.sequence));
    let encode = |e: &RecordedEvent| serde_json::to_string(&e.event);
    let metadata = r#"{"principal":"bench","command":"bench"}"#;
    for chunk in rows.chunks(5_000) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut sequences = Vec::with_capacity(chunk.len());
        let mut types = Vec::with_capacity(chunk.len());
        let mut versions = Vec::with_capacity(chunk.len());
        let mut payloads = Vec::with_capacity(chunk.len());
        for (id, event) in chunk {
            ids.push(*id);
            sequences.push(event.sequence as i64);
            types.push(event.event.name());
            versions.push(event.event.event_version());
            payloads.push(encode(event).map_err(|e| ProjectionError::Corrupt(e.to_string()))?);
        }
        let database = store.database();
        if let filiera_store::Pool::Postgres(pool) = database.writer() {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                     event_version, payload, metadata) \
                 SELECT 'pathway', u.id, u.sequence, u.type, u.version, u.payload::jsonb, $6::jsonb \
                 FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
                      WITH ORDINALITY AS u (id, sequence, type, version, payload, n) \
                 ORDER BY u.n",
            )
            .bind(&ids)
            .bind(&sequences)
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(metadata)
            .execute(pool)
            .await?;
        } else if let filiera_store::Pool::Sqlite(write) = database.writer() {
            let mut tx = write.begin().await?;
            for i in 0..chunk.len() {
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                         event_version, payload, metadata) \
                     VALUES ('pathway', ?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .bind(ids[i])
                .bind(sequences[i])
                .bind(types[i])
                .bind(&versions[i])
                .bind(&payloads[i])
                .bind(metadata)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
    }
    Ok(rows.len())
}

async fn sqlx_version(store: &Store) -> Result<String, ProjectionError> {
    let database = store.database();
    let version = if let filiera_store::Pool::Postgres(pool) = database.reader() {
        sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(pool)
            .await?
    } else if let filiera_store::Pool::Sqlite(read) = database.reader() {
        sqlx::query_scalar::<_, String>("SELECT sqlite_version()")
            .fetch_one(read)
            .await?
    } else {
        String::new()
    };
    Ok(version)
}

/// A PostgreSQL database created for the benchmark and dropped after it.
struct ScratchDb {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDb {
    async fn create(admin: &str) -> Result<Self, ProjectionError> {
        let name = format!("filiera_bench_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin).await?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        conn.close().await?;
        let (base, query) = match admin.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (admin, None),
        };
        let after_scheme = base.find("://").map_or(0, |i| i + 3);
        let base = match base[after_scheme..].find('/') {
            Some(slash) => &base[..after_scheme + slash],
            None => base,
        };
        let url = match query {
            Some(query) => format!("{base}/{name}?{query}"),
            None => format!("{base}/{name}"),
        };
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url,
        })
    }

    async fn drop_database(self) {
        let drop = async {
            let mut conn = PgConnection::connect(&self.admin).await?;
            conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
                .await?;
            conn.close().await
        };
        if let Err(error) = drop.await {
            tracing::warn!(database = %self.name, %error, "could not drop the bench database");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timing and reporting

/// Durations of several runs of one measurement.
struct Timing {
    median: Duration,
    min: Duration,
    max: Duration,
    runs: usize,
}

impl Timing {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let n = samples.len().max(1);
        let median = if samples.is_empty() {
            Duration::ZERO
        } else if n % 2 == 1 {
            samples[n / 2]
        } else {
            (samples[n / 2 - 1] + samples[n / 2]) / 2
        };
        Self {
            median,
            min: samples.first().copied().unwrap_or_default(),
            max: samples.last().copied().unwrap_or_default(),
            runs: samples.len(),
        }
    }

    fn line(&self, name: &str, note: String) -> BenchLine {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        BenchLine {
            name: name.to_owned(),
            median_ms: ms(self.median),
            min_ms: ms(self.min),
            max_ms: ms(self.max),
            runs: self.runs,
            note,
        }
    }
}

/// Runs `f` `runs` times; returns the timing and the last result.
fn measure<T>(runs: usize, mut f: impl FnMut() -> T) -> (Timing, T) {
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let result = std::hint::black_box(f());
        samples.push(started.elapsed());
        last = Some(result);
    }
    (Timing::of(samples), last.expect("at least one run"))
}

fn per_second(count: usize, elapsed: Duration) -> String {
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{} events/s", group_thousands(rate.round() as u64))
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn date(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

/// The heap a map of timelines takes, roughly (allocator overhead not counted).
fn approx_heap_bytes(timelines: &HashMap<String, Timeline>) -> usize {
    use std::mem::size_of;
    let codes = |n: usize, len: usize| n * (size_of::<TerritoryCode>() + len);
    let per_entry = size_of::<(String, Timeline)>() + 1; // the map's slot and control byte
    timelines
        .iter()
        .map(|(id, t)| {
            per_entry
                + 2 * id.len()
                + codes(t.territories().len(), 16)
                + codes(t.stages().len(), 16)
                + std::mem::size_of_val(t.entries())
        })
        .sum()
}

impl Machine {
    /// What this machine is, from `/proc` where available.
    fn probe() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, name)| name.trim().to_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0))
            .unwrap_or_default();
        let os = read("/proc/version")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory,
            os: if os.is_empty() {
                std::env::consts::OS.to_owned()
            } else {
                os
            },
            sqlite: None,
            postgres: None,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
        }
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.machine;
        writeln!(
            f,
            "Machine: {} ({} cores available), {} RAM, {}; build profile: {}",
            m.cpu, m.cores, m.memory, m.os, m.profile
        )?;
        if let Some(v) = &m.sqlite {
            writeln!(f, "SQLite {v}")?;
        }
        if let Some(v) = &m.postgres {
            writeln!(f, "PostgreSQL {v}")?;
        }
        writeln!(
            f,
            "Generated: {} events, {} beneficiaries\n",
            self.events, self.beneficiaries
        )?;
        writeln!(f, "| measurement | median | min | max | runs | note |")?;
        writeln!(f, "|---|---:|---:|---:|---:|---|")?;
        for line in &self.lines {
            writeln!(
                f,
                "| {} | {} ms | {} ms | {} ms | {} | {} |",
                line.name, line.median_ms, line.min_ms, line.max_ms, line.runs, line.note
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator writes valid, varied histories, the same for the same seed.
    #[tokio::test]
    async fn generated_histories_are_varied_and_reproducible() {
        let services = bench_services();
        let a = generate(5_000, 7, &services).await;
        let b = generate(5_000, 7, &services).await;
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.id == y.id && x.events == y.events)
        );
        let names: std::collections::BTreeSet<_> = a
            .iter()
            .flat_map(|h| h.events.iter().map(|e| e.event.name()))
            .collect();
        assert_eq!(names.len(), 7, "every event type appears: {names:?}");
        for history in &a {
            let sequences: Vec<u64> = history.events.iter().map(|e| e.sequence).collect();
            assert_eq!(
                sequences,
                (1..=history.events.len() as u64).collect::<Vec<_>>()
            );
            assert!(
                history
                    .events
                    .windows(2)
                    .all(|w| w[0].recorded_at <= w[1].recorded_at)
            );
        }
    }

    #[test]
    fn medians_and_thousands() {
        let ms = Duration::from_millis;
        assert_eq!(Timing::of(vec![ms(3), ms(1), ms(2)]).median, ms(2));
        assert_eq!(
            Timing::of(vec![ms(4), ms(1), ms(2), ms(3)]).median,
            ms(2) + ms(1) / 2
        );
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(999), "999");
    }
}
