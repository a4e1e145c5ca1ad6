-- The first generation, active at position 0 with timeline format $2, if the projection has
-- none yet.
INSERT OR IGNORE INTO projection_generations (projection, generation, status, position, activated_at, format)
SELECT $1, 1, 'active', 0, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), $2
WHERE NOT EXISTS (SELECT 1 FROM projection_generations WHERE projection = $1)
