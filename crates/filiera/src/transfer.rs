//! `filiera import` (legacy history as NDJSON commands) and `filiera export` (NDJSON events).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use filiera_contract::refusal_detail;
use filiera_contract::{
    AssessmentBody, CloseBody, EnrolBody, ExitBody, FeedItem, ReopenBody, StageBody, TerritoryBody,
    UndoBody,
};
use filiera_domain::PathwayCommand;
use filiera_store::{BatchCommand, BatchOutcome, CommandContext, IdempotencyKey, Rejection, Store};
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

/// Imports NDJSON commands. Each command carries the idempotency key
/// `import:<batch>:<ref>:<n>` (its n-th command for that reference), so running the same file
/// again writes nothing new and maps every reference to the same beneficiary.
///
/// Lines are executed in batches ([`Store::execute_batch`]): every line is decided by the
/// aggregate with the same rules as over HTTP, a batch's accepted commands are written in one
/// transaction, and a refused line writes nothing. Without `keep_going` the import stops at the
/// first refused line, after writing the lines before it.
pub async fn import(
    store: &Store,
    input: impl BufRead,
    batch: &str,
    keep_going: bool,
    report: impl Write,
) -> anyhow::Result<ImportSummary> {
    let mut import = Import {
        store,
        batch,
        keep_going,
        report,
        ids: HashMap::new(),
        counts: HashMap::new(),
        refused_enrolments: HashSet::new(),
        pending: Vec::new(),
        summary: ImportSummary::default(),
    };
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed = parse_line(&line);
        let (reference, command) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => {
                import.flush().await?;
                bail!("line {number}: {err}");
            }
        };
        // A second enrolment of a reference enrolled in the pending batch: whether the first
        // one stands decides what this line means (enrolled twice, or skipped), so the batch
        // is written first.
        if matches!(command, PathwayCommand::Enrol { .. })
            && import
                .pending
                .iter()
                .any(|p| p.enrols && p.reference == reference)
        {
            import.flush().await?;
        }
        import.add(number, reference, command, &line).await?;
        if import.pending.len() >= BATCH_LINES {
            import.flush().await?;
        }
    }
    import.flush().await?;
    if import.summary.applied > 0 {
        // What was just loaded must look as big as it is to the planner of the next queries
        // (the replay of `filiera report`, a projection catching up).
        store.analyze().await?;
    }
    import.summary.beneficiaries = import.ids.len();
    Ok(import.summary)
}

/// An import under way.
struct Import<'s, W> {
    store: &'s Store,
    batch: &'s str,
    keep_going: bool,
    report: W,
    /// The beneficiary of each reference (tentative for enrolments of the pending batch).
    ids: HashMap<String, Uuid>,
    /// Commands seen per reference, for the idempotency keys.
    counts: HashMap<String, usize>,
    /// References whose enrolment was refused (with `keep_going`).
    refused_enrolments: HashSet<String>,
    /// Lines parsed and not yet executed.
    pending: Vec<PendingLine>,
    summary: ImportSummary,
}

/// A parsed line waiting for its batch.
struct PendingLine {
    number: usize,
    reference: String,
    enrols: bool,
    command: PathwayCommand,
    key: IdempotencyKey,
}

impl<W: Write> Import<'_, W> {
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
        if self.refused_enrolments.contains(&reference) {
            // Its enrolment was refused (with --keep-going): so is everything after it.
            return self.refused(number, &reference, SKIPPED);
        }
        let enrols = matches!(command, PathwayCommand::Enrol { .. });
        match (enrols, self.ids.contains_key(&reference)) {
            (true, true) => {
                self.flush().await?;
                bail!("line {number}: beneficiary `{reference}` is enrolled twice in this file")
            }
            (false, false) => {
                self.flush().await?;
                bail!(
                    "line {number}: beneficiary `{reference}` has no earlier `enrol` line in this \
                     file"
                )
            }
            _ => {}
        }
        if enrols {
            // A new id; replaced at the flush by the stored one if a run of this batch
            // already stored the enrolment.
            self.ids.insert(reference.clone(), Uuid::new_v4());
        }
        self.pending.push(PendingLine {
            number,
            reference,
            enrols,
            command,
            key,
        });
        Ok(())
    }

    /// Executes the pending lines as one batch and reports what happened to each.
    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        // Enrolments stored by an earlier run of this batch keep their beneficiary: one
        // lookup for the whole batch.
        let enrolment_keys: Vec<String> = pending
            .iter()
            .filter(|p| p.enrols)
            .map(|p| p.key.key.clone())
            .collect();
        let bound = self.store.bound_keys(&enrolment_keys).await?;
        for line in pending.iter().filter(|p| p.enrols) {
            if let Some(stored) = bound.get(&line.key.key) {
                self.ids.insert(line.reference.clone(), stored.beneficiary);
            }
        }
        let commands = pending
            .iter()
            .map(|p| BatchCommand {
                beneficiary: self.ids[&p.reference],
                command: p.command.clone(),
                ctx: CommandContext {
                    principal: "import".into(),
                    idempotency: Some(p.key.clone()),
                    scope: None,
                },
            })
            .collect();
        let outcomes = self.store.execute_batch(commands, !self.keep_going).await?;
        for (line, outcome) in pending.into_iter().zip(outcomes) {
            let PendingLine {
                number, reference, ..
            } = line;
            if self.refused_enrolments.contains(&reference) {
                self.refused(number, &reference, SKIPPED)?;
                continue;
            }
            let rejection = match outcome {
                BatchOutcome::Applied { .. } => {
                    self.summary.applied += 1;
                    continue;
                }
                BatchOutcome::Replayed { .. } => {
                    self.summary.replayed += 1;
                    continue;
                }
                BatchOutcome::Skipped => continue,
                BatchOutcome::Refused(rejection) => rejection,
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
            if line.enrols {
                self.ids.remove(&reference);
                self.refused_enrolments.insert(reference.clone());
            }
            self.refused(number, &reference, &why)?;
        }
        Ok(())
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
