-- Every timeline of a batch on a generation that has none yet, in PostgreSQL's binary format:
-- projection, generation, beneficiary id, JSON text, checkpoint (see `CopyData`).
COPY projection_timelines (projection, generation, beneficiary_id, timeline, updated_position)
FROM STDIN (FORMAT binary)
