SELECT master_version, master_check, wrapped_index_key FROM vault_keys WHERE id = 1
