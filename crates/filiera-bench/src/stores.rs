//! The figures on real stores: the write path, the runner's catch-up, the offline replay, an
//! end-to-end query and the query cache's full load, for one backend at a time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use filiera_domain::{
    MetricsQuery, PathwayCommand, PathwayServices, RecordedEvent, Referral, TerritoryCode, Timeline,
};
use filiera_projections::tables::encode_timelines;
use filiera_projections::{
    ProjectionSettings, ProjectionTables, Projections, Replay, Runner, TERRITORY_METRICS,
};
use filiera_store::{Store, StoreOptions, metadata};
use filiera_testkit::TestDb;
use uuid::Uuid;

use crate::generate::History;
use crate::report::{Timing, per_second};
use crate::{BenchError, BenchLine, BenchOptions, date};

/// The write path: commands through [`Store::execute`] (load, decide, commit with the
/// commit-order-safe position), by one writer and by eight concurrent writers on distinct
/// beneficiaries, in a scratch stream family of the store at `url`.
pub(crate) async fn write_bench(
    backend: &str,
    url: &str,
    services: &PathwayServices,
    options: &BenchOptions,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<BenchLine>, BenchError> {
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
async fn write_commands(store: &Store, count: usize) -> Result<usize, BenchError> {
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
                return Err(BenchError::Check(format!(
                    "bench command refused: {rejection:?}"
                )));
            }
        }
    }
    Ok(written)
}

/// The store figures for one backend.
pub(crate) async fn store_bench(
    backend: &str,
    store: &Store,
    histories: &[History],
    timelines: &HashMap<String, Timeline>,
    options: &BenchOptions,
    progress: &mut impl FnMut(&str),
) -> Result<Vec<BenchLine>, BenchError> {
    let runs = options.runs.max(1);
    let mut lines = Vec::new();
    let settings = ProjectionSettings::from_services(store.services(), 2);
    let tables = ProjectionTables::new(store, TERRITORY_METRICS)?;
    if options.store_events > 0 {
        let seeded = seed(store, histories, options.store_events).await?;
        progress(&format!("{backend}: {seeded} events seeded; catching up"));

        // The first run catches the active generation up; the others rebuild from position 0.
        let mut catch_up = Vec::new();
        for run in 0..runs {
            let mut runner = Runner::new(store, TERRITORY_METRICS, settings.batch_size)?
                .catching_up_by(settings.catch_up_timelines);
            if run > 0 && tables.start_rebuild().await?.is_err() {
                return Err(BenchError::Check("a rebuild was left over".into()));
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
        let written = load_generation(&tables, timelines).await?;
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
            let cache = tables.query_cache();
            let started = Instant::now();
            cache.load().await?;
            loads.push(started.elapsed());
            let loaded = cache.timelines().await?;
            if loaded != timelines.len() {
                return Err(BenchError::Check(format!(
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
    tables: &ProjectionTables,
    timelines: &HashMap<String, Timeline>,
) -> Result<Duration, BenchError> {
    let Ok(mut generation) = tables.fill_generation().await? else {
        return Err(BenchError::Check("a rebuild was left over".into()));
    };
    let rows = encode_timelines(timelines)?;
    let started = Instant::now();
    for chunk in rows.chunks(5_000) {
        generation.write(chunk).await?;
    }
    let written = started.elapsed();
    generation.swap_in().await?;
    Ok(written)
}

/// A migrated store at `url`, for the read figures (the seeded feed, the read model).
pub(crate) async fn connect(url: &str, services: &PathwayServices) -> Result<Store, BenchError> {
    let options = StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(url, services.clone(), options).await?;
    store.migrate().await?;
    filiera_projections::migrate(&store.database()).await?;
    Ok(store)
}

/// Appends the events of the first histories, about `limit` of them, interleaved in recording
/// order as a real feed is, in bulk (see the crate docs).
async fn seed(store: &Store, histories: &[History], limit: usize) -> Result<usize, BenchError> {
    let mut rows: Vec<(&str, &RecordedEvent)> = Vec::new();
    for history in histories {
        if rows.len() >= limit {
            break;
        }
        rows.extend(history.events.iter().map(|e| (history.id.as_str(), e)));
    }
    rows.sort_by_key(|(id, e)| (e.recorded_at, *id, e.sequence));
    let rows = rows
        .into_iter()
        .map(|(id, e)| Ok((Uuid::parse_str(id)?, e.sequence, &e.event)))
        .collect::<Result<Vec<_>, uuid::Error>>()
        .map_err(|e| BenchError::Check(format!("a generated id is not a UUID: {e}")))?;
    let metadata = HashMap::from([
        (metadata::PRINCIPAL.to_owned(), "bench".to_owned()),
        (metadata::COMMAND.to_owned(), "bench".to_owned()),
    ]);
    store.append_recorded(&rows, &metadata).await?;
    Ok(rows.len())
}

/// A PostgreSQL database created for the benchmark through the admin URL `admin`, dropped
/// (with its connections) when it goes.
pub(crate) async fn scratch_database(admin: &str) -> Result<TestDb, BenchError> {
    TestDb::create_on(admin, "filiera_bench")
        .await
        .map_err(|e| BenchError::ScratchDatabase(e.into()))
}
