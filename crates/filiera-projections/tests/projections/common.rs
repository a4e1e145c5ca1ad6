//! Test helpers: a fresh store per test on either backend (the pattern of filiera-store's
//! tests), fast projection settings, a command driver, and comparisons with the offline replay.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, NaiveDate, Utc};
use filiera_domain::metrics::series::month_count;
use filiera_domain::{
    AssessmentKind, AuditQuery, CloseOutcome, ExitOutcome, FixedClock, MetricsQuery, Occupability,
    PathwayCommand, PathwayServices, Referral, StageCatalogue, TeamMember, TerritoryCode,
    TerritoryRegistry, Timeline,
};
use filiera_projections::{ProjectionSettings, Projections, Replay, TERRITORY_METRICS};
use filiera_store::{Executed, Store, StoreOptions, on_pool};
use filiera_testkit::{Backend, TestDb};
use tempfile::TempDir;
use uuid::Uuid;

/// The day the test clock is stuck on.
pub const TODAY: &str = "2025-06-30";

/// How long tests wait for the projection.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The default catalogue plus `training` at level 1 (two stages share a level).
pub fn catalogue() -> StageCatalogue {
    let mut stages = StageCatalogue::default_catalogue().stages().to_vec();
    let mut training = stages[0].clone();
    training.code = filiera_domain::StageCode::parse("training").expect("a stage code");
    training.label = "Formazione".into();
    stages.insert(1, training);
    StageCatalogue::new(stages).expect("a valid catalogue")
}

pub fn services() -> PathwayServices {
    PathwayServices {
        clock: Arc::new(FixedClock(NaiveDate::from_str(TODAY).expect("a date"))),
        ..PathwayServices::new(Arc::new(catalogue()), Arc::new(TerritoryRegistry::sample()))
    }
}

/// Projection settings that react fast, with a given batch size.
pub fn settings(store: &Store, batch_size: u32) -> ProjectionSettings {
    ProjectionSettings {
        batch_size,
        // Pages only, unless a test asks for catch-up scans.
        catch_up_timelines: 0,
        poll_interval: Duration::from_millis(50),
        follower_retry: Duration::from_millis(200),
        leadership_check: Duration::from_millis(300),
        cache_refresh: Duration::from_millis(200),
        ..ProjectionSettings::from_services(store.services(), 2)
    }
}

/// A migrated store on a fresh database, removed when the harness is dropped.
pub struct Harness {
    /// Declared first so that it is dropped (and its pools closed) before the database.
    pub store: Store,
    guard: Guard,
}

enum Guard {
    Dir(#[allow(dead_code)] TempDir),
    Pg(TestDb),
}

impl Harness {
    /// A store on a new database of `backend`.
    pub async fn on(backend: Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => Self::sqlite().await,
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// The backend the harness's store is on.
    pub fn backend(&self) -> Backend {
        match self.guard {
            Guard::Dir(_) => Backend::Sqlite,
            Guard::Pg(_) => Backend::Postgres,
        }
    }

    /// A store on a new SQLite file.
    pub async fn sqlite() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("filiera.db").display());
        let store = Store::connect_with(&url, services(), options()).await?;
        store.migrate().await?;
        filiera_projections::migrate(&store.database()).await?;
        Ok(Self {
            store,
            guard: Guard::Dir(dir),
        })
    }

    /// A store on a new PostgreSQL database.
    pub async fn postgres() -> anyhow::Result<Self> {
        let db = TestDb::create().await?;
        let store = Store::connect_with(&db.url, services(), options()).await?;
        store.migrate().await?;
        filiera_projections::migrate(&store.database()).await?;
        Ok(Self {
            store,
            guard: Guard::Pg(db),
        })
    }

    /// Another store (another "process") on the same database.
    pub async fn another_store(&self) -> anyhow::Result<Store> {
        self.another_store_with(services()).await
    }

    /// Another store on the same database, deciding commands with other services.
    pub async fn another_store_with(&self, services: PathwayServices) -> anyhow::Result<Store> {
        let url = match &self.guard {
            Guard::Pg(db) => db.url.clone(),
            Guard::Dir(dir) => format!("sqlite://{}", dir.path().join("filiera.db").display()),
        };
        Ok(Store::connect_with(&url, services, options()).await?)
    }
}

