//! `filiera import` (legacy history as NDJSON commands) and `filiera export` (NDJSON events).
//!
//! The import decides its lines in batches of 2,000 and writes each batch on a task of its own
//! while it decides the next one, on the streams as it left them (see [`import`]).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use filiera_contract::refusal_detail;
use filiera_contract::{
    AssessmentBody, CloseBody, EnrolBody, ExitBody, FeedItem, ReopenBody, StageBody, TerritoryBody,
    UndoBody,
};
use filiera_domain::PathwayCommand;
use filiera_store::{
    BatchCommand, BatchOutcome, BatchWrite, CommandContext, DecidedBatch, IdempotencyKey,
    Rejection, Store, StreamCache, Written,
};
use serde::Deserialize;
use uuid::Uuid;

/// One line of an import file without its `beneficiary` reference: the command and the body
/// the matching HTTP endpoint takes (the same `filiera_contract` types, so the two cannot
/// drift).
#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
enum ImportCommand {
    Enrol(EnrolBody),
    Stage(StageBody),
    Exit(ExitBody),
    Territory(TerritoryBody),
    Close(CloseBody),
    Reopen(ReopenBody),
    Assess(AssessmentBody),
    Undo(UndoBody),
}

impl From<ImportCommand> for PathwayCommand {
    fn from(command: ImportCommand) -> Self {
        match command {
            ImportCommand::Enrol(body) => body.into(),
            ImportCommand::Stage(body) => body.into(),
            ImportCommand::Exit(body) => body.into(),
            ImportCommand::Territory(body) => body.into(),
            ImportCommand::Close(body) => body.into(),
            ImportCommand::Reopen(body) => body.into(),
            ImportCommand::Assess(body) => body.into(),
            ImportCommand::Undo(body) => body.into(),
        }
    }
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportSummary {
    /// Commands stored by this run.
    pub applied: usize,
    /// Commands already stored by an earlier run of the same batch (nothing written).
    pub replayed: usize,
    /// Commands refused (only with `--keep-going`).
    pub refused: usize,
    /// Beneficiaries of the file and the ids they were given.
    pub beneficiaries: usize,
}

/// Lines decided and written together (one transaction, one position lock).
const BATCH_LINES: usize = 2_000;

/// Streams the import keeps as it decided them, so that a later batch does not load them
/// again ([`StreamCache`]). A generated history's stream holds 4–5 events, about 1.5 KiB in
/// memory, so the cache stays under about 75 MiB; a file that names its beneficiaries one
/// after the other needs few of them, one that interleaves them needs them all.
const CACHED_STREAMS: usize = 50_000;

/// Imports NDJSON commands. Each command carries the idempotency key
/// `import:<batch>:<ref>:<n>` (its n-th command for that reference), so running the same file
/// again writes nothing new and maps every reference to the same beneficiary.
///
/// Lines are executed in batches: every line is decided by the aggregate with the same rules
/// as over HTTP ([`Store::decide_batch`]), a batch's accepted commands are written in one
/// transaction, and a refused line writes nothing. Without `keep_going` the import stops at the
/// first refused line, after writing the lines before it.
///
/// # Pipelined
/// A batch is written on a task of its own while the next one is decided ([`Store::spawn_write`];
/// one write at most in flight), so the client's deciding and the database's writing overlap.
/// The next batch decides on the streams as the import left them ([`StreamCache`]), not as the
/// database holds them (the previous batch may not be committed yet): it loads only streams no
/// batch of this import decided, and none for the beneficiaries it enrols. Each decision of a
/// batch looks its idempotency keys up with one statement. If another writer appended to one of
/// the import's streams meanwhile, a batch decided on the stale stream fails to write on the
/// stream's primary key: that batch is executed one by one
/// ([`filiera_store::BatchWrite::finish`]), the cache is dropped, and the batch decided on top
/// of it is decided again. A refusal writes nothing, so it could not be caught that way: a batch
/// with a refused line is decided again on its streams as stored before it is written.
pub async fn import(
    store: &Store,
    input: impl BufRead,
    batch: &str,
    keep_going: bool,
    report: impl Write,
) -> anyhow::Result<ImportSummary> {
    let mut import = Import::new(store, batch, keep_going, report, BATCH_LINES);
    let read = async {
        for (index, line) in input.lines().enumerate() {
            let number = index + 1;
            let line = line.with_context(|| format!("cannot read line {number}"))?;
            import.line(number, &line).await?;
        }
        import.settle().await
    }
    .await;
    if let Err(error) = read {
        import.abandon().await;
        return Err(error);
    }
    import.finish().await
}

/// An import under way.
struct Import<'s, W> {
    store: &'s Store,
    batch: &'s str,
    keep_going: bool,
    report: W,
    /// Lines per batch.
    batch_lines: usize,
    /// The beneficiary of each reference (tentative for enrolments not yet written).
    ids: HashMap<String, Uuid>,
    /// Commands seen per reference, for the idempotency keys.
    counts: HashMap<String, usize>,
    /// References whose enrolment was refused (with `keep_going`).
    refused_enrolments: HashSet<String>,
    /// Lines parsed and not yet decided.
    pending: Vec<PendingLine>,
    /// The streams this import decided, as it left them.
    streams: StreamCache,
    /// The batch being written, if any.
    writing: Option<Writing>,
    /// Batches whose write lost a race (executed one by one instead).
    races: usize,
    summary: ImportSummary,
}

