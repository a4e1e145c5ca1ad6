-- The active and building generations of a projection.
SELECT generation, status, position, started_at
FROM projection_generations
WHERE projection = $1 AND status IN ('active', 'building')
