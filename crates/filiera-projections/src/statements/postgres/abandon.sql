-- The building generation $2 is given up (it was built with an older timeline format): it is
-- retired, so its rows are purged, and another rebuild can start.
UPDATE projection_generations
SET status = 'retired', retired_at = clock_timestamp()
WHERE projection = $1 AND generation = $2 AND status = 'building'