/// A parsed line waiting for its batch.
struct PendingLine {
    number: usize,
    reference: String,
    enrols: bool,
    command: PathwayCommand,
    key: IdempotencyKey,
    /// Not decided: an earlier batch refused its beneficiary's enrolment (set when its batch
    /// is decided).
    skipped: bool,
}

/// A decided batch being written: its lines, and the write.
struct Writing {
    lines: Vec<PendingLine>,
    write: BatchWrite,
}

impl<'s, W: Write> Import<'s, W> {
    fn new(
        store: &'s Store,
        batch: &'s str,
        keep_going: bool,
        report: W,
        batch_lines: usize,
    ) -> Self {
        Self {
            store,
            batch,
            keep_going,
            report,
            batch_lines,
            ids: HashMap::new(),
            counts: HashMap::new(),
            refused_enrolments: HashSet::new(),
            pending: Vec::new(),
            streams: StreamCache::new(CACHED_STREAMS),
            writing: None,
            races: 0,
            summary: ImportSummary::default(),
        }
    }

    /// Reads line `number` of the file.
    async fn line(&mut self, number: usize, line: &str) -> anyhow::Result<()> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let (reference, command) = match parse_line(line) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.settle().await?;
                bail!("line {number}: {err}");
            }
        };
        // A second enrolment of a reference enrolled in the pending batch: whether the first
        // one stands decides what this line means (enrolled twice, or skipped), so the batch
        // is decided first.
        if matches!(command, PathwayCommand::Enrol { .. })
            && self
                .pending
                .iter()
                .any(|p| p.enrols && p.reference == reference)
        {
            self.flush().await?;
        }
        self.add(number, reference, command, line).await?;
        if self.pending.len() >= self.batch_lines {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes what is left and ends the import.
    async fn finish(mut self) -> anyhow::Result<ImportSummary> {
        self.settle().await?;
        if self.races > 0 {
            tracing::info!(
                batches = self.races,
                "batches lost a race with another writer and were executed one by one"
            );
        }
        if self.summary.applied > 0 {
            // What was just loaded must look as big as it is to the planner of the next
            // queries (the replay of `filiera report`, a projection catching up).
            self.store.analyze().await?;
        }
        self.summary.beneficiaries = self.ids.len();
        Ok(self.summary)
    }

    /// Queues one line.
    async fn add(
        &mut self,
        number: usize,
        reference: String,
        command: PathwayCommand,
        line: &str,
    ) -> anyhow::Result<()> {
        let n = self.counts.entry(reference.clone()).or_default();
        *n += 1;
        let key = IdempotencyKey::for_request(
            format!("import:{}:{reference}:{n}", self.batch),
            &[line.trim().as_bytes()],
        );
        let enrols = matches!(command, PathwayCommand::Enrol { .. });
        // After a refused enrolment (with --keep-going), everything of the reference is
        // refused: queued to be reported in order.
        if !self.refused_enrolments.contains(&reference) {
            match (enrols, self.ids.contains_key(&reference)) {
                (true, true) => {
                    self.settle().await?;
                    bail!("line {number}: beneficiary `{reference}` is enrolled twice in this file")
                }
                (false, false) => {
                    self.settle().await?;
                    bail!(
                        "line {number}: beneficiary `{reference}` has no earlier `enrol` line in \
                         this file"
                    )
                }
                (true, false) => {
                    // A new id; replaced when its batch is decided by the stored one if a run
                    // of this batch already stored the enrolment.
                    self.ids.insert(reference.clone(), Uuid::new_v4());
                }
                (false, true) => {}
            }
        }
        self.pending.push(PendingLine {
            number,
            reference,
            enrols,
            command,
            key,
            skipped: false,
        });
        Ok(())
    }

    /// Decides the pending lines as one batch and starts writing it, once the batch before it
    /// is written (and reported). Without `keep_going`, a batch with a refused line is written
    /// and reported at once, which ends the import.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut lines = std::mem::take(&mut self.pending);
        let mut refusals_checked = false;
        let (commands, decided) = loop {
            let (commands, decided) = self.decide(&mut lines).await?;
            if let Some(previous) = self.writing.take()
                && self.written(previous).await?
            {
                // The batch before lost a race and was executed one by one: the streams this
                // one was decided on may be stale.
                self.streams.clear();
                continue;
            }
            if decided.refused() && !refusals_checked {
                // A refusal writes nothing, so no write would notice that it was decided on a
                // stream another writer changed after the import kept it: the batch is decided
                // again on its streams as stored (the batch before is written by now; the kept
                // streams already hold this batch's first decisions, so all of them go).
                refusals_checked = true;
                self.streams
                    .forget(commands.iter().map(|command| &command.beneficiary));
                continue;
            }
            break (commands, decided);
        };
        let refused = decided.refused();
        let mut outcomes = decided.outcomes.iter();
        for line in lines.iter().filter(|l| !l.skipped) {
            // The lines after a refused enrolment are skipped when decided, from the next
            // batch on.
            if let Some(BatchOutcome::Refused(_)) = outcomes.next()
                && line.enrols
            {
                self.ids.remove(&line.reference);
                self.refused_enrolments.insert(line.reference.clone());
            }
        }
        let write = self.store.spawn_write(commands, decided, !self.keep_going);
        let writing = Writing { lines, write };
        if refused && !self.keep_going {
            // Stops here: the lines before the refused one are written, and it is reported.
            // (Unless the write lost a race and, executed one by one, nothing was refused:
            // then the import goes on, on streams as stored.)
            if self.written(writing).await? {
                self.streams.clear();
            }
        } else {
            self.writing = Some(writing);
        }
        Ok(())
    }

    /// Decides `lines` (marking those of beneficiaries whose enrolment an earlier batch
    /// refused as skipped), with one lookup of their idempotency keys.
    async fn decide(
        &mut self,
        lines: &mut [PendingLine],
    ) -> anyhow::Result<(Vec<BatchCommand>, DecidedBatch)> {
        for line in lines.iter_mut() {
            line.skipped = self.refused_enrolments.contains(&line.reference);
        }
        let keys: Vec<String> = lines
            .iter()
            .filter(|l| !l.skipped)
            .map(|l| l.key.key.clone())
            .collect();
        let bound = self.store.bound_keys(&keys).await?;
        for line in lines.iter().filter(|l| l.enrols && !l.skipped) {
            match bound.get(&line.key.key) {
                // Stored by an earlier run of this batch: it keeps its beneficiary.
                Some(stored) => {
                    self.ids.insert(line.reference.clone(), stored.beneficiary);
                }
                // A new id: its stream is empty, nothing to load.
                None => self.streams.insert_empty(self.ids[&line.reference]),
            }
        }
        let commands: Vec<BatchCommand> = lines
            .iter()
            .filter(|l| !l.skipped)
            .map(|l| BatchCommand {
                beneficiary: self.ids[&l.reference],
                command: l.command.clone(),
                ctx: CommandContext {
                    principal: "import".into(),
                    idempotency: Some(l.key.clone()),
                    scope: None,
                },
            })
            .collect();
        let decided = self
            .store
            .decide_batch(&commands, &bound, &mut self.streams, !self.keep_going)
            .await?;
        Ok((commands, decided))
    }

    /// After an error: waits for the batch being written, if any, and reports its lines, so
    /// that the import does not end with a write still running; what it finds is left unsaid
    /// beside the error being returned.
    async fn abandon(&mut self) {
        if let Some(writing) = self.writing.take()
            && let Err(error) = self.written(writing).await
        {
            tracing::warn!(error = %format!("{error:#}"), "the batch being written when the import failed");
        }
    }

    /// Writes what is pending and waits for every write.
    async fn settle(&mut self) -> anyhow::Result<()> {
        self.flush().await?;
        if let Some(writing) = self.writing.take() {
            self.written(writing).await?;
        }
        Ok(())
    }

    /// Waits for a batch's write and reports what happened to each of its lines. Answers
    /// whether the write lost a race (the batch was then executed one by one, and the
    /// outcomes reported are those).
    async fn written(&mut self, writing: Writing) -> anyhow::Result<bool> {
        let Writing { lines, write } = writing;
        let Written { outcomes, raced } = write.finish().await?;
        self.races += usize::from(raced);
        let mut outcomes = outcomes.into_iter();
        // References whose enrolment this batch refused.
        let mut refused_here: HashSet<String> = HashSet::new();
        for line in lines {
            let outcome = if line.skipped {
                None
            } else {
                Some(outcomes.next().context("a batch answers every line")?)
            };
            let PendingLine {
                number,
                reference,
                enrols,
                ..
            } = line;
            let rejection = match outcome {
                _ if line.skipped || refused_here.contains(&reference) => {
                    self.refused(number, &reference, SKIPPED)?;
                    continue;
                }
                Some(BatchOutcome::Applied { beneficiary, .. }) => {
                    self.summary.applied += 1;
                    if enrols {
                        self.ids.insert(reference, beneficiary);
                    }
                    continue;
                }
                Some(BatchOutcome::Replayed { beneficiary }) => {
                    self.summary.replayed += 1;
                    if enrols {
                        self.ids.insert(reference, beneficiary);
                    }
                    continue;
                }
                None | Some(BatchOutcome::Skipped) => continue,
                Some(BatchOutcome::Refused(rejection)) => rejection,
            };
            let why = match rejection {
                Rejection::Refused(err) => format!("{} ({})", refusal_detail(&err), err.code()),
                Rejection::Conflict => "another writer changed this beneficiary".into(),
                // The import writes to every stream.
                Rejection::OutOfScope => "outside the importer's scope".into(),
                Rejection::IdempotencyKeyReused => format!(
                    "this line differs from the one imported earlier in batch `{}`",
                    self.batch
                ),
            };
            if !self.keep_going {
                bail!("line {number} (beneficiary `{reference}`): {why}");
            }
            if enrols {
                self.ids.remove(&reference);
                self.refused_enrolments.insert(reference.clone());
                refused_here.insert(reference.clone());
            }
            self.refused(number, &reference, &why)?;
        }
        Ok(raced)
    }

    /// Counts and reports a refused line (with `--keep-going`).
    fn refused(&mut self, number: usize, reference: &str, why: &str) -> anyhow::Result<()> {
        self.summary.refused += 1;
        writeln!(
            self.report,
            "line {number} (beneficiary `{reference}`): {why}"
        )?;
        Ok(())
    }
}

