-- The stored timelines of the ids in $3 (a text array) in generation $2.
SELECT beneficiary_id, timeline FROM projection_timelines
WHERE projection = $1 AND generation = $2 AND beneficiary_id = ANY($3)