fn options() -> StoreOptions {
    StoreOptions {
        max_connections: 8,
        ..StoreOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Writing histories

pub fn date(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

pub fn code(s: &str) -> TerritoryCode {
    TerritoryCode::parse(s).expect("a territory code")
}

pub fn enrol(territory: &str, on: &str) -> PathwayCommand {
    PathwayCommand::Enrol {
        territory: territory.to_owned(),
        on: date(on),
        referral: Referral::SocialServices,
        support_band: None,
    }
}

pub fn stage(stage: &str, on: &str) -> PathwayCommand {
    PathwayCommand::EnterStage {
        stage: stage.to_owned(),
        on: date(on),
        provider: None,
    }
}

/// A stage entry run by `provider`.
pub fn stage_by(stage: &str, on: &str, provider: &str) -> PathwayCommand {
    PathwayCommand::EnterStage {
        stage: stage.to_owned(),
        on: date(on),
        provider: Some(provider.to_owned()),
    }
}

/// A needs assessment.
pub fn assess(
    on: &str,
    kind: AssessmentKind,
    occupability: Occupability,
    team: &[TeamMember],
) -> PathwayCommand {
    PathwayCommand::AssessNeeds {
        on: date(on),
        kind,
        occupability,
        team: team.to_vec(),
    }
}

pub fn exit(on: &str, outcome: ExitOutcome) -> PathwayCommand {
    PathwayCommand::ExitStage {
        on: date(on),
        outcome,
    }
}

pub fn territory(territory: &str, on: &str) -> PathwayCommand {
    PathwayCommand::ChangeTerritory {
        territory: territory.to_owned(),
        on: date(on),
    }
}

pub fn close(on: &str, outcome: CloseOutcome) -> PathwayCommand {
    PathwayCommand::ClosePathway {
        on: date(on),
        outcome,
    }
}

pub fn reopen(on: &str) -> PathwayCommand {
    PathwayCommand::ReopenPathway { on: date(on) }
}

pub fn undo() -> PathwayCommand {
    PathwayCommand::Undo {
        reason: "recorded by mistake".to_owned(),
    }
}

/// Executes a command that must be accepted.
pub async fn exec(store: &Store, id: Uuid, command: PathwayCommand) -> anyhow::Result<Executed> {
    let what = format!("{command:?}");
    match store
        .execute(id, command, filiera_store::CommandContext::new("test"))
        .await?
    {
        Ok(executed) => Ok(executed),
        Err(rejection) => bail!("{what} was refused: {rejection}"),
    }
}

/// Executes a beneficiary's commands in order; returns its id and when each was recorded.
pub async fn write(
    store: &Store,
    commands: Vec<PathwayCommand>,
) -> anyhow::Result<(Uuid, Vec<DateTime<Utc>>)> {
    let id = Uuid::new_v4();
    let mut times = Vec::new();
    for command in commands {
        let executed = exec(store, id, command).await?;
        times.push(executed.events.last().context("events")?.recorded_at);
    }
    Ok((id, times))
}

/// A varied history over several beneficiaries: transfers, undo, reopen, reiterations,
/// regressions, open and closed spells and episodes. Returns the recording times.
pub async fn varied_history(store: &Store) -> anyhow::Result<Vec<DateTime<Utc>>> {
    use CloseOutcome::*;
    use ExitOutcome::*;
    let histories = vec![
        vec![
            enrol("LOM-BG-BERGAMO", "2024-01-10"),
            stage("socio_occupational", "2024-01-15"),
            stage("internship", "2024-03-01"),
            territory("LOM-MI-MILANO", "2024-04-01"),
            stage("internship", "2024-05-01"),
            stage("job_placement", "2024-07-01"),
            close("2024-09-30", Employed),
        ],
        vec![
            enrol("LOM-LC-LECCO", "2024-02-01"),
            stage("training", "2024-02-05"),
            stage("socio_occupational", "2024-04-05"),
            stage("training", "2024-06-05"),
            close("2024-08-01", DroppedOut),
            reopen("2024-10-01"),
            stage("socio_occupational", "2024-10-02"),
            undo(),
            stage("internship", "2024-10-03"),
        ],
        vec![
            enrol("PIE-TO-TORINO", "2024-03-01"),
            stage("internship", "2024-03-02"),
            exit("2024-05-02", Completed),
            stage("socio_occupational", "2024-05-10"),
            territory("LOM-BG-VALLE-BREMBANA", "2024-06-10"),
            exit("2024-07-10", Interrupted),
        ],
        vec![enrol("LOM-BG-BERGAMO", "2024-04-01"), undo()],
        vec![
            enrol("LOM-MI-MILANO", "2024-05-01"),
            stage("job_placement", "2024-05-02"),
            territory("LOM-BG-BERGAMO", "2024-06-01"),
            undo(),
            close("2024-12-01", MovedAway),
            undo(),
            undo(),
        ],
    ];
    let mut times = Vec::new();
    for commands in histories {
        times.extend(write(store, commands).await?.1);
    }
    Ok(times)
}

// ---------------------------------------------------------------------------------------------
// Comparing with the offline replay

/// A metrics query over the test histories.
pub fn query(
    territory: Option<&str>,
    from: &str,
    to: &str,
    known_at: DateTime<Utc>,
    threshold: u32,
) -> MetricsQuery {
    MetricsQuery {
        territory: territory.map(code),
        from: date(from),
        to: date(to),
        known_at,
        threshold,
    }
}

/// Queries worth comparing: several scopes and periods, as known now and at `instants`.
pub fn queries(instants: &[DateTime<Utc>]) -> Vec<MetricsQuery> {
    let far = "2030-01-01T00:00:00Z".parse().expect("an instant");
    let mut queries = Vec::new();
    for scope in [
        None,
        Some("LOM"),
        Some("LOM-BG"),
        Some("LOM-MI-MILANO"),
        Some("PIE"),
    ] {
        queries.push(query(scope, "2000-01-01", TODAY, far, 2));
        queries.push(query(scope, "2024-03-01", "2024-06-30", far, 1));
    }
    for &instant in instants {
        queries.push(query(None, "2024-01-01", "2024-12-31", instant, 1));
        queries.push(query(Some("LOM"), "2024-04-01", TODAY, instant, 2));
    }
    queries
}

/// Asserts that the projection answers every query exactly like the offline replay: the
/// metrics document, the audit list, the provider scorecard, the breakdown and (over short
/// periods) the monthly series.
pub async fn assert_same_as_replay(
    projections: &Projections,
    store: &Store,
    queries: &[MetricsQuery],
) -> anyhow::Result<()> {
    let replay = Replay::load(store).await?;
    let settings = projections.settings();
    for query in queries {
        let online = projections.metrics(query.clone()).await?;
        let offline = replay.metrics(query, &settings.catalogue, &settings.registry);
        ensure!(
            online == offline,
            "metrics differ for {query:?}:\nonline  {}\noffline {}",
            serde_json::to_string(&online)?,
            serde_json::to_string(&offline)?
        );
        let audit_query = AuditQuery::from(query);
        let online = projections.audit(audit_query.clone()).await?;
        let offline = replay.audit(&audit_query, &settings.catalogue, &settings.registry);
        ensure!(online == offline, "audit lists differ for {audit_query:?}");
        let online = projections.scorecard(query.clone()).await?;
        let offline = replay.scorecard(query, &settings.catalogue, &settings.registry);
        ensure!(
            online == offline,
            "scorecards differ for {query:?}:\nonline  {}\noffline {}",
            serde_json::to_string(&online)?,
            serde_json::to_string(&offline)?
        );
        let online = projections.breakdown(query).await?;
        let offline = replay.breakdown(query, &settings.catalogue, &settings.registry);
        ensure!(online == offline, "breakdowns differ for {query:?}");
        // Series of a few months (a period from 2000 would fold hundreds of documents).
        if month_count(query.from, query.to) <= 24 {
            let online = projections.series(query).await?;
            let offline = replay.series(query, &settings.catalogue, &settings.registry);
            ensure!(online == offline, "series differ for {query:?}");
        }
    }
    Ok(())
}

/// The timelines of a generation as stored in the read model.
pub async fn stored_timelines(
    store: &Store,
    generation: i64,
) -> anyhow::Result<HashMap<String, Timeline>> {
    let rows: Vec<(String, String)> = on_pool!(store.database().reader(), |pool| {
        sqlx::query_as(
            "SELECT beneficiary_id, timeline FROM projection_timelines \
             WHERE projection = $1 AND generation = $2",
        )
        .bind(TERRITORY_METRICS)
        .bind(generation)
        .fetch_all(pool)
        .await?
    });
    rows.into_iter()
        .map(|(id, json)| Ok((id, serde_json::from_str(&json)?)))
        .collect()
}

/// Asserts that a generation's rows are exactly the replayed timelines: every event applied,
/// none skipped, none applied out of order.
pub async fn assert_rows_match_replay(store: &Store, generation: i64) -> anyhow::Result<()> {
    let stored = stored_timelines(store, generation).await?;
    let replay = Replay::load(store).await?;
    ensure!(
        stored.len() == replay.timelines().len(),
        "{} stored timelines, {} replayed",
        stored.len(),
        replay.timelines().len()
    );
    for (id, timeline) in replay.timelines() {
        ensure!(
            stored.get(id) == Some(timeline),
            "timeline of {id} differs from the replay"
        );
    }
    Ok(())
}

/// The number of events in the feed.
pub async fn feed_len(store: &Store) -> anyhow::Result<u64> {
    let mut count = 0;
    let mut after = 0;
    loop {
        let page = store.read_feed(after, 1000).await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = last.position;
        count += page.len() as u64;
    }
}

/// Polls `check` until it holds or `PATIENCE` runs out.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if check().await? {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
