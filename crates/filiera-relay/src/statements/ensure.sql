-- The checkpoint row of relay $1 at position 0, if it is missing.
INSERT INTO relay_checkpoints (name, position) VALUES ($1, 0)
ON CONFLICT (name) DO NOTHING
