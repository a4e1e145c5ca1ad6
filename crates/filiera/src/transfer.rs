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
use filiera_store::{CommandContext, IdempotencyKey, Rejection, Store};
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

/// Imports NDJSON commands. Each command carries the idempotency key
/// `import:<batch>:<ref>:<n>` (its n-th command for that reference), so running the same file
/// again writes nothing new and maps every reference to the same beneficiary.
pub async fn import(
    store: &Store,
    input: impl BufRead,
    batch: &str,
    keep_going: bool,
    mut report: impl Write,
) -> anyhow::Result<ImportSummary> {
    let mut ids: HashMap<String, Uuid> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut refused_enrolments: HashSet<String> = HashSet::new();
    let mut summary = ImportSummary::default();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("cannot read line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let (reference, command) = match parse_line(&line) {
            Ok(parsed) => parsed,
            Err(err) => bail!("line {number}: {err}"),
        };
        let n = counts.entry(reference.clone()).or_default();
        *n += 1;
        if refused_enrolments.contains(&reference) {
            // Its enrolment was refused (with --keep-going): so is everything after it.
            summary.refused += 1;
            writeln!(
                report,
                "line {number} (beneficiary `{reference}`): skipped, its enrolment was refused"
            )?;
            continue;
        }
        let beneficiary = match (&command, ids.get(&reference)) {
            (PathwayCommand::Enrol { .. }, None) => Uuid::new_v4(),
            (PathwayCommand::Enrol { .. }, Some(_)) => {
                bail!("line {number}: beneficiary `{reference}` is enrolled twice in this file")
            }
            (_, Some(id)) => *id,
            (_, None) => bail!(
                "line {number}: beneficiary `{reference}` has no earlier `enrol` line in this file"
            ),
        };
        let ctx = CommandContext {
            principal: "import".into(),
            idempotency: Some(IdempotencyKey::for_request(
                format!("import:{batch}:{reference}:{n}"),
                &[line.trim().as_bytes()],
            )),
        };
        match store.execute(beneficiary, command, ctx).await? {
            Ok(executed) => {
                ids.insert(reference, executed.beneficiary);
                if executed.replayed {
                    summary.replayed += 1;
                } else {
                    summary.applied += 1;
                }
            }
            Err(rejection) => {
                let why = match rejection {
                    Rejection::Refused(err) => format!("{} ({})", refusal_detail(&err), err.code()),
                    Rejection::Conflict => "another writer changed this beneficiary".into(),
                    Rejection::IdempotencyKeyReused => format!(
                        "this line differs from the one imported earlier in batch `{batch}`"
                    ),
                };
                if !keep_going {
                    bail!("line {number} (beneficiary `{reference}`): {why}");
                }
                if !ids.contains_key(&reference) {
                    refused_enrolments.insert(reference.clone());
                }
                summary.refused += 1;
                writeln!(report, "line {number} (beneficiary `{reference}`): {why}")?;
            }
        }
    }
    summary.beneficiaries = ids.len();
    Ok(summary)
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
