-- One generation, whatever its status.
SELECT generation, status, position, started_at
FROM projection_generations
WHERE projection = $1 AND generation = $2
