-- The active and building generations of a projection.
SELECT generation, status, position, started_at, format
FROM projection_generations
WHERE projection = $1 AND status IN ('active', 'building')
