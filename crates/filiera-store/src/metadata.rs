//! The metadata stored with every event. cqrs-es copies one `HashMap<String, String>` onto each
//! event of a command; these are its keys. Projections and the relay read them from the feed.

/// A fresh UUID per execution of a command: events sharing it were written together.
pub const COMMAND_ID: &str = "command_id";
/// Who asked for the command (a token subject, `import`, …).
pub const PRINCIPAL: &str = "principal";
/// The command's short name ([`filiera_domain::PathwayCommand::name`]).
pub const COMMAND: &str = "command";
/// The territory in force after the command; for an undo that voids the enrolment, the
/// territory before it. Used for NATS subjects, feed items and authorisation.
pub const TERRITORY: &str = "territory";
/// The client's `Idempotency-Key`, when one was given. Read by the `idempotency_keys` trigger.
pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
/// A hash of the request that carried the idempotency key, to detect a key reused for another
/// request.
pub const REQUEST_HASH: &str = "request_hash";
