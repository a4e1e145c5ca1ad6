-- One generation, whatever its status.
SELECT generation, status, position, started_at, format
FROM projection_generations
WHERE projection = $1 AND generation = $2
