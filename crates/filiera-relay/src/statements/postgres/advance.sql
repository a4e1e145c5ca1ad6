-- Relay $1's checkpoint moves from $2 to $3, only if nobody moved it since.
UPDATE relay_checkpoints SET position = $3, updated_at = clock_timestamp()
WHERE name = $1 AND position = $2
