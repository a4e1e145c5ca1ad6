//! Group commit (ADR 0011): commands arriving together share one transaction.
//!
//! The position lock of ADR 0001 is held from a writer's first insert to its commit, WAL flush
//! included, so one command per transaction caps a PostgreSQL store at one flush at a time,
//! about a thousand commits a second whatever the number of clients. With group commit
//! [`Store::execute`] hands its command to one task per store, the committer, which takes every
//! command queued while it wrote the previous group and executes them as the import's batches
//! are executed (`batch`): the idempotency keys looked up and the streams loaded with one
//! statement each, every command decided in memory against its stream, the accepted events
//! written in one transaction under the lock with positions reserved per statement (ADR 0010),
//! and read back with one statement before anyone is answered. Under load a group holds as many
//! commands as clients wait; alone, a command is a group of one and waits for nobody.
//!
//! The answers are those of [`Store::execute`], command by command:
//! - a refusal refuses that command only, and writes nothing for it, and so does a scope that
//!   does not admit the stream as the group's earlier commands left it;
//! - two commands of one group for the same beneficiary raced, as two writers that loaded the
//!   same stream race: the first one accepted wins; a later one is refused if its scope or the
//!   rules refuse it on the stream it loaded, and else gets [`Rejection::Conflict`] (SPEC 2.3);
//! - whatever the group cannot decide on its own is handed back to its caller, which executes
//!   it alone, as without group commit: a key already bound (answered from the first
//!   execution), a key repeated within the group (answered after the group commits), and every
//!   command of a group whose write lost a race with another writer or failed before it could
//!   commit (nothing of it was written);
//! - if the connection broke while the group was committing, no one can tell whether it was
//!   stored: each of its accepted commands gets [`StoreError::OutcomeUnknown`], which a retry
//!   with the same idempotency key resolves.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use filiera_domain::{Pathway, PathwayCommand};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::batch::{Row, is_race};
use crate::store::WeakStore;
use crate::{CommandContext, Executed, Rejection, Store, StoreError, StoredEvent};

/// The most commands one group takes: enough for every client of a busy service at once,
/// few enough that one group's statement stays small.
const MAX_GROUP: usize = 256;

/// Commands waiting for the committer, beyond which callers wait to queue.
const QUEUE: usize = 4 * MAX_GROUP;

/// The handle [`Store::execute`] queues commands on.
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

/// What the committer answers a caller.
pub(crate) enum Grouped {
    /// The command was decided in its group: this is what [`Store::execute`] answers.
    Answered(Result<Result<Executed, Rejection>, StoreError>),
    /// The group could not decide it: the caller executes it alone.
    Alone(PathwayCommand, CommandContext),
}

/// A queued command and where its answer goes.
struct Pending {
    beneficiary: Uuid,
    command: PathwayCommand,
    ctx: CommandContext,
    answer: oneshot::Sender<Grouped>,
}

/// What the group decided for one command, before the write.
enum Decision {
    /// Accepted: written with the group. The stream's version before it, and the stream
    /// right after it.
    Apply { before: u64, pathway: Pathway },
    /// Answered without writing (a refusal, a conflict within the group).
    Answer(Rejection),
    /// Handed back to its caller.
    Alone,
}

impl GroupCommit {
    /// Starts the committer of `store`. It holds the store weakly and stops when the store's
    /// last clone is dropped (the queue closes with it).
    pub(crate) fn start(store: WeakStore) -> Self {
        let (queue, commands) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, commands));
        Self { queue }
    }

    /// Queues a command and waits for the committer's answer. If the committer is gone (the
    /// runtime is shutting down), the command comes back to be executed alone.
    pub(crate) async fn submit(
        &self,
        beneficiary: Uuid,
        command: PathwayCommand,
        ctx: CommandContext,
    ) -> Grouped {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            beneficiary,
            command,
            ctx,
            answer,
        };
        if let Err(mpsc::error::SendError(pending)) = self.queue.send(pending).await {
            return Grouped::Alone(pending.command, pending.ctx);
        }
        answered.await.unwrap_or_else(|_| {
            Grouped::Answered(Err(StoreError::OutcomeUnknown {
                stored: false,
                cause: Box::new(StoreError::EventStore(
                    "the group committer stopped while the command was queued".into(),
                )),
            }))
        })
    }
}

