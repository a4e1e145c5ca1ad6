-- A batch's timelines ($4 ids, $5 JSON texts, as arrays), stamped with the new checkpoint $3.
INSERT INTO projection_timelines (projection, generation, beneficiary_id, timeline, updated_position)
SELECT $1, $2, u.id, u.timeline, $3
FROM UNNEST($4::text[], $5::text[]) AS u (id, timeline)
ON CONFLICT (projection, generation, beneficiary_id) DO UPDATE
SET timeline = excluded.timeline, updated_position = excluded.updated_position
