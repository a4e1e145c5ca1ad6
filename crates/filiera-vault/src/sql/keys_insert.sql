INSERT INTO vault_keys (id, master_version, master_check, wrapped_index_key, created_at)
VALUES (1, 1, $1, $2, $3)
ON CONFLICT (id) DO NOTHING