/// The committer: one group at a time, each made of every command queued meanwhile.
async fn run(store: WeakStore, mut commands: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while commands.recv_many(&mut group, MAX_GROUP).await > 0 {
        // A caller that gave up (its deadline passed) was told the outcome is unknown:
        // leaving its command out keeps that true.
        group.retain(|pending: &Pending| !pending.answer.is_closed());
        let Some(store) = store.upgrade() else { break };
        if !group.is_empty() {
            // On a task of its own, so that a panic deciding one group (its callers then get
            // `OutcomeUnknown`, their answers dropped) does not end the committer.
            let group = std::mem::take(&mut group);
            if let Err(panic) = tokio::spawn(async move { store.commit_group(group).await }).await {
                tracing::error!(error = %panic, "a group commit panicked");
            }
        }
    }
}

impl Store {
    /// Decides and writes one group, and answers every caller in it.
    async fn commit_group(&self, group: Vec<Pending>) {
        tracing::debug!(commands = group.len(), "group commit");
        let deadline = self.options().query_timeout;
        let decided = tokio::time::timeout(deadline, sendable(self.decide_group(&group))).await;
        let (decisions, rows) = match decided {
            Ok(Ok(decided)) => decided,
            // Nothing was written: each caller executes alone, and meets the failure (if it
            // lasts) on its own.
            Ok(Err(error)) => {
                tracing::debug!(error = %crate::error::error_chain(&error), "a group could not be decided");
                return hand_back(group);
            }
            Err(_) => return hand_back(group),
        };
        let streams = if rows.is_empty() {
            HashMap::new()
        } else {
            match tokio::time::timeout(deadline, sendable(self.write_rows(&rows))).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) if is_race(&error) => {
                    tracing::info!("a group lost a race with another writer: executing it alone");
                    return hand_back(group);
                }
                Ok(Err(error)) if !stored_maybe(&error) => return hand_back(group),
                Ok(Err(error)) => return answer_unknown(group, decisions, false, error),
                Err(_) => {
                    return answer_unknown(group, decisions, false, StoreError::TimedOut(deadline));
                }
            }
            let applied: Vec<Uuid> = group
                .iter()
                .zip(&decisions)
                .filter(|(_, decision)| matches!(decision, Decision::Apply { .. }))
                .map(|(pending, _)| pending.beneficiary)
                .collect();
            match tokio::time::timeout(deadline, sendable(self.fetch_streams(&applied))).await {
                Ok(Ok(streams)) => streams,
                Ok(Err(error)) => return answer_unknown(group, decisions, true, error),
                Err(_) => {
                    return answer_unknown(group, decisions, true, StoreError::TimedOut(deadline));
                }
            }
        };
        if let Some(last) = streams.values().flatten().map(|e| e.position).max() {
            crate::store::bump_wakeups(self, last);
        }
        answer(group, decisions, |beneficiary, before, pathway| {
            executed(&streams, beneficiary, before, pathway)
        });
    }

    /// Decides every command of the group in order, each against its stream as the earlier
    /// commands of the group left it, and the rows of the accepted ones.
    async fn decide_group(
        &self,
        group: &[Pending],
    ) -> Result<(Vec<Decision>, Vec<Row>), StoreError> {
        let (bound, mut streams) = self
            .prepare(group.iter().map(|p| (p.beneficiary, &p.ctx)))
            .await?;
        let mut decisions = Vec::with_capacity(group.len());
        let mut rows = Vec::new();
        let mut keys_seen = HashSet::new();
        // The streams the group writes, as they were loaded.
        let mut before_group: HashMap<Uuid, Pathway> = HashMap::new();
        for pending in group {
            let key = pending.ctx.idempotency.as_ref();
            if key.is_some_and(|k| bound.contains_key(&k.key) || !keys_seen.insert(&k.key)) {
                decisions.push(Decision::Alone);
                continue;
            }
            if let Some(loaded) = before_group.get(&pending.beneficiary) {
                // Another command of the group wrote this stream: this one raced with it, as a
                // writer that loaded the same stream would. It is answered as that writer
                // would be: refused if its scope or the rules refuse it on the stream it
                // loaded, else beaten to the commit.
                let answer = match self
                    .decide(pending.beneficiary, loaded, &pending.command, &pending.ctx)
                    .await?
                {
                    Err(rejection) => rejection,
                    Ok(_) => Rejection::Conflict,
                };
                decisions.push(Decision::Answer(answer));
                continue;
            }
            let stream = streams.entry(pending.beneficiary).or_default();
            let decided = self
                .decide(pending.beneficiary, stream, &pending.command, &pending.ctx)
                .await?;
            match decided {
                Ok((pathway, decided_rows)) => {
                    decisions.push(Decision::Apply {
                        before: stream.version(),
                        pathway: pathway.clone(),
                    });
                    rows.extend(decided_rows);
                    before_group.insert(pending.beneficiary, std::mem::replace(stream, pathway));
                }
                Err(rejection) => decisions.push(Decision::Answer(rejection)),
            }
        }
        Ok((decisions, rows))
    }
}

