-- Rotation: holds every writer of wrapped keys off until it commits.
SELECT master_version FROM vault_keys WHERE id = 1 FOR UPDATE
