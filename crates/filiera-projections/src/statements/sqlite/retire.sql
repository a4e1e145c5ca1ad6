-- The active generation $2 retires, if a rebuild at position $3 has caught up with it.
UPDATE projection_generations
SET status = 'retired', retired_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE projection = $1 AND generation = $2 AND status = 'active' AND position <= $3
