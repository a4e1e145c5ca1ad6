-- The compare-and-set every batch starts with: the generation's checkpoint moves from $3 to $4
-- only if nobody moved it since, and never on a retired generation.
UPDATE projection_generations SET position = $4
WHERE projection = $1 AND generation = $2 AND position = $3 AND status <> 'retired'
