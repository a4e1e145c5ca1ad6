-- The event store of filiera (PostgreSQL).
--
-- `events` has the columns postgres-es reads and writes, plus the global position (SPEC 4.2)
-- and the server time of storage. Its primary key must stay (aggregate_type, aggregate_id,
-- sequence): postgres-es reports a violation of it (SQLSTATE 23505) as an optimistic-lock
-- conflict, which is how two writers racing on one stream are told apart.

CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events
(
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL CHECK (sequence >= 1),
    event_type     text        NOT NULL,
    event_version  text        NOT NULL,
    payload        jsonb       NOT NULL,
    metadata       jsonb       NOT NULL,
    -- Set by the BEFORE INSERT trigger below, never by the writer.
    position       bigint      NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    CONSTRAINT events_position_key UNIQUE (position)
);

ALTER SEQUENCE events_position_seq OWNED BY events.position;

-- Commit-order-safe positions. The advisory lock is transaction-scoped, so it is held until
-- the inserting transaction commits or aborts: writers of events are serialised from their
-- first insert to their commit, and positions are handed out in commit order. A reader that
-- has seen position P will never later see a committed event below P. Aborted transactions
-- leave gaps, which readers ignore. The key is 'filiera' read as a big-endian integer.
CREATE FUNCTION filiera_events_assign_position() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_advisory_xact_lock(28826361970127457);
    NEW.position := nextval('events_position_seq');
    NEW.recorded_at := clock_timestamp();
    -- Delivered at commit only; a wake-up hint for feed readers in other processes.
    PERFORM pg_notify('filiera_events', NEW.position::text);
    RETURN NEW;
END
$$;

CREATE TRIGGER events_assign_position
    BEFORE INSERT ON events
    FOR EACH ROW
EXECUTE FUNCTION filiera_events_assign_position();

-- Idempotency keys: the first execution of a keyed command binds the key to its command_id;
-- further events of that command extend the range; an event of another command carrying the
-- same key aborts its transaction with unique_violation, which postgres-es reports as an
-- optimistic-lock conflict. The store then finds the key and answers with the first execution.
CREATE TABLE idempotency_keys
(
    key            text        PRIMARY KEY,
    aggregate_id   text        NOT NULL,
    command_id     text        NOT NULL,
    request_hash   text        NOT NULL,
    first_sequence bigint      NOT NULL,
    last_sequence  bigint      NOT NULL,
    -- For a later expiry job.
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE FUNCTION filiera_events_bind_idempotency_key() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    INSERT INTO idempotency_keys AS k
        (key, aggregate_id, command_id, request_hash, first_sequence, last_sequence)
    VALUES (NEW.metadata ->> 'idempotency_key',
            NEW.aggregate_id,
            NEW.metadata ->> 'command_id',
            coalesce(NEW.metadata ->> 'request_hash', ''),
            NEW.sequence,
            NEW.sequence)
    ON CONFLICT (key) DO UPDATE
        SET last_sequence = greatest(k.last_sequence, excluded.last_sequence)
        WHERE k.command_id = excluded.command_id
          AND k.aggregate_id = excluded.aggregate_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = 'filiera: idempotency key already bound to another command';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_bind_idempotency_key
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.metadata ? 'idempotency_key')
EXECUTE FUNCTION filiera_events_bind_idempotency_key();
