-- The stored timelines of the ids in $3 (a JSON array) in generation $2. The CROSS JOIN makes
-- SQLite probe the primary key once per id instead of scanning the generation's rows.
SELECT t.beneficiary_id, t.timeline
FROM json_each($3) AS ids CROSS JOIN projection_timelines AS t
WHERE t.projection = $1 AND t.generation = $2 AND t.beneficiary_id = ids.value
