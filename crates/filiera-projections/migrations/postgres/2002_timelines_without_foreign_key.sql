-- Timeline rows no longer reference their generation with a foreign key (ADR 0016). Rows are
-- only ever written by a batch whose transaction first moved that generation's checkpoint with
-- a compare-and-set (so the generation exists, and its row is locked until the commit), and
-- generations are never deleted: the key could not fail, and its check, a trigger per row, was
-- a third of the time PostgreSQL spent storing a rebuilt generation.
ALTER TABLE projection_timelines
    DROP CONSTRAINT IF EXISTS projection_timelines_projection_generation_fkey;
