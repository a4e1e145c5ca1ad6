UPDATE vault_keys
SET master_version = $1, master_check = $2, wrapped_index_key = $3, rotated_at = $4
WHERE id = 1 AND master_version = $5
