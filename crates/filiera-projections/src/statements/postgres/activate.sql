-- The building generation $2 becomes active, if it is still at position $3.
UPDATE projection_generations
SET status = 'active', activated_at = clock_timestamp()
WHERE projection = $1 AND generation = $2 AND status = 'building' AND position = $3