/// Why a line after a refused enrolment is not imported.
const SKIPPED: &str = "skipped, its enrolment was refused";

/// The import line of `command` for the file's reference `reference`: what [`parse_line`]
/// reads back as the same command. `None` for a command that is not imported (the erasure
/// record).
pub fn import_line(reference: &str, command: &PathwayCommand) -> Option<serde_json::Value> {
    use serde_json::json;
    let mut line = match command {
        PathwayCommand::Enrol {
            territory,
            on,
            referral,
            support_band,
        } => json!({"command": "enrol", "territory": territory, "on": on,
                    "referral": referral, "support_band": support_band}),
        PathwayCommand::EnterStage {
            stage,
            on,
            provider,
        } => json!({"command": "stage", "stage": stage, "on": on, "provider": provider}),
        PathwayCommand::ExitStage { on, outcome } => {
            json!({"command": "exit", "on": on, "outcome": outcome})
        }
        PathwayCommand::ChangeTerritory { territory, on } => {
            json!({"command": "territory", "territory": territory, "on": on})
        }
        PathwayCommand::ClosePathway { on, outcome } => {
            json!({"command": "close", "on": on, "outcome": outcome})
        }
        PathwayCommand::ReopenPathway { on } => json!({"command": "reopen", "on": on}),
        PathwayCommand::AssessNeeds {
            on,
            kind,
            occupability,
            team,
        } => json!({"command": "assess", "on": on, "kind": kind,
                    "occupability": occupability, "team": team}),
        PathwayCommand::Undo { reason } => json!({"command": "undo", "reason": reason}),
        PathwayCommand::RecordErasure => return None,
    };
    let object = line.as_object_mut()?;
    // Optional members are left out rather than written as null.
    object.retain(|_, value| !value.is_null());
    object.insert("beneficiary".into(), reference.into());
    Some(line)
}