/// `future`, boxed where its lifetimes are concrete: rustc cannot prove on its own that the
/// committer's future is `Send` through sqlx's executors borrowed across awaits (rust-lang/rust
/// issue 102211, "implementation of `Send` is not general enough"); checked here, it can.
fn sendable<'a, T>(
    future: impl Future<Output = T> + Send + 'a,
) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}

/// Whether a failed group write may have been stored: the connection broke, so whether the
/// server got and applied its `COMMIT` cannot be told. Any error the database reported means
/// it rolled back.
fn stored_maybe(error: &StoreError) -> bool {
    match error {
        StoreError::Database(error) => crate::error::leaves_outcome_unknown(error),
        _ => false,
    }
}

/// Every command back to its caller, to be executed alone.
fn hand_back(group: Vec<Pending>) {
    for pending in group {
        // A caller that went away needs no answer.
        let _ = pending
            .answer
            .send(Grouped::Alone(pending.command, pending.ctx));
    }
}

/// Answers every caller: an accepted command with `applied(beneficiary, before, pathway)`,
/// the others as decided.
fn answer(
    group: Vec<Pending>,
    decisions: Vec<Decision>,
    mut applied: impl FnMut(Uuid, u64, Pathway) -> Result<Result<Executed, Rejection>, StoreError>,
) {
    for (pending, decision) in group.into_iter().zip(decisions) {
        let answer = match decision {
            Decision::Apply { before, pathway } => {
                Grouped::Answered(applied(pending.beneficiary, before, pathway))
            }
            Decision::Answer(rejection) => Grouped::Answered(Ok(Err(rejection))),
            Decision::Alone => Grouped::Alone(pending.command, pending.ctx),
        };
        let _ = pending.answer.send(answer);
    }
}

/// Answers a group whose commit may or may not have been stored (`stored: false`), or that
/// was committed but could not be read back (`stored: true`).
fn answer_unknown(group: Vec<Pending>, decisions: Vec<Decision>, stored: bool, error: StoreError) {
    let error = Arc::new(error);
    answer(group, decisions, |_, _, _| {
        Err(StoreError::OutcomeUnknown {
            stored,
            cause: Box::new(StoreError::Shared(error.clone())),
        })
    });
}

/// The answer to an accepted command of a committed group: its events as read back.
fn executed(
    streams: &HashMap<Uuid, Vec<StoredEvent>>,
    beneficiary: Uuid,
    before: u64,
    pathway: Pathway,
) -> Result<Result<Executed, Rejection>, StoreError> {
    let events: Vec<StoredEvent> = streams
        .get(&beneficiary)
        .into_iter()
        .flatten()
        .filter(|e| e.sequence > before && e.sequence <= pathway.version())
        .cloned()
        .collect();
    crate::store::readable(pathway.version() - before, &events)?;
    Ok(Ok(Executed {
        beneficiary,
        pathway,
        events,
        replayed: false,
    }))
}
