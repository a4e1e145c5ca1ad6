-- One of a batch's timelines ($4 id, $5 JSON text), stamped with the new checkpoint $3.
INSERT INTO projection_timelines (projection, generation, beneficiary_id, timeline, updated_position)
VALUES ($1, $2, $4, $5, $3)
ON CONFLICT (projection, generation, beneficiary_id) DO UPDATE
SET timeline = excluded.timeline, updated_position = excluded.updated_position
