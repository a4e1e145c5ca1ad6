//! What callers give the store and what they get back.

use chrono::{DateTime, Utc};
use filiera_domain::{Pathway, PathwayError, PathwayEvent, RecordedEvent};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

/// Who is executing a command, and how to recognise a retry of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandContext {
    /// The acting principal, stored in the metadata of every event of the command.
    pub principal: String,
    /// The idempotency key of the request, if the client sent one.
    pub idempotency: Option<IdempotencyKey>,
    /// The streams the principal may write to, if it may not write to every one.
    pub scope: Option<WriteScope>,
}

impl CommandContext {
    /// A context without idempotency key, for a principal that may write to every stream.
    pub fn new(principal: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            idempotency: None,
            scope: None,
        }
    }

    /// The same context, restricted to the streams `scope` admits.
    pub fn within(mut self, scope: WriteScope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// The same context with an idempotency key.
    pub fn with_idempotency(
        mut self,
        key: impl Into<String>,
        request_hash: impl Into<String>,
    ) -> Self {
        self.idempotency = Some(IdempotencyKey {
            key: key.into(),
            request_hash: request_hash.into(),
        });
        self
    }
}

/// Which streams a principal may write to (an operator: its territories), judged on the stream
/// as the command is decided against it: the store checks it on the very state it decides on,
/// so no separate read is needed and no write can slip in between check and decision. A stream
/// it does not admit is answered [`Rejection::OutOfScope`], as if it did not exist.
#[derive(Clone)]
pub struct WriteScope(std::sync::Arc<dyn Fn(&Pathway) -> bool + Send + Sync>);

impl WriteScope {
    /// The streams for which `admits` is true.
    pub fn new(admits: impl Fn(&Pathway) -> bool + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(admits))
    }

    /// Whether the principal may write to `stream`.
    pub fn admits(&self, stream: &Pathway) -> bool {
        (self.0)(stream)
    }
}

impl std::fmt::Debug for WriteScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteScope")
    }
}

/// Two scopes are equal when they are the same scope (a predicate cannot be compared).
impl PartialEq for WriteScope {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for WriteScope {}

/// A client's `Idempotency-Key` together with a hash of the request it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key. Keys are global: the HTTP layer may prefix them (e.g. with the principal).
    pub key: String,
    /// A hash of the request (method, path, body). The same key with another hash is refused
    /// with [`Rejection::IdempotencyKeyReused`].
    pub request_hash: String,
}

impl IdempotencyKey {
    /// `key` for a request made of `parts` (for HTTP: method, path, canonical body; for an
    /// import: the line), hashed with the one recipe every writer uses: SHA-256 over the parts
    /// separated by a zero byte, in hexadecimal.
    pub fn for_request(key: String, parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                hasher.update([0]);
            }
            hasher.update(part);
        }
        Self {
            key,
            request_hash: hex::encode(hasher.finalize()),
        }
    }
}

/// A command that was applied, now or by an earlier request with the same idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    /// The stream the command was applied to. For a replay, the stream of the first execution,
    /// which for an enrolment may differ from the id this request proposed.
    pub beneficiary: Uuid,
    /// The stream right after this command (not including later commands, for a replay).
    pub pathway: Pathway,
    /// The events this command wrote, in sequence order.
    pub events: Vec<StoredEvent>,
    /// `true` when answered from an earlier execution with the same idempotency key; nothing
    /// was written.
    pub replayed: bool,
}

/// Why a command was not applied. Nothing was written.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The pathway rules refused it.
    #[error(transparent)]
    Refused(#[from] PathwayError),
    /// Another writer committed to the same stream since it was loaded; the client may retry.
    #[error("the beneficiary was changed concurrently; retry the command")]
    Conflict,
    /// The idempotency key was already used for a different request.
    #[error("the Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// The command's [`WriteScope`] does not admit the stream (or the stream does not exist).
    #[error("no beneficiary with this id within the caller's scope")]
    OutOfScope,
}

/// One stored event with what the store adds to it: its global position, its stream and
/// sequence, the time it was stored and the metadata feed readers need.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// The global position (SPEC 4.2): increasing in commit order, possibly with gaps.
    pub position: i64,
    /// The stream (beneficiary) the event belongs to.
    pub beneficiary_id: Uuid,
    /// The event's sequence in its stream, from 1.
    pub sequence: u64,
    /// The event.
    pub event: PathwayEvent,
    /// The server time at which the event was stored.
    pub recorded_at: DateTime<Utc>,
    /// The territory in force after the event's command (metadata `territory`).
    pub territory: Option<String>,
    /// Who executed the event's command (metadata `principal`).
    pub principal: Option<String>,
    /// Whether a later undo voided the event. Only computed by [`crate::Store::history`];
    /// always `false` in the feed and in [`Executed::events`].
    pub voided: bool,
}

impl StoredEvent {
    /// What the metric fold reads of the event (the domain's [`RecordedEvent`]), with its
    /// beneficiary.
    pub fn into_recorded(self) -> (Uuid, RecordedEvent) {
        (
            self.beneficiary_id,
            RecordedEvent {
                sequence: self.sequence,
                recorded_at: self.recorded_at,
                event: self.event,
            },
        )
    }
}