/// `filiera generate`: writes `histories` as import lines, one beneficiary after the other,
/// references `G1`, `G2`… Returns how many lines were written.
pub fn write_generated(
    histories: &[filiera_bench::generate::History],
    mut out: impl Write,
) -> anyhow::Result<usize> {
    let mut written = 0;
    for (n, history) in histories.iter().enumerate() {
        let reference = format!("G{}", n + 1);
        for command in &history.commands {
            if let Some(line) = import_line(&reference, command) {
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
                written += 1;
            }
        }
    }
    out.flush()?;
    Ok(written)
}

fn parse_line(line: &str) -> anyhow::Result<(String, PathwayCommand)> {
    let mut value: serde_json::Value = serde_json::from_str(line).context("not a JSON document")?;
    let object = value
        .as_object_mut()
        .context("each line must be a JSON object")?;
    let reference = match object.remove("beneficiary") {
        Some(serde_json::Value::String(r)) if !r.is_empty() => r,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => bail!("`beneficiary` (the file's own reference) is missing or empty"),
    };
    let mut command: ImportCommand = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{} (at `{path}`)", e.into_inner())
    })?;
    if let ImportCommand::Enrol(body) = &mut command
        && body.take_person().is_some()
    {
        // Never dropped silently: identities go through `POST /v1/beneficiaries`.
        bail!("`person` is not imported: enrol people with identities through the API");
    }
    Ok((reference, command.into()))
}

