-- The first generation, active at position 0 with timeline format $2, if the projection has
-- none yet.
INSERT INTO projection_generations (projection, generation, status, position, activated_at, format)
SELECT $1, 1, 'active', 0, clock_timestamp(), $2
WHERE NOT EXISTS (SELECT 1 FROM projection_generations WHERE projection = $1)
ON CONFLICT DO NOTHING
