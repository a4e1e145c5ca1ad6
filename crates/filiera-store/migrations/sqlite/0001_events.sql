-- The event store of filiera (SQLite, the embedded default).
--
-- `events` has the columns sqlite-es reads and writes, plus the global position (SPEC 4.2)
-- and the server time of storage. Its primary key must stay (aggregate_type, aggregate_id,
-- sequence): sqlite-es reports a violation of it (extended code 1555) as an optimistic-lock
-- conflict. The store writes through a single connection, so commits are serialised.

CREATE TABLE events
(
    aggregate_type text    NOT NULL,
    aggregate_id   text    NOT NULL,
    sequence       integer NOT NULL CHECK (sequence >= 1),
    event_type     text    NOT NULL,
    event_version  text    NOT NULL,
    payload        text    NOT NULL,
    metadata       text    NOT NULL,
    -- 0 only between the insert and the AFTER INSERT trigger below, in the same statement.
    position       integer NOT NULL DEFAULT 0 UNIQUE,
    -- ISO-8601 UTC with milliseconds, e.g. 2025-03-01T09:30:12.345Z.
    recorded_at    text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

-- The global position: one more than the highest so far. With a single writer this is commit
-- order. It does not use the rowid, which VACUUM may renumber.
CREATE TRIGGER events_assign_position
    AFTER INSERT ON events
BEGIN
    UPDATE events
    SET position = (SELECT ifnull(max(position), 0) + 1 FROM events)
    WHERE rowid = NEW.rowid;
END;

-- Idempotency keys: see the PostgreSQL migration. Here another command reusing a bound key is
-- aborted with RAISE(ABORT), reported by SQLite as SQLITE_CONSTRAINT_TRIGGER (1811).
CREATE TABLE idempotency_keys
(
    key            text    PRIMARY KEY,
    aggregate_id   text    NOT NULL,
    command_id     text    NOT NULL,
    request_hash   text    NOT NULL,
    first_sequence integer NOT NULL,
    last_sequence  integer NOT NULL,
    -- For a later expiry job.
    created_at     text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TRIGGER events_bind_idempotency_key
    AFTER INSERT ON events
    WHEN json_extract(NEW.metadata, '$.idempotency_key') IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'filiera: idempotency key already bound to another command')
    WHERE EXISTS (SELECT 1
                  FROM idempotency_keys
                  WHERE key = json_extract(NEW.metadata, '$.idempotency_key')
                    AND (command_id <> json_extract(NEW.metadata, '$.command_id')
                      OR aggregate_id <> NEW.aggregate_id));
    INSERT INTO idempotency_keys
        (key, aggregate_id, command_id, request_hash, first_sequence, last_sequence)
    VALUES (json_extract(NEW.metadata, '$.idempotency_key'),
            NEW.aggregate_id,
            json_extract(NEW.metadata, '$.command_id'),
            ifnull(json_extract(NEW.metadata, '$.request_hash'), ''),
            NEW.sequence,
            NEW.sequence)
    ON CONFLICT (key) DO UPDATE SET last_sequence = max(last_sequence, excluded.last_sequence);
END;