/// Writes every stored event after `after` as one JSON line each, in feed order, in the shape
/// of `GET /v1/events` items. Returns how many were written.
pub async fn export(store: &Store, after: i64, mut out: impl Write) -> anyhow::Result<u64> {
    let mut cursor = after;
    let mut written = 0;
    loop {
        let batch = store.read_feed(cursor, 1000).await?;
        let Some(last) = batch.last() else {
            break;
        };
        cursor = last.position;
        for event in &batch {
            serde_json::to_writer(&mut out, &FeedItem::from_stored(event))?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}

/// The pipelined import against real databases: a refusal in the batch decided while the one
/// before is written, a stream another writer appended to after the import cached it, and the
/// streams the import decides never loaded again.
#[cfg(test)]
mod pipeline_tests {
    use std::sync::Arc;

    use filiera_domain::{
        CloseOutcome, PathwayEvent, PathwayServices, StageCatalogue, TerritoryRegistry,
    };
    use filiera_store::{StoreOptions, StoredEvent};
    use filiera_testkit::{Backend, TestDb};

    use super::*;

    filiera_testkit::on_both_backends!(
        a_refusal_in_the_next_batch_writes_the_batch_in_flight_and_the_lines_before_it,
        a_stream_changed_by_another_writer_after_the_import_cached_it_stays_right,
        a_pipelined_import_loads_no_stream_it_decided_and_reports_in_order,
        a_refusal_decided_on_a_stream_another_writer_changed_is_decided_again,
    );

    /// A migrated store on a fresh database, and what keeps the database alive.
    struct Scratch {
        store: Store,
        _db: Option<TestDb>,
        _dir: tempfile::TempDir,
    }

    async fn scratch(backend: Backend) -> anyhow::Result<Scratch> {
        let dir = tempfile::tempdir()?;
        let (url, db) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("filiera.db").display()),
                None,
            ),
            Backend::Postgres => {
                let db = TestDb::create().await?;
                (db.url.clone(), Some(db))
            }
        };
        let services = PathwayServices::new(
            Arc::new(StageCatalogue::default_catalogue()),
            Arc::new(TerritoryRegistry::sample()),
        );
        let store = Store::connect_with(&url, services, StoreOptions::default()).await?;
        store.migrate().await?;
        Ok(Scratch {
            store,
            _db: db,
            _dir: dir,
        })
    }

    fn enrol(reference: &str, on: &str) -> String {
        format!(
            r#"{{"beneficiary": "{reference}", "command": "enrol", "territory": "LOM-BG-BERGAMO", "on": "{on}", "referral": "other"}}"#
        )
    }

    fn stage(reference: &str, stage: &str, on: &str) -> String {
        format!(
            r#"{{"beneficiary": "{reference}", "command": "stage", "stage": "{stage}", "on": "{on}"}}"#
        )
    }

    /// The event types of `beneficiary`'s stream, in sequence order.
    async fn types(store: &Store, beneficiary: Uuid) -> anyhow::Result<Vec<&'static str>> {
        let feed = store.read_feed(0, 1000).await?;
        Ok(feed
            .iter()
            .filter(|e| e.beneficiary_id == beneficiary)
            .map(|e: &StoredEvent| match e.event {
                PathwayEvent::Enrolled { .. } => "Enrolled",
                PathwayEvent::StageEntered { .. } => "StageEntered",
                PathwayEvent::StageExited { .. } => "StageExited",
                PathwayEvent::TerritoryChanged { .. } => "TerritoryChanged",
                _ => "other",
            })
            .collect())
    }

    /// Batches of three lines; the second batch's second line is refused while the first batch
    /// is (or may still be) being written. Without --keep-going: the first batch and the line
    /// before the refusal are written, nothing after it, and the refused line is named.
    async fn a_refusal_in_the_next_batch_writes_the_batch_in_flight_and_the_lines_before_it(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let db = scratch(backend).await?;
        let store = &db.store;
        let lines = [
            enrol("A", "2021-03-01"),
            stage("A", "internship", "2021-03-10"),
            enrol("B", "2021-03-02"),
            // Second batch, decided while the first is written.
            stage("B", "internship", "2021-03-12"),
            stage("A", "no_such_stage", "2021-04-01"),
            enrol("C", "2021-03-03"),
            // Third batch: never read.
            enrol("D", "2021-03-04"),
        ];
        let mut report = Vec::new();
        let mut import = Import::new(store, "t", false, &mut report, 3);
        let mut failure = None;
        for (index, line) in lines.iter().enumerate() {
            if let Err(error) = import.line(index + 1, line).await {
                failure = Some((index + 1, format!("{error:#}")));
                break;
            }
        }
        let (at, error) = failure.context("the import stops")?;
        anyhow::ensure!(
            at == 6,
            "it stops when the second batch is full, not at {at}"
        );
        anyhow::ensure!(error.contains("line 5") && error.contains("`A`"), "{error}");
        let (a, b) = (import.ids["A"], import.ids["B"]);
        let feed = store.read_feed(0, 1000).await?;
        anyhow::ensure!(feed.len() == 4, "{} events written", feed.len());
        anyhow::ensure!(types(store, a).await? == ["Enrolled", "StageEntered"]);
        anyhow::ensure!(types(store, b).await? == ["Enrolled", "StageEntered"]);
        Ok(())
    }

    /// An import in batches of two that wrote A (enrolled, then in an internship, at sequence
    /// 2) and keeps its stream; then another writer executes `change` on A.
    async fn kept_then_changed<W: Write>(
        store: &Store,
        report: W,
        change: PathwayCommand,
    ) -> anyhow::Result<(Import<'_, W>, Uuid)> {
        let mut import = Import::new(store, "t", false, report, 2);
        import.line(1, &enrol("A", "2021-03-01")).await?;
        import
            .line(2, &stage("A", "internship", "2021-03-10"))
            .await?;
        import.settle().await?;
        let a = import.ids["A"];
        store
            .execute(a, change, CommandContext::new("another writer"))
            .await?
            .map_err(|r| anyhow::anyhow!("{r:?}"))?;
        Ok((import, a))
    }

    /// Another writer appends to a stream after the import wrote and cached it: the next batch,
    /// decided on the cached stream, loses its race on the stream's primary key and is executed
    /// one by one; the batch decided on top of it is decided again. The streams are what the
    /// same commands give one by one.
    async fn a_stream_changed_by_another_writer_after_the_import_cached_it_stays_right(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let db = scratch(backend).await?;
        let store = &db.store;
        let territory = PathwayCommand::ChangeTerritory {
            territory: "LOM-LC-LECCO".into(),
            on: "2021-04-01".parse()?,
        };
        let (mut import, a) = kept_then_changed(store, Vec::new(), territory).await?;
        // Decided on the cached A (sequence 2): written at sequences 3 and 4, which another
        // writer's event already holds.
        import
            .line(3, &stage("A", "job_placement", "2021-05-01"))
            .await?;
        import.line(4, &enrol("B", "2021-03-02")).await?;
        // Decided while the batch above is written, on top of it.
        import
            .line(
                5,
                r#"{"beneficiary": "A", "command": "exit", "on": "2021-06-01", "outcome": "interrupted"}"#,
            )
            .await?;
        import
            .line(6, &stage("B", "internship", "2021-03-12"))
            .await?;
        let b = import.ids["B"];
        import.settle().await?;
        anyhow::ensure!(import.races == 1, "{} lost races", import.races);
        let summary = import.finish().await?;
        anyhow::ensure!((summary.applied, summary.refused) == (6, 0), "{summary:?}");
        anyhow::ensure!(
            types(store, a).await?
                == [
                    "Enrolled",
                    "StageEntered",
                    "TerritoryChanged",
                    "StageExited",
                    "StageEntered",
                    "StageExited",
                ],
            "{:?}",
            types(store, a).await?
        );
        let sequences: Vec<u64> = store
            .read_feed(0, 1000)
            .await?
            .iter()
            .filter(|e| e.beneficiary_id == a)
            .map(|e| e.sequence)
            .collect();
        anyhow::ensure!(sequences == [1, 2, 3, 4, 5, 6], "{sequences:?}");
        anyhow::ensure!(types(store, b).await? == ["Enrolled", "StageEntered"]);
        Ok(())
    }

    /// A line the import's kept stream would refuse, but the stream as stored (another writer
    /// changed it since) accepts, is accepted: a refusal is checked against the stored stream.
    async fn a_refusal_decided_on_a_stream_another_writer_changed_is_decided_again(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let db = scratch(backend).await?;
        let store = &db.store;
        let close = PathwayCommand::ClosePathway {
            on: "2021-04-01".parse()?,
            outcome: CloseOutcome::MovedAway,
        };
        let (mut import, _) = kept_then_changed(store, Vec::new(), close).await?;
        // On the kept stream A is open, and a reopening is refused; as stored, A is closed.
        import
            .line(
                3,
                r#"{"beneficiary": "A", "command": "reopen", "on": "2021-05-01"}"#,
            )
            .await?;
        let summary = import.finish().await?;
        anyhow::ensure!((summary.applied, summary.refused) == (3, 0), "{summary:?}");
        let events = store.read_feed(0, 1000).await?;
        anyhow::ensure!(
            matches!(
                events.last().map(|e| &e.event),
                Some(PathwayEvent::PathwayReopened { .. })
            ),
            "{:?}",
            events.last()
        );
        Ok(())
    }

    /// Imports `lines` with --keep-going in batches of two: the summary, how many streams
    /// were loaded from the database, and the beneficiaries of `A` and `B`.
    async fn keep_going(
        store: &Store,
        lines: &[String],
        report: &mut Vec<u8>,
    ) -> anyhow::Result<(ImportSummary, usize, Uuid, Uuid)> {
        let mut import = Import::new(store, "t", true, report, 2);
        for (index, line) in lines.iter().enumerate() {
            import.line(index + 1, line).await?;
        }
        let loaded = import.streams.loaded();
        let (a, b) = (import.ids["A"], import.ids["B"]);
        let summary = import.finish().await?;
        Ok((summary, loaded, a, b))
    }

    /// Interleaved beneficiaries over several batches, with --keep-going and a refused
    /// enrolment whose later lines fall in later batches: the only stream loaded from the
    /// database is one of the batch holding the refusal, decided again on its streams as
    /// stored (the others were enrolled by the import, and later batches decide on the
    /// cache); refused lines are reported in file order; running the file again writes
    /// nothing and loads nothing.
    async fn a_pipelined_import_loads_no_stream_it_decided_and_reports_in_order(
        backend: Backend,
    ) -> anyhow::Result<()> {
        let db = scratch(backend).await?;
        let store = &db.store;
        let lines = [
            enrol("A", "2021-03-01"),
            enrol("B", "2021-03-01"),
            r#"{"beneficiary": "X", "command": "enrol", "territory": "ATLANTIS", "on": "2021-03-01", "referral": "other"}"#.to_owned(),
            stage("A", "internship", "2021-03-10"),
            stage("X", "internship", "2021-03-10"),
            stage("B", "socio_occupational", "2021-03-11"),
            stage("A", "job_placement", "2021-04-10"),
            stage("B", "internship", "2021-04-11"),
            stage("X", "job_placement", "2021-04-12"),
        ];
        let mut report = Vec::new();
        let (summary, loaded, a, b) = keep_going(store, &lines, &mut report).await?;
        anyhow::ensure!((summary.applied, summary.refused) == (6, 3), "{summary:?}");
        // Only the batch with the refused enrolment (lines 3 and 4) loads its streams, to check
        // the refusal against them as stored: A's (X's never stored, and none needed).
        anyhow::ensure!(loaded == 1, "{loaded} streams loaded");
        let report = String::from_utf8(report)?;
        let numbers: Vec<&str> = report
            .lines()
            .map(|l| l.split(' ').nth(1).unwrap_or_default())
            .collect();
        anyhow::ensure!(numbers == ["3", "5", "9"], "{report}");
        anyhow::ensure!(
            report.contains("line 9 (beneficiary `X`): skipped"),
            "{report}"
        );
        anyhow::ensure!(
            types(store, a).await? == ["Enrolled", "StageEntered", "StageExited", "StageEntered"]
        );
        anyhow::ensure!(
            types(store, b).await? == ["Enrolled", "StageEntered", "StageExited", "StageEntered"]
        );
        let head = store.head().await?;
        let mut report = Vec::new();
        let (again, loaded, a_again, _) = keep_going(store, &lines, &mut report).await?;
        anyhow::ensure!(
            (again.applied, again.replayed, again.refused) == (0, 6, 3),
            "{again:?}"
        );
        anyhow::ensure!(loaded == 0, "{loaded} streams loaded again");
        anyhow::ensure!(a_again == a, "the same beneficiary");
        anyhow::ensure!(store.head().await? == head, "nothing new was written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use filiera_domain::{
        AssessmentKind, CloseOutcome, ExitOutcome, Occupability, Referral, SupportBand, TeamMember,
    };

    use super::*;

    #[test]
    fn every_imported_command_reads_back_from_its_line() {
        let on = "2024-03-01".parse().unwrap();
        let commands = [
            PathwayCommand::Enrol {
                territory: "LOM-BG-BERGAMO".into(),
                on,
                referral: Referral::ThirdSector,
                support_band: Some(SupportBand::HighSupport),
            },
            PathwayCommand::Enrol {
                territory: "LOM-LC-LECCO".into(),
                on,
                referral: Referral::SelfReferral,
                support_band: None,
            },
            PathwayCommand::EnterStage {
                stage: "internship".into(),
                on,
                provider: Some("coop, \"alfa\"".into()),
            },
            PathwayCommand::EnterStage {
                stage: "internship".into(),
                on,
                provider: None,
            },
            PathwayCommand::ExitStage {
                on,
                outcome: ExitOutcome::Interrupted,
            },
            PathwayCommand::ChangeTerritory {
                territory: "PIE-TO-TORINO".into(),
                on,
            },
            PathwayCommand::ClosePathway {
                on,
                outcome: CloseOutcome::MovedAway,
            },
            PathwayCommand::ReopenPathway { on },
            PathwayCommand::AssessNeeds {
                on,
                kind: AssessmentKind::Multidisciplinary,
                occupability: Occupability::Medium,
                team: vec![TeamMember::SocialServices, TeamMember::HealthService],
            },
            PathwayCommand::Undo {
                reason: "typed twice".into(),
            },
        ];
        for command in commands {
            let line = import_line("R-7", &command).expect("an importable command");
            let (reference, parsed) = parse_line(&line.to_string()).expect("it parses back");
            assert_eq!(reference, "R-7");
            assert_eq!(parsed, command, "{line}");
        }
        assert!(import_line("R", &PathwayCommand::RecordErasure).is_none());
    }
}
