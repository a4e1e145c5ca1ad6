-- The active generation's checkpoint and timeline format and its rows changed after position
-- $3, in one statement (so one snapshot); only if the active generation is $2, when $2 is
-- given. A generation with no changed row still answers one row, with null timeline columns.
SELECT g.generation, g.position, g.format, t.beneficiary_id, t.timeline
FROM projection_generations g
LEFT JOIN projection_timelines t
  ON t.projection = g.projection AND t.generation = g.generation
 AND t.updated_position > $3
WHERE g.projection = $1 AND g.status = 'active'
  AND (CAST($2 AS bigint) IS NULL OR g.generation = $2)
