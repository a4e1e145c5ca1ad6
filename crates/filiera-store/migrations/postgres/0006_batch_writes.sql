-- Batch writes assign positions and bind idempotency keys once per statement (ADR 0010).
--
-- The two row triggers of 0001 stay the rule for every writer, postgres-es's per-command
-- inserts included. They are recreated with a WHEN condition so that they stand aside for a
-- transaction that declares, with the transaction-local setting `filiera.batch_write = 'on'`
-- (`SET LOCAL`, gone at commit or rollback), that it does their work itself. The store's batch
-- write (`write_rows` in crates/filiera-store/src/batch.rs) is that transaction, and the only
-- one: after `SET LOCAL` it takes the same advisory lock as `filiera_events_assign_position`,
-- held to commit, reserves a block of positions from `events_position_seq` (`nextval`, then
-- `setval` to the block's end: safe because only holders of the lock advance the sequence),
-- inserts its rows with explicit positions in batch order and one `recorded_at`
-- (clock_timestamp() after the lock), sends one `pg_notify('filiera_events', <last position>)`,
-- and binds its keys with one upsert into `idempotency_keys`, checked by
-- `filiera_check_idempotency_keys_bound` below. A transaction that sets the flag and inserts
-- without doing that work fails: `position` and `recorded_at` are NOT NULL.
--
-- current_setting(…, true) is NULL in a session that never set the flag, and '' after a
-- transaction that set it locally has ended: both are DISTINCT FROM 'on', so the triggers fire.

DROP TRIGGER events_assign_position ON events;

CREATE TRIGGER events_assign_position
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (current_setting('filiera.batch_write', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION filiera_events_assign_position();

DROP TRIGGER events_bind_idempotency_key ON events;

CREATE TRIGGER events_bind_idempotency_key
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.metadata ? 'idempotency_key'
        AND current_setting('filiera.batch_write', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION filiera_events_bind_idempotency_key();

-- The end of a batch's key upsert: `keys` distinct keys in the batch, `bound` rows the upsert
-- inserted or extended. Fewer bound than keys means a key belongs to another command (bound
-- before, or by another command of the same batch): the transaction fails exactly as
-- `filiera_events_bind_idempotency_key` fails it, with unique_violation, which the batch takes
-- for a lost race (it then executes its commands one by one through `Store::execute`).
CREATE FUNCTION filiera_check_idempotency_keys_bound(keys bigint, bound bigint) RETURNS bigint
    LANGUAGE plpgsql AS
$$
BEGIN
    IF bound < keys THEN
        RAISE EXCEPTION USING
            ERRCODE = 'unique_violation',
            MESSAGE = 'filiera: idempotency key already bound to another command';
    END IF;
    RETURN bound;
END
$$;
