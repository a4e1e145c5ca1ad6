-- The checkpoint of relay $1.
SELECT position FROM relay_checkpoints WHERE name = $1
